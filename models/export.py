#!/usr/bin/env python3
"""Export MobileSAM (the official code, PyPI `mobilesam-mirror`) to the ONNX pair samstream serves.

    python3 models/export.py (--checkpoint PATH [--checkpoint-url URL] | --random-init [--seed N]) --out DIR
                             [--parity-fixtures [--everything-fixtures]] [--int8] [--fp16]

Writes DIR/encoder.onnx, DIR/decoder.onnx, DIR/decoder_shared.onnx (the decoder for prompts
without a mask input, with the image side's prompt-independent work done once per call) and
DIR/manifest.json; with --parity-fixtures also
DIR/parity/ (images, prompts and the reference logits of the official SamPredictor on the very
same weights, and the official SamAutomaticMaskGenerator's masks in DIR/parity/everything/),
which the Rust parity tests compare against. See models/README.md for the I/O
contract. Random-init weights have MobileSAM's exact architecture, cost and I/O but produce
meaningless masks. --int8 also writes DIR/encoder_int8.onnx: the encoder with its MatMul/Gemm
weights quantised to int8 and activations quantised on the fly (onnxruntime's dynamic
quantisation), served with `samstream serve --encoder-precision int8`. --fp16 also writes
DIR/encoder_fp16.onnx: the encoder in float16 with float32 input and output, for GPUs
(`--encoder-precision fp16`). Neither is exact; their fidelity is in BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

warnings.filterwarnings("ignore", category=UserWarning)
warnings.filterwarnings("ignore", category=FutureWarning)

from mobile_sam import SamPredictor, sam_model_registry  # noqa: E402
from mobile_sam.utils.onnx import SamOnnxModel  # noqa: E402

OPSET = 17
IMAGE_SIZE = 1024
EMBEDDING_SHAPE = (1, 256, 64, 64)
# Seeded random weights give logits within about +-0.3 and IoU predictions within a few
# thousandths of each other; scaling the last layer of the mask hypernetworks and of the IoU
# head spreads them over several units, so masks have structure and score order is stable.
DEFAULT_RANDOM_INIT_GAIN = 24.0


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def build_model(args: argparse.Namespace) -> tuple[nn.Module, dict]:
    if args.checkpoint:
        model = sam_model_registry["vit_t"]()
        state = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
        if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
            state = state["model"]
        model.load_state_dict(state, strict=True)
        provenance = {
            "kind": "official_checkpoint",
            "checkpoint": os.path.basename(args.checkpoint),
            "checkpoint_sha256": sha256_file(Path(args.checkpoint)),
            "meaningful_masks": True,
        }
        if args.checkpoint_url:
            provenance["checkpoint_url"] = args.checkpoint_url
    else:
        torch.manual_seed(args.seed)
        model = sam_model_registry["vit_t"]()
        with torch.no_grad():
            decoder = model.mask_decoder
            for mlp in decoder.output_hypernetworks_mlps:
                mlp.layers[-1].weight.mul_(args.gain)
                mlp.layers[-1].bias.mul_(args.gain)
            decoder.iou_prediction_head.layers[-1].weight.mul_(args.gain)
            decoder.iou_prediction_head.layers[-1].bias.mul_(args.gain)
        provenance = {
            "kind": "random_init",
            "seed": args.seed,
            "hypernetwork_gain": args.gain,
            "meaningful_masks": False,
            "warning": "seeded random weights: exact MobileSAM architecture, cost and I/O, "
            "but the masks mean nothing",
        }
    model.eval()
    return model, provenance


def allow_dynamic_batch() -> None:
    """TinyViT's PatchMerging reads the batch size with len(x), which tracing records as the
    constant 1; reading it from the shape keeps the exported encoder's batch axis dynamic, so
    the server can encode several streams' frames in one call. Same arithmetic otherwise."""
    from mobile_sam.modeling import tiny_vit_sam

    def forward(self, x):
        if x.ndim == 3:
            height, width = self.input_resolution
            x = x.view(x.shape[0], height, width, -1).permute(0, 3, 1, 2)
        x = self.act(self.conv1(x))
        x = self.act(self.conv2(x))
        x = self.conv3(x)
        return x.flatten(2).transpose(1, 2)

    tiny_vit_sam.PatchMerging.forward = forward


