#!/usr/bin/env python3
"""Checkpoints for tests/checkpoint.rs, written into FOLDER: good.pt (MobileSAM's vit_t with the
set-up's seeded random weights, saved as a state dict as the official file is), html.pt (an
error page), truncated.pt (the first 40% of good.pt) and other.pt (another model's state dict).

    make_checkpoints.py FOLDER SEED
"""

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "models"))
from export import DEFAULT_RANDOM_INIT_GAIN, build_model  # noqa: E402

folder, seed = Path(sys.argv[1]), int(sys.argv[2])
folder.mkdir(parents=True, exist_ok=True)
# The export's random weights (masks with structure, stable score order) so that parity with
# the official predictor on this checkpoint means something.
model, _ = build_model(argparse.Namespace(checkpoint=None, seed=seed, gain=DEFAULT_RANDOM_INIT_GAIN))
torch.save(model.state_dict(), folder / "good.pt")
(folder / "html.pt").write_text("<!DOCTYPE html><html><head><title>Rate limit</title></head><body>Too many requests</body></html>\n")
good = (folder / "good.pt").read_bytes()
(folder / "truncated.pt").write_bytes(good[: len(good) * 2 // 5])
torch.save(torch.nn.Sequential(torch.nn.Linear(8, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2)).state_dict(), folder / "other.pt")
