#!/usr/bin/env python3
"""The reference's answers for segment everything's parts, on inputs that exercise what seeded
random weights cannot (their masks all span their crop): torchvision's batched_nms on boxes that
overlap, tie and degenerate, mobile_sam's remove_small_regions on masks with holes and islands,
generate_crop_boxes, build_all_layer_point_grids, calculate_stability_score and
batched_mask_to_box. Writes one JSON document to stdout; tests/everything.rs compares
samstream's implementations with it.

    everything_parts.py SEED
"""

from __future__ import annotations

import json
import sys

import numpy as np
import torch
from torchvision.ops.boxes import batched_nms

from mobile_sam.utils.amg import (
    batched_mask_to_box,
    build_all_layer_point_grids,
    calculate_stability_score,
    generate_crop_boxes,
    remove_small_regions,
)


def nms_cases(rng: np.random.Generator) -> list[dict]:
    cases = []
    for count, threshold, ties in [(40, 0.7, False), (300, 0.5, True), (300, 0.7, True), (200, 0.0, False), (1500, 0.7, True), (100, 1.0, True)]:
        x0 = rng.integers(0, 150, count)
        y0 = rng.integers(0, 150, count)
        # Some boxes one pixel wide or high in the reference's inclusive convention (area 0).
        w = np.where(rng.random(count) < 0.1, 0, rng.integers(1, 80, count))
        h = np.where(rng.random(count) < 0.1, 0, rng.integers(1, 80, count))
        boxes = np.stack([x0, y0, x0 + w, y0 + h], axis=1)
        scores = rng.choice([0.0, 1.0, 0.5], count) if ties else rng.random(count)
        kept = batched_nms(torch.as_tensor(boxes).float(), torch.as_tensor(scores).float(), torch.zeros(count), iou_threshold=threshold)
        cases.append({"boxes": boxes.tolist(), "scores": scores.astype(np.float32).tolist(), "threshold": threshold, "kept": kept.tolist()})
    return cases


def blob_mask(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    mask = np.zeros((height, width), bool)
    for _ in range(5):
        cy, cx = rng.integers(0, height), rng.integers(0, width)
        r = rng.integers(2, 12)
        ys, xs = np.ogrid[:height, :width]
        mask |= (ys - cy) ** 2 + (xs - cx) ** 2 <= r * r
    flips = rng.random((height, width)) < 0.03
    return mask ^ flips


def region_cases(rng: np.random.Generator) -> list[dict]:
    cases = []
    for _ in range(12):
        mask = blob_mask(rng, 48, 64)
        for area in (3, 25, 150):
            for mode in ("holes", "islands"):
                result, changed = remove_small_regions(mask, area, mode)
                cases.append({"mask": mask.astype(np.uint8).flatten().tolist(), "area": area, "mode": mode, "changed": bool(changed),
                              "result": result.astype(np.uint8).flatten().tolist()})
    return cases


def crop_cases() -> list[dict]:
    cases = []
    for height, width in [(1080, 1920), (768, 1024), (480, 640), (240, 320), (1280, 720), (600, 600), (37, 91)]:
        for layers in (1, 2, 3):
            for ratio in (512 / 1500, 0.2, 0.0):
                boxes, layer_idx = generate_crop_boxes((height, width), layers, ratio)
                cases.append({"width": width, "height": height, "layers": layers, "ratio": ratio, "boxes": boxes, "layer": layer_idx})
    return cases


def grid_cases() -> list[dict]:
    cases = []
    for per_side, layers, factor in [(32, 0, 1), (7, 2, 2), (16, 3, 2), (5, 1, 1)]:
        grids = build_all_layer_point_grids(per_side, layers, factor)
        cases.append({"per_side": per_side, "layers": layers, "factor": factor, "grids": [g.tolist() for g in grids]})
    return cases


def score_cases(rng: np.random.Generator) -> list[dict]:
    cases = []
    for offset in (1.0, 0.95, 0.3):
        logits = (rng.standard_normal((6, 30, 40)) * 3).astype(np.float32)
        logits[5] = -5.0  # an empty union: NaN
        scores = calculate_stability_score(torch.as_tensor(logits), 0.0, offset)
        masks = torch.as_tensor(logits) > 0.0
        boxes = batched_mask_to_box(masks)
        cases.append({"offset": offset, "logits": logits.flatten().tolist(), "scores": [None if np.isnan(s) else s for s in scores.tolist()],
                      "boxes": boxes.tolist()})
    return cases


def main() -> int:
    rng = np.random.default_rng(int(sys.argv[1]) if len(sys.argv) > 1 else 0)
    json.dump({"nms": nms_cases(rng), "regions": region_cases(rng), "crops": crop_cases(), "grids": grid_cases(), "scores": score_cases(rng)}, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
