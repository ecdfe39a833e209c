//! Multi-host overlay through etcd: a real etcd (Debian's etcd-server) on a
//! simulated LAN, hosts as namespaces each with its own vswitchd.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use vswitch_tests::cluster::{first_ping, wait_for, Etcd, Host, Lan};
use vswitch_tests::{require_root, Netns, Switch};

const NET: &str = "blue";

/// The cluster tests run one at a time: each starts etcd and several
/// vswitchd, and on two shared cores their timings (lease TTLs of 3 s,
/// etcd's elections) are only meaningful without each other's load.
static ALONE: Mutex<()> = Mutex::new(());

fn alone() -> MutexGuard<'static, ()> {
    ALONE.lock().unwrap_or_else(PoisonError::into_inner)
}

fn create_network(host: &Host) {
    host.sw
        .ok(&["net-create", NET, "--subnet", "10.200.0.0/16", "--vni", "42"]);
}

/// Two hosts serving NET with a container each, the first container
/// reaching the second.
struct Pair {
    h1: Host,
    h2: Host,
    c1: Netns,
    _c2: Netns,
    ip2: String,
}

fn pair(lan: &Lan, etcd: &[&Etcd]) -> Pair {
    let h1 = Host::start(lan, etcd, 1, "0");
    let h2 = Host::start(lan, etcd, 2, "1");
    create_network(&h1);
    h1.wait_ready(NET);
    h2.wait_ready(NET);
    let (c1, _) = h1.container(NET);
    let (_c2, ip2) = h2.container(NET);
    assert!(
        first_ping(&c1, &ip2, Duration::from_secs(5)).is_some(),
        "h1's container reaches h2's"
    );
    Pair { h1, h2, c1, _c2, ip2 }
}

/// Every container reaches every other one.
fn all_ping(containers: &[(Netns, String)]) {
    for (from, _) in containers {
        for (to, ip) in containers {
            if from.name != to.name {
                assert!(
                    first_ping(from, ip, Duration::from_secs(5)).is_some(),
                    "{} cannot reach {ip}",
                    from.name
                );
            }
        }
    }
}

#[test]
fn three_hosts_share_one_network_and_a_fourth_joins() {
    require_root();
    let _alone = alone();
    let lan = Lan::new();
    let etcd = Etcd::cluster(&lan, 1);
    let members: Vec<&Etcd> = etcd.iter().collect();
    let hosts: Vec<Host> = (1..=3).map(|i| Host::start(&lan, &members, i, "0")).collect();
    create_network(&hosts[0]);
    let mut slices: Vec<String> = hosts.iter().map(|h| h.wait_ready(NET)).collect();
    slices.sort();
    slices.dedup();
    assert_eq!(slices.len(), 3, "every host has its own slice: {slices:?}");
    let mut containers: Vec<(Netns, String)> = hosts.iter().map(|h| h.container(NET)).collect();
    // Addresses come from the host's slice; the MTU leaves room for VXLAN.
    for (host, (c, ip)) in hosts.iter().zip(&containers) {
        let slice = host.slice(NET).expect("slice");
        let prefix = slice.rsplit_once('.').map(|(p, _)| p).expect("dotted");
        assert!(ip.starts_with(prefix), "{ip} is not in {slice}");
        assert!(c.ip(&["link", "show", "eth0"]).contains("mtu 1450"));
    }
    all_ping(&containers);
    // TCP across the overlay.
    let (server_ns, server_ip) = &containers[2];
    let _server = server_ns.iperf3_server(server_ip);
    let (gbps, bytes) = containers[0].0.iperf3(server_ip, 1, &[]);
    assert!(bytes > 1_000_000, "TCP moved only {bytes} bytes");
    eprintln!("TCP h1 -> h3 over the overlay: {gbps:.2} Gbit/s");

    // A fourth host joins: the others reach its container.
    let h4 = Host::start(&lan, &members, 4, "1");
    h4.wait_ready(NET);
    containers.push(h4.container(NET));
    all_ping(&containers);
    for h in &hosts {
        assert!(h.remotes(NET).contains(&h4.vtep()), "{} floods to h4", h.node);
    }
    let net_list = hosts[0].sw.json(&["net-list"]);
    assert_eq!(net_list[0]["hosts"].as_array().map(Vec::len), Some(4), "{net_list}");

    // Convergence, measured: h4 leaves (others drop it), then joins again
    // (its lease and slice are written; others reach its container).
    let (c1, _) = &containers[0];
    let c4_ip = containers[3].1.clone();
    let start = Instant::now();
    h4.sw.ok(&["cluster-leave"]);
    let left = wait_for(Duration::from_secs(5), || {
        hosts
            .iter()
            .all(|h| !h.remotes(NET).contains(&h4.vtep()))
            .then(|| start.elapsed())
    })
    .expect("the others drop a host that leaves at once");
    assert!(!c1.ping(&c4_ip, 1), "nothing crosses to a host that left");
    h4.sw.ok(&["cluster-join"]);
    let joined = first_ping(c1, &c4_ip, Duration::from_secs(10)).expect("h4 reachable after it joins again");
    eprintln!(
        "convergence (3 + 1 hosts): leave -> dropped everywhere {} ms, join -> first ping {} ms",
        left.as_millis(),
        joined.as_millis()
    );
}

