//! VXLAN against the independent peer: the Linux kernel's vxlan device, in
//! a namespace standing in for another host, across a veth underlay whose
//! host end is vswitchd's uplink.

use std::process::Command;

use vswitch_tests::{require_root, run_ok, short_name, HostLink, Netns, Switch};

/// The underlay: vswitchd's uplink and the remote host.
const LOCAL_VTEP: &str = "10.170.0.1";
const REMOTE_VTEP: &str = "10.170.0.2";
/// The overlay network, and the remote container's address on it.
const OVERLAY: &str = "10.171.0.0/24";
const REMOTE_IP: &str = "10.171.0.100";

/// A host with a kernel VTEP (and the container behind it, the vxlan
/// device itself) on the far side of the underlay.
struct RemoteHost {
    ns: Netns,
    _link: HostLink,
    uplink: String,
}

impl RemoteHost {
    fn new(tag: &str, port: u16, udpcsum: bool) -> RemoteHost {
        let ns = Netns::new(tag);
        let uplink = short_name("vxu");
        let link = HostLink::veth_into(&uplink, &ns);
        ns.add_addr("eth0", &format!("{REMOTE_VTEP}/24"));
        // The peer keeps its offloads: AF_XDP gets its checksums (outer
        // UDP, inner TCP) unfinished, and vswitchd finishes them.
        let csum = if udpcsum { "udpcsum" } else { "noudpcsum" };
        kernel_vtep(&ns, "eth0", REMOTE_VTEP, port, &[csum]);
        ns.add_addr("vx0", &format!("{REMOTE_IP}/24"));
        ns.ip(&["link", "set", "vx0", "up"]);
        RemoteHost {
            ns,
            _link: link,
            uplink,
        }
    }
}

/// Gives `bridge` the uplink on the underlay, as the local VTEP.
fn add_uplink(sw: &Switch, bridge: &str, iface: &str) {
    let ip = format!("{LOCAL_VTEP}/24");
    sw.ok(&["add-uplink", bridge, iface, "--ip", &ip, "--gw", "10.170.0.254"]);
}

/// A kernel VTEP (VNI 42, to the local VTEP) named vx0 in `ns`, over `dev`.
fn kernel_vtep(ns: &Netns, dev: &str, local: &str, port: impl std::fmt::Display, extra: &[&str]) {
    let port = port.to_string();
    let mut args = vec![
        "link", "add", "vx0", "type", "vxlan", "id", "42", "dstport", &port, "remote", LOCAL_VTEP, "local", local,
        "dev", dev,
    ];
    args.extend_from_slice(extra);
    ns.ip(&args);
}

/// vswitchd with an overlay bridge over the remote host's underlay, and a
/// container attached to it. Returns the container's address.
fn overlay(sw: &Switch, remote: &RemoteHost, c1: &Netns, port: u16, udp_csum: bool) -> String {
    sw.ok(&["add-br", "ov", "--subnet", OVERLAY]);
    add_uplink(sw, "ov", &remote.uplink);
    let port = port.to_string();
    let mut args = vec![
        "add-vxlan",
        "ov",
        "--vni",
        "42",
        "--port",
        &port,
        "--remote",
        REMOTE_VTEP,
    ];
    if udp_csum {
        args.push("--udp-csum");
    }
    sw.ok(&args);
    let reply = sw.json(&["attach", "ov", &c1.name]);
    reply["ip"].as_str().expect("attach gives an address").to_string()
}

fn mtu(ns: &Netns, dev: &str) -> u32 {
    run_ok(ns.cmd("cat").arg(format!("/sys/class/net/{dev}/mtu")))
        .trim()
        .parse()
        .expect("an MTU")
}

