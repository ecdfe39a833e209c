//! Security and robustness: source guard on attached ports.

use std::process::Command;

use vswitch_tests::{require_root, run_ok, short_name, Netns, Switch};

fn attach(sw: &Switch, ns: &Netns, extra: &[&str]) -> (String, String) {
    let mut args = vec!["attach", "br0", ns.name.as_str()];
    args.extend_from_slice(extra);
    let reply = sw.json(&args);
    let field = |k: &str| reply[k].as_str().unwrap_or_default().to_string();
    (field("ip"), field("port"))
}

/// Sends one ARP reply from `ns`'s eth0 claiming `ip` is at eth0's MAC
/// (what a container poisoning its neighbours would send).
fn forge_arp_reply(ns: &Netns, ip: &str, to_ip: &str) {
    let script = format!(
        "import socket, struct\n\
         s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)\n\
         s.bind(('eth0', 0))\n\
         mac = bytes.fromhex(open('/sys/class/net/eth0/address').read().strip().replace(':', ''))\n\
         ip = socket.inet_aton('{ip}'); to = socket.inet_aton('{to_ip}')\n\
         arp = struct.pack('!HHBBH', 1, 0x0800, 6, 4, 2) + mac + ip + b'\\xff' * 6 + to\n\
         for _ in range(3): s.send(b'\\xff' * 6 + mac + b'\\x08\\x06' + arp)\n"
    );
    run_ok(ns.cmd("python3").args(["-c", &script]));
}

fn neigh_mac(sw: &Switch, ip: &str) -> Option<String> {
    let table = sw.json(&["neigh-show", "br0"]);
    (table.as_array().into_iter().flatten())
        .find(|e| e["ip"] == ip)
        .and_then(|e| e["mac"].as_str().map(str::to_string))
}

#[test]
fn an_attached_container_cannot_take_a_siblings_address_or_mac() {
    require_root();
    let sw = Switch::start("guard", "0");
    sw.ok(&["add-br", "br0", "--subnet", "10.185.0.0/24"]);
    let (c1, c2, c3) = (Netns::new("gd1"), Netns::new("gd2"), Netns::new("gd3"));
    let (_, p1) = attach(&sw, &c1, &[]);
    let (ip2, _) = attach(&sw, &c2, &["--type", "afxdp"]);
    let (_, p3) = attach(&sw, &c3, &["--allow-any-src"]);
    assert!(c1.ping("10.185.0.1", 1) && c2.ping("10.185.0.1", 1));
    let mac2 = c2.mac("eth0").expect("c2's MAC");
    assert_eq!(neigh_mac(&sw, &ip2).as_deref(), Some(mac2.as_str()));

    // c1 takes c2's address: nothing answers it, the drops are counted,
    // and c2 goes on as before.
    c1.ip(&["addr", "add", &format!("{ip2}/32"), "dev", "eth0"]);
    let stolen = c1
        .cmd("ping")
        .args(["-c", "2", "-W", "1", "-I", &ip2, "10.185.0.1"])
        .output()
        .expect("ping");
    assert!(!stolen.status.success(), "the gateway must not answer a stolen address");
    assert!(sw.port_counter(&p1, "drops.spoofed-src") >= 2);
    // ... nor may it answer ARP for it.
    forge_arp_reply(&c1, &ip2, "10.185.0.1");
    assert!(sw.port_counter(&p1, "drops.spoofed-arp") >= 3);
    assert_eq!(
        neigh_mac(&sw, &ip2).as_deref(),
        Some(mac2.as_str()),
        "the gateway's ARP table still has c2's MAC"
    );
    assert!(c2.ping("10.185.0.1", 3), "c2 is unaffected");
    assert!(c1.ping("10.185.0.1", 1), "c1 still speaks as itself");

    // Another MAC: cut off.
    c1.ip(&["link", "set", "eth0", "address", "02:99:99:99:99:01"]);
    let before = sw.port_counter(&p1, "drops.spoofed-src");
    assert!(!c1.ping("10.185.0.1", 1));
    assert!(sw.port_counter(&p1, "drops.spoofed-src") > before);

    // --allow-any-src: a router behind the port may use other addresses.
    c3.ip(&["addr", "add", "10.185.0.200/24", "dev", "eth0"]);
    let other = c3
        .cmd("ping")
        .args(["-c", "1", "-W", "1", "-I", "10.185.0.200", "10.185.0.1"])
        .output()
        .expect("ping");
    assert!(other.status.success(), "an unguarded port may send from any address");

    // `show` says which ports are guarded.
    let show = sw.json(&["show"]);
    let ports = show[0]["ports"].as_array().cloned().unwrap_or_default();
    let guard_of = |name: &str| ports.iter().find(|p| p["name"] == name).map(|p| p["guard"].clone());
    assert!(guard_of(&p1).is_some_and(|g| g.is_array()), "{show}");
    assert_eq!(guard_of(&p3), Some(serde_json::Value::Null));
    assert!(sw.ok(&["show"]).contains("guarded: sends only from"));

    docker_model_for_comparison();
}

