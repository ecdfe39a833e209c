#!/usr/bin/env bash
# Two containers on one L2 network: vswitch (TAP ports) versus the Linux
# bridge with veth pairs (Docker's model, br_netfilter off), measured in the
# same run, interleaved A B A B so the noise of this shared 2-core machine
# hits both alike. Also: vswitchd's CPU use while idle.
#
# Usage (root): [REPS=3 TCP_T=5 RR_T=5 PING_N=1000 IDLE_T=10 SPIN_US=200] perf/scripts/l2-vs-bridge.sh
# Pinning as in shared/anchors: clients on CPU0, servers on CPU1, vswitchd's
# poll thread on CPU1 (--cores 1).
# Creates only vsp* namespaces and removes them on exit, also on Ctrl-C.
set -euo pipefail

REPS=${REPS:-3}
TCP_T=${TCP_T:-5}
RR_T=${RR_T:-5}
PING_N=${PING_N:-1000}
IDLE_T=${IDLE_T:-10}
CLI_CPU=${CLI_CPU:-0}
SRV_CPU=${SRV_CPU:-1}
SW_CORES=${SW_CORES:-1}
SPIN_US=${SPIN_US:-200}

root=$(cd "$(dirname "$0")/../.." && pwd)
VSWITCHD=${VSWITCHD:-$root/target/release/vswitchd}
VSCTL=${VSCTL:-$root/target/release/vsctl}
for tool in iperf3 sockperf ping taskset "$VSWITCHD" "$VSCTL"; do
    command -v "$tool" >/dev/null || { echo "missing: $tool (run scripts/install-deps.sh and cargo build --release)" >&2; exit 1; }
done

tmp=$(mktemp -d /tmp/vsperf.XXXXXX)
sock=$tmp/vswitchd.sock
vsctl() { "$VSCTL" --socket "$sock" "$@"; }
vs_pid=

cleanup() {
    set +e
    [ -n "$vs_pid" ] && kill "$vs_pid" 2>/dev/null && wait "$vs_pid" 2>/dev/null
    for ns in vspv1 vspv2 vspb1 vspb2 vspbh; do
        ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null
        ip netns del "$ns" 2>/dev/null
    done
    rm -rf "$tmp"
}
trap cleanup EXIT INT TERM

in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
new_ns() {
    ip netns add "$1"
    ip -n "$1" link set lo up
    in_ns "$1" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
}

# --- vswitch: two namespaces on TAP ports -------------------------------
for ns in vspv1 vspv2; do new_ns $ns; done
"$VSWITCHD" --cores "$SW_CORES" --spin-us "$SPIN_US" --socket "$sock" --state-dir "$tmp/state" --log-level warn 2>"$tmp/vswitchd.log" &
vs_pid=$!
for _ in $(seq 100); do vsctl show >/dev/null 2>&1 && break; sleep 0.05; done
vsctl add-br br0
vsctl add-port br0 p1 --netns vspv1 --ifname eth0
vsctl add-port br0 p2 --netns vspv2 --ifname eth0
ip -n vspv1 addr add 10.97.0.1/24 dev eth0
ip -n vspv2 addr add 10.97.0.2/24 dev eth0

# --- Linux bridge: bridge in its own "host" namespace, veth to each -----
for ns in vspbh vspb1 vspb2; do new_ns $ns; done
ip -n vspbh link add br0 type bridge
ip -n vspbh link set br0 up
for i in 1 2; do
    ip link add vspb$i-h type veth peer name eth0 netns vspb$i
    ip link set vspb$i-h netns vspbh
    ip -n vspbh link set vspb$i-h master br0 up
    ip -n vspb$i link set eth0 up
    ip -n vspb$i addr add 10.98.0.$i/24 dev eth0
done

in_ns vspv1 ping -c 2 -q 10.97.0.2 >/dev/null || { echo "vswitch path does not ping" >&2; exit 1; }
in_ns vspb1 ping -c 2 -q 10.98.0.2 >/dev/null || { echo "bridge path does not ping" >&2; exit 1; }

