#!/usr/bin/env bash
# The GPU benchmark (issues 10 and 11) in one run, one table: samstream on the GPU (Segment
# from a JPEG and from raw RGB with 1 and 8 objects, prompt updates, 8 concurrent callers with
# batching off and on, a 120 fps source, four viewers of four 30 fps sources; exact float32,
# TF32 and the fp16 encoder; the host data path for comparison), next to the same graphs in
# raw ONNX Runtime (host arrays and IO binding), the Python onnxruntime pipeline and PyTorch's
# SamPredictor on the same GPU, plus each mode's fidelity against the official predictor.
#
# On a lent GPU machine, through ../shared/tools/gpu/ (see its README; the chunks carry the
# release binary, onnxruntime-gpu, the model and test media):
#     bash .gpu/device.sh bash scripts/gpu_bench.sh          # writes $OUT (default /tmp/gpu-bench)
# The fp16 encoder travels separately: put export.py --fp16's encoder_fp16.onnx in gpu-extra/
# of the checkout before packing (untracked files travel with every transfer).
# Here, to check the script itself on the CPU (a few requests per row, about 10 minutes):
#     source scripts/setup.sh && DEVICE=cpu QUICK=1 bash scripts/gpu_bench.sh
# Results: $OUT/gpu_bench.md (the table for BENCHMARKS.md), $OUT/gpu_bench.json, logs/.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-/tmp/gpu-bench}
DEVICE=${DEVICE:-cuda:0}
QUICK=${QUICK:-0}
PY=${SAMSTREAM_PYTHON:-python3}
: "${SAMSTREAM_BIN:?}" "${SAMSTREAM_MODEL_DIR:?}" "${ORT_DYLIB_PATH:?}"
if [ "$QUICK" = 1 ]; then N=3 N8=2 SECS=8 RUNS=1 BATCH=2; else N=200 N8=100 SECS=15 RUNS=50 BATCH=8; fi
rm -rf "$OUT/rows" "$OUT/logs" "$OUT/masks"
mkdir -p "$OUT/rows" "$OUT/logs" "$OUT/masks" "$OUT/model"
step() { echo "[gpu-bench $(date +%T)] $*" >&2; }
export ORT_DYLIB_PATH

# --- Inputs: the media packed for the GPU machine, or made here like pack.sh makes them ----
MEDIA=${SAMSTREAM_MEDIA:-$OUT/media}
if [ ! -f "$MEDIA/frame.jpg" ]; then
  mkdir -p "$MEDIA"
  ffmpeg -loglevel error -y -f lavfi -i testsrc2=size=1280x720:rate=1 -frames:v 1 -q:v 3 "$MEDIA/frame.jpg"
  ffmpeg -loglevel error -y -f lavfi -i testsrc2=size=1280x720:rate=120 -t 3 -c:v mpeg4 -q:v 25 "$MEDIA/clip120.mp4"
  ffmpeg -loglevel error -y -f lavfi -i testsrc2=size=1280x720:rate=30 -t 4 -c:v mpeg4 -q:v 25 "$MEDIA/clip30.mp4"
fi
{
  printf '[[source]]\nname = "clip120"\nkind = "file"\npath = "%s"\nloop = true\n' "$MEDIA/clip120.mp4"
  for i in 1 2 3 4; do printf '[[source]]\nname = "cam%s"\nkind = "file"\npath = "%s"\nloop = true\n' "$i" "$MEDIA/clip30.mp4"; done
} >"$OUT/sources.toml"

# --- The model, with the fp16 encoder listed in its manifest when there is one -------------
MODEL=$OUT/model
for f in encoder.onnx decoder.onnx encoder_int8.onnx; do
  [ -f "$SAMSTREAM_MODEL_DIR/$f" ] && ln -sf "$SAMSTREAM_MODEL_DIR/$f" "$MODEL/$f"
done
FP16=""
for candidate in "$SAMSTREAM_MODEL_DIR/encoder_fp16.onnx" "$ROOT/gpu-extra/encoder_fp16.onnx"; do
  [ -f "$candidate" ] && { FP16=$candidate; ln -sf "$candidate" "$MODEL/encoder_fp16.onnx"; break; }
done
"$PY" - "$SAMSTREAM_MODEL_DIR/manifest.json" "$MODEL" <<'PY'
import hashlib, json, pathlib, sys
manifest = json.load(open(sys.argv[1]))
model = pathlib.Path(sys.argv[2])
for f in ("encoder_fp16.onnx",):
    if (model / f).exists() and f not in manifest["files"]:
        data = (model / f).read_bytes()
        manifest["files"][f] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
json.dump(manifest, open(model / "manifest.json", "w"), indent=1)
PY

# --- Facts ------------------------------------------------------------------------------------
gpu=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null | head -1)
"$PY" - "$OUT/facts.json" "${gpu:-none}" "$DEVICE" "$QUICK" "$FP16" <<'PY'
import json, platform, sys
out, gpu, device, quick, fp16 = sys.argv[1:]
facts = {"gpu": gpu, "device": device, "quick": quick == "1", "fp16_encoder": fp16 or None, "host": platform.node()}
try:
    import onnxruntime
    facts["onnxruntime"] = onnxruntime.__version__
    facts["providers"] = onnxruntime.get_available_providers()
except ImportError as e:
    facts["onnxruntime"] = f"not importable: {e}"
try:
    import torch
    facts["torch"] = torch.__version__
    facts["torch_cuda"] = torch.cuda.is_available()
except ImportError as e:
    facts["torch"] = f"not importable: {e}"
