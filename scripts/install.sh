#!/usr/bin/env bash
# Puts this build on PATH: vswitchd, vsctl, vsperf and vswitch-docker in
# /usr/local/bin (PREFIX=... for another place), the CNI plugin where the
# runtimes look (install-plugins.sh). Run as root after
# `cargo build --release --workspace` (demo.sh and test.sh build).
# `scripts/install.sh --uninstall` removes what it installed; the state
# (/var/lib/vswitch, /var/lib/vswitch-docker) is left for you to remove.
set -euo pipefail
cd "$(dirname "$0")/.."
prefix=${PREFIX:-/usr/local}
target=${CARGO_TARGET_DIR:-target}/release
bins=(vswitchd vsctl vsperf vswitch-docker)
if [ "${1:-}" = --uninstall ]; then
    for b in "${bins[@]}"; do rm -f "$prefix/bin/$b"; done
    rm -f /opt/cni/bin/vswitch /usr/lib/cni/vswitch
    echo "removed ${bins[*]} from $prefix/bin and the CNI plugin"
    exit 0
fi
for b in "${bins[@]}"; do
    [ -x "$target/$b" ] || { echo "no $target/$b: run cargo build --release --workspace first" >&2; exit 1; }
    install -D -m 0755 "$target/$b" "$prefix/bin/$b"
done
./scripts/install-plugins.sh
echo "installed ${bins[*]} in $prefix/bin, the CNI plugin as /opt/cni/bin/vswitch and /usr/lib/cni/vswitch"
