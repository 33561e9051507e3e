#!/usr/bin/env python3
"""Turns one scripts/gpu_bench.sh run (OUT/rows/*.json, OUT/facts.json) into OUT/gpu_bench.md,
the table for BENCHMARKS.md, and OUT/gpu_bench.json; prints the table. Every figure comes from
that one run; each goal is checked against the figure of that run that measures it."""

from __future__ import annotations

import argparse
import datetime
import json
from pathlib import Path

from sections import replace


def load(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        return {"failed": f"{path.name}: {e}"}


def fmt(value, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


class Report:
    def __init__(self, out: Path) -> None:
        self.out = out
        self.rows = {p.stem: load(p) for p in sorted((out / "rows").glob("*.json"))}
        self.python = self.rows.pop("python", {})
        self.probe = self.rows.pop("probe", {})
        self.parity_reference = self.rows.pop("parity_reference", {})
        self.facts = load(out / "facts.json")
        self.parity = {p.stem.removeprefix("parity_"): [json.loads(line) for line in p.read_text().splitlines() if line.strip()]
                       for p in sorted((out / "rows").glob("parity_*.jsonl"))}
        self.checks: list[tuple[str, str, bool | None]] = []

    def bench(self, name: str) -> dict:
        return self.rows.get(name) or {"failed": "not run"}

    def p50(self, name: str) -> float | None:
        return self.bench(name).get("latency_ms", {}).get("p50")

    def rate(self, name: str) -> float | None:
        return self.bench(name).get("per_second")

    def stages(self, name: str) -> str:
        stages = self.bench(name).get("stages_ms", {})
        order = ["capture", "preprocess", "upload", "queue", "encoder", "decoder", "postprocess", "download"]
        shown = [f"{s} {stages[s]['p50']:.1f}" for s in order if s in stages and stages[s]["p50"] > 0]
        return ", ".join(shown) if shown else self.bench(name).get("failed", "-")

    def raw(self, mode: str, key: str) -> float | None:
        return self.python.get("raw_ort", {}).get(mode, {}).get(key)

    def torch(self, key: str) -> float | None:
        return self.python.get("pytorch", {}).get(key)

    def check(self, what: str, measured: str, met: bool | None) -> None:
        self.checks.append((what, measured, met))

    def render(self, command: str) -> str:
        f = self.facts
        lines = [
            f"## GPU: {f.get('gpu', '?')} (`{command}`, {f.get('date') or self.run_date()})",
            "",
            f"Device `{f.get('device')}`; onnxruntime {f.get('onnxruntime')} ({', '.join(f.get('providers', []))}); "
            f"CUDA runtime {f.get('nvidia-cuda-runtime', '?')}, cuDNN {f.get('nvidia-cudnn-cu13', '?')}, cuBLAS {f.get('nvidia-cublas', '?')} (the machine's Python packages); "
            f"torch {f.get('torch')} (CUDA {f.get('torch_cuda_version')}, cuDNN {f.get('torch_cudnn')}; timm {f.get('timm')}, torchvision {f.get('torchvision')}); fp16 encoder: {'yes' if f.get('fp16_encoder') else 'not available'}"
            + ("; **QUICK run (a few requests per row): plumbing check, not figures**" if f.get("quick") else "")
            + ". 1280x720 JPEG, one point per object unless said; medians (p50). Seeded random weights.",
            "",
            *self.smi_lines(),
            *self.probe_lines(),
            "### Latency, one caller (ms)",
            "",
            "| what | samstream p50 | samstream stages (p50) | same graphs, raw ORT | PyTorch SamPredictor |",
            "|---|---:|---|---:|---:|",
        ]
        enc_bound, enc_host, dec1, dec8 = (self.raw("exact", k) for k in ("encoder_io_binding_ms", "encoder_host_arrays_ms", "decoder_1_ms", "decoder_8_ms"))
        raw1 = None if enc_bound is None or dec1 is None else enc_bound + dec1
        raw8 = None if enc_bound is None or dec8 is None else enc_bound + dec8
        rows = [
            ("Segment from a JPEG, 1 object", "segment_jpeg_1", raw1, self.torch("segment_1_ms")),
            ("Segment from raw RGB, 1 object", "segment_raw_1", raw1, None),
            ("Segment from a JPEG, 8 objects", "segment_jpeg_8", raw8, self.torch("segment_8_ms")),
            ("Segment from raw RGB, 8 objects", "segment_raw_8", raw8, None),
            ("Segment from a JPEG, 8 objects, exact shapes (before)", "segment_jpeg_8_exact_shapes", raw8, None),
            ("prompt update, 1 object", "prompt_1", dec1, None),
            ("prompt update, 8 objects", "prompt_8", dec8, None),
            ("Segment everything (32x32 points) from a JPEG", "everything", None, None),
            ("host data path: Segment from a JPEG, 1 object", "segment_jpeg_1_host", raw1, None),
            ("host data path: Segment from a JPEG, 8 objects", "segment_jpeg_8_host", raw8, None),
            ("host data path: prompt update, 1 object", "prompt_1_host", dec1, None),
            ("TF32: Segment from a JPEG, 1 object", "segment_jpeg_1_tf32", None, None),
            ("fp16 encoder: Segment from a JPEG, 1 object", "segment_jpeg_1_fp16", None, None),
        ]
        for what, name, raw, torch in rows:
            lines.append(f"| {what} | {fmt(self.p50(name))} | {self.stages(name)} | {fmt(raw)} | {fmt(torch)} |")
        lines += [
            "",
            f"Raw ORT (exact): encoder {fmt(enc_host)} ms with host arrays, {fmt(enc_bound)} ms with input and output "
            f"bound on the device; decoder {fmt(dec1)} (1 object) / {fmt(dec8)} (8 objects). Python onnxruntime pipeline "
            f"on the same device: {fmt(self.python.get('pipeline', {}).get('total_ms'))} ms per frame "
            f"({', '.join(f'{k} {v:.1f}' for k, v in self.python.get('pipeline', {}).get('stages_ms', {}).items())}).",
            "",
            "### Throughput",
            "",
            "| what | results/s | p50 ms | notes |",
            "|---|---:|---:|---|",
        ]
        for what, name, note in [
            ("8 concurrent Segment callers, batching off", "callers8_batch1", ""),
            ("8 concurrent Segment callers, batching on (auto)", "callers8_batch_auto", ""),
            ("8 callers, batching on, exact shapes (before the fixed shapes)", "callers8_exact_shapes", ""),
            ("8 callers, TF32", "callers8_tf32", ""),
            ("8 callers, fp16 encoder", "callers8_fp16", ""),
            ("120 fps source, one viewer", "source120", "p50 is the server's total per result"),
            ("four viewers, four 30 fps sources", "sources30x4", "per viewer: " + ", ".join(f"{r:.1f}" for r in self.bench("sources30x4").get("per_stream_per_second", []))),
        ]:
            lines.append(f"| {what} | {fmt(self.rate(name))} | {fmt(self.p50(name))} | {note or self.bench(name).get('failed', '')} |")
        lines.append(
            f"\nEncoder in batches of 8, per image: raw ORT exact {fmt(self.raw('exact', 'encoder_batch8_per_image_ms'))}, "
            f"TF32 {fmt(self.raw('tf32', 'encoder_batch8_per_image_ms'))}, fp16 {fmt(self.raw('fp16', 'encoder_batch8_per_image_ms'))} ms; "
            f"PyTorch float32 {fmt(self.torch('encoder_batch8_fp32_per_image_ms'))}, bfloat16 {fmt(self.torch('encoder_batch8_bf16_per_image_ms'))} ms."
        )
        lines += ["", "### Fidelity against the official predictor (float32, TF32 off) on this device", ""]
        lines += ["| mode | logit correlation (ORT graphs) | sign disagreement (ORT graphs) | sign disagreement (samstream's masks) |", "|---|---:|---:|---:|"]
        fidelity = self.python.get("fidelity", {})
        for mode in ("exact", "tf32", "fp16", "host"):
            ort_side = fidelity.get(f"ort_{mode}", {})
            served = fidelity.get(f"samstream_{mode}", {})
            if ort_side or served:
                lines.append(
                    f"| {mode} | {fmt(ort_side.get('correlation'), 7)} | {fmt(ort_side.get('sign_disagreement_pct'), 4)}% | "
                    f"{fmt(served.get('sign_disagreement_pct'), 4)}% |"
                )
        lines += self.parity_lines()
        self.targets()
        lines += ["", "### Goals", "", "| goal | measured | met |", "|---|---:|:---:|"]
        for what, measured, met in self.checks:
            lines.append(f"| {what} | {measured} | {'-' if met is None else ('yes' if met else '**no**')} |")
        startup = {p.stem.removesuffix("_startup_s"): p.read_text().strip() for p in (self.out / "rows").glob("*_startup_s.txt")}
        lines += ["", "Server start to SERVING (load + warm-up of every shape), s: " + ", ".join(f"{k} {v}" for k, v in sorted(startup.items()))]
        phases = {p.stem.removeprefix("phase_").removesuffix("_s"): p.read_text().strip() for p in (self.out / "rows").glob("phase_*_s.txt")}
        lines += ["", "Phases (wall time, s): " + ", ".join(f"{k} {v}" for k, v in phases.items())]
        failed = {k: v["failed"] for k, v in {**self.rows, "python": self.python, "probe": self.probe}.items() if isinstance(v, dict) and "failed" in v}
        for section in ("raw_ort", "pipeline", "pytorch", "fidelity"):
            if "failed" in self.python.get(section, {}):
                failed[f"python.{section}"] = self.python[section]["failed"]
        if failed:
            lines += ["", "Not measured: " + "; ".join(f"{k}: {v}" for k, v in failed.items())]
        return "\n".join(lines) + "\n"

    def parity_lines(self) -> list[str]:
        """samstream's own pipeline on the parity fixtures (tests/parity.rs on this device)."""
        if not self.parity:
            return ["", "Parity fixtures through samstream: not run."]
        lines = [
            "",
            "### Parity fixtures through samstream on this device, against the official predictor's logits",
            "",
            "Four images x sixteen prompt sets x single/multimask, the contract of the test suite (correlation >= 0.9999, "
            "sign disagreement <= 0.1% of confident pixels, same mask order); the device data path returns masks, so only "
            "their signs are compared." + self.reference_line(),
            "",
            "| mode | data path | cases | failing | min correlation | median sign disagreement | max sign disagreement |",
            "|---|---|---:|---:|---:|---:|---:|",
        ]
        for mode, entries in self.parity.items():
            for e in entries:
                lines.append(
                    f"| {mode} | {e.get('data_path')} | {e.get('cases')} | {e.get('failing')} | {fmt(e.get('min_correlation'), 7)} | "
                    f"{fmt(e.get('median_sign_disagreement_pct'), 4)}% | {fmt(e.get('max_sign_disagreement_pct'), 4)}% |"
                )
        return lines

    def run_date(self) -> str:
        """When the run wrote its facts (runs before the date was recorded)."""
        written = (self.out / "facts.json").stat().st_mtime if (self.out / "facts.json").exists() else datetime.datetime.now().timestamp()
        return f"{datetime.datetime.fromtimestamp(written, datetime.timezone.utc):%Y-%m-%d %H:%M} UTC"

    def smi_lines(self) -> list[str]:
        """nvidia-smi's own header (driver and CUDA version) and the device's line."""
        try:
            text = (self.out / "logs" / "nvidia-smi.txt").read_text().splitlines()
        except OSError:
            return []
        kept = [line.strip(" |") for line in text if "Driver Version" in line or "NVIDIA H" in line or "NVIDIA A" in line]
        return ["nvidia-smi: " + "; ".join(" ".join(line.split()) for line in kept), ""] if kept else []

    def reference_line(self) -> str:
        check = self.parity_reference.get("check")
        if not self.parity_reference:
            return " Reference: the export's fixtures."
        if not check:
            return f" Reference: written on this machine (PyTorch {self.parity_reference.get('torch')}, CPU float32), not checked."
        return (
            f" Reference: written on this machine (PyTorch {self.parity_reference.get('torch')}, CPU float32); against the export's own "
            f"fixtures for {check.get('cases')} cases: max abs difference {check.get('max_abs_difference')}, "
            f"{'the same model' if check.get('matches') else '**another model**'}."
        )

    def probe_lines(self) -> list[str]:
        """Step 0: the graphs alone in onnxruntime, shapes repeated against shapes alternating."""
        encoder, decoder = self.probe.get("encoder", {}), self.probe.get("decoder", {})
        if not encoder and not decoder:
            phase = (self.out / "rows" / "phase_probe_s.txt")
            ran = f"ran {phase.read_text().strip()} s and wrote nothing" if phase.exists() else "not run"
            return ["### Step 0: does the CUDA provider keep a plan per shape?", "", f"Not measured: the probe {ran}.", ""]
        b = self.probe.get("alt_batch", 8)
        lines = [
            "### Step 0: does the CUDA provider keep a plan per shape? (onnxruntime alone, device-bound, ms)",
            "",
            f"| encoder search | first call, batch 1 / {b} | batch 1 repeated | batch 1, alternating with {b} | batch {b}, alternating with 1 | batch {b} repeated |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for search, row in encoder.items():
            if "failed" in row:
                lines.append(f"| {search} | failed: {row['failed'][:120]} | | | | |")
                continue
            lines.append(
                f"| {search} | {fmt(row.get('b1_first_ms'))} / {fmt(row.get(f'b{b}_first_ms'))} | "
                f"{fmt(row.get('b1_repeat_ms'))} | {fmt(row.get('b1_alternating_ms'))} | "
                f"{fmt(row.get(f'b{b}_alternating_ms'))} | {fmt(row.get(f'b{b}_repeat_ms'))} |"
            )
        lines += [
            "",
            f"Decoder (HEURISTIC): 1 object repeated {fmt(decoder.get('n1_repeat_ms'), 2)}; alternating 1 and 3 objects: "
            f"{fmt(decoder.get('n1_alternating_ms'), 2)} (1) / {fmt(decoder.get('n3_alternating_ms'), 2)} (3).",
            "",
        ]
        return lines

    def targets(self) -> None:
        def le(value, limit):
            return None if value is None else value <= limit

        jpeg, raw, prompt, eight = self.p50("segment_jpeg_1"), self.p50("segment_raw_1"), self.p50("prompt_1"), self.p50("segment_jpeg_8")
        torch1 = self.torch("segment_1_ms")
        self.check("Segment from a JPEG, 1 object, p50 <= 20 ms", fmt(jpeg), le(jpeg, 20))
        self.check("... and faster than PyTorch SamPredictor on the same JPEG", f"{fmt(jpeg)} vs {fmt(torch1)}", None if jpeg is None or torch1 is None else jpeg < torch1)
        self.check("Segment from raw RGB, 1 object, <= 12 ms (moonshot 8)", fmt(raw), le(raw, 12))
        self.check("prompt update, 1 object, p50 <= 5 ms", fmt(prompt), le(prompt, 5))
        self.check("Segment, 8 objects, p50 <= 25 ms", fmt(eight), le(eight, 25))
        b1, b8 = self.rate("callers8_batch1"), self.rate("callers8_batch_auto")
        self.check("8 callers, exact fp32, >= 200 images/s", fmt(max(filter(None, [b1, b8]), default=None)), None if b1 is None and b8 is None else max(filter(None, [b1, b8])) >= 200)
        self.check("batching on >= batching off (exact)", f"{fmt(b8)} vs {fmt(b1)}", None if b1 is None or b8 is None else b8 >= b1)
        before = self.rate("callers8_exact_shapes")
        self.check("fixed shapes >= exact shapes, 8 callers (after vs before)", f"{fmt(b8)} vs {fmt(before)}", None if b8 is None or before is None else b8 >= before)
        fast = max(filter(None, [self.rate("callers8_tf32"), self.rate("callers8_fp16")]), default=None)
        self.check("8 callers, fast mode, >= 300 images/s", fmt(fast), None if fast is None else fast >= 300)
        s120, l120 = self.rate("source120"), self.p50("source120")
        self.check("120 fps source: >= 110 results/s, p50 <= 25 ms", f"{fmt(s120)}/s, {fmt(l120)} ms", None if s120 is None or l120 is None else s120 >= 110 and l120 <= 25)
        viewers = self.bench("sources30x4").get("per_stream_per_second", [])
        self.check("four 30 fps sources: every viewer at the source rate (>= 29/s)", ", ".join(f"{v:.1f}" for v in viewers) or "-", None if not viewers else min(viewers) >= 29)
        host, host8, host_prompt = self.p50("segment_jpeg_1_host"), self.p50("segment_jpeg_8_host"), self.p50("prompt_1_host")
        if host is not None:
            self.check("host data path: Segment from a JPEG, 1 object, p50 <= 20 ms", fmt(host), le(host, 20))
            self.check("host data path: ... and faster than PyTorch SamPredictor", f"{fmt(host)} vs {fmt(torch1)}", None if torch1 is None else host < torch1)
            self.check("host data path: Segment, 8 objects, p50 <= 25 ms", fmt(host8), le(host8, 25))
            self.check("host data path: prompt update, 1 object, p50 <= 5 ms", fmt(host_prompt), le(host_prompt, 5))
        exact = self.python.get("fidelity", {}).get("samstream_exact", {}).get("sign_disagreement_pct")
        self.check("exact mode: sign disagreement <= 0.001%", fmt(exact, 4), None if exact is None else exact <= 0.001)
        for e in self.parity.get("exact", []):
            worst = e.get("max_sign_disagreement_pct")
            self.check(f"exact mode, parity fixtures, {e.get('data_path')} data path: every case within the contract", f"{e.get('failing')} of {e.get('cases')} failing, max {fmt(worst, 4)}%", e.get("failing") == 0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("--command", default="bash scripts/gpu_bench.sh")
    parser.add_argument("--into", type=Path, help="also write the table into this file's GPU section (BENCHMARKS.md)")
    args = parser.parse_args()
    report = Report(args.out)
    text = report.render(args.command)
    (args.out / "gpu_bench.md").write_text(text)
    if args.into:
        replace(args.into, "gpu", text)
    (args.out / "gpu_bench.json").write_text(json.dumps({"facts": report.facts, "rows": report.rows, "python": report.python}, indent=1))
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
