# Shared by the perf/scripts/*-compare.sh scripts: namespaces that are
# removed on exit, a vswitchd of the run's own, the measurements, and
# medians/ratios over repetitions. Source it after setting the knobs
# (REPS, TCP_T, UDP_T, RR_T, PING_N, CLI_CPU, SRV_CPU, SW_CORES, SPIN_US).

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
VSWITCHD=${VSWITCHD:-$root/target/release/vswitchd}
VSCTL=${VSCTL:-$root/target/release/vsctl}

require_tools() {
    for tool in "$@" "$VSWITCHD" "$VSCTL"; do
        command -v "$tool" >/dev/null || { echo "missing: $tool (run scripts/install-deps.sh and cargo build --release)" >&2; exit 1; }
    done
}

namespaces=()
host_links=()
cleanup_hooks=()

perf_cleanup() {
    set +e
    for hook in "${cleanup_hooks[@]}"; do eval "$hook"; done
    for ns in "${namespaces[@]}"; do
        ip netns pids "$ns" 2>/dev/null | xargs -r kill -9 2>/dev/null
        ip netns del "$ns" 2>/dev/null
    done
    for dev in "${host_links[@]}"; do ip link del "$dev" 2>/dev/null; done
}
trap perf_cleanup EXIT INT TERM

# A vswitchd for this run, with its own socket and state (removed on exit).
tmp=$(mktemp -d /tmp/vsperf.XXXXXX)
sock=$tmp/vswitchd.sock
vs_pid=
vsctl() { "$VSCTL" --socket "$sock" "$@"; }
cleanup_hooks+=('[ -n "$vs_pid" ] && kill "$vs_pid" 2>/dev/null && wait "$vs_pid" 2>/dev/null' 'rm -rf "$tmp"')
start_vswitchd() {
    "$VSWITCHD" --cores "$SW_CORES" --spin-us "$SPIN_US" --socket "$sock" --state-dir "$tmp/state" --log-level warn 2>"$tmp/vswitchd.log" &
    vs_pid=$!
    for _ in $(seq 100); do vsctl show >/dev/null 2>&1 && return; sleep 0.05; done
    echo "vswitchd did not start:" >&2; cat "$tmp/vswitchd.log" >&2; exit 1
}

in_ns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }
new_ns() {
    ip netns add "$1"
    namespaces+=("$1")
    ip -n "$1" link set lo up
    in_ns "$1" sysctl -qw net.ipv6.conf.all.disable_ipv6=1
}

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

# Results: R[system,metric,rep] holds one line of numbers per measurement.
declare -A R
col() { awk -v c="$2" '{ print $c }' <<<"$1"; }
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
value() {  # sys key col -> median over reps
    local vals=()
    for rep in $(seq "$REPS"); do vals+=("$(col "${R[$1,$2,$rep]}" "$3")"); done
    median "${vals[@]}"
}
ratio() {  # sys anchor key col -> median over reps of sys/anchor in the same rep
    local rs=()
    for rep in $(seq "$REPS"); do
        rs+=("$(awk -v a="$(col "${R[$1,$3,$rep]}" "$4")" -v b="$(col "${R[$2,$3,$rep]}" "$4")" 'BEGIN { printf "%.2f", (b > 0) ? a / b : 0 }')")
    done
    median "${rs[@]}"
}
cell() { echo "$(value "$1" "$3" "$4") ($(ratio "$1" "$2" "$3" "$4")x)"; }

# vswitchd's CPU use over $1 seconds, in % of one core.
idle_cpu() {
    local pid=$1 secs=$2 hz t0 t1
    hz=$(getconf CLK_TCK)
    t0=$(awk '{ print $14 + $15 }' "/proc/$pid/stat"); sleep "$secs"; t1=$(awk '{ print $14 + $15 }' "/proc/$pid/stat")
    awk -v d=$((t1 - t0)) -v hz="$hz" -v t="$secs" 'BEGIN { printf "%.2f", 100 * d / hz / t }'
}
