#!/usr/bin/env bash
# TCP between two containers on AF_XDP ports at MTU 1500 and at 9000,
# alternated, REPS times each (default 3), SECS seconds per figure (default
# 5): the figures of perf/RESULTS.md's "AF_XDP at MTU 9000" entry.
# Usage (as root, after cargo build --release): perf/scripts/afxdp-mtu.sh [REPS] [SECS]
set -euo pipefail
cd "$(dirname "$0")/../.."
reps=${1:-3}
secs=${2:-5}
bin=target/release
dir=$(mktemp -d /tmp/vsmtu.XXXXXX)
sock=$dir/vswitchd.sock
vsctl() { "$bin/vsctl" --socket "$sock" "$@"; }
cleanup() {
    kill "$(cat "$dir/pid" 2>/dev/null)" 2>/dev/null || true
    sleep 0.5
    ip netns del vsmtu-a 2>/dev/null || true
    ip netns del vsmtu-b 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT
"$bin/vswitchd" --cores 1 --socket "$sock" --state-dir "$dir/state" --log-level warn &
echo $! >"$dir/pid"
for _ in $(seq 50); do vsctl show >/dev/null 2>&1 && break; sleep 0.1; done
ip netns add vsmtu-a
ip netns add vsmtu-b
vsctl add-br br0
vsctl add-port br0 vsmtua --type afxdp --netns vsmtu-a --ifname eth0
vsctl add-port br0 vsmtub --type afxdp --netns vsmtu-b --ifname eth0
ip -n vsmtu-a addr add 10.83.0.1/24 dev eth0
ip -n vsmtu-b addr add 10.83.0.2/24 dev eth0
mtu() {
    for p in vsmtua vsmtub; do ip link set "$p" mtu "$1"; done
    for n in vsmtu-a vsmtu-b; do ip -n "$n" link set eth0 mtu "$1"; done
}
echo "| rep | MTU | Gbit/s |"
echo "| --- | ---: | ---: |"
for r in $(seq "$reps"); do
    for m in 1500 9000; do
        mtu "$m"
        ip netns exec vsmtu-b taskset -c 0 iperf3 -s -1 -B 10.83.0.2 >/dev/null &
        server=$!
        sleep 0.5
        gbps=$(ip netns exec vsmtu-a taskset -c 0 iperf3 -c 10.83.0.2 -t "$secs" -J |
            python3 -c 'import json,sys; print("%.2f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"] / 1e9))')
        wait "$server"
        echo "| $r | $m | $gbps |"
    done
done