#[test]
fn a_dead_host_is_dropped_and_gets_its_slice_back() {
    require_root();
    let _alone = alone();
    let lan = Lan::new();
    let etcd = Etcd::cluster(&lan, 1);
    let members: Vec<&Etcd> = etcd.iter().collect();
    let Pair {
        h1,
        mut h2,
        c1,
        _c2,
        ip2,
    } = pair(&lan, &members);
    let slice = h2.slice(NET).expect("h2 holds a slice");

    h2.sw.kill9();
    let dropped = wait_for(Duration::from_secs(10), || h1.remotes(NET).is_empty().then_some(()));
    assert!(dropped.is_some(), "h1 still floods to dead h2: {:?}", h1.remotes(NET));
    let list = h1.sw.json(&["net-list"]);
    assert_eq!(
        list[0]["hosts"].as_array().map(Vec::len),
        Some(1),
        "h2's slice expired: {list}"
    );

    h2.restart(&lan);
    assert_eq!(h2.wait_ready(NET), slice, "h2 gets its slice back");
    assert!(
        first_ping(&c1, &ip2, Duration::from_secs(10)).is_some(),
        "h2's container reachable again"
    );
    // A clean stop (SIGTERM) removes the host at once, not after the TTL.
    let start = Instant::now();
    h2.sw.terminate();
    let gone = wait_for(Duration::from_secs(2), || {
        h1.remotes(NET).is_empty().then(|| start.elapsed())
    });
    assert!(gone.is_some(), "h1 still floods to h2 2 s after it stopped cleanly");
}

#[test]
fn etcd_away_keeps_forwarding_and_the_cluster_catches_up() {
    require_root();
    let _alone = alone();
    let lan = Lan::new();
    let mut etcd = Etcd::cluster(&lan, 1);
    // Every field is bound: a field left to `..` would be dropped (its
    // vswitchd or container gone) at the end of this statement.
    let Pair {
        h1,
        h2: _h2,
        c1,
        _c2,
        ip2,
    } = pair(&lan, &[&etcd[0]]);

    etcd[0].kill();
    let unreachable = wait_for(Duration::from_secs(10), || {
        let show = h1.sw.ok(&["show"]);
        show.contains("unreachable").then_some(show)
    });
    assert!(unreachable.is_some(), "show says the cluster is unreachable");
    assert!(c1.ping(&ip2, 5), "traffic keeps flowing without etcd");
    h1.sw.expect_error(
        &["net-create", "red", "--subnet", "10.201.0.0/16", "--vni", "43"],
        "unreachable",
    );

    // A host that starts meanwhile joins when etcd is back.
    let h3 = Host::start(&lan, &[&etcd[0]], 3, "0");
    etcd[0].start();
    etcd[0].wait_healthy();
    h3.wait_ready(NET);
    let (_c3, ip3) = h3.container(NET);
    assert!(
        first_ping(&c1, &ip3, Duration::from_secs(10)).is_some(),
        "h3, which joined while etcd was away, is reachable"
    );
    assert!(
        h1.status()["resyncs"].as_u64() >= Some(2),
        "h1 read the whole state again"
    );
    assert_eq!(h1.status()["state"], "connected");
}