class Encoder(nn.Module):
    """TinyViT image encoder on an already normalised, zero-padded 1024x1024 image."""

    def __init__(self, sam: nn.Module) -> None:
        super().__init__()
        self.image_encoder = sam.image_encoder

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.image_encoder(image)


class Decoder(SamOnnxModel):
    """Prompt encoder + mask decoder for a batch of N objects with P prompt tokens each.

    Returns all four mask tokens' low-res logits and IoU predictions, leaving token choice and
    upscaling to the server (it upscales only what it returns). Points use SamPredictor's
    labels (1 positive, 0 negative); box corners are labels 2 and 3; a prompt without a box
    carries one padding point with label -1, exactly as SamPredictor pads it.
    """

    def __init__(self, sam: nn.Module) -> None:
        super().__init__(sam, return_single_mask=False)

    def forward(  # type: ignore[override]
        self,
        image_embeddings: torch.Tensor,
        point_coords: torch.Tensor,
        point_labels: torch.Tensor,
        mask_input: torch.Tensor,
        has_mask_input: torch.Tensor,
    ):
        sparse_embedding = self._embed_points(point_coords, point_labels)
        dense_embedding = self._embed_masks(mask_input, has_mask_input.reshape(-1, 1, 1, 1))
        low_res_masks, iou_predictions = self.model.mask_decoder.predict_masks(
            image_embeddings=image_embeddings,
            image_pe=self.model.prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse_embedding,
            dense_prompt_embeddings=dense_embedding,
        )
        return iou_predictions, low_res_masks


class SharedDecoder(SamOnnxModel):
    """The decoder for prompts without a mask input, doing the image side's prompt-independent
    work once per call instead of once per object: SamPredictor repeats the embedding for every
    object (`repeat_interleave`) although, without mask inputs, every object's copy is the same,
    and so are the first transformer layer's projections of it. Here the embedding keeps batch
    1 and broadcasts against the objects; the arithmetic per object is the same (the outputs are
    bit-identical to `Decoder`'s in PyTorch and in onnxruntime). Segment everything's grid
    points, and any request whose objects carry no mask input, run on it."""

    def __init__(self, sam: nn.Module) -> None:
        super().__init__(sam, return_single_mask=False)

    def forward(self, image_embeddings: torch.Tensor, point_coords: torch.Tensor, point_labels: torch.Tensor):  # type: ignore[override]
        decoder = self.model.mask_decoder
        sparse_embedding = self._embed_points(point_coords, point_labels)
        dense_embedding = self.model.prompt_encoder.no_mask_embed.weight.reshape(1, -1, 1, 1)
        # MaskDecoder.predict_masks without repeating the embedding per object.
        output_tokens = torch.cat([decoder.iou_token.weight, decoder.mask_tokens.weight], dim=0)
        output_tokens = output_tokens.unsqueeze(0).expand(sparse_embedding.size(0), -1, -1)
        tokens = torch.cat((output_tokens, sparse_embedding), dim=1)
        src = image_embeddings + dense_embedding
        channels, height, width = src.shape[1:]
        hs, src = decoder.transformer(src, self.model.prompt_encoder.get_dense_pe(), tokens)
        iou_token_out = hs[:, 0, :]
        mask_tokens_out = hs[:, 1 : (1 + decoder.num_mask_tokens), :]
        src = src.transpose(1, 2).reshape(tokens.shape[0], channels, height, width)
        upscaled = decoder.output_upscaling(src)
        hyper_in = torch.stack(
            [decoder.output_hypernetworks_mlps[i](mask_tokens_out[:, i, :]) for i in range(decoder.num_mask_tokens)], dim=1
        )
        b, c, h, w = upscaled.shape
        low_res_masks = (hyper_in @ upscaled.view(b, c, h * w)).view(b, -1, h, w)
        return decoder.iou_prediction_head(iou_token_out), low_res_masks


def export_encoder(sam: nn.Module, path: Path) -> None:
    allow_dynamic_batch()
    dummy = torch.randn(1, 3, IMAGE_SIZE, IMAGE_SIZE)
    torch.onnx.export(
        Encoder(sam).eval(),
        (dummy,),
        str(path),
        input_names=["image"],
        output_names=["image_embeddings"],
        dynamic_axes={"image": {0: "batch"}, "image_embeddings": {0: "batch"}},
        opset_version=OPSET,
        do_constant_folding=True,
        dynamo=False,
    )


