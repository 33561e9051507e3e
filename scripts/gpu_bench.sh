#!/usr/bin/env bash
# The GPU benchmark in phases that fit a short rental of a GPU machine (a few minutes each,
# under 10 minutes together). Phases, chosen with PHASES (default: all but `modes`), each with a
# hard time limit so the report always comes out:
#   probe       step 0: the exported graphs in onnxruntime's CUDA provider, encoder batch 1
#               repeated vs 1 and 8 alternating (EXHAUSTIVE and HEURISTIC), decoder 1 vs 1/3
#               objects alternating: does cuDNN keep a plan per shape?          (limit 75 s)
#   latency     one server (defaults): Segment from a JPEG and from raw RGB with 1 and 8
#               objects, prompt updates with 1 and 8 objects, segment everything (32x32
#               points)                                                          (limit 90 s)
#   throughput  8 concurrent callers with batching on (default server) and off
#               (--encoder-max-batch 1), a 120 fps source, four viewers of four 30 fps sources
#                                                                                (limit 120 s)
#   shapes      before/after of the fixed shapes: the same 8 callers and 8-object Segment with
#               exact shapes (--encoder-batch-buckets exact --decoder-object-buckets exact)
#                                                                                (limit 60 s)
#   baselines   the same graphs in Python: raw ORT, the Python pipeline, PyTorch SamPredictor,
#               fidelity against the official predictor                          (limit 120 s)
#   parity      samstream's own pipeline on the parity fixtures (the official predictor's
#               logits), both data paths, exact, TF32 and fp16: the compiled parity test
#               (SAMSTREAM_PARITY_BIN; `cargo test --release --test parity --no-run` prints it)
#               with the fixtures of SAMSTREAM_PARITY_DIR or the model's parity/, else written
#               from their recipe (bench/parity_reference.py; a few of the export's own
#               fixtures in SAMSTREAM_PARITY_CHECK_DIR show it is the same model) (limit 120 s)
#   modes       (not in the default) the host data path, TF32 and the fp16 encoder (limit 150 s)
# The default phases' limits add up to 9 min 45 s (plus set-up and the report); PHASE_LIMITS
# changes them. Every Python session must run on the device asked for (the scripts fail loudly
# otherwise).
#
# On a GPU machine, with SAMSTREAM_BIN (the release binary), SAMSTREAM_MODEL_DIR, ORT_DYLIB_PATH
# (onnxruntime-gpu's libonnxruntime.so, with its CUDA and cuDNN libraries on LD_LIBRARY_PATH)
# and python3 able to import onnxruntime-gpu, torch and mobile_sam:
#     bash scripts/gpu_bench.sh          # writes $OUT (default /tmp/gpu-bench)
# SAMSTREAM_MEDIA names a folder with frame.jpg (1280x720), clip120.mp4 and clip30.mp4 (1280x720
# at 120 and 30 fps); without it they are made with ffmpeg.
# The baselines import mobile_sam, which needs timm and torchvision; where the GPU machine's
# Python lacks them, `bash scripts/gpu_pydeps.sh` puts their wheels into gpu-extra/pydeps, and
# this script puts them on PYTHONPATH. The fp16 encoder is taken from the model directory, or
# from gpu-extra/encoder_fp16.onnx (export.py --fp16).
# Here, to check the script itself on the CPU (a few requests per row, a few minutes; the test
# suite runs it):
#     source scripts/setup.sh && DEVICE=cpu QUICK=1 bash scripts/gpu_bench.sh
# Results: $OUT/gpu_bench.md (the table for BENCHMARKS.md), $OUT/gpu_bench.json, logs/.
set -uo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT=${OUT:-/tmp/gpu-bench}
DEVICE=${DEVICE:-cuda:0}
QUICK=${QUICK:-0}
PY=${SAMSTREAM_PYTHON:-python3}
: "${SAMSTREAM_BIN:?}" "${SAMSTREAM_MODEL_DIR:?}" "${ORT_DYLIB_PATH:?}"
if [ "$QUICK" = 1 ]; then N=3 N8=2 NE=1 GRID=4 SECS=4 RUNS=1 BATCH=2 PROBE_RUNS=2; else N=100 N8=50 NE=10 GRID=32 SECS=8 RUNS=30 BATCH=8 PROBE_RUNS=15; fi
PHASES=${PHASES:-probe latency throughput shapes baselines parity}
declare -A LIMIT=([probe]=75 [latency]=90 [throughput]=120 [shapes]=60 [baselines]=120 [parity]=120 [modes]=150)
# PHASE_LIMITS="parity=60 modes=100" shortens (or lengthens) phases to fit the time at hand.
for limit in ${PHASE_LIMITS:-}; do LIMIT[${limit%%=*}]=${limit#*=}; done
# This 2-core CPU is no GPU: its dry run gets room for warm-ups that take seconds here.
SCALE=1
[ "$DEVICE" = cpu ] && SCALE=${CPU_LIMIT_SCALE:-4}
# timm and torchvision for the machine's PyTorch (scripts/gpu_pydeps.sh), if carried.
# Unpacked outside $OUT, which should hold only what comes back.
PYDEPS_DIR=${TMPDIR:-/tmp}/samstream-pydeps
if compgen -G "$ROOT/gpu-extra/pydeps/*.whl" >/dev/null; then
  if [ -z "${GPU_BENCH_PHASE:-}" ]; then
    rm -rf "$PYDEPS_DIR" && mkdir -p "$PYDEPS_DIR"
    # Python's zipfile: the GPU machine need not have unzip.
    for wheel in "$ROOT"/gpu-extra/pydeps/*.whl; do "$PY" -m zipfile -e "$wheel" "$PYDEPS_DIR"; done
  fi
  export PYTHONPATH=$PYDEPS_DIR${PYTHONPATH:+:$PYTHONPATH}
fi
pydevice=cuda
if [ "$DEVICE" = cpu ]; then
  pydevice=cpu
  # The dry run takes the GPU's data path (preprocessing and postprocessing graphs) on the CPU.
  export SAMSTREAM_DATA_PATH=${SAMSTREAM_DATA_PATH:-device}
fi
step() { echo "[gpu-bench $(date +%T)] $*" >&2; }
export ORT_DYLIB_PATH
MEDIA=${SAMSTREAM_MEDIA:-$OUT/media}
MODEL=$OUT/model
FP16=$(cat "$OUT/fp16_encoder.txt" 2>/dev/null || true)

# --- Set-up, the phases one by one, the report (a phase's own process skips to its body) ----
if [ -z "${GPU_BENCH_PHASE:-}" ]; then
rm -rf "$OUT/rows" "$OUT/logs" "$OUT/masks" "$OUT/fp16_encoder.txt"
mkdir -p "$OUT/rows" "$OUT/logs" "$OUT/masks" "$MODEL"

# --- Inputs: the media packed for the GPU machine, or made here like pack.sh makes them ----
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
for f in encoder.onnx decoder.onnx decoder_shared.onnx encoder_int8.onnx; do
  [ -f "$SAMSTREAM_MODEL_DIR/$f" ] && ln -sf "$SAMSTREAM_MODEL_DIR/$f" "$MODEL/$f"
done
PARITY_DIR=${SAMSTREAM_PARITY_DIR:-$SAMSTREAM_MODEL_DIR/parity}
rm -f "$MODEL/parity"
[ -f "$PARITY_DIR/cases.json" ] && ln -s "$PARITY_DIR" "$MODEL/parity"
FP16=""
for candidate in "$SAMSTREAM_MODEL_DIR/encoder_fp16.onnx" "$ROOT/gpu-extra/encoder_fp16.onnx"; do
  [ -f "$candidate" ] && { FP16=$candidate; ln -sf "$candidate" "$MODEL/encoder_fp16.onnx"; break; }
done
echo "$FP16" >"$OUT/fp16_encoder.txt"
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
nvidia-smi >"$OUT/logs/nvidia-smi.txt" 2>&1
"$PY" - "$OUT/facts.json" "${gpu:-none}" "$DEVICE" "$QUICK" "$FP16" <<'PY'
import json, platform, sys
out, gpu, device, quick, fp16 = sys.argv[1:]
import datetime
facts = {"gpu": gpu, "device": device, "quick": quick == "1", "fp16_encoder": fp16 or None, "host": platform.node(),
         "date": f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC"}
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
# The CUDA and cuDNN libraries onnxruntime loads (device.sh puts the Python packages' on the path).
from importlib import metadata
for package in ("nvidia-cuda-runtime", "nvidia-cudnn-cu13", "nvidia-cublas"):
    try:
        facts[package] = metadata.version(package)
    except metadata.PackageNotFoundError:
        pass
try:
    facts["torch_cudnn"] = torch.backends.cudnn.version()
    facts["torch_cuda_version"] = torch.version.cuda
except Exception:  # noqa: BLE001 - torch missing: already recorded
    pass
for module in ("timm", "torchvision", "mobile_sam"):
    try:
        imported = __import__(module)
        facts[module] = getattr(imported, "__version__", "importable")
    except Exception as e:  # noqa: BLE001 - what the baselines will meet, recorded
        facts[module] = f"not importable: {type(e).__name__}: {e}"
json.dump(facts, open(out, "w"), indent=1)
PY
step "device $DEVICE, GPU: ${gpu:-none}, fp16 encoder: ${FP16:-none}, phases: $PHASES"

# --- Each phase in a process of its own, within its limit ----------------------------------------
for phase in $PHASES; do
  [ -n "${LIMIT[$phase]:-}" ] || { step "unknown phase $phase (probe latency throughput shapes baselines modes)"; continue; }
  started=$SECONDS
  GPU_BENCH_PHASE=$phase timeout -k 5 $((LIMIT[$phase] * SCALE)) bash "$0"
  rc=$?
  echo "$((SECONDS - started))" >"$OUT/rows/phase_${phase}_s.txt"
  [ $rc = 0 ] || step "phase $phase stopped (rc $rc; 124 = past its $((LIMIT[$phase] * SCALE)) s limit); its finished rows are kept"
done
"$PY" "$ROOT/bench/gpu_report.py" "$OUT" --command "${GPU_BENCH_COMMAND:-PHASES=\"$PHASES\" bash scripts/gpu_bench.sh}"
exit
fi

# --- samstream ----------------------------------------------------------------------------------
pid=""
stop_server() {
  [ -n "$pid" ] && { kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; pid=""; }
  return 0
}
trap stop_server EXIT
# The phase's time limit ends it with SIGTERM: its server goes too.
trap 'stop_server; exit 124' TERM INT

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
  if [ -z "$addr" ] || ! timeout 300 "$SAMSTREAM_BIN" client image "$MEDIA/frame.jpg" --server "http://$addr" --point 640,360 \
      --ready-timeout 290 --out-masks "$OUT/masks/$name" >"$OUT/logs/$name.client" 2>&1; then
    local why
    why=$(grep -m1 -iE 'error|unavailable|failed' "$log" | cut -c1-300 | tr '"\\' "' ")
    step "server $name did not come up: $why"
    printf '{"failed": "server %s did not come up: %s"}\n' "$name" "$why" >"$OUT/rows/server_$name.json"
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
  if ! timeout 120 "$SAMSTREAM_BIN" bench --server "http://$addr" --json "$@" >"$OUT/rows/$name.json" 2>"$OUT/logs/$name.err"; then
    printf '{"failed": "%s"}\n' "$(tail -c 300 "$OUT/logs/$name.err" | tr '"\n' "' ")" >"$OUT/rows/$name.json"
  fi
  step "$name done"
}

IMG=(--image "$MEDIA/frame.jpg")
case "$GPU_BENCH_PHASE" in
probe)
  alt=8
  [ "$DEVICE" = cpu ] && alt=2
  "$PY" "$ROOT/bench/gpu_probe.py" "$MODEL" "$OUT/rows/probe.json" --device "$pydevice" --runs "$PROBE_RUNS" --alt-batch "$alt" \
    2>"$OUT/logs/probe.err" || { printf '{"failed": "%s"}\n' "$(tail -c 300 "$OUT/logs/probe.err" | tr '"\n' "' ")" >"$OUT/rows/probe.json"; }
  cat "$OUT/logs/probe.err" >&2
  ;;
latency)
  if serve exact; then
    row segment_jpeg_1 --rpc segment "${IMG[@]}" --requests "$N"
    row segment_jpeg_8 --rpc segment "${IMG[@]}" --objects 8 --requests "$N8"
    row segment_raw_1 --rpc segment "${IMG[@]}" --raw --requests "$N"
    row segment_raw_8 --rpc segment "${IMG[@]}" --raw --objects 8 --requests "$N8"
    row prompt_1 --rpc prompt-update "${IMG[@]}" --requests "$N"
    row prompt_8 --rpc prompt-update "${IMG[@]}" --objects 8 --requests "$N8"
    row everything --rpc everything "${IMG[@]}" --points-per-side "$GRID" --requests "$NE"
  fi
  ;;
throughput)
  if serve batched; then
    row callers8_batch_auto --rpc segment "${IMG[@]}" --concurrency 8 --seconds "$SECS"
    row source120 --rpc stream "${IMG[@]}" --source clip120 --seconds "$SECS"
    row sources30x4 --rpc stream "${IMG[@]}" --source cam1,cam2,cam3,cam4 --concurrency 4 --seconds "$SECS"
  fi
  if serve batch1 --encoder-max-batch 1; then
    row callers8_batch1 --rpc segment "${IMG[@]}" --concurrency 8 --seconds "$SECS"
  fi
  ;;
shapes)
  if serve exact_shapes --encoder-batch-buckets exact --decoder-object-buckets exact; then
    row callers8_exact_shapes --rpc segment "${IMG[@]}" --concurrency 8 --seconds "$SECS"
    row segment_jpeg_8_exact_shapes --rpc segment "${IMG[@]}" --objects 8 --requests "$N8"
  fi
  ;;
baselines)
  masks=()
  for mode in exact host tf32 fp16; do [ -d "$OUT/masks/$mode" ] && masks+=("$mode=$OUT/masks/$mode"); done
  "$PY" "$ROOT/bench/gpu_python.py" "$MODEL" "$MEDIA/frame.jpg" --json "$OUT/rows/python.json" --device "$pydevice" --runs "$RUNS" \
    --batch "$BATCH" ${FP16:+--fp16 "$FP16"} --masks "${masks[@]}" 2>"$OUT/logs/python.err" ||
    [ -s "$OUT/rows/python.json" ] || printf '{"failed": "%s"}\n' "$(tail -c 300 "$OUT/logs/python.err" | tr '"\n' "' ")" >"$OUT/rows/python.json"
  ;;
parity)
  if [ -z "${SAMSTREAM_PARITY_BIN:-}" ]; then
    step "parity: not run (SAMSTREAM_PARITY_BIN is not set)"
    exit 0
  fi
  if [ ! -f "$MODEL/parity/cases.json" ]; then
    # Seeded weights: the fixtures are written here from their recipe rather than carried;
    # SAMSTREAM_PARITY_CHECK_DIR (some of the export's own fixtures) shows it is the same model.
    generated=${TMPDIR:-/tmp}/samstream-parity
    rm -rf "$generated"
    "$PY" "$ROOT/bench/parity_reference.py" "$SAMSTREAM_MODEL_DIR" "$generated" --json "$OUT/rows/parity_reference.json" \
      ${SAMSTREAM_PARITY_CHECK_DIR:+--check "$SAMSTREAM_PARITY_CHECK_DIR"} 2>"$OUT/logs/parity_reference.log" ||
      { step "parity: the reference could not be written or is another model's: $(tail -c 300 "$OUT/logs/parity_reference.log")"; exit 0; }
    rm -f "$MODEL/parity" && ln -s "$generated" "$MODEL/parity"
    step "parity: reference written ($(tail -c 200 "$OUT/logs/parity_reference.log"))"
  fi
  for mode in exact tf32 fp16; do
    case $mode in
      exact) settings=() ;;
      tf32) settings=(SAMSTREAM_TF32=true) ;;
      fp16) [ -n "$FP16" ] || continue; settings=(SAMSTREAM_ENCODER_PRECISION=fp16) ;;
    esac
    # The contract's test on this device: it fails where a mode is not exact, and its figures
    # are the point, so the exit status is only logged.
    env SAMSTREAM_DEVICE="$DEVICE" SAMSTREAM_MODEL_DIR="$MODEL" SAMSTREAM_PARITY_JSON="$OUT/rows/parity_$mode.jsonl" "${settings[@]}" \
      "$SAMSTREAM_PARITY_BIN" matches_the_official_predictor --test-threads 1 --nocapture >"$OUT/logs/parity_$mode.log" 2>&1
    step "parity $mode done (rc $?): $(grep -E '^parity \(' "$OUT/logs/parity_$mode.log" | tr '\n' ' ' | cut -c1-400)"
  done
  ;;
modes)
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
  ;;
esac
stop_server
