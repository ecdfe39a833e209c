//! Wrong input to vsctl and vswitchd: one clear line, a non-zero exit, and a
//! daemon that stays up and unchanged.

use std::process::Command;

use vswitch_tests::{bin, require_root, unique, Netns, Switch};

fn expect_error(sw: &Switch, args: &[&str], needle: &str) {
    let out = sw.vsctl(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "vsctl {args:?} should fail");
    assert_eq!(out.status.code(), Some(1), "vsctl {args:?}: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line, not a trace: {stderr}");
    assert!(
        stderr.contains(needle),
        "vsctl {args:?}: expected '{needle}' in: {stderr}"
    );
}

#[test]
fn bad_requests_change_nothing() {
    require_root();
    let sw = Switch::start("cli", "0");
    let ns = Netns::new("cli1");
    sw.ok(&["add-br", "br0"]);
    sw.add_port("br0", "p1", &ns);
    let show_before = sw.json(&["show"]);
    let state_before = std::fs::read_to_string(sw.state_dir.join("state.json")).unwrap();

    expect_error(&sw, &["add-port", "nobr", "p2"], "bridge 'nobr' does not exist");
    expect_error(&sw, &["add-br", "br0"], "bridge 'br0' already exists");
    expect_error(&sw, &["add-br", "bad name"], "bridge name 'bad name' is not valid");
    expect_error(&sw, &["add-br", "br1", "--aging", "0"], "aging must be between 1 and");
    expect_error(
        &sw,
        &["add-port", "br0", "p1", "--netns", &ns.name],
        "port 'p1' already exists on bridge 'br0'",
    );
    expect_error(
        &sw,
        &["add-port", "br0", "p2", "--netns", &ns.name, "--ifname", "eth0"],
        "interface 'eth0'",
    );
    expect_error(
        &sw,
        &["add-port", "br0", "p2", "--netns", "vst-no-such-ns"],
        "network namespace 'vst-no-such-ns' does not exist",
    );
    expect_error(
        &sw,
        &["add-port", "br0", "waytoolongportname"],
        "port name 'waytoolongportname' is not valid",
    );
    expect_error(
        &sw,
        &["add-port", "br0", "p2", "--ifname", "a/b"],
        "interface name 'a/b' is not valid",
    );
    expect_error(&sw, &["del-port", "br0", "nope"], "port 'nope' does not exist");
    expect_error(&sw, &["del-br", "nope"], "bridge 'nope' does not exist");
    expect_error(&sw, &["fdb-show", "nope"], "bridge 'nope' does not exist");
    expect_error(&sw, &["port-stats", "nope"], "port 'nope' does not exist");
    sw.ok(&["add-br", "br1"]);
    expect_error(
        &sw,
        &["del-port", "br1", "p1"],
        "port 'p1' is on bridge 'br0', not 'br1'",
    );
    sw.ok(&["del-br", "br1"]);

    // Usage errors are caught by vsctl itself (exit 2), before the daemon.
    let out = sw.vsctl(&["add-port", "br0", "p2", "--mac", "zz:00:00:00:00:01"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid MAC address 'zz:00:00:00:00:01'"));
    let out = sw.vsctl(&["add-port", "br0", "p2", "--mac", "01:00:5e:00:00:01"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("must be unicast"));
    let out = sw.vsctl(&["no-such-command"]);
    assert_eq!(out.status.code(), Some(2));

    // A client that speaks nonsense on the socket gets an error, not a crash.
    let reply = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "printf 'not json\\n' | timeout 5 nc -U -q 1 {}",
            sw.socket.display()
        ))
        .output()
        .expect("nc");
    let reply = String::from_utf8_lossy(&reply.stdout);
    assert!(
        reply.contains("\"status\":\"error\"") && reply.contains("bad request"),
        "{reply}"
    );

    assert_eq!(sw.json(&["show"]), show_before, "failed requests changed the switch");
    assert_eq!(
        std::fs::read_to_string(sw.state_dir.join("state.json")).unwrap(),
        state_before
    );
    assert!(ns.mac("eth0").is_some(), "the existing port's device is untouched");
}

#[test]
fn vsctl_without_a_daemon_says_so() {
    let socket = std::env::temp_dir().join(unique("nosock")).join("vswitchd.sock");
    let out = Command::new(bin("vsctl"))
        .arg("--socket")
        .arg(&socket)
        .arg("show")
        .output()
        .expect("vsctl");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("cannot reach vswitchd") && stderr.contains("is it running?"),
        "{stderr}"
    );
}

#[test]
fn vswitchd_refuses_bad_cores_and_a_second_instance() {
    require_root();
    let dir = std::env::temp_dir().join(unique("cores"));
    let out = Command::new(bin("vswitchd"))
        .args(["--cores", "999"])
        .arg("--socket")
        .arg(dir.join("s"))
        .arg("--state-dir")
        .arg(dir.join("state"))
        .output()
        .expect("vswitchd");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("core 999 does not exist on this machine"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let out = Command::new(bin("vswitchd"))
        .args(["--cores", "1-0"])
        .output()
        .expect("vswitchd");
    assert!(String::from_utf8_lossy(&out.stderr).contains("core list '1-0' is not valid"));

    let sw = Switch::start("twice", "0");
    let out = Command::new(bin("vswitchd"))
        .args(["--cores", "0"])
        .arg("--socket")
        .arg(&sw.socket)
        .arg("--state-dir")
        .arg(sw.dir.join("other-state"))
        .output()
        .expect("vswitchd");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("another vswitchd is already listening"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(bin("vswitchd"))
        .args(["--cores", "0"])
        .arg("--socket")
        .arg(sw.dir.join("other.sock"))
        .arg("--state-dir")
        .arg(&sw.state_dir)
        .output()
        .expect("vswitchd");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("is in use by another vswitchd"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    sw.ok(&["show"]);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_corrupt_state_file_stops_startup_with_a_clear_error() {
    require_root();
    let dir = std::env::temp_dir().join(unique("corrupt"));
    std::fs::create_dir_all(dir.join("state")).unwrap();
    std::fs::write(dir.join("state/state.json"), "{ truncated").unwrap();
    let out = Command::new(bin("vswitchd"))
        .args(["--cores", "0"])
        .arg("--socket")
        .arg(dir.join("s"))
        .arg("--state-dir")
        .arg(dir.join("state"))
        .output()
        .expect("vswitchd");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("state.json is not valid"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(dir.join("state/state.json")).unwrap(),
        "{ truncated",
        "left for the operator to fix"
    );
    let _ = std::fs::remove_dir_all(dir);
}