json.dump(facts, open(out, "w"), indent=1)
PY
step "device $DEVICE, GPU: ${gpu:-none}, fp16 encoder: ${FP16:-none}"

# --- samstream ----------------------------------------------------------------------------------
pid=""
stop_server() {
  [ -n "$pid" ] && { kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; pid=""; }
  return 0
}
trap stop_server EXIT

# serve NAME ARGS...: a server with ARGS on a free port, warmed up (health SERVING), and its
# masks for the prompt at 640,360 in masks/NAME (for the fidelity check). Sets $addr.
serve() {
  local name=$1
  shift
  stop_server
  local log="$OUT/logs/$name.log"
  "$SAMSTREAM_BIN" serve --model-dir "$MODEL" --listen 127.0.0.1:0 --device "$DEVICE" --device-fallback fail \
    --sources "$OUT/sources.toml" --source-grace-secs 1 --max-inflight 64 "$@" >"$log" 2>&1 &
  pid=$!
  addr=""
  local started=$SECONDS
  for _ in $(seq 1200); do
    addr=$(sed -n 's/^samstream listening on //p' "$log")
    [ -n "$addr" ] && break
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if [ -z "$addr" ] || ! timeout 600 "$SAMSTREAM_BIN" client --server "http://$addr" --image "$MEDIA/frame.jpg" --point 640,360 \
      --ready-timeout 590 --out-masks "$OUT/masks/$name" >"$OUT/logs/$name.client" 2>&1; then
    step "server $name did not come up: $(grep -m1 -iE 'error|unavailable|failed' "$log" | cut -c1-300)"
    stop_server
    return 1
  fi
  step "server $name ready in $((SECONDS - started)) s: $(grep -m1 -o 'provider=[^ ]*' "$log") $(grep -m1 -o 'data_path=[^ ]*' "$log")"
  echo "$((SECONDS - started))" >"$OUT/rows/${name}_startup_s.txt"
}

# row NAME BENCH-ARGS...: one `samstream bench` run against the current server.
row() {
  local name=$1
  shift
  if ! timeout 300 "$SAMSTREAM_BIN" bench --server "http://$addr" --json "$@" >"$OUT/rows/$name.json" 2>"$OUT/logs/$name.err"; then
    printf '{"failed": "%s"}\n' "$(tail -c 300 "$OUT/logs/$name.err" | tr '"\n' "' ")" >"$OUT/rows/$name.json"
  fi
  step "$name done"
}

IMG=(--image "$MEDIA/frame.jpg")
if serve exact; then
  row segment_jpeg_1 --rpc segment "${IMG[@]}" --requests "$N"
  row segment_jpeg_8 --rpc segment "${IMG[@]}" --objects 8 --requests "$N8"
  row segment_raw_1 --rpc segment "${IMG[@]}" --raw --requests "$N"
  row segment_raw_8 --rpc segment "${IMG[@]}" --raw --objects 8 --requests "$N8"
  row prompt_1 --rpc prompt-update "${IMG[@]}" --requests "$N"
  row prompt_8 --rpc prompt-update "${IMG[@]}" --objects 8 --requests "$N8"
  row callers8_batch_auto --rpc segment "${IMG[@]}" --concurrency 8 --seconds "$SECS"
  row source120 --rpc stream "${IMG[@]}" --source clip120 --seconds "$SECS"
  row sources30x4 --rpc stream "${IMG[@]}" --source cam1,cam2,cam3,cam4 --concurrency 4 --seconds "$SECS"
fi
if serve batch1 --encoder-max-batch 1; then
  row callers8_batch1 --rpc segment "${IMG[@]}" --concurrency 8 --seconds "$SECS"
fi
if serve host --data-path host; then
  row segment_jpeg_1_host --rpc segment "${IMG[@]}" --requests "$N"
  row segment_jpeg_8_host --rpc segment "${IMG[@]}" --objects 8 --requests "$N8"
  row prompt_1_host --rpc prompt-update "${IMG[@]}" --requests "$N"
fi
if serve tf32 --tf32 true; then
  row segment_jpeg_1_tf32 --rpc segment "${IMG[@]}" --requests "$N"
  row callers8_tf32 --rpc segment "${IMG[@]}" --concurrency 8 --seconds "$SECS"
fi
if [ -n "$FP16" ] && serve fp16 --encoder-precision fp16; then
  row segment_jpeg_1_fp16 --rpc segment "${IMG[@]}" --requests "$N"
  row callers8_fp16 --rpc segment "${IMG[@]}" --concurrency 8 --seconds "$SECS"
fi
stop_server

# --- The same graphs in Python: raw ORT, the Python pipeline, PyTorch, fidelity ----------------
step "Python baselines and fidelity"
masks=()
for mode in exact host tf32 fp16; do [ -d "$OUT/masks/$mode" ] && masks+=("$mode=$OUT/masks/$mode"); done
pydevice=cuda
[ "$DEVICE" = cpu ] && pydevice=cpu
timeout 900 "$PY" "$ROOT/bench/gpu_python.py" "$MODEL" "$MEDIA/frame.jpg" --device "$pydevice" --runs "$RUNS" --batch "$BATCH" \
  ${FP16:+--fp16 "$FP16"} --masks "${masks[@]}" >"$OUT/rows/python.json" 2>"$OUT/logs/python.err" ||
  printf '{"failed": "%s"}\n' "$(tail -c 300 "$OUT/logs/python.err" | tr '"\n' "' ")" >"$OUT/rows/python.json"

"$PY" "$ROOT/bench/gpu_report.py" "$OUT" --command "${GPU_BENCH_COMMAND:-bash scripts/gpu_bench.sh}"
