#!/usr/bin/env bash
# The whole test suite: unit tests and end-to-end tests on real namespaces
# and TAP devices. Run as root (it creates namespaces and devices, all named
# vst-*, and removes them).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --workspace --locked
log=$(mktemp /tmp/vswitch-test.XXXXXX)
trap 'rm -f "$log"' EXIT
cargo test --release --workspace --locked 2>&1 | tee "$log"
# One closing line for the whole run, summed over every test binary.
awk '/^test result:/ { p += $4; f += $6; i += $8 } END { printf "\ntests: %d passed, %d failed, %d skipped\n", p, f, i }' "$log"
