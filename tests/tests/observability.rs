//! Observability: Prometheus metrics served by vswitchd, JSON logs,
//! port-stats that show what happened.

use std::io::Write;
use std::process::{Command, Stdio};

use vswitch_tests::{bin, require_root, Netns, Switch};

/// A TCP port nobody listens on right now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn scrape(port: u16, path: &str, method: &str) -> (String, String) {
    let out = Command::new("curl")
        .args([
            "-s",
            "-X",
            method,
            "-w",
            "\n%{http_code}",
            &format!("http://127.0.0.1:{port}{path}"),
        ])
        .output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or((&text, ""));
    (code.to_string(), body.to_string())
}

/// The value of the first sample line starting with `series`.
fn sample(body: &str, series: &str) -> Option<u64> {
    body.lines()
        .find(|l| l.starts_with(series))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn metrics_are_served_valid_and_move_with_traffic() {
    require_root();
    let port = free_port();
    let sw = Switch::start_with_args(
        "metrics",
        "0",
        &["--metrics", &port.to_string(), "--log-format", "json"],
    );
    sw.ok(&["add-br", "br0", "--subnet", "10.195.0.0/24"]);
    let (c1, c2) = (Netns::new("met1"), Netns::new("met2"));
    let p1 = sw.json(&["attach", "br0", &c1.name])["port"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    sw.ok(&["attach", "br0", &c2.name]);
    assert!(c1.ping("10.195.0.3", 3));

    let (code, body) = scrape(port, "/metrics", "GET");
    assert_eq!(code, "200", "{body}");
    let series = format!("vswitch_port_rx_packets_total{{bridge=\"br0\",port=\"{p1}\"}}");
    let before = sample(&body, &series).unwrap_or_else(|| panic!("no {series} in:\n{body}"));
    assert!(before >= 3, "{series} {before}");
    for name in [
        "vswitch_pmd_packets_total",
        "vswitch_pmd_busy_seconds_total",
        "vswitch_ct_entries",
        "vswitch_bridge_fdb_entries{bridge=\"br0\"} 2",
        "vswitch_bridge_fdb_max_entries{bridge=\"br0\"} 8192",
        "vswitch_bridge_leases{bridge=\"br0\"} 2",
        // 256 less network, broadcast, gateway and the two leases.
        "vswitch_bridge_addresses_free{bridge=\"br0\"} 251",
        "vswitch_build_info{version=",
        "vswitch_config_save_failures_total 0",
        &format!("vswitch_port_up{{bridge=\"br0\",port=\"{p1}\"}} 1"),
        &format!("vswitch_port_info{{address=\"10.195.0.2\",bridge=\"br0\",owner=\"\",port=\"{p1}\",type=\"tap\"}} 1"),
    ] {
        assert!(body.contains(name), "{name} missing:\n{body}");
    }
    assert!(
        sample(&body, "vswitch_config_changes_total") >= Some(3),
        "add-br and two attaches"
    );
    // Drop reasons are series once they happened, not before.
    let zero_drops = body
        .lines()
        .filter(|l| l.starts_with("vswitch_port_drops_total{") && l.ends_with(" 0"));
    assert_eq!(zero_drops.count(), 0, "{body}");
    assert!(!body.contains("reason=\"spoofed-src\""), "{body}");
    c1.ip(&["addr", "add", "10.195.0.99/24", "dev", "eth0"]);
    assert!(
        !c1.ping_from("10.195.0.3", "10.195.0.99"),
        "the source guard drops a forged source"
    );
    let (_, body) = scrape(port, "/metrics", "GET");
    let spoofed = format!("vswitch_port_drops_total{{bridge=\"br0\",port=\"{p1}\",reason=\"spoofed-src\"}}");
    assert!(sample(&body, &spoofed) >= Some(1), "{spoofed} in:\n{body}");
    // What Prometheus's own checker says of it.
    let mut check = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus; scripts/install-deps.sh installs it)");
    check
        .stdin
        .take()
        .expect("stdin")
        .write_all(body.as_bytes())
        .expect("feed promtool");
    let out = check.wait_with_output().expect("promtool");
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    assert!(c1.ping("10.195.0.3", 5));
    let (_, body) = scrape(port, "/metrics", "GET");
    let after = sample(&body, &series).unwrap_or(0);
    assert!(after >= before + 5, "the counter moved: {before} -> {after}");

    assert_eq!(scrape(port, "/other", "GET").0, "404");
    assert_eq!(scrape(port, "/metrics", "POST").0, "405");

    // JSON logs: one object per line.
    let log = sw.log();
    assert!(log.lines().count() >= 3, "{log}");
    for line in log.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v["level"].is_string() && v["fields"]["message"].is_string(), "{line}");
    }

    // port-stats lists the drop reasons that happened; --all every one.
    let text = sw.ok(&["port-stats", &p1]);
    assert!(!text.contains("tx-full=0"), "{text}");
    assert!(sw.ok(&["port-stats", &p1, "--all"]).contains("tx-full=0"));
}

