#!/usr/bin/env bash
# Installs the runtime plugins this build made where runtimes look for them:
# vswitch-cni as the CNI plugin `vswitch` (/opt/cni/bin, and /usr/lib/cni
# where Debian's podman looks). Run as root after `cargo build --release`;
# demo.sh and test.sh do. (vswitch-docker needs no installing: dockerd
# finds it by the socket it listens on.)
set -euo pipefail
cd "$(dirname "$0")/.."
for dir in /opt/cni/bin /usr/lib/cni; do
    install -D -m 0755 "${CARGO_TARGET_DIR:-target}/release/vswitch-cni" "$dir/vswitch"
done
