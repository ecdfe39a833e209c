//! The way out and in with the outside's default offloads, over both kinds
//! of uplink: masquerade and published ports carrying TCP and fragmented
//! UDP, fragments out of order, a fragment flood, and L4 checksums that
//! are wrong rather than merely left to the device.

use std::process::Stdio;
use std::time::Duration;

use vswitch_tests::{require_root, run_ok, short_name, Background, HostLink, Netns, Switch};

/// Answers `n` datagrams on ADDR:PORT, each echoed back, and prints
/// "LENGTH SOURCE INTACT" for each (INTACT: the bytes are the pattern).
const UDP_SERVER: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind((sys.argv[1], int(sys.argv[2]))); s.settimeout(8)
for _ in range(int(sys.argv[3])):
    data, peer = s.recvfrom(65535)
    print(len(data), peer[0], data == bytes(i % 251 for i in range(len(data))), flush=True)
    s.sendto(data, peer)
"#;

/// Sends one datagram of N pattern bytes and prints "back LENGTH INTACT"
/// for the echo, or "timeout".
const UDP_CLIENT: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3)
data = bytes(i % 251 for i in range(int(sys.argv[3])))
s.sendto(data, (sys.argv[1], int(sys.argv[2])))
try:
    back, _ = s.recvfrom(65535); print("back", len(back), back == data)
except socket.timeout: print("timeout")
"#;

/// Sends hand-made IPv4 packets through a raw socket:
/// `SRC DST DPORT LEN ORDER ID COUNT`: COUNT UDP datagrams of LEN pattern
/// bytes from port 40000, cut into 1480-byte fragments, sent in ORDER
/// (`forward`, `reverse`, `later-only`: all but the first fragment,
/// `first-only`, or `bad-csum`: whole, with a wrong checksum), IP ids from
/// ID up.
const RAW_SENDER: &str = r#"
import socket, struct, sys
src, dst, dport, n, order, ident, count = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], int(sys.argv[6]), int(sys.argv[7])
def csum(b):
    if len(b) % 2: b += b'\0'
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff
payload = bytes(i % 251 for i in range(n))
ulen = 8 + n
pseudo = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack('!BBH', 0, 17, ulen)
c = csum(pseudo + struct.pack('!HHHH', 40000, dport, ulen, 0) + payload) or 0xffff
if order == 'bad-csum': c ^= 0x0f0f
dgram = struct.pack('!HHHH', 40000, dport, ulen, c) + payload
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
for k in range(count):
    frags = []
    for off in range(0, len(dgram), 1480):
        chunk = dgram[off:off + 1480]
        mf = 0x2000 if off + 1480 < len(dgram) and order != 'bad-csum' else 0
        if order == 'bad-csum' and off > 0: break
        ip = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(chunk), (ident + k) & 0xffff, mf | (off // 8), 64, 17, 0,
                         socket.inet_aton(src), socket.inet_aton(dst))
        frags.append(ip[:10] + struct.pack('!H', csum(ip)) + ip[12:] + chunk)
    if order == 'bad-csum': frags = [frags[0][:20] + dgram]
    if order == 'reverse': frags.reverse()
    if order == 'later-only': frags = frags[1:]
    if order == 'first-only': frags = frags[:1]
    for f in frags: s.sendto(f, (dst, 0))
"#;

const OUTSIDE: &str = "10.150.0.1";
const UPLINK_IP: &str = "10.150.0.2";

/// Which device the uplink is.
#[derive(Clone, Copy, Debug)]
enum Uplink {
    /// AF_XDP on the host end of a veth to the outside.
    Afxdp,
    /// A TAP moved into the outside namespace.
    Tap,
}

/// A masquerading bridge 10.151.0.0/24 with an uplink to an outside
/// namespace that keeps its default offloads and has no route back.
struct World {
    sw: Switch,
    outside: Netns,
    /// The uplink's name in port-stats.
    uplink: String,
    _link: Option<HostLink>,
}

