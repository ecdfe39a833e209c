//! Wrong input to vsctl and vswitchd: one clear line, a non-zero exit, and a
//! daemon that stays up and unchanged.

use std::process::{Command, Output};

use vswitch_tests::{bin, require_root, unique, Netns, Switch};

#[test]
fn bad_requests_change_nothing() {
    require_root();
    let sw = Switch::start("cli", "0");
    let ns = Netns::new("cli1");
    sw.ok(&["add-br", "br0"]);
    sw.add_port("br0", "p1", &ns);
    let show_before = sw.json(&["show"]);
    let state_before = sw.saved();
    let changes_before = sw.journal_lines();

    sw.expect_error(&["add-port", "nobr", "p2"], "bridge 'nobr' does not exist");
    sw.expect_error(&["add-br", "br0"], "bridge 'br0' already exists");
    sw.expect_error(&["add-br", "bad name"], "bridge name 'bad name' is not valid");
    sw.expect_error(&["add-br", "br1", "--aging", "0"], "aging must be between 1 and");
    sw.expect_error(
        &["add-port", "br0", "p1", "--netns", &ns.name],
        "port 'p1' already exists on bridge 'br0'",
    );
    sw.expect_error(
        &["add-port", "br0", "p2", "--netns", &ns.name, "--ifname", "eth0"],
        "interface 'eth0'",
    );
    // An interface of that name made there by someone else, for an AF_XDP
    // port (its veth end is made in the namespace by the request that makes
    // the pair) and a TAP (made from inside): refused, nothing left behind.
    ns.ip(&["link", "add", "eth7", "type", "veth", "peer", "name", "eth8"]);
    for kind in ["afxdp", "tap"] {
        sw.expect_error(
            &[
                "add-port", "br0", "px2", "--type", kind, "--netns", &ns.name, "--ifname", "eth7",
            ],
            "interface 'eth7' already exists",
        );
    }
    let host_end = Command::new("ip")
        .args(["link", "show", "dev", "px2"])
        .output()
        .expect("ip");
    assert!(!host_end.status.success(), "the veth host end px2 was left behind");
    sw.expect_error(
        &["add-port", "br0", "p2", "--netns", "vst-no-such-ns"],
        "network namespace 'vst-no-such-ns' does not exist",
    );
    sw.expect_error(
        &["add-port", "br0", "waytoolongportname"],
        "port name 'waytoolongportname' is not valid",
    );
    sw.expect_error(
        &["add-port", "br0", "p2", "--ifname", "a/b"],
        "interface name 'a/b' is not valid",
    );
    sw.expect_error(&["del-port", "br0", "nope"], "port 'nope' does not exist");
    sw.expect_error(&["del-br", "nope"], "bridge 'nope' does not exist");
    sw.expect_error(&["fdb-show", "nope"], "bridge 'nope' does not exist");
    sw.expect_error(&["port-stats", "nope"], "port 'nope' does not exist");
    sw.ok(&["add-br", "br1"]);
    sw.expect_error(&["del-port", "br1", "p1"], "port 'p1' is on bridge 'br0', not 'br1'");
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
    assert!(sw.saved().starts_with(&state_before), "what was saved stays");
    assert_eq!(
        sw.journal_lines(),
        changes_before + 2,
        "the two changes that succeeded (add-br, del-br br1) were saved, nothing else"
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

/// Runs a vswitchd that is expected to refuse to start.
fn run_vswitchd(cores: &str, socket: impl AsRef<std::path::Path>, state_dir: impl AsRef<std::path::Path>) -> Output {
    Command::new(bin("vswitchd"))
        .args(["--cores", cores])
        .arg("--socket")
        .arg(socket.as_ref())
        .arg("--state-dir")
        .arg(state_dir.as_ref())
        .output()
        .expect("vswitchd")
}

#[test]
fn vswitchd_refuses_bad_cores_and_a_second_instance() {
    require_root();
    let dir = std::env::temp_dir().join(unique("cores"));
    let out = run_vswitchd("999", dir.join("s"), dir.join("state"));
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
    let out = run_vswitchd("0", &sw.socket, sw.dir.join("other-state"));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("another vswitchd is already listening"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run_vswitchd("0", sw.dir.join("other.sock"), &sw.state_dir);
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
    let out = run_vswitchd("0", dir.join("s"), dir.join("state"));
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

#[test]
fn vsctl_whose_reader_went_away_ends_quietly() {
    use std::os::unix::process::ExitStatusExt;
    require_root();
    let sw = Switch::start("pipe", "0");
    sw.ok(&["add-br", "br0"]);
    // `vsctl show | head -0`: the reader is gone before vsctl prints.
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let out = Command::new(bin("vsctl"))
        .arg("--socket")
        .arg(&sw.socket)
        .arg("show")
        .stdout(writer)
        .output()
        .expect("vsctl");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.is_empty(), "vsctl complained: {stderr}");
    assert_eq!(out.status.signal(), Some(SIGPIPE), "{:?}", out.status);
}

/// SIGPIPE's number on Linux: what ends `cat` in the same place.
const SIGPIPE: i32 = 13;