def export_decoder(sam: nn.Module, path: Path) -> None:
    objects, points = 2, 3
    inputs = (
        torch.randn(*EMBEDDING_SHAPE),
        torch.randint(0, IMAGE_SIZE, (objects, points, 2), dtype=torch.float),
        torch.randint(-1, 4, (objects, points), dtype=torch.float),
        torch.randn(objects, 1, 256, 256),
        torch.zeros(objects),
    )
    torch.onnx.export(
        Decoder(sam).eval(),
        inputs,
        str(path),
        input_names=["image_embeddings", "point_coords", "point_labels", "mask_input", "has_mask_input"],
        output_names=["iou_predictions", "low_res_masks"],
        dynamic_axes={
            "point_coords": {0: "objects", 1: "points"},
            "point_labels": {0: "objects", 1: "points"},
            "mask_input": {0: "objects"},
            "has_mask_input": {0: "objects"},
            "iou_predictions": {0: "objects"},
            "low_res_masks": {0: "objects"},
        },
        opset_version=OPSET,
        do_constant_folding=True,
        dynamo=False,
    )


def export_shared_decoder(sam: nn.Module, path: Path) -> None:
    objects, points = 2, 3
    inputs = (
        torch.randn(*EMBEDDING_SHAPE),
        torch.randint(0, IMAGE_SIZE, (objects, points, 2), dtype=torch.float),
        torch.randint(-1, 4, (objects, points), dtype=torch.float),
    )
    torch.onnx.export(
        SharedDecoder(sam).eval(),
        inputs,
        str(path),
        input_names=["image_embeddings", "point_coords", "point_labels"],
        output_names=["iou_predictions", "low_res_masks"],
        dynamic_axes={
            "point_coords": {0: "objects", 1: "points"},
            "point_labels": {0: "objects", 1: "points"},
            "iou_predictions": {0: "objects"},
            "low_res_masks": {0: "objects"},
        },
        opset_version=OPSET,
        do_constant_folding=True,
        dynamo=False,
    )


def quantize_encoder(out: Path) -> None:
    """Dynamic int8 quantisation of the encoder's MatMul/Gemm weights. Convolutions stay fp32:
    their weights are folded from BatchNorm at run time and quantising them was slower here."""
    import tempfile

    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "encoder_prepared.onnx"
        quant_pre_process(str(out / "encoder.onnx"), str(prepared), skip_symbolic_shape=True)
        quantize_dynamic(
            str(prepared),
            str(out / "encoder_int8.onnx"),
            weight_type=QuantType.QInt8,
            op_types_to_quantize=["MatMul", "Gemm"],
        )


