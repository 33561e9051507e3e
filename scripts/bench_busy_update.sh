#!/usr/bin/env bash
# A prompt update while the encoder is busy: one server (serve flags as arguments) reading a
# looping 1280x720 clip; decoder-only prompt updates on a client-frames stream are timed with
# no stream running, then again while the CLI watches the clip (so the encoder is always busy
# with its next frame). Prints one line: both p50s, the busy p99 and decoder stage, and the
# watched stream's results/s. Run it once per flag set to compare them, e.g.
#   bash scripts/bench_busy_update.sh --ort-shared-pool true --encoder-nice 0
#   bash scripts/bench_busy_update.sh
set -euo pipefail
source "$(dirname "$0")/setup.sh" >/dev/null
work=$(mktemp -d)
trap 'kill "${SERVER_PID:-}" 2>/dev/null || true; rm -rf "$work"' EXIT
ffmpeg -loglevel error -y -f lavfi -i testsrc2=size=1280x720:rate=1 -frames:v 1 -q:v 3 "$work/frame.jpg"
ffmpeg -loglevel error -y -f lavfi -i testsrc2=size=1280x720:rate=10 -t 10 -pix_fmt yuv420p "$work/clip.mp4"
printf '[[source]]\nname = "clip"\nkind = "file"\npath = "%s"\nloop = true\n' "$work/clip.mp4" >"$work/sources.toml"
start_samstream "$work/server.log" --sources "$work/sources.toml" --source-grace-secs 1 "$@"
"$SAMSTREAM_BIN" client source clip --server "http://$SERVER_ADDR" --max-frames 1 --quiet >/dev/null 2>&1
bench() { "$SAMSTREAM_BIN" bench --server "http://$SERVER_ADDR" --json "$@"; }
bench --rpc prompt-update --requests 15 --objects 1 --image "$work/frame.jpg" >"$work/idle.json"
bench --rpc stream --source clip --objects 1 --seconds 35 >"$work/stream.json" &
stream=$!
sleep 6
bench --rpc prompt-update --requests 25 --objects 1 --image "$work/frame.jpg" >"$work/busy.json"
wait "$stream"
"$SAMSTREAM_PYTHON" - "$work" "$*" <<'PY'
import json, sys
w, flags = sys.argv[1], sys.argv[2] or "defaults"
idle, busy, stream = (json.load(open(f"{w}/{n}.json")) for n in ("idle", "busy", "stream"))
print(f"[{flags}] prompt update p50 alone {idle['stages_ms']['total']['p50']:.1f} ms, while encoding "
      f"{busy['stages_ms']['total']['p50']:.1f} ms (p99 {busy['stages_ms']['total']['p99']:.1f}, decoder {busy['stages_ms']['decoder']['p50']:.1f}); "
      f"stream {stream['per_second']:.2f} results/s")
PY
