#!/usr/bin/env bash
# The gates the test suite runs first, so that an unformatted or lint-dirty change fails in
# seconds rather than after the tests: rustfmt, then clippy on every target with warnings as
# errors (after installing what compiling needs: OpenCV and clang).
#
#   bash scripts/lint.sh
set -euo pipefail
cd "$(dirname "$0")/.."
echo "[lint] cargo fmt --check" >&2
cargo fmt --check
SAMSTREAM_SETUP=packages source scripts/setup.sh
echo "[lint] cargo clippy --all-targets -- -D warnings" >&2
# --release: the build scripts (OpenCV's bindings) run once for clippy and the release build.
cargo clippy --release --locked --all-targets --quiet -- -D warnings