#[test]
fn a_three_member_etcd_losing_one_member_goes_unnoticed() {
    require_root();
    let _alone = alone();
    let lan = Lan::new();
    let mut etcd = Etcd::cluster(&lan, 3);
    let members: Vec<&Etcd> = etcd.iter().collect();
    let Pair { h1, h2, c1, _c2, ip2 } = pair(&lan, &members);

    etcd[0].kill();
    assert!(c1.ping(&ip2, 5));
    // The cluster still takes changes, and every host sees them.
    let created = wait_for(Duration::from_secs(10), || {
        let out = h2
            .sw
            .vsctl(&["net-create", "red", "--subnet", "10.201.0.0/16", "--vni", "43"]);
        if !out.status.success() {
            eprintln!("net-create: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        out.status.success().then_some(())
    });
    assert!(created.is_some(), "net-create with one etcd member of three down");
    h1.wait_ready("red");
    h2.wait_ready("red");
    let (c1r, _) = h1.container("red");
    let (_c2r, ip2r) = h2.container("red");
    assert!(first_ping(&c1r, &ip2r, Duration::from_secs(5)).is_some());
    assert!(c1.ping(&ip2, 3));
}

#[test]
fn networks_are_validated_and_deleted_everywhere_and_foreign_data_is_ignored() {
    require_root();
    let _alone = alone();
    let lan = Lan::new();
    let etcd = Etcd::cluster(&lan, 1);
    let h1 = Host::start(&lan, &[&etcd[0]], 1, "0");
    let h2 = Host::start(&lan, &[&etcd[0]], 2, "1");
    create_network(&h1);
    h2.wait_ready(NET);
    for (args, needle) in [
        (
            vec!["--subnet", "10.200.8.0/24", "--vni", "7", "--host-prefix", "26"],
            "overlaps 10.200.0.0/16 of network 'blue'",
        ),
        (
            vec!["--subnet", "10.9.0.0/16", "--vni", "42"],
            "VNI 42 is already used by network 'blue'",
        ),
        (vec!["--subnet", "10.9.0.0/16", "--vni", "0"], "VNI 0 is out of range"),
        (
            vec!["--subnet", "10.9.0.0/24", "--vni", "7"],
            "host prefix /24 does not fit",
        ),
    ] {
        let mut all = vec!["net-create", "red"];
        all.extend(args);
        h2.sw.expect_error(&all, needle);
    }
    h1.sw.expect_error(
        &["net-create", NET, "--subnet", "10.9.0.0/16", "--vni", "9"],
        "already exists",
    );
    h1.sw.expect_error(&["net-delete", "nope"], "no network 'nope'");

    // Garbage under the prefix: logged and ignored, never a crash.
    etcd[0].put_raw("/vswitch/nets/junk", "{not json");
    etcd[0].put_raw("/vswitch/slices/blue/10.200.9.0-24", "[]");
    etcd[0].put_raw("/vswitch/whatever", "x");
    std::thread::sleep(Duration::from_millis(300));
    let list = h1.sw.json(&["net-list"]);
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(h2.status()["state"], "connected");

    // A bridge a user made with a network's name is left alone, also when
    // the network is deleted.
    h2.sw.ok(&["add-br", "green", "--subnet", "10.77.0.0/24"]);
    h1.sw
        .ok(&["net-create", "green", "--subnet", "10.202.0.0/16", "--vni", "44"]);
    h1.wait_ready("green");
    let refused = wait_for(Duration::from_secs(5), || {
        let status = h2.status();
        let nets = status["networks"].as_array()?.clone();
        nets.into_iter()
            .find(|n| n["name"] == "green" && n["state"].as_str().is_some_and(|s| s.contains("did not create")))
    });
    assert!(refused.is_some(), "h2 reports the clash: {}", h2.status());
    h1.sw.ok(&["net-delete", "green"]);
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        h2.sw.ok(&["list-br"]).lines().any(|l| l == "green"),
        "the user's bridge stays"
    );

    // A host whose own bridges are in the way says why, and serves the
    // network once they are out of the way.
    h2.sw.ok(&["add-br", "local", "--subnet", "10.203.0.0/24"]);
    h1.sw
        .ok(&["net-create", "purple", "--subnet", "10.203.0.0/16", "--vni", "45"]);
    let blocked = wait_for(Duration::from_secs(5), || {
        let status = h2.status();
        let nets = status["networks"].as_array()?.clone();
        nets.into_iter()
            .find(|n| n["name"] == "purple" && n["state"].as_str().is_some_and(|s| s.contains("overlaps")))
    });
    assert!(blocked.is_some(), "h2 reports the overlap: {}", h2.status());
    assert!(!h2.sw.ok(&["list-br"]).lines().any(|l| l == "purple"));
    h2.sw.ok(&["del-br", "local"]);
    h2.wait_ready("purple");

    // Cluster commands on a vswitchd started without --cluster.
    let plain = Switch::start("plain", "0");
    plain.expect_error(&["net-list"], "not in a cluster");
    assert!(plain.ok(&["cluster-status"]).contains("not in a cluster"));

    h1.sw.ok(&["net-delete", NET]);
    for h in [&h1, &h2] {
        let gone = wait_for(Duration::from_secs(5), || {
            (!h.sw.ok(&["list-br"]).lines().any(|l| l == NET)).then_some(())
        });
        assert!(gone.is_some(), "{} removed the deleted network's bridge", h.node);
    }
}

fn median(v: &mut [u128]) -> u128 {
    v.sort_unstable();
    v[v.len() / 2]
}

fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// Bytes through a host's management veth (its etcd traffic and nothing else).
fn mgmt_bytes(host: &Host) -> u64 {
    ["rx_bytes", "tx_bytes"]
        .iter()
        .map(|c| {
            let out = host
                .ns
                .cmd("cat")
                .arg(format!("/sys/class/net/mgmt/statistics/{c}"))
                .output();
            out.ok()
                .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse::<u64>().ok())
                .unwrap_or(0)
        })
        .sum()
}

