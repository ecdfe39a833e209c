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
        // AF_XDP on a veth gets what the peer leaves to "the hardware"
        // unfinished: the peer finishes its checksums itself (README).
        ns.tx_offload_off("eth0");
        let port = port.to_string();
        let csum = if udpcsum { "udpcsum" } else { "noudpcsum" };
        ns.ip(&[
            "link",
            "add",
            "vx0",
            "type",
            "vxlan",
            "id",
            "42",
            "dstport",
            &port,
            "remote",
            LOCAL_VTEP,
            "local",
            REMOTE_VTEP,
            "dev",
            "eth0",
            csum,
        ]);
        ns.add_addr("vx0", &format!("{REMOTE_IP}/24"));
        ns.ip(&["link", "set", "vx0", "up"]);
        RemoteHost {
            ns,
            _link: link,
            uplink,
        }
    }
}

/// vswitchd with an overlay bridge over the remote host's underlay, and a
/// container attached to it. Returns the container's address.
fn overlay(sw: &Switch, remote: &RemoteHost, c1: &Netns, port: u16) -> String {
    sw.ok(&["add-br", "ov", "--subnet", OVERLAY]);
    sw.ok(&[
        "add-uplink",
        "ov",
        &remote.uplink,
        "--ip",
        &format!("{LOCAL_VTEP}/24"),
        "--gw",
        "10.170.0.254",
        "--mode",
        "generic",
    ]);
    sw.ok(&[
        "add-vxlan",
        "ov",
        "--vni",
        "42",
        "--port",
        &port.to_string(),
        "--remote",
        REMOTE_VTEP,
    ]);
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
    let ip = overlay(&sw, &remote, &c1, port);
    assert_eq!(
        mtu(&c1, "eth0"),
        1450,
        "attach on an overlay bridge leaves room for the tunnel"
    );

    assert!(c1.ping(REMOTE_IP, 3), "container -> container behind the kernel VTEP");
    assert!(remote.ns.ping(&ip, 3), "and back");
    assert!(c1.ping("10.171.0.1", 1), "the local gateway answers");

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
    let ip = overlay(&sw, &remote, &c1, 4789);
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
    let state = std::fs::read_to_string(sw.state_dir.join("state.json")).unwrap();
    assert!(!state.contains("vxlan"), "nothing of the tunnel is left: {state}");
    let links = run_ok(Command::new("ip").args(["-br", "link"]));
    assert!(links.contains(&remote.uplink), "the uplink stays");
}
