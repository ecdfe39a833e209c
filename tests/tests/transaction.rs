//! A change the switch cannot save changes nothing: not the running switch,
//! not what is saved, not the devices it would have created. A change the
//! switch answered is saved, even if it is killed the next moment.

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use vswitch_tests::{require_root, short_name, Netns, Switch};

const SAVE_FAILED: &str = "cannot save the configuration; nothing was changed";

fn host_link_exists(name: &str) -> bool {
    Command::new("ip")
        .args(["link", "show", "dev", name])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn a_change_that_cannot_be_saved_changes_nothing() {
    require_root();
    let sw = Switch::start("txn", "0");
    let c1 = Netns::new("txn1");
    let c2 = Netns::new("txn2");
    sw.ok(&["add-br", "br0", "--subnet", "10.151.0.0/24"]);
    sw.ok(&["add-br", "br1", "--subnet", "10.152.0.0/24"]);
    sw.ok(&["attach", "br0", &c1.name]);
    assert!(c1.ping("10.151.0.1", 1), "the gateway answers before");
    let show = sw.json(&["show"]);
    let saved = sw.saved();
    let state_file = || std::fs::read(sw.state_dir.join("state.json")).ok();
    let state_before = state_file();

    // The state directory is "full": neither the journal nor the state
    // file can be written (directories in their place stop root too, where
    // a read-only mode would not).
    let blocker = sw.block_saves();
    let internal = short_name("vt");
    let veth = short_name("vx");
    let changes: Vec<Vec<&str>> = vec![
        vec!["attach", "br0", &c2.name],
        vec![
            "add-port", "br0", "p2", "--type", "tap", "--netns", &c2.name, "--ifname", "eth0",
        ],
        vec![
            "add-port", "br0", &veth, "--type", "afxdp", "--netns", &c2.name, "--ifname", "eth1",
        ],
        vec!["add-port", "br0", &internal, "--type", "internal"],
        vec!["detach", "br0", &c1.name],
        vec!["link-br", "br0", "br1"],
        vec!["set-nat", "br0", "masquerade"],
        vec![
            "publish",
            "br0",
            "--proto",
            "tcp",
            "--port",
            "8080",
            "--to",
            "10.151.0.2:80",
        ],
        vec!["del-br", "br1"],
    ];
    for change in &changes {
        sw.expect_error(change, SAVE_FAILED);
        assert_eq!(sw.json(&["show"]), show, "{change:?} changed the running switch");
        assert!(state_file() == state_before, "{change:?} wrote the state file");
    }
    // The devices made for the failed changes are gone again.
    for dev in ["eth0", "eth1"] {
        assert!(c2.mac(dev).is_none(), "{dev} was left in {}", c2.name);
    }
    assert!(!host_link_exists(&internal), "internal port {internal} was left behind");
    assert!(!host_link_exists(&veth), "the veth host end {veth} was left behind");
    assert!(c1.ping("10.151.0.1", 1), "the attached namespace still forwards");

    // Once the state can be saved again, the same changes go through.
    drop(blocker);
    assert_eq!(sw.saved(), saved, "the journal did not move either");
    let attached = sw.ok(&["attach", "br0", &c2.name]);
    assert!(attached.contains("10.151.0.3"), "{attached}");
    assert!(c2.ping("10.151.0.2", 1), "the new namespace reaches the old one");
    let state = sw.saved();
    assert!(state.contains(&c2.name), "the lease was saved: {state}");
}

#[test]
fn many_commands_apply_as_one_transaction_or_not_at_all() {
    require_root();
    let sw = Switch::start("txm", "0");
    let (c1, c2) = (Netns::new("txm1"), Netns::new("txm2"));
    sw.ok(&["add-br", "base"]);
    let before = sw.journal_lines();

    // One transaction: a network, two containers on it, a published port.
    let out = sw.ok(&[
        "add-br",
        "tx0",
        "--subnet",
        "10.153.0.0/24",
        "--",
        "attach",
        "tx0",
        &c1.name,
        "--ip",
        "10.153.0.5",
        "--",
        "attach",
        "tx0",
        &c2.name,
        "--",
        "publish",
        "tx0",
        "--proto",
        "tcp",
        "--port",
        "8080",
        "--to",
        "10.153.0.5:80",
    ]);
    assert!(out.contains("10.153.0.5/24"), "each command's reply, in order: {out}");
    assert!(c1.ping("10.153.0.2", 2), "c1 reaches c2: both attached");
    let published = sw.json(&["list-published", "tx0"]);
    assert_eq!(published.as_array().map(Vec::len), Some(1), "{published}");
    // Saved once: one more change in the journal.
    assert_eq!(sw.journal_lines(), before + 1, "one save for the whole transaction");

    // A transaction whose third command fails changes nothing: no bridge,
    // no device in the namespace the second command attached.
    let c3 = Netns::new("txm3");
    let saved = sw.saved();
    sw.expect_error(
        &[
            "add-br",
            "tx1",
            "--subnet",
            "10.154.0.0/24",
            "--",
            "attach",
            "tx1",
            &c3.name,
            "--",
            "attach",
            "nosuch",
            &c3.name,
        ],
        "command 3 of the transaction failed; nothing was changed",
    );
    assert_eq!(sw.ok(&["list-br"]).lines().collect::<Vec<_>>(), ["base", "tx0"]);
    assert_eq!(sw.saved(), saved, "nothing more was saved");
    let links = c3.ip(&["-o", "link"]);
    assert!(
        !links.contains("eth0"),
        "the device the failed transaction made is gone: {links}"
    );

    // What cannot be part of one is refused up front, and so is nonsense.
    sw.expect_error(&["add-br", "tx2", "--", "ct-save"], "ct-save");
    sw.expect_error(&["add-br", "tx2", "--", "trace", "tx0"], "capture and trace");
    sw.expect_error(&["add-br", "tx2", "--"], "empty command");
    assert!(!sw.ok(&["list-br"]).contains("tx2"));

    // The transaction's state is the saved one: a restart brings it back.
    let mut sw = sw;
    sw.kill9();
    sw.launch();
    assert!(c1.ping("10.153.0.2", 3), "after a restart");
}

/// vsctl publishes one port after the other while vswitchd is killed with
/// -9 at some moment (after enough changes that the journal was folded into
/// the state file at least once): every publish vsctl was told was done is
/// there after the restart, and at most the one in flight besides.
#[test]
fn every_answered_change_survives_a_kill_mid_stream() {
    require_root();
    let mut sw = Switch::start("txk", "0");
    sw.ok(&["add-br", "br0", "--subnet", "10.156.0.0/24"]);
    let socket = sw.socket.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut answered = Vec::new();
            for port in 20000u16..30000 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                let out = Command::new(vswitch_tests::bin("vsctl"))
                    .arg("--socket")
                    .arg(&socket)
                    .args(["publish", "br0", "--proto", "tcp", "--port", &port.to_string()])
                    .args(["--to", "10.156.0.2:80"])
                    .stdin(Stdio::null())
                    .output()
                    .expect("vsctl");
                if !out.status.success() {
                    break;
                }
                answered.push(port);
            }
            answered
        })
    };
    // ~64 KiB of journal lines (~100 bytes a publish) fold at least once.
    let state_file = sw.state_dir.join("state.json");
    let folded = || std::fs::metadata(&state_file).is_ok_and(|m| m.len() > 20_000);
    for _ in 0..600 {
        if folded() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(137));
    sw.kill9();
    stop.store(true, Ordering::Relaxed);
    let answered = writer.join().expect("the writer");
    assert!(
        folded(),
        "the state file was rewritten on the way ({} publishes)",
        answered.len()
    );

    sw.launch();
    let listed = sw.json(&["list-published", "br0"]);
    let saved: BTreeSet<u64> = (listed.as_array().expect("rules").iter())
        .filter_map(|r| r["port"].as_u64())
        .collect();
    let missing: Vec<&u16> = answered.iter().filter(|p| !saved.contains(&u64::from(**p))).collect();
    assert!(missing.is_empty(), "answered but not saved: {missing:?}");
    assert!(
        saved.len() <= answered.len() + 1,
        "{} saved, {} answered: only the one in flight may be saved unanswered",
        saved.len(),
        answered.len()
    );
    // And the switch goes on saving after the restart.
    sw.ok(&[
        "publish",
        "br0",
        "--proto",
        "udp",
        "--port",
        "53",
        "--to",
        "10.156.0.2:53",
    ]);
    sw.kill9();
    sw.launch();
    assert_eq!(
        sw.json(&["list-published", "br0"]).as_array().map(Vec::len),
        Some(saved.len() + 1)
    );
}