/// The same theft on the Docker model (kernel bridge, veth): it works
/// there. Printed, not asserted.
fn docker_model_for_comparison() {
    let (hub, d1, d2) = (Netns::new("gdb"), Netns::new("gdb1"), Netns::new("gdb2"));
    hub.ip(&["link", "add", "br0", "type", "bridge"]);
    hub.add_addr("br0", "10.186.0.1/24");
    hub.ip(&["link", "set", "br0", "up"]);
    for (ns, ip) in [(&d1, "10.186.0.2/24"), (&d2, "10.186.0.3/24")] {
        let end = short_name("gdv");
        hub.ip(&[
            "link", "add", &end, "type", "veth", "peer", "name", "eth0", "netns", &ns.name,
        ]);
        hub.ip(&["link", "set", &end, "master", "br0", "up"]);
        ns.add_addr("eth0", ip);
        ns.ip(&["link", "set", "eth0", "up"]);
    }
    d1.ip(&["addr", "add", "10.186.0.3/32", "dev", "eth0"]);
    let spoofed = Command::new("ip")
        .args([
            "netns",
            "exec",
            &d1.name,
            "ping",
            "-c",
            "1",
            "-W",
            "1",
            "-I",
            "10.186.0.3",
            "10.186.0.1",
        ])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    println!("Docker model (kernel bridge): a container pinging from its sibling's address is answered: {spoofed}");
}

#[test]
fn a_damaged_state_stops_the_start_with_the_way_back_and_a_read_only_one_refuses_changes() {
    require_root();
    let mut sw = Switch::start("damaged", "0");
    sw.ok(&["add-br", "br0", "--subnet", "10.187.0.0/24"]);
    sw.ok(&["add-br", "br1"]);

    // A state directory that cannot be written: the change is refused and
    // nothing moved.
    let dir = sw.state_dir.display().to_string();
    run_ok(Command::new("mount").args(["--bind", &dir, &dir]));
    let remounted = Command::new("mount").args(["-o", "remount,bind,ro", &dir]).status();
    let refused = sw.vsctl(&["add-br", "br2"]);
    let _ = Command::new("umount").arg(&dir).status();
    assert!(remounted.is_ok_and(|s| s.success()), "read-only bind mount");
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("cannot save the configuration; nothing was changed"),
        "{stderr}"
    );
    assert_eq!(
        sw.ok(&["list-br"]).split_whitespace().collect::<Vec<_>>(),
        ["br0", "br1"]
    );

    // The last change torn (vswitchd died writing it, before answering):
    // the start leaves it out and says so.
    sw.terminate();
    let journal = sw.state_dir.join("state.journal");
    let text = std::fs::read_to_string(&journal).expect("journal");
    assert_eq!(text.lines().count(), 2, "{text}");
    std::fs::write(&journal, &text[..text.len() - 10]).expect("tear");
    sw.launch();
    assert_eq!(sw.ok(&["list-br"]).trim(), "br0", "the state before the torn change");
    assert!(sw.log().contains("was not written whole"), "{}", sw.log());
    sw.ok(&["add-br", "br1"]);

    // A damaged line: the start stops with a message naming the file and
    // the way out.
    sw.terminate();
    let text = std::fs::read_to_string(&journal).expect("journal");
    std::fs::write(&journal, text.replacen("br0", "br0\"", 1)).expect("damage");
    let out = Command::new(vswitch_tests::bin("vswitchd"))
        .arg("--socket")
        .arg(sw.dir.join("other.sock"))
        .arg("--state-dir")
        .arg(&sw.state_dir)
        .args(["--cores", "0"])
        .output()
        .expect("vswitchd");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("state journal {} is damaged at line 1", journal.display()))
            && stderr.contains("move it away to start from the configuration in"),
        "{stderr}"
    );
    std::fs::rename(&journal, sw.dir.join("journal.damaged")).expect("the way out");
    sw.launch();
    assert_eq!(
        sw.ok(&["list-br"]).trim(),
        "",
        "the state file's configuration: none yet"
    );
}

/// Answers every UDP datagram on 10.189.0.1:9000 (outside) until killed.
const UDP_ECHO: &str = "import socket\n\
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
s.bind(('10.189.0.1', 9000))\n\
while True:\n    d, a = s.recvfrom(100)\n    s.sendto(d, a)\n";

