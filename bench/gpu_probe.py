#!/usr/bin/env python3
"""Step 0 of the GPU benchmark: does the CUDA provider keep a convolution's cuDNN plan per
input shape, or only for the last one? The exported graphs straight through onnxruntime,
inputs and outputs bound on the device, medians in milliseconds:

  encoder   the first call of batch 1 and of batch B (8); batch 1 repeated; batch 1 and batch
            B alternating; batch B repeated; with cudnn_conv_algo_search HEURISTIC (what
            samstream uses), then EXHAUSTIVE
  decoder   1 object repeated; 1 and 3 objects alternating (HEURISTIC)

Each section has a time budget (--section-seconds; at least two samples per figure), and the
report is rewritten after every section, so a probe stopped from outside keeps its figures.

If plans are kept per shape, "alternating" costs what "repeated" does; if only the last shape's
plan is kept, every alternating call rebuilds all of them. Every session must run on the
provider asked for: the script fails loudly when onnxruntime fell back to the CPU.

    python3 bench/gpu_probe.py MODEL_DIR OUT.json [--device cuda|cpu] [--runs N] [--alt-batch B]
                               [--section-seconds S]

`--device cpu` runs the same code on the CPU provider (where the search mode means nothing),
to check the script.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from stats import median_ms

PROVIDER = {"cuda": "CUDAExecutionProvider", "cpu": "CPUExecutionProvider"}


def session(path: Path, device: str, search: str | None) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if device == "cuda":
        providers = [("CUDAExecutionProvider", {"device_id": 0, "cudnn_conv_algo_search": search or "HEURISTIC", "use_tf32": 0})]
    else:
        providers = ["CPUExecutionProvider"]
    created = ort.InferenceSession(str(path), options, providers=providers)
    require_provider(created, device)
    return created


def require_provider(created: ort.InferenceSession, device: str) -> None:
    """onnxruntime falls back to the CPU with only a log line when CUDA or cuDNN fail to load."""
    first = created.get_providers()[0]
    if first != PROVIDER[device]:
        raise SystemExit(f"gpu_probe: the session runs on {first}, not {PROVIDER[device]} (CUDA/cuDNN libraries?)")


def run_timed(run) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


class Encoder:
    def __init__(self, path: Path, device: str, search: str | None) -> None:
        self.session = session(path, device, search)
        self.device = device

    def runner(self, batch: int):
        value = ort.OrtValue.ortvalue_from_numpy(np.random.default_rng(batch).standard_normal((batch, 3, 1024, 1024), np.float32), self.device, 0)
        binding = self.session.io_binding()
        binding.bind_ortvalue_input("image", value)
        binding.bind_output("image_embeddings", self.device, 0)

        def run():
            self.session.run_with_iobinding(binding)
            binding.synchronize_outputs()

        return run


class Deadline:
    """A section's time budget: a shape change that rebuilds every plan can cost seconds per
    call, and a probe cut off by its phase's limit reports nothing. Each loop takes at least two
    samples, then stops at the deadline; the samples taken are reported."""

    def __init__(self, seconds: float) -> None:
        self.end = time.perf_counter() + seconds

    def rounds(self, wanted: int):
        for round_index in range(wanted):
            if round_index >= 2 and time.perf_counter() > self.end:
                return
            yield round_index


def encoder_figures(path: Path, device: str, search: str | None, runs: int, alt_batch: int, seconds: float) -> dict:
    encoder = Encoder(path, device, search)
    one, many = encoder.runner(1), encoder.runner(alt_batch)
    first = {"b1_first_ms": run_timed(one) * 1e3, f"b{alt_batch}_first_ms": run_timed(many) * 1e3}
    one()
    deadline = Deadline(seconds)
    repeat = [run_timed(one) for _ in deadline.rounds(runs)]
    alternating_one, alternating_many = [], []
    for _ in deadline.rounds(runs):
        alternating_many.append(run_timed(many))
        alternating_one.append(run_timed(one))
    many()
    many_repeat = [run_timed(many) for _ in deadline.rounds(runs)]
    return {
        **first,
        "b1_repeat_ms": median_ms(repeat),
        "b1_alternating_ms": median_ms(alternating_one),
        f"b{alt_batch}_alternating_ms": median_ms(alternating_many),
        f"b{alt_batch}_repeat_ms": median_ms(many_repeat),
        "samples": {"repeat": len(repeat), "alternating": len(alternating_one), f"b{alt_batch}_repeat": len(many_repeat)},
    }


def decoder_figures(model_dir: Path, device: str, runs: int, seconds: float) -> dict:
    decoder = session(model_dir / "decoder.onnx", device, "HEURISTIC")
    embedding = ort.OrtValue.ortvalue_from_numpy(np.random.default_rng(7).standard_normal((1, 256, 64, 64), np.float32), device, 0)

    def runner(objects: int):
        binding = decoder.io_binding()
        binding.bind_ortvalue_input("image_embeddings", embedding)
        coords = np.tile(np.array([[[500.0, 300.0], [0.0, 0.0]]], np.float32), (objects, 1, 1))
        binding.bind_cpu_input("point_coords", coords)
        binding.bind_cpu_input("point_labels", np.tile(np.array([[1.0, -1.0]], np.float32), (objects, 1)))
        binding.bind_cpu_input("mask_input", np.zeros((objects, 1, 256, 256), np.float32))
        binding.bind_cpu_input("has_mask_input", np.zeros(objects, np.float32))
        binding.bind_output("iou_predictions", "cpu")
        binding.bind_output("low_res_masks", device, 0)

        def run():
            decoder.run_with_iobinding(binding)
            binding.synchronize_outputs()

        return run

    one, three = runner(1), runner(3)
    three()
    one()
    deadline = Deadline(seconds)
    repeat = [run_timed(one) for _ in deadline.rounds(runs * 4)]
    alternating_one, alternating_three = [], []
    for _ in deadline.rounds(runs * 4):
        alternating_three.append(run_timed(three))
        alternating_one.append(run_timed(one))
    return {
        "n1_repeat_ms": median_ms(repeat),
        "n1_alternating_ms": median_ms(alternating_one),
        "n3_alternating_ms": median_ms(alternating_three),
        "samples": {"repeat": len(repeat), "alternating": len(alternating_one)},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--alt-batch", type=int, default=8)
    parser.add_argument("--section-seconds", type=float, default=10.0, help="time budget of each measured section (at least two samples each)")
    args = parser.parse_args()
    report: dict = {"device": args.device, "onnxruntime": ort.__version__, "runs": args.runs, "alt_batch": args.alt_batch, "encoder": {}}

    def encoder_section(search: str | None) -> None:
        name = search or "cpu"
        started = time.perf_counter()
        try:
            report["encoder"][name] = encoder_figures(
                args.model_dir / "encoder.onnx", args.device, search, args.runs, args.alt_batch, args.section_seconds
            )
        except SystemExit:
            raise
        except Exception as e:  # noqa: BLE001 - EXHAUSTIVE is reported to fail outright on some GPUs: a finding, not a crash
            report["encoder"][name] = {"failed": f"{type(e).__name__}: {e}"}
        print(f"[gpu_probe] encoder {name} in {time.perf_counter() - started:.1f} s: {report['encoder'][name]}", file=sys.stderr)

    def decoder_section() -> None:
        report["decoder"] = decoder_figures(args.model_dir, args.device, args.runs, args.section_seconds)
        print(f"[gpu_probe] decoder: {report['decoder']}", file=sys.stderr)

    # What samstream runs first (HEURISTIC), the slower EXHAUSTIVE last; the report is written
    # after every section, so a probe cut off by its limit keeps what it measured.
    sections = [lambda: encoder_section("HEURISTIC"), decoder_section, lambda: encoder_section("EXHAUSTIVE")]
    if args.device != "cuda":
        sections = [lambda: encoder_section(None), decoder_section]
    for section in sections:
        section()
        args.out.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
