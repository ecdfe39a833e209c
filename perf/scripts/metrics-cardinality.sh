#!/usr/bin/env bash
# Metrics cardinality (issue 30): N idle attached namespaces, one scrape of
# /metrics, its series counted (sample lines) in all and by family.
# Usage (as root, after cargo build --release):
#   perf/scripts/metrics-cardinality.sh [N]        (BIN=dir for other binaries)
set -euo pipefail
cd "$(dirname "$0")/../.."
n=${1:-1000}
bin=${BIN:-target/release}
dir=$(mktemp -d /tmp/vsmetrics.XXXXXX)
sock=$dir/vswitchd.sock
port=$((20000 + RANDOM % 20000))
vsctl() { "$bin/vsctl" --socket "$sock" "$@"; }
cleanup() {
    kill -9 "$(cat "$dir/pid" 2>/dev/null)" 2>/dev/null || true
    for i in $(seq "$n"); do ip netns del "vsm$i" 2>/dev/null || true; done
    rm -rf "$dir"
}
trap cleanup EXIT
for i in $(seq "$n"); do
    ip netns add "vsm$i"
    ip netns exec "vsm$i" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1
done
"$bin/vswitchd" --cores 1 --socket "$sock" --state-dir "$dir/state" --log-level warn --metrics "$port" 2>>"$dir/log" &
echo $! >"$dir/pid"
until vsctl show >/dev/null 2>&1; do sleep 0.05; done
args=(add-br a --subnet 10.96.0.0/20)
for i in $(seq "$n"); do args+=(-- attach a "vsm$i"); done
vsctl "${args[@]}" >/dev/null
curl -s "http://127.0.0.1:$port/metrics" >"$dir/metrics"
echo "series: $(grep -vc '^#' "$dir/metrics")"
grep -v '^#' "$dir/metrics" | sed 's/[{ ].*//' | sort | uniq -c | sort -rn | head -12
