//! vswitch-cni, the CNI plugin: driven directly with the spec's environment
//! (as cnitool would), and by a real podman on its CNI backend.

use std::io::Write;
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard, PoisonError};

use serde_json::{json, Value};
use vswitch_tests::podman::{Podman, IMAGE};
use vswitch_tests::{bin, require_root, Netns, Switch};

/// One at a time: podman runs are heavy, and the host routes each network's
/// subnet through its internal port.
static ALONE: Mutex<()> = Mutex::new(());

fn alone() -> MutexGuard<'static, ()> {
    ALONE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs the plugin: `command` with `env` (CNI_* without the prefix) and
/// `conf` on stdin. Returns the exit code and what it printed (parsed, or
/// Null when nothing).
fn cni(command: &str, env: &[(&str, &str)], conf: &str) -> (i32, Value) {
    let mut cmd = Command::new(bin("vswitch-cni"));
    cmd.env_clear()
        .env("CNI_COMMAND", command)
        .env("CNI_PATH", "/opt/cni/bin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(format!("CNI_{k}"), v);
    }
    let mut child = cmd.spawn().expect("run vswitch-cni");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(conf.as_bytes())
        .expect("write the configuration");
    let out = child.wait_with_output().expect("vswitch-cni output");
    let text = String::from_utf8_lossy(&out.stdout);
    let value = match text.trim() {
        "" => Value::Null,
        t => serde_json::from_str(t).unwrap_or_else(|e| panic!("not JSON ({e}): {t}")),
    };
    (out.status.code().unwrap_or(-1), value)
}

fn conf(sw: &Switch, extra: Value) -> String {
    let mut c = json!({
        "cniVersion": "1.0.0",
        "name": "direct",
        "type": "vswitch",
        "bridge": "cnibr",
        "subnet": "10.175.0.0/24",
        "socket": sw.socket,
    });
    if let (Some(c), Some(extra)) = (c.as_object_mut(), extra.as_object()) {
        c.extend(extra.clone());
    }
    c.to_string()
}