fn world(tag: &str, kind: Uplink) -> World {
    let sw = Switch::start(tag, "0,1");
    let outside = Netns::new(&format!("{tag}o"));
    sw.ok(&["add-br", "br0", "--subnet", "10.151.0.0/24"]);
    let uplink = short_name("wu");
    let up_ip = format!("{UPLINK_IP}/24");
    let link = match kind {
        Uplink::Afxdp => {
            let link = HostLink::veth_into(&uplink, &outside);
            outside.add_addr("eth0", &format!("{OUTSIDE}/24"));
            sw.ok(&["add-uplink", "br0", &uplink, "--ip", &up_ip, "--gw", OUTSIDE]);
            Some(link)
        }
        Uplink::Tap => {
            sw.ok(&[
                "add-uplink",
                "br0",
                &uplink,
                "--type",
                "tap",
                "--netns",
                &outside.name,
                "--ip",
                &up_ip,
                "--gw",
                OUTSIDE,
            ]);
            outside.add_addr(&uplink, &format!("{OUTSIDE}/24"));
            None
        }
    };
    sw.ok(&["set-nat", "br0", "masquerade"]);
    World {
        sw,
        outside,
        uplink,
        _link: link,
    }
}

fn attach(sw: &Switch, ns: &Netns) -> String {
    sw.json(&["attach", "br0", ns.name.as_str()])["ip"]
        .as_str()
        .expect("address")
        .to_string()
}

fn python(ns: &Netns, script: &str, args: &[&str]) -> String {
    run_ok(ns.cmd("python3").arg("-c").arg(script).args(args))
        .trim()
        .to_string()
}

