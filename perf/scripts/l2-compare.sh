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

root=$(cd "$(dirname "$0")/../.." && pwd)
VSWITCHD=${VSWITCHD:-$root/target/release/vswitchd}
VSCTL=${VSCTL:-$root/target/release/vsctl}
for tool in iperf3 sockperf ping taskset python3 "$VSWITCHD" "$VSCTL"; do
    command -v "$tool" >/dev/null || { echo "missing: $tool (run scripts/install-deps.sh and cargo build --release)" >&2; exit 1; }
done

tmp=$(mktemp -d /tmp/vsperf.XXXXXX)
sock=$tmp/vswitchd.sock
vsctl() { "$VSCTL" --socket "$sock" "$@"; }
vs_pid=
namespaces=()

cleanup() {
    set +e
    [ -n "$vs_pid" ] && kill "$vs_pid" 2>/dev/null && wait "$vs_pid" 2>/dev/null
    for ns in "${namespaces[@]}"; do
        ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null
        ip netns del "$ns" 2>/dev/null
    done
    for dev in vspa1 vspa2 vspm2; do ip link del "$dev" 2>/dev/null; done
    rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
new_ns() {
    ip netns add "$1"
    namespaces+=("$1")
    ip -n "$1" link set lo up
    in_ns "$1" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
}

# --- vswitch -------------------------------------------------------------
"$VSWITCHD" --cores "$SW_CORES" --spin-us "$SPIN_US" --socket "$sock" --state-dir "$tmp/state" --log-level warn 2>"$tmp/vswitchd.log" &
vs_pid=$!
for _ in $(seq 100); do vsctl show >/dev/null 2>&1 && break; sleep 0.05; done
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

tcp() {  # client server addr -> Gbit/s
    in_ns "$2" taskset -c "$SRV_CPU" iperf3 -s -1 -B "$3" >/dev/null 2>&1 &
    sleep 0.3
    in_ns "$1" taskset -c "$CLI_CPU" iperf3 -c "$3" -t "$TCP_T" -J |
        python3 -c 'import json,sys; print("%.2f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9))'
    wait
}
udp64() {  # client server addr -> "sent_kpps delivered_kpps"
    in_ns "$2" taskset -c "$SRV_CPU" iperf3 -s -1 -B "$3" >/dev/null 2>&1 &
    sleep 0.3
    in_ns "$1" taskset -c "$CLI_CPU" iperf3 -c "$3" -u -l 64 -b 0 -t "$UDP_T" -J |
        python3 -c 'import json,sys
s = json.load(sys.stdin)["end"]["sum"]; t = s["seconds"]
print("%.0f %.0f" % (s["packets"] / t / 1e3, (s["packets"] - s["lost_packets"]) / t / 1e3))'
    wait
}
ping_avg() {  # client addr -> avg us
    in_ns "$1" taskset -c "$CLI_CPU" ping -i 0.002 -c "$PING_N" -q "$2" | awk -F'/' '/^rtt/ { printf "%.1f\n", $5 * 1000 }'
}
rr() {  # client server addr -> "trans/s p50 p99" (full round trip, us)
    in_ns "$2" taskset -c "$SRV_CPU" sockperf sr --tcp -i "$3" -p 11111 >/dev/null 2>&1 &
    local srv=$!
    sleep 0.3
    in_ns "$1" taskset -c "$CLI_CPU" sockperf pp --tcp -i "$3" -p 11111 -t "$RR_T" -m 14 --full-rtt 2>&1 |
        sed 's/\x1b\[[0-9;]*m//g' | awk '
            /RunTime=/ { for (i = 1; i <= NF; i++) { if ($i ~ /^RunTime=/) { split($i, a, "="); t = a[2] } if ($i ~ /^ReceivedMessages=/) { split($i, b, "="); n = b[2] } } }
            /percentile 50.000/ { p50 = $NF } /percentile 99.000/ { p99 = $NF }
            END { printf "%d %.0f %.0f\n", n / t, p50, p99 }'
    kill $srv 2>/dev/null; wait $srv 2>/dev/null || true
}

declare -A R
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

hz=$(getconf CLK_TCK)
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$vs_pid/stat"; }
sleep 1
t0=$(cpu_ticks); sleep "$IDLE_T"; t1=$(cpu_ticks)
idle=$(awk -v d=$((t1 - t0)) -v hz="$hz" -v t="$IDLE_T" 'BEGIN { printf "%.2f", 100 * d / hz / t }')

col() { awk -v c="$2" '{ print $c }' <<<"$1"; }
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
value() {  # sys key col -> median over reps
    local vals=()
    for rep in $(seq "$REPS"); do vals+=("$(col "${R[$1,$2,$rep]}" "$3")"); done
    median "${vals[@]}"
}
ratio() {  # sys key col -> median over reps of sys/bridge in the same rep
    local rs=()
    for rep in $(seq "$REPS"); do
        rs+=("$(awk -v a="$(col "${R[$1,$2,$rep]}" "$3")" -v b="$(col "${R[bridge,$2,$rep]}" "$3")" 'BEGIN { printf "%.2f", (b > 0) ? a / b : 0 }')")
    done
    median "${rs[@]}"
}
cell() { echo "$(value "$1" "$2" "$3") ($(ratio "$1" "$2" "$3")x)"; }

echo
echo "L2, two namespaces, $(date -u +%Y-%m-%dT%H:%MZ), kernel $(uname -r), $(nproc) cores; medians of $REPS interleaved runs"
echo "vswitchd --cores $SW_CORES --spin-us $SPIN_US; clients on CPU$CLI_CPU, servers on CPU$SRV_CPU; (ratio to the Linux bridge, per-run pairs)"
echo
header="| metric | Linux bridge (veth) |"; rule="| --- | ---: |"
for p in $PAIRS; do header="$header vswitch $p |"; rule="$rule ---: |"; done
echo "$header"; echo "$rule"
row() {  # label key col
    local line="| $1 | $(value bridge "$2" "$3") |"
    for p in $PAIRS; do line="$line $(cell "$p" "$2" "$3") |"; done
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