/// Opens N UDP flows (one socket each) to the echo server; prints how
/// many were answered.
const UDP_FLOWS: &str = "import socket, sys\n\
n = int(sys.argv[1]); ok = 0\n\
for i in range(n):\n    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(1)\n    s.sendto(b'x', ('10.189.0.1', 9000))\n    try:\n        s.recvfrom(10); ok += 1\n    except socket.timeout:\n        pass\n\
print(ok)\n";

/// Sends N ICMP echo requests to the gateway as fast as it can.
const PING_FLOOD: &str = "import socket, struct, sys\n\
def csum(b):\n    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))\n    s = (s >> 16) + (s & 0xffff); s += s >> 16\n    return ~s & 0xffff\n\
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)\n\
for i in range(int(sys.argv[1])):\n    h = struct.pack('!BBHHH', 8, 0, 0, 7, i & 0xffff) + b'flood!!!'\n    h = h[:2] + struct.pack('!H', csum(h)) + h[4:]\n    s.sendto(h, ('10.188.0.1', 0))\n";

#[test]
fn one_container_cannot_starve_its_siblings() {
    require_root();
    let sw = Switch::start_with_args("fair", "0", &["--ct-max", "64", "--ct-max-per-port", "8"]);
    let outside = Netns::new("fairo");
    sw.ok(&["add-br", "br0", "--subnet", "10.188.0.0/24"]);
    sw.ok(&[
        "add-uplink",
        "br0",
        "up0",
        "--ip",
        "10.189.0.2/24",
        "--gw",
        "10.189.0.1",
        "--type",
        "tap",
        "--netns",
        &outside.name,
    ]);
    outside.add_addr("up0", "10.189.0.1/24");
    outside.ip(&["link", "set", "up0", "up"]);
    sw.ok(&["set-nat", "br0", "masquerade"]);
    let (c1, c2) = (Netns::new("fair1"), Netns::new("fair2"));
    let (_, p1) = attach(&sw, &c1, &[]);
    let (ip2, _) = attach(&sw, &c2, &[]);
    let _echo = vswitch_tests::Background(outside.cmd("python3").args(["-c", UDP_ECHO]).spawn().expect("udp echo"));
    std::thread::sleep(std::time::Duration::from_millis(300));
    let flows = |ns: &Netns, n: &str| run_ok(ns.cmd("python3").args(["-c", UDP_FLOWS, n])).trim().to_string();

    // c1 opens 12 flows: 8 are its share, the rest are refused and counted.
    assert_eq!(flows(&c1, "12"), "8");
    assert!(sw.port_counter(&p1, "drops.ct-host-limit") >= 4);
    let stats = sw.json(&["ct-stats"]);
    assert_eq!(stats["max_per_port"], 8, "{stats}");
    assert!(stats["host_limit"].as_u64().unwrap_or(0) >= 4, "{stats}");
    // c2 still connects out, and in through a published port.
    assert_eq!(flows(&c2, "3"), "3");
    sw.ok(&[
        "publish",
        "br0",
        "--proto",
        "tcp",
        "--port",
        "8080",
        "--to",
        &format!("{ip2}:80"),
    ]);
    let server = vswitch_tests::Background(
        c2.cmd("sh")
            .args(["-c", "echo hello | timeout 5 nc -l -p 80"])
            .spawn()
            .expect("server"),
    );
    std::thread::sleep(std::time::Duration::from_millis(300));
    let got = outside
        .cmd("sh")
        .args(["-c", "timeout 3 nc 10.189.0.2 8080 </dev/null"])
        .output()
        .expect("nc");
    let got = String::from_utf8_lossy(&got.stdout);
    assert_eq!(got.trim(), "hello", "a sibling is reachable through its published port");
    drop(server);

    // A flood at the gateway from c1 is cut at its budget; c2's pings are
    // all answered meanwhile.
    let flood = vswitch_tests::Background(
        c1.cmd("python3")
            .args(["-c", PING_FLOOD, "200000"])
            .spawn()
            .expect("flood"),
    );
    let pings = c2
        .cmd("ping")
        .args(["-c", "20", "-i", "0.05", "-W", "2", "-q", "10.188.0.1"])
        .output()
        .expect("ping");
    let _ = flood.finish(std::time::Duration::from_secs(30));
    let summary = String::from_utf8_lossy(&pings.stdout);
    assert!(summary.contains("20 received"), "{summary}");
    assert!(sw.port_counter(&p1, "drops.slow-path-limit") > 0, "the flood was cut");
}

/// Echoes what one client sends, until it closes.
const ECHO_SERVER: &str = "import socket, sys\n\
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n\
s.bind((sys.argv[1], int(sys.argv[2]))); s.listen(1)\n\
c, _ = s.accept()\n\
while True:\n    d = c.recv(100)\n    if not d: break\n    c.sendall(d)\n";

