#!/usr/bin/env bash
# What Envoy adds to a viewer's latency: the same streams on the same server, direct
# and through Envoy (deploy/envoy/envoy.yaml with loopback addresses), alternating
# direct / Envoy / direct / Envoy so slow drift of this shared machine hits both alike.
# Each result's "delivery" is its arrival at the client minus its capture time and the
# server's stages after the grab: sending, the proxy, receiving. "age" is capture to arrival.
# Prints a table with medians over the rounds and ratios, and writes it between the proxy
# markers of BENCHMARKS.md (make bench runs this too).
#
#   bash scripts/bench_proxy.sh        (or: make bench-proxy)   ROUNDS=2 SECS=20 VIEWERS=4
set -euo pipefail
source "$(dirname "$0")/setup.sh"
ROUNDS=${ROUNDS:-2}
SECS=${SECS:-20}
VIEWERS=${VIEWERS:-4}
OUT=${BENCH_OUT:-$SAMSTREAM_ROOT/BENCHMARKS.md}
work=$(mktemp -d)
envoy_pid=""
cleanup() {
  [ -n "$envoy_pid" ] && kill "$envoy_pid" 2>/dev/null
  [ -n "${SERVER_PID:-}" ] && kill "$SERVER_PID" 2>/dev/null
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT
step() { echo "[bench-proxy] $*" >&2; }
free_port() { "$SAMSTREAM_PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

ffmpeg -loglevel error -y -f lavfi -i testsrc2=size=640x480:rate=10 -t 10 -pix_fmt yuv420p "$work/clip.mp4"
printf '[[source]]\nname = "clip"\nkind = "file"\npath = "%s"\nloop = true\n' "$work/clip.mp4" >"$work/sources.toml"
start_samstream "$work/server.log" --sources "$work/sources.toml" --source-grace-secs 1
"$SAMSTREAM_BIN" client source clip --server "http://$SERVER_ADDR" --max-frames 1 --quiet >/dev/null

envoy_port=$(free_port)
"$SAMSTREAM_PYTHON" "$SAMSTREAM_ROOT/tests/support/envoy_config.py" "$SAMSTREAM_ROOT/deploy/envoy/envoy.yaml" "$work/envoy.yaml" \
  --listen "$envoy_port" --admin "$(free_port)" --replica "$SERVER_ADDR"
"$SAMSTREAM_ENVOY" -c "$work/envoy.yaml" --concurrency 1 --use-dynamic-base-id --log-level warn >"$work/envoy.log" 2>&1 &
envoy_pid=$!
for _ in $(seq 100); do
  "$SAMSTREAM_BIN" client source clip --server "http://127.0.0.1:$envoy_port" --max-frames 1 --quiet --ready-timeout 5 >/dev/null 2>&1 && break
  sleep 0.3
done

for round in $(seq "$ROUNDS"); do
  for path in direct envoy; do
    server="http://$SERVER_ADDR"
    [ "$path" = envoy ] && server="http://127.0.0.1:$envoy_port"
    step "round $round: $VIEWERS viewers of one source, $path, ${SECS} s"
    "$SAMSTREAM_BIN" bench --server "$server" --rpc stream --source clip --concurrency "$VIEWERS" --objects 1 \
      --seconds "$SECS" --json >"$work/${path}_$round.json"
  done
done

"$SAMSTREAM_PYTHON" - "$work" "$ROUNDS" "$VIEWERS" "$OUT" "$("$SAMSTREAM_ENVOY" --version | grep -o '1\.[0-9]*\.[0-9]*' | head -1)" "$SAMSTREAM_ROOT/bench" <<'PY'
import json, statistics, sys
from pathlib import Path

work, rounds, viewers, out, envoy_version = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3], Path(sys.argv[4]), sys.argv[5]
def median(path, stage, q):
    return statistics.median(json.loads((work / f"{path}_{r}.json").read_text())["stages_ms"][stage][q] for r in range(1, rounds + 1))
def rate(path):
    return statistics.median(json.loads((work / f"{path}_{r}.json").read_text())["per_second"] for r in range(1, rounds + 1))
rows = [f"| {viewers} viewers of one source | direct | Envoy {envoy_version} | Envoy − direct | ratio |", "| --- | ---: | ---: | ---: | ---: |"]
for stage in ("delivery", "age"):
    for q in ("p50", "p99"):
        d, e = median("direct", stage, q), median("envoy", stage, q)
        rows.append(f"| {stage} {q} (ms) | {d:.2f} | {e:.2f} | {e - d:+.2f} | {e / d:.2f} |" if d > 0 else f"| {stage} {q} (ms) | {d:.2f} | {e:.2f} | {e - d:+.2f} | – |")
d, e = rate("direct"), rate("envoy")
rows.append(f"| results/s (all viewers) | {d:.1f} | {e:.1f} | {e - d:+.1f} | {e / d:.2f} |")
section = "\n".join([
    "## Viewers through Envoy vs direct",
    "",
    f"`make bench-proxy`: the same server-side source watched by {viewers} streams directly and through Envoy",
    "(deploy/envoy/envoy.yaml, loopback addresses), alternating, medians over "
    f"{rounds} rounds. *delivery*: arrival at the client minus the capture time and the server's stages "
    "after the grab (sending, the proxy, receiving); *age*: capture to arrival. The machine is shared: "
    "p99s move by milliseconds from run to run.",
    "",
    *rows,
])
print(section)
sys.path.insert(0, sys.argv[6])
from sections import replace
replace(out, "proxy", section)
PY