/// Ping and TCP both ways with the kernel's VTEP, for one port and
/// checksum setting.
fn talks_to_a_kernel_vtep(tag: &str, port: u16, udpcsum: bool) {
    require_root();
    let sw = Switch::start(tag, "0");
    let remote = RemoteHost::new(&format!("{tag}r"), port, udpcsum);
    let c1 = Netns::new(&format!("{tag}c"));
    let ip = overlay(&sw, &remote, &c1, port, udpcsum);
    assert_eq!(
        mtu(&c1, "eth0"),
        1450,
        "attach on an overlay bridge leaves room for the tunnel"
    );

    assert!(c1.ping(REMOTE_IP, 3), "container -> container behind the kernel VTEP");
    assert!(remote.ns.ping(&ip, 3), "and back");
    assert!(c1.ping("10.171.0.1", 1), "the local gateway answers");
    // The outer UDP checksum as configured, as an independent parser sees it.
    let capture = remote
        .ns
        .cmd("timeout")
        .args(["3", "tcpdump", "-i", "eth0", "-nn", "-vv", "-l", "-c", "2"])
        .arg(format!("udp port {port} and src host {LOCAL_VTEP}"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("tcpdump");
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(c1.ping(REMOTE_IP, 2));
    let seen = String::from_utf8_lossy(&capture.wait_with_output().expect("tcpdump").stdout).into_owned();
    let expected = if udpcsum { "[udp sum ok]" } else { "[no cksum]" };
    assert!(seen.contains(expected), "outer checksum: expected {expected} in {seen}");
    // The overlay bridge's own uplink is also its way out: masquerade to
    // an address of the underlay, the answer routed back in beside the tunnel.
    sw.ok(&["set-nat", "ov", "masquerade"]);
    assert!(c1.ping(REMOTE_VTEP, 2), "out through the uplink, masqueraded");
    let conns = sw.json(&["ct-show", "--bridge", "ov"]);
    assert!(
        (conns.as_array().unwrap().iter()).any(|c| c["reply"]
            .as_str()
            .is_some_and(|r| r.contains(&format!("-> {LOCAL_VTEP}:")))),
        "the connection left with the uplink address: {conns}"
    );
    assert!(c1.ping(REMOTE_IP, 1), "and the tunnel still carries the overlay");

    let server = remote.ns.iperf3_server(REMOTE_IP);
    let (gbps, bytes) = c1.iperf3(REMOTE_IP, 2, &[]);
    drop(server);
    println!("TCP vswitch -> kernel VTEP (port {port}, udpcsum {udpcsum}): {gbps:.2} Gbit/s");
    assert!(bytes > 1_000_000, "TCP through the tunnel moved {bytes} bytes");
    let server = c1.iperf3_server(&ip);
    let (gbps, bytes) = remote.ns.iperf3(&ip, 2, &[]);
    drop(server);
    println!("TCP kernel VTEP -> vswitch (port {port}, udpcsum {udpcsum}): {gbps:.2} Gbit/s");
    assert!(bytes > 1_000_000, "TCP back through the tunnel moved {bytes} bytes");
    assert_eq!(c1.tcp_csum_errors(), 0, "no bad checksums in the container");
    assert_eq!(
        remote.ns.tcp_csum_errors(),
        0,
        "no bad checksums behind the kernel VTEP"
    );

    let fdb = sw.json(&["fdb-show", "ov"]);
    let remote_mac = remote.ns.mac("vx0").expect("vx0's MAC");
    assert!(
        fdb.as_array()
            .unwrap()
            .iter()
            .any(|e| e["mac"] == remote_mac.as_str() && e["port"] == "vxlan" && e["vtep"] == REMOTE_VTEP),
        "the remote MAC is learned behind its VTEP: {fdb}"
    );
    let tunnels = sw.json(&["vtep-show"]);
    assert_eq!(tunnels[0]["vni"], 42);
    assert_eq!(tunnels[0]["port"], port);
    assert_eq!(tunnels[0]["local_ip"], LOCAL_VTEP);
    assert_eq!(tunnels[0]["path"], "software segmentation");
    let shown = sw.ok(&["show"]);
    let line = format!("vxlan vni 42 port {port} over ov (software segmentation), remotes: {REMOTE_VTEP}");
    assert!(shown.contains(&line), "show says which path the tunnel uses: {shown}");
}

#[test]
fn a_kernel_vtep_on_the_iana_port_with_udp_checksums() {
    talks_to_a_kernel_vtep("vxa", 4789, true);
}

#[test]
fn a_kernel_vtep_on_linux_port_without_udp_checksums() {
    talks_to_a_kernel_vtep("vxb", 8472, false);
}

/// Sends UDP datagrams (and one with a wrong checksum, through a raw
/// socket) from the remote host to the local VTEP.
fn send_from(remote: &Netns, payloads: &str) {
    let script = format!(
        r#"
import socket, struct
dst = ("{LOCAL_VTEP}", 4789)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
inner = bytes.fromhex("ffffffffffff020000000009" "0800") + bytes(46)
for p in [{payloads}]:
    s.sendto(p, dst)
# A VXLAN packet whose UDP checksum is wrong: the kernel fills the IP header.
r = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_UDP)
body = bytes([8, 0, 0, 0, 0, 0, 42, 0]) + inner
r.sendto(struct.pack("!HHHH", 40000, 4789, 8 + len(body), 0x1234) + body, ("{LOCAL_VTEP}", 0))
"#
    );
    run_ok(remote.cmd("python3").args(["-c", &script]));
}

#[test]
fn malformed_vxlan_is_dropped_and_counted_and_the_tunnel_goes_on() {
    require_root();
    let mut sw = Switch::start("vxm", "0");
    let remote = RemoteHost::new("vxmr", 4789, true);
    let c1 = Netns::new("vxmc");
    let ip = overlay(&sw, &remote, &c1, 4789, false);
    assert!(c1.ping(REMOTE_IP, 2));
    send_from(
        &remote.ns,
        r#"bytes([0, 0, 0, 0, 0, 0, 42, 0]) + inner,
           bytes([8, 0, 0, 0, 0, 0, 99, 0]) + inner,
           bytes([8, 0, 0]),
           bytes([8, 0, 0, 0, 0, 0, 42, 0]) + bytes(5)"#,
    );
    let drops = |reason: &str| sw.port_counter(&remote.uplink, &format!("drops.{reason}"));
    let expected = [
        ("vxlan-bad-flags", 1),
        ("vxlan-unknown-vni", 1),
        ("vxlan-truncated", 1),
        ("vxlan-inner-too-short", 1),
        ("vxlan-bad-checksum", 1),
    ];
    for (reason, n) in expected {
        assert_eq!(drops(reason), n, "{reason}");
    }
    assert!(c1.ping(REMOTE_IP, 2), "the tunnel still works");

    // Too big for the tunnel (the container's MTU raised past the
    // overlay's): with DF set the sender hears the overlay's MTU from its
    // gateway; without, the frame is a counted drop.
    let stats = sw.json(&["port-stats"]);
    let port = stats
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["bridge"] == "ov" && p["name"] != remote.uplink.as_str())
        .and_then(|p| p["name"].as_str())
        .expect("the container's port")
        .to_string();
    c1.ip(&["link", "set", "eth0", "mtu", "1500"]);
    let big_ping = |df: &str| {
        c1.cmd("ping")
            .args(["-c", "1", "-W", "1", "-M", df, "-s", "1472", REMOTE_IP])
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    };
    assert!(!big_ping("do"), "a DF packet too big for the tunnel does not cross");
    let route = c1.ip(&["route", "get", REMOTE_IP]);
    assert!(route.contains("mtu 1450"), "the sender learned the path MTU: {route}");
    assert_eq!(sw.port_counter(&port, "drops.tunnel-too-big"), 1);
    // Forget the learned MTU, or the kernel fragments to fit.
    c1.ip(&["route", "flush", "cache"]);
    assert!(!big_ping("dont"));
    assert_eq!(
        sw.port_counter(&port, "drops.tunnel-too-big"),
        2,
        "without DF: a counted drop"
    );
    c1.ip(&["link", "set", "eth0", "mtu", "1450"]);

    // The tunnel is part of the saved state.
    sw.kill9();
    sw.launch();
    assert_eq!(sw.json(&["vtep-show", "ov"])[0]["remotes"][0], REMOTE_VTEP);
    assert!(c1.ping(REMOTE_IP, 3), "after a restart");
    assert!(remote.ns.ping(&ip, 1));

    sw.expect_error(&["del-uplink", "ov"], "the tunnel of bridge 'ov' needs the uplink");
    sw.expect_error(&["add-vxlan", "ov", "--vni", "7"], "already has a tunnel");
    sw.ok(&["del-vxlan", "ov"]);
    assert_eq!(sw.json(&["vtep-show"]).as_array().map(Vec::len), Some(0));
    assert!(!c1.ping(REMOTE_IP, 1), "no tunnel, no path");
    sw.kill9();
    sw.launch();
    let tunnels = sw.json(&["vtep-show"]);
    assert_eq!(
        tunnels.as_array().map(Vec::len),
        Some(0),
        "nothing of the tunnel was saved: {tunnels}"
    );
    let links = run_ok(Command::new("ip").args(["-br", "link"]));
    assert!(links.contains(&remote.uplink), "the uplink stays");
}

