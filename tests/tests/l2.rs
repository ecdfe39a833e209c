//! L2 switching through vswitchd between real namespaces on TAP ports.

use std::time::Duration;

use vswitch_tests::{require_root, Netns, Switch};

/// Three namespaces: ns1 and ns2 on bridge "a", ns3 on bridge "b", all in
/// one IP subnet so only the switch can keep them apart.
#[test]
fn two_namespaces_ping_and_another_bridge_is_isolated() {
    require_root();
    let sw = Switch::start("iso", "0,1");
    let (ns1, ns2, ns3) = (Netns::new("iso1"), Netns::new("iso2"), Netns::new("iso3"));
    sw.ok(&["add-br", "a"]);
    sw.ok(&["add-br", "b"]);
    sw.add_port("a", "p1", &ns1);
    sw.add_port("a", "p2", &ns2);
    sw.add_port("b", "p3", &ns3);
    ns1.add_addr("eth0", "10.91.0.1/24");
    ns2.add_addr("eth0", "10.91.0.2/24");
    ns3.add_addr("eth0", "10.91.0.3/24");

    assert!(ns1.ping("10.91.0.2", 3), "ns1 -> ns2 on the same bridge");
    assert!(ns2.ping("10.91.0.1", 3), "ns2 -> ns1 on the same bridge");

    let p1_tx = sw.port_counter("p1", "tx_packets");
    let p2_tx = sw.port_counter("p2", "tx_packets");
    assert!(!ns3.ping("10.91.0.1", 2), "ns3 on another bridge must not reach ns1");
    assert!(!ns3.ping("10.91.0.2", 2), "ns3 on another bridge must not reach ns2");
    assert!(
        sw.port_counter("p3", "rx_packets") > 0,
        "ns3's ARP requests did reach the switch"
    );
    assert_eq!(
        sw.port_counter("p1", "tx_packets"),
        p1_tx,
        "nothing from bridge b reached p1"
    );
    assert_eq!(
        sw.port_counter("p2", "tx_packets"),
        p2_tx,
        "nothing from bridge b reached p2"
    );
}

#[test]
fn learned_unicast_is_not_flooded_to_a_third_port() {
    require_root();
    let sw = Switch::start("learn", "0,1");
    let (ns1, ns2, ns3) = (Netns::new("lrn1"), Netns::new("lrn2"), Netns::new("lrn3"));
    sw.ok(&["add-br", "br0"]);
    sw.add_port("br0", "p1", &ns1);
    sw.add_port("br0", "p2", &ns2);
    sw.add_port("br0", "p3", &ns3);
    ns1.add_addr("eth0", "10.92.0.1/24");
    ns2.add_addr("eth0", "10.92.0.2/24");
    ns3.add_addr("eth0", "10.92.0.3/24");
    assert!(ns1.ping("10.92.0.2", 2), "warm-up: ARP resolved, both MACs learned");

    let fdb = sw.json(&["fdb-show", "br0"]);
    let ports: Vec<&str> = fdb
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["port"].as_str().unwrap())
        .collect();
    assert!(
        ports.contains(&"p1") && ports.contains(&"p2"),
        "fdb after warm-up: {fdb}"
    );

    let p2_tx = sw.port_counter("p2", "tx_packets");
    let p3_tx = sw.port_counter("p3", "tx_packets");
    assert!(ns1.ping("10.92.0.2", 20));
    assert!(
        sw.port_counter("p2", "tx_packets") >= p2_tx + 20,
        "the echo requests went to p2"
    );
    assert_eq!(
        sw.port_counter("p3", "tx_packets"),
        p3_tx,
        "known unicast must not be flooded to p3"
    );
}

#[test]
fn iperf3_tcp_between_two_namespaces() {
    require_root();
    let sw = Switch::start("iperf", "0,1");
    let (ns1, ns2) = (Netns::new("ipf1"), Netns::new("ipf2"));
    sw.ok(&["add-br", "br0"]);
    sw.add_port("br0", "p1", &ns1);
    sw.add_port("br0", "p2", &ns2);
    ns1.add_addr("eth0", "10.93.0.1/24");
    ns2.add_addr("eth0", "10.93.0.2/24");
    let _server = ns2.iperf3_server("10.93.0.2");
    let out = vswitch_tests::run_ok(ns1.cmd("iperf3").args(["-c", "10.93.0.2", "-t", "3", "-J"]));
    let report: serde_json::Value = serde_json::from_str(&out).expect("iperf3 JSON");
    let received = report["end"]["sum_received"]["bytes"].as_u64().expect("bytes received");
    let gbps = report["end"]["sum_received"]["bits_per_second"].as_f64().unwrap_or(0.0) / 1e9;
    println!("iperf3 TCP ns1 -> ns2 through vswitchd: {gbps:.2} Gbit/s ({received} bytes)");
    assert!(received > 1_000_000, "the transfer moved data: {received} bytes");
    assert!(
        sw.port_counter("p1", "rx_bytes") >= received,
        "what was received went through the switch"
    );
}

