//! Network policy end to end: Kubernetes NetworkPolicy manifests applied
//! with `vsctl apply -f`, enforced on real namespaces, observed with real
//! ping, TCP and UDP clients, and a raw Ethernet sender.

use std::io::Write;
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::Duration;

use vswitch_tests::policy::{apply, attach, ping_id, send_raw, serve_tcp, serve_udp, tcp_ok, udp_ok};
use vswitch_tests::{require_root, Background, Netns, Switch};

const DENY_WEB: &str = "\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: deny-web, namespace: shop}
spec:
  podSelector:
    matchLabels: {app: web}
";

const ALLOW_CLIENT: &str = "\
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: allow-client, namespace: shop}
spec:
  podSelector:
    matchLabels: {app: web}
  ingress:
    - from:
        - podSelector:
            matchLabels: {app: client}
      ports:
        - {protocol: TCP, port: 8000, endPort: 8080}
        - {protocol: UDP, port: 5353}
";

#[test]
fn ingress_policy_isolates_by_labels_ports_and_keeps_replies() {
    require_root();
    let mut sw = Switch::start("policy-in", "0");
    sw.ok(&["add-br", "br0", "--subnet", "10.191.0.0/24"]);
    let (web, client, other) = (Netns::new("pw"), Netns::new("pc"), Netns::new("po"));
    let (web_ip, _) = attach(&sw, &web, "shop", "web", &["app=web"]);
    let (client_ip, client_port) = attach(&sw, &client, "shop", "client", &["app=client"]);
    let (_, other_port) = attach(&sw, &other, "shop", "other", &["app=other"]);
    let _tcp = serve_tcp(&web, &[8080, 8081]);
    let _udp = serve_udp(&web, 5353);

    // No policy: everyone reaches web.
    assert!(client.ping(&web_ip, 1) && other.ping(&web_ip, 1));
    assert!(tcp_ok(&other, &web_ip, 8081));

    // Default deny for app=web, ingress only (the policyTypes default).
    let out = apply(&sw, DENY_WEB);
    assert!(
        out.contains("networkpolicy.networking.k8s.io/shop/deny-web created"),
        "{out}"
    );
    assert!(!client.ping(&web_ip, 1), "web is isolated");
    assert!(!tcp_ok(&other, &web_ip, 8080));
    assert!(sw.port_counter(&client_port, "drops.policy-denied") >= 1);
    // Its own connections out, and the node (gateway), still work, with
    // their replies.
    assert!(web.ping(&client_ip, 2), "egress is not isolated; the replies come back");
    assert!(web.ping("10.191.0.1", 1), "the node always reaches its pods");
    // Cilium's advisory: an echo request inbound with the identifier of
    // an echo web sent out is no reply.
    assert!(ping_id(&web, &client_ip, 4242));
    assert!(
        !ping_id(&client, &web_ip, 4242),
        "an inbound echo with an outbound echo's id"
    );

    // Allow app=client on a port range and one UDP port.
    apply(&sw, ALLOW_CLIENT);
    assert!(tcp_ok(&client, &web_ip, 8080), "a port in 8000-8080");
    assert!(!tcp_ok(&client, &web_ip, 8081), "outside the range");
    assert!(udp_ok(&client, &web_ip, 5353), "the UDP port, and its reply");
    assert!(!client.ping(&web_ip, 1), "the rule names ports: no ICMP");
    assert!(!tcp_ok(&other, &web_ip, 8080), "app=other is no client");
    // check-policy answers the same without traffic, naming the rule.
    let check = |args: &[&str]| {
        let mut all = vec!["check-policy"];
        all.extend_from_slice(args);
        let out = sw.vsctl(&all);
        (out.status.code(), String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let (code, text) = check(&["--from", "shop/client", "--to", "shop/web", "--port", "8080"]);
    assert_eq!(code, Some(0), "{text}");
    assert!(text.starts_with("allowed: shop/client"), "{text}");
    assert!(
        text.contains("ingress of shop/web: allowed by shop/allow-client, ingress rule 0"),
        "{text}"
    );
    let (code, text) = check(&["--from", "shop/other", "--to", &web_ip, "--port", "8080/tcp"]);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("isolated by shop/deny-web, shop/allow-client; no rule allows it"),
        "{text}"
    );
    let (code, _) = check(&["--from", "shop/client", "--to", "shop/web", "--port", "5353/udp"]);
    assert_eq!(code, Some(0));
    let (code, _) = check(&["--from", "shop/client", "--to", "shop/web", "--port", "icmp"]);
    assert_eq!(code, Some(1));
    let verdict = sw.json(&[
        "check-policy",
        "--from",
        "10.191.0.1",
        "--to",
        "shop/web",
        "--port",
        "22",
    ]);
    assert_eq!(verdict["allowed"], true, "the gateway: {verdict}");
    sw.expect_error(
        &[
            "check-policy",
            "--from",
            "shop/nobody",
            "--to",
            "shop/web",
            "--port",
            "80",
        ],
        "no attachment is named shop/nobody",
    );
    let bad = sw.vsctl(&[
        "check-policy",
        "--from",
        "shop/client",
        "--to",
        "shop/web",
        "--port",
        "80/gre",
    ]);
    assert_eq!(bad.status.code(), Some(2), "a usage error");
    // observe: the connections allowed and refused, named, with the rule
    // or the policies that decided.
    let flows: Vec<serde_json::Value> = sw
        .ok(&["observe", "--json", "--last", "500"])
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object a line"))
        .collect();
    let allowed = flows.iter().find(|f| {
        f["event"] == "new" && f["dst_port"] == 8080 && f["src"].as_str().is_some_and(|s| s.starts_with("shop/client"))
    });
    assert!(
        allowed.is_some_and(|f| f["reason"] == "allowed: ingress of shop/web by shop/allow-client rule 0"),
        "{flows:?}"
    );
    let denied = flows
        .iter()
        .find(|f| f["event"] == "denied" && f["src"].as_str().is_some_and(|s| s.starts_with("shop/other")));
    assert!(
        denied.is_some_and(|f| f["reason"]
            .as_str()
            .is_some_and(|r| r.contains("isolated by shop/deny-web"))),
        "{flows:?}"
    );
    let only_denied = sw.ok(&["observe", "--verdict", "denied", "--json", "--last", "500"]);
    assert!(!only_denied.contains("\"event\":\"new\""), "{only_denied}");
    let follower = sw
        .vsctl_cmd(&["observe", "--follow", "--seconds", "3", "--last", "0"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("observe --follow");
    sleep(Duration::from_millis(500));
    assert!(!tcp_ok(&other, &web_ip, 8079));
    let followed = String::from_utf8_lossy(&follower.wait_with_output().expect("observe").stdout).into_owned();
    assert!(
        followed.lines().any(|l| l.contains(" denied ") && l.contains(":8079")),
        "{followed}"
    );

    // Changing other's labels makes it a client, at once.
    sw.ok(&["label", "shop/other", "app=client"]);
    assert!(tcp_ok(&other, &web_ip, 8080));
    sw.ok(&["label", "shop/other", "app=other"]);
    assert!(!tcp_ok(&other, &web_ip, 8080));

    // Raw Ethernet to an isolated container is dropped and counted (Docker's
    // enable_icc=false lets it through).
    let web_mac = web.mac("eth0").expect("web's MAC");
    let before = sw.port_counter(&other_port, "drops.policy-denied");
    let watch = web.tcpdump("eth0", 1, "ether proto 0x88b5");
    send_raw(&other, &web_mac);
    let seen = watch.finish(Duration::from_secs(2));
    assert!(!seen.contains("0x88b5"), "a raw frame reached web: {seen}");
    assert!(sw.port_counter(&other_port, "drops.policy-denied") >= before + 3);

    // An open connection is cut when the policy that allowed it goes.
    let long = client
        .cmd("python3")
        .args([
            "-c",
            &format!(
                "import socket, time\n\
                 s = socket.create_connection(('{web_ip}', 8080), timeout=1.5); f = s.makefile('rwb', 0)\n\
                 f.write(b'1\\n'); print('first', f.readline().strip().decode(), flush=True)\n\
                 time.sleep(2.5)\n\
                 try:\n\
                 \x20   f.write(b'2\\n'); print('second', f.readline().strip().decode() or 'closed', flush=True)\n\
                 except OSError: print('second cut', flush=True)\n"
            ),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    sleep(Duration::from_millis(1000));
    sw.ok(&["delete", "networkpolicy", "shop/allow-client"]);
    let said = Background(long).finish(Duration::from_secs(8));
    assert!(said.contains("first ok"), "{said}");
    assert!(said.contains("second cut"), "the connection lived on: {said}");

    // What the user sees.
    apply(&sw, ALLOW_CLIENT);
    let listed = sw.ok(&["list-policies"]);
    assert!(
        listed.contains("deny-web") && listed.contains("allow-client"),
        "{listed}"
    );
    let shown = sw.ok(&["show-policy", "shop/allow-client"]);
    assert!(shown.contains("selects: shop/web"), "{shown}");
    assert!(shown.contains("8000-8080/tcp, 5353/udp"), "{shown}");
    let attached = sw.json(&["list-attachments"]);
    let web_entry = (attached.as_array().into_iter().flatten()).find(|a| a["name"] == "web");
    assert_eq!(web_entry.map(|a| a["labels"]["app"].clone()), Some("web".into()));
    assert_eq!(web_entry.map(|a| a["namespace"].clone()), Some("shop".into()));

    // A restart keeps policies and labels, and enforces them.
    sw.terminate();
    sw.launch();
    assert!(tcp_ok(&client, &web_ip, 8080));
    assert!(!tcp_ok(&other, &web_ip, 8080));
    assert!(!tcp_ok(&client, &web_ip, 8081));

    // Deleting both opens web again.
    sw.ok(&["delete", "netpol", "shop/deny-web", "shop/allow-client"]);
    assert!(other.ping(&web_ip, 1));
    sw.expect_error(&["delete", "networkpolicy", "shop/deny-web"], "does not exist");
    sw.ok(&["delete", "networkpolicy", "shop/deny-web", "--ignore-not-found"]);
}

#[test]
fn egress_policy_by_namespace_labels_and_address_blocks() {
    require_root();
    let sw = Switch::start("policy-out", "0");
    sw.ok(&["add-br", "br0", "--subnet", "10.193.0.0/24"]);
    let (a, b, c) = (Netns::new("pea"), Netns::new("peb"), Netns::new("pec"));
    let (_, a_port) = attach(&sw, &a, "team-a", "a", &["app=a"]);
    let (b_ip, _) = attach(&sw, &b, "team-b", "b", &["app=b"]);
    let (c_ip, _) = attach(&sw, &c, "team-c", "c", &["app=c"]);
    let _tcp_b = serve_tcp(&b, &[9000]);
    let _tcp_c = serve_tcp(&c, &[9000]);

    // a may open connections only to namespaces labelled env=prod, and to
    // c's address for TCP 9000; the Namespace object comes in the same file.
    let manifest = format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team-b\n  labels: {{env: prod}}\n---\n\
         apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: out, namespace: team-a}}\n\
         spec:\n  podSelector: {{}}\n  policyTypes: [Egress]\n  egress:\n\
         \x20   - to:\n        - namespaceSelector: {{matchLabels: {{env: prod}}}}\n\
         \x20   - to:\n        - ipBlock: {{cidr: 10.193.0.0/24, except: [{b_ip}/32]}}\n      ports: [{{port: 9000}}]\n"
    );
    let out = apply(&sw, &manifest);
    assert!(out.contains("namespace/team-b created"), "{out}");
    assert!(a.ping(&b_ip, 1), "team-b is env=prod");
    assert!(!a.ping(&c_ip, 1), "team-c is not, and the block allows TCP 9000 only");
    assert!(tcp_ok(&a, &c_ip, 9000), "the address block");
    assert!(
        sw.port_counter(&a_port, "drops.policy-denied") >= 1,
        "counted where it was sent"
    );
    // Others are not isolated: c reaches a, and a's replies go back.
    assert!(c.ping(&b_ip, 1));

    // Namespace labels changed by vsctl take effect for new connections.
    sw.ok(&["label-namespace", "team-c", "env=prod"]);
    assert!(a.ping(&c_ip, 1));
    sw.ok(&["label-namespace", "team-c", "env-"]);
    assert!(!a.ping(&c_ip, 1));

    // AND within one peer: env=prod namespaces' app=x only (b is app=b).
    let and = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: out, namespace: team-a}\n\
               spec:\n  podSelector: {}\n  policyTypes: [Egress]\n  egress:\n\
               \x20   - to:\n        - namespaceSelector: {matchLabels: {env: prod}}\n          podSelector: {matchLabels: {app: x}}\n";
    let out = apply(&sw, and);
    assert!(
        out.contains("networkpolicy.networking.k8s.io/team-a/out configured"),
        "{out}"
    );
    assert!(!a.ping(&b_ip, 1), "the namespace matches but the pod does not");
    sw.ok(&["label", "team-b/b", "app=x"]);
    assert!(a.ping(&b_ip, 1));
}

#[test]
fn a_bad_manifest_is_refused_whole_with_the_field_named() {
    require_root();
    let sw = Switch::start("policy-bad", "0");
    sw.ok(&["add-br", "br0", "--subnet", "10.194.0.0/24"]);
    // The second document puts matchLabels one level too high.
    let manifest = format!(
        "{DENY_WEB}---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: bad, namespace: shop}}\n\
         spec:\n  podSelector: {{}}\n  ingress:\n    - from:\n        - matchLabels: {{app: client}}\n"
    );
    let path = std::env::temp_dir().join(format!("vs-policy-{}.yaml", vswitch_tests::unique("bad")));
    std::fs::write(&path, &manifest).expect("written");
    sw.expect_error(
        &["apply", "-f", path.to_str().unwrap_or_default()],
        "document 2: spec.ingress[0].from[0]: unknown field \"matchLabels\"; nothing was applied",
    );
    let _ = std::fs::remove_file(&path);
    assert!(sw.ok(&["list-policies"]).contains("no network policies"));
    // From standard input, kubectl's way.
    let mut child = Command::new(vswitch_tests::bin("vsctl"))
        .args(["--socket", sw.socket.to_str().unwrap_or_default(), "apply", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("vsctl");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(DENY_WEB.as_bytes())
        .expect("written");
    let out = child.wait_with_output().expect("vsctl");
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("created"));
    // Labels the API server would refuse, refused here too.
    let ns = Netns::new("pbad");
    let reply = sw.vsctl(&["attach", "br0", &ns.name, "--label", "app=a b"]);
    assert!(!reply.status.success());
    sw.expect_error(&["label", "shop/nobody", "app=x"], "no attachment is named shop/nobody");
    sw.expect_error(&["delete", "service", "x"], "not 'service'");
}

/// `add-br --no-icc`: two attachments of the bridge never reach each
/// other (check-policy says why); the gateway still answers them; `set
/// bridge icc=true` lets them talk, live.
#[test]
fn a_bridge_without_icc_keeps_its_attachments_apart() {
    require_root();
    let sw = Switch::start("policy-icc", "0");
    sw.ok(&["add-br", "br0", "--subnet", "10.196.0.0/24", "--no-icc"]);
    let (one, two) = (Netns::new("pi1"), Netns::new("pi2"));
    let (one_ip, _) = attach(&sw, &one, "default", "one", &[]);
    let (two_ip, _) = attach(&sw, &two, "default", "two", &[]);
    assert!(sw.ok(&["show"]).contains("icc: off"));
    assert!(!one.ping(&two_ip, 1), "apart");
    assert!(two.ping("10.196.0.1", 1), "the gateway answers");
    let out = sw.vsctl(&["check-policy", "--from", "one", "--to", &two_ip, "--port", "icmp"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("bridge br0 has icc off"), "{text}");
    sw.ok(&["set", "bridge", "br0", "icc=true"]);
    assert!(one.ping(&two_ip, 1) && two.ping(&one_ip, 1), "icc on");
}
