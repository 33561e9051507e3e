#!/usr/bin/env bash
# The Python packages the GPU baselines import beyond the GPU machine's own PyTorch, as wheels
# for its Python 3.12: timm (pure Python) and torchvision (which mobile_sam and timm import; it
# requires a range of torch versions). The wheels go to gpu-extra/pydeps/ of the checkout
# (untracked files travel with every transfer, so they stay compressed, ~10 MiB);
# scripts/gpu_bench.sh unpacks them there, puts them on PYTHONPATH and records in facts.json
# whether timm, torchvision and mobile_sam import.
#
#   bash scripts/gpu_pydeps.sh                                   # newest torchvision
#   TORCHVISION_VERSION=0.24.1 bash scripts/gpu_pydeps.sh        # for an older torch
#
# gpu-extra/pydeps/REQUIRES says which
# torch it needs (the GPU machine's torch version is in the last gpu_bench run's facts.json).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=$root/gpu-extra/pydeps
TIMM_VERSION=${TIMM_VERSION:-1.0.31}
download() {
  "${SAMSTREAM_PYTHON:-python3}" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform any -d "$1" "$2"
}
rm -rf "$out" && mkdir -p "$out"
download "$out" "timm==$TIMM_VERSION"
download "$out" "torchvision${TORCHVISION_VERSION:+==$TORCHVISION_VERSION}"
"${SAMSTREAM_PYTHON:-python3}" - "$out"/torchvision-*.whl >"$out/REQUIRES" <<'PY'
import sys, zipfile
wheel = zipfile.ZipFile(sys.argv[1])
metadata = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
print("\n".join(l for l in wheel.read(metadata).decode().splitlines() if l.lower().startswith("requires-dist: torch ")))
PY
ls -la "$out"; cat "$out/REQUIRES"
