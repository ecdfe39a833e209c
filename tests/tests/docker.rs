//! `docker network create -d vswitch` with a real dockerd (Debian's
//! docker.io) and vswitch-docker: containers get Docker's addresses on a
//! vswitch bridge, reach each other by name, leave through vswitchd's
//! masquerade, are published on the uplink and on the host, and nothing is
//! left when they go, also after restarts of each of the three daemons.

use std::process::Command;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use vswitch_tests::docker::world::{curl_host, host_port_of, http, wait_for, wait_http, World, OUTSIDE_IP, UPLINK_IP};
use vswitch_tests::docker::IMAGE;
use vswitch_tests::run_ok;

/// One at a time: each test runs a dockerd (with its containerd), binds
/// host ports for published ports, and routes its networks' subnets on
/// the host through their internal ports.
static ALONE: Mutex<()> = Mutex::new(());

fn alone() -> MutexGuard<'static, ()> {
    ALONE.lock().unwrap_or_else(PoisonError::into_inner)
}

#[test]
fn containers_talk_leave_through_masquerade_are_published_and_leave_nothing() {
    let _alone = alone();
    let w = World::new("dkmain");
    let net = w.network(
        "front",
        "10.161.0.0/24",
        &["com.vswitch.uplink=ul", "com.vswitch.masquerade=true"],
    );
    let bridge = w.bridge(&net);
    let show = w.sw.json(&["show"]);
    let br = (show.as_array().into_iter().flatten())
        .find(|b| b["name"] == bridge.as_str())
        .unwrap_or_else(|| panic!("no bridge {bridge} in {show}"));
    assert_eq!(br["subnet"], "10.161.0.0/24", "Docker's IPAM subnet");
    assert_eq!(br["gateway"], "10.161.0.1");
    assert_eq!(br["uplink_via"], "ul");
    assert_eq!(br["masquerade"], true);

    w.run(
        "web",
        "front",
        &[
            "-p",
            "18080:80",
            "-p",
            "127.0.0.1:18081:80",
            "-p",
            "7000",
            "-p",
            "18053:53/udp",
            "-p",
            "18100-18102:81",
        ],
        &["httpd", "-f", "-p", "80", "-h", "/bin"],
    );
    w.run("c2", "front", &[], &["sleep", "600"]);

    // Docker's addresses, never a second allocation; by name through Docker's DNS.
    let web_ip = w
        .docker
        .ok(&["inspect", "-f", "{{.NetworkSettings.Networks.front.IPAddress}}", "web"]);
    let attachments = w.attachments();
    assert_eq!(attachments.len(), 2, "{attachments:?}");
    assert!(
        attachments
            .iter()
            .any(|a| a["ip"] == web_ip.as_str() && a["bridge"] == bridge.as_str()),
        "{attachments:?}"
    );
    let ping = w.docker.docker(&["exec", "c2", "ping", "-c", "2", "-W", "2", "web"]);
    assert!(
        ping.status.success(),
        "c2 -> web: {}",
        String::from_utf8_lossy(&ping.stdout)
    );
    let got = w
        .docker
        .ok(&["exec", "c2", "wget", "-q", "-O", "-", "http://web/busybox"]);
    assert!(got.len() > 100_000, "c2 fetched the busybox binary from web over TCP");

    // Published: from outside on the uplink address, from the host on
    // 127.0.0.1; a port bound to 127.0.0.1 only there.
    let outside_curl = || w.outside.cmd("curl");
    wait_http(outside_curl, &format!("http://{UPLINK_IP}:18080/busybox"));
    wait_http(|| Command::new("curl"), "http://127.0.0.1:18080/busybox");
    wait_http(|| Command::new("curl"), "http://127.0.0.1:18081/busybox");
    assert_eq!(
        http(w.outside.cmd("curl"), &format!("http://{UPLINK_IP}:18081/")),
        "000",
        "-p 127.0.0.1:18081:80 is not published on the uplink"
    );
    // `-p 7000`: a free port from Docker's range, shown by list-published.
    let published = w.published(&bridge);
    let auto = host_port_of(&published, 7000);
    assert!((49153..=60999).contains(&auto), "{published:?}");
    // A host port range: the first free one of it.
    assert_eq!(host_port_of(&published, 81), 18100, "{published:?}");
    // UDP through the host proxy, to a real UDP server in web's namespace.
    let server = w
        .docker
        .in_netns("web", "timeout")
        .args(["5", "nc", "-u", "-l", "-p", "53"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("udp server");
    std::thread::sleep(Duration::from_millis(300));
    run_ok(Command::new("sh").args(["-c", "echo hello-udp | timeout 2 nc -u -w1 127.0.0.1 18053 || true"]));
    let out = server.wait_with_output().expect("udp server output");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("hello-udp"),
        "the datagram reached the container through the host proxy"
    );

    // The way out: the outside has no route to 10.161.0.0/24, so an answer
    // proves the connection left with the uplink's address.
    let listener = w
        .outside
        .cmd("timeout")
        .args(["5", "nc", "-l", "-p", "9000"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("outside listener");
    std::thread::sleep(Duration::from_millis(300));
    w.docker.ok(&[
        "exec",
        "c2",
        "sh",
        "-c",
        &format!("echo from-c2 | nc -w 2 {OUTSIDE_IP} 9000"),
    ]);
    let out = listener.wait_with_output().expect("listener");
    assert!(String::from_utf8_lossy(&out.stdout).contains("from-c2"));
    let conns = w.sw.ok(&["ct-show"]);
    assert!(
        conns.contains(&format!("-> {UPLINK_IP}:")),
        "masqueraded to the uplink address: {conns}"
    );

    // Nothing depends on the kernel forwarding: dockerd made FORWARD DROP.
    let policy = run_ok(Command::new("iptables").args(["-S", "FORWARD"]));
    assert!(policy.starts_with("-P FORWARD DROP"), "{policy}");

    w.docker.ok(&["rm", "-f", "web", "c2"]);
    w.assert_clean(&bridge);
    assert!(
        curl_host("http://127.0.0.1:18080/").starts_with('0'),
        "the host proxy is gone"
    );
    w.docker.ok(&["network", "rm", "front"]);
    let bridges = w.sw.ok(&["list-br"]);
    assert!(!bridges.contains(&bridge), "{bridges}");
    let links = run_ok(Command::new("ip").args(["-br", "link"]));
    assert!(!links.contains(&format!("vsn{}", &net[..12])), "internal port removed");
}

#[test]
fn containers_keep_working_across_driver_vswitchd_and_dockerd_restarts() {
    let _alone = alone();
    let mut w = World::new("dkrst");
    let net = w.network("back", "10.162.0.0/24", &["com.vswitch.uplink=ul"]);
    let bridge = w.bridge(&net);
    w.run(
        "web",
        "back",
        &["-p", "18090:80"],
        &["httpd", "-f", "-p", "80", "-h", "/bin"],
    );
    w.run("c2", "back", &[], &["sleep", "600"]);
    let reaches = |w: &World| {
        w.docker
            .docker(&["exec", "c2", "ping", "-c", "1", "-W", "2", "web"])
            .status
            .success()
    };
    assert!(reaches(&w));

    // The driver: its state is on disk; dockerd does not send CreateNetwork again.
    w.driver.terminate();
    w.driver.launch();
    wait_http(|| Command::new("curl"), "http://127.0.0.1:18090/busybox");
    w.run("c3", "back", &[], &["sleep", "600"]);
    assert!(w
        .docker
        .docker(&["exec", "c3", "ping", "-c", "1", "-W", "2", "web"])
        .status
        .success());

    // vswitchd crashes: the containers' TAP devices die with it and come
    // back in their namespaces, with their addresses, after the restart
    // (vswitchd followed them there when dockerd moved them).
    let moved = w.attachments();
    assert!(
        moved.iter().all(|a| a["moved"] == true && a["ifname"] == "eth0"),
        "{moved:?}"
    );
    w.sw.kill9();
    w.sw.launch();
    // The TAP uplink is the same device: the outside kept its address.
    let back = wait_for(Duration::from_secs(10), || {
        reaches(&w).then_some(()).ok_or("no ping".to_string())
    });
    assert!(back.is_ok(), "c2 -> web after a vswitchd restart");
    wait_http(|| w.outside.cmd("curl"), &format!("http://{UPLINK_IP}:18090/busybox"));

    // dockerd killed: on restart it kills the containers and deletes their
    // interfaces without telling the driver; the driver notices.
    w.docker.kill9();
    w.docker.launch();
    w.assert_clean(&bridge);
    // The containers start again on the same network.
    w.docker.ok(&["start", "web", "c2"]);
    let again = wait_for(Duration::from_secs(10), || {
        reaches(&w).then_some(()).ok_or("no ping".to_string())
    });
    assert!(again.is_ok(), "c2 -> web after a dockerd restart");
    wait_http(|| Command::new("curl"), "http://127.0.0.1:18090/busybox");
    w.docker.ok(&["rm", "-f", "web", "c2", "c3"]);
    w.assert_clean(&bridge);
}

#[test]
fn afxdp_ports_on_a_docker_network() {
    let _alone = alone();
    let w = World::new("dkxdp");
    w.network("fast", "10.163.0.0/24", &["com.vswitch.port-type=afxdp"]);
    w.run("web", "fast", &[], &["httpd", "-f", "-p", "80", "-h", "/bin"]);
    w.run("c2", "fast", &[], &["sleep", "600"]);
    let types: Vec<String> = (w.attachments().iter())
        .map(|a| a["port_type"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(types, ["afxdp", "afxdp"]);
    assert!(w
        .docker
        .docker(&["exec", "c2", "ping", "-c", "2", "-W", "2", "web"])
        .status
        .success());
    let got = w
        .docker
        .ok(&["exec", "c2", "wget", "-q", "-O", "-", "http://web/busybox"]);
    assert!(got.len() > 100_000, "TCP between AF_XDP containers");
    w.docker.ok(&["rm", "-f", "web", "c2"]);
    let left = w.attachments();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn bad_requests_get_docker_errors_never_a_crash() {
    let _alone = alone();
    let w = World::new("dkbad");
    let err_of = |body: &str| -> String {
        let v: serde_json::Value = serde_json::from_str(body).unwrap_or_else(|_| panic!("not JSON: {body}"));
        v["Err"].as_str().unwrap_or_default().to_string()
    };
    let (code, body) = w.driver.call("/NetworkDriver.CreateNetwork", "{not json");
    assert_eq!(code, 400);
    assert!(err_of(&body).contains("malformed request"), "{body}");
    let (code, body) = w.driver.call("/NetworkDriver.Frobnicate", "{}");
    assert_eq!(code, 404);
    assert!(err_of(&body).contains("unknown method"), "{body}");
    let (code, body) = w.driver.call(
        "/NetworkDriver.Join",
        r#"{"NetworkID":"nope","EndpointID":"nope","SandboxKey":"/x"}"#,
    );
    assert_eq!(code, 500);
    assert!(err_of(&body).contains("not a vswitch network"), "{body}");
    let (code, body) = w.driver.call("/NetworkDriver.Join", r#"{"NetworkID":1}"#);
    assert_eq!(code, 400, "{body}");
    // An ID no dockerd sends (not hex, not ASCII): refused by name, no crash.
    let odd = r#"{"NetworkID":"ééééééééééééééé","IPv4Data":[{"Pool":"10.164.9.0/24","Gateway":"10.164.9.1/24"}]}"#;
    let (code, body) = w.driver.call("/NetworkDriver.CreateNetwork", odd);
    assert_eq!(code, 500, "{body}");
    assert!(err_of(&body).contains("not valid"), "{body}");
    let (_, body) = w.driver.call("/Plugin.Activate", "");
    assert!(body.contains("NetworkDriver"), "{body}");

    // Through docker itself: the user sees the driver's message.
    let typo = w.docker.docker(&[
        "network",
        "create",
        "-d",
        &w.driver.name,
        "--subnet",
        "10.164.0.0/24",
        "-o",
        "com.vswitch.masqerade=true",
        "typo",
    ]);
    let stderr = String::from_utf8_lossy(&typo.stderr);
    assert!(
        !typo.status.success() && stderr.contains("unknown option com.vswitch.masqerade"),
        "{stderr}"
    );
    let no_way_out = w.docker.docker(&[
        "network",
        "create",
        "-d",
        &w.driver.name,
        "--subnet",
        "10.164.0.0/24",
        "-o",
        "com.vswitch.masquerade=true",
        "nowayout",
    ]);
    let stderr = String::from_utf8_lossy(&no_way_out.stderr);
    assert!(stderr.contains("needs com.vswitch.uplink"), "{stderr}");
    let unknown_uplink = w.docker.docker(&[
        "network",
        "create",
        "-d",
        &w.driver.name,
        "--subnet",
        "10.164.0.0/24",
        "-o",
        "com.vswitch.uplink=nope",
        "badul",
    ]);
    let stderr = String::from_utf8_lossy(&unknown_uplink.stderr);
    assert!(stderr.contains("'nope'"), "{stderr}");
    // None of them left a bridge behind, and the driver still answers.
    assert_eq!(w.sw.ok(&["list-br"]).trim(), "ul");
    w.network("fine", "10.164.0.0/24", &[]);
    w.run("c1", "fine", &[], &["sleep", "600"]);
    assert!(w
        .docker
        .docker(&["exec", "c1", "ping", "-c", "1", "-W", "2", "10.164.0.1"])
        .status
        .success());
    w.docker.ok(&["rm", "-f", "c1"]);
}

/// Container start to first packet: `docker run --rm` of a container whose
/// one job is a ping answered by another container on the same network,
/// on a vswitch network and on Docker's own bridge, alternated, median and
/// 90th percentile of REPS (default 20) each. Run by hand:
/// `cargo test --release -p vswitch-tests --test docker -- --ignored --nocapture measure`.
#[test]
#[ignore]
fn measure_start_to_first_packet() {
    let _alone = alone();
    let reps: usize = std::env::var("REPS").ok().and_then(|r| r.parse().ok()).unwrap_or(20);
    let w = World::new("dkperf");
    w.network("vsnet", "10.165.0.0/24", &[]);
    w.docker
        .ok(&["network", "create", "-d", "bridge", "--subnet", "10.166.0.0/24", "dbr"]);
    let mut times: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    let nets = ["vsnet", "dbr"];
    for net in nets {
        w.run(&format!("peer-{net}"), net, &[], &["sleep", "600"]);
    }
    let peer_ip = |net: &str| {
        w.docker.ok(&[
            "inspect",
            "-f",
            &format!("{{{{.NetworkSettings.Networks.{net}.IPAddress}}}}"),
            &format!("peer-{net}"),
        ])
    };
    let peers = [peer_ip("vsnet"), peer_ip("dbr")];
    for _ in 0..reps {
        for (i, net) in nets.iter().enumerate() {
            let start = Instant::now();
            w.docker.ok(&[
                "run",
                "--rm",
                "--network",
                net,
                IMAGE,
                "ping",
                "-c",
                "1",
                "-W",
                "5",
                &peers[i],
            ]);
            times[i].push(start.elapsed().as_secs_f64() * 1000.0);
        }
    }
    let stats = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        (v[v.len() / 2], v[(v.len() * 9 / 10).min(v.len() - 1)])
    };
    let (vs, dk) = (stats(&mut times[0]), stats(&mut times[1]));
    println!("start to first packet, {reps} runs each (ms): vswitch median {:.0} p90 {:.0}; Docker bridge median {:.0} p90 {:.0}; ratio {:.2}",
        vs.0, vs.1, dk.0, dk.1, vs.0 / dk.0);
    for net in nets {
        w.docker.ok(&["rm", "-f", &format!("peer-{net}")]);
    }
}
