//! Conntrack NAT: masquerade out of the uplink, published ports in, hairpin,
//! ICMP errors through NAT, table limits and flushing.

use std::process::Stdio;
use std::time::Duration;

use vswitch_tests::{require_root, run_ok, short_name, Background, HostLink, Netns, Switch};

/// Accepts `n` TCP connections (or datagrams, with "udp") and prints each
/// peer as "ip port", answering "hello".
const SERVER: &str = r#"
import socket, sys
addr, port, n, kind = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
if kind == "udp":
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((addr, port))
    for _ in range(n):
        data, peer = s.recvfrom(100); print(peer[0], peer[1], flush=True); s.sendto(b"hello", peer)
else:
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); s.bind((addr, port)); s.listen()
    for _ in range(n):
        c, peer = s.accept(); print(peer[0], peer[1], flush=True); c.sendall(b"hello\n"); c.close()
"#;

/// Connects (TCP, or UDP with "udp") from `src_port` (0: any) and returns
/// what the server answered, or the error.
const CLIENT: &str = r#"
import socket, sys
addr, port, src_port, kind = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM if kind == "udp" else socket.SOCK_STREAM)
s.settimeout(3)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
if src_port: s.bind(("0.0.0.0", src_port))
try:
    s.connect((addr, port))
    if kind == "udp": s.send(b"hi")
    print(s.recv(100).decode().strip())
except ConnectionRefusedError: print("refused")
except socket.timeout: print("timeout")
"#;

fn server(ns: &Netns, addr: &str, port: u16, n: u32, kind: &str) -> Background {
    let child = ns
        .cmd("python3")
        .args(["-c", SERVER, addr, &port.to_string(), &n.to_string(), kind])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 server");
    std::thread::sleep(Duration::from_millis(300));
    Background(child)
}

fn client(ns: &Netns, addr: &str, port: u16, src_port: u16, kind: &str) -> String {
    run_ok(
        ns.cmd("python3")
            .args(["-c", CLIENT, addr, &port.to_string(), &src_port.to_string(), kind]),
    )
    .trim()
    .to_string()
}

/// A bridge 10.141.0.0/24 with an uplink 10.140.0.2/24 to an outside
/// namespace (10.140.0.1) that has NO route back to the containers.
struct World {
    sw: Switch,
    outside: Netns,
    _link: HostLink,
}

fn world(tag: &str, cores: &str) -> World {
    world_with(tag, cores, &[])
}

/// The same, with extra vswitchd arguments.
fn world_with(tag: &str, cores: &str, daemon_args: &[&str]) -> World {
    let sw = Switch::start_with_args(tag, cores, daemon_args);
    let outside = Netns::new(&format!("{tag}o"));
    let host_end = short_name("vn");
    let link = HostLink::veth_into(&host_end, &outside);
    outside.add_addr("eth0", "10.140.0.1/24");
    sw.ok(&["add-br", "br0", "--subnet", "10.141.0.0/24"]);
    sw.ok(&[
        "add-uplink",
        "br0",
        &host_end,
        "--ip",
        "10.140.0.2/24",
        "--gw",
        "10.140.0.1",
    ]);
    World {
        sw,
        outside,
        _link: link,
    }
}

fn attach(sw: &Switch, ns: &Netns, extra: &[&str]) -> String {
    let mut args = vec!["attach", "br0", ns.name.as_str()];
    args.extend_from_slice(extra);
    sw.json(&args)["ip"].as_str().expect("address").to_string()
}

