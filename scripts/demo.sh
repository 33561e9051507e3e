#!/usr/bin/env bash
# Demo: set up, start the server on a free port, then with the client
#   1. segment a sample image (overlay + PNG masks),
#   2. stream a short video frame by frame into an overlay mp4 with per-frame PNG masks,
#   3. with VIEWER=1, keep serving that video (looping) to the browser viewer until ctrl-c.
#   bash scripts/demo.sh [IMAGE] [VIDEO]     outputs in $OUT_DIR (default /tmp/samstream-demo)
#   VIEWER=1 bash scripts/demo.sh     then open the printed address in a browser
set -euo pipefail
source "$(dirname "$0")/setup.sh"
IMAGE=${1:-$SAMSTREAM_MODEL_DIR/parity/landscape.png}
VIDEO=${2:-}
OUT_DIR=${OUT_DIR:-/tmp/samstream-demo}
mkdir -p "$OUT_DIR"
log_file=$(mktemp)
trap 'kill ${SERVER_PID:-} 2>/dev/null; wait ${SERVER_PID:-} 2>/dev/null; rm -f "$log_file"' EXIT
if [ -z "$VIDEO" ]; then
  VIDEO="$OUT_DIR/sample.mp4"
  ffmpeg -loglevel error -y -f lavfi -i testsrc2=size=640x360:rate=5 -t 3 -pix_fmt yuv420p "$VIDEO"
fi
printf '[[source]]\nname = "demo"\nkind = "file"\npath = "%s"\nloop = true\n' "$(realpath "$VIDEO")" >"$OUT_DIR/sources.toml"
start_samstream "$log_file" --viewer --sources "$OUT_DIR/sources.toml"
addr=$SERVER_ADDR
echo "server on $addr; segmenting $IMAGE"
# The client waits (health check) until the model is loaded and warmed up. Prompts are
# fractions of the image size so any image works.
IFS=x read -r width height < <(ffprobe -v error -select_streams v:0 -show_entries stream=width,height -of csv=p=0:s=x "$IMAGE")
"$SAMSTREAM_BIN" client image "$IMAGE" --server "http://$addr" \
  --point $((width * 45 / 100)),$((height * 52 / 100)) --box 2:$((width / 5)),$((height / 4)),$((width * 7 / 10)),$((height * 3 / 4)) \
  --overlay "$OUT_DIR/overlay.png" --out-masks "$OUT_DIR/image-masks"

echo
echo "streaming $VIDEO frame by frame"
IFS=x read -r width height < <(ffprobe -v error -select_streams v:0 -show_entries stream=width,height -of csv=p=0:s=x "$VIDEO")
"$SAMSTREAM_BIN" client video "$VIDEO" --server "http://$addr" --max-frames "${MAX_FRAMES:-15}" \
  --point $((width / 3)),$((height / 2)) --point 2:$((width * 2 / 3)),$((height / 2)) \
  --overlay "$OUT_DIR/overlay.mp4" --out-masks "$OUT_DIR/video-masks"
echo
echo "outputs in $OUT_DIR: overlay.png, image-masks/, overlay.mp4, video-masks/"
if [ -n "${VIEWER:-}" ]; then
  echo
  echo "the viewer: open http://$addr/ in a browser, pick \"demo\" and click on the video (ctrl-c to stop)"
  wait "$SERVER_PID"
fi