#[test]
fn a_bad_metrics_address_is_refused_at_start() {
    let out = Command::new(bin("vswitchd"))
        .args(["--metrics", "localhost:x", "--cores", "0"])
        .output()
        .expect("vswitchd");
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("is not PORT or ADDR:PORT"), "{stderr}");
}

#[test]
fn a_capture_reads_back_with_tcpdump_and_never_stalls_forwarding() {
    require_root();
    let sw = Switch::start("capture", "0");
    sw.ok(&["add-br", "br0", "--subnet", "10.196.0.0/24"]);
    let (c1, c2) = (Netns::new("cap1"), Netns::new("cap2"));
    let p1 = sw.json(&["attach", "br0", &c1.name])["port"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let ip2 = sw.json(&["attach", "br0", &c2.name])["ip"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(c1.ping(&ip2, 1), "ARP settled before the capture");

    // vsctl capture p1 -w - | tcpdump -r -: a ping seen both ways.
    let socket = sw.socket.display().to_string();
    let pipeline = format!(
        "{} --socket {socket} capture {p1} --count 4 --seconds 10 -w - | tcpdump -n -r - 2>/dev/null",
        bin("vsctl").display()
    );
    let reader = std::process::Command::new("sh")
        .args(["-c", &pipeline])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("capture | tcpdump");
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(c1.ping(&ip2, 2));
    let out = reader.wait_with_output().expect("tcpdump");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("10.196.0.2 > {ip2}: ICMP echo request")),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains(&format!("{ip2} > 10.196.0.2: ICMP echo reply")), "{text}");

    // --filter: tcpdump's language; only what matches is written.
    let filtered = format!(
        "{} --socket {socket} capture {p1} --filter 'tcp port 7' --count 1 --seconds 10 -w - | tcpdump -n -r - 2>/dev/null",
        bin("vsctl").display()
    );
    let reader = std::process::Command::new("sh")
        .args(["-c", &filtered])
        .stdout(Stdio::piped())
        .spawn()
        .expect("capture --filter | tcpdump");
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(c1.ping(&ip2, 2));
    let _ = c1
        .cmd("sh")
        .args(["-c", &format!("timeout 2 nc -z -w 1 {ip2} 7 || true")])
        .status();
    let out = reader.wait_with_output().expect("tcpdump");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(&format!("{ip2}.7: Flags [S]")), "{text}");
    assert!(!text.contains("ICMP"), "{text}");
    // A whole bridge: both ports' frames in one file, in time order; a
    // trace of every port sees the request on one port, the reply on the other.
    let whole = format!(
        "{} --socket {socket} capture br0 --direction rx --count 2 --seconds 10 -w - | tcpdump -n -r - 2>/dev/null",
        bin("vsctl").display()
    );
    let reader = std::process::Command::new("sh")
        .args(["-c", &whole])
        .stdout(Stdio::piped())
        .spawn()
        .expect("capture br0");
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(c1.ping(&ip2, 1));
    let text = String::from_utf8_lossy(&reader.wait_with_output().expect("tcpdump").stdout).into_owned();
    assert!(
        text.contains("ICMP echo request") && text.contains("ICMP echo reply"),
        "{text}"
    );
    let p2 = sw.json(&["show"])[0]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["name"].as_str())
        .find(|n| *n != p1)
        .unwrap_or_default()
        .to_string();
    let tracer = Command::new(bin("vsctl"))
        .args(["--socket", &socket, "trace", "--all", "--count", "2", "--seconds", "10"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("trace br0");
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(c1.ping(&ip2, 1));
    let text = String::from_utf8_lossy(&tracer.wait_with_output().expect("trace").stdout).into_owned();
    assert!(
        text.contains(&format!("frame received on {p1}")) && text.contains(&format!("frame received on {p2}")),
        "{text}"
    );

    let bad = sw.vsctl(&["capture", &p1, "--filter", "nonsense expr", "--count", "1", "-w", "-"]);
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("bad filter"));

    // Under a TCP stream: forwarding goes on, frames the reader could not
    // keep up with are skipped and counted.
    let _server = c2.iperf3_server(&ip2);
    let file = sw.dir.join("load.pcap");
    let capture = std::process::Command::new(bin("vsctl"))
        .args(["--socket", &socket, "capture", &p1, "--seconds", "2", "-w"])
        .arg(&file)
        .stderr(Stdio::piped())
        .spawn()
        .expect("capture");
    let (gbits, _) = c1.iperf3(&ip2, 3, &[]);
    let out = capture.wait_with_output().expect("capture");
    let summary = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{summary}");
    assert!(gbits > 0.1, "forwarding went on under capture: {gbits} Gbit/s");
    assert!(summary.contains("frames captured"), "{summary}");
    let read = std::process::Command::new("tcpdump")
        .args(["-n", "-r"])
        .arg(&file)
        .output()
        .expect("tcpdump");
    assert!(
        String::from_utf8_lossy(&read.stdout).contains("Flags"),
        "TCP segments in the file"
    );
    println!("capture under iperf3: {gbits:.2} Gbit/s; {}", summary.trim());
    sw.ok(&["show"]);
}

