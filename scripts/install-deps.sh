#!/usr/bin/env bash
# Installs what vswitch needs to build, run its demo and run its tests on
# Debian 12, and nothing that is already there. Run as root.
set -euo pipefail

# netsniff-ng (trafgen) and openvswitch-switch are for vsperf: the frame
# generator, and the Open vSwitch it compares against. etcd-server is the
# cluster's store (the tests start their own); protobuf-compiler builds the
# etcd client's protocol. docker.io is for the Docker network driver's
# tests and demo (they start dockerd themselves), busybox-static the one
# binary their container image holds (nothing is pulled from a registry);
# podman (on its CNI backend, with containernetworking-plugins for its own
# default network) for the CNI plugin's; prometheus for promtool, which
# checks the metrics vswitchd serves (its server is not wanted); libpcap-dev
# for vsctl capture --filter (tcpdump's expressions, compiled by libpcap).
packages=(build-essential ca-certificates curl iproute2 iputils-ping iperf3 tcpdump netcat-openbsd ethtool procps sockperf util-linux python3 iptables netsniff-ng openvswitch-switch etcd-server protobuf-compiler docker.io busybox-static podman containernetworking-plugins prometheus libpcap-dev)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
    # vsperf starts an Open vSwitch of its own; the system's service is not
    # wanted (where systemd runs, the package starts it).
    if [[ " ${missing[*]} " == *" openvswitch-switch "* ]] && [ -d /run/systemd/system ]; then
        systemctl disable --now openvswitch-switch >/dev/null 2>&1 || true
    fi
    # Likewise etcd: tests and the cluster demo start their own members.
    if [[ " ${missing[*]} " == *" etcd-server "* ]] && [ -d /run/systemd/system ]; then
        systemctl disable --now etcd >/dev/null 2>&1 || true
    fi
    # Only promtool is used from prometheus.
    if [[ " ${missing[*]} " == *" prometheus "* ]] && [ -d /run/systemd/system ]; then
        systemctl disable --now prometheus >/dev/null 2>&1 || true
    fi
fi

# Debian 12's rustc is too old for the crates we use: take rustup's stable.
if ! command -v cargo >/dev/null 2>&1 && [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
fi
if ! command -v cargo >/dev/null 2>&1; then
    echo "installing the Rust toolchain (rustup, stable, minimal profile)"
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
fi
# The suite checks formatting and lints: the minimal profile has neither.
if command -v rustup >/dev/null 2>&1; then
    for component in rustfmt clippy; do
        rustup component list --installed 2>/dev/null | grep -q "^$component" || rustup component add "$component"
    done
fi
