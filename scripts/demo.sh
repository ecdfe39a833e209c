#!/usr/bin/env bash
# Builds vswitch and runs it with a small topology: two networks with
# subnets, three "containers" (network namespaces) attached by vswitchd (one
# over AF_XDP), routing once the networks are linked, the host reaching a
# container through an internal port, an uplink to an "outside" namespace
# with masquerade and a published port. Shows the counters at the end.
# Everything is removed at the end (KEEP=1 leaves it running until Enter).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install-deps.sh
export PATH="$HOME/.cargo/bin:$PATH"
cargo build --release --workspace --locked
./scripts/install-plugins.sh
# `./scripts/demo.sh docker`: the same switch, driven by Docker.
if [ "${1:-}" = docker ]; then
    exec ./scripts/demo-docker.sh
fi

dir=$(mktemp -d /tmp/vswitch-demo.XXXXXX)
sock=$dir/vswitchd.sock
vsctl() { echo "+ vsctl $*"; ./target/release/vsctl --socket "$sock" "$@"; }
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
pid=
cleanup() {
    set +e
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    for ns in demo-c1 demo-c2 demo-c3 demo-out; do
        ip netns pids $ns 2>/dev/null | xargs -r kill 2>/dev/null
        ip netns del $ns 2>/dev/null
    done
    ip link del vsdemo-up 2>/dev/null
    rm -rf "$dir"
}
trap cleanup EXIT INT TERM

step "vswitchd: one poll thread per core, control socket $sock"
./target/release/vswitchd --socket "$sock" --state-dir "$dir/state" --log-level warn &
pid=$!
for _ in $(seq 100); do ./target/release/vsctl --socket "$sock" show >/dev/null 2>&1 && break; sleep 0.05; done

step "three containers (network namespaces), two networks"
for ns in demo-c1 demo-c2 demo-c3; do
    ip netns add $ns
    ip -n $ns link set lo up
done
vsctl add-br front --subnet 10.99.0.0/24
vsctl add-br back --subnet 10.98.0.0/24

step "attach: vswitchd creates each port, moves it in as eth0, gives it an address and a default route"
vsctl attach front demo-c1
vsctl attach front demo-c2 --type afxdp
vsctl attach back demo-c3
ip -n demo-c1 -br addr show eth0
ip -n demo-c1 route show default
vsctl show

step "c1 -> c2, same network (TAP -> AF_XDP)"
ip netns exec demo-c1 ping -c 3 -i 0.2 10.99.0.3

step "TCP c1 -> c2 (iperf3, 3 s)"
ip netns exec demo-c2 iperf3 -s -1 -D
sleep 0.3
ip netns exec demo-c1 iperf3 -c 10.99.0.3 -t 3 | tail -4

step "c1 -> c3, other network: isolated (the gateway says unreachable)"
if ip netns exec demo-c1 ping -c 2 -W 1 10.98.0.2; then
    echo "UNEXPECTED: networks are not isolated" >&2
    exit 1
fi
echo "isolated, as expected"

step "link the networks: now routed, one hop (ttl 63)"
vsctl link-br front back
ip netns exec demo-c1 ping -c 3 -i 0.2 10.98.0.2

step "the host reaches the front network through an internal port (docker0's role)"
vsctl add-port front vsdemo0 --type internal
ip -br addr show dev vsdemo0
ping -c 2 -i 0.2 10.99.0.2

step "the outside world: an uplink (AF_XDP on a veth to namespace demo-out) and masquerade"
ip netns add demo-out
ip link add vsdemo-up type veth peer name eth0 netns demo-out
ip link set vsdemo-up up
ip -n demo-out link set eth0 up
ip -n demo-out link set lo up
ip -n demo-out addr add 203.0.113.1/24 dev eth0
vsctl add-uplink front vsdemo-up --ip 203.0.113.2/24 --gateway 203.0.113.1
vsctl set-nat front masquerade
echo "(demo-out has no route to 10.99.0.0/24: only NAT gets answers back)"
ip netns exec demo-out python3 -c "
import socket; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('203.0.113.1', 9000)); s.listen(); c, a = s.accept(); print('outside server: connection from', a[0], 'port', a[1]); c.close()" &
server=$!
sleep 0.5
ip netns exec demo-c1 nc -w 2 203.0.113.1 9000 </dev/null || true
wait $server

step "port publishing: demo-out reaches c1:80 at 203.0.113.2:8080 (like docker run -p 8080:80)"
vsctl publish front --proto tcp --port 8080 --to 10.99.0.2:80
ip netns exec demo-c1 python3 -c "
import socket; s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('10.99.0.2', 80)); s.listen(); c, a = s.accept(); c.sendall(b'hello from c1\n'); print('c1 server: connection from', a[0]); c.close()" &
server=$!
sleep 0.5
ip netns exec demo-out nc -w 2 203.0.113.2 8080 </dev/null || true
wait $server
vsctl list-conns
vsctl show-ct-stats

step "what the switch saw"
vsctl list-fdb front
vsctl list-neigh
vsctl show-port-stats
vsctl show-pmd-stats

if [ "${KEEP:-0}" = 1 ]; then
    echo
    echo "running: try 'target/release/vsctl --socket $sock show', or ip netns exec demo-c1 bash; press Enter to tear down"
    read -r _
fi
