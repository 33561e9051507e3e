#!/usr/bin/env python3
"""Writes the parity fixtures (models/parity_fixtures.py: images, prompts and the official
SamPredictor's full-resolution logits) for a model exported from seeded random weights, on a
machine that has PyTorch and mobile_sam but not the fixtures: they are ~230 MB, the recipe is
a few kilobytes. The reference runs where `export.py --parity-fixtures` runs it: float32 on
the CPU.

`--check DIR` compares the result with fixtures written by the export itself (all of them or a
subset, e.g. the small image's cases): a different PyTorch that initialised the seeded weights
differently would otherwise produce a reference for another model. The comparison goes to
`--json`, and a mismatch fails the script.

    python3 bench/parity_reference.py MODEL_DIR OUT_DIR [--check DIR] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "models"))
from parity_fixtures import write_fixtures  # noqa: E402
from python_baselines import torch_model  # noqa: E402

# Two float32 CPU builds of PyTorch differ in the last bits of a logit, not more.
MAX_ABS_DIFFERENCE = 1e-3


def compare(written: Path, expected: Path) -> dict:
    cases = json.loads((expected / "cases.json").read_text())["cases"]
    worst = 0.0
    for case in cases:
        ours = np.fromfile(written / case["logits_file"], "<f4")
        theirs = np.fromfile(expected / case["logits_file"], "<f4")
        if ours.shape != theirs.shape:
            return {"cases": len(cases), "matches": False, "why": f"{case['name']}: {ours.shape} vs {theirs.shape}"}
        worst = max(worst, float(np.max(np.abs(ours - theirs))))
    return {"cases": len(cases), "max_abs_difference": worst, "matches": worst <= MAX_ABS_DIFFERENCE}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--check", type=Path, help="fixtures written by export.py --parity-fixtures (all or some cases)")
    parser.add_argument("--json", type=Path, help="where the comparison goes")
    args = parser.parse_args()
    from mobile_sam import SamPredictor

    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    write_fixtures(SamPredictor(torch_model(args.model_dir, None)), args.out)
    report = {"torch": torch.__version__, "written": str(args.out)}
    if args.check:
        report["check"] = compare(args.out, args.check)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    print(f"[parity_reference] {json.dumps(report)}", file=sys.stderr)
    return 0 if report.get("check", {}).get("matches", True) else 1


if __name__ == "__main__":
    sys.exit(main())