def convert_encoder_fp16(out: Path) -> None:
    """Float16 weights and activations, float32 input and output (onnxruntime's own converter,
    which keeps in float32 the operators it knows to lose too much in float16)."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(out / "encoder.onnx"))
    onnx.save(convert_float_to_float16(model, keep_io_types=True), str(out / "encoder_fp16.onnx"))


def check_against_torch(sam: nn.Module, out: Path) -> dict:
    """Runs both exports in onnxruntime and reports their largest deviation from PyTorch."""
    import onnxruntime as ort

    rng = np.random.default_rng(0)
    image = rng.standard_normal((1, 3, IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
    encoder = ort.InferenceSession(str(out / "encoder.onnx"), providers=["CPUExecutionProvider"])
    embedding = encoder.run(None, {"image": image})[0]
    with torch.no_grad():
        reference = sam.image_encoder(torch.from_numpy(image)).numpy()
    decoder = ort.InferenceSession(str(out / "decoder.onnx"), providers=["CPUExecutionProvider"])
    feeds = {
        "image_embeddings": reference,
        "point_coords": np.array([[[100.0, 200.0], [0.0, 0.0]], [[10.0, 20.0], [700.0, 600.0]]], np.float32),
        "point_labels": np.array([[1.0, -1.0], [2.0, 3.0]], np.float32),
        "mask_input": np.zeros((2, 1, 256, 256), np.float32),
        "has_mask_input": np.zeros(2, np.float32),
    }
    iou, logits = decoder.run(None, feeds)
    with torch.no_grad():
        torch_iou, torch_logits = Decoder(sam)(*(torch.from_numpy(v) for v in feeds.values()))
    shared = ort.InferenceSession(str(out / "decoder_shared.onnx"), providers=["CPUExecutionProvider"])
    shared_iou, shared_logits = shared.run(None, {k: feeds[k] for k in ("image_embeddings", "point_coords", "point_labels")})
    return {
        "encoder_max_abs_diff": float(np.abs(embedding - reference).max()),
        "decoder_logits_max_abs_diff": float(np.abs(logits - torch_logits.numpy()).max()),
        "decoder_iou_max_abs_diff": float(np.abs(iou - torch_iou.numpy()).max()),
        # The shared decoder against the per-object one, both in onnxruntime.
        "shared_decoder_logits_max_abs_diff": float(np.abs(shared_logits - logits).max()),
        "shared_decoder_iou_max_abs_diff": float(np.abs(shared_iou - iou).max()),
    }


def write_manifest(args: argparse.Namespace, out: Path, provenance: dict, check: dict) -> None:
    import onnx
    import onnxruntime

    manifest = {
        "model": "MobileSAM (TinyViT-5M encoder, SAM prompt encoder and mask decoder)",
        "provenance": provenance,
        "image_size": IMAGE_SIZE,
        "pixel_mean": [123.675, 116.28, 103.53],
        "pixel_std": [58.395, 57.12, 57.375],
        "opset": OPSET,
        "files": {
            name: {"sha256": sha256_file(out / name), "bytes": (out / name).stat().st_size}
            for name in ("encoder.onnx", "encoder_int8.onnx", "encoder_fp16.onnx", "decoder.onnx", "decoder_shared.onnx")
            if (out / name).exists()
        },
        "export_check": check,
        "exporter": {
            "script_sha256": sha256_file(Path(__file__)),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__,
            "mobile_sam": "mobilesam-mirror",
        },
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="the official mobile_sam.pt (a state_dict)")
    source.add_argument("--random-init", action="store_true", help="seeded random weights (meaningless masks)")
    parser.add_argument("--seed", type=int, default=0, help="seed for --random-init")
    parser.add_argument("--checkpoint-url", help="where --checkpoint was downloaded from (recorded in the manifest)")
    parser.add_argument(
        "--gain",
        type=float,
        default=DEFAULT_RANDOM_INIT_GAIN,
        help="scale of the hypernetwork and IoU head outputs for --random-init",
    )
    parser.add_argument("--int8", action="store_true", help="also write encoder_int8.onnx (dynamic quantisation)")
    parser.add_argument("--fp16", action="store_true", help="also write encoder_fp16.onnx (float16, for GPUs)")
    parser.add_argument("--out", required=True, type=Path, help="output directory")
    parser.add_argument(
        "--parity-fixtures",
        action="store_true",
        help="also write DIR/parity/: the official SamPredictor's logits for the parity test",
    )
    parser.add_argument(
        "--everything-fixtures",
        action="store_true",
        help="with --parity-fixtures, also the official SamAutomaticMaskGenerator's masks (DIR/parity/everything/; minutes)",
    )
    args = parser.parse_args()

    warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    args.out.mkdir(parents=True, exist_ok=True)
    sam, provenance = build_model(args)
    export_encoder(sam, args.out / "encoder.onnx")
    export_decoder(sam, args.out / "decoder.onnx")
    export_shared_decoder(sam, args.out / "decoder_shared.onnx")
    # The exporter restores each wrapper's training flag afterwards; a wrapper left in training
    # mode would put TinyViT's BatchNorms in batch-statistics mode for the reference below.
    sam.eval()
    assert not any(m.training for m in sam.modules()), "reference model must be in eval mode"
    check = check_against_torch(sam, args.out)
    if args.int8:
        quantize_encoder(args.out)
    if args.fp16:
        convert_encoder_fp16(args.out)
    write_manifest(args, args.out, provenance, check)
    print(f"exported {provenance['kind']} MobileSAM to {args.out}: {json.dumps(check)}", file=sys.stderr)
    if args.parity_fixtures:
        from parity_fixtures import write_fixtures

        write_fixtures(SamPredictor(sam), args.out / "parity")
        if args.everything_fixtures:
            from everything_fixtures import write_everything_fixtures

            write_everything_fixtures(sam, args.out / "parity")
    return 0


if __name__ == "__main__":
    sys.exit(main())
