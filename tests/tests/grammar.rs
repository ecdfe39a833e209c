//! vsctl's one grammar, as a user types it: every command in its new
//! spelling against a running vswitchd, the earlier spellings still
//! accepted, the habits of ovs-vsctl scripts (`--may-exist`, `--if-exists`,
//! `set`/`get`, a socket from the environment, `--timeout`) and errors a
//! script can parse (`--json`).

use std::os::unix::net::UnixListener;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use vswitch_tests::{bin, require_root, short_name, HostLink, Netns, Switch};

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `vsctl trace` or `capture` running while `act` sends traffic.
fn while_running(sw: &Switch, args: &[&str], act: impl FnOnce()) -> Output {
    let child = Command::new(bin("vsctl"))
        .arg("--socket")
        .arg(&sw.socket)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("vsctl");
    std::thread::sleep(Duration::from_millis(300));
    act();
    child.wait_with_output().expect("vsctl ends")
}

#[test]
fn every_command_in_its_new_spelling() {
    require_root();
    let sw = Switch::start("grammar", "0");
    let (c1, c2, outside) = (Netns::new("gr1"), Netns::new("gr2"), Netns::new("grout"));
    let host_end = short_name("gru");
    let _link = HostLink::veth_into(&host_end, &outside);
    outside.add_addr("eth0", "10.181.0.1/24");

    sw.ok(&["add-br", "g0", "--subnet", "10.180.0.0/24", "--gateway", "10.180.0.1"]);
    sw.ok(&["add-br", "g1", "--subnet", "10.182.0.0/24"]);
    assert_eq!(sw.ok(&["list-br"]).split_whitespace().collect::<Vec<_>>(), ["g0", "g1"]);
    sw.ok(&["set", "bridge", "g0", "aging=600", "max-macs=4096"]);
    assert_eq!(
        sw.ok(&["get", "bridge", "g0", "aging", "max-macs", "gateway"]),
        "600\n4096\n10.180.0.1\n"
    );

    let a1 = sw.json(&["attach", "g0", "--netns", &c1.name, "--ip", "10.180.0.10"]);
    let port1 = a1["port"].as_str().expect("the port").to_string();
    sw.ok(&["attach", "g0", &c2.name, "--ip", "10.180.0.11"]);
    assert!(c1.ping("10.180.0.11", 2), "attached namespaces reach each other");
    assert_eq!(sw.json(&["list-attachments"]).as_array().map(Vec::len), Some(2));
    assert!(!sw.json(&["list-fdb", "g0"]).as_array().expect("entries").is_empty());
    // A read's bridge is a filter: without it, every bridge's.
    let every = sw.json(&["list-fdb"]);
    assert!(
        every.as_array().expect("entries").iter().all(|e| e["bridge"] == "g0"),
        "{every}"
    );
    assert_eq!(
        every,
        sw.json(&["list-fdb", "g0"])
            .as_array()
            .map(|a| serde_json::json!(a))
            .expect("same")
    );
    assert_eq!(
        sw.json(&["list-ports"]).as_array().map(Vec::len),
        Some(2),
        "both attached ports"
    );
    sw.expect_error(&["list-fdb", "nope"], "bridge 'nope' does not exist");
    assert!(sw.json(&["show-port-stats", &port1])[0]["rx_packets"].as_u64() > Some(0));
    sw.ok(&["show-port-stats", "--zeros"]);
    assert!(!sw.json(&["show-pmd-stats"]).as_array().expect("threads").is_empty());
    assert!(sw.ok(&["list-neigh", "g0"]).contains("10.180.0.10"));
    sw.ok(&["link-br", "g0", "g1"]);
    sw.ok(&["unlink-br", "g0", "g1"]);

    // The way out, and in.
    sw.ok(&[
        "add-uplink",
        "g0",
        "--iface",
        &host_end,
        "--ip",
        "10.181.0.2/24",
        "--gateway",
        "10.181.0.1",
    ]);
    sw.ok(&["set-nat", "g0", "masquerade"]);
    assert!(c1.ping("10.181.0.1", 2), "masqueraded out of the uplink");
    assert!(!sw
        .json(&["list-conns", "g0"])
        .as_array()
        .expect("connections")
        .is_empty());
    assert!(sw.json(&["show-ct-stats"])["entries"].as_u64() > Some(0));
    sw.ok(&["del-conns", "g0", "--addr", "10.180.0.10"]);
    assert_eq!(sw.json(&["list-conns", "g0"]).as_array().map(Vec::len), Some(0));
    sw.ok(&["save-conns"]);
    assert!(sw.json(&["show-control-stats"])["changes"].as_u64() > Some(5));
    sw.ok(&[
        "publish",
        "g0",
        "--proto",
        "tcp",
        "--port",
        "8080",
        "--to",
        "10.180.0.10:80",
    ]);
    assert_eq!(sw.json(&["list-published", "g0"])[0]["port"], 8080);
    let every = sw.json(&["list-published"]);
    assert_eq!(
        (every[0]["bridge"].as_str(), every[0]["port"].as_u64()),
        (Some("g0"), Some(8080))
    );
    assert!(sw.ok(&["list-published"]).starts_with("g0 tcp 8080 -> 10.180.0.10:80"));
    sw.expect_error(&["add-vxlan", "g1", "--vni", "0"], "vni must be between 1 and 16777215");
    sw.ok(&["unpublish", "g0", "--proto", "tcp", "--port", "8080"]);

    // Ports and tunnels.
    sw.ok(&["add-port", "g1", &short_name("grp")]);
    assert_eq!(sw.json(&["list-ports", "g1"]).as_array().map(Vec::len), Some(1));
    let port = sw.json(&["list-ports", "g1"])[0].as_str().expect("a name").to_string();
    sw.ok(&["del-port", "g1", &port]);
    sw.ok(&[
        "add-vxlan",
        "g1",
        "--vni",
        "77",
        "--udp-port",
        "4790",
        "--underlay",
        "g0",
        "--remote",
        "10.181.0.9",
    ]);
    sw.ok(&["add-vtep", "g1", "10.181.0.8"]);
    sw.ok(&["add-fdb", "g1", "02:00:00:00:77:01", "--vtep", "10.181.0.9"]);
    let vteps = sw.json(&["list-vteps", "g1"]);
    assert_eq!(vteps[0]["port"], 4790);
    assert_eq!(vteps[0]["remotes"].as_array().map(Vec::len), Some(2));
    sw.ok(&["del-fdb", "g1", "02:00:00:00:77:01"]);
    sw.ok(&["del-vtep", "g1", "10.181.0.8"]);
    sw.ok(&["del-vxlan", "g1"]);

    // Watching the datapath.
    let traced = while_running(&sw, &["trace", &port1, "--count", "1", "--seconds", "10"], || {
        c1.ping("10.180.0.11", 1);
    });
    assert!(text(&traced).0.contains("verdict"), "trace: {:?}", text(&traced));
    let pcap = sw.dir.join("g.pcap");
    let pcap_arg = pcap.to_string_lossy().into_owned();
    let captured = while_running(&sw, &["capture", &port1, "--seconds", "2", "-w", &pcap_arg], || {
        c1.ping("10.180.0.11", 2);
    });
    assert!(captured.status.success(), "capture: {:?}", text(&captured));
    assert!(
        std::fs::metadata(&pcap).map_or(0, |m| m.len()) > 24,
        "frames in the pcap file"
    );

    // The cluster's commands reach vswitchd, which is in none.
    assert!(
        sw.ok(&["show-cluster"]).contains("not"),
        "show-cluster says there is no cluster"
    );
    for cmd in [
        vec!["add-net", "n1", "--subnet", "10.190.0.0/16", "--vni", "9"],
        vec!["list-nets"],
        vec!["del-net", "n1"],
        vec!["leave-cluster"],
        vec!["join-cluster"],
    ] {
        sw.expect_error(&cmd, "cluster");
    }

    sw.ok(&["detach", "g0", &c2.name]);
    sw.ok(&["detach", "g0", "--netns", &c1.name]);
    sw.ok(&["del-uplink", "g0"]);
    sw.ok(&["del-br", "g1"]);
    sw.ok(&["del-br", "g0"]);
    assert_eq!(sw.ok(&["list-br"]), "");
}

