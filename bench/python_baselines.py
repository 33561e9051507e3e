#!/usr/bin/env python3
"""The two Python baselines samstream is compared with, on the same exported model and image:

  ort      the onnxruntime pipeline (bench/ort_pipeline.py): JPEG decode, Pillow resize,
           encoder.onnx, one decoder.onnx call for all objects, upscale, threshold, COCO RLE
  pytorch  the official SamPredictor (mobile_sam) on the very weights the model was exported
           from (the manifest's seed and gain, or the checkpoint): set_image + predict per
           object, then COCO RLE

Prints one JSON object: per pipeline and object count, the median per-frame time and stages.

    python bench/python_baselines.py MODEL_DIR IMAGE [--runs N] [--objects 1 8]
                                     [--checkpoint mobile_sam.pt]
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
from ort_pipeline import OrtPipeline, coco_rle  # noqa: E402
from stats import median_ms  # noqa: E402


def spread_points(count: int, width: int, height: int) -> list[list[float]]:
    """The same prompts `samstream bench --objects N` sends (src/bench/mod.rs)."""
    points = []
    for i in range(count):
        f = (i + 0.5) / count
        points.append([width * (0.1 + 0.8 * f), height * (0.2 + 0.6 * ((f * 7.0) % 1.0)), 1])
    return points


def bench_ort(model_dir: Path, image: Path, counts: list[int], runs: int) -> dict:
    pipeline = OrtPipeline(model_dir)
    out = {}
    for count in counts:
        totals, stages = [], {}
        for run in range(runs + 1):
            started = time.perf_counter()
            rgb = np.asarray(Image.open(image).convert("RGB"))
            decode_s = time.perf_counter() - started
            h, w = rgb.shape[:2]
            objects = [{"points": [p], "box": None} for p in spread_points(count, w, h)]
            result = pipeline.segment(rgb, objects)
            if run == 0:
                continue  # warm-up
            totals.append(time.perf_counter() - started)
            for stage, s in {"decode": decode_s, **result["times"]}.items():
                stages.setdefault(stage, []).append(s)
        out[str(count)] = {"total_ms": median_ms(totals), "stages_ms": {k: median_ms(v) for k, v in stages.items()}}
    return out


def torch_model(model_dir: Path, checkpoint: str | None):
    from export import build_model

    provenance = json.loads((model_dir / "manifest.json").read_text())["provenance"]
    args = argparse.Namespace(checkpoint=checkpoint, seed=provenance.get("seed", 0), gain=provenance.get("hypernetwork_gain", 1.0))
    if provenance["kind"] == "official_checkpoint" and not checkpoint:
        raise SystemExit("the model was exported from a checkpoint: pass --checkpoint for the PyTorch baseline")
    model, _ = build_model(args)
    return model.eval()


def bench_pytorch(model_dir: Path, image: Path, counts: list[int], runs: int, checkpoint: str | None) -> dict:
    from mobile_sam import SamPredictor

    torch.set_num_threads(max(1, torch.get_num_threads()))
    predictor = SamPredictor(torch_model(model_dir, checkpoint))
    out = {}
    with torch.inference_mode():
        for count in counts:
            totals, stages = [], {}
            for run in range(runs + 1):
                started = time.perf_counter()
                rgb = np.asarray(Image.open(image).convert("RGB"))
                t = time.perf_counter()
                predictor.set_image(rgb)
                set_image_s = time.perf_counter() - t
                h, w = rgb.shape[:2]
                t = time.perf_counter()
                masks = []
                for x, y, label in spread_points(count, w, h):
                    m, _, _ = predictor.predict(point_coords=np.array([[x, y]]), point_labels=np.array([label]), multimask_output=False)
                    masks.append(m[0])
                predict_s = time.perf_counter() - t
                coco_rle(np.stack(masks, axis=-1).astype(np.uint8))
                if run == 0:
                    continue
                totals.append(time.perf_counter() - started)
                stages.setdefault("set_image", []).append(set_image_s)
                stages.setdefault("predict", []).append(predict_s)
            out[str(count)] = {"total_ms": median_ms(totals), "stages_ms": {k: median_ms(v) for k, v in stages.items()}}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("image", type=Path)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--objects", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--checkpoint")
    parser.add_argument("--only", choices=["ort", "pytorch"])
    args = parser.parse_args()
    report = {"threads": torch.get_num_threads(), "runs": args.runs}
    if args.only in (None, "ort"):
        report["python_ort"] = bench_ort(args.model_dir, args.image, args.objects, args.runs)
    if args.only in (None, "pytorch"):
        report["pytorch"] = bench_pytorch(args.model_dir, args.image, args.objects, args.runs, args.checkpoint)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
