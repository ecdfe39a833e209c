#!/usr/bin/env bash
# A container on an overlay network talking to a container behind a kernel
# VTEP on "another host" (a namespace), with the local side either vswitch
# or the kernel itself (a vxlan device in a namespace, flannel's data path
# without the bridge). vswitch runs two underlays: a veth whose host end is
# an AF_XDP uplink (software segmentation), and a TAP uplink moved into the
# remote host's namespace (the kernel's UDP-tunnel GSO: super-frames cross
# whole). Interleaved per repetition; TCP both ways and request/response.
#
# The remote veth end has tx checksum offload off in both cases: vswitch's
# AF_XDP uplink cannot take partial checksums yet (the "way out" issue), and
# the kernel pair is measured the same way so that only the local VTEP
# differs. KERNEL_OFFLOADS=1 also measures the kernel pair with offloads on
# (its real bar).
#
# Usage (root, after cargo build --release):
#   [REPS=3 TCP_T=5 RR_T=5 KERNEL_OFFLOADS=1] perf/scripts/vxlan-compare.sh
# Creates only vsx* namespaces and interfaces and removes them on exit.
set -euo pipefail

REPS=${REPS:-3}
TCP_T=${TCP_T:-5}
RR_T=${RR_T:-5}
UDP_T=1 PING_N=10
CLI_CPU=${CLI_CPU:-0}
SRV_CPU=${SRV_CPU:-1}
SW_CORES=${SW_CORES:-1}
SPIN_US=${SPIN_US:-200}
KERNEL_OFFLOADS=${KERNEL_OFFLOADS:-0}
source "$(dirname "$0")/lib.sh"
require_tools iperf3 sockperf ethtool python3

# --- vswitch: container vsx-c on overlay bridge ov; the remote host vsx-r
# with its kernel VTEP vx0 (10.181.0.100) over eth0 (10.180.0.2), across
# the veth whose host end vsx-u is vswitchd's uplink (10.180.0.1).
start_vswitchd
new_ns vsx-c
new_ns vsx-r
ip link add vsx-u type veth peer name eth0 netns vsx-r
host_links+=(vsx-u)
ip link set vsx-u up
ip -n vsx-r addr add 10.180.0.2/24 dev eth0
ip -n vsx-r link set eth0 up
in_ns vsx-r ethtool -K eth0 tx off >/dev/null
ip -n vsx-r link add vx0 type vxlan id 42 dstport 4789 remote 10.180.0.1 local 10.180.0.2 dev eth0
ip -n vsx-r addr add 10.181.0.100/24 dev vx0
ip -n vsx-r link set vx0 up
vsctl add-br ov --subnet 10.181.0.0/24 >/dev/null
vsctl add-uplink ov vsx-u --ip 10.180.0.1/24 --gw 10.180.0.254 --mode generic >/dev/null
vsctl add-vxlan ov --vni 42 --remote 10.180.0.2 >/dev/null
vsctl attach ov vsx-c >/dev/null

# --- vswitch over a TAP underlay: the TAP vsx-t in remote host vsx-s, its
# offloads on; container vsx-d on overlay bridge ot.
new_ns vsx-d
new_ns vsx-s
vsctl add-br ot --subnet 10.183.0.0/24 >/dev/null
vsctl add-uplink ot vsx-t --type tap --netns vsx-s --ip 10.182.0.1/24 --gw 10.182.0.254 >/dev/null
ip -n vsx-s addr add 10.182.0.2/24 dev vsx-t
ip -n vsx-s link add vx0 type vxlan id 43 dstport 4789 remote 10.182.0.1 local 10.182.0.2 dev vsx-t
ip -n vsx-s addr add 10.183.0.100/24 dev vx0
ip -n vsx-s link set vx0 up
vsctl add-vxlan ot --vni 43 --remote 10.182.0.2 >/dev/null
vsctl attach ot vsx-d >/dev/null

