#!/usr/bin/env python3
"""Runs inside samstream:cuda (tests/images.rs copies it in and runs it with the image's own
python3, environment and ldd): checks that every library the CUDA execution provider needs
resolves with the image's LD_LIBRARY_PATH: onnxruntime (ORT_DYLIB_PATH), the CUDA provider next
to it, and the libraries the provider opens at run time (cuDNN 9 and its sub-libraries, cuFFT,
NVRTC). Only the driver, libcuda.so.1, may be missing: the NVIDIA container runtime mounts it at
run time.

    python3 check_cuda_image.py [--drop-path-entry SUBSTRING]

Prints a JSON report; exits 1 when something does not resolve. --drop-path-entry removes the
LD_LIBRARY_PATH entries containing SUBSTRING (to show the check fails when a path is wrong).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

# Provided by the host's driver through the NVIDIA container runtime, never by the image.
DRIVER = {"libcuda.so.1"}
# Opened with dlopen by the CUDA provider (not in its NEEDED entries).
RUNTIME_OPENED = ["libcudnn.so.9", "libcufft.so.12", "libnvrtc.so.13"]


def ldd(library: Path, path: str) -> tuple[list[str], int]:
    """The libraries `library` needs that do not resolve (the driver's aside), and how many do."""
    out = subprocess.run(["ldd", str(library)], capture_output=True, text=True, env={"LD_LIBRARY_PATH": path}).stdout
    missing = [line.split()[0] for line in out.splitlines() if "not found" in line and line.split()[0] not in DRIVER]
    resolved = sum("=> /" in line for line in out.splitlines())
    return missing, resolved


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--drop-path-entry")
    args = parser.parse_args()
    entries = [p for p in os.environ.get("LD_LIBRARY_PATH", "").split(":") if p]
    if args.drop_path_entry:
        entries = [p for p in entries if args.drop_path_entry not in p]
    problems = [f"LD_LIBRARY_PATH entry {entry} does not exist" for entry in entries if not Path(entry).is_dir()]
    path = ":".join(entries)
    dylib = Path(os.environ.get("ORT_DYLIB_PATH", "(ORT_DYLIB_PATH unset)"))
    if not dylib.is_file():
        problems.append(f"ORT_DYLIB_PATH {dylib} does not exist")
    libraries = [dylib, dylib.parent / "libonnxruntime_providers_cuda.so"]
    for name in RUNTIME_OPENED:
        found = next((Path(d) / name for d in entries if (Path(d) / name).exists()), None)
        if found is None:
            problems.append(f"{name}: not on LD_LIBRARY_PATH")
        else:
            libraries.append(found)
            if name == "libcudnn.so.9":
                libraries += sorted(found.parent.glob("libcudnn_*.so.9"))
    checked = {}
    for library in libraries:
        if not library.exists():
            problems.append(f"{library}: file missing")
            continue
        missing, resolved = ldd(library, path)
        checked[library.name] = resolved
        problems += [f"{library.name}: {m} not found" for m in missing]
    report = {"ld_library_path": entries, "checked": checked, "problems": problems}
    print(json.dumps(report, indent=1))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