fn udp_server(ns: &Netns, addr: &str, port: u16, n: u32) -> Background {
    let child = ns
        .cmd("python3")
        .args(["-c", UDP_SERVER, addr, &port.to_string(), &n.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    std::thread::sleep(Duration::from_millis(300));
    Background(child)
}

fn both_ways(kind: Uplink, tag: &str) {
    let w = world(tag, kind);
    let (c1, web) = (Netns::new(&format!("{tag}1")), Netns::new(&format!("{tag}w")));
    attach(&w.sw, &c1);
    let web_ip = attach(&w.sw, &web);
    for (proto, port, to) in [("tcp", "8080", 5201), ("udp", "5353", 53)] {
        let to = format!("{web_ip}:{to}");
        w.sw.ok(&["publish", "br0", "--proto", proto, "--port", port, "--to", &to]);
    }

    // TCP out through masquerade and in through a published port, with
    // every checksum the outside leaves to its device finished on the way.
    let errors = (w.outside.tcp_csum_errors(), web.tcp_csum_errors());
    let server = w.outside.iperf3_server(OUTSIDE);
    let (out_gbps, bytes) = c1.iperf3(OUTSIDE, 2, &[]);
    drop(server);
    assert!(bytes > 1_000_000, "{kind:?}: masqueraded TCP moved {bytes} bytes");
    let server = web.iperf3_server(&web_ip);
    let (in_gbps, bytes) = w.outside.iperf3(UPLINK_IP, 2, &["-p", "8080"]);
    drop(server);
    assert!(bytes > 1_000_000, "{kind:?}: published TCP moved {bytes} bytes");
    println!("{kind:?} uplink: TCP out {out_gbps:.2} Gbit/s, in {in_gbps:.2} Gbit/s");
    assert_eq!(
        (w.outside.tcp_csum_errors(), web.tcp_csum_errors()),
        errors,
        "{kind:?}: TcpInCsumErrors moved"
    );

    // A 4000-byte datagram out through masquerade and in through a
    // published port: fragmented both ways, whole at the other end.
    let srv = udp_server(&w.outside, OUTSIDE, 9001, 1);
    assert_eq!(python(&c1, UDP_CLIENT, &[OUTSIDE, "9001", "4000"]), "back 4000 True");
    let seen = srv.finish(Duration::from_secs(2));
    assert_eq!(seen.trim(), format!("4000 {UPLINK_IP} True"), "{kind:?}: masqueraded");
    let srv = udp_server(&web, &web_ip, 53, 1);
    assert_eq!(
        python(&w.outside, UDP_CLIENT, &[UPLINK_IP, "5353", "4000"]),
        "back 4000 True"
    );
    let seen = srv.finish(Duration::from_secs(2));
    assert_eq!(seen.trim(), format!("4000 {OUTSIDE} True"), "{kind:?}: published");
    if let Uplink::Tap = kind {
        // TCP super-frames crossed NAT whole, both ways.
        for counter in ["rx_gso_packets", "tx_gso_packets"] {
            assert!(w.sw.port_counter(&w.uplink, counter) > 0, "{counter} on the TAP uplink");
        }
        // The TAP outlives a crash: the outside keeps its address and
        // routes, and the restarted vswitchd takes the device over.
        let mut w = w;
        w.sw.kill9();
        let kept = w.outside.ip(&["-br", "addr", "show", &w.uplink]);
        assert!(kept.contains(OUTSIDE), "{kept}");
        w.sw.launch();
        assert!(c1.ping(OUTSIDE, 3), "out again after a restart, nothing redone outside");
        w.sw.ok(&["del-uplink", "br0"]);
        let gone = w
            .outside
            .cmd("ip")
            .args(["link", "show", &w.uplink])
            .output()
            .expect("ip");
        assert!(!gone.status.success(), "del-uplink removes the TAP");
        // A device of that name that is no TAP of ours is not taken over.
        let peer = format!("{}p", w.uplink);
        w.outside
            .ip(&["link", "add", &w.uplink, "type", "veth", "peer", "name", &peer]);
        let up_ip = format!("{UPLINK_IP}/24");
        w.sw.expect_error(
            &[
                "add-uplink",
                "br0",
                &w.uplink,
                "--type",
                "tap",
                "--netns",
                &w.outside.name,
                "--ip",
                &up_ip,
                "--gw",
                OUTSIDE,
            ],
            "already exists",
        );
        assert!(w.sw.json(&["show"])[0]["uplink"].is_null(), "nothing changed");
    }
}

#[test]
fn masquerade_and_published_ports_over_an_afxdp_uplink_with_offloads_on() {
    require_root();
    both_ways(Uplink::Afxdp, "wox");
}

#[test]
fn masquerade_and_published_ports_over_a_tap_uplink_in_the_outside_namespace() {
    require_root();
    both_ways(Uplink::Tap, "wot");
}

/// vswitchd's resident memory, in KiB.
fn rss_kib(sw: &Switch) -> u64 {
    let pid = sw.pid().expect("vswitchd runs");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmRSS")
}

#[test]
fn fragments_out_of_order_a_fragment_flood_and_bad_checksums() {
    require_root();
    let w = world("wof", Uplink::Afxdp);
    let web = Netns::new("wofw");
    let web_ip = attach(&w.sw, &web);
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
    let counter = |reason: &str| w.sw.port_counter(&w.uplink, &format!("drops.{reason}"));
    let raw_to = |port: &str, order: &str, len: &str, id: &str, count: &str| {
        python(
            &w.outside,
            RAW_SENDER,
            &[OUTSIDE, UPLINK_IP, port, len, order, id, count],
        )
    };
    let raw = |order: &str, len: &str, id: &str, count: &str| raw_to("5353", order, len, id, count);

    // The last fragment first: held until the first one comes.
    let srv = udp_server(&web, &web_ip, 53, 2);
    raw("reverse", "4000", "100", "1");
    raw("forward", "3000", "200", "1");
    let seen = srv.finish(Duration::from_secs(3));
    assert_eq!(
        seen.lines().collect::<Vec<_>>(),
        [format!("4000 {OUTSIDE} True"), format!("3000 {OUTSIDE} True")],
        "reassembled whole in the container"
    );

    // A wrong UDP checksum (not a pseudo-header seed) is dropped, named.
    let srv = udp_server(&web, &web_ip, 53, 1);
    let before = counter("bad-l4-checksum");
    raw("bad-csum", "100", "300", "1");
    assert_eq!(counter("bad-l4-checksum"), before + 1);
    assert_eq!(
        srv.finish(Duration::from_millis(500)),
        "",
        "nothing reached the container"
    );

    // Later fragments whose first never comes: held for a while, then
    // dropped and counted; a flood of first fragments fills the table
    // (bounded) and is refused beyond it. Memory stays where it was. (To
    // a port nobody published: the container's own reassembly queue,
    // which such a flood would fill for 30 s, is not under test.)
    let rss = rss_kib(&w.sw);
    raw_to("6000", "later-only", "3000", "1000", "500");
    raw_to("6000", "first-only", "3000", "2000", "6000");
    std::thread::sleep(Duration::from_millis(1_500));
    assert!(counter("frag-no-first") >= 500, "{}", counter("frag-no-first"));
    assert!(
        counter("frag-table-full") > 0,
        "a flood past the table's bound is refused"
    );
    let grown = rss_kib(&w.sw).saturating_sub(rss);
    assert!(grown < 8 * 1024, "vswitchd grew {grown} KiB under the fragment flood");

    // And once the flood has expired, fragments go through again.
    std::thread::sleep(Duration::from_millis(1_000));
    let srv = udp_server(&web, &web_ip, 53, 1);
    raw("reverse", "2000", "400", "1");
    assert_eq!(
        srv.finish(Duration::from_secs(3)).trim(),
        format!("2000 {OUTSIDE} True")
    );
}

#[test]
fn a_shared_nic_keeps_serving_the_host_while_containers_leave_through_it() {
    require_root();
    let mut sw = Switch::start("wos", "0,1");
    let outside = Netns::new("woso");
    let c1 = Netns::new("wosc");
    // The "NIC": the host end of a veth, with the host's own address on it.
    let nic = short_name("ws");
    let _link = HostLink::veth_into(&nic, &outside);
    run_ok(std::process::Command::new("ip").args(["addr", "add", "10.162.0.3/24", "dev", &nic]));
    outside.add_addr("eth0", "10.162.0.1/24");
    let host_ping = || {
        std::process::Command::new("ping")
            .args(["-c", "1", "-W", "1", "10.162.0.1"])
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    assert!(host_ping(), "the host talks through its NIC");

    sw.ok(&["add-br", "br0", "--subnet", "10.163.0.0/24"]);
    attach(&sw, &c1);
    sw.ok(&[
        "add-uplink",
        "br0",
        &nic,
        "--ip",
        "10.162.0.2/24",
        "--gw",
        "10.162.0.1",
        "--shared",
        "--mac",
        "02:00:00:00:a2:02",
    ]);
    sw.ok(&["set-nat", "br0", "masquerade"]);
    let up = &sw.json(&["show"])[0]["uplink"];
    assert_eq!(up["shared"], true, "{up}");
    assert_eq!(up["mac"], "02:00:00:00:a2:02", "{up}");
    let fdb = run_ok(std::process::Command::new("bridge").args(["fdb", "show", "dev", &nic]));
    assert!(
        fdb.contains("02:00:00:00:a2:02"),
        "the uplink's MAC is one the NIC accepts: {fdb}"
    );

    // Both at once: the host's TCP through the NIC's own address, and a
    // container's, masqueraded to the uplink's.
    let server = outside.iperf3_server("10.162.0.1");
    let host = std::thread::spawn(|| {
        let out = run_ok(std::process::Command::new("iperf3").args(["-c", "10.162.0.1", "-t", "2", "-J"]));
        let report: serde_json::Value = serde_json::from_str(&out).expect("iperf3 JSON");
        report["end"]["sum_received"]["bytes"].as_u64().unwrap_or(0)
    });
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        c1.ping("10.162.0.1", 2),
        "a container reaches the outside through the shared NIC"
    );
    let srv = udp_server(&outside, "10.162.0.1", 9003, 1);
    assert_eq!(
        python(&c1, UDP_CLIENT, &["10.162.0.1", "9003", "3000"]),
        "back 3000 True"
    );
    assert_eq!(
        srv.finish(Duration::from_secs(2)).trim(),
        "3000 10.162.0.2 True",
        "masqueraded"
    );
    let host_bytes = host.join().expect("host iperf3");
    drop(server);
    assert!(host_bytes > 1_000_000, "the host's TCP went on: {host_bytes} bytes");
    assert!(host_ping());

    // A restart brings the shared uplink back as it was.
    sw.kill9();
    sw.launch();
    assert!(c1.ping("10.162.0.1", 3), "after a restart");
    assert!(host_ping());

    // del-uplink gives the NIC back as it was: no program, no extra MAC,
    // the host's address and traffic untouched.
    sw.ok(&["del-uplink", "br0"]);
    let link = run_ok(std::process::Command::new("ip").args(["link", "show", &nic]));
    assert!(!link.contains("xdp"), "no XDP program left: {link}");
    let fdb = run_ok(std::process::Command::new("bridge").args(["fdb", "show", "dev", &nic]));
    assert!(!fdb.contains("02:00:00:00:a2:02"), "{fdb}");
    let addr = run_ok(std::process::Command::new("ip").args(["-br", "addr", "show", &nic]));
    assert!(addr.contains("10.162.0.3/24"), "{addr}");
    assert!(host_ping());

    // Refused: --shared on a TAP, --mac on a plain AF_XDP uplink.
    sw.expect_error(
        &[
            "add-uplink",
            "br0",
            "wstap",
            "--type",
            "tap",
            "--ip",
            "10.162.0.2/24",
            "--gw",
            "10.162.0.1",
            "--shared",
        ],
        "--shared",
    );
    sw.expect_error(
        &[
            "add-uplink",
            "br0",
            &nic,
            "--ip",
            "10.162.0.2/24",
            "--gw",
            "10.162.0.1",
            "--mac",
            "02:00:00:00:a2:03",
        ],
        "--mac",
    );
}
