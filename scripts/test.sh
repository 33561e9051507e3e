#!/usr/bin/env bash
# The whole test suite, set-up included: bash scripts/test.sh [extra cargo test args]
set -euo pipefail
source "$(dirname "$0")/setup.sh"
cd "$SAMSTREAM_ROOT"
# Release profile: the same build the demo uses, so CI compiles the dependency tree once.
cargo test --release --locked "$@"
