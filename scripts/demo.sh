#!/usr/bin/env bash
# Demo: set up, start the server on a free port, segment a sample image with the client.
set -euo pipefail
source "$(dirname "$0")/setup.sh"
IMAGE=${1:-$SAMSTREAM_MODEL_DIR/parity/landscape.png}
log_file=$(mktemp)
"$SAMSTREAM_BIN" serve --model-dir "$SAMSTREAM_MODEL_DIR" --listen 127.0.0.1:0 >"$log_file" 2>&1 &
server=$!
trap 'kill $server 2>/dev/null; wait $server 2>/dev/null; rm -f "$log_file"' EXIT
for _ in $(seq 100); do
  addr=$(sed -n 's/^samstream listening on //p' "$log_file")
  [ -n "$addr" ] && break
  kill -0 $server 2>/dev/null || { cat "$log_file"; exit 1; }
  sleep 0.1
done
[ -n "$addr" ] || { echo "server did not start"; cat "$log_file"; exit 1; }
echo "server on $addr; segmenting $IMAGE"
# The client waits (health check) until the model is loaded and warmed up.
"$SAMSTREAM_BIN" client --server "http://$addr" --image "$IMAGE" --point 864,562 --box 400,300,1300,800 --out-dir "${OUT_DIR:-/tmp/samstream-demo}"