/// VXLAN packets seen on `dev` in `ns` during `secs` seconds.
fn vxlan_packets_seen(ns: &Netns, dev: &str, secs: u32, during: impl FnOnce()) -> usize {
    let capture = ns
        .cmd("timeout")
        .args([
            &secs.to_string(),
            "tcpdump",
            "-i",
            dev,
            "-nn",
            "-l",
            "-e",
            "udp port 4789",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("tcpdump");
    // tcpdump needs a moment to open the device.
    std::thread::sleep(std::time::Duration::from_millis(500));
    during();
    let out = capture.wait_with_output().expect("tcpdump output");
    let text = String::from_utf8_lossy(&out.stdout);
    println!("VXLAN seen on {dev} in {}:\n{text}", ns.name);
    text.lines().filter(|l| l.contains("VXLAN")).count()
}

/// Two kernel VTEPs behind one underlay switch (a Linux bridge in a
/// namespace): floods reach both, learned unicast only its own, learned
/// MACs age, static ones stay.
#[test]
fn floods_reach_every_vtep_and_unicast_only_its_own() {
    require_root();
    let mut sw = Switch::start("vx2", "0");
    let under = Netns::new("vx2u");
    under.ip(&["link", "add", "br0", "type", "bridge"]);
    under.ip(&["link", "set", "br0", "up"]);
    let uplink = short_name("vxu");
    let _link = HostLink::veth_into(&uplink, &under);
    under.ip(&["link", "set", "eth0", "master", "br0"]);
    let hosts: Vec<(Netns, String, String)> = [
        ("vx2a", "10.170.0.2", "10.171.0.101"),
        ("vx2b", "10.170.0.3", "10.171.0.102"),
    ]
    .iter()
    .enumerate()
    .map(|(i, (tag, vtep, ip))| {
        let ns = Netns::new(tag);
        let port = format!("p{i}");
        under.ip(&[
            "link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &ns.name,
        ]);
        under.ip(&["link", "set", &port, "master", "br0", "up"]);
        ns.ip(&["link", "set", "eth0", "up"]);
        ns.add_addr("eth0", &format!("{vtep}/24"));
        kernel_vtep(&ns, "eth0", vtep, 4789, &[]);
        ns.add_addr("vx0", &format!("{ip}/24"));
        ns.ip(&["link", "set", "vx0", "up"]);
        (ns, vtep.to_string(), ip.to_string())
    })
    .collect();
    let (a, b) = (&hosts[0], &hosts[1]);

    let c1 = Netns::new("vx2c");
    sw.ok(&["add-br", "ov", "--subnet", OVERLAY, "--aging", "3"]);
    sw.ok(&["add-br", "ul", "--subnet", "10.172.0.0/24"]);
    add_uplink(&sw, "ul", &uplink);
    sw.ok(&["add-vxlan", "ov", "--vni", "42", "--underlay", "ul", "--remote", &a.1]);
    sw.ok(&["add-vtep", "ov", &b.1]);
    sw.ok(&["attach", "ov", &c1.name]);

    // The first ping's ARP broadcast is replicated to both VTEPs.
    let seen_by_b = vxlan_packets_seen(&b.0, "eth0", 2, || assert!(c1.ping(&a.2, 1), "ping behind VTEP a"));
    assert!(seen_by_b >= 1, "the flood reached VTEP b too");
    // Learned: unicast to a's container crosses only to a.
    let seen_by_b = vxlan_packets_seen(&b.0, "eth0", 2, || assert!(c1.ping(&a.2, 3)));
    assert_eq!(seen_by_b, 0, "unicast to a's container went to a only");
    assert!(c1.ping(&b.2, 2), "and b's container is reached too");

    // Learned entries age (3 s here), once nothing refreshes them: the
    // kernels' ARP entries are flushed, so no reachability probe crosses.
    let mac_a = a.0.mac("vx0").unwrap();
    let behind = |sw: &Switch, mac: &str| {
        sw.json(&["fdb-show", "ov"])
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["mac"] == mac)
            .cloned()
    };
    assert_eq!(behind(&sw, &mac_a).unwrap()["vtep"], a.1.as_str());
    for (ns, dev) in [(&a.0, "vx0"), (&b.0, "vx0"), (&c1, "eth0")] {
        ns.ip(&["neigh", "flush", "dev", dev]);
    }
    std::thread::sleep(std::time::Duration::from_secs(4));
    assert!(
        behind(&sw, &mac_a).is_none(),
        "a's MAC aged out: {}",
        sw.json(&["fdb-show", "ov"])
    );

    // Without learning, a static entry is what sends unicast to b alone.
    sw.ok(&["del-vxlan", "ov"]);
    sw.ok(&[
        "add-vxlan",
        "ov",
        "--vni",
        "42",
        "--underlay",
        "ul",
        "--remote",
        &a.1,
        "--remote",
        &b.1,
        "--no-learn",
    ]);
    let mac_b = b.0.mac("vx0").unwrap();
    sw.ok(&["fdb-add", "ov", &mac_b, "--vtep", &b.1]);
    assert!(c1.ping(&b.2, 1), "ARP resolved by flooding");
    let seen_by_a = vxlan_packets_seen(&a.0, "eth0", 2, || assert!(c1.ping(&b.2, 3)));
    assert_eq!(seen_by_a, 0, "the static entry sent unicast to b only");
    std::thread::sleep(std::time::Duration::from_secs(4));
    sw.kill9();
    sw.launch();
    let entry = behind(&sw, &mac_b).expect("the static entry outlives aging and a restart");
    assert_eq!(
        (entry["vtep"].as_str(), entry["is_static"].as_bool()),
        (Some(b.1.as_str()), Some(true))
    );
    assert_eq!(
        sw.json(&["vtep-show", "ov"])[0]["learned_macs"],
        0,
        "nothing learned with --no-learn"
    );
    assert!(c1.ping(&b.2, 2));
}

/// The underlay a TAP uplink moved into the remote host's namespace, the
/// kernel VTEP on top of it with its offloads on: checksums the kernel
/// leaves to "the device" reach vswitchd marked, in both layers.
#[test]
fn a_tap_underlay_in_the_remote_hosts_namespace() {
    require_root();
    let sw = Switch::start("vxt", "0");
    let remote = Netns::new("vxtr");
    let c1 = Netns::new("vxtc");
    let tap = short_name("vxt");
    sw.ok(&["add-br", "ov", "--subnet", OVERLAY]);
    let ip = format!("{LOCAL_VTEP}/24");
    sw.ok(&[
        "add-uplink",
        "ov",
        &tap,
        "--type",
        "tap",
        "--netns",
        &remote.name,
        "--ip",
        &ip,
        "--gw",
        "10.170.0.254",
    ]);
    remote.add_addr(&tap, &format!("{REMOTE_VTEP}/24"));
    kernel_vtep(&remote, &tap, REMOTE_VTEP, 4789, &["udpcsum"]);
    remote.add_addr("vx0", &format!("{REMOTE_IP}/24"));
    remote.ip(&["link", "set", "vx0", "up"]);
    sw.ok(&["add-vxlan", "ov", "--vni", "42", "--remote", REMOTE_VTEP]);
    let c1_ip = sw.json(&["attach", "ov", &c1.name])["ip"].as_str().unwrap().to_string();
    assert!(sw
        .ok(&["show"])
        .contains(&format!("in network namespace {}", remote.name)));

    assert_eq!(mtu(&c1, "eth0"), 1450, "the underlay's MTU is read in its namespace");
    assert!(!sw.log().contains("cannot read the underlay's MTU"), "{}", sw.log());
    assert!(c1.ping(REMOTE_IP, 3), "through a TAP underlay");
    assert!(remote.ping(&c1_ip, 2), "and back");
    let server = remote.iperf3_server(REMOTE_IP);
    let (gbps, bytes) = c1.iperf3(REMOTE_IP, 2, &[]);
    drop(server);
    println!("TCP vswitch -> kernel VTEP over a TAP underlay: {gbps:.2} Gbit/s");
    assert!(bytes > 1_000_000, "{bytes} bytes");
    let server = c1.iperf3_server(&c1_ip);
    let (gbps, bytes) = remote.iperf3(&c1_ip, 2, &[]);
    drop(server);
    println!("TCP kernel VTEP -> vswitch over a TAP underlay: {gbps:.2} Gbit/s");
    assert!(bytes > 1_000_000, "{bytes} bytes");
    assert_eq!(c1.tcp_csum_errors(), 0);
    assert_eq!(remote.tcp_csum_errors(), 0);
    let gso = |port: &str, key: &str| sw.port_counter(port, key);
    let c1_port = sw
        .json(&["port-stats"])
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["bridge"] == "ov" && p["name"] != tap.as_str())
        .and_then(|p| p["name"].as_str())
        .unwrap()
        .to_string();
    assert!(
        gso(&tap, "tx_gso_packets") > 0,
        "super-frames went into the tunnel whole"
    );
    assert!(gso(&tap, "rx_gso_packets") > 0, "and came out of it whole");
    assert!(
        gso(&c1_port, "tx_gso_packets") > 0,
        "decapsulated super-frames reach the container whole"
    );

    // With an outer checksum the frames are finished and encapsulated in
    // software, also on this underlay.
    sw.ok(&["del-vxlan", "ov"]);
    sw.ok(&["add-vxlan", "ov", "--vni", "42", "--remote", REMOTE_VTEP, "--udp-csum"]);
    assert_eq!(sw.json(&["vtep-show", "ov"])[0]["path"], "software segmentation");
    let server = remote.iperf3_server(REMOTE_IP);
    let (_, bytes) = c1.iperf3(REMOTE_IP, 1, &[]);
    drop(server);
    assert!(bytes > 1_000_000, "{bytes} bytes with outer checksums");
    assert_eq!(remote.tcp_csum_errors(), 0);
}
