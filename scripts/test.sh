#!/usr/bin/env bash
# The whole test suite: unit tests and end-to-end tests on real namespaces,
# TAP devices and AF_XDP sockets. Run as root (it creates namespaces and
# devices, all uniquely named, and removes them).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --workspace --locked
./scripts/install-plugins.sh
log=$(mktemp /tmp/vswitch-test.XXXXXX)
trap 'rm -f "$log"' EXIT

# The house rules, enforced: formatting and lints (with the workspace's
# lints, e.g. every unsafe block documented). A failure fails the suite but
# the tests still run, so one run shows everything that is wrong.
lint_failed=()
if ! cargo fmt --all -- --check; then
    lint_failed+=("formatting (cargo fmt --all -- --check; fix with: cargo fmt --all)")
fi
if ! cargo clippy --workspace --all-targets --locked -- -D warnings; then
    lint_failed+=("lints (cargo clippy --workspace --all-targets --locked -- -D warnings)")
fi

set +e
cargo test --release --workspace --locked --no-fail-fast 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
set -e
# One closing line for the whole run, summed over every test binary.
awk '/^test result:/ { p += $4; f += $6; i += $8 } END { printf "\ntests: %d passed, %d failed, %d skipped\n", p, f, i }' "$log"
for what in "${lint_failed[@]}"; do
    echo "FAILED: $what" >&2
done
if [ ${#lint_failed[@]} -gt 0 ] && [ "$status" -eq 0 ]; then
    status=1
fi
exit "$status"