#[test]
fn masquerade_gives_containers_the_uplink_address() {
    require_root();
    let w = world("masq", "0,1");
    let (c1, c2) = (Netns::new("mq1"), Netns::new("mq2"));
    attach(&w.sw, &c1, &[]);
    attach(&w.sw, &c2, &["--type", "afxdp"]);
    assert!(
        !c1.ping("10.140.0.1", 1),
        "without NAT the outside cannot answer (no route back)"
    );
    w.sw.ok(&["set-nat", "br0", "masquerade"]);

    let srv = server(&w.outside, "10.140.0.1", 9000, 2, "tcp");
    assert_eq!(client(&c1, "10.140.0.1", 9000, 5555, "tcp"), "hello");
    assert_eq!(
        client(&c2, "10.140.0.1", 9000, 5555, "tcp"),
        "hello",
        "a second container with the same source port"
    );
    let peers = srv.finish(Duration::from_secs(2));
    let peers: Vec<&str> = peers.lines().collect();
    assert_eq!(peers.len(), 2, "{peers:?}");
    assert!(
        peers.iter().all(|p| p.starts_with("10.140.0.2 ")),
        "the outside saw the uplink address: {peers:?}"
    );
    assert_ne!(peers[0], peers[1], "and two different ports");

    let srv = server(&w.outside, "10.140.0.1", 9001, 1, "udp");
    assert_eq!(client(&c1, "10.140.0.1", 9001, 0, "udp"), "hello");
    assert!(
        srv.finish(Duration::from_secs(2)).starts_with("10.140.0.2 "),
        "UDP masqueraded too"
    );
    assert!(c1.ping("10.140.0.1", 2), "and ping");

    // A closed port on the outside: the ICMP error finds its way back.
    assert_eq!(
        client(&c2, "10.140.0.1", 9999, 0, "udp"),
        "refused",
        "port unreachable reached the right container"
    );

    let conns = w.sw.json(&["ct-show", "--bridge", "br0"]);
    assert!(conns.as_array().unwrap().len() >= 4, "{conns}");
    let stats = w.sw.json(&["ct-stats"]);
    assert!(stats["creates"].as_u64().unwrap() >= 4, "{stats}");

    // Through NAT, TCP super-frames from a TAP container keep valid checksums.
    let errors = w.outside.tcp_csum_errors();
    let _iperf = w.outside.iperf3_server("10.140.0.1");
    let (gbps, bytes) = c1.iperf3("10.140.0.1", 2, &[]);
    println!("TCP through masquerade: {gbps:.2} Gbit/s");
    assert!(bytes > 1_000_000);
    assert_eq!(
        w.outside.tcp_csum_errors(),
        errors,
        "TcpInCsumErrors on the outside moved"
    );

    let ip1 = c1.ip(&["-br", "addr", "show", "eth0"]);
    let ip1 = ip1
        .split_whitespace()
        .nth(2)
        .and_then(|a| a.split('/').next())
        .unwrap()
        .to_string();
    w.sw.ok(&["detach", "br0", &c1.name]);
    let conns = w.sw.json(&["ct-show"]);
    assert!(
        conns
            .as_array()
            .unwrap()
            .iter()
            .all(|c| !c["orig"].as_str().unwrap().starts_with(&format!("{ip1}:"))),
        "detach flushed the container's connections: {conns}"
    );
}

#[test]
fn published_ports_reach_the_container_from_outside_and_by_hairpin() {
    require_root();
    let mut w = world("pub", "0,1");
    let (web, other) = (Netns::new("pbw"), Netns::new("pbo"));
    let web_ip = attach(&w.sw, &web, &[]);
    attach(&w.sw, &other, &["--type", "afxdp"]);
    w.sw.ok(&[
        "publish",
        "br0",
        "--proto",
        "tcp",
        "--port",
        "8080",
        "--to",
        &format!("{web_ip}:80"),
    ]);
    w.sw.ok(&[
        "publish",
        "br0",
        "--proto",
        "udp",
        "--port",
        "5353",
        "--to",
        &format!("{web_ip}:53"),
    ]);
    let listed = w.sw.json(&["list-published", "br0"]);
    assert_eq!(listed.as_array().unwrap().len(), 2, "{listed}");

    // The host reaches published ports through the bridge's internal port.
    let internal = short_name("vh");
    w.sw.ok(&["add-port", "br0", &internal, "--type", "internal"]);

    let srv = server(&web, &web_ip, 80, 4, "tcp");
    assert_eq!(
        client(&w.outside, "10.140.0.2", 8080, 0, "tcp"),
        "hello",
        "outside -> uplink:8080 -> web:80"
    );
    assert_eq!(
        client(&other, "10.140.0.2", 8080, 0, "tcp"),
        "hello",
        "hairpin from another container"
    );
    assert_eq!(
        client(&web, "10.140.0.2", 8080, 0, "tcp"),
        "hello",
        "hairpin from the server itself"
    );
    let from_host =
        run_ok(std::process::Command::new("python3").args(["-c", CLIENT, "10.140.0.2", "8080", "0", "tcp"]));
    assert_eq!(
        from_host.trim(),
        "hello",
        "host -> uplink:8080 through the internal port"
    );
    let peers = srv.finish(Duration::from_secs(2));
    let peers: Vec<&str> = peers.lines().collect();
    assert!(
        peers[0].starts_with("10.140.0.1 "),
        "outside clients keep their address: {peers:?}"
    );
    assert!(
        peers[1..].iter().all(|p| p.starts_with("10.141.0.1 ")),
        "hairpin and host clients appear as the gateway: {peers:?}"
    );
    assert_eq!(peers.len(), 4, "outside, two hairpins and the host: {peers:?}");

    let udp = server(&web, &web_ip, 53, 1, "udp");
    assert_eq!(
        client(&w.outside, "10.140.0.2", 5353, 0, "udp"),
        "hello",
        "published UDP"
    );
    drop(udp);

    w.sw.expect_error(
        &[
            "publish",
            "br0",
            "--proto",
            "tcp",
            "--port",
            "8080",
            "--to",
            &format!("{web_ip}:81"),
        ],
        "already published",
    );
    w.sw.expect_error(
        &[
            "publish",
            "br0",
            "--proto",
            "tcp",
            "--port",
            "8081",
            "--to",
            "10.99.0.5:80",
        ],
        "is not a host of bridge 'br0'",
    );
    w.sw.expect_error(
        &["unpublish", "br0", "--proto", "tcp", "--port", "9"],
        "is not published",
    );

    // Published ports and masquerade are configuration: they survive a restart.
    w.sw.kill9();
    w.sw.launch();
    let srv = server(&web, &web_ip, 80, 1, "tcp");
    assert_eq!(
        client(&w.outside, "10.140.0.2", 8080, 0, "tcp"),
        "hello",
        "published port after a restart"
    );
    drop(srv);

    w.sw.ok(&["unpublish", "br0", "--proto", "tcp", "--port", "8080"]);
    let _srv = server(&web, &web_ip, 80, 1, "tcp");
    assert_ne!(
        client(&w.outside, "10.140.0.2", 8080, 0, "tcp"),
        "hello",
        "unpublished: no way in"
    );
}

