//! The L3 gateway: addresses from vsctl attach, routing between linked
//! bridges, host access through an internal port, and bad frames.

use std::process::Command;

use vswitch_tests::{require_root, run_ok, short_name, Netns, Switch};

fn attach(sw: &Switch, bridge: &str, ns: &Netns, extra: &[&str]) -> String {
    let mut args = vec!["attach", bridge, ns.name.as_str()];
    args.extend_from_slice(extra);
    let reply = sw.json(&args);
    reply["ip"]
        .as_str()
        .expect("attach reply carries the address")
        .to_string()
}

fn bridge_info(sw: &Switch, name: &str) -> serde_json::Value {
    let show = sw.json(&["show"]);
    show.as_array()
        .unwrap()
        .iter()
        .find(|b| b["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("{name} in {show}"))
}

#[test]
fn attach_hands_out_addresses_and_routes_that_survive_a_restart() {
    require_root();
    let mut sw = Switch::start("ipam", "0,1");
    let (ns1, ns2, ns3, ns4) = (
        Netns::new("ip1"),
        Netns::new("ip2"),
        Netns::new("ip3"),
        Netns::new("ip4"),
    );
    sw.ok(&["add-br", "br0", "--subnet", "10.101.0.0/24"]);
    sw.ok(&["add-br", "plain"]);
    let a1 = attach(&sw, "br0", &ns1, &[]);
    let a2 = attach(&sw, "br0", &ns2, &["--type", "afxdp"]);
    let a3 = attach(&sw, "br0", &ns3, &["--ip", "10.101.0.77"]);
    assert_eq!(
        (a1.as_str(), a2.as_str(), a3.as_str()),
        ("10.101.0.2", "10.101.0.3", "10.101.0.77")
    );
    for (ns, ip) in [(&ns1, &a1), (&ns2, &a2), (&ns3, &a3)] {
        assert!(
            ns.ip(&["-br", "addr", "show", "eth0"]).contains(&format!("{ip}/24")),
            "{} has {ip}",
            ns.name
        );
        assert!(
            ns.ip(&["route", "show", "default"]).contains("via 10.101.0.1"),
            "{} routes via the gateway",
            ns.name
        );
        assert!(ns.ping("10.101.0.1", 2), "{} pings the gateway", ns.name);
    }
    assert!(
        ns1.ping(&a2, 2) && ns1.ping(&a3, 2) && ns2.ping(&a3, 2),
        "attached namespaces reach each other"
    );

    sw.expect_error(&["attach", "br0", &ns1.name], "is already attached to bridge 'br0'");
    sw.expect_error(&["attach", "br0", &ns4.name, "--ip", "10.101.0.77"], "already leased");
    sw.expect_error(
        &["attach", "br0", &ns4.name, "--ip", "10.102.0.5"],
        "is not a free host address of 10.101.0.0/24",
    );
    sw.expect_error(
        &["attach", "br0", &ns4.name, "--ip", "10.101.0.1"],
        "is not a free host address",
    );
    sw.expect_error(&["attach", "plain", &ns4.name], "bridge 'plain' has no subnet");
    sw.expect_error(&["attach", "br0", "vst-no-such-ns"], "does not exist");

    sw.kill9();
    sw.launch();
    for (ns, ip) in [(&ns1, &a1), (&ns2, &a2), (&ns3, &a3)] {
        assert!(
            ns.ip(&["-br", "addr", "show", "eth0"]).contains(&format!("{ip}/24")),
            "{} keeps {ip} after a restart",
            ns.name
        );
    }
    assert!(ns1.ping(&a3, 2), "and forwarding works after the restart");

    sw.ok(&["detach", "br0", &ns2.name]);
    assert_eq!(ns2.mac("eth0"), None, "detach removed the interface");
    let leases = bridge_info(&sw, "br0")["leases"].clone();
    assert_eq!(leases.as_array().unwrap().len(), 2, "{leases}");
    let a4 = attach(&sw, "br0", &ns4, &[]);
    assert_eq!(a4, a2, "a released address is handed out again");
    sw.expect_error(&["detach", "br0", &ns2.name], "is not attached");
}

/// Two hosts sharing one network give each its own slice of the subnet.
#[test]
fn an_ip_range_is_where_addresses_come_from_also_after_a_restart() {
    require_root();
    let mut sw = Switch::start("iprange", "0");
    let (a, b, c) = (Netns::new("ira"), Netns::new("irb"), Netns::new("irc"));
    sw.expect_error(
        &[
            "add-br",
            "br0",
            "--subnet",
            "10.110.0.0/24",
            "--ip-range",
            "10.111.0.0/25",
        ],
        "address range 10.111.0.0/25 is not part of 10.110.0.0/24",
    );
    let out = sw.vsctl(&["add-br", "br0", "--ip-range", "10.110.0.64/26"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "--ip-range without --subnet is a usage error"
    );
    sw.ok(&[
        "add-br",
        "br0",
        "--subnet",
        "10.110.0.0/24",
        "--ip-range",
        "10.110.0.64/26",
    ]);
    let ip_a = attach(&sw, "br0", &a, &[]);
    let ip_b = attach(&sw, "br0", &b, &["--type", "afxdp"]);
    assert_eq!((ip_a.as_str(), ip_b.as_str()), ("10.110.0.64", "10.110.0.65"));
    assert!(a.ping(&ip_b, 2), "addresses from the range work like any other");
    assert!(a.ping("10.110.0.1", 1), "the gateway stays outside the range");
    assert!(sw.ok(&["show"]).contains("addresses handed out from 10.110.0.64/26"));

    sw.kill9();
    sw.launch();
    assert_eq!(bridge_info(&sw, "br0")["ip_range"], "10.110.0.64/26");
    assert_eq!(
        attach(&sw, "br0", &c, &[]),
        "10.110.0.66",
        "leases and the range survive"
    );
    assert!(c.ping(&ip_a, 2));
}

#[test]
fn bridges_are_isolated_until_linked_and_routing_decrements_ttl() {
    require_root();
    let sw = Switch::start("route", "0,1");
    let (a, b) = (Netns::new("rta"), Netns::new("rtb"));
    sw.ok(&["add-br", "ba", "--subnet", "10.102.0.0/24"]);
    sw.ok(&["add-br", "bb", "--subnet", "10.103.0.0/24", "--gateway", "10.103.0.254"]);
    let ip_a = attach(&sw, "ba", &a, &[]);
    assert_eq!(ip_a, "10.102.0.2", "the first host address after the gateway");
    let ip_b = attach(&sw, "bb", &b, &["--type", "afxdp"]);
    assert!(b.ip(&["route", "show", "default"]).contains("via 10.103.0.254"));

    let isolated = run_ok(a.cmd("sh").args(["-c", &format!("ping -c 1 -W 1 {ip_b} || true")]));
    assert!(
        isolated.contains("Unreachable") || isolated.contains("100% packet loss"),
        "{isolated}"
    );
    assert!(
        sw.port_counter(&port_of(&sw, "ba"), "drops.no-route") >= 1,
        "counted as no-route"
    );

    sw.ok(&["link-br", "ba", "bb"]);
    let ping = run_ok(a.cmd("ping").args(["-c", "2", "-i", "0.2", &ip_b]));
    assert!(ping.contains("ttl=63"), "one router on the way, both ways:\n{ping}");
    let _server = b.iperf3_server(&ip_b);
    let (gbps, bytes) = a.iperf3(&ip_b, 2, &[]);
    println!("routed TCP (TAP on one bridge -> AF_XDP on another): {gbps:.2} Gbit/s");
    assert!(bytes > 1_000_000);

    let ttl1 = run_ok(a.cmd("sh").args(["-c", &format!("ping -c 1 -t 1 -W 1 {ip_b} || true")]));
    assert!(
        ttl1.contains("Time to live exceeded") && ttl1.contains("From 10.102.0.1"),
        "{ttl1}"
    );
    let neigh = sw.json(&["neigh-show", "bb"]);
    assert!(
        neigh.as_array().unwrap().iter().any(|n| n["ip"] == ip_b.as_str()),
        "the gateway resolved {ip_b}: {neigh}"
    );
    assert!(bridge_info(&sw, "ba")["linked"]
        .as_array()
        .unwrap()
        .iter()
        .any(|l| l == "bb"));

    sw.ok(&["unlink-br", "ba", "bb"]);
    assert!(!a.ping(&ip_b, 1), "isolated again after unlink-br");
    assert!(a.ping("10.102.0.1", 1), "the own gateway still answers");
    sw.expect_error(&["link-br", "ba", "ba"], "cannot be linked to itself");
    sw.ok(&["add-br", "nosub"]);
    sw.expect_error(&["link-br", "ba", "nosub"], "has no subnet");
    sw.expect_error(
        &["add-br", "overlap", "--subnet", "10.102.0.0/16"],
        "overlaps 10.102.0.0/24",
    );
    sw.expect_error(
        &["add-br", "badgw", "--subnet", "10.109.0.0/24", "--gateway", "10.1.1.1"],
        "is not a host address",
    );
}

fn port_of(sw: &Switch, bridge: &str) -> String {
    bridge_info(sw, bridge)["ports"][0]["name"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn the_host_reaches_containers_through_an_internal_port() {
    require_root();
    let sw = Switch::start("host", "0,1");
    let ns = Netns::new("hst");
    let internal = short_name("vi");
    sw.ok(&["add-br", "br0", "--subnet", "10.104.0.0/24"]);
    sw.ok(&["add-port", "br0", &internal, "--type", "internal"]);
    let ip = attach(&sw, "br0", &ns, &[]);
    let link = run_ok(Command::new("ip").args(["-br", "addr", "show", "dev", &internal]));
    assert!(
        link.contains("10.104.0.1/24"),
        "the internal port carries the gateway address: {link}"
    );

    let ping = run_ok(Command::new("ping").args(["-c", "2", "-i", "0.2", &ip]));
    assert!(ping.contains("2 received"), "host -> container:\n{ping}");
    assert!(
        ns.ping("10.104.0.1", 2),
        "container -> host (the gateway address is the host's)"
    );

    let _server = ns.iperf3_server(&ip);
    let out = run_ok(Command::new("iperf3").args(["-c", &ip, "-t", "1", "-J"]));
    let report: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(
        report["end"]["sum_received"]["bytes"].as_u64().unwrap_or(0) > 1_000_000,
        "host -> container TCP"
    );

    let server = vswitch_tests::Background(
        Command::new("iperf3")
            .args(["-s", "-1", "-B", "10.104.0.1", "-p", "5299"])
            .spawn()
            .expect("iperf3 on the host"),
    );
    std::thread::sleep(std::time::Duration::from_millis(300));
    let (_, bytes) = ns.iperf3("10.104.0.1", 1, &["-p", "5299"]);
    assert!(bytes > 1_000_000, "container -> host TCP: {bytes}");
    drop(server);
    let out = sw.vsctl(&["add-port", "br0", "second", "--type", "internal"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("already has an internal port"));
}

#[test]
fn malformed_arp_and_ip_frames_are_counted_and_harmless() {
    require_root();
    let sw = Switch::start("bad", "0");
    let ns = Netns::new("bad");
    sw.ok(&["add-br", "br0", "--subnet", "10.105.0.0/24"]);
    attach(&sw, "br0", &ns, &[]);
    let port = port_of(&sw, "br0");
    assert!(ns.ping("10.105.0.1", 1));
    let gw_mac = bridge_info(&sw, "br0")["gateway_mac"]
        .as_str()
        .unwrap()
        .replace(':', "");
    let src_mac = ns.mac("eth0").unwrap().replace(':', "");
    let before = (
        sw.port_counter(&port, "drops.malformed"),
        sw.port_counter(&port, "drops.bad-ip-checksum"),
    );

    // Raw frames from inside the container: a truncated ARP, an IPv4 header
    // claiming 12 bytes, and an IPv4 header with a wrong checksum.
    let script = format!(
        r#"
import socket
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("eth0", 0))
gw, me = bytes.fromhex("{gw_mac}"), bytes.fromhex("{src_mac}")
s.send(b"\xff" * 6 + me + b"\x08\x06" + b"\x00\x01\x08\x00\x06\x04")
ip_short = bytes([0x43, 0, 0, 40]) + bytes(8) + bytes([10, 105, 0, 2, 10, 105, 0, 9]) + bytes(20)
s.send(gw + me + b"\x08\x00" + ip_short)
ip = bytearray([0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0xde, 0xad, 10, 105, 0, 2, 10, 105, 0, 9]) + bytes(8)
s.send(gw + me + b"\x08\x00" + bytes(ip))
"#
    );
    run_ok(ns.cmd("python3").args(["-c", &script]));
    std::thread::sleep(std::time::Duration::from_millis(300));
    let after = (
        sw.port_counter(&port, "drops.malformed"),
        sw.port_counter(&port, "drops.bad-ip-checksum"),
    );
    assert!(
        after.0 >= before.0 + 2,
        "truncated ARP and short IP header counted as malformed: {before:?} -> {after:?}"
    );
    assert!(
        after.1 > before.1,
        "the bad checksum was counted: {before:?} -> {after:?}"
    );
    assert!(ns.ping("10.105.0.1", 3), "the gateway still answers");
}

#[test]
fn containers_reach_the_outside_through_the_uplink_and_back() {
    require_root();
    let mut sw = Switch::start("uplink", "0,1");
    let (outside, c1) = (Netns::new("out"), Netns::new("upc"));
    let host_end = short_name("vu");
    let _link = vswitch_tests::HostLink::veth_into(&host_end, &outside);
    outside.add_addr("eth0", "10.106.0.1/24");
    // The outside keeps its offloads: its TCP checksums arrive unfinished.
    outside.ip(&["route", "add", "10.107.0.0/24", "via", "10.106.0.2"]);

    sw.ok(&["add-br", "br0", "--subnet", "10.107.0.0/24"]);
    let ip = attach(&sw, "br0", &c1, &[]);
    sw.ok(&[
        "add-uplink",
        "br0",
        &host_end,
        "--ip",
        "10.106.0.2/24",
        "--gw",
        "10.106.0.1",
    ]);
    assert_eq!(bridge_info(&sw, "br0")["uplink"]["state"], "up");

    assert!(outside.ping("10.106.0.2", 2), "the outside pings the uplink address");
    assert!(c1.ping("10.106.0.1", 2), "container -> outside");
    assert!(
        outside.ping(&ip, 2),
        "outside -> container (return route on the outside)"
    );
    let _server = outside.iperf3_server("10.106.0.1");
    let (gbps, bytes) = c1.iperf3("10.106.0.1", 2, &[]);
    println!("TCP container -> outside through the uplink: {gbps:.2} Gbit/s");
    assert!(bytes > 1_000_000);
    let _server = c1.iperf3_server(&ip);
    let (_, bytes) = outside.iperf3(&ip, 1, &[]);
    assert!(bytes > 1_000_000, "outside -> container TCP");
    let neigh = sw.json(&["neigh-show", "br0"]);
    assert!(
        neigh.as_array().unwrap().iter().any(|n| n["ip"] == "10.106.0.1"),
        "next hop resolved: {neigh}"
    );
    assert!(
        sw.json(&["show"])[0]["learned_macs"].as_u64() == Some(1),
        "the outside's MAC is not in the bridge's FDB"
    );

    sw.expect_error(
        &[
            "add-uplink",
            "br0",
            "other0",
            "--ip",
            "10.108.0.2/24",
            "--gw",
            "10.108.0.1",
        ],
        "already has an uplink",
    );
    sw.ok(&["add-br", "br1", "--subnet", "10.109.0.0/24"]);
    sw.expect_error(
        &["add-uplink", "br1", "x0", "--ip", "10.108.0.2/24", "--gw", "10.99.0.1"],
        "must be another host",
    );
    sw.expect_error(
        &[
            "add-uplink",
            "br1",
            &host_end,
            "--ip",
            "10.108.0.2/24",
            "--gw",
            "10.108.0.1",
        ],
        "already the name",
    );

    sw.kill9();
    sw.launch();
    assert!(c1.ping("10.106.0.1", 2), "the uplink comes back after a restart");

    sw.ok(&["del-uplink", "br0"]);
    assert!(!c1.ping("10.106.0.1", 1), "no way out without the uplink");
    let link = run_ok(Command::new("ip").args(["link", "show", "dev", &host_end]));
    assert!(
        !link.contains("prog/xdp"),
        "del-uplink detached from the interface:\n{link}"
    );
}