#[test]
fn gso_super_frames_pass_between_tap_ports() {
    require_root();
    let sw = Switch::start("gso", "0,1");
    let (ns1, ns2) = (Netns::new("gso1"), Netns::new("gso2"));
    sw.ok(&["add-br", "br0"]);
    sw.add_port("br0", "p1", &ns1);
    sw.add_port("br0", "p2", &ns2);
    ns1.add_addr("eth0", "10.94.0.1/24");
    ns2.add_addr("eth0", "10.94.0.2/24");
    assert!(ns1.ping("10.94.0.2", 1));

    // tcpdump in the receiver sees what vswitchd wrote into its TAP: frames
    // far above the 1500-byte MTU mean the super-frames were not cut up.
    let capture = ns2.tcpdump("eth0", 3, "tcp and greater 3000");
    let _server = ns2.iperf3_server("10.94.0.2");
    vswitch_tests::run_ok(ns1.cmd("iperf3").args(["-c", "10.94.0.2", "-t", "1"]));
    let seen = capture.finish(Duration::from_secs(5));
    let lengths: Vec<u64> = seen
        .lines()
        .filter_map(|l| l.rsplit("length ").next().and_then(|n| n.trim().parse().ok()))
        .collect();
    println!("tcpdump in the receiver: TCP payload lengths {lengths:?}");
    assert!(
        lengths.iter().any(|&n| n > 1500),
        "no frame above the MTU reached the receiver:\n{seen}"
    );
    assert!(sw.port_counter("p1", "rx_gso_packets") > 0, "p1 counted GSO frames in");
    assert!(sw.port_counter("p2", "tx_gso_packets") > 0, "p2 counted GSO frames out");
}

#[test]
fn del_port_under_traffic_leaves_the_rest_working() {
    require_root();
    let sw = Switch::start("delp", "0,1");
    let (ns1, ns2, ns3) = (Netns::new("del1"), Netns::new("del2"), Netns::new("del3"));
    sw.ok(&["add-br", "br0"]);
    sw.add_port("br0", "p1", &ns1);
    sw.add_port("br0", "p2", &ns2);
    sw.add_port("br0", "p3", &ns3);
    ns1.add_addr("eth0", "10.95.0.1/24");
    ns2.add_addr("eth0", "10.95.0.2/24");
    ns3.add_addr("eth0", "10.95.0.3/24");
    assert!(ns1.ping("10.95.0.2", 1));

    let _server = ns2.iperf3_server("10.95.0.2");
    let client = vswitch_tests::Background(
        ns1.cmd("iperf3")
            .args(["-c", "10.95.0.2", "-t", "4"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("iperf3"),
    );
    std::thread::sleep(Duration::from_millis(800));
    let before = sw.port_counter("p2", "tx_packets");
    assert!(
        before > 100,
        "traffic was flowing to p2 when it was deleted ({before} frames)"
    );
    sw.ok(&["del-port", "br0", "p2"]);
    drop(client);

    assert_eq!(
        sw.ok(&["list-ports", "br0"]).lines().collect::<Vec<_>>(),
        vec!["p1", "p3"]
    );
    assert_eq!(ns2.mac("eth0"), None, "the device left with its port");
    assert!(ns1.ping("10.95.0.3", 3), "the remaining ports still forward");
    let fdb = sw.json(&["fdb-show", "br0"]);
    assert!(
        fdb.as_array().unwrap().iter().all(|e| e["port"] != "p2"),
        "no FDB entry survives its port: {fdb}"
    );
}

#[test]
fn restart_after_kill_restores_ports_and_their_macs() {
    require_root();
    let mut sw = Switch::start("rst", "0");
    let (ns1, ns2, ns3) = (Netns::new("rst1"), Netns::new("rst2"), Netns::new("rst3"));
    sw.ok(&["add-br", "br0", "--aging", "60", "--max-macs", "100"]);
    sw.add_port("br0", "p1", &ns1);
    sw.ok(&[
        "add-port",
        "br0",
        "p2",
        "--netns",
        &ns2.name,
        "--ifname",
        "eth0",
        "--mac",
        "02:00:00:00:95:02",
    ]);
    sw.add_port("br0", "p3", &ns3);
    let mac1 = ns1.mac("eth0").expect("eth0 in ns1");

    sw.kill9();
    assert_eq!(ns1.mac("eth0"), None, "the TAP devices die with the process");
    let gone = ns3.name.clone();
    drop(ns3);
    sw.launch();

    let show = sw.json(&["show"]);
    let br = &show[0];
    assert_eq!(
        (br["name"].as_str(), br["aging_secs"].as_u64(), br["max_macs"].as_u64()),
        (Some("br0"), Some(60), Some(100))
    );
    let ports = br["ports"].as_array().unwrap();
    assert_eq!(ports.len(), 3, "all configured ports are still configured: {show}");
    assert_eq!(ports[0]["state"], "up");
    assert_eq!(ports[1]["state"], "up");
    let p3_state = ports[2]["state"].as_str().unwrap();
    assert!(
        p3_state.starts_with("error:") && p3_state.contains(&gone),
        "p3's namespace is gone, and show says so: {p3_state}"
    );
    assert_eq!(
        ns1.mac("eth0").as_deref(),
        Some(mac1.as_str()),
        "same MAC after restart"
    );
    assert_eq!(ns2.mac("eth0").as_deref(), Some("02:00:00:00:95:02"));

    // Addresses were on the old devices; the containers' side sets them again
    // (vswitchd-managed addresses come with IPAM).
    ns1.add_addr("eth0", "10.96.0.1/24");
    ns2.add_addr("eth0", "10.96.0.2/24");
    assert!(ns1.ping("10.96.0.2", 3), "forwarding works after the restart");
    sw.ok(&["del-port", "br0", "p3"]);
    assert_eq!(sw.ok(&["list-ports", "br0"]).lines().count(), 2);
}

#[test]
fn idle_switch_sleeps() {
    require_root();
    let sw = Switch::start("idle", "0,1");
    let ns1 = Netns::new("idl1");
    sw.ok(&["add-br", "br0"]);
    sw.add_port("br0", "p1", &ns1);
    let pmds = sw.json(&["pmd-stats"]);
    assert_eq!(pmds.as_array().unwrap().len(), 2, "one poll thread per core: {pmds}");
    let sleeps_before: u64 = pmds
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["sleeps"].as_u64().unwrap())
        .sum();
    let iters_before: u64 = pmds
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["idle_iterations"].as_u64().unwrap())
        .sum();
    std::thread::sleep(Duration::from_millis(1500));
    let pmds = sw.json(&["pmd-stats"]);
    let sleeps: u64 = pmds
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["sleeps"].as_u64().unwrap())
        .sum();
    let iters: u64 = pmds
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["idle_iterations"].as_u64().unwrap())
        .sum();
    // A spinning thread would make millions of idle iterations in 1.5 s; a
    // sleeping one wakes about once a second.
    assert!(
        iters - iters_before < 10_000,
        "idle poll threads kept spinning: {} idle iterations",
        iters - iters_before
    );
    assert!(sleeps > sleeps_before, "idle poll threads slept in epoll");
}

