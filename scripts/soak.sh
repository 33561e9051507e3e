#!/usr/bin/env bash
# Soak: bash scripts/soak.sh [STREAMS] [SECONDS]  (default 4 streams, 600 s)
# Starts a server with a generated looping 10 fps video source and metrics, holds STREAMS
# streams on it for SECONDS, and prints errors, dropped frames, per-stage p50/p99 and the
# server's RSS at start and end.
set -euo pipefail
source "$(dirname "$0")/setup.sh"
STREAMS=${1:-4}
SECONDS_TO_RUN=${2:-600}
work=$(mktemp -d)
ffmpeg -loglevel error -y -f lavfi -i testsrc=size=640x480:rate=10 -t 10 -c:v mpeg4 -q:v 5 "$work/soak.mp4"
cat >"$work/sources.toml" <<TOML
[[source]]
name = "soak"
kind = "file"
path = "$work/soak.mp4"
loop = true
TOML
metrics_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
trap 'kill ${SERVER_PID:-} 2>/dev/null; wait ${SERVER_PID:-} 2>/dev/null; rm -rf "$work"' EXIT
start_samstream "$work/server.log" --sources "$work/sources.toml" --metrics-listen "127.0.0.1:$metrics_port"
addr=$SERVER_ADDR
until grep -q "serving" "$work/server.log"; do sleep 0.2; done
"$SAMSTREAM_BIN" soak --server "http://$addr" --source soak --streams "$STREAMS" --seconds "$SECONDS_TO_RUN" \
  --metrics "127.0.0.1:$metrics_port"
