#!/usr/bin/env bash
# Two containers on one L2 network, through vswitch and through the Linux
# bridge (Docker's model: veth pairs on a bridge, br_netfilter off), measured
# in the same run and interleaved (bridge, then each vswitch pairing, per
# repetition) so the noise of this shared 2-core machine hits all alike.
#
# vswitch pairings (one vswitchd, one bridge each):
#   tap     TAP <-> TAP
#   afxdp   AF_XDP <-> AF_XDP (veth pairs, XDP mode "auto")
#   mixed   TAP client -> AF_XDP server
# Metrics: TCP (iperf3, 1 stream), 64-byte UDP packets/s sent and delivered
# (iperf3 -u -l 64 -b 0), ping RTT at 2 ms intervals, TCP request/response
# (sockperf ping-pong, 14-byte messages, full round trip), and vswitchd's idle CPU.
#
# Usage (root, after cargo build --release):
#   [REPS=3 TCP_T=5 UDP_T=5 RR_T=5 PING_N=1000 IDLE_T=10 SPIN_US=200 PAIRS="tap afxdp mixed"] perf/scripts/l2-compare.sh
# Pinning as in shared/anchors: clients on CPU0, servers on CPU1, vswitchd's
# poll thread on CPU1 (SW_CORES=1).
# Creates only vsp* namespaces/interfaces and removes them on exit, also on Ctrl-C.
set -euo pipefail

REPS=${REPS:-3}
TCP_T=${TCP_T:-5}
UDP_T=${UDP_T:-5}
RR_T=${RR_T:-5}
PING_N=${PING_N:-1000}
IDLE_T=${IDLE_T:-10}
CLI_CPU=${CLI_CPU:-0}
SRV_CPU=${SRV_CPU:-1}
SW_CORES=${SW_CORES:-1}
SPIN_US=${SPIN_US:-200}
PAIRS=${PAIRS:-tap afxdp mixed}

# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"
require_tools iperf3 sockperf ping taskset python3
host_links+=(vspa1 vspa2 vspm2)

# --- vswitch -------------------------------------------------------------
start_vswitchd
declare -A CLIENT SERVER ADDR
subnet=10
for pair in $PAIRS; do
    subnet=$((subnet + 1))
    c=vsp-$pair-c s=vsp-$pair-s
    new_ns "$c"; new_ns "$s"
    vsctl add-br "br-$pair"
    case $pair in
        tap)   vsctl add-port br-tap vspt1 --netns "$c" --ifname eth0
               vsctl add-port br-tap vspt2 --netns "$s" --ifname eth0 ;;
        afxdp) vsctl add-port br-afxdp vspa1 --type afxdp --netns "$c" --ifname eth0
               vsctl add-port br-afxdp vspa2 --type afxdp --netns "$s" --ifname eth0 ;;
        mixed) vsctl add-port br-mixed vspm1 --netns "$c" --ifname eth0
               vsctl add-port br-mixed vspm2 --type afxdp --netns "$s" --ifname eth0 ;;
        *) echo "unknown pairing $pair" >&2; exit 1 ;;
    esac
    ip -n "$c" addr add "10.97.$subnet.1/24" dev eth0
    ip -n "$s" addr add "10.97.$subnet.2/24" dev eth0
    CLIENT[$pair]=$c SERVER[$pair]=$s ADDR[$pair]=10.97.$subnet.2
done

# --- Linux bridge: in its own "host" namespace, a veth to each container --
new_ns vsp-bh; new_ns vsp-b-c; new_ns vsp-b-s
ip -n vsp-bh link add br0 type bridge
ip -n vsp-bh link set br0 up
for side in c s; do
    ip link add "vspb-$side" type veth peer name eth0 netns "vsp-b-$side"
    ip link set "vspb-$side" netns vsp-bh
    ip -n vsp-bh link set "vspb-$side" master br0 up
    ip -n "vsp-b-$side" link set eth0 up
done
ip -n vsp-b-c addr add 10.97.9.1/24 dev eth0
ip -n vsp-b-s addr add 10.97.9.2/24 dev eth0
CLIENT[bridge]=vsp-b-c SERVER[bridge]=vsp-b-s ADDR[bridge]=10.97.9.2

SYSTEMS="bridge $PAIRS"
for sys in $SYSTEMS; do
    in_ns "${CLIENT[$sys]}" ping -c 2 -q "${ADDR[$sys]}" >/dev/null || { echo "$sys does not ping" >&2; exit 1; }
done

for rep in $(seq "$REPS"); do
    for sys in $SYSTEMS; do
        c=${CLIENT[$sys]} s=${SERVER[$sys]} a=${ADDR[$sys]}
        R[$sys,tcp,$rep]=$(tcp "$c" "$s" "$a")
        R[$sys,udp,$rep]=$(udp64 "$c" "$s" "$a")
        R[$sys,ping,$rep]=$(ping_avg "$c" "$a")
        R[$sys,rr,$rep]=$(rr "$c" "$s" "$a")
        echo "rep $rep $sys: TCP ${R[$sys,tcp,$rep]} Gbit/s, UDP64 ${R[$sys,udp,$rep]} kpps, ping ${R[$sys,ping,$rep]} us, RR ${R[$sys,rr,$rep]}" >&2
    done
done

sleep 1
idle=$(idle_cpu "$vs_pid" "$IDLE_T")

echo
echo "L2, two namespaces, $(date -u +%Y-%m-%dT%H:%MZ), kernel $(uname -r), $(nproc) cores; medians of $REPS interleaved runs"
echo "vswitchd --cores $SW_CORES --spin-us $SPIN_US; clients on CPU$CLI_CPU, servers on CPU$SRV_CPU; (ratio to the Linux bridge, per-run pairs)"
echo
header="| metric | Linux bridge (veth) |"; rule="| --- | ---: |"
for p in $PAIRS; do header="$header vswitch $p |"; rule="$rule ---: |"; done
echo "$header"; echo "$rule"
row() {  # label key col
    local line="| $1 | $(value bridge "$2" "$3") |"
    for p in $PAIRS; do line="$line $(cell "$p" bridge "$2" "$3") |"; done
    echo "$line"
}
row "TCP 1 stream, Gbit/s" tcp 1
row "UDP 64 B sent, kpps" udp 1
row "UDP 64 B delivered, kpps" udp 2
row "ping -i 0.002 avg RTT, us" ping 1
row "TCP RR, transactions/s" rr 1
row "TCP RR round trip p50, us" rr 2
row "TCP RR round trip p99, us" rr 3
echo
echo "vswitchd idle CPU over ${IDLE_T} s with $(( $(echo $PAIRS | wc -w) * 2 )) ports and no traffic: ${idle}% of one core"