#[test]
fn a_full_table_refuses_new_connections_and_keeps_old_ones() {
    require_root();
    // vswitchd with room for two connections.
    let w = world_with("ctmax", "0", &["--ct-max", "2", "--ct-max-per-port", "2"]);
    let (sw, outside) = (&w.sw, &w.outside);
    sw.ok(&["set-nat", "br0", "masquerade"]);
    let c = Netns::new("ctmc");
    sw.ok(&["attach", "br0", &c.name]);

    let _srv = server(outside, "10.140.0.1", 9000, 3, "udp");
    assert_eq!(client(&c, "10.140.0.1", 9000, 4001, "udp"), "hello");
    assert_eq!(client(&c, "10.140.0.1", 9000, 4002, "udp"), "hello");
    assert_eq!(
        client(&c, "10.140.0.1", 9000, 4003, "udp"),
        "timeout",
        "a third connection does not fit"
    );
    let stats = sw.json(&["ct-stats"]);
    assert_eq!(stats["entries"], 2, "{stats}");
    assert!(stats["table_full"].as_u64().unwrap() >= 1, "{stats}");
    assert!(sw.port_counter(&port_of(sw), "drops.ct-table-full") >= 1);
    assert_eq!(
        client(&c, "10.140.0.1", 9000, 4001, "udp"),
        "hello",
        "an existing connection still works"
    );

    let flushed = sw.json(&["ct-flush", "--addr", "10.140.0.1"]);
    assert_eq!(flushed, 2, "ct-flush by address");
    assert_eq!(sw.json(&["ct-stats"])["entries"], 0);
}

fn port_of(sw: &Switch) -> String {
    sw.json(&["show"])[0]["ports"][0]["name"].as_str().unwrap().to_string()
}

#[test]
fn nat_needs_a_subnet_and_says_so() {
    require_root();
    let sw = Switch::start("natcli", "0");
    sw.ok(&["add-br", "plain"]);
    sw.expect_error(&["set-nat", "plain", "masquerade"], "has no subnet");
    sw.expect_error(
        &[
            "publish",
            "plain",
            "--proto",
            "tcp",
            "--port",
            "80",
            "--to",
            "10.0.0.2:80",
        ],
        "has no subnet",
    );
    sw.expect_error(&["set-nat", "nope", "masquerade"], "bridge 'nope' does not exist");
    let out = sw.vsctl(&["publish", "plain", "--proto", "tcp", "--port", "80", "--to", "nonsense"]);
    assert_eq!(out.status.code(), Some(2), "a bad --to is a usage error");
}