# One measurement per function; each prints one number (or "a b" pairs).
tcp() {  # ns_client ns_server addr -> Gbit/s
    in_ns "$2" taskset -c "$SRV_CPU" iperf3 -s -1 -B "$3" >/dev/null 2>&1 &
    sleep 0.3
    in_ns "$1" taskset -c "$CLI_CPU" iperf3 -c "$3" -t "$TCP_T" -J |
        python3 -c 'import json,sys; print("%.2f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9))'
    wait
}
ping_avg() {  # ns_client addr -> avg us
    in_ns "$1" taskset -c "$CLI_CPU" ping -i 0.002 -c "$PING_N" -q "$2" |
        awk -F'/' '/^rtt/ { printf "%.1f\n", $5 * 1000 }'
}
rr() {  # ns_client ns_server addr -> "trans/s p50 p99" (full round trip, us)
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
    for sys in vswitch bridge; do
        if [ $sys = vswitch ]; then c=vspv1 s=vspv2 a=10.97.0.2; else c=vspb1 s=vspb2 a=10.98.0.2; fi
        R[$sys,tcp,$rep]=$(tcp $c $s $a)
        R[$sys,ping,$rep]=$(ping_avg $c $a)
        R[$sys,rr,$rep]=$(rr $c $s $a)
        echo "rep $rep $sys: TCP ${R[$sys,tcp,$rep]} Gbit/s, ping ${R[$sys,ping,$rep]} us, RR ${R[$sys,rr,$rep]}" >&2
    done
done

# Idle CPU of vswitchd (both ports attached, no traffic), in % of one core.
hz=$(getconf CLK_TCK)
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$vs_pid/stat"; }
sleep 1
t0=$(cpu_ticks); sleep "$IDLE_T"; t1=$(cpu_ticks)
idle=$(awk -v d=$((t1 - t0)) -v hz="$hz" -v t="$IDLE_T" 'BEGIN { printf "%.2f", 100 * d / hz / t }')

median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
field() { local sys=$1 key=$2 col=$3; for rep in $(seq "$REPS"); do echo "${R[$sys,$key,$rep]}" | awk -v c="$col" '{ print $c }'; done; }
ratio() {  # per-repetition ratio vswitch/bridge, median
    local key=$1 col=$2; local rs=()
    for rep in $(seq "$REPS"); do
        rs+=("$(awk -v a="$(echo "${R[vswitch,$key,$rep]}" | awk -v c="$col" '{print $c}')" -v b="$(echo "${R[bridge,$key,$rep]}" | awk -v c="$col" '{print $c}')" 'BEGIN { printf "%.2f", (b > 0) ? a / b : 0 }')")
    done
    median "${rs[@]}"
}

echo
echo "L2, two namespaces, $(date -u +%Y-%m-%dT%H:%MZ), kernel $(uname -r), $(nproc) cores; medians of $REPS interleaved runs"
echo "vswitchd --cores $SW_CORES --spin-us $SPIN_US; clients on CPU$CLI_CPU, servers on CPU$SRV_CPU"
echo
echo "| metric | vswitch (TAP) | Linux bridge (veth) | ratio vswitch/bridge |"
echo "| --- | ---: | ---: | ---: |"
echo "| TCP 1 stream, Gbit/s | $(median $(field vswitch tcp 1)) | $(median $(field bridge tcp 1)) | $(ratio tcp 1) |"
echo "| ping -i 0.002 avg RTT, us | $(median $(field vswitch ping 1)) | $(median $(field bridge ping 1)) | $(ratio ping 1) |"
echo "| TCP RR (sockperf 14 B), transactions/s | $(median $(field vswitch rr 1)) | $(median $(field bridge rr 1)) | $(ratio rr 1) |"
echo "| TCP RR round trip p50, us | $(median $(field vswitch rr 2)) | $(median $(field bridge rr 2)) | $(ratio rr 2) |"
echo "| TCP RR round trip p99, us | $(median $(field vswitch rr 3)) | $(median $(field bridge rr 3)) | $(ratio rr 3) |"
echo
echo "vswitchd idle CPU over ${IDLE_T} s with two ports and no traffic: ${idle}% of one core"
