#!/usr/bin/env python3
"""Segment everything's baselines, on the same exported model and image as samstream:

  official   SamAutomaticMaskGenerator (mobile_sam, PyTorch) on the very weights the model was
             exported from, unchanged
  ort        the same algorithm on the Python onnxruntime pipeline (bench/ort_pipeline.py):
             the generator's own code (mobile_sam/automatic_mask_generator.py and utils/amg.py)
             with encoder.onnx and decoder.onnx in place of PyTorch, filtering by predicted IoU
             before upscaling as samstream does (the same masks: IoU needs no upscaling)
  ort_shared the same with decoder_shared.onnx (the decoder that does the image side's
             prompt-independent work once per call, as samstream uses it)

Prints one JSON object: per baseline and crop layer count, seconds and the number of masks.

    python bench/everything_baselines.py MODEL_DIR IMAGE [--layers 0 1] [--only official ort ort_shared]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "models"))
import mobile_sam.automatic_mask_generator as amg  # noqa: E402
from mobile_sam import SamAutomaticMaskGenerator  # noqa: E402
from mobile_sam.utils.amg import MaskData  # noqa: E402
from ort_pipeline import OrtPipeline  # noqa: E402


class OrtPredictor:
    """What SamAutomaticMaskGenerator asks of its predictor, on onnxruntime."""

    def __init__(self, pipeline: OrtPipeline, shared_decoder) -> None:
        from mobile_sam.utils.transforms import ResizeLongestSide

        self.pipeline = pipeline
        self.shared = shared_decoder
        self.transform = ResizeLongestSide(1024)
        self.device = torch.device("cpu")
        self.model = argparse.Namespace(mask_threshold=0.0)

    def set_image(self, image: np.ndarray) -> None:
        self.size = image.shape[:2]
        self.embedding = self.pipeline.encode(self.pipeline.preprocess(image))

    def reset_image(self) -> None:
        self.embedding = None

    def decode(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One positive point per prompt (already in the 1024 frame) plus the padding point."""
        n = len(points)
        coords = np.concatenate([points[:, None, :], np.zeros((n, 1, 2))], axis=1).astype(np.float32)
        labels = np.tile(np.array([[1.0, -1.0]], np.float32), (n, 1))
        feeds = {"image_embeddings": self.embedding, "point_coords": coords, "point_labels": labels}
        if self.shared is not None:
            return tuple(self.shared.run(None, feeds))
        feeds |= {"mask_input": np.zeros((n, 1, 256, 256), np.float32), "has_mask_input": np.zeros(n, np.float32)}
        return tuple(self.pipeline.decoder.run(None, feeds))


class OrtGenerator(SamAutomaticMaskGenerator):
    """The official generator with its model calls on onnxruntime; `_process_batch` is the
    reference's, except that masks are upscaled after the predicted IoU filter."""

    def _process_batch(self, points, im_size, crop_box, orig_size) -> MaskData:
        orig_h, orig_w = orig_size
        transformed = self.predictor.transform.apply_coords(points, im_size)
        iou, low_res = self.predictor.decode(transformed)
        iou = torch.as_tensor(iou[:, 1:]).flatten(0, 1)
        low_res = torch.as_tensor(low_res[:, 1:]).flatten(0, 1)
        data = MaskData(low_res=low_res, iou_preds=iou, points=torch.as_tensor(points.repeat(3, axis=0)))
        if self.pred_iou_thresh > 0.0:
            data.filter(data["iou_preds"] > self.pred_iou_thresh)
        data["masks"] = torch.as_tensor(OrtPipeline.upscale(data["low_res"][:, None].numpy(), im_size))[:, 0]
        del data["low_res"]
        data["stability_score"] = amg.calculate_stability_score(data["masks"], 0.0, self.stability_score_offset)
        if self.stability_score_thresh > 0.0:
            data.filter(data["stability_score"] >= self.stability_score_thresh)
        data["masks"] = data["masks"] > 0.0
        data["boxes"] = amg.batched_mask_to_box(data["masks"])
        keep = ~amg.is_box_near_crop_edge(data["boxes"], crop_box, [0, 0, orig_w, orig_h])
        if not torch.all(keep):
            data.filter(keep)
        data["masks"] = amg.uncrop_masks(data["masks"], crop_box, orig_h, orig_w)
        data["rles"] = amg.mask_to_rle_pytorch(data["masks"])
        del data["masks"]
        return data


