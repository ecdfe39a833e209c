#!/usr/bin/env bash
# Routing between two networks: vswitch (two bridges with subnets, linked,
# containers attached as TAP ports) against the kernel doing the same (two
# Linux bridges in a router namespace with IP forwarding, veth pairs), each
# next to its own same-bridge case, measured in one interleaved run.
#
# Systems: k-same (kernel, same bridge), k-routed (kernel, across bridges),
#          vs-same, vs-routed (vswitch). Ratios: vswitch / kernel, same case.
# Usage (root, after cargo build --release):
#   [REPS=3 TCP_T=5 RR_T=5 PING_N=1000 SW_CORES=1 SPIN_US=200] perf/scripts/routed-compare.sh
set -euo pipefail

REPS=${REPS:-3}
TCP_T=${TCP_T:-5}
RR_T=${RR_T:-5}
PING_N=${PING_N:-1000}
CLI_CPU=${CLI_CPU:-0}
SRV_CPU=${SRV_CPU:-1}
SW_CORES=${SW_CORES:-1}
SPIN_US=${SPIN_US:-200}

# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
require_tools iperf3 sockperf ping taskset python3

# --- vswitch: br0 (two containers) and br1 (one), linked ---------------
start_vswitchd
for ns in vsr-a vsr-a2 vsr-b; do new_ns $ns; done
vsctl add-br br0 --subnet 10.124.0.0/24 >/dev/null
vsctl add-br br1 --subnet 10.125.0.0/24 >/dev/null
vsctl link-br br0 br1
vsctl attach br0 vsr-a >/dev/null
vsctl attach br0 vsr-a2 >/dev/null
vsctl attach br1 vsr-b >/dev/null

# --- kernel: router namespace with two bridges and forwarding ------------
new_ns vsr-k; for ns in vsr-ka vsr-ka2 vsr-kb; do new_ns $ns; done
in_ns vsr-k sysctl -qw net.ipv4.ip_forward=1
for i in 0 1; do
    ip -n vsr-k link add "br$i" type bridge
    ip -n vsr-k addr add "10.12$((6 + i)).0.1/24" dev "br$i"
    ip -n vsr-k link set "br$i" up
done
kernel_port() {  # ns bridge address gateway
    ip link add "vsrk-$1" type veth peer name eth0 netns "$1"
    ip link set "vsrk-$1" netns vsr-k
    ip -n vsr-k link set "vsrk-$1" master "$2" up
    ip -n "$1" link set eth0 up
    ip -n "$1" addr add "$3/24" dev eth0
    ip -n "$1" route add default via "$4"
}
kernel_port vsr-ka br0 10.126.0.2 10.126.0.1
kernel_port vsr-ka2 br0 10.126.0.3 10.126.0.1
kernel_port vsr-kb br1 10.127.0.2 10.127.0.1

declare -A CLIENT SERVER ADDR
CLIENT[k-same]=vsr-ka SERVER[k-same]=vsr-ka2 ADDR[k-same]=10.126.0.3
CLIENT[k-routed]=vsr-ka SERVER[k-routed]=vsr-kb ADDR[k-routed]=10.127.0.2
CLIENT[vs-same]=vsr-a SERVER[vs-same]=vsr-a2 ADDR[vs-same]=10.124.0.3
CLIENT[vs-routed]=vsr-a SERVER[vs-routed]=vsr-b ADDR[vs-routed]=10.125.0.2
SYSTEMS="k-same k-routed vs-same vs-routed"
for sys in $SYSTEMS; do
    in_ns "${CLIENT[$sys]}" ping -c 2 -q "${ADDR[$sys]}" >/dev/null || { echo "$sys does not ping" >&2; exit 1; }
done

for rep in $(seq "$REPS"); do
    for sys in $SYSTEMS; do
        c=${CLIENT[$sys]} s=${SERVER[$sys]} a=${ADDR[$sys]}
        R[$sys,tcp,$rep]=$(tcp "$c" "$s" "$a")
        R[$sys,ping,$rep]=$(ping_avg "$c" "$a")
        R[$sys,rr,$rep]=$(rr "$c" "$s" "$a")
        echo "rep $rep $sys: TCP ${R[$sys,tcp,$rep]} Gbit/s, ping ${R[$sys,ping,$rep]} us, RR ${R[$sys,rr,$rep]}" >&2
    done
done

echo
echo "Routing between two networks, $(date -u +%Y-%m-%dT%H:%MZ), kernel $(uname -r), $(nproc) cores; medians of $REPS interleaved runs"
echo "vswitchd --cores $SW_CORES --spin-us $SPIN_US (TAP ports); clients on CPU$CLI_CPU, servers on CPU$SRV_CPU; (ratio to the kernel, same case)"
echo
echo "| metric | kernel same bridge | kernel routed | vswitch same bridge | vswitch routed |"
echo "| --- | ---: | ---: | ---: | ---: |"
row() {
    echo "| $1 | $(value k-same "$2" "$3") | $(value k-routed "$2" "$3") | $(cell vs-same k-same "$2" "$3") | $(cell vs-routed k-routed "$2" "$3") |"
}
row "TCP 1 stream, Gbit/s" tcp 1
row "ping -i 0.002 avg RTT, us" ping 1
row "TCP RR, transactions/s" rr 1
row "TCP RR round trip p50, us" rr 2
row "TCP RR round trip p99, us" rr 3
echo
echo "routed / same bridge, vswitch: TCP $(ratio vs-routed vs-same tcp 1)x, RR $(ratio vs-routed vs-same rr 1)x; kernel: TCP $(ratio k-routed k-same tcp 1)x, RR $(ratio k-routed k-same rr 1)x"