#[test]
fn the_plugin_driven_directly_as_cnitool_would() {
    require_root();
    let _alone = alone();
    let sw = Switch::start("cnidirect", "0");
    let c1 = Netns::new("cni1");
    let path = format!("/run/netns/{}", c1.name);
    let env = |ifname: &'static str| -> Vec<(&'static str, String)> {
        vec![
            ("CONTAINERID", "ctr-1".into()),
            ("NETNS", path.clone()),
            ("IFNAME", ifname.into()),
        ]
    };
    let as_refs = |v: &[(&'static str, String)]| -> Vec<(&'static str, String)> { v.to_vec() };
    let run = |command: &str, env: &[(&'static str, String)], conf: &str| {
        let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        cni(command, &pairs, conf)
    };

    // VERSION lists what the plugin speaks, in the asked version.
    let (code, v) = run("VERSION", &[], r#"{"cniVersion":"1.1.0"}"#);
    assert_eq!(code, 0);
    assert_eq!(v["supportedVersions"], json!(["0.4.0", "1.0.0", "1.1.0"]));
    assert_eq!(v["cniVersion"], "1.1.0");

    // ADD: the bridge is made with the subnet, the container gets the
    // address asked for (IP= in CNI_ARGS), the MAC, the route, the ports.
    let add_conf = conf(
        &sw,
        json!({"runtimeConfig": {"portMappings": [{"hostPort": 8080, "containerPort": 80, "protocol": "tcp"}]},
               "dns": {"nameservers": ["10.175.0.1"]},
               "args": {"cni": {"labels": [{"key": "app", "value": "web"}, {"key": "tier", "value": "back"}]}}}),
    );
    // A label that is not one, in either place: refused, nothing made.
    let mut bad_env = as_refs(&env("eth0"));
    bad_env.push(("ARGS", "VSWITCH_LABELS=app=we b".into()));
    let (code, out) = run("ADD", &bad_env, &add_conf);
    assert_ne!(code, 0);
    assert!(out["msg"].as_str().unwrap_or("").contains("VSWITCH_LABELS"), "{out}");
    let bad_conf = conf(&sw, json!({"args": {"cni": {"labels": [{"key": "-x", "value": "1"}]}}}));
    let (code, out) = run("ADD", &env("eth0"), &bad_conf);
    assert_eq!((code, out["code"].as_u64()), (1, Some(7)), "{out}");
    assert!(sw.json(&["list-attachments"]).as_array().is_some_and(Vec::is_empty));
    let mut add_env = as_refs(&env("eth0"));
    add_env.push((
        "ARGS",
        "IgnoreUnknown=1;IP=10.175.0.9;MAC=02:00:00:aa:00:09;K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-0;\
         VSWITCH_LABELS=tier=front,track=canary"
            .into(),
    ));
    let (code, result) = run("ADD", &add_env, &add_conf);
    assert_eq!(code, 0, "{result}");
    assert_eq!(result["cniVersion"], "1.0.0");
    assert_eq!(result["ips"][0]["address"], "10.175.0.9/24");
    assert_eq!(result["ips"][0]["gateway"], "10.175.0.1");
    assert_eq!(result["interfaces"][0]["name"], "eth0");
    assert_eq!(result["interfaces"][0]["mac"], "02:00:00:aa:00:09");
    assert_eq!(result["interfaces"][0]["sandbox"], path.as_str());
    assert_eq!(result["routes"][0]["dst"], "0.0.0.0/0");
    assert_eq!(result["dns"]["nameservers"][0], "10.175.0.1");
    assert!(c1.ip(&["addr", "show", "eth0"]).contains("10.175.0.9/24"));
    assert!(c1.ping("10.175.0.1", 1), "the gateway answers");
    let published = sw.json(&["list-published", "cnibr"]);
    assert_eq!(published[0]["port"], 8080);
    assert_eq!(published[0]["to_ip"], "10.175.0.9");
    let listed = sw.json(&["list-attachments"]);
    assert_eq!(listed[0]["owner"], "ctr-1");
    // The pod's identity: CNI_ARGS' namespace and name, the labels of
    // args.cni.labels with CNI_ARGS' on top.
    assert_eq!(listed[0]["namespace"], "shop");
    assert_eq!(listed[0]["name"], "web-0");
    assert_eq!(
        listed[0]["labels"],
        json!({"app": "web", "tier": "front", "track": "canary"})
    );

    // Hot-plug: a second network as eth1 leaves the default route alone.
    let second = conf(
        &sw,
        json!({"name": "second", "bridge": "cnibr2", "subnet": "10.176.0.0/24"}),
    );
    let (code, out) = run("ADD", &env("eth1"), &second);
    assert_eq!(code, 0, "{out}");
    assert_eq!(out["routes"], json!([]));
    let routes = c1.ip(&["route", "show", "default"]);
    assert!(routes.contains("dev eth0") && !routes.contains("eth1"), "{routes}");

    // CHECK against the result: fine, then not once the address is gone.
    let mut with_prev: Value = serde_json::from_str(&conf(&sw, json!({}))).expect("conf");
    with_prev["prevResult"] = result.clone();
    let (code, out) = run("CHECK", &env("eth0"), &with_prev.to_string());
    assert_eq!((code, &out), (0, &Value::Null));
    // (The default route goes with the address: so this comes after eth1.)
    c1.ip(&["addr", "del", "10.175.0.9/24", "dev", "eth0"]);
    let (code, out) = run("CHECK", &env("eth0"), &with_prev.to_string());
    assert_ne!(code, 0);
    assert!(
        out["msg"].as_str().unwrap_or_default().contains("lacks 10.175.0.9/24"),
        "{out}"
    );

    // STATUS while vswitchd answers.
    assert_eq!(run("STATUS", &[], &conf(&sw, json!({}))).0, 0);

    // DEL, twice: nothing left (port, lease, published port); the second is fine too.
    for _ in 0..2 {
        let (code, out) = run("DEL", &env("eth0"), &add_conf);
        assert_eq!((code, &out), (0, &Value::Null));
    }
    assert_eq!(sw.json(&["list-published", "cnibr"]), json!([]));
    let left = sw.json(&["list-attachments"]);
    assert_eq!(
        left.as_array().map(Vec::len),
        Some(1),
        "only eth1 on the second network: {left}"
    );
    assert!(c1.mac("eth0").is_none(), "the device went with its port");

    // GC: eth1 is not in the valid list, so it goes; a valid one stays.
    let (code, _) = run("ADD", &env("eth0"), &conf(&sw, json!({})));
    assert_eq!(code, 0);
    let mut gc: Value = serde_json::from_str(&second).expect("conf");
    gc["cniVersion"] = "1.1.0".into();
    gc["cni.dev/valid-attachments"] = json!([{"containerID": "someone-else", "ifname": "eth0"}]);
    assert_eq!(run("GC", &[], &gc.to_string()).0, 0);
    let left = sw.json(&["list-attachments"]);
    assert_eq!(left.as_array().map(Vec::len), Some(1), "{left}");
    assert_eq!(left[0]["bridge"], "cnibr", "GC touches its own network only");

    // DEL after the namespace is gone: success, and nothing left.
    drop(c1);
    let (code, out) = run("DEL", &env("eth0"), &conf(&sw, json!({})));
    assert_eq!((code, &out), (0, &Value::Null));
    assert_eq!(sw.json(&["list-attachments"]), json!([]));

    // The spec's error codes.
    let c2 = Netns::new("cni2");
    let path2 = format!("/run/netns/{}", c2.name);
    let full = [("CONTAINERID", "ctr-2"), ("NETNS", path2.as_str()), ("IFNAME", "eth0")];
    let code_of = |command: &str, env: &[(&str, &str)], conf: &str| {
        let (code, out) = cni(command, env, conf);
        assert_eq!(code, 1, "a failure exits non-zero: {out}");
        out["code"].as_u64().unwrap_or_else(|| panic!("no code in {out}"))
    };
    assert_eq!(code_of("ADD", &full, "{not json"), 6);
    assert_eq!(code_of("ADD", &full, &conf(&sw, json!({"cniVersion": "0.3.1"}))), 1);
    assert_eq!(code_of("ADD", &full[..1], &conf(&sw, json!({}))), 4, "no CNI_NETNS");
    assert_eq!(code_of("ADD", &[], &conf(&sw, json!({}))), 4);
    let mut unknown = full.to_vec();
    unknown.push(("ARGS", "POD=x"));
    assert_eq!(
        code_of("ADD", &unknown, &conf(&sw, json!({}))),
        4,
        "unknown CNI_ARGS key"
    );
    assert_eq!(code_of("ADD", &full, &conf(&sw, json!({"portType": "veth"}))), 7);
    assert_eq!(
        code_of("ADD", &full, &conf(&sw, json!({"subnet": "10.177.0.0/24"}))),
        7,
        "bridge exists with another subnet"
    );
    let down = json!({"socket": "/nonexistent/vswitchd.sock"});
    assert_eq!(
        code_of("ADD", &full, &conf(&sw, down.clone())),
        11,
        "vswitchd not up: try again later"
    );
    assert_eq!(code_of("STATUS", &[], &conf(&sw, down)), 50);
    assert!(c2.mac("eth0").is_none(), "failed ADDs left no device");
}

#[test]
fn podman_containers_on_a_vswitch_network() {
    require_root();
    let _alone = alone();
    let sw = Switch::start("cnipodman", "0,1");
    let outside = Netns::new("cnio");
    sw.ok(&["add-br", "ul", "--subnet", "10.178.0.0/24"]);
    sw.ok(&[
        "add-uplink",
        "ul",
        "up0",
        "--ip",
        "10.179.0.2/24",
        "--gw",
        "10.179.0.1",
        "--type",
        "tap",
        "--netns",
        &outside.name,
    ]);
    outside.add_addr("up0", "10.179.0.1/24");
    outside.ip(&["link", "set", "up0", "up"]);
    let pm = Podman::new();
    let socket = sw.socket.display().to_string();
    pm.network(
        "vsnet",
        json!({"bridge": "pod0", "subnet": "10.180.0.0/24", "socket": socket, "uplink": "ul", "masquerade": true}),
    );
    pm.network(
        "vsnet2",
        json!({"bridge": "pod1", "subnet": "10.181.0.0/24", "socket": socket}),
    );

    pm.ok(&["run", "-d", "--name", "p1", "--network", "vsnet", IMAGE, "sleep", "600"]);
    pm.ok(&[
        "run",
        "-d",
        "--name",
        "web",
        "--network",
        "vsnet",
        "-p",
        "8080:80",
        IMAGE,
        "httpd",
        "-f",
        "-p",
        "80",
        "-h",
        "/bin",
    ]);
    pm.ok(&[
        "run",
        "-d",
        "--name",
        "fixed",
        "--network",
        "vsnet",
        "--ip",
        "10.180.0.50",
        "--mac-address",
        "02:00:00:00:00:50",
        IMAGE,
        "sleep",
        "600",
    ]);
    let ip_of = |name: &str| pm.ok(&["inspect", "-f", "{{.NetworkSettings.Networks.vsnet.IPAddress}}", name]);
    let web = ip_of("web");
    assert_eq!(ip_of("fixed"), "10.180.0.50", "--ip");
    let eth0 = pm.ok(&["exec", "fixed", "ip", "addr", "show", "eth0"]);
    assert!(eth0.contains("02:00:00:00:00:50"), "--mac-address: {eth0}");
    assert!(pm
        .podman(&["exec", "p1", "ping", "-c", "2", "-W", "2", &web])
        .status
        .success());
    let got = pm.ok(&["exec", "p1", "wget", "-q", "-O", "-", &format!("http://{web}/busybox")]);
    assert!(got.len() > 100_000, "TCP between the containers");

    // -p 8080:80 from an outside namespace, through the uplink address;
    // the way out through masquerade (the outside has no route back).
    let code = outside
        .cmd("curl")
        .args([
            "-s",
            "-m",
            "3",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "http://10.179.0.2:8080/busybox",
        ])
        .output()
        .expect("curl");
    assert_eq!(String::from_utf8_lossy(&code.stdout), "200");
    assert!(pm
        .podman(&["exec", "p1", "ping", "-c", "1", "-W", "2", "10.179.0.1"])
        .status
        .success());

    // Hot-plug: connect adds eth1 on the second network; disconnect removes it.
    pm.ok(&["network", "connect", "vsnet2", "p1"]);
    let eth1 = pm.ok(&["exec", "p1", "ip", "addr", "show", "eth1"]);
    assert!(eth1.contains("10.181.0."), "{eth1}");
    let default = pm.ok(&["exec", "p1", "ip", "route"]);
    assert!(default.contains("default via 10.180.0.1 dev eth0"), "{default}");
    assert_eq!(sw.json(&["list-attachments"]).as_array().map(Vec::len), Some(4));
    pm.ok(&["network", "disconnect", "vsnet2", "p1"]);
    assert!(!pm
        .podman(&["exec", "p1", "ip", "addr", "show", "eth1"])
        .status
        .success());

    // Labels and a namespace through CNI_ARGS (podman passes the caller's
    // on, with K8S_POD_NAME its container's name): a policy selects them.
    let labelled = |name: &str, args: &str| {
        let out = pm
            .cmd(&[
                "run",
                "-d",
                "--name",
                name,
                "--network",
                "vsnet",
                IMAGE,
                "httpd",
                "-f",
                "-p",
                "80",
                "-h",
                "/bin",
            ])
            .env("CNI_ARGS", args)
            .output()
            .expect("podman run");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    labelled("db", "K8S_POD_NAMESPACE=shop;VSWITCH_LABELS=app=db");
    labelled("client", "K8S_POD_NAMESPACE=shop;VSWITCH_LABELS=app=client");
    let db_ip = ip_of("db");
    let listed = sw.json(&["list-attachments"]);
    let db = (listed.as_array().into_iter().flatten())
        .find(|a| a["name"] == "db")
        .unwrap_or_else(|| panic!("no attachment named db: {listed}"));
    assert_eq!(
        (&db["namespace"], &db["labels"]),
        (&json!("shop"), &json!({"app": "db"}))
    );
    let policy = pm.dir.join("db-policy.yaml");
    std::fs::write(
        &policy,
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: db, namespace: shop}\n\
         spec:\n  podSelector: {matchLabels: {app: db}}\n  ingress:\n  - from:\n    - podSelector: {matchLabels: {app: client}}\n",
    )
    .expect("policy file");
    sw.ok(&["apply", "-f", &policy.display().to_string()]);
    let url = format!("http://{db_ip}/busybox");
    let fetch = |from: &str| {
        (pm.podman(&["exec", from, "timeout", "3", "wget", "-q", "-O", "/dev/null", &url]))
            .status
            .success()
    };
    assert!(fetch("client"), "app=client in shop reaches the db");
    assert!(!fetch("p1"), "a container of namespace default without labels does not");
    // Counted where the refused frames came in: p1's port (p1 has its
    // container's name, which podman passed).
    let p1_port = (listed.as_array().into_iter().flatten())
        .find(|a| a["name"] == "p1" && a["bridge"] == "pod0")
        .and_then(|a| a["port"].as_str())
        .unwrap_or_else(|| panic!("no attachment named p1: {listed}"))
        .to_string();
    assert!(sw.port_counter(&p1_port, "drops.policy-denied") > 0);

    // rm -f: nothing left behind.
    pm.ok(&["rm", "-f", "-t", "0", "p1", "web", "fixed", "db", "client"]);
    assert_eq!(sw.json(&["list-attachments"]), json!([]));
    assert_eq!(sw.json(&["list-published", "pod0"]), json!([]));
    let links =
        String::from_utf8_lossy(&Command::new("ip").args(["-br", "link"]).output().expect("ip").stdout).into_owned();
    assert!(!links.lines().any(|l| l.starts_with("vsa")), "{links}");
}

/// Run by hand, the plugin answers as the reference plugins do: its about
/// lines (stderr without CNI_COMMAND, stdout for --version), exit 0, and
/// without waiting for a stdin nobody will close.
#[test]
fn run_by_hand_the_plugin_says_what_it_is() {
    let version = Command::new(bin("vswitch-cni")).arg("--version").output().expect("run");
    assert!(version.status.success());
    let text = String::from_utf8_lossy(&version.stdout);
    assert!(text.starts_with("CNI vswitch plugin v"), "{text}");
    assert!(
        text.contains("CNI protocol versions supported: 0.4.0, 1.0.0, 1.1.0"),
        "{text}"
    );

    let mut bare = Command::new(bin("vswitch-cni"))
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run");
    let _open_stdin = bare.stdin.take();
    let started = std::time::Instant::now();
    let out = loop {
        if let Some(status) = bare.try_wait().expect("wait") {
            break status;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "it waited on stdin"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let output = bare.wait_with_output().expect("output");
    assert!(out.success());
    assert!(String::from_utf8_lossy(&output.stderr).starts_with("CNI vswitch plugin v"));
    assert!(output.stdout.is_empty(), "nothing on stdout");
}
