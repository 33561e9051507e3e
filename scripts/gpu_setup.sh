#!/usr/bin/env bash
# What the GPU benchmark needs on a machine with an NVIDIA GPU (driver for CUDA 13), on top of
# the usual set-up: ONNX Runtime's GPU build with the CUDA and cuDNN libraries it was built for
# (the CUDA image's pinned wheels, deploy/docker/requirements-cuda.txt) in a venv of its own,
# and the compiled parity test. Source it, then run the benchmark:
#
#   source scripts/gpu_setup.sh && bash scripts/gpu_bench.sh && python3 bench/gpu_report.py /tmp/gpu-bench --into BENCHMARKS.md
#
# Exports ORT_DYLIB_PATH and LD_LIBRARY_PATH (the GPU build and its libraries), PYTHONPATH (the
# GPU build ahead of the project venv's CPU one, for the Python baselines) and
# SAMSTREAM_PARITY_BIN, besides what scripts/setup.sh exports.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/setup.sh"
ORT_GPU_DIR="$SAMSTREAM_CACHE/ort-gpu-$(key_of "$SAMSTREAM_ROOT/scripts/gpu_setup.sh" "$SAMSTREAM_ROOT/deploy/docker/requirements-cuda.txt")"
if [ ! -f "$ORT_GPU_DIR/.complete" ]; then
  log "installing onnxruntime-gpu and its CUDA libraries into $ORT_GPU_DIR"
  rm -rf "$ORT_GPU_DIR"
  # Only the GPU build and the NVIDIA libraries: their Python dependencies (numpy, protobuf, ...)
  # are the project venv's, which the GPU build shadows nothing of.
  grep -E '^(onnxruntime-gpu|nvidia-)' "$SAMSTREAM_ROOT/deploy/docker/requirements-cuda.txt" | sed 's/\[[a-z,]*\]//' >"$SAMSTREAM_CACHE/ort-gpu-requirements.txt"
  "$SAMSTREAM_PYTHON" -m pip install -q --no-deps --target "$ORT_GPU_DIR/site" -r "$SAMSTREAM_CACHE/ort-gpu-requirements.txt"
  touch "$ORT_GPU_DIR/.complete"
fi
site=$ORT_GPU_DIR/site
ORT_DYLIB_PATH=$site/onnxruntime/capi/libonnxruntime.so.1.31.1
LD_LIBRARY_PATH=$site/nvidia/cu13/lib:$site/nvidia/cudnn/lib:$site/onnxruntime/capi${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
PYTHONPATH=$site${PYTHONPATH:+:$PYTHONPATH}
SAMSTREAM_PARITY_BIN=$(cd "$SAMSTREAM_ROOT" && cargo test --release --locked --test parity --no-run 2>&1 | sed -n 's/.*Executable tests\/parity.rs (\(.*\))/\1/p')
[ -x "$SAMSTREAM_PARITY_BIN" ] || { log "the parity test did not build"; exit 1; }
export ORT_DYLIB_PATH LD_LIBRARY_PATH PYTHONPATH SAMSTREAM_PARITY_BIN
log "GPU build of onnxruntime: $ORT_DYLIB_PATH; parity test: $SAMSTREAM_PARITY_BIN"