/// Spellings from before the one grammar, as scripts and runtimes wrote
/// them: accepted as aliases, the same requests as the new names.
#[test]
fn the_earlier_spellings_still_work() {
    require_root();
    let sw = Switch::start("oldnames", "0");
    let outside = Netns::new("goout");
    let host_end = short_name("gou");
    let _link = HostLink::veth_into(&host_end, &outside);
    sw.ok(&["add-br", "o0", "--subnet", "10.183.0.0/24"]);
    sw.ok(&["add-br", "o1"]);
    sw.ok(&[
        "add-uplink",
        "o0",
        &host_end,
        "--ip",
        "10.184.0.2/24",
        "--gw",
        "10.184.0.1",
    ]);
    sw.ok(&["add-vxlan", "o1", "--vni", "5", "--port", "4791", "--underlay", "o0"]);
    sw.ok(&["fdb-add", "o1", "02:00:00:00:55:01", "--vtep", "10.184.0.7"]);
    assert_eq!(sw.json(&["vtep-show", "o1"])[0]["port"], 4791);
    sw.ok(&["fdb-del", "o1", "02:00:00:00:55:01"]);
    for read in [
        vec!["fdb-show", "o1"],
        vec!["port-stats", "--all"],
        vec!["pmd-stats"],
        vec!["neigh-show"],
        vec!["ct-show", "--bridge", "o0"],
        vec!["ct-flush", "--bridge", "o0"],
        vec!["ct-stats"],
        vec!["ct-save"],
        vec!["cluster-status"],
        vec!["list-attach"],
    ] {
        sw.ok(&read);
    }
    sw.expect_error(&["net-list"], "cluster");
}

