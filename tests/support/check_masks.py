"""Cross-checks one mask's three encodings with pycocotools (called by the Rust tests).

argv[1] is a JSON file: {"rle": {"size": [h, w], "counts": str}, "png": path, "polygons": [[x, y, ...]],
"area": int, "bbox": [x0, y0, x1, y1], "truth": optional path of raw h*w uint8 bytes (0 / non-zero),
"min_polygon_iou": optional float}. Prints a JSON report; exits 1 on any mismatch.
"""

import json
import sys

import numpy as np
import pycocotools.mask as mask_utils
from PIL import Image


def interior(mask: np.ndarray) -> np.ndarray:
    """Mask pixels whose eight neighbours are in the mask too (a 3x3 erosion): a polygon
    through the boundary pixels' centres must cover them."""
    padded = np.pad(mask, 1)
    h, w = mask.shape
    inner = mask.copy()
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            inner &= padded[dy : dy + h, dx : dx + w]
    return inner


def main() -> int:
    spec = json.load(open(sys.argv[1]))
    h, w = spec["rle"]["size"]
    rle = {"size": [h, w], "counts": spec["rle"]["counts"].encode()}
    from_rle = mask_utils.decode(rle).astype(bool)
    from_png = np.array(Image.open(spec["png"])) > 0
    # Re-encoding the decoded mask with pycocotools must give our string byte for byte.
    reencoded = mask_utils.encode(np.asfortranarray(from_rle.astype(np.uint8)))["counts"].decode()

    polygons = spec["polygons"]
    vertices_on_mask = all(
        len(p) % 2 == 0
        and all(0 <= x < w and 0 <= y < h and from_rle[int(y), int(x)] for x, y in zip(p[0::2], p[1::2]))
        for p in polygons
    )
    fillable = [p for p in polygons if len(p) >= 6]
    if fillable:
        from_polygons = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(fillable, h, w))).astype(bool)
    else:
        from_polygons = np.zeros((h, w), bool)
    inner = interior(from_rle)
    interior_covered = float((inner & from_polygons).sum() / inner.sum()) if inner.any() else 1.0
    union = np.logical_or(from_rle, from_polygons).sum()
    polygon_iou = float(np.logical_and(from_rle, from_polygons).sum() / union) if union else 1.0

    x, y, bw, bh = mask_utils.toBbox(rle).tolist()
    report = {
        "shape": [h, w],
        "rle_area": int(mask_utils.area(rle)),
        "reported_area": spec["area"],
        "counts_equal_pycocotools": reencoded == spec["rle"]["counts"],
        "png_equals_rle": bool(from_png.shape == from_rle.shape and (from_png == from_rle).all()),
        "polygons": len(polygons),
        "polygon_vertices_on_mask": vertices_on_mask,
        "interior_covered_by_polygons": interior_covered,
        "polygon_iou": polygon_iou,
        "rle_bbox": [x, y, x + bw, y + bh],
        "reported_bbox": spec["bbox"],
    }
    ok = (
        report["counts_equal_pycocotools"]
        and report["png_equals_rle"]
        and report["rle_area"] == spec["area"]
        and report["rle_area"] > 0
        and vertices_on_mask
        and interior_covered >= 0.99
        and polygon_iou >= spec.get("min_polygon_iou", 0.0)
        and np.allclose(report["rle_bbox"], spec["bbox"])
    )
    if "truth" in spec:
        truth = np.fromfile(spec["truth"], np.uint8).reshape(h, w) > 0
        report["rle_equals_truth"] = bool((truth == from_rle).all())
        ok = ok and report["rle_equals_truth"]
    print(json.dumps(report))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