#[test]
fn idle_connections_expire_after_their_timeout() {
    require_root();
    let w = world_with("ctexp", "0", &["--ct-udp-timeout", "2", "--ct-icmp-timeout", "2"]);
    w.sw.ok(&["set-nat", "br0", "masquerade"]);
    let c = Netns::new("cte");
    w.sw.ok(&["attach", "br0", &c.name]);
    let _srv = server(&w.outside, "10.140.0.1", 9000, 1, "udp");
    assert_eq!(client(&c, "10.140.0.1", 9000, 4100, "udp"), "hello");
    assert!(c.ping("10.140.0.1", 1));
    assert_eq!(w.sw.json(&["ct-stats"])["entries"], 2, "a UDP flow and a ping");
    // Answered UDP lives 4x the unanswered timeout: 8 s; ICMP 2 s.
    std::thread::sleep(Duration::from_millis(3_500));
    let conns = w.sw.json(&["ct-show"]);
    let protos: Vec<&str> = conns
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["proto"].as_str().unwrap())
        .collect();
    assert_eq!(
        protos,
        vec!["udp"],
        "the ping's entry expired, the answered UDP flow not yet"
    );
    assert!(w.sw.json(&["ct-stats"])["expiries"].as_u64().unwrap() >= 1);
}

/// Outside server on 10.140.0.1:9100: sends "a", learns its own sequence
/// number from the client's ACK (sniffed), then forges a reset far outside
/// the window, sends "still", and forges a reset exactly in the window.
const RST_FORGER: &str = r#"
import socket, struct, time
def csum(b):
    if len(b) % 2: b += b"\0"
    s = sum(struct.unpack("!%dH" % (len(b) // 2), b))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff
def rst(peer, seq):
    src, dst = socket.inet_aton("10.140.0.1"), socket.inet_aton(peer[0])
    tcp = struct.pack("!HHIIBBHHH", 9100, peer[1], seq, 0, 5 << 4, 0x04, 0, 0, 0)
    tcp = tcp[:16] + struct.pack("!H", csum(src + dst + struct.pack("!BBH", 0, 6, 20) + tcp)) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 1, 0, 64, 6, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
    raw.sendto(ip + tcp, (peer[0], 0))
srv = socket.socket(); srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("10.140.0.1", 9100)); srv.listen()
c, peer = srv.accept()
sniff = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
sniff.settimeout(3)
c.sendall(b"a\n")
while True:
    f = sniff.recv(2000)[14:]
    ihl = (f[0] & 15) * 4
    sport, dport, seq, ack, off, flags = struct.unpack("!HHIIBB", f[ihl:ihl + 14])
    if f[9] == 6 and dport == 9100 and sport == peer[1] and flags & 0x10 and ack:
        break
rst(peer, (ack + 2**31) % 2**32)
time.sleep(0.3)
c.sendall(b"still\n")
time.sleep(0.3)
rst(peer, (ack + 6) % 2**32)
time.sleep(1)
"#;

/// Prints every line the server sends, then how the connection ended.
const READER: &str = r#"
import socket
s = socket.create_connection(("10.140.0.1", 9100), timeout=5)
try:
    while True:
        d = s.recv(100)
        if not d: print("eof"); break
        print(d.decode().strip(), flush=True)
except ConnectionResetError: print("reset")
except socket.timeout: print("timeout")
"#;

#[test]
fn segments_outside_the_tcp_window_are_dropped_and_counted() {
    require_root();
    let w = world("ctwin", "0");
    w.sw.ok(&["set-nat", "br0", "masquerade"]);
    let c = Netns::new("ctw");
    attach(&w.sw, &c, &[]);
    let forger = w
        .outside
        .cmd("python3")
        .args(["-c", RST_FORGER])
        .spawn()
        .expect("python3");
    let forger = Background(forger);
    std::thread::sleep(Duration::from_millis(300));
    let read = run_ok(c.cmd("python3").args(["-c", READER]));
    forger.finish(Duration::from_secs(3));
    assert_eq!(
        read.split_whitespace().collect::<Vec<_>>(),
        ["a", "still", "reset"],
        "the blind reset never arrived; the one in the window did"
    );
    let stats = w.sw.json(&["ct-stats"]);
    assert_eq!(stats["out_of_window"], 1, "{stats}");

    // Bulk transfers both ways (scaled windows, GSO super-frames) never
    // trip the window check.
    for reverse in [false, true] {
        let _srv = w.outside.iperf3_server("10.140.0.1");
        let extra: &[&str] = if reverse { &["-R"] } else { &[] };
        let (_, bytes) = c.iperf3("10.140.0.1", 2, extra);
        assert!(bytes > 10_000_000, "{bytes} bytes moved");
    }
    let stats = w.sw.json(&["ct-stats"]);
    assert_eq!(
        (&stats["out_of_window"], &stats["invalid"]),
        (&1.into(), &0.into()),
        "{stats}"
    );
}
