#!/usr/bin/env python3
"""Builds deploy/docker/Dockerfile.cuda's onnxruntime venv the way the image does (python3 -m
venv, pip install -r requirements-cuda.txt; cached by the file's content), maps the image's
LD_LIBRARY_PATH and ORT_DYLIB_PATH onto it, and checks that every library the CUDA execution
provider needs resolves: `ldd` of libonnxruntime_providers_cuda.so (what it links) and of the
libraries it opens at run time (cuDNN 9, cuFFT, NVRTC), found on that path. Only the driver,
libcuda.so.1, may be missing: the NVIDIA container runtime mounts it at run time.

    python3 tests/support/check_cuda_image.py DOCKERFILE CACHE_DIR [--drop-path-entry SUBSTRING]

Prints a JSON report; exits 1 when something does not resolve. --drop-path-entry removes the
LD_LIBRARY_PATH entries containing SUBSTRING (to show the check fails when a path is wrong).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import subprocess
import sys
from pathlib import Path

# Provided by the host's driver through the NVIDIA container runtime, never by the image.
DRIVER = {"libcuda.so.1"}
# Opened with dlopen by the CUDA provider (not in its NEEDED entries).
RUNTIME_OPENED = ["libcudnn.so.9", "libcufft.so.12", "libnvrtc.so.13"]


def dockerfile_facts(text: str) -> dict:
    joined = re.sub(r"\\\n\s*", " ", text)
    env: dict[str, str] = {}
    for line in joined.splitlines():
        if line.startswith("ENV "):
            for key, value in re.findall(r"(\w+)=(\S+)", line[4:]):
                env[key] = value
    venv = re.search(r"python3 -m venv (\S+)", joined)
    requirements = re.search(r"COPY (\S+requirements-cuda\.txt) ", joined)
    if not venv or not requirements:
        raise SystemExit("Dockerfile.cuda: no `python3 -m venv` or no COPY of requirements-cuda.txt")
    return {"env": env, "venv": venv.group(1), "requirements": requirements.group(1)}


def build_venv(root: Path, requirements: Path, cache: Path) -> Path:
    key = hashlib.sha256(requirements.read_bytes()).hexdigest()[:16]
    venv = cache / f"cuda-image-venv-{key}"
    if not (venv / ".complete").exists():
        subprocess.run(["rm", "-rf", str(venv)], check=True)
        subprocess.run([sys.executable if sys.executable else "python3", "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "-r", str(requirements)], check=True, cwd=root)
        (venv / ".complete").touch()
    return venv


def unresolved(library: Path, path: str) -> list[str]:
    out = subprocess.run(["ldd", str(library)], capture_output=True, text=True, env={"LD_LIBRARY_PATH": path}).stdout
    return [line.split()[0] for line in out.splitlines() if "not found" in line and line.split()[0] not in DRIVER]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dockerfile", type=Path)
    parser.add_argument("cache", type=Path)
    parser.add_argument("--drop-path-entry")
    args = parser.parse_args()
    root = args.dockerfile.resolve().parents[2]
    facts = dockerfile_facts(args.dockerfile.read_text())
    venv = build_venv(root, root / facts["requirements"], args.cache)
    image_venv = facts["venv"]
    here = lambda p: p.replace(image_venv, str(venv))  # noqa: E731
    python = f"python{sys.version_info.major}.{sys.version_info.minor}"
    problems = []
    entries = [here(p) for p in facts["env"].get("LD_LIBRARY_PATH", "").split(":") if p]
    if args.drop_path_entry:
        entries = [p for p in entries if args.drop_path_entry not in p]
    for entry in entries:
        if f"/{python}/" not in entry:
            problems.append(f"LD_LIBRARY_PATH entry {entry} is not for the venv's {python}")
        elif not Path(entry).is_dir():
            problems.append(f"LD_LIBRARY_PATH entry {entry} does not exist")
    path = ":".join(entries)
    dylib = Path(here(facts["env"].get("ORT_DYLIB_PATH", "")))
    if not dylib.is_file():
        problems.append(f"ORT_DYLIB_PATH {dylib} does not exist")
    capi = dylib.parent
    checked = {}
    for library in [capi / "libonnxruntime.so.1.31.1", capi / "libonnxruntime_providers_cuda.so"]:
        checked[library.name] = unresolved(library, path) if library.exists() else ["(file missing)"]
    for name in RUNTIME_OPENED:
        found = next((Path(d) / name for d in entries if (Path(d) / name).exists()), None)
        checked[name] = unresolved(found, path) if found else ["(not on LD_LIBRARY_PATH)"]
    if found := next((Path(d) for d in entries if (Path(d) / "libcudnn.so.9").exists()), None):
        for sub in sorted(found.glob("libcudnn_*.so.9")):
            checked[sub.name] = unresolved(sub, path)
    for library, missing in checked.items():
        problems += [f"{library}: {m} not found" for m in missing]
    report = {"venv": str(venv), "ld_library_path": entries, "checked": sorted(checked), "problems": problems}
    print(json.dumps(report, indent=1))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
