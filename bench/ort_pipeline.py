"""The Python onnxruntime pipeline people write around MobileSAM's ONNX export, done the way
SamPredictor does it (Pillow resize, mean/std, bottom-right pad, ResizeLongestSide coordinates,
bilinear upscaling of the low-res logits, threshold at 0, COCO RLE). The baseline samstream is
measured against, and the harness for the int8 encoder's fidelity check.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
import torch.nn.functional as F
from PIL import Image

IMAGE_SIZE = 1024
MEAN = np.array([123.675, 116.28, 103.53], np.float32)
STD = np.array([58.395, 57.12, 57.375], np.float32)


def resized_size(height: int, width: int) -> tuple[int, int]:
    scale = IMAGE_SIZE / max(height, width)
    return int(height * scale + 0.5), int(width * scale + 0.5)


def coco_rle(masks: np.ndarray):
    """pycocotools' RLE of `[H, W, N]` masks, or None where pycocotools is not installed (the
    GPU machines): the encoding is then left out of the pipeline's time."""
    try:
        from pycocotools import mask as mask_utils
    except ImportError:
        return None
    return mask_utils.encode(np.asfortranarray(masks))


class OrtPipeline:
    def __init__(self, model_dir: Path, encoder_file: str = "encoder.onnx", threads: int = 0, providers: list | None = None) -> None:
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        providers = providers or ["CPUExecutionProvider"]
        self.encoder = ort.InferenceSession(str(model_dir / encoder_file), options, providers=providers)
        self.decoder = ort.InferenceSession(str(model_dir / "decoder.onnx"), options, providers=providers)

    @staticmethod
    def preprocess(rgb: np.ndarray) -> np.ndarray:
        h, w = rgb.shape[:2]
        nh, nw = resized_size(h, w)
        resized = np.asarray(Image.fromarray(rgb).resize((nw, nh), Image.BILINEAR), np.float32)
        tensor = np.zeros((1, 3, IMAGE_SIZE, IMAGE_SIZE), np.float32)
        tensor[0, :, :nh, :nw] = ((resized - MEAN) / STD).transpose(2, 0, 1)
        return tensor

    def encode(self, tensor: np.ndarray) -> np.ndarray:
        return self.encoder.run(None, {"image": tensor})[0]

    def decode(self, embedding: np.ndarray, size: tuple[int, int], objects: list[dict]) -> tuple[np.ndarray, np.ndarray]:
        """objects: {"points": [[x, y, label]], "box": [x0, y0, x1, y1] | None}, all with the
        same number of prompt tokens (one decoder call for all of them)."""
        h, w = size
        nh, nw = resized_size(h, w)
        scale = np.array([nw / w, nh / h], np.float32)
        coords, labels = [], []
        for obj in objects:
            pts = [[p[0], p[1]] for p in obj["points"]]
            lab = [float(p[2]) for p in obj["points"]]
            if obj.get("box") is not None:
                x0, y0, x1, y1 = obj["box"]
                pts += [[x0, y0], [x1, y1]]
                lab += [2.0, 3.0]
            else:
                pts.append([0.0, 0.0])
                lab.append(-1.0)
            coords.append(np.array(pts, np.float32) * scale)
            labels.append(np.array(lab, np.float32))
        n = len(objects)
        iou, low_res = self.decoder.run(
            None,
            {
                "image_embeddings": embedding,
                "point_coords": np.stack(coords),
                "point_labels": np.stack(labels),
                "mask_input": np.zeros((n, 1, 256, 256), np.float32),
                "has_mask_input": np.zeros(n, np.float32),
            },
        )
        return iou, low_res

    @staticmethod
    def upscale(low_res: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        h, w = size
        nh, nw = resized_size(h, w)
        logits = F.interpolate(torch.from_numpy(low_res), (IMAGE_SIZE, IMAGE_SIZE), mode="bilinear", align_corners=False)
        logits = F.interpolate(logits[..., :nh, :nw], (h, w), mode="bilinear", align_corners=False)
        return logits.numpy()

    def segment(self, rgb: np.ndarray, objects: list[dict]) -> dict:
        """One frame end to end, with the stage times in seconds."""
        times = {}
        t = time.perf_counter()
        tensor = self.preprocess(rgb)
        times["preprocess"] = time.perf_counter() - t
        t = time.perf_counter()
        embedding = self.encode(tensor)
        times["encoder"] = time.perf_counter() - t
        t = time.perf_counter()
        iou, low_res = self.decode(embedding, rgb.shape[:2], objects)
        times["decoder"] = time.perf_counter() - t
        t = time.perf_counter()
        # Single-mask output (token 0), as samstream returns it by default.
        logits = self.upscale(low_res[:, :1], rgb.shape[:2])
        rles = coco_rle((logits[:, 0] > 0).transpose(1, 2, 0).astype(np.uint8))
        times["postprocess"] = time.perf_counter() - t
        return {"times": times, "rles": rles, "iou": iou}
