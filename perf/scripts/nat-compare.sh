#!/usr/bin/env bash
# NAT: vswitch's conntrack (masquerade out, published port in) against the
# Docker model (Linux bridge, br_netfilter, Docker 28's iptables ruleset with
# MASQUERADE and DNAT, as in shared/anchors/baseline_a_docker_bridge.sh), in
# one interleaved run. The "outside" has no route to the container subnets:
# everything goes through NAT.
#
# Systems: docker-out / vs-out (container -> outside, masquerade),
#          docker-in / vs-in (outside -> host:8080 -> container:80, DNAT).
# Usage (root, after cargo build --release):
#   [REPS=3 TCP_T=5 RR_T=5 PING_N=1000 SW_CORES=1] perf/scripts/nat-compare.sh
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
require_tools iperf3 sockperf ping taskset python3 iptables-restore ethtool
host_links+=(vsqup)

# --- Docker model ---------------------------------------------------------
for ns in vsq-dh vsq-dc vsq-dx; do new_ns $ns; done
ip -n vsq-dh link add br0 type bridge
ip -n vsq-dh addr add 10.150.1.1/24 dev br0
ip -n vsq-dh link set br0 up
ip link add vsqdv netns vsq-dh type veth peer name eth0 netns vsq-dc
ip -n vsq-dh link set vsqdv master br0 up
ip -n vsq-dc addr add 10.150.1.2/24 dev eth0; ip -n vsq-dc link set eth0 up
ip -n vsq-dc route add default via 10.150.1.1
ip link add vsqdu netns vsq-dh type veth peer name eth0 netns vsq-dx
ip -n vsq-dh addr add 10.150.200.1/24 dev vsqdu; ip -n vsq-dh link set vsqdu up
ip -n vsq-dx addr add 10.150.200.2/24 dev eth0; ip -n vsq-dx link set eth0 up
in_ns vsq-dh sysctl -qw net.ipv4.ip_forward=1
in_ns vsq-dh sysctl -qw net.bridge.bridge-nf-call-iptables=1 2>/dev/null || echo "note: br_netfilter not available" >&2
in_ns vsq-dh iptables-restore <<'RULES'
*raw
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
-A PREROUTING -d 10.150.1.2/32 ! -i br0 -j DROP
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:DOCKER - [0:0]
:DOCKER-BRIDGE - [0:0]
:DOCKER-CT - [0:0]
:DOCKER-FORWARD - [0:0]
:DOCKER-ISOLATION-STAGE-1 - [0:0]
:DOCKER-ISOLATION-STAGE-2 - [0:0]
:DOCKER-USER - [0:0]
-A FORWARD -j DOCKER-USER
-A FORWARD -j DOCKER-FORWARD
-A DOCKER -d 10.150.1.2/32 ! -i br0 -o br0 -p tcp -m tcp --dport 80 -j ACCEPT
-A DOCKER -d 10.150.1.2/32 ! -i br0 -o br0 -p tcp -m tcp --dport 81 -j ACCEPT
-A DOCKER ! -i br0 -o br0 -j DROP
-A DOCKER-BRIDGE -o br0 -j DOCKER
-A DOCKER-CT -o br0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A DOCKER-FORWARD -j DOCKER-CT
-A DOCKER-FORWARD -j DOCKER-ISOLATION-STAGE-1
-A DOCKER-FORWARD -j DOCKER-BRIDGE
-A DOCKER-FORWARD -i br0 -j ACCEPT
-A DOCKER-ISOLATION-STAGE-1 -i br0 ! -o br0 -j DOCKER-ISOLATION-STAGE-2
-A DOCKER-ISOLATION-STAGE-2 -o br0 -j DROP
-A DOCKER-USER -j RETURN
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:DOCKER - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
-A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER
-A POSTROUTING -s 10.150.1.0/24 ! -o br0 -j MASQUERADE
-A DOCKER -i br0 -j RETURN
-A DOCKER ! -i br0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.150.1.2:80
-A DOCKER ! -i br0 -p tcp -m tcp --dport 8081 -j DNAT --to-destination 10.150.1.2:81
COMMIT
RULES

# --- vswitch: same topology, conntrack in vswitchd ------------------------
start_vswitchd
for ns in vsq-vc vsq-vx; do new_ns $ns; done
ip link add vsqup type veth peer name eth0 netns vsq-vx
ip link set vsqup up
ip -n vsq-vx addr add 10.151.200.2/24 dev eth0; ip -n vsq-vx link set eth0 up
in_ns vsq-vx ethtool -K eth0 tx off >/dev/null   # the outside's NIC would finish its checksums
vsctl add-br br0 --subnet 10.151.1.0/24 >/dev/null
vsctl attach br0 vsq-vc --ip 10.151.1.2 >/dev/null
vsctl add-uplink br0 vsqup --ip 10.151.200.1/24 --gw 10.151.200.2 --mode generic
vsctl set-nat br0 masquerade
vsctl publish br0 --proto tcp --port 8080 --to 10.151.1.2:80
vsctl publish br0 --proto tcp --port 8081 --to 10.151.1.2:81