/// A namespace deleted while attached (no detach): its TAP, made inside it,
/// holds it alive until vswitchd notices the name is gone and closes the
/// port; the port says why, and detach and a new attach work as usual.
#[test]
fn a_namespace_deleted_while_attached_is_let_go() {
    require_root();
    let sw = Switch::start("nsgone", "0");
    sw.ok(&["add-br", "ng0", "--subnet", "10.155.0.0/24"]);
    let keep = Netns::new("ngkeep");
    let doomed = Netns::new("ngdoomed");
    sw.ok(&["attach", "ng0", &keep.name]);
    sw.ok(&["attach", "ng0", &doomed.name]);
    assert!(doomed.ping("10.155.0.2", 2), "the doomed namespace forwards first");
    let pid = sw.pid().expect("vswitchd runs");
    let fds = || std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
    let before = fds();
    let name = doomed.name.clone();
    drop(doomed);

    let state = |ns: &str| -> String {
        let list = sw.json(&["--json", "list-attachments"]);
        (list.as_array().into_iter().flatten())
            .find(|a| a["netns"] == ns)
            .map(|a| a["state"].as_str().unwrap_or_default().to_string())
            .unwrap_or_default()
    };
    let mut released = false;
    for _ in 0..50 {
        if state(&name).contains("namespace was deleted") {
            released = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(released, "port state after the namespace went: {}", state(&name));
    // The descriptor closes once no poll thread holds the snapshot that
    // named the port, and the socket of the last vsctl call may still be
    // open in vswitchd for a moment: give both a few seconds.
    for _ in 0..50 {
        if fds() < before {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        fds() < before,
        "vswitchd still holds the port's descriptor ({} >= {before})",
        fds()
    );
    assert_eq!(state(&keep.name), "up");
    assert!(keep.ping("10.155.0.1", 1), "the other namespace still forwards");

    // The name comes back as a new namespace: detach, attach again.
    sw.ok(&["detach", "ng0", &name]);
    let again = Netns::new("ngagain");
    sw.ok(&["attach", "ng0", &again.name]);
    assert!(
        again.ping("10.155.0.2", 2),
        "a new attach takes the address and forwards"
    );
}
