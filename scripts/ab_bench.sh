#!/usr/bin/env bash
# Same-run A/B of two samstream binaries on this machine: both serve the same model, and their
# Segment (1 and 8 objects) and prompt-update latencies are measured in alternating rounds, so
# the machine's drift hits both alike. Prints per-row medians and the B/A ratio.
#
#   bash scripts/ab_bench.sh OLD_BINARY NEW_BINARY [ROUNDS]      (ROUNDS=3, each of RUNS=5 calls)
set -euo pipefail
# The binaries under test are given; the working tree need not build.
SAMSTREAM_NO_BUILD=1 source "$(dirname "$0")/setup.sh"
OLD=$1
NEW=$2
ROUNDS=${3:-3}
RUNS=${RUNS:-5}
work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
ffmpeg -loglevel error -y -f lavfi -i testsrc2=size=1280x720:rate=1 -frames:v 1 -q:v 3 "$work/frame.jpg"

# serve NAME BINARY: starts BINARY on a free port (the shared start_samstream, with its binary)
# and waits for its model; sets SERVER_ADDR.
serve() {
  local bin=$SAMSTREAM_BIN
  SAMSTREAM_BIN=$2
  start_samstream "$work/$1.log"
  SAMSTREAM_BIN=$bin
  pids+=("$SERVER_PID")
  "$2" client --server "http://$SERVER_ADDR" --image "$work/frame.jpg" --point 640,360 >/dev/null
}
serve old "$OLD"
old_addr=$SERVER_ADDR
serve new "$NEW"
new_addr=$SERVER_ADDR

row() { # row NAME ADDR BINARY ARGS... -> appends the client-observed p50 (ms) to $work/NAME
  local name=$1 addr=$2 bin=$3
  shift 3
  "$bin" bench --server "http://$addr" --json --image "$work/frame.jpg" "$@" |
    "$SAMSTREAM_PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["latency_ms"]["p50"])' >>"$work/$name"
}
for round in $(seq "$ROUNDS"); do
  echo "[ab] round $round of $ROUNDS" >&2
  for side in old new; do
    addr=${side}_addr
    bin=$OLD
    [ "$side" = new ] && bin=$NEW
    row "${side}_segment_1" "${!addr}" "$bin" --rpc segment --requests "$RUNS" --objects 1
    row "${side}_segment_8" "${!addr}" "$bin" --rpc segment --requests "$RUNS" --objects 8
    row "${side}_prompt_1" "${!addr}" "$bin" --rpc prompt-update --requests $((RUNS * 2)) --objects 1
  done
done
"$SAMSTREAM_PYTHON" - "$work" <<'EOF'
import statistics, sys
from pathlib import Path
work = Path(sys.argv[1])
print(f"{'row (client-observed p50 per round, ms)':<44} {'A (old)':>22} {'B (new)':>22} {'B/A':>6}")
for row in ("segment_1", "segment_8", "prompt_1"):
    old = [float(v) for v in (work / f"old_{row}").read_text().split()]
    new = [float(v) for v in (work / f"new_{row}").read_text().split()]
    a, b = statistics.median(old), statistics.median(new)
    show = lambda values: "/".join(f"{v:.1f}" for v in values)
    print(f"{row:<44} {show(old):>22} {show(new):>22} {b / a:6.3f}")
EOF
