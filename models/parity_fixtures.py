"""Reference outputs of the official SamPredictor, written for samstream's parity test.

Four deterministic images cover every resize path of the preprocessing (shrink a wide image,
enlarge a small one, shrink a portrait one by its height, enlarge a square one), and each gets
four prompt sets (a positive point; positive + negative points; a box; a box + a point) with
multimask output off and on. For every case the full-resolution logits
(`SamPredictor.predict(..., return_logits=True)`) are stored as raw little-endian float32,
with their shape and the predicted IoU scores in cases.json.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

IMAGES = {
    "landscape": (1920, 1080),
    "small": (320, 240),
    "portrait": (720, 1280),
    "square": (600, 600),
}


def synthetic_image(width: int, height: int, seed: int) -> np.ndarray:
    """Coloured shapes over gradients plus noise: texture makes resampling differences visible."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.stack(
        [
            255 * xs / width,
            255 * ys / height,
            128 + 100 * np.sin(xs / 37.0) * np.cos(ys / 23.0),
        ],
        axis=-1,
    )
    for _ in range(12):
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        radius = rng.uniform(0.05, 0.25) * min(width, height)
        colour = rng.uniform(0, 255, size=3)
        inside = (xs - cx) ** 2 + (ys - cy) ** 2 < radius**2
        image[inside] = colour
    for _ in range(6):
        x0, y0 = rng.uniform(0, width * 0.8), rng.uniform(0, height * 0.8)
        w, h = rng.uniform(0.05, 0.3) * width, rng.uniform(0.05, 0.3) * height
        inside = (xs >= x0) & (xs < x0 + w) & (ys >= y0) & (ys < y0 + h)
        image[inside] = rng.uniform(0, 255, size=3)
    # Fine gratings (a fence, fabric, text): the detail that a non-antialiased shrink aliases.
    for _ in range(3):
        x0, y0 = rng.uniform(0, width * 0.7), rng.uniform(0, height * 0.7)
        w, h = rng.uniform(0.1, 0.3) * width, rng.uniform(0.1, 0.3) * height
        inside = (xs >= x0) & (xs < x0 + w) & (ys >= y0) & (ys < y0 + h)
        period = rng.uniform(2.2, 3.5)
        grating = 70 * np.sin(2 * np.pi * (xs + 0.6 * ys) / period)
        image[inside] += grating[inside][:, None]
    image += rng.normal(0, 12, size=image.shape)
    return np.clip(image + 0.5, 0, 255).astype(np.uint8)


def prompt_sets(width: int, height: int) -> dict:
    def at(fx: float, fy: float) -> list[float]:
        # Off-grid coordinates exercise the coordinate transform, not just whole pixels.
        return [round(fx * width + 0.37, 2), round(fy * height + 0.61, 2)]

    box = [*at(0.22, 0.3), *at(0.68, 0.74)]
    return {
        "point": {"points": [[*at(0.45, 0.52), 1]], "box": None},
        "points_pos_neg": {"points": [[*at(0.45, 0.52), 1], [*at(0.7, 0.3), 0]], "box": None},
        "box": {"points": [], "box": box},
        "box_point": {"points": [[*at(0.5, 0.5), 1]], "box": box},
    }


def write_fixtures(predictor, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    cases = []
    for seed, (name, (width, height)) in enumerate(IMAGES.items()):
        rgb = synthetic_image(width, height, seed)
        image_file = f"{name}.png"
        Image.fromarray(rgb).save(out / image_file)
        predictor.set_image(rgb, image_format="RGB")
        # The predictor's own resize output, so the Rust side can check its resampling byte for byte.
        Image.fromarray(predictor.transform.apply_image(rgb)).save(out / f"{name}_resized.png")
        for prompt_name, prompt in prompt_sets(width, height).items():
            for multimask in (False, True):
                points = np.array([p[:2] for p in prompt["points"]], dtype=np.float64)
                labels = np.array([p[2] for p in prompt["points"]], dtype=np.int64)
                box = np.array(prompt["box"], dtype=np.float64) if prompt["box"] else None
                logits, scores, _ = predictor.predict(
                    point_coords=points if len(points) else None,
                    point_labels=labels if len(points) else None,
                    box=box,
                    multimask_output=multimask,
                    return_logits=True,
                )
                case = f"{name}_{prompt_name}_{'multi' if multimask else 'single'}"
                logits = np.ascontiguousarray(logits, dtype="<f4")
                logits.tofile(out / f"{case}.f32")
                cases.append(
                    {
                        "name": case,
                        "image": image_file,
                        "resized_image": f"{name}_resized.png",
                        "width": width,
                        "height": height,
                        "points": prompt["points"],
                        "box": prompt["box"],
                        "multimask": multimask,
                        "logits_file": f"{case}.f32",
                        "logits_shape": list(logits.shape),
                        "scores": [float(s) for s in scores],
                    }
                )
    (out / "cases.json").write_text(json.dumps({"cases": cases}, indent=1) + "\n")
