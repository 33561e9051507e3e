#!/usr/bin/env bash
# Builds samstream:cpu and samstream:cuda from the repository's Dockerfiles, unchanged, with
# buildah (root, chroot isolation; BuildKit-style cache mounts work there), on the local
# stand-in base images (local-bases.sh) where no registry is reachable. Layers are cached
# between runs. Prints each build's time and the images' sizes.
#
#   bash deploy/docker/build-images.sh [cpu] [cuda]     (make images)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
export BUILDAH_ISOLATION=chroot
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(cpu cuda)
bash "$ROOT/deploy/docker/local-bases.sh"
for target in "${targets[@]}"; do
  started=$(date +%s)
  echo "[images] building samstream:$target from deploy/docker/Dockerfile.$target" >&2
  log="${SAMSTREAM_CACHE:-$HOME/.cache/samstream}/images/build-$target.log"
  mkdir -p "$(dirname "$log")"
  if ! buildah bud --layers --pull=never -f "$ROOT/deploy/docker/Dockerfile.$target" -t "samstream:$target" "$ROOT" >"$log" 2>&1; then
    tail -40 "$log" >&2
    echo "[images] samstream:$target failed; the whole log is $log" >&2
    exit 1
  fi
  echo "[images] samstream:$target built in $(($(date +%s) - started)) s ($(buildah images --noheading --format '{{.Size}}' "samstream:$target"))" >&2
done