# --- kernel: the local VTEP in namespace vsx-k ---------------------------
kernel_pair() {  # suffix offloads
    new_ns "vsx-k$1"; new_ns "vsx-q$1"
    ip link add "vsx-kv$1" type veth peer name eth0 netns "vsx-q$1"
    ip link set "vsx-kv$1" netns "vsx-k$1"
    ip -n "vsx-k$1" link set "vsx-kv$1" name eth0
    for ns in "vsx-k$1" "vsx-q$1"; do in_ns "$ns" ethtool -K eth0 tx "$2" >/dev/null; ip -n "$ns" link set eth0 up; done
    ip -n "vsx-k$1" addr add 10.180.0.1/24 dev eth0
    ip -n "vsx-q$1" addr add 10.180.0.2/24 dev eth0
    ip -n "vsx-k$1" link add vx0 type vxlan id 42 dstport 4789 remote 10.180.0.2 local 10.180.0.1 dev eth0
    ip -n "vsx-q$1" link add vx0 type vxlan id 42 dstport 4789 remote 10.180.0.1 local 10.180.0.2 dev eth0
    ip -n "vsx-k$1" addr add 10.181.0.2/24 dev vx0
    ip -n "vsx-q$1" addr add 10.181.0.100/24 dev vx0
    ip -n "vsx-k$1" link set vx0 up; ip -n "vsx-q$1" link set vx0 up
}
kernel_pair o off
declare -A CLIENT SERVER NEAR FAR
CLIENT[kernel]=vsx-ko SERVER[kernel]=vsx-qo
CLIENT[vswitch]=vsx-c SERVER[vswitch]=vsx-r
CLIENT[vswitch-tap]=vsx-d SERVER[vswitch-tap]=vsx-s NEAR[vswitch-tap]=10.183.0.2 FAR[vswitch-tap]=10.183.0.100
SYSTEMS="kernel vswitch vswitch-tap"
if [ "$KERNEL_OFFLOADS" = 1 ]; then
    kernel_pair f on
    CLIENT[kernel-offloads]=vsx-kf SERVER[kernel-offloads]=vsx-qf
    SYSTEMS="kernel kernel-offloads vswitch vswitch-tap"
fi
for sys in $SYSTEMS; do
    : "${NEAR[$sys]:=10.181.0.2}" "${FAR[$sys]:=10.181.0.100}"
    in_ns "${CLIENT[$sys]}" ping -c 2 -q "${FAR[$sys]}" >/dev/null || { echo "$sys does not ping" >&2; exit 1; }
done

for rep in $(seq "$REPS"); do
    for sys in $SYSTEMS; do
        c=${CLIENT[$sys]} s=${SERVER[$sys]}
        R[$sys,out,$rep]=$(tcp "$c" "$s" "${FAR[$sys]}")
        R[$sys,in,$rep]=$(tcp "$s" "$c" "${NEAR[$sys]}")
        R[$sys,rr,$rep]=$(rr "$c" "$s" "${FAR[$sys]}")
        echo "rep $rep $sys: TCP out ${R[$sys,out,$rep]}, in ${R[$sys,in,$rep]} Gbit/s, RR ${R[$sys,rr,$rep]}" >&2
    done
done

echo
echo "Overlay to a kernel VTEP, $(date -u +%Y-%m-%dT%H:%MZ), kernel $(uname -r), $(nproc) cores; medians of $REPS interleaved runs"
echo "vswitchd --cores $SW_CORES --spin-us $SPIN_US, TAP container ports; vswitch: AF_XDP generic uplink, software segmentation; vswitch-tap: TAP uplink, tunnel GSO; (ratio to the kernel VTEP, offloads off)"
echo
header="| metric |"; sep="| --- |"
for sys in $SYSTEMS; do header="$header $sys |"; sep="$sep ---: |"; done
echo "$header"; echo "$sep"
row() {  # label key col
    local line="| $1 |"
    for sys in $SYSTEMS; do line="$line $(cell "$sys" kernel "$2" "$3") |"; done
    echo "$line"
}
row "TCP to the remote container, Gbit/s" out 1
row "TCP from the remote container, Gbit/s" in 1
row "TCP RR, transactions/s" rr 1
row "TCP RR round trip p50, us" rr 2
row "TCP RR round trip p99, us" rr 3
