//! AF_XDP ports: veth-attached containers, both XDP modes, forwarding to and
//! from TAP ports with correct checksums, and no XDP program left behind.

use std::process::Command;
use std::time::Duration;

use vswitch_tests::{require_root, run_ok, short_name, HostLink, Netns, Switch};

fn add_afxdp(sw: &Switch, bridge: &str, port: &str, ns: &Netns, mode: &str) {
    sw.ok(&[
        "add-port", bridge, port, "--type", "afxdp", "--netns", &ns.name, "--ifname", "eth0", "--mode", mode,
    ]);
}

/// `ip link show DEV` in vswitchd's namespace, or None when DEV is gone.
fn host_link(dev: &str) -> Option<String> {
    let out = Command::new("ip")
        .args(["-d", "link", "show", "dev", dev])
        .output()
        .expect("ip");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

fn port_detail(sw: &Switch, port: &str) -> String {
    let show = sw.json(&["show"]);
    let ports = show[0]["ports"].as_array().expect("ports").clone();
    let p = ports
        .iter()
        .find(|p| p["name"] == port)
        .unwrap_or_else(|| panic!("{port} in {show}"));
    p["detail"].as_str().unwrap_or_default().to_string()
}

#[test]
fn tap_and_afxdp_namespaces_exchange_tcp_and_udp_with_good_checksums() {
    require_root();
    let sw = Switch::start("mix", "0,1");
    let (tap_ns, xdp_ns) = (Netns::new("mixt"), Netns::new("mixx"));
    let xport = short_name("mx");
    sw.ok(&["add-br", "br0"]);
    sw.add_port("br0", "t1", &tap_ns);
    add_afxdp(&sw, "br0", &xport, &xdp_ns, "auto");
    tap_ns.add_addr("eth0", "10.81.0.1/24");
    xdp_ns.add_addr("eth0", "10.81.0.2/24");

    assert!(tap_ns.ping("10.81.0.2", 3), "TAP -> AF_XDP ping");
    assert!(xdp_ns.ping("10.81.0.1", 3), "AF_XDP -> TAP ping");
    let (tap_errs, xdp_errs) = (tap_ns.tcp_csum_errors(), xdp_ns.tcp_csum_errors());

    // The AF_XDP side sees what we send it with the kernel checking every
    // checksum (its frames carry no offload flags): tcpdump -vv says so.
    let capture = xdp_ns.tcpdump("eth0", 20, "tcp and dst port 5201 and greater 1000");
    let _server = xdp_ns.iperf3_server("10.81.0.2");
    let (gbps, bytes) = tap_ns.iperf3("10.81.0.2", 2, &[]);
    println!("TCP TAP -> AF_XDP: {gbps:.2} Gbit/s");
    assert!(bytes > 1_000_000, "TAP -> AF_XDP moved {bytes} bytes");
    let seen = capture.finish(Duration::from_secs(3));
    assert!(seen.lines().count() >= 10, "tcpdump saw the transfer:\n{seen}");
    assert!(
        !seen.contains("incorrect"),
        "bad checksums reached the AF_XDP side:\n{seen}"
    );
    assert!(sw.port_counter("t1", "rx_gso_packets") > 0, "the TAP sent super-frames");
    assert!(
        sw.port_counter(&xport, "tx_gso_packets") > 0,
        "and they were segmented for the AF_XDP port"
    );

    let _server = tap_ns.iperf3_server("10.81.0.1");
    let (gbps, bytes) = xdp_ns.iperf3("10.81.0.1", 2, &[]);
    println!("TCP AF_XDP -> TAP: {gbps:.2} Gbit/s");
    assert!(bytes > 1_000_000, "AF_XDP -> TAP moved {bytes} bytes");

    let _server = tap_ns.iperf3_server("10.81.0.1");
    let (_, udp_bytes) = xdp_ns.iperf3("10.81.0.1", 1, &["-u", "-b", "50M"]);
    assert!(udp_bytes > 1_000_000, "UDP AF_XDP -> TAP: {udp_bytes} bytes");

    assert_eq!(tap_ns.tcp_csum_errors(), tap_errs, "TAP side: TcpInCsumErrors moved");
    assert_eq!(xdp_ns.tcp_csum_errors(), xdp_errs, "AF_XDP side: TcpInCsumErrors moved");
}

#[test]
fn two_afxdp_namespaces_in_native_and_generic_mode() {
    require_root();
    let sw = Switch::start("xdp2", "0,1");
    let (ns1, ns2) = (Netns::new("xn1"), Netns::new("xn2"));
    let (p1, p2) = (short_name("xa"), short_name("xb"));
    sw.ok(&["add-br", "br0"]);
    add_afxdp(&sw, "br0", &p1, &ns1, "native");
    add_afxdp(&sw, "br0", &p2, &ns2, "generic");
    assert!(
        port_detail(&sw, &p1).starts_with("xdp native mode"),
        "{}",
        port_detail(&sw, &p1)
    );
    assert!(
        port_detail(&sw, &p2).starts_with("xdp generic mode"),
        "{}",
        port_detail(&sw, &p2)
    );
    let link = host_link(&p1).expect("host end exists");
    assert!(
        link.contains("xdp") && link.contains("vswitch_xsk"),
        "program attached to {p1}:\n{link}"
    );
    let errs = (ns1.tcp_csum_errors(), ns2.tcp_csum_errors());

    ns1.add_addr("eth0", "10.82.0.1/24");
    ns2.add_addr("eth0", "10.82.0.2/24");
    assert!(ns1.ping("10.82.0.2", 3));
    let _server = ns2.iperf3_server("10.82.0.2");
    let (gbps, bytes) = ns1.iperf3("10.82.0.2", 2, &[]);
    println!("TCP AF_XDP (native) -> AF_XDP (generic): {gbps:.2} Gbit/s");
    assert!(bytes > 1_000_000);
    assert_eq!(
        (ns1.tcp_csum_errors(), ns2.tcp_csum_errors()),
        errs,
        "TcpInCsumErrors moved"
    );
}

#[test]
fn attaching_turns_off_tx_checksum_offload_in_the_container() {
    require_root();
    // Through veth into AF_XDP an offloaded checksum arrives unfinished and
    // unmarked; vswitchd prevents that at attach time (and TSO goes with it).
    let sw = Switch::start("csum", "0,1");
    let (tap_ns, xdp_ns) = (Netns::new("cst"), Netns::new("csx"));
    let xport = short_name("cx");
    sw.ok(&["add-br", "br0"]);
    sw.add_port("br0", "t1", &tap_ns);
    add_afxdp(&sw, "br0", &xport, &xdp_ns, "generic");
    let features = run_ok(xdp_ns.cmd("ethtool").args(["-k", "eth0"]));
    assert!(
        features.contains("tx-checksumming: off"),
        "vswitchd turned tx checksumming off:\n{features}"
    );
    for line in features.lines().map(str::trim) {
        if line.starts_with("tx-tcp") && line.contains("segmentation:") {
            assert!(
                line.contains(": off"),
                "every TCP segmentation offload is off, {line}:\n{features}"
            );
        }
    }
    assert!(
        features.contains("generic-segmentation-offload: on"),
        "software GSO stays on:\n{features}"
    );
}

#[test]
fn deleting_or_killing_leaves_no_xdp_program() {
    require_root();
    let mut sw = Switch::start("xdpdel", "0");
    let (ns1, ns2) = (Netns::new("xd1"), Netns::new("xd2"));
    let (p1, p2) = (short_name("xd"), short_name("xe"));
    sw.ok(&["add-br", "br0"]);
    add_afxdp(&sw, "br0", &p1, &ns1, "auto");
    add_afxdp(&sw, "br0", &p2, &ns2, "generic");
    assert!(host_link(&p1).expect("veth").contains("xdp"));

    sw.ok(&["del-port", "br0", &p1]);
    assert_eq!(host_link(&p1), None, "del-port removed the veth pair");
    assert_eq!(ns1.mac("eth0"), None, "and the container's end with it");

    // An existing interface (--iface): vswitchd attaches to it and must leave
    // it as it found it.
    let (outer, inner) = (short_name("xo"), short_name("xi"));
    run_ok(Command::new("ip").args(["link", "add", &outer, "type", "veth", "peer", "name", &inner]));
    let _cleanup = HostLink(outer.clone());
    run_ok(Command::new("ip").args(["link", "set", &outer, "up"]));
    run_ok(Command::new("ip").args(["link", "set", &inner, "up"]));
    sw.ok(&[
        "add-port", "br0", "ext", "--type", "afxdp", "--iface", &outer, "--mode", "generic",
    ]);
    assert!(host_link(&outer).unwrap().contains("xdp"));

    ns2.add_addr("eth0", "10.83.0.2/24");
    sw.kill9();
    for dev in [&p2, &outer] {
        let link = host_link(dev).expect("interfaces outlive the process");
        assert!(
            !link.contains("prog/xdp"),
            "kill -9 left an XDP program on {dev}:\n{link}"
        );
    }

    // A restart takes the pair over again: the container keeps its address.
    sw.launch();
    let show = sw.json(&["show"]);
    assert!(
        show[0]["ports"].as_array().unwrap().iter().all(|p| p["state"] == "up"),
        "{show}"
    );
    assert!(host_link(&p2).unwrap().contains("vswitch_xsk"));
    let addrs = ns2.ip(&["-br", "addr", "show", "eth0"]);
    assert!(
        addrs.contains("10.83.0.2"),
        "the container end kept its address: {addrs}"
    );
    sw.ok(&["del-port", "br0", "ext"]);
    assert!(
        !host_link(&outer).unwrap().contains("prog/xdp"),
        "del-port detached from --iface"
    );
    assert!(host_link(&outer).is_some(), "and left the interface itself alone");
}

#[test]
fn afxdp_input_mistakes_are_clear_errors() {
    require_root();
    let sw = Switch::start("xdperr", "0");
    let ns = Netns::new("xe1");
    sw.ok(&["add-br", "br0"]);
    let cases: [(&[&str], &str); 5] = [
        (&["add-port", "br0", "q1", "--type", "afxdp"], "needs --netns NS"),
        (
            &["add-port", "br0", "q1", "--mode", "native"],
            "apply to afxdp ports only",
        ),
        (
            &["add-port", "br0", "q1", "--type", "afxdp", "--iface", "vst-none-0"],
            "interface 'vst-none-0' does not exist",
        ),
        (
            &[
                "add-port", "br0", "q1", "--type", "afxdp", "--iface", "lo", "--netns", &ns.name,
            ],
            "--iface binds to an existing interface",
        ),
        (
            &[
                "add-port", "br0", "q1", "--type", "afxdp", "--netns", &ns.name, "--queue", "7",
            ],
            "queue 7",
        ),
    ];
    for (args, needle) in cases {
        sw.expect_error(args, needle);
    }
    assert_eq!(sw.ok(&["list-ports", "br0"]), "", "nothing was added");
    assert_eq!(
        host_link("q1"),
        None,
        "no veth left behind by the failed queue-7 attempt"
    );
}

#[test]
fn a_memlock_limit_too_low_for_the_umem_is_a_clear_add_port_error() {
    require_root();
    // Without CAP_IPC_LOCK the 8 MiB UMEM counts against RLIMIT_MEMLOCK.
    let wrapper = [
        "setpriv",
        "--bounding-set=-ipc_lock",
        "--",
        "prlimit",
        "--memlock=1048576:1048576",
        "--",
    ];
    let sw = Switch::start_under("memlock", "0", &wrapper);
    let ns = Netns::new("mlk");
    let port = short_name("ml");
    sw.ok(&["add-br", "br0"]);
    let out = sw.vsctl(&[
        "add-port", "br0", &port, "--type", "afxdp", "--netns", &ns.name, "--ifname", "eth0",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("raise the memlock limit"), "{stderr}");
    assert_eq!(
        host_link(&port),
        None,
        "the veth pair made before the failure was removed"
    );
    assert_eq!(ns.mac("eth0"), None);
    sw.ok(&["show"]);
}

/// Sets `dev`'s MTU (in `ns`, or vswitchd's namespace).
fn set_mtu(ns: Option<&Netns>, dev: &str, mtu: u32) {
    let mtu = mtu.to_string();
    let args = ["link", "set", dev, "mtu", mtu.as_str()];
    match ns {
        Some(ns) => {
            ns.ip(&args);
        }
        None => {
            run_ok(Command::new("ip").args(args));
        }
    }
}

#[test]
fn frames_of_9000_bytes_cross_afxdp_ports_when_the_mtu_is_raised() {
    require_root();
    let sw = Switch::start("jumbo", "0,1");
    let (a, b, t) = (Netns::new("jba"), Netns::new("jbb"), Netns::new("jbt"));
    let (pa, pb) = (short_name("ja"), short_name("jb"));
    sw.ok(&["add-br", "br0"]);
    add_afxdp(&sw, "br0", &pa, &a, "auto");
    add_afxdp(&sw, "br0", &pb, &b, "auto");
    sw.add_port("br0", "t1", &t);
    for (ns, port, ip) in [(&a, &pa, "10.82.0.1/24"), (&b, &pb, "10.82.0.2/24")] {
        set_mtu(None, port, 9000);
        set_mtu(Some(ns), "eth0", 9000);
        ns.add_addr("eth0", ip);
    }
    set_mtu(Some(&t), "eth0", 9000);
    t.add_addr("eth0", "10.82.0.3/24");

    // Whole 9000-byte frames, never fragmented (DF), both ways and from a TAP.
    let jumbo_ping = |from: &Netns, to: &str| {
        from.cmd("ping")
            .args(["-c", "2", "-W", "1", "-M", "do", "-s", "8972", to])
            .status()
            .is_ok_and(|s| s.success())
    };
    assert!(jumbo_ping(&a, "10.82.0.2"), "AF_XDP -> AF_XDP at 9000");
    assert!(jumbo_ping(&b, "10.82.0.1"), "and back");
    assert!(jumbo_ping(&t, "10.82.0.1"), "TAP -> AF_XDP at 9000");
    assert!(jumbo_ping(&a, "10.82.0.3"), "AF_XDP -> TAP at 9000");

    let errors = b.tcp_csum_errors();
    let _server = b.iperf3_server("10.82.0.2");
    let (gbps, bytes) = a.iperf3("10.82.0.2", 2, &[]);
    println!("TCP AF_XDP -> AF_XDP at MTU 9000: {gbps:.2} Gbit/s");
    assert!(bytes > 1_000_000, "moved {bytes} bytes");
    assert_eq!(b.tcp_csum_errors(), errors);
    assert_eq!(sw.port_counter(&pb, "drops.tx-oversize"), 0);
}
