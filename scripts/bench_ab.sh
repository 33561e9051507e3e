#!/usr/bin/env bash
# Two builds of samstream against each other on this machine, in one run (the project's one A/B
# harness): each round starts one server of each (same flags), times it to SERVING, then runs
# the same `samstream bench` rows against it (Segment with 1 and 8 objects, a prompt update,
# SegmentEverything on a 16x16 grid), with NEW's client for both; rounds alternate the order,
# so the machine's drift hits both alike. Prints medians over rounds and new/old ratios.
#   bash scripts/bench_ab.sh OLD_BINARY NEW_BINARY [serve flags...]
#   ROUNDS=3 N=15 bash scripts/bench_ab.sh /tmp/samstream-old target/release/samstream --data-path device
set -euo pipefail
old=$1 new=$2
shift 2
source "$(dirname "$0")/setup.sh"
ROUNDS=${ROUNDS:-3} N=${N:-15}
out=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$out"' EXIT
image=$SAMSTREAM_MODEL_DIR/parity/landscape.png
[ -f "${AB_IMAGE:-}" ] && image=$AB_IMAGE
NE=${NE:-$(( (N + 4) / 5 ))}
rows=("segment_1 --rpc segment --requests $N" "segment_8 --rpc segment --objects 8 --requests $N" "prompt_1 --rpc prompt-update --requests $((N * 2))"
  "everything_16 --rpc everything --points-per-side 16 --requests $NE")
run_one() {
  local label=$1 binary=$2 round=$3
  local started=$(date +%s%N)
  SAMSTREAM_BIN=$binary start_samstream "$out/$label-$round.log" "${@:4}"
  "$new" client image "$image" --server "http://$SERVER_ADDR" --point 100,100 --ready-timeout 300 >/dev/null
  echo $(( ($(date +%s%N) - started) / 1000000 )) >"$out/$label-$round-serving"
  for row in "${rows[@]}"; do
    set -- $row
    local name=$1
    shift
    "$new" bench --server "http://$SERVER_ADDR" --image "$image" --json "$@" >"$out/$label-$round-$name.json"
  done
  kill "$SERVER_PID"; wait "$SERVER_PID" 2>/dev/null || true
}
for round in $(seq "$ROUNDS"); do
  if [ $((round % 2)) = 1 ]; then run_one old "$old" "$round" "$@"; run_one new "$new" "$round" "$@"
  else run_one new "$new" "$round" "$@"; run_one old "$old" "$round" "$@"; fi
  echo "[bench_ab] round $round of $ROUNDS done" >&2
done
python3 - "$out" "$ROUNDS" <<'PY'
import json, pathlib, statistics, sys
out, rounds = pathlib.Path(sys.argv[1]), int(sys.argv[2])
def med(label, name):
    values = []
    for r in range(1, rounds + 1):
        path = out / f"{label}-{r}-{name}"
        if name == "serving":
            values.append(float(path.read_text()))
        else:
            values.append(json.loads(path.with_suffix(".json").read_text())["latency_ms"]["p50"])
    return statistics.median(values)
print(f"{'row (median of p50s over rounds, ms)':40} {'old':>10} {'new':>10} {'new/old':>8}")
for name in ["serving", "segment_1", "segment_8", "prompt_1", "everything_16"]:
    a, b = med("old", name), med("new", name)
    print(f"{name + (' (start to SERVING)' if name == 'serving' else ''):40} {a:10.1f} {b:10.1f} {b / a:8.3f}")
PY