#[test]
fn scripts_can_run_twice_set_and_get_and_parse_errors() {
    require_root();
    let sw = Switch::start("habits", "0");
    let (c1, c2, c3) = (Netns::new("gh1"), Netns::new("gh2"), Netns::new("gh3"));
    sw.ok(&["add-br", "h0", "--subnet", "10.185.0.0/24"]);
    let changes = sw.journal_lines();

    // --may-exist / --if-exists: nothing to do is no error, and saves nothing.
    sw.expect_error(&["add-br", "h0"], "already exists");
    sw.ok(&["--may-exist", "add-br", "h0"]);
    sw.ok(&["add-br", "h0", "--may-exist", "--subnet", "10.99.0.0/24"]);
    sw.expect_error(&["del-br", "nope"], "does not exist");
    sw.ok(&["--if-exists", "del-br", "nope"]);
    sw.ok(&["--if-exists", "detach", "h0", "nobody"]);
    sw.ok(&["--if-exists", "unpublish", "h0", "--proto", "udp", "--port", "53"]);
    assert_eq!(sw.journal_lines(), changes, "nothing saved");
    sw.expect_error(&["--may-exist", "del-br", "h0"], "--may-exist means nothing to del-br");
    sw.expect_error(&["--if-exists", "list-br"], "--if-exists means nothing to list-br");
    // A port of that name elsewhere is still refused.
    sw.ok(&["add-br", "h1"]);
    let port = short_name("ghp");
    sw.ok(&["add-port", "h1", &port]);
    sw.ok(&["--may-exist", "add-port", "h1", &port]);
    sw.expect_error(&["--may-exist", "add-port", "h0", &port], &port);
    // In a transaction an earlier command counts.
    sw.ok(&[
        "add-br",
        "h2",
        "--",
        "--may-exist",
        "add-br",
        "h2",
        "--",
        "--if-exists",
        "del-br",
        "h9",
    ]);
    assert!(sw.ok(&["list-br"]).contains("h2"));

    // set / get, live: a cap lowered before traffic holds for the next MACs.
    sw.ok(&["set", "bridge", "h0", "max-macs=1", "aging=900"]);
    assert_eq!(sw.ok(&["get", "bridge", "h0", "max-macs", "aging"]), "1\n900\n");
    let got = sw.json(&["get", "bridge", "h0"]);
    assert_eq!(
        (got["max-macs"].as_u64(), got["subnet"].as_str()),
        (Some(1), Some("10.185.0.0/24"))
    );
    sw.ok(&["attach", "h0", &c1.name, "--ip", "10.185.0.10"]);
    sw.ok(&["attach", "h0", &c2.name, "--ip", "10.185.0.11"]);
    sw.ok(&["attach", "h0", &c3.name, "--ip", "10.185.0.12"]);
    c1.ping("10.185.0.11", 1);
    c3.ping("10.185.0.11", 1);
    let h0 = sw
        .json(&["show"])
        .as_array()
        .expect("bridges")
        .iter()
        .find(|b| b["name"] == "h0")
        .cloned();
    let h0 = h0.expect("h0 shown");
    assert_eq!(h0["learned_macs"], 1, "the new cap holds");
    assert!(h0["learn_limit_hits"].as_u64() > Some(0), "further MACs were refused");
    sw.ok(&["set", "br", "h0", "max-macs=100"]);
    assert!(
        c3.ping("10.185.0.11", 2),
        "with room again, every namespace is learned and reached"
    );
    sw.expect_error(&["set", "bridge", "h0", "aging=0"], "aging must be between 1 and");
    sw.expect_error(&["set", "bridge", "nope", "aging=5"], "bridge 'nope' does not exist");
    sw.expect_error(&["get", "bridge", "h0", "colour"], "no key 'colour'");
    let bad = sw.vsctl(&["set", "bridge", "h0", "colour=red"]);
    assert_eq!(bad.status.code(), Some(2), "a key set does not know is a usage error");
    assert_eq!(
        sw.ok(&["get", "bridge", "h0", "aging"]),
        "900\n",
        "the refusals changed nothing"
    );

    // --json: errors as one JSON object on stderr, same exit codes.
    for (args, code, needle) in [
        (vec!["--json", "add-br", "h0"], 1, "already exists"),
        (vec!["--json", "add-br"], 2, "<NAME>"),
        (vec!["--json", "no-such-command"], 2, "no-such-command"),
    ] {
        let out = sw.vsctl(&args);
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
        let e: serde_json::Value = serde_json::from_str(stderr.trim()).expect("stderr is JSON");
        assert_eq!(e["exit"], code);
        assert!(e["error"].as_str().is_some_and(|m| m.contains(needle)), "{args:?}: {e}");
    }

    // The socket from the environment.
    let out = Command::new(bin("vsctl"))
        .arg("list-br")
        .env("VSCTL_SOCKET", &sw.socket)
        .output()
        .expect("vsctl");
    assert!(text(&out).0.contains("h0"), "VSCTL_SOCKET: {:?}", text(&out));
}

/// A vswitchd that accepts and never answers: vsctl gives up after
/// `--timeout` seconds with a message that says so.
#[test]
fn an_answer_that_never_comes_times_out() {
    let dir = std::env::temp_dir().join(vswitch_tests::unique("timeout"));
    std::fs::create_dir_all(&dir).expect("dir");
    let socket = dir.join("mute.sock");
    let listener = UnixListener::bind(&socket).expect("listen");
    let _held = std::thread::spawn(move || {
        let conn = listener.accept();
        std::thread::sleep(Duration::from_secs(10));
        drop(conn);
    });
    let started = Instant::now();
    let out = Command::new(bin("vsctl"))
        .arg("--socket")
        .arg(&socket)
        .args(["--timeout", "1", "list-br"])
        .output()
        .expect("vsctl");
    let took = started.elapsed();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("did not answer within 1 s"), "{stderr}");
    assert!(took < Duration::from_secs(5), "gave up in {took:?}");
    let _ = std::fs::remove_dir_all(dir);
}