/// One TCP connection, three exchanges: the first at once, each later one
/// when the file TAG.STEP appears; TAG.STEP.done marks an answered one.
const STEP_CLIENT: &str = "import socket, sys, os, time\n\
host, port, tag = sys.argv[1], int(sys.argv[2]), sys.argv[3]\n\
s = socket.create_connection((host, port), timeout=30)\n\
for step in ['a', 'b', 'c']:\n    while step != 'a' and not os.path.exists(tag + '.' + step): time.sleep(0.05)\n    s.sendall(step.encode())\n    got = s.recv(10)\n    if got != step.encode(): sys.exit('step ' + step + ' got ' + repr(got))\n    open(tag + '.' + step + '.done', 'w').close()\n";

fn wait_file(path: &std::path::Path) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        if path.exists() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    false
}

#[test]
fn connections_through_nat_live_across_a_restart_and_a_crash() {
    require_root();
    let mut sw = Switch::start("ctkeep", "0");
    let outside = Netns::new("ctko");
    sw.ok(&["add-br", "br0", "--subnet", "10.190.0.0/24"]);
    let uplink = [
        "add-uplink",
        "br0",
        "up0",
        "--ip",
        "10.191.0.2/24",
        "--gw",
        "10.191.0.1",
        "--type",
        "tap",
        "--netns",
    ];
    let mut args = uplink.to_vec();
    args.push(&outside.name);
    sw.ok(&args);
    outside.add_addr("up0", "10.191.0.1/24");
    sw.ok(&["set-nat", "br0", "masquerade"]);
    let (c1, c2) = (Netns::new("ctk1"), Netns::new("ctk2"));
    attach(&sw, &c1, &[]);
    let (ip2, _) = attach(&sw, &c2, &[]);
    sw.ok(&[
        "publish",
        "br0",
        "--proto",
        "tcp",
        "--port",
        "8080",
        "--to",
        &format!("{ip2}:80"),
    ]);

    let spawn = |ns: &Netns, code: &str, args: &[&str]| {
        vswitch_tests::Background(
            ns.cmd("python3")
                .arg("-c")
                .arg(code)
                .args(args)
                .spawn()
                .expect("python3"),
        )
    };
    let _out_server = spawn(&outside, ECHO_SERVER, &["10.191.0.1", "9000"]);
    let _in_server = spawn(&c2, ECHO_SERVER, &[&ip2, "80"]);
    std::thread::sleep(std::time::Duration::from_millis(300));
    let masq = sw.dir.join("masq");
    let publ = sw.dir.join("publ");
    let step = |tag: &std::path::Path, s: &str| {
        let mut p = tag.as_os_str().to_owned();
        p.push(format!(".{s}"));
        std::path::PathBuf::from(p)
    };
    let mut clients = vec![
        spawn(&c1, STEP_CLIENT, &["10.191.0.1", "9000", &masq.display().to_string()]),
        spawn(
            &outside,
            STEP_CLIENT,
            &["10.191.0.2", "8080", &publ.display().to_string()],
        ),
    ];
    for tag in [&masq, &publ] {
        assert!(
            wait_file(&step(tag, "a.done")),
            "{} exchanged before any restart",
            tag.display()
        );
    }

    // `vsctl ct-save` (before an upgrade) writes the table now.
    let saved = sw.ok(&["ct-save"]);
    assert!(saved.contains("connections saved"), "{saved}");
    assert!(sw.state_dir.join("conntrack.json").exists());
    // A clean restart (SIGTERM): the table is saved and put back.
    sw.terminate();
    assert!(sw.state_dir.join("conntrack.json").exists(), "saved on SIGTERM");
    sw.launch();
    let back = sw.json(&["ct-show"]);
    assert!(
        back.as_array().is_some_and(|c| c.len() >= 2),
        "restored before anything moved: {back}"
    );
    // The TAP uplink is the same device: the outside kept its address.
    for tag in [&masq, &publ] {
        std::fs::write(step(tag, "b"), "").expect("go");
        assert!(
            wait_file(&step(tag, "b.done")),
            "{} lives across a clean restart",
            tag.display()
        );
    }
    assert!(!sw.state_dir.join("conntrack.json").exists(), "read once, then removed");

    // A crash: nothing saved; the flows are picked up mid-stream.
    sw.kill9();
    sw.launch();
    for tag in [&masq, &publ] {
        std::fs::write(step(tag, "c"), "").expect("go");
        assert!(
            wait_file(&step(tag, "c.done")),
            "{} is picked up after a crash",
            tag.display()
        );
    }
    let stats = sw.json(&["ct-stats"]);
    assert!(stats["picked_up"].as_u64().unwrap_or(0) >= 2, "{stats}");
    for c in clients.drain(..) {
        c.finish(std::time::Duration::from_secs(5));
    }
}
