#!/usr/bin/env python3
"""The GPU baselines of scripts/gpu_bench.sh, on the same exported graphs and image, in one
JSON object (medians in milliseconds):

  raw_ort      the graphs straight through onnxruntime's CUDA provider: the encoder with host
               arrays in and out, and with its input and output bound on the device (IO
               binding); batch 8 per image; the decoder for 1 and 8 objects on a device-bound
               embedding; each with TF32 off (exact) and on; the fp16 encoder if given
  pipeline     bench/ort_pipeline.py on the CUDA provider: JPEG decode, Pillow resize, encoder,
               decoder, upscaling, threshold (the Python pipeline people write)
  pytorch      the official SamPredictor on the GPU, fed the JPEG: decode + set_image + predict
               for 1 and 8 objects; its encoder alone in batches of 8, float32 and bfloat16
               (`--batch 2` and `--runs 1` keep a CPU check of the script short)
  fidelity     logits of the ONNX encoder (exact, TF32, fp16) + decoder against the official
               predictor in float32 without TF32, same image and prompt; and, with
               --masks MODE=DIR, samstream's own masks (PNG) of each mode against its signs

    python3 bench/gpu_python.py MODEL_DIR IMAGE --json OUT.json [--fp16 encoder_fp16.onnx]
                                [--runs N] [--device cuda|cpu] [--masks exact=DIR ...]

Every onnxruntime session must run on the provider asked for and the PyTorch model on the
device asked for: a section whose session fell back to the CPU fails loudly instead of
reporting CPU figures as GPU ones. The JSON goes to a file (onnxruntime prints its fallback
banners to stdout). `--device cpu` runs the same code on the CPU (to check the script where
there is no GPU).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
import torch.nn.functional as F
from PIL import Image

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "models"))
from gpu_probe import require_provider  # noqa: E402
from ort_pipeline import OrtPipeline, resized_size  # noqa: E402
from python_baselines import spread_points, torch_model  # noqa: E402
from stats import median_ms  # noqa: E402

POINT = (640.0, 360.0)  # the prompt gpu_bench.sh gives `samstream client` on the 1280x720 frame


def timed(fn, runs: int, sync=lambda: None) -> float:
    fn()  # warm-up (first-run costs, cuDNN's algorithm search)
    sync()
    samples = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        sync()
        samples.append(time.perf_counter() - started)
    return median_ms(samples)


def providers(device: str, tf32: bool) -> list:
    if device == "cuda":
        return [("CUDAExecutionProvider", {"device_id": 0, "use_tf32": int(tf32)}), "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


class Graphs:
    """The encoder and decoder as samstream runs them: the fp16 encoder on tensor cores (TF32
    allowed: without it cuDNN finds no plan for its convolutions), everything else with TF32
    only in the TF32 mode."""

    def __init__(self, model_dir: Path, device: str, tf32: bool, encoder: Path | None = None) -> None:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.device = device
        encoder_tf32 = tf32 or encoder is not None
        self.encoder = ort.InferenceSession(str(encoder or model_dir / "encoder.onnx"), options, providers=providers(device, encoder_tf32))
        self.decoder = ort.InferenceSession(str(model_dir / "decoder.onnx"), options, providers=providers(device, tf32))
        require_provider(self.encoder, device)
        require_provider(self.decoder, device)

    def ortvalue(self, array: np.ndarray) -> ort.OrtValue:
        return ort.OrtValue.ortvalue_from_numpy(array, self.device, 0)

    def encode_host(self, tensor: np.ndarray) -> np.ndarray:
        return self.encoder.run(None, {"image": tensor})[0]

    def encode_bound(self, tensor: ort.OrtValue) -> ort.OrtValue:
        binding = self.encoder.io_binding()
        binding.bind_ortvalue_input("image", tensor)
        binding.bind_output("image_embeddings", self.device, 0)
        self.encoder.run_with_iobinding(binding)
        binding.synchronize_outputs()
        return binding.get_outputs()[0]

    def decode_bound(self, embedding: ort.OrtValue, coords: np.ndarray, labels: np.ndarray):
        n = coords.shape[0]
        binding = self.decoder.io_binding()
        binding.bind_ortvalue_input("image_embeddings", embedding)
        binding.bind_cpu_input("point_coords", coords)
        binding.bind_cpu_input("point_labels", labels)
        binding.bind_cpu_input("mask_input", np.zeros((n, 1, 256, 256), np.float32))
        binding.bind_cpu_input("has_mask_input", np.zeros(n, np.float32))
        binding.bind_output("iou_predictions", "cpu")
        binding.bind_output("low_res_masks", self.device, 0)
        self.decoder.run_with_iobinding(binding)
        binding.synchronize_outputs()
        return binding.get_outputs()


def prompts(count: int, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    nh, nw = resized_size(height, width)
    scale = np.array([nw / width, nh / height], np.float32)
    coords = np.array([[[x, y], [0.0, 0.0]] for x, y, _ in spread_points(count, width, height)], np.float32) * scale
    labels = np.tile(np.array([[1.0, -1.0]], np.float32), (count, 1))
    return coords, labels


def bench_raw(model_dir: Path, rgb: np.ndarray, device: str, fp16: Path | None, runs: int, batch_size: int) -> dict:
    tensor = OrtPipeline.preprocess(rgb)
    batch = np.repeat(tensor, batch_size, axis=0)
    out = {}
    modes = [("exact", False, None), ("tf32", True, None)] + ([("fp16", False, fp16)] if fp16 else [])
    for name, tf32, encoder in modes:
        graphs = Graphs(model_dir, device, tf32, encoder)
        bound_input, bound_batch = graphs.ortvalue(tensor), graphs.ortvalue(batch)
        row = {
            "encoder_host_arrays_ms": timed(lambda: graphs.encode_host(tensor), runs),
            "encoder_io_binding_ms": timed(lambda: graphs.encode_bound(bound_input), runs),
            "encoder_batch8_per_image_ms": timed(lambda: graphs.encode_bound(bound_batch), max(1, runs // 4)) / batch_size,
        }
        embedding = graphs.encode_bound(bound_input)
        for count in (1, 8):
            coords, labels = prompts(count, rgb.shape[1], rgb.shape[0])
            row[f"decoder_{count}_ms"] = timed(lambda: graphs.decode_bound(embedding, coords, labels), runs)
        out[name] = row
    return out


def bench_pipeline(model_dir: Path, image: Path, device: str, runs: int) -> dict:
    providers = [("CUDAExecutionProvider", {"device_id": 0, "use_tf32": 0}), "CPUExecutionProvider"] if device == "cuda" else None
    pipeline = OrtPipeline(model_dir, providers=providers)
    require_provider(pipeline.encoder, device)
    require_provider(pipeline.decoder, device)

    def frame():
        rgb = np.asarray(Image.open(image).convert("RGB"))
        h, w = rgb.shape[:2]
        return pipeline.segment(rgb, [{"points": [[POINT[0], POINT[1], 1]], "box": None}])

    stages = {}
    totals = []
    frame()
    for _ in range(runs):
        started = time.perf_counter()
        result = frame()
        totals.append(time.perf_counter() - started)
        for stage, seconds in result["times"].items():
            stages.setdefault(stage, []).append(seconds)
    return {"total_ms": median_ms(totals), "stages_ms": {k: median_ms(v) for k, v in stages.items()}}


def bench_pytorch(model_dir: Path, image: Path, device: str, runs: int, batch_size: int) -> dict:
    from mobile_sam import SamPredictor

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    model = torch_model(model_dir, None).to(device)
    require_torch_device(model, device)
    predictor = SamPredictor(model)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    out = {}
    with torch.inference_mode():
        for count in (1, 8):

            def frame():
                rgb = np.asarray(Image.open(image).convert("RGB"))
                predictor.set_image(rgb)
                h, w = rgb.shape[:2]
                for x, y, label in spread_points(count, w, h):
                    predictor.predict(point_coords=np.array([[x, y]]), point_labels=np.array([label]), multimask_output=False)

            out[f"segment_{count}_ms"] = timed(frame, runs, sync)
        batch = torch.randn(batch_size, 3, 1024, 1024, device=device)
        out["encoder_batch8_fp32_per_image_ms"] = timed(lambda: model.image_encoder(batch), max(1, runs // 4), sync) / batch_size
        if device == "cuda":
            with torch.autocast("cuda", dtype=torch.bfloat16):
                out["encoder_batch8_bf16_per_image_ms"] = timed(lambda: model.image_encoder(batch), max(1, runs // 4), sync) / batch_size
    return out


def require_torch_device(model: torch.nn.Module, device: str) -> None:
    where = next(model.parameters()).device.type
    if where != device:
        raise RuntimeError(f"the PyTorch model is on {where}, not {device}")


def agreement(logits: np.ndarray, reference: np.ndarray) -> dict:
    confident = np.abs(reference) > 0.05
    ours, theirs = logits.ravel().astype(np.float64), reference.ravel().astype(np.float64)
    return {
        "correlation": float(np.corrcoef(ours, theirs)[0, 1]),
        "sign_disagreement_pct": float(100.0 * np.mean((logits > 0)[confident] != (reference > 0)[confident])),
    }


def fidelity(model_dir: Path, rgb: np.ndarray, device: str, fp16: Path | None, masks: list[str]) -> dict:
    """Against SamPredictor in float32 (TF32 off) on this device: the reference."""
    from mobile_sam import SamPredictor

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    model = torch_model(model_dir, None).to(device)
    require_torch_device(model, device)
    predictor = SamPredictor(model)
    with torch.inference_mode():
        predictor.set_image(rgb)
        reference, _, _ = predictor.predict(
            point_coords=np.array([POINT]), point_labels=np.array([1]), multimask_output=False, return_logits=True
        )
    reference = reference[0]
    h, w = rgb.shape[:2]
    nh, nw = resized_size(h, w)
    tensor = OrtPipeline.preprocess(rgb)
    scale = np.array([nw / w, nh / h], np.float32)
    coords = (np.array([[POINT, (0.0, 0.0)]], np.float32) * scale).astype(np.float32)
    labels = np.array([[1.0, -1.0]], np.float32)
    out = {}
    modes = [("exact", False, None), ("tf32", True, None)] + ([("fp16", False, fp16)] if fp16 else [])
    for name, tf32, encoder in modes:
        graphs = Graphs(model_dir, device, tf32, encoder)
        embedding = graphs.encode_bound(graphs.ortvalue(tensor))
        _, low_res = graphs.decode_bound(embedding, coords, labels)
        low_res = torch.from_numpy(low_res.numpy()[:, :1])
        up = F.interpolate(low_res, (1024, 1024), mode="bilinear", align_corners=False)[..., :nh, :nw]
        logits = F.interpolate(up, (h, w), mode="bilinear", align_corners=False)[0, 0].numpy()
        out[f"ort_{name}"] = agreement(logits, reference)
    # samstream's served masks: only their signs exist, so only the disagreement is reported.
    confident = np.abs(reference) > 0.05
    for entry in masks:
        mode, folder = entry.split("=", 1)
        path = Path(folder) / "object_1.png"
        if not path.exists():
            out[f"samstream_{mode}"] = {"missing": str(path)}
            continue
        inside = np.asarray(Image.open(path).convert("L")) > 127
        out[f"samstream_{mode}"] = {"sign_disagreement_pct": float(100.0 * np.mean(inside[confident] != (reference > 0)[confident]))}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("image", type=Path)
    parser.add_argument("--fp16", type=Path, help="encoder_fp16.onnx (export.py --fp16)")
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--batch", type=int, default=8, help="encoder batch for the per-image batch figures (8 in the table)")
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--masks", nargs="*", default=[], help="MODE=DIR with samstream's object_1.png for the prompt at 640,360")
    parser.add_argument("--only", nargs="*", choices=["raw_ort", "pipeline", "pytorch", "fidelity"])
    parser.add_argument("--json", type=Path, required=True, help="where the report goes")
    args = parser.parse_args()
    rgb = np.asarray(Image.open(args.image).convert("RGB"))
    report = {"device": torch.cuda.get_device_name(0) if args.device == "cuda" else "cpu", "runs": args.runs}
    sections = {
        "raw_ort": lambda: bench_raw(args.model_dir, rgb, args.device, args.fp16, args.runs, args.batch),
        "pipeline": lambda: bench_pipeline(args.model_dir, args.image, args.device, args.runs),
        "pytorch": lambda: bench_pytorch(args.model_dir, args.image, args.device, args.runs, args.batch),
        "fidelity": lambda: fidelity(args.model_dir, rgb, args.device, args.fp16, args.masks),
    }
    for name, run in sections.items():
        if args.only and name not in args.only:
            continue
        try:
            report[name] = run()
        except (Exception, SystemExit) as e:  # noqa: BLE001 - one failing section must not lose the others
            report[name] = {"failed": f"{type(e).__name__}: {e}"}
        print(f"[gpu_python] {name}: {'failed: ' + report[name]['failed'] if 'failed' in report[name] else 'done'}", file=sys.stderr)
        args.json.write_text(json.dumps(report, indent=1))
    args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
