//! `ipBlock` sees the outside party's real address through NAT: the
//! client's address of a connection that comes in through a published
//! port, the destination of one that leaves through masquerade (both
//! before the uplink's address takes their place).

use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::Duration;

use vswitch_tests::policy::{apply, attach, serve_tcp, tcp_ok, tcp_ok_from};
use vswitch_tests::{bin, require_root, Netns, Switch};

/// `vsctl trace PORT --count N` around `act`; what it printed.
fn trace(sw: &Switch, port: &str, count: u32, act: impl FnOnce()) -> String {
    let tracer = Command::new(bin("vsctl"))
        .arg("--socket")
        .arg(&sw.socket)
        .args(["trace", port, "--count", &count.to_string(), "--seconds", "4"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("vsctl trace");
    sleep(Duration::from_millis(300));
    act();
    let out = tracer.wait_with_output().expect("trace");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const UPLINK_IP: &str = "10.198.0.2";
/// The outside's two addresses: a block allows .0/24 except .5.
const NEAR: &str = "10.198.0.1";
const EXCEPTED: &str = "10.198.0.5";

const BLOCKS: &str = "\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: outside-but-5, namespace: default}
spec:
  podSelector: {matchLabels: {app: web}}
  policyTypes: [Ingress, Egress]
  ingress:
    - from:
        - ipBlock: {cidr: 10.198.0.0/24, except: [10.198.0.5/32]}
      ports:
        - {protocol: TCP, port: 80}
  egress:
    - to:
        - ipBlock: {cidr: 10.198.0.0/24, except: [10.198.0.5/32]}
";

#[test]
fn address_blocks_judge_the_real_outside_address_through_published_ports_and_masquerade() {
    require_root();
    let sw = Switch::start("policy-nat", "0");
    let outside = Netns::new("pno");
    sw.ok(&["add-br", "br0", "--subnet", "10.197.0.0/24"]);
    sw.ok(&[
        "add-uplink",
        "br0",
        "up0",
        "--type",
        "tap",
        "--netns",
        &outside.name,
        "--ip",
        &format!("{UPLINK_IP}/24"),
        "--gw",
        NEAR,
    ]);
    outside.add_addr("up0", &format!("{NEAR}/24"));
    outside.add_addr("up0", &format!("{EXCEPTED}/24"));
    sw.ok(&["set-nat", "br0", "masquerade"]);
    let web = Netns::new("pnw");
    let (web_ip, _) = attach(&sw, &web, "default", "web", &["app=web"]);
    sw.ok(&[
        "publish",
        "br0",
        "--proto",
        "tcp",
        "--port",
        "8080",
        "--to",
        &format!("{web_ip}:80"),
    ]);
    let _web_server = serve_tcp(&web, &[80]);
    let _outside_server = serve_tcp(&outside, &[9000]);

    // No policy: both outside addresses reach web, web reaches both.
    assert!(tcp_ok_from(&outside, NEAR, UPLINK_IP, 8080));
    assert!(tcp_ok_from(&outside, EXCEPTED, UPLINK_IP, 8080));
    assert!(tcp_ok(&web, EXCEPTED, 9000));

    apply(&sw, BLOCKS);
    // In through the published port: judged by the client's own address.
    assert!(tcp_ok_from(&outside, NEAR, UPLINK_IP, 8080), "in the block");
    assert!(
        !tcp_ok_from(&outside, EXCEPTED, UPLINK_IP, 8080),
        "the excepted address, though the container sees it through NAT"
    );
    // Out through masquerade: judged by the real destination.
    assert!(tcp_ok(&web, NEAR, 9000), "in the block");
    assert!(
        !tcp_ok(&web, EXCEPTED, 9000),
        "excepted, though it leaves as the uplink's address"
    );
    // The trace names the rule that let a connection in, or says none did.
    let allowed = trace(&sw, "up0", 3, || {
        tcp_ok_from(&outside, NEAR, UPLINK_IP, 8080);
    });
    assert!(
        allowed.contains("allowed: ingress of default/web by default/outside-but-5 rule 0"),
        "{allowed}"
    );
    let denied = trace(&sw, "up0", 1, || {
        tcp_ok_from(&outside, EXCEPTED, UPLINK_IP, 8080);
    });
    assert!(
        denied.contains("denied: ingress of default/web: isolated by default/outside-but-5, no rule allows it"),
        "{denied}"
    );
    let out = sw.vsctl(&[
        "check-policy",
        "--from",
        EXCEPTED,
        "--to",
        "web",
        "--port",
        "80",
        "--json",
    ]);
    let check: serde_json::Value = serde_json::from_slice(&out.stdout).expect("check-policy --json");
    assert_eq!(out.status.code(), Some(1), "denied: {check}");
    assert_eq!(check["allowed"], false, "{check}");
}