def official_model(model_dir: Path, checkpoint: str | None):
    from export import build_model

    provenance = json.loads((model_dir / "manifest.json").read_text())["provenance"]
    if provenance["kind"] == "official_checkpoint" and not checkpoint:
        raise SystemExit("the model was exported from a checkpoint: pass --checkpoint for the official baseline")
    args = argparse.Namespace(checkpoint=checkpoint, seed=provenance.get("seed", 0), gain=provenance.get("hypernetwork_gain", 1.0))
    model, _ = build_model(args)
    return model.eval()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("image", type=Path)
    parser.add_argument("--layers", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--only", nargs="+", default=["official", "ort", "ort_shared"])
    parser.add_argument("--checkpoint")
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.set_grad_enabled(False)
    image = np.asarray(Image.open(args.image).convert("RGB"))
    out: dict = {}
    for name in args.only:
        if name == "official":
            model = official_model(args.model_dir, args.checkpoint)
            make = lambda layers: SamAutomaticMaskGenerator(model, crop_n_layers=layers)  # noqa: E731
        else:
            import onnxruntime as ort

            pipeline = OrtPipeline(args.model_dir, threads=args.threads)
            shared = None
            if name == "ort_shared":
                options = ort.SessionOptions()
                if args.threads:
                    options.intra_op_num_threads = args.threads
                shared = ort.InferenceSession(str(args.model_dir / "decoder_shared.onnx"), options, providers=["CPUExecutionProvider"])

            def make(layers, pipeline=pipeline, shared=shared):
                return configure(OrtGenerator.__new__(OrtGenerator), OrtPredictor(pipeline, shared), layers)

        for layers in args.layers:
            generator = make(layers)
            started = time.perf_counter()
            try:
                masks = generator.generate(image)
                result = {"masks": len(masks)}
            except IndexError as error:
                # The reference's cross-crop NMS indexes crop_boxes[:, 2] of an empty 1-D tensor
                # when no mask survives any crop (random weights with the default thresholds).
                # Every crop's encoder and decoder work is done by then: the time stands, the
                # generator returned nothing.
                if layers == 0:
                    raise
                result = {"masks": 0, "failed": f"IndexError in the reference's cross-crop NMS on zero masks: {error}"}
            result["seconds"] = time.perf_counter() - started
            out.setdefault(name, {})[str(layers)] = result
            print(f"[everything] {name} crop_n_layers={layers}: {result['seconds']:.1f} s, {result['masks']} masks {result.get('failed', '')}", file=sys.stderr, flush=True)
    json.dump(out, sys.stdout)
    print()
    return 0


def configure(generator: OrtGenerator, predictor: OrtPredictor, layers: int) -> OrtGenerator:
    """The reference's constructor, with the ONNX predictor instead of a SamPredictor."""
    defaults = SamAutomaticMaskGenerator.__init__.__defaults__
    names = SamAutomaticMaskGenerator.__init__.__code__.co_varnames[2 : 2 + len(defaults)]
    settings = dict(zip(names, defaults)) | {"crop_n_layers": layers}
    generator.point_grids = amg.build_all_layer_point_grids(
        settings["points_per_side"], settings["crop_n_layers"], settings["crop_n_points_downscale_factor"]
    )
    generator.predictor = predictor
    for key in ("points_per_batch", "pred_iou_thresh", "stability_score_thresh", "stability_score_offset", "box_nms_thresh",
                "crop_n_layers", "crop_nms_thresh", "crop_overlap_ratio", "crop_n_points_downscale_factor",
                "min_mask_region_area", "output_mode"):
        setattr(generator, key, settings[key])
    return generator


if __name__ == "__main__":
    sys.exit(main())
