//! Soak and faults: for SOAK_SECS (20 in the suite; 600 by hand:
//! `SOAK_SECS=600 cargo test --release -p vswitch-tests --test soak -- --nocapture`),
//! containers are attached and detached (TAP and AF_XDP), open and close
//! connections out through masquerade and in through published ports, have
//! their namespace deleted under traffic; the uplink device is deleted
//! under traffic and plugged again; vswitchd is killed (-9) and restarted
//! twice. At the start and the end: vswitchd's RSS and open descriptors,
//! the devices, XDP programs and namespaces left, which must be flat; the
//! frames a steady ping lost across each restart; forwarding at the end.

use std::process::Command;
use std::time::{Duration, Instant};

use vswitch_tests::{require_root, run_ok, Background, Netns, Switch};

const OUT_IP: &str = "10.193.0.1";
const UP_IP: &str = "10.193.0.2";

struct Census {
    rss_kib: u64,
    fds: usize,
    devices: usize,
    xdp: usize,
    namespaces: usize,
}

fn census(sw: &Switch) -> Census {
    let pid = sw.pid().expect("vswitchd runs");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss_kib = (status.lines())
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
    let links = run_ok(Command::new("ip").args(["-d", "-o", "link", "show"]));
    let ours = |l: &&str| l.contains(": vsa") || l.contains(": vst-");
    let devices = links.lines().filter(ours).count();
    let xdp = links.lines().filter(|l| l.contains("xdp")).count();
    let namespaces = run_ok(Command::new("ip").args(["netns", "list"]))
        .lines()
        .filter(|l| l.starts_with("vst-soak"))
        .count();
    Census {
        rss_kib,
        fds,
        devices,
        xdp,
        namespaces,
    }
}

fn uplink(sw: &Switch, outside: &Netns) {
    sw.ok(&[
        "add-uplink",
        "br0",
        "up0",
        "--ip",
        "10.193.0.2/24",
        "--gw",
        OUT_IP,
        "--type",
        "tap",
        "--netns",
        &outside.name,
    ]);
    outside.add_addr("up0", &format!("{OUT_IP}/24"));
}

/// Pings OUT_IP from `ns` every 10 ms for `secs`; returns (sent, received).
fn ping_run(ns: &Netns, secs: u32) -> Background {
    Background(
        ns.cmd("ping")
            .args(["-i", "0.01", "-w", &secs.to_string(), "-q", OUT_IP])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("ping"),
    )
}

fn lost(summary: &str) -> (u64, u64) {
    let line = summary.lines().find(|l| l.contains("transmitted")).unwrap_or_default();
    let nums: Vec<u64> = line
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|n| n.parse().ok())
        .collect();
    (nums.first().copied().unwrap_or(0), nums.get(1).copied().unwrap_or(0))
}

/// An HTTP-ish server in `ns` answering every connection on `ip:port`.
const SERVER: &str = "import socket, sys\n\
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(64)\n\
print('ready', flush=True)\n\
while True:\n    c, _ = s.accept()\n    c.sendall(b'ok\\n'); c.close()\n";

/// Starts SERVER in `ns` and returns once it listens (a loaded machine
/// may take a while to start python).
fn listening(ns: &Netns, ip: &str, port: &str) -> Background {
    let mut child = ns
        .cmd("python3")
        .args(["-c", SERVER, ip, port])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("server");
    if let Some(out) = child.stdout.take() {
        let mut line = String::new();
        let _ = std::io::BufRead::read_line(&mut std::io::BufReader::new(out), &mut line);
    }
    Background(child)
}

fn fetch(ns: &Netns, ip: &str, port: u16) -> bool {
    ns.cmd("sh")
        .args(["-c", &format!("timeout 3 nc -w 2 {ip} {port} </dev/null")])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("ok"))
}

