#!/usr/bin/env bash
# Local stand-ins for the three base images the Dockerfiles name, for machines that reach
# Debian's package archive and PyPI but no image registry. Made with debootstrap and buildah
# (run as root) and committed under the bases' own names, so the Dockerfiles build unchanged:
#
#   debian:bookworm-slim        a minbase Debian bookworm root (debootstrap)
#   python:3.11-slim-bookworm   that root with Debian's python3.11 and a venv whose python and
#                               pip come first on PATH (the official image's /usr/local python)
#   rust:1.88-bookworm          that root with gcc and this machine's Rust toolchain, installed
#                               as the official image has it (RUSTUP_HOME=/usr/local/rustup,
#                               CARGO_HOME=/usr/local/cargo on PATH); its version is this
#                               machine's (the crate needs >= 1.88)
#
# The bases also carry this machine's own network settings, as a registry image pulled here
# would need them too: extra CA certificates (/usr/local/share/ca-certificates, trusted once an
# image installs ca-certificates), apt's Acquire:: settings and /etc/pip.conf, so that apt, pip
# and cargo inside the builds work behind the same proxy as the host.
#
# Idempotent: an image that exists is kept (FORCE=1 remakes them). The Debian root is cached
# under $SAMSTREAM_CACHE/images.
#
#   bash deploy/docker/local-bases.sh
set -euo pipefail
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
CACHE=${SAMSTREAM_CACHE:-$HOME/.cache/samstream}/images
export BUILDAH_ISOLATION=chroot
log() { echo "[bases] $*" >&2; }
have() { [ -z "${FORCE:-}" ] && buildah inspect --type image "docker.io/library/$1" >/dev/null 2>&1; }

if ! have debian:bookworm-slim; then
  root="$CACHE/debian-bookworm-root"
  if [ ! -f "$root/.complete" ]; then
    log "debootstrap bookworm (minbase) from $MIRROR"
    rm -rf "$root"
    mkdir -p "$CACHE"
    debootstrap --variant=minbase bookworm "$root" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 || { tail -20 "$CACHE/debootstrap.log" >&2; exit 1; }
    # As the official slim image: no documentation, an apt that cleans up after itself.
    rm -rf "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/var/cache/apt/archives/*.deb
    touch "$root/.complete"
  fi
  ctr=$(buildah from scratch)
  mnt=$(buildah mount "$ctr")
  cp -a "$root/." "$mnt/"
  rm -f "$mnt/.complete"
  # The official image's sources: the release, its updates and security fixes.
  rm -f "$mnt/etc/apt/sources.list"
  printf 'Types: deb\nURIs: %s\nSuites: bookworm bookworm-updates\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\nTypes: deb\nURIs: %s-security\nSuites: bookworm-security\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
    "$MIRROR" "$MIRROR" >"$mnt/etc/apt/sources.list.d/debian.sources"
  mkdir -p "$mnt/usr/local/share/ca-certificates"
  cp /usr/local/share/ca-certificates/*.crt "$mnt/usr/local/share/ca-certificates/" 2>/dev/null || true
  for conf in $(grep -l '^Acquire::' /etc/apt/apt.conf.d/* 2>/dev/null); do cp "$conf" "$mnt/etc/apt/apt.conf.d/"; done
  [ ! -f /etc/pip.conf ] || cp /etc/pip.conf "$mnt/etc/pip.conf"
  buildah umount "$ctr" >/dev/null
  buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --cmd /bin/bash "$ctr"
  buildah commit -q --rm "$ctr" docker.io/library/debian:bookworm-slim >/dev/null
  log "debian:bookworm-slim committed"
fi

if ! have python:3.11-slim-bookworm; then
  ctr=$(buildah from --pull=never docker.io/library/debian:bookworm-slim)
  buildah run "$ctr" -- sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      python3 python3-venv ca-certificates >/dev/null && rm -rf /var/lib/apt/lists/* && python3 -m venv /usr/local/python \
      && /usr/local/python/bin/pip install -q --upgrade pip'
  buildah config --env PATH=/usr/local/python/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --cmd python3 "$ctr"
  buildah commit -q --rm "$ctr" docker.io/library/python:3.11-slim-bookworm >/dev/null
  log "python:3.11-slim-bookworm committed"
fi

if ! have rust:1.88-bookworm; then
  toolchain=$(rustup show active-toolchain | cut -d' ' -f1)
  rustup_home=${RUSTUP_HOME:-$HOME/.rustup}
  cargo_home=${CARGO_HOME:-$HOME/.cargo}
  [ -n "$toolchain" ] && [ -d "$rustup_home/toolchains/$toolchain" ] || { log "no active Rust toolchain found"; exit 1; }
  ctr=$(buildah from --pull=never docker.io/library/debian:bookworm-slim)
  buildah run "$ctr" -- sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      gcc libc6-dev ca-certificates >/dev/null && rm -rf /var/lib/apt/lists/*'
  mnt=$(buildah mount "$ctr")
  mkdir -p "$mnt/usr/local/rustup/toolchains" "$mnt/usr/local/cargo/bin"
  cp -a "$rustup_home/toolchains/$toolchain" "$mnt/usr/local/rustup/toolchains/"
  printf 'version = "12"\ndefault_toolchain = "%s"\n' "$toolchain" >"$mnt/usr/local/rustup/settings.toml"
  cp -a "$cargo_home/bin/rustup" "$mnt/usr/local/cargo/bin/"
  for proxy in cargo rustc rustdoc rustfmt cargo-clippy clippy-driver rust-gdb rust-lldb; do
    ln -sf rustup "$mnt/usr/local/cargo/bin/$proxy"
  done
  buildah umount "$ctr" >/dev/null
  buildah config --env RUSTUP_HOME=/usr/local/rustup --env CARGO_HOME=/usr/local/cargo \
    --env PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$ctr"
  buildah commit -q --rm "$ctr" docker.io/library/rust:1.88-bookworm >/dev/null
  log "rust:1.88-bookworm committed ($toolchain)"
fi
buildah images --noheading --format '{{.Name}}:{{.Tag}} {{.Size}}' | grep -E 'library/(debian:bookworm-slim|python:3.11-slim-bookworm|rust:1.88-bookworm) ' >&2
