#!/usr/bin/env bash
# Performance, side by side in one run: raw ONNX Runtime from Rust, samstream end to
# end over gRPC (Segment, a stream, prompt updates on a cached embedding; fp32 and int8
# encoders), the Python onnxruntime pipeline and PyTorch SamPredictor, all on the same exported
# model and the same 1280x720 JPEG with 1 and 8 objects; decoder scaling 1/8/32; the int8
# encoder's fidelity; criterion benches of the Rust stages; server memory. Prints the table
# with medians and ratios and writes BENCHMARKS.md.
#
# Segment everything (SegmentEverything with the reference's defaults on the same JPEG, crop
# layers 0 and 1) is measured once each against the official SamAutomaticMaskGenerator and the
# same algorithm on the Python onnxruntime pipeline; the official generator takes minutes here
# (EVERYTHING_LAYERS="0" leaves layer 1 out; EVERYTHING_BASELINES="official ort_shared" the
# slower Python variant).
#
#   bash scripts/bench.sh            (or: make bench)   RUNS=7 STREAM_SECS=20 CHURN=1000
set -euo pipefail
source "$(dirname "$0")/setup.sh"
RUNS=${RUNS:-7}
EVERYTHING_LAYERS=${EVERYTHING_LAYERS:-0 1}
# The Python onnxruntime variants with decoder.onnx (ort) and decoder_shared.onnx (ort_shared).
EVERYTHING_BASELINES=${EVERYTHING_BASELINES:-official ort ort_shared}
STREAM_SECS=${STREAM_SECS:-20}
CHURN=${CHURN:-1000}
OUT=${BENCH_OUT:-$SAMSTREAM_ROOT/BENCHMARKS.md}
work=$(mktemp -d)
servers=()
cleanup() {
  for pid in "${servers[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
step() { echo "[bench] $*" >&2; }

step "inputs: 1280x720 JPEG and a 10 s 1280x720 clip (looping server-side source)"
ffmpeg -loglevel error -y -f lavfi -i testsrc2=size=1280x720:rate=1 -frames:v 1 -q:v 3 "$work/frame.jpg"
ffmpeg -loglevel error -y -f lavfi -i testsrc2=size=1280x720:rate=10 -t 10 -pix_fmt yuv420p "$work/clip.mp4"
printf '[[source]]\nname = "clip"\nkind = "file"\npath = "%s"\nloop = true\n' "$work/clip.mp4" >"$work/sources.toml"

step "building the benches"
(cd "$SAMSTREAM_ROOT" && cargo bench --locked --no-run --quiet 2>/dev/null)

# The raw baseline runs right before and right after the samstream runs it is compared with,
# so slow drift of this shared machine's speed hits both sides alike.
raw_ort() {
  step "raw ONNX Runtime from Rust (benches/raw_ort.rs), $1"
  (cd "$SAMSTREAM_ROOT" && cargo bench --locked --quiet --bench raw_ort -- "$work/frame.jpg" "$RUNS") >"$work/raw_ort_$1.json"
}
raw_ort before

rss_mib() { awk '/^VmRSS/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }

# start_server NAME ARGS...: serves on a free port; sets $addr and $pid.
start_server() {
  local name=$1
  shift
  start_samstream "$work/$name.log" --sources "$work/sources.toml" --source-grace-secs 1 "$@"
  pid=$SERVER_PID
  addr=$SERVER_ADDR
  servers+=("$pid")
  # One Segment call waits for health SERVING (model loaded and warmed up).
  "$SAMSTREAM_BIN" client image "$work/frame.jpg" --server "http://$addr" --point 640,360 >/dev/null
}

bench() { "$SAMSTREAM_BIN" bench --server "http://$addr" --json "$@"; }

step "samstream fp32: Segment, prompt updates, streams, memory"
start_server fp32
rss_loaded=$(rss_mib "$pid")
bench --rpc segment --requests "$RUNS" --objects 1 --image "$work/frame.jpg" >"$work/segment_1.json"
bench --rpc segment --requests "$RUNS" --objects 8 --image "$work/frame.jpg" >"$work/segment_8.json"
bench --rpc prompt-update --requests 15 --objects 1 --image "$work/frame.jpg" >"$work/prompt_1.json"
bench --rpc prompt-update --requests "$RUNS" --objects 8 --image "$work/frame.jpg" >"$work/prompt_8.json"
bench --rpc stream --seconds "$STREAM_SECS" --objects 1 --source clip --image "$work/frame.jpg" >"$work/stream_1.json"
bench --rpc stream --seconds "$STREAM_SECS" --concurrency 8 --objects 1 --source clip --image "$work/frame.jpg" >"$work/stream_x8.json" &
sleep $((STREAM_SECS * 3 / 4))
rss_8_streams=$(rss_mib "$pid")
wait $!
bench --rpc churn --requests "$CHURN" --concurrency 4 --source clip >"$work/churn.json"
sleep 2
rss_after_churn=$(rss_mib "$pid")
for layers in $EVERYTHING_LAYERS; do
  step "samstream SegmentEverything, defaults, crop_n_layers $layers"
  bench --rpc everything --requests 1 --warmup 0 --crop-n-layers "$layers" --image "$work/frame.jpg" >"$work/everything_$layers.json"
done
printf '{"loaded_mib": %s, "with_8_streams_mib": %s, "after_%s_stream_cycles_mib": %s}\n' \
  "$rss_loaded" "$rss_8_streams" "$CHURN" "$rss_after_churn" >"$work/memory.json"
kill "$pid"; wait "$pid" 2>/dev/null || true
raw_ort after

step "samstream int8 encoder: Segment and a stream"
start_server int8 --encoder-precision int8
bench --rpc segment --requests "$RUNS" --objects 1 --image "$work/frame.jpg" >"$work/int8_segment_1.json"
bench --rpc stream --seconds "$STREAM_SECS" --objects 1 --source clip --image "$work/frame.jpg" >"$work/int8_stream_1.json"
kill "$pid"; wait "$pid" 2>/dev/null || true

step "Python baselines: onnxruntime pipeline and PyTorch SamPredictor"
"$SAMSTREAM_PYTHON" "$SAMSTREAM_ROOT/bench/python_baselines.py" "$SAMSTREAM_MODEL_DIR" "$work/frame.jpg" --runs "$RUNS" \
  ${SAMSTREAM_CHECKPOINT:+--checkpoint "$SAMSTREAM_CHECKPOINT"} 2>/dev/null >"$work/python.json"

step "segment everything baselines: the official generator and the Python onnxruntime pipeline (minutes)"
# shellcheck disable=SC2086  # the layer list is meant to split
"$SAMSTREAM_PYTHON" "$SAMSTREAM_ROOT/bench/everything_baselines.py" "$SAMSTREAM_MODEL_DIR" "$work/frame.jpg" --layers $EVERYTHING_LAYERS --only $EVERYTHING_BASELINES \
  ${SAMSTREAM_CHECKPOINT:+--checkpoint "$SAMSTREAM_CHECKPOINT"} 2>"$work/everything_python.log" >"$work/everything_python.json" ||
  { grep -v Warning "$work/everything_python.log" | tail -20 >&2; exit 1; }
grep '^\[everything\]' "$work/everything_python.log" >&2

step "int8 and fp16 encoder fidelity on the parity fixtures"
"$SAMSTREAM_PYTHON" "$SAMSTREAM_ROOT/bench/encoder_fidelity.py" "$SAMSTREAM_MODEL_DIR" --json "$work/fidelity.json" 2>/dev/null

step "criterion: preprocess, postprocess, mask encodings"
(cd "$SAMSTREAM_ROOT" && cargo bench --locked --quiet --bench stages -- --warm-up-time 1 --measurement-time 3 --noplot) >"$work/criterion.txt" 2>&1

"$SAMSTREAM_PYTHON" "$SAMSTREAM_ROOT/bench/report.py" "$work" --criterion-dir "$CARGO_TARGET_DIR/criterion" \
  --model-dir "$SAMSTREAM_MODEL_DIR" --command "${BENCH_COMMAND:-make bench}" --out "$OUT"
bash "$SAMSTREAM_ROOT/scripts/bench_proxy.sh"
bash "$SAMSTREAM_ROOT/scripts/bench_viewer.sh"