#[test]
fn soak_with_faults_leaves_nothing_behind() {
    require_root();
    let secs: u64 = std::env::var("SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let mut sw = Switch::start("soak", "0,1");
    let outside = Netns::new("soako");
    sw.ok(&["add-br", "br0", "--subnet", "10.192.0.0/24"]);
    uplink(&sw, &outside);
    sw.ok(&["set-nat", "br0", "masquerade"]);
    let _out_server = listening(&outside, OUT_IP, "9000");
    let steady = Netns::new("soaks");
    sw.ok(&["attach", "br0", &steady.name]);
    std::thread::sleep(Duration::from_millis(300));
    assert!(fetch(&steady, OUT_IP, 9000), "the way out works before the soak");
    let start = census(&sw);

    let deadline = Instant::now() + Duration::from_secs(secs);
    let crash_at = [secs / 3, 2 * secs / 3].map(Duration::from_secs);
    let began = Instant::now();
    let (mut iterations, mut fetched, mut failed, mut restarts) = (0u32, 0u32, 0u32, Vec::new());
    while Instant::now() < deadline {
        iterations += 1;
        let ns = Netns::new("soakc");
        let kind = if iterations % 2 == 0 { "afxdp" } else { "tap" };
        let ip = sw.json(&["attach", "br0", &ns.name, "--type", kind])["ip"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        // Out through masquerade, in through a published port.
        if fetch(&ns, OUT_IP, 9000) {
            fetched += 1;
        } else {
            eprintln!("iteration {iterations} ({kind}): out through masquerade failed");
            failed += 1;
        }
        let port = 8000 + (iterations % 1000) as u16;
        sw.ok(&[
            "publish",
            "br0",
            "--proto",
            "tcp",
            "--port",
            &port.to_string(),
            "--to",
            &format!("{ip}:80"),
        ]);
        let server = listening(&ns, &ip, "80");
        if fetch(&outside, UP_IP, port) {
            fetched += 1;
        } else {
            eprintln!("iteration {iterations} ({kind}): in through port {port} failed");
            if failed < 3 {
                diagnose(&sw);
            }
            failed += 1;
        }
        drop(server);
        if iterations % 3 == 0 {
            // The namespace goes under traffic; the runtime detaches after.
            let traffic = ping_run(&ns, 1);
            std::thread::sleep(Duration::from_millis(100));
            let name = ns.name.clone();
            drop(ns);
            drop(traffic);
            sw.ok(&["detach", "br0", &name]);
        } else {
            sw.ok(&["detach", "br0", &ns.name]);
        }
        if iterations % 5 == 0 {
            // The uplink device vanishes under traffic, then is plugged again.
            let traffic = ping_run(&steady, 1);
            let _ = outside.cmd("ip").args(["link", "del", "up0"]).status();
            drop(traffic);
            sw.ok(&["del-uplink", "br0"]);
            uplink(&sw, &outside);
        }
        if restarts.len() < 2 && began.elapsed() >= crash_at[restarts.len()] {
            restarts.push(crash(&mut sw, &steady));
        }
    }
    // Both crashes happen, even in a short run.
    while restarts.len() < 2 {
        restarts.push(crash(&mut sw, &steady));
    }
    std::thread::sleep(Duration::from_millis(500));
    let end = census(&sw);
    let works = fetch(&steady, OUT_IP, 9000);
    println!(
        "soak {secs} s: {iterations} containers, {fetched} fetches ok, {failed} failed; \
         pings lost across each kill -9 + restart (10 ms apart): {restarts:?}\n\
         start: RSS {} KiB, fds {}, devices {}, XDP {}, namespaces {}\n\
         end:   RSS {} KiB, fds {}, devices {}, XDP {}, namespaces {}; forwarding at the end: {works}",
        start.rss_kib,
        start.fds,
        start.devices,
        start.xdp,
        start.namespaces,
        end.rss_kib,
        end.fds,
        end.devices,
        end.xdp,
        end.namespaces
    );
    assert!(works, "forwarding works at the end");
    assert_eq!(
        (end.devices, end.xdp, end.namespaces),
        (start.devices, start.xdp, start.namespaces),
        "nothing left behind"
    );
    assert!(
        end.fds <= start.fds + 2,
        "descriptors flat: {} -> {}",
        start.fds,
        end.fds
    );
    assert!(
        failed * 10 <= fetched.max(1),
        "fetches mostly work: {fetched} ok, {failed} failed"
    );
}

/// What a failed fetch leaves to look at: drops by port, neighbours, connections.
fn diagnose(sw: &Switch) {
    let stats = sw.json(&["port-stats"]);
    for p in stats.as_array().into_iter().flatten() {
        let drops: Vec<String> = (p["drops"].as_object().into_iter().flatten())
            .filter(|(_, v)| v.as_u64().unwrap_or(0) > 0)
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        eprintln!(
            "  port {} rx {} tx {} drops {drops:?}",
            p["name"], p["rx_packets"], p["tx_packets"]
        );
    }
    eprintln!("  neigh: {}", sw.ok(&["neigh-show"]).replace('\n', "; "));
    eprintln!("  fdb: {}", sw.ok(&["fdb-show", "br0"]).replace('\n', "; "));
    eprintln!("  ct: {}", sw.ok(&["ct-show"]).replace('\n', "; "));
}

/// kill -9 and restart under a steady ping; returns the pings lost.
fn crash(sw: &mut Switch, steady: &Netns) -> u64 {
    let traffic = ping_run(steady, 3);
    std::thread::sleep(Duration::from_millis(500));
    sw.kill9();
    sw.launch();
    // The TAP uplink is the same device: the outside kept its address.
    let (sent, got) = lost(&traffic.finish(Duration::from_secs(10)));
    sent.saturating_sub(got)
}
