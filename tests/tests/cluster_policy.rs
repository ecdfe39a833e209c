//! Network policy across hosts through etcd: a policy applied on one host
//! is enforced on the other, and its pod selector matches containers on
//! any host (each host publishes who is behind its addresses).

use std::time::Duration;

use vswitch_tests::cluster::{first_ping, wait_for, Etcd, Host, Lan};
use vswitch_tests::{require_root, Netns};

const NET: &str = "blue";

const WEB_FROM_CLIENTS: &str = "\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web-from-clients, namespace: shop}
spec:
  podSelector: {matchLabels: {app: web}}
  ingress:
    - from:
        - podSelector: {matchLabels: {app: client}}
";

/// Attaches a new container to NET on `host` as `shop/NAME` with `label`.
fn container(host: &Host, name: &str, label: &str) -> (Netns, String) {
    let c = Netns::new("cp");
    let out = host.sw.json(&[
        "attach",
        NET,
        &c.name,
        "--name",
        name,
        "--namespace",
        "shop",
        "--label",
        label,
    ]);
    let ip = out["ip"].as_str().expect("attach gives an address").to_string();
    (c, ip)
}

#[test]
fn a_policy_applied_on_one_host_selects_and_admits_pods_of_another() {
    require_root();
    let lan = Lan::new();
    let etcd = Etcd::cluster(&lan, 1);
    let members: Vec<&Etcd> = etcd.iter().collect();
    let h1 = Host::start(&lan, &members, 1, "0");
    let h2 = Host::start(&lan, &members, 2, "1");
    h1.sw
        .ok(&["net-create", NET, "--subnet", "10.200.0.0/16", "--vni", "42"]);
    h1.wait_ready(NET);
    h2.wait_ready(NET);
    let (_web, web_ip) = container(&h1, "web", "app=web");
    let (client, _) = container(&h2, "client", "app=client");
    let (other, _) = container(&h2, "other", "app=other");
    assert!(
        first_ping(&other, &web_ip, Duration::from_secs(5)).is_some(),
        "no policy yet"
    );

    // Applied on h2; web is on h1.
    let file = std::env::temp_dir().join(vswitch_tests::unique("cluster-policy.yaml"));
    std::fs::write(&file, WEB_FROM_CLIENTS).expect("manifest");
    let out = h2.sw.ok(&["apply", "-f", &file.display().to_string()]);
    assert!(out.contains("shop/web-from-clients created"), "{out}");
    let on_h1 = wait_for(Duration::from_secs(5), || {
        let listed = h1.sw.ok(&["list-policies"]);
        listed.contains("web-from-clients").then_some(())
    });
    assert!(on_h1.is_some(), "h1 never got the policy: {}", h1.sw.log());

    // The remote client is known by its labels on h1; the other is not one.
    assert!(
        first_ping(&client, &web_ip, Duration::from_secs(5)).is_some(),
        "app=client on h2 reaches web on h1"
    );
    assert!(!other.ping(&web_ip, 1), "app=other on h2 does not");
    let out = h1.sw.vsctl(&[
        "check-policy",
        "--from",
        "shop/client",
        "--to",
        "shop/web",
        "--port",
        "80",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("allowed: shop/client"), "{text}");
    assert!(
        text.contains("on h2"),
        "the remote client is named with its host: {text}"
    );

    // A label changed on h2 reaches h1's tables: other becomes a client.
    h2.sw.ok(&["label", "shop/other", "app=client"]);
    assert!(
        first_ping(&other, &web_ip, Duration::from_secs(5)).is_some(),
        "relabelled on h2, admitted on h1"
    );

    // Deleted on h1: gone everywhere, web open again.
    h1.sw.ok(&["delete", "networkpolicy", "shop/web-from-clients"]);
    let gone = wait_for(Duration::from_secs(5), || {
        (h2.sw.ok(&["list-policies"]).contains("no network policies")).then_some(())
    });
    assert!(gone.is_some(), "h2 still has the policy");
    h2.sw.ok(&["label", "shop/other", "app=other"]);
    assert!(first_ping(&other, &web_ip, Duration::from_secs(5)).is_some());
    // With etcd away, a policy change is refused, not half made.
    drop(etcd);
    let refused = wait_for(Duration::from_secs(15), || {
        let out = h1.sw.vsctl(&["apply", "-f", &file.display().to_string()]);
        (!out.status.success()).then(|| String::from_utf8_lossy(&out.stderr).into_owned())
    });
    assert!(
        refused.as_deref().is_some_and(|e| e.contains("unreachable")),
        "{refused:?}"
    );
    let _ = std::fs::remove_file(file);
}