/// Convergence after a join and after a leave, with CLUSTER_HOSTS hosts
/// (default 3) and CLUSTER_REPS repetitions (default 5); memory and etcd
/// traffic per host. A measurement, not a check: run with --ignored
/// (perf/RESULTS.md has the figures and the command).
#[test]
#[ignore = "a measurement: cargo test --release --test cluster -- --ignored --nocapture"]
fn measure_convergence() {
    require_root();
    let _alone = alone();
    let count: u8 = std::env::var("CLUSTER_HOSTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    let reps: usize = std::env::var("CLUSTER_REPS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let lan = Lan::new();
    let etcd = Etcd::cluster(&lan, 1);
    let members: Vec<&Etcd> = etcd.iter().collect();
    let hosts: Vec<Host> = (1..=count)
        .map(|i| Host::start(&lan, &members, i, if i % 2 == 1 { "0" } else { "1" }))
        .collect();
    let before: Vec<u64> = hosts.iter().map(mgmt_bytes).collect();
    create_network(&hosts[0]);
    for h in &hosts {
        h.wait_ready(NET);
    }
    let containers: Vec<(Netns, String)> = hosts.iter().map(|h| h.container(NET)).collect();
    all_ping(&containers[..2]);
    let (mut joins, mut tables, mut leaves) = (Vec::new(), Vec::new(), Vec::new());
    for rep in 0..reps {
        let k = 1 + rep % (hosts.len() - 1);
        let (mover, vtep) = (&hosts[k], hosts[k].vtep());
        let others: Vec<&Host> = hosts.iter().filter(|h| h.index != mover.index).collect();
        let start = Instant::now();
        mover.sw.ok(&["cluster-leave"]);
        let left = wait_for(Duration::from_secs(10), || {
            others
                .iter()
                .all(|h| !h.remotes(NET).contains(&vtep))
                .then(|| start.elapsed())
        })
        .expect("every host drops a host that left");
        leaves.push(left.as_millis());
        let start = Instant::now();
        mover.sw.ok(&["cluster-join"]);
        let known = wait_for(Duration::from_secs(10), || {
            others
                .iter()
                .all(|h| h.remotes(NET).contains(&vtep))
                .then(|| start.elapsed())
        })
        .expect("every host adds a host that joined");
        tables.push(known.as_millis());
        first_ping(&containers[0].0, &containers[k].1, Duration::from_secs(10)).expect("reachable again");
        joins.push(start.elapsed().as_millis());
    }
    let idle_start: Vec<u64> = hosts.iter().map(mgmt_bytes).collect();
    std::thread::sleep(Duration::from_secs(30));
    let idle_end: Vec<u64> = hosts.iter().map(mgmt_bytes).collect();
    let idle: Vec<u64> = idle_start.iter().zip(&idle_end).map(|(a, b)| (b - a) / 30).collect();
    let setup: Vec<u64> = before.iter().zip(&idle_start).map(|(a, b)| b - a).collect();
    let rss: Vec<u64> = hosts.iter().filter_map(|h| h.sw.pid()).map(rss_kb).collect();
    eprintln!(
        "cluster of {count} hosts, {reps} reps: join -> in every host's tables median {} ms max {} ms, -> first ping (200 ms ping resolution) median {} ms max {} ms; leave -> dropped everywhere median {} ms max {} ms",
        median(&mut tables.clone()),
        tables.iter().max().unwrap_or(&0),
        median(&mut joins.clone()),
        joins.iter().max().unwrap_or(&0),
        median(&mut leaves.clone()),
        leaves.iter().max().unwrap_or(&0),
    );
    eprintln!(
        "per host: vswitchd RSS {}-{} KiB; etcd traffic idle {}-{} B/s, setup + {reps} leave/join rounds {}-{} KiB",
        rss.iter().min().unwrap_or(&0),
        rss.iter().max().unwrap_or(&0),
        idle.iter().min().unwrap_or(&0),
        idle.iter().max().unwrap_or(&0),
        setup.iter().min().unwrap_or(&0) / 1024,
        setup.iter().max().unwrap_or(&0) / 1024,
    );
}
