#!/usr/bin/env bash
# Control-plane scale (issue 16): N attaches and N publishes, as separate
# vsctl calls and as one transaction each, and a restart with the N ports
# until vswitchd answers and until a restored port forwards again.
# Usage (as root, after cargo build --release): perf/scripts/control-scale.sh [N]
set -euo pipefail
cd "$(dirname "$0")/../.."
n=${1:-1000}
bin=target/release
dir=$(mktemp -d /tmp/vsscale.XXXXXX)
sock=$dir/vswitchd.sock
vsctl() { "$bin/vsctl" --socket "$sock" "$@"; }
now() { date +%s.%N; }
since() { python3 -c "import sys; print('%.2f' % (float(sys.argv[2]) - float(sys.argv[1])))" "$1" "$(now)"; }
start() {
    "$bin/vswitchd" --cores 1 --socket "$sock" --state-dir "$dir/state" --log-level warn 2>>"$dir/log" &
    echo $! >"$dir/pid"
}
cleanup() {
    kill -9 "$(cat "$dir/pid" 2>/dev/null)" 2>/dev/null || true
    for i in $(seq "$n"); do ip netns del "vss$i" 2>/dev/null || true; done
    rm -rf "$dir"
}
trap cleanup EXIT
# IPv6 off in the namespaces, as in the tests and vsperf's lab: the bridges
# are IPv4 networks, and each new interface's IPv6 link-local chatter (DAD,
# MLD reports, router solicitations: ~8 multicast frames) is flooded to
# every port by any bridge, the kernel's as ours: 1000 interfaces x 8 x
# 1000 ports is ~8 million deliveries, seconds of CPU that measure the
# flood, not the control plane.
for i in $(seq "$n"); do
    ip netns add "vss$i"
    ip netns exec "vss$i" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
done
start
until vsctl show >/dev/null 2>&1; do sleep 0.05; done
vsctl add-br a --subnet 10.96.0.0/20 -- add-br b --subnet 10.112.0.0/20

t=$(now)
for i in $(seq "$n"); do vsctl attach a "vss$i" >/dev/null; done
attach_each=$(since "$t")
echo "attach_each: $attach_each s" >&2

args=()
for i in $(seq "$n"); do args+=(attach b "vss$i" --ifname eth1 --no-default-route --); done
unset 'args[${#args[@]}-1]'
t=$(now)
vsctl "${args[@]}" >/dev/null
attach_txn=$(since "$t")
echo "attach_txn: $attach_txn s" >&2

t=$(now)
for i in $(seq "$n"); do vsctl publish a --proto tcp --port $((10000 + i)) --to 10.96.0.2:80; done
publish_each=$(since "$t")
echo "publish_each: $publish_each s" >&2

args=()
for i in $(seq "$n"); do args+=(publish a --proto udp --port $((10000 + i)) --to 10.96.0.2:53 --); done
unset 'args[${#args[@]}-1]'
t=$(now)
vsctl "${args[@]}" >/dev/null
publish_txn=$(since "$t")
echo "publish_txn: $publish_txn s" >&2

# A restart with 2N ports: until the socket answers, and until the first
# and the last container reach each other again.
last=$(python3 -c "import ipaddress,sys; print(ipaddress.ip_address('10.96.0.1') + int(sys.argv[1]))" "$n")
ip netns exec vss1 ping -c1 -W1 "$last" >/dev/null
old=$(cat "$dir/pid")
kill -9 "$old"
# Its devices go with it, which takes the kernel a while with many.
while [ -e "/proc/$old" ]; do sleep 0.1; done
t=$(now)
start
until vsctl show >/dev/null 2>&1; do sleep 0.01; done
answering=$(since "$t")
forwarding=never
for _ in $(seq 600); do
    if ip netns exec vss1 ping -c1 -W0.2 "$last" >/dev/null 2>&1; then
        forwarding=$(since "$t")
        break
    fi
done

echo "| N = $n | seconds |"
echo "| --- | ---: |"
echo "| attach, separate calls | $attach_each |"
echo "| attach, one transaction | $attach_txn |"
echo "| publish, separate calls | $publish_each |"
echo "| publish, one transaction | $publish_txn |"
echo "| restart with $((2 * n)) ports: answering | $answering |"
echo "| restart: first and last container forward again | $forwarding |"
