"""Reference outputs of the official SamAutomaticMaskGenerator for samstream's segment-everything
parity test (tests/everything.rs), on the parity images and the very same weights.

Each case runs the official generator (mobile_sam/automatic_mask_generator.py) unchanged.
Its thresholds are chosen so that the image keeps at least MIN_MASKS masks and no candidate's
predicted IoU or stability score lies within MARGIN of a threshold: two implementations whose
scores differ by float rounding (ONNX Runtime vs PyTorch) must keep the same masks, and a
candidate sitting on a threshold would make that a coin toss. The generator is watched while it
runs (its own scores are recorded, nothing is changed) to find such candidates; a case whose
thresholds fail is run again with thresholds moved into a gap of the recorded scores.

With seeded random weights every mask spreads over its whole crop, so every box is the crop's
box and any box NMS below 1.0 keeps one mask: the cases set box_nms_thresh (and crop_nms_thresh)
to 1.0 to keep many masks. NMS itself is checked against torchvision on boxes that differ
(tests/everything.rs runs tests/support/everything_parts.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import mobile_sam.automatic_mask_generator as amg_module
from mobile_sam import SamAutomaticMaskGenerator

MIN_MASKS = 10
# ONNX Runtime and PyTorch scores differ by about 1e-5.
MARGIN = 5e-4
# Masks to aim for when a stability threshold is picked (enough to survive crop edges).
TARGET_MASKS = 14

# name, image, options (every other option is the reference's default, NMS thresholds aside).
# Small grids: the official generator upscales every candidate, which takes PyTorch seconds.
CASES = [
    ("small_grid6", "small", {"points_per_side": 6}),
    ("square_grid6", "square", {"points_per_side": 6}),
    ("landscape_grid4", "landscape", {"points_per_side": 4}),
    ("portrait_grid4", "portrait", {"points_per_side": 4}),
    ("small_crops", "small", {"points_per_side": 4, "crop_n_layers": 1}),
    ("square_crops", "square", {"points_per_side": 4, "crop_n_layers": 1}),
    ("small_regions", "small", {"points_per_side": 6, "min_mask_region_area": 100}),
    ("square_crops_regions", "square", {"points_per_side": 5, "crop_n_layers": 1, "crop_n_points_downscale_factor": 2, "min_mask_region_area": 500}),
]


class Recorder:
    """Records every predicted IoU and stability score the generator computes."""

    def __init__(self) -> None:
        self.ious: list[float] = []
        self.stabilities: list[float] = []
        self._stability = amg_module.calculate_stability_score

    def __enter__(self) -> "Recorder":
        def recording(masks, mask_threshold, threshold_offset):
            scores = self._stability(masks, mask_threshold, threshold_offset)
            self.stabilities.extend(scores.flatten().tolist())
            return scores

        amg_module.calculate_stability_score = recording
        return self

    def __exit__(self, *exc) -> None:
        amg_module.calculate_stability_score = self._stability

    def watch(self, generator: SamAutomaticMaskGenerator) -> None:
        predict = generator.predictor.predict_torch

        def recording(*args, **kwargs):
            masks, iou_preds, low_res = predict(*args, **kwargs)
            self.ious.extend(iou_preds.flatten().tolist())
            return masks, iou_preds, low_res

        generator.predictor.predict_torch = recording


def gap_threshold(values: list[float], target: float, low: float, high: float) -> float:
    """A threshold in [low, high], as close to `target` as can be with no value within MARGIN."""
    finite = sorted(v for v in values if np.isfinite(v))
    candidates = [target] + [(a + b) / 2 for a, b in zip(finite, finite[1:]) if b - a > 2 * MARGIN]
    candidates += [low, high]
    ok = [c for c in candidates if low <= c <= high and all(abs(v - c) >= MARGIN for v in finite)]
    if not ok:
        raise RuntimeError(f"no threshold in [{low}, {high}] clear of the scores")
    return min(ok, key=lambda c: abs(c - target))


def run(sam, image: np.ndarray, options: dict) -> tuple[list[dict], Recorder]:
    generator = SamAutomaticMaskGenerator(sam, output_mode="coco_rle", **options)
    with Recorder() as recorder:
        recorder.watch(generator)
        masks = generator.generate(image)
    return masks, recorder


def clear_of(values: list[float], threshold: float) -> bool:
    return all(abs(v - threshold) >= MARGIN for v in values if np.isfinite(v))


def reference(sam, image: np.ndarray, base: dict) -> tuple[dict, list[dict]]:
    options = {"box_nms_thresh": 1.0, "crop_nms_thresh": 1.0, "pred_iou_thresh": 0.5, "stability_score_thresh": 0.5, **base}
    for attempt in range(4):
        masks, seen = run(sam, image, options)
        iou_ok = clear_of(seen.ious, options["pred_iou_thresh"])
        stability_ok = clear_of(seen.stabilities, options["stability_score_thresh"])
        if len(masks) >= MIN_MASKS and iou_ok and stability_ok:
            return options, masks
        options["pred_iou_thresh"] = gap_threshold(seen.ious, options["pred_iou_thresh"], 0.05, 0.95)
        # Of the masks past the IoU filter, keep more by stability on every attempt (crops lose
        # most of theirs at their edges).
        passed = sorted((s for s in seen.stabilities if np.isfinite(s)), reverse=True)
        target = passed[min(len(passed), TARGET_MASKS << attempt) - 1] if passed else 0.5
        options["stability_score_thresh"] = gap_threshold(seen.stabilities, min(target, 0.95), 0.05, 0.95)
    raise RuntimeError(f"no thresholds keep {MIN_MASKS} masks clear of the scores for {base}")


def write_everything_fixtures(sam, parity_dir: Path) -> None:
    torch.set_grad_enabled(False)
    out = parity_dir / "everything"
    out.mkdir(parents=True, exist_ok=True)
    cases = []
    for name, image_name, base in CASES:
        image = np.array(Image.open(parity_dir / f"{image_name}.png").convert("RGB"))
        options, masks = reference(sam, image, base)
        records = [
            {
                "counts": m["segmentation"]["counts"],
                "area": int(m["area"]),
                "bbox": [int(v) for v in m["bbox"]],
                "predicted_iou": float(m["predicted_iou"]),
                "stability_score": float(m["stability_score"]),
                "point": [float(v) for v in m["point_coords"][0]],
                "crop_box": [int(v) for v in m["crop_box"]],
            }
            for m in masks
        ]
        (out / f"{name}.json").write_text(json.dumps({"masks": records}) + "\n")
        height, width = image.shape[:2]
        cases.append({"name": name, "image": f"{image_name}.png", "width": width, "height": height, "options": options, "masks": len(records)})
        print(f"segment-everything fixture {name}: {len(records)} masks with {options}", flush=True)
    (out / "cases.json").write_text(json.dumps({"cases": cases}, indent=1) + "\n")
