//! Policy through a real dockerd: a network made with Docker's
//! `enable_icc=false` keeps its containers apart (IP and raw Ethernet)
//! while the gateway, the host, the outside and published ports still
//! reach them; the driver options `com.vswitch.namespace` and
//! `com.vswitch.label.KEY` (per network, per container with
//! `--network name=NET,driver-opt=...` and `network connect --driver-opt`)
//! give containers the identity NetworkPolicies select.

use std::process::Command;

use vswitch_tests::docker::world::{wait_http, World, OUTSIDE_IP, UPLINK_IP};
use vswitch_tests::docker::IMAGE;
use vswitch_tests::run_ok;

/// Three raw Ethernet frames of ethertype 0x88b5 from `container`'s eth0
/// to `mac` (the host's python3, in the container's namespace only: /sys
/// is still the host's, so the source MAC comes from the socket).
fn send_raw(w: &World, container: &str, mac: &str) {
    let script = format!(
        "import socket\n\
         s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW); s.bind(('eth0', 0))\n\
         src = s.getsockname()[4]\n\
         dst = bytes.fromhex('{}')\n\
         for _ in range(3): s.send(dst + src + b'\\x88\\xb5' + b'raw frame past icc'.ljust(46, b'.'))\n",
        mac.replace(':', "")
    );
    run_ok(w.docker.in_netns(container, "python3").args(["-c", &script]));
}

fn inspect(w: &World, container: &str, net: &str, field: &str) -> String {
    let format = format!("{{{{.NetworkSettings.Networks.{net}.{field}}}}}");
    w.docker.ok(&["inspect", "-f", &format, container])
}

fn pings(w: &World, from: &str, ip: &str) -> bool {
    (w.docker.docker(&["exec", from, "ping", "-c", "1", "-W", "2", ip]))
        .status
        .success()
}

fn fetches(w: &World, from: &str, url: &str) -> bool {
    let out = w
        .docker
        .docker(&["exec", from, "timeout", "3", "wget", "-q", "-O", "/dev/null", url]);
    out.status.success()
}

/// The attachment whose labels include `key`=`value`.
fn attachment_labelled(w: &World, key: &str, value: &str) -> serde_json::Value {
    let all = w.attachments();
    (all.iter())
        .find(|a| a["labels"][key] == value)
        .cloned()
        .unwrap_or_else(|| panic!("no attachment with {key}={value}: {all:?}"))
}

#[test]
fn a_network_without_icc_keeps_its_containers_apart_and_driver_options_label_them() {
    let w = World::new("dkicc");
    let net = w.network(
        "quiet",
        "10.204.0.0/24",
        &[
            "com.docker.network.bridge.enable_icc=false",
            "com.vswitch.uplink=ul",
            "com.vswitch.masquerade=true",
            "com.vswitch.namespace=shop",
            "com.vswitch.label.tier=back",
        ],
    );
    let bridge = w.bridge(&net);
    assert_eq!(w.sw.ok(&["get", "bridge", &bridge, "icc"]).trim(), "false");
    w.run("ca", "quiet", &[], &["httpd", "-f", "-p", "80", "-h", "/bin"]);
    w.docker.ok(&[
        "run",
        "-d",
        "--name",
        "cb",
        "--network",
        "name=quiet,driver-opt=com.vswitch.label.app=web",
        "-p",
        "18190:80",
        IMAGE,
        "httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/bin",
    ]);
    let b_ip = inspect(&w, "cb", "quiet", "IPAddress");
    let b_mac = inspect(&w, "cb", "quiet", "MacAddress");

    // The network's namespace and labels, the container's label on top.
    let b = attachment_labelled(&w, "app", "web");
    assert_eq!(
        (&b["namespace"], &b["labels"]["tier"]),
        (&"shop".into(), &"back".into())
    );
    let a = attachment_labelled(&w, "tier", "back");
    let a = if a["labels"]["app"] == "web" {
        (w.attachments().into_iter())
            .find(|x| x["labels"]["app"].is_null())
            .expect("a's attachment")
    } else {
        a
    };
    let a_port = a["port"].as_str().unwrap_or_default().to_string();

    // Apart: no ping, no TCP, no raw Ethernet from a to b.
    assert!(!pings(&w, "ca", &b_ip), "a pinged b on an icc=false network");
    assert!(!fetches(&w, "ca", &format!("http://{b_ip}/busybox")));
    let before = w.sw.port_counter(&a_port, "drops.policy-denied");
    send_raw(&w, "ca", &b_mac);
    assert!(
        w.sw.port_counter(&a_port, "drops.policy-denied") >= before + 3,
        "the raw frames were refused: {}",
        w.sw.ok(&["port-stats", &a_port])
    );
    // The rest is reachable: the gateway, the outside through masquerade,
    // b from the outside through its published port and from the host.
    assert!(pings(&w, "ca", "10.204.0.1"), "the gateway");
    assert!(pings(&w, "ca", OUTSIDE_IP), "the outside");
    wait_http(|| w.outside.cmd("curl"), &format!("http://{UPLINK_IP}:18190/busybox"));
    wait_http(|| Command::new("curl"), &format!("http://{b_ip}/busybox"));

    // icc on, live: they talk.
    w.sw.ok(&["set", "bridge", &bridge, "icc=true"]);
    assert!(pings(&w, "ca", &b_ip), "icc=true");
    assert!(fetches(&w, "ca", &format!("http://{b_ip}/busybox")));

    // A second network, labels given at connect: a policy selects them.
    w.network("open", "10.205.0.0/24", &["com.vswitch.namespace=shop"]);
    w.run("cc", "open", &[], &["sleep", "600"]);
    w.docker.ok(&[
        "network",
        "connect",
        "--driver-opt",
        "com.vswitch.label.app=db",
        "open",
        "ca",
    ]);
    let a_open = inspect(&w, "ca", "open", "IPAddress");
    assert!(pings(&w, "cc", &a_open), "no policy yet");
    let policy = w.docker.dir.join("db.yaml");
    std::fs::write(
        &policy,
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: db, namespace: shop}\n\
         spec:\n  podSelector: {matchLabels: {app: db}}\n  policyTypes: [Ingress]\n",
    )
    .expect("policy file");
    w.sw.ok(&["apply", "-f", &policy.display().to_string()]);
    assert!(!pings(&w, "cc", &a_open), "app=db is isolated for ingress");
    assert!(
        fetches(&w, "ca", &format!("http://{b_ip}/busybox")),
        "its egress is not"
    );

    // A typo in a driver option is refused, not ignored.
    let typo = w.docker.docker(&[
        "run",
        "-d",
        "--name",
        "typo",
        "--network",
        "name=open,driver-opt=com.vswitch.lable.app=x",
        IMAGE,
        "true",
    ]);
    assert!(!typo.status.success());
    assert!(
        String::from_utf8_lossy(&typo.stderr).contains("unknown endpoint option com.vswitch.lable.app"),
        "{}",
        String::from_utf8_lossy(&typo.stderr)
    );
    w.docker.ok(&["rm", "-f", "ca", "cb", "cc"]);
}
