//! A poll thread with many ports reads only the ones epoll reports ready,
//! and still forwards between any two of them: across switching between
//! reading every port (a few) and reading on readiness (many), with full
//! batches (TCP), and after a restart.

use vswitch_tests::{require_root, Netns, Switch};

/// Comfortably above the thread's threshold (16 ports read every pass).
const MANY: usize = 40;

fn attach_all(sw: &Switch, nss: &[Netns]) -> Vec<String> {
    let mut args: Vec<&str> = Vec::new();
    for ns in nss {
        if !args.is_empty() {
            args.push("--");
        }
        args.extend(["attach", "mp0", ns.name.as_str()]);
    }
    let mut json = vec!["--json"];
    json.extend(args);
    let replies = sw.json(&json);
    let replies = replies.as_array().expect("one reply per attach");
    assert_eq!(replies.len(), nss.len());
    replies
        .iter()
        .map(|r| r["ip"].as_str().expect("attach reply has the address").to_string())
        .collect()
}

/// Every namespace pings the next one (a ring): every port sends and receives.
fn ring_pings(nss: &[Netns], ips: &[String]) {
    for (i, ns) in nss.iter().enumerate() {
        let next = &ips[(i + 1) % ips.len()];
        assert!(ns.ping(next, 1), "{} cannot reach {next}", ns.name);
    }
}

fn pmd(sw: &Switch) -> serde_json::Value {
    let stats = sw.json(&["--json", "pmd-stats"]);
    stats
        .as_array()
        .and_then(|a| a.first())
        .cloned()
        .expect("one poll thread")
}

/// Port reads per loop iteration while `ns` pings `ip` (the others idle).
fn reads_per_iteration(sw: &Switch, ns: &Netns, ip: &str) -> f64 {
    let a = pmd(sw);
    let pinged = ns
        .cmd("ping")
        .args(["-c", "50", "-i", "0.01", "-W", "1", "-q", ip])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(pinged, "{} cannot reach {ip}", ns.name);
    let b = pmd(sw);
    let delta = |key: &str| b[key].as_u64().unwrap_or(0) - a[key].as_u64().unwrap_or(0);
    let iterations = delta("busy_iterations") + delta("idle_iterations");
    assert!(iterations > 0, "the poll thread did not run");
    delta("port_reads") as f64 / iterations as f64
}

#[test]
fn forty_ports_on_one_thread_forward_and_idle_ones_are_not_read() {
    require_root();
    let mut sw = Switch::start("many", "0");
    sw.ok(&["add-br", "mp0", "--subnet", "10.154.0.0/24"]);
    let nss: Vec<Netns> = (0..MANY).map(|i| Netns::new(&format!("mp{i}"))).collect();
    let ips = attach_all(&sw, &nss);
    ring_pings(&nss, &ips);
    let reads = reads_per_iteration(&sw, &nss[0], &ips[1]);
    assert!(
        reads < 8.0,
        "{reads:.1} port reads per iteration with {MANY} ports, two busy: idle ones are read"
    );

    // Full batches: a TCP stream between two of them, no bad checksums.
    let server = nss[MANY - 1].iperf3_server(&ips[MANY - 1]);
    let (gbits, _) = nss[0].iperf3(&ips[MANY - 1], 2, &[]);
    drop(server);
    assert!(gbits > 0.1, "TCP across a many-port thread: {gbits} Gbit/s");
    assert_eq!(nss[MANY - 1].tcp_csum_errors(), 0);

    // Down to a few ports: the thread reads every one again, and forwards.
    let mut args: Vec<&str> = Vec::new();
    for ns in &nss[4..] {
        if !args.is_empty() {
            args.push("--");
        }
        args.extend(["detach", "mp0", ns.name.as_str()]);
    }
    let before: Vec<Option<String>> = nss[4..].iter().map(|ns| ns.mac("eth0")).collect();
    sw.ok(&args);
    ring_pings(&nss[..4], &ips[..4]);
    let reads = reads_per_iteration(&sw, &nss[0], &ips[1]);
    assert!(
        reads > 3.5,
        "{reads:.1} port reads per iteration with 4 ports: each pass should read all four"
    );

    // Many again: the same addresses come back with the same MACs (the
    // others' ARP caches still name them), then a restart.
    let macs: Vec<Option<String>> = nss[4..].iter().map(|ns| ns.mac("eth0")).collect();
    assert!(macs.iter().all(Option::is_none), "detach removes the interfaces");
    let again = attach_all(&sw, &nss[4..]);
    assert_eq!(again, ips[4..].to_vec());
    let after: Vec<Option<String>> = nss[4..].iter().map(|ns| ns.mac("eth0")).collect();
    assert_eq!(after, before, "a namespace attached again has its MAC back");
    ring_pings(&nss, &ips);
    sw.kill9();
    sw.launch();
    ring_pings(&nss, &ips);
}
