#!/usr/bin/env bash
# The whole test suite, set-up included: bash scripts/test.sh [extra cargo test args]
# Formatting and clippy first (scripts/lint.sh): they fail in seconds, the suite takes minutes.
set -euo pipefail
bash "$(dirname "$0")/lint.sh"
source "$(dirname "$0")/setup.sh"
cd "$SAMSTREAM_ROOT"
# Release profile: the same build the demo uses, so CI compiles the dependency tree once.
cargo test --release --locked "$@"