# Direction-specific measurements: (client ns, server ns, server bind address,
# address the client dials, server port, client port).
declare -A C S B A SP DP
C[docker-out]=vsq-dc S[docker-out]=vsq-dx B[docker-out]=10.150.200.2 A[docker-out]=10.150.200.2 SP[docker-out]=5201 DP[docker-out]=5201
C[vs-out]=vsq-vc S[vs-out]=vsq-vx B[vs-out]=10.151.200.2 A[vs-out]=10.151.200.2 SP[vs-out]=5201 DP[vs-out]=5201
C[docker-in]=vsq-dx S[docker-in]=vsq-dc B[docker-in]=10.150.1.2 A[docker-in]=10.150.200.1 SP[docker-in]=80 DP[docker-in]=8080
C[vs-in]=vsq-vx S[vs-in]=vsq-vc B[vs-in]=10.151.1.2 A[vs-in]=10.151.200.1 SP[vs-in]=80 DP[vs-in]=8080
SYSTEMS="docker-out vs-out docker-in vs-in"

nat_tcp() {  # sys -> Gbit/s
    local s=$1
    in_ns "${S[$s]}" taskset -c "$SRV_CPU" iperf3 -s -1 -B "${B[$s]}" -p "${SP[$s]}" >/dev/null 2>&1 &
    sleep 0.3
    in_ns "${C[$s]}" taskset -c "$CLI_CPU" iperf3 -c "${A[$s]}" -p "${DP[$s]}" -t "$TCP_T" -J |
        python3 -c 'import json,sys; print("%.2f" % (json.load(sys.stdin)["end"]["sum_received"]["bits_per_second"]/1e9))'
    wait
}
nat_rr() {  # sys -> "trans/s p50 p99"; inbound uses port 81 (sockperf's server cannot reuse 80 while it sits in TIME_WAIT)
    local s=$1 sp=11111 dp=11111
    case $s in *-in) sp=81 dp=8081 ;; esac
    in_ns "${S[$s]}" taskset -c "$SRV_CPU" sockperf sr --tcp -i "${B[$s]}" -p $sp >/dev/null 2>&1 &
    local srv=$!
    sleep 0.3
    in_ns "${C[$s]}" taskset -c "$CLI_CPU" sockperf pp --tcp -i "${A[$s]}" -p $dp -t "$RR_T" -m 14 --full-rtt 2>&1 |
        sed 's/\x1b\[[0-9;]*m//g' | awk '
            /RunTime=/ { for (i = 1; i <= NF; i++) { if ($i ~ /^RunTime=/) { split($i, a, "="); t = a[2] } if ($i ~ /^ReceivedMessages=/) { split($i, b, "="); n = b[2] } } }
            /percentile 50.000/ { p50 = $NF } /percentile 99.000/ { p99 = $NF }
            END { printf "%d %.0f %.0f\n", n / t, p50, p99 }'
    kill $srv 2>/dev/null; wait $srv 2>/dev/null || true
}

in_ns vsq-dc ping -c 2 -q 10.150.200.2 >/dev/null || { echo "docker model: no way out" >&2; exit 1; }
in_ns vsq-vc ping -c 2 -q 10.151.200.2 >/dev/null || { echo "vswitch: no way out" >&2; exit 1; }

for rep in $(seq "$REPS"); do
    for sys in $SYSTEMS; do
        R[$sys,tcp,$rep]=$(nat_tcp "$sys")
        R[$sys,rr,$rep]=$(nat_rr "$sys")
        case $sys in *-out) R[$sys,ping,$rep]=$(ping_avg "${C[$sys]}" "${A[$sys]}") ;; *) R[$sys,ping,$rep]=0 ;; esac
        echo "rep $rep $sys: TCP ${R[$sys,tcp,$rep]} Gbit/s, RR ${R[$sys,rr,$rep]}, ping ${R[$sys,ping,$rep]} us" >&2
    done
done

echo
echo "NAT, $(date -u +%Y-%m-%dT%H:%MZ), kernel $(uname -r), $(nproc) cores; medians of $REPS interleaved runs"
echo "vswitchd --cores $SW_CORES --spin-us $SPIN_US (TAP container, AF_XDP uplink); clients on CPU$CLI_CPU, servers on CPU$SRV_CPU; (ratio to the Docker model, same direction)"
echo
echo "| metric | Docker model, out (MASQUERADE) | vswitch, out (masquerade) | Docker model, in (DNAT 8080) | vswitch, in (published 8080) |"
echo "| --- | ---: | ---: | ---: | ---: |"
row() {
    echo "| $1 | $(value docker-out "$2" "$3") | $(cell vs-out docker-out "$2" "$3") | $(value docker-in "$2" "$3") | $(cell vs-in docker-in "$2" "$3") |"
}
row "TCP 1 stream, Gbit/s" tcp 1
row "TCP RR, transactions/s" rr 1
row "TCP RR round trip p50, us" rr 2
row "TCP RR round trip p99, us" rr 3
echo "| ping -i 0.002 avg RTT, us | $(value docker-out ping 1) | $(cell vs-out docker-out ping 1) | - | - |"
echo
echo "conntrack after the run: $(vsctl ct-stats)"
