#!/usr/bin/env bash
# `./scripts/demo.sh docker`: Docker containers on vswitch. Starts vswitchd
# (a bridge `ul` with an uplink to an "outside" namespace), a dockerd of its
# own (own data root and socket: the system's Docker, if any, is not
# touched) and vswitch-docker as the `vswitch` network driver; then, in
# Docker's own words: a network, two containers reaching each other by
# name, a published port from outside and from the host, masquerade out.
# Everything is removed at the end (KEEP=1 leaves it running until Enter).
# Called by demo.sh after the build.
set -euo pipefail
cd "$(dirname "$0")/.."

dir=$(mktemp -d /tmp/vswitch-demo-docker.XXXXXX)
sock=$dir/vswitchd.sock
dsock=$dir/docker.sock
vsctl() { echo "+ vsctl $*"; ./target/release/vsctl --socket "$sock" "$@"; }
docker() { echo "+ docker $*" >&2; /usr/bin/docker -H "unix://$dsock" "$@"; }
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
pids=()
cleanup() {
    set +e
    /usr/bin/docker -H "unix://$dsock" rm -f web client >/dev/null 2>&1
    /usr/bin/docker -H "unix://$dsock" network rm front >/dev/null 2>&1
    for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null; done
    sleep 2
    for pid in "${pids[@]}"; do kill -9 "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; done
    pkill -9 -f "$dir" 2>/dev/null
    grep "$dir" /proc/self/mounts | awk '{print $2}' | sort -r | xargs -r -n1 umount -l 2>/dev/null
    ip netns del demo-dk-out 2>/dev/null
    rm -f /run/docker/plugins/vswitch.sock
    rm -rf "$dir"
}
trap cleanup EXIT INT TERM

if [ -S /run/docker/plugins/vswitch.sock ]; then
    echo "a vswitch driver already serves /run/docker/plugins/vswitch.sock: stop it first" >&2
    exit 1
fi

step "vswitchd, with a bridge 'ul' whose TAP uplink (203.0.113.2) leads to an outside namespace"
./target/release/vswitchd --socket "$sock" --state-dir "$dir/state" --log-level warn &
pids+=($!)
for _ in $(seq 100); do ./target/release/vsctl --socket "$sock" show >/dev/null 2>&1 && break; sleep 0.05; done
ip netns add demo-dk-out
ip -n demo-dk-out link set lo up
vsctl add-br ul --subnet 10.97.255.0/24
vsctl add-uplink ul up0 --ip 203.0.113.2/24 --gateway 203.0.113.1 --type tap --netns demo-dk-out
ip -n demo-dk-out addr add 203.0.113.1/24 dev up0
ip -n demo-dk-out link set up0 up

step "vswitch-docker: the 'vswitch' network driver (/run/docker/plugins/vswitch.sock)"
./target/release/vswitch-docker --socket "$sock" --state-dir "$dir/driver" --log-level warn &
pids+=($!)
for _ in $(seq 100); do [ -S /run/docker/plugins/vswitch.sock ] && break; sleep 0.05; done

step "a dockerd of the demo's own (no default bridge), and an image made from busybox-static"
dockerd --data-root "$dir/docker" --exec-root "$dir/exec" --pidfile "$dir/docker.pid" \
    -H "unix://$dsock" --bridge none >"$dir/dockerd.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do /usr/bin/docker -H "unix://$dsock" version >/dev/null 2>&1 && break; sleep 0.2; done
mkdir -p "$dir/image/bin"
cp /bin/busybox "$dir/image/bin/"
for a in sh ping nc wget httpd ip cat echo sleep; do ln -s busybox "$dir/image/bin/$a"; done
tar -C "$dir/image" -c . | docker import - vsbox:demo >/dev/null

step "docker network create -d vswitch: a vswitch bridge with Docker's subnet, out through ul's uplink"
docker network create -d vswitch --subnet 10.98.7.0/24 \
    -o com.vswitch.uplink=ul -o com.vswitch.masquerade=true front
vsctl show

step "docker run --network front -p 8080:80: the driver attaches, Docker moves the port in"
docker run -d --name web --network front -p 8080:80 vsbox:demo httpd -f -p 80 -h /bin >/dev/null
docker run -d --name client --network front vsbox:demo sleep 600 >/dev/null
sleep 1
vsctl list-attachments
docker exec client ip addr show eth0

step "containers reach each other by name (Docker's DNS, vswitch's bridge)"
docker exec client ping -c 3 web

step "-p 8080:80 from the outside (the uplink address) and from the host (127.0.0.1)"
ip netns exec demo-dk-out curl -s -o /dev/null -w "outside -> 203.0.113.2:8080: HTTP %{http_code}\n" http://203.0.113.2:8080/busybox
curl -s -o /dev/null -w "host -> 127.0.0.1:8080: HTTP %{http_code}\n" http://127.0.0.1:8080/busybox

step "masquerade: demo-dk-out has no route to 10.98.7.0/24, yet answers"
docker exec client ping -c 2 203.0.113.1
vsctl list-conns

if [ "${KEEP:-0}" = 1 ]; then
    echo
    echo "running: try 'docker -H unix://$dsock ps' or 'target/release/vsctl --socket $sock show'; press Enter to tear down"
    read -r _
fi

step "docker rm -f, docker network rm: nothing is left"
docker rm -f web client >/dev/null
docker network rm front >/dev/null
vsctl list-attachments
vsctl list-br