/// `vsctl trace PORT --count 1` while `act` sends one frame from the port;
/// returns what it printed.
fn trace_one(sw: &Switch, port: &str, act: impl FnOnce()) -> String {
    let tracer = Command::new(bin("vsctl"))
        .arg("--socket")
        .arg(&sw.socket)
        .args(["trace", port, "--count", "1", "--seconds", "10"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("vsctl trace");
    std::thread::sleep(std::time::Duration::from_millis(300));
    act();
    let out = tracer.wait_with_output().expect("trace");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_trace_shows_each_frames_way() {
    require_root();
    let sw = Switch::start("trace", "0");
    let outside = Netns::new("tro");
    sw.ok(&["add-br", "a", "--subnet", "10.197.0.0/24"]);
    sw.ok(&["add-br", "b", "--subnet", "10.198.0.0/24"]);
    sw.ok(&["link-br", "a", "b"]);
    sw.ok(&[
        "add-uplink",
        "a",
        "trup0",
        "--ip",
        "10.199.0.2/24",
        "--gw",
        "10.199.0.1",
        "--type",
        "tap",
        "--netns",
        &outside.name,
    ]);
    outside.add_addr("trup0", "10.199.0.1/24");
    outside.ip(&["link", "set", "trup0", "up"]);
    sw.ok(&["set-nat", "a", "masquerade"]);
    let (c1, c2, c3) = (Netns::new("tr1"), Netns::new("tr2"), Netns::new("tr3"));
    let attach = |br: &str, ns: &Netns| sw.json(&["attach", br, &ns.name]);
    let p1 = attach("a", &c1)["port"].as_str().unwrap_or_default().to_string();
    let p2 = attach("a", &c2)["port"].as_str().unwrap_or_default().to_string();
    let r3 = attach("b", &c3);
    let (p3, ip3) = (
        r3["port"].as_str().unwrap_or_default().to_string(),
        r3["ip"].as_str().unwrap_or_default().to_string(),
    );
    // Every neighbour known first: each traced frame goes straight through.
    assert!(c1.ping("10.197.0.3", 1) && c1.ping(&ip3, 1) && c1.ping("10.199.0.1", 1));

    let same = trace_one(&sw, &p1, || {
        c1.ping("10.197.0.3", 1);
    });
    assert!(same.contains("ICMP echo request"), "{same}");
    assert!(same.contains(&format!("l2       forward to port {p2}")), "{same}");

    let routed = trace_one(&sw, &p1, || {
        c1.ping(&ip3, 1);
    });
    assert!(routed.contains("l2       to the gateway (L3)"), "{routed}");
    assert!(routed.contains("route    ttl 64 -> 63"), "{routed}");
    assert!(routed.contains(&format!("verdict  forward to port {p3}")), "{routed}");

    let masq = trace_one(&sw, &p1, || {
        let _ = c1
            .cmd("sh")
            .args(["-c", "timeout 2 nc -z -w 1 10.199.0.1 9 || true"])
            .status();
    });
    assert!(masq.contains("TCP [S]"), "{masq}");
    assert!(
        masq.contains("nat      source 10.197.0.2:") && masq.contains("-> 10.199.0.2:"),
        "{masq}"
    );
    assert!(masq.contains("verdict  forward to port trup0"), "{masq}");

    // Bridge b has no way out: the gateway answers net unreachable.
    let nowhere = trace_one(&sw, &p3, || {
        c3.ping("10.250.0.9", 1);
    });
    assert!(
        nowhere.contains("gateway  answers:") && nowhere.contains("ICMP net unreachable"),
        "{nowhere}"
    );
    assert!(sw.port_counter(&p3, "drops.no-route") >= 1);
}

/// The cost of observability: TCP between two containers (iperf3, 3 s)
/// with nothing on, and with metrics scraped 10 times a second, a capture
/// running on a third port and a trace armed there, alternated, REPS runs
/// each (default 3). By hand:
/// `cargo test --release -p vswitch-tests --test observability -- --ignored --nocapture measure`.
#[test]
#[ignore]
fn measure_observability_cost() {
    require_root();
    let reps: usize = std::env::var("REPS").ok().and_then(|r| r.parse().ok()).unwrap_or(3);
    let port = free_port();
    let sw = Switch::start_with_args("obscost", "0,1", &["--metrics", &port.to_string()]);
    sw.ok(&["add-br", "br0", "--subnet", "10.201.0.0/24"]);
    let (c1, c2, c3) = (Netns::new("oc1"), Netns::new("oc2"), Netns::new("oc3"));
    sw.ok(&["attach", "br0", &c1.name]);
    let ip2 = sw.json(&["attach", "br0", &c2.name])["ip"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let p3 = sw.json(&["attach", "br0", &c3.name])["port"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let socket = sw.socket.display().to_string();
    let run = |on: bool| -> f64 {
        let _server = c2.iperf3_server(&ip2);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let mut helpers = Vec::new();
        if on {
            let flag = stop.clone();
            helpers.push(std::thread::spawn(move || {
                while !flag.load(std::sync::atomic::Ordering::Relaxed) {
                    let _ = scrape(port, "/metrics", "GET");
                    std::thread::sleep(std::time::Duration::from_millis(100));
                }
            }));
        }
        let capture = on.then(|| {
            Command::new(bin("vsctl"))
                .args(["--socket", &socket, "capture", &p3, "--seconds", "5", "-w", "/dev/null"])
                .stderr(Stdio::null())
                .spawn()
                .expect("capture")
        });
        let trace = on.then(|| {
            Command::new(bin("vsctl"))
                .args(["--socket", &socket, "trace", &p3, "--count", "1", "--seconds", "5"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("trace")
        });
        std::thread::sleep(std::time::Duration::from_millis(300));
        let (gbits, _) = c1.iperf3(&ip2, 3, &[]);
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        for h in helpers {
            let _ = h.join();
        }
        for child in [capture, trace].into_iter().flatten() {
            let _ = child.wait_with_output();
        }
        gbits
    };
    let (mut off, mut on) = (Vec::new(), Vec::new());
    for _ in 0..reps {
        off.push(run(false));
        on.push(run(true));
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (off_m, on_m) = (median(&mut off), median(&mut on));
    println!(
        "TCP between two containers, {reps} runs each (Gbit/s): off {off:?} median {off_m:.2}; \
         metrics + capture + trace on {on:?} median {on_m:.2}; ratio {:.2}",
        on_m / off_m
    );
}
