#!/usr/bin/env python3
"""Fidelity of the reduced-precision encoders: runs the parity fixtures' 32 cases through the
ONNX pipeline with encoder_int8.onnx and encoder_fp16.onnx (where exported) and compares the
full-resolution logits with the official SamPredictor's (fp32 PyTorch) reference: correlation
and the share of pixels whose mask sign differs. The fp32 encoder is run the same way, as the
yardstick. On the CPU provider, onnxruntime computes the fp16 graph's operators that have no
float16 CPU kernel in float32 between casts, so its figure here bounds the rounding of weights
and activations to float16; scripts/gpu_bench.sh measures the fp16 encoder on a GPU.

    python bench/encoder_fidelity.py MODEL_DIR [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
from ort_pipeline import OrtPipeline  # noqa: E402


def compare(pipeline: OrtPipeline, parity: Path) -> dict:
    cases = json.loads((parity / "cases.json").read_text())["cases"]
    embeddings = {}
    correlations, disagreements = [], []
    for case in cases:
        image = case["image"]
        rgb = np.asarray(Image.open(parity / image).convert("RGB"))
        if image not in embeddings:
            embeddings[image] = pipeline.encode(pipeline.preprocess(rgb))
        obj = {"points": case["points"], "box": case["box"]}
        _, low_res = pipeline.decode(embeddings[image], rgb.shape[:2], [obj])
        tokens = low_res[:, 1:] if case["multimask"] else low_res[:, :1]
        ours = pipeline.upscale(tokens, rgb.shape[:2])[0]
        reference = np.fromfile(parity / case["logits_file"], np.float32).reshape(case["logits_shape"])
        for a, b in zip(ours, reference):
            correlations.append(float(np.corrcoef(a.ravel(), b.ravel())[0, 1]))
            disagreements.append(float(np.mean((a > 0) != (b > 0))))
    return {
        "cases": len(cases),
        "min_correlation": min(correlations),
        "median_correlation": float(np.median(correlations)),
        "max_sign_disagreement": max(disagreements),
        "median_sign_disagreement": float(np.median(disagreements)),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    report = {}
    for name in ("encoder.onnx", "encoder_int8.onnx", "encoder_fp16.onnx"):
        if not (args.model_dir / name).exists():
            continue
        report[name] = compare(OrtPipeline(args.model_dir, name), args.model_dir / "parity")
        print(f"{name}: {json.dumps(report[name])}", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
