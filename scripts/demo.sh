#!/usr/bin/env bash
# Builds vswitch and runs it with a small topology: three "containers"
# (network namespaces), two on bridge br0 and one on bridge br1. Shows them
# talking, the isolation between bridges, a TCP transfer, and the counters.
# Everything is removed at the end (KEEP=1 leaves it running until Enter).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --workspace --locked

dir=$(mktemp -d /tmp/vswitch-demo.XXXXXX)
sock=$dir/vswitchd.sock
vsctl() { echo "+ vsctl $*"; ./target/release/vsctl --socket "$sock" "$@"; }
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
pid=
cleanup() {
    set +e
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    for ns in demo-c1 demo-c2 demo-c3; do
        ip netns pids $ns 2>/dev/null | xargs -r kill 2>/dev/null
        ip netns del $ns 2>/dev/null
    done
    rm -rf "$dir"
}
trap cleanup EXIT INT TERM

step "vswitchd: one poll thread per core, control socket $sock"
./target/release/vswitchd --socket "$sock" --state-dir "$dir/state" --log-level warn &
pid=$!
for _ in $(seq 100); do ./target/release/vsctl --socket "$sock" show >/dev/null 2>&1 && break; sleep 0.05; done

step "three containers (network namespaces)"
for ns in demo-c1 demo-c2 demo-c3; do
    ip netns add $ns
    ip -n $ns link set lo up
done

step "two bridges; each container gets a TAP port named eth0 inside it"
vsctl add-br br0
vsctl add-br br1
vsctl add-port br0 c1 --type tap --netns demo-c1 --ifname eth0
vsctl add-port br0 c2 --type tap --netns demo-c2 --ifname eth0
vsctl add-port br1 c3 --type tap --netns demo-c3 --ifname eth0
ip -n demo-c1 addr add 10.99.0.1/24 dev eth0
ip -n demo-c2 addr add 10.99.0.2/24 dev eth0
ip -n demo-c3 addr add 10.99.0.3/24 dev eth0
vsctl show

step "c1 -> c2, same bridge"
ip netns exec demo-c1 ping -c 3 -i 0.2 10.99.0.2

step "c3 -> c1, other bridge: isolated (this ping must fail)"
if ip netns exec demo-c3 ping -c 2 -W 1 -q 10.99.0.1; then
    echo "UNEXPECTED: bridges are not isolated" >&2
    exit 1
fi
echo "isolated, as expected"

step "TCP c1 -> c2 (iperf3, 3 s)"
ip netns exec demo-c2 iperf3 -s -1 -D
sleep 0.3
ip netns exec demo-c1 iperf3 -c 10.99.0.2 -t 3 | tail -4

step "what the switch saw"
vsctl fdb-show br0
vsctl port-stats
vsctl pmd-stats

if [ "${KEEP:-0}" = 1 ]; then
    echo
    echo "running: try 'target/release/vsctl --socket $sock show', or ip netns exec demo-c1 bash; press Enter to tear down"
    read -r _
fi
