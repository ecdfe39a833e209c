//! How vsctl prints each reply for people (`--json` prints the data as it
//! came instead).

use vswitch_ctl::{
    AttachmentInfo, BridgeInfo, ClusterInfo, FdbEntry, NeighEntry, NetworkInfo, PmdStats, PortStats, Reply, TunnelInfo,
};

pub fn print_reply(reply: &Reply) {
    match reply {
        Reply::Done => {}
        Reply::Replies(replies) => replies.iter().for_each(print_reply),
        Reply::Bridges(names) | Reply::Ports(names) => {
            for name in names {
                println!("{name}");
            }
        }
        Reply::Show(bridges) => print_show(bridges),
        Reply::Fdb(entries) => print_fdb(entries),
        Reply::PortStats(stats) => print_port_stats(stats),
        Reply::PmdStats(stats) => print_pmd_stats(stats),
        Reply::Attached(a) => println!("{} {}/{} gateway {}", a.port, a.ip, a.prefix, a.gateway),
        Reply::Neigh(entries) => print_neigh(entries),
        Reply::Published(rules) => {
            for r in rules {
                println!("{} {} -> {}:{}", r.proto, r.port, r.to_ip, r.to_port);
            }
        }
        Reply::Conns(conns) => {
            for c in conns {
                println!(
                    "{} {} {}  reply {}  {} ({}s)",
                    c.bridge, c.proto, c.orig, c.reply, c.state, c.expires_secs
                );
            }
        }
        Reply::ControlStats(s) => println!(
            "changes {}, failed saves {}, snapshot generation {}",
            s.changes, s.save_failures, s.generation
        ),
        Reply::CtStats(s) => println!(
            "entries {}/{} (at most {} per container), creates {}, expiries {}, drops: invalid={} out-of-window={} table-full={} ports-exhausted={} host-limit={}, picked up mid-stream {}",
            s.entries,
            s.max_entries,
            s.max_per_port,
            s.creates,
            s.expiries,
            s.invalid,
            s.out_of_window,
            s.table_full,
            s.ports_exhausted,
            s.host_limit,
            s.picked_up
        ),
        Reply::Flushed(n) => println!("{n} connections flushed"),
        Reply::Traced(t) => {
            for f in &t.frames {
                print_traced(f);
            }
        }
        Reply::Captured(c) => println!("{} frames, {} skipped", c.frames.len(), c.skipped),
        Reply::CtSaved(n) => println!("{n} connections saved; the next start puts them back"),
        Reply::Vteps(tunnels) => print_tunnels(tunnels),
        Reply::Networks(nets) => print_networks(nets),
        Reply::Attachments(list) => print_attachments(list),
        Reply::Policies(list) => crate::policy::print_policies(list),
        Reply::PolicyChecked(c) => crate::check::print(c),
        Reply::Flows(chunk) => println!("{} connection events", chunk.flows.len()),
        Reply::Applied(a) => crate::policy::print_applied(a),
        Reply::Deleted(keys) => {
            for k in keys {
                println!("networkpolicy.networking.k8s.io/{k} deleted");
            }
        }
        Reply::Cluster(Some(info)) => print_cluster(info),
        Reply::Cluster(None) => println!("not in a cluster (vswitchd was started without --cluster)"),
    }
}

fn print_attachments(list: &[AttachmentInfo]) {
    if list.is_empty() {
        println!("no attachments");
        return;
    }
    println!(
        "{:<14} {:<12} {:<18} {:<12} {:<10} {:<8} NETNS",
        "OWNER", "BRIDGE", "ADDRESS", "PORT", "IFACE", "STATE"
    );
    for a in list {
        let owner = a.owner.as_deref().map_or("-", |o| &o[..o.len().min(12)]);
        let iface = match (&a.ifname, a.moved) {
            (Some(name), true) => name.clone(),
            (Some(name), false) => format!("{name}*"),
            (None, _) => "-".to_string(),
        };
        let state = a.state.split(':').next().unwrap_or_default();
        println!(
            "{owner:<14} {:<12} {:<18} {:<12} {iface:<10} {state:<8} {}",
            a.bridge,
            format!("{}/{}", a.ip, a.prefix),
            a.port,
            a.netns
        );
        for r in &a.published {
            println!("{:<14} publishes {} {} -> {}", "", r.proto, r.port, r.to_port);
        }
        let labels: Vec<String> = a.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!("{:<14} {}/{} {}", "", a.namespace, a.name, labels.join(","));
    }
    if list.iter().any(|a| !a.moved) {
        println!("(* still in vswitchd's namespace: the runtime has not moved it yet)");
    }
}

fn print_networks(nets: &[NetworkInfo]) {
    for n in nets {
        println!(
            "{}: subnet {}, vni {}, port {}, /{} per host, {} host(s)",
            n.name,
            n.subnet,
            n.vni,
            n.port,
            n.host_prefix,
            n.hosts.len()
        );
        for h in &n.hosts {
            let vtep = h
                .vtep
                .map_or_else(|| "no VTEP yet".to_string(), |ip| format!("vtep {ip}"));
            println!("  {} {} ({vtep})", h.slice, h.node);
        }
    }
}

pub fn print_cluster(c: &ClusterInfo) {
    let detail = c.detail.as_deref().map(|d| format!(": {d}")).unwrap_or_default();
    println!("cluster: node {} {}{detail}", c.node, c.state);
    println!("  etcd {} prefix {}", c.endpoints.join(","), c.prefix);
    let lease = c.lease.map_or_else(|| "none".to_string(), |l| format!("{l:x}"));
    let synced = c
        .synced_secs_ago
        .map_or_else(|| "never".to_string(), |s| format!("{s}s ago"));
    println!(
        "  lease {lease} (ttl {}s), last full read {synced}, {} full read(s), {} event(s)",
        c.ttl_secs, c.resyncs, c.events
    );
    match (&c.underlay, c.vtep) {
        (Some(bridge), Some(ip)) => println!("  underlay {bridge}, vtep {ip}"),
        _ => println!("  no underlay yet"),
    }
    for n in &c.networks {
        let slice = n.slice.map_or_else(|| "no slice".to_string(), |s| s.to_string());
        let gw = n.gateway.map(|g| format!(" gateway {g}")).unwrap_or_default();
        let remotes: Vec<String> = n.remotes.iter().map(ToString::to_string).collect();
        println!(
            "  network {}: slice {slice}{gw}, {}, remotes [{}]",
            n.name,
            n.state,
            remotes.join(", ")
        );
    }
}

fn print_tunnels(tunnels: &[TunnelInfo]) {
    for t in tunnels {
        let local = match (&t.uplink, t.local_ip) {
            (Some(iface), Some(ip)) => format!("{ip} on {iface}"),
            _ => "no uplink".to_string(),
        };
        let learn = if t.learn { "learning" } else { "not learning" };
        let csum = if t.udp_csum { ", outer UDP checksum" } else { "" };
        println!(
            "bridge {}: vni {}, port {}, underlay {} ({local}), {learn}{csum}, {}",
            t.bridge, t.vni, t.port, t.underlay, t.path
        );
        let remotes: Vec<String> = t.remotes.iter().map(|r| r.to_string()).collect();
        println!(
            "    remotes: {}",
            if remotes.is_empty() {
                "none".to_string()
            } else {
                remotes.join(", ")
            }
        );
        for (mac, vtep) in &t.static_macs {
            println!("    static {mac} -> {vtep}");
        }
        println!("    learned remote macs: {}", t.learned_macs);
    }
}

fn print_show(bridges: &[BridgeInfo]) {
    for br in bridges {
        println!(
            "bridge {}: aging {}s, macs {}/{}, learn-limit hits {}, mac moves {}",
            br.name, br.aging_secs, br.learned_macs, br.max_macs, br.learn_limit_hits, br.mac_moves
        );
        if let (Some(subnet), Some(gw), Some(mac)) = (br.subnet, br.gateway, br.gateway_mac) {
            let linked = if br.linked.is_empty() {
                "none".to_string()
            } else {
                br.linked.join(", ")
            };
            println!("    subnet {subnet}, gateway {gw} ({mac}), routes to: {linked}");
            if let Some(range) = br.ip_range {
                println!("    addresses handed out from {range}");
            }
            if let Some(u) = &br.uplink {
                let mac = u.mac.map(|m| m.to_string()).unwrap_or_else(|| "-".into());
                println!(
                    "    uplink {} ({}): {}/{} via {}, mac {}, {}",
                    u.iface, u.port_type, u.ip, u.prefix, u.gw, mac, u.state
                );
                if let Some(ns) = &u.netns {
                    println!("        in network namespace {ns}");
                }
                if u.shared {
                    println!(
                        "        shared with the host: only frames to {mac} and ARP for {} come here",
                        u.ip
                    );
                }
                if let Some(detail) = &u.detail {
                    println!("        {detail}");
                }
            }
            if let Some(via) = &br.uplink_via {
                println!("    leaves through the uplink of bridge {via}");
            }
            if br.masquerade {
                println!("    masquerade: on");
            }
            if !br.icc {
                println!("    icc: off (its attachments do not reach each other)");
            }
            for r in &br.published {
                println!("    published {} {} -> {}:{}", r.proto, r.port, r.to_ip, r.to_port);
            }
            for lease in &br.leases {
                let owner = lease
                    .owner
                    .as_deref()
                    .map(|o| format!(", owner {}", &o[..o.len().min(12)]));
                println!(
                    "    lease {} -> netns {} (port {}{})",
                    lease.ip,
                    lease.netns,
                    lease.port,
                    owner.unwrap_or_default()
                );
            }
        }
        if let Some(t) = &br.tunnel {
            let remotes: Vec<String> = t.remotes.iter().map(|r| r.to_string()).collect();
            println!(
                "    vxlan vni {} port {} over {} ({}), remotes: {}",
                t.vni,
                t.port,
                t.underlay,
                t.path,
                if remotes.is_empty() {
                    "none".to_string()
                } else {
                    remotes.join(", ")
                }
            );
        }
        for p in &br.ports {
            let netns = p.netns.as_deref().unwrap_or("(host)");
            let mac = p.mac.map(|m| m.to_string()).unwrap_or_else(|| "-".into());
            let pmd = p.pmd_core.map(|c| format!("core {c}")).unwrap_or_else(|| "-".into());
            println!(
                "    port {}: type {}, netns {}, ifname {}, mac {}, pmd {}, {}",
                p.name, p.port_type, netns, p.ifname, mac, pmd, p.state
            );
            if let Some(detail) = &p.detail {
                println!("        {detail}");
            }
            if let Some((mac, ip)) = &p.guard {
                println!("        guarded: sends only from {mac} / {ip}");
            }
        }
    }
}

fn print_neigh(entries: &[NeighEntry]) {
    println!("{:<16} {:<16} {:<18} {:>8}", "bridge", "ip", "mac", "age(s)");
    for e in entries {
        println!(
            "{:<16} {:<16} {:<18} {:>8}",
            e.bridge,
            e.ip.to_string(),
            e.mac.to_string(),
            e.age_secs
        );
    }
}

fn print_fdb(entries: &[FdbEntry]) {
    println!("{:<16} {:<16} {:<18} {:>8}  vtep", "bridge", "port", "mac", "age(s)");
    for e in entries {
        let age = if e.is_static {
            "static".to_string()
        } else {
            e.age_secs.to_string()
        };
        let vtep = e.vtep.map(|v| v.to_string()).unwrap_or_default();
        println!(
            "{:<16} {:<16} {:<18} {:>8}  {vtep}",
            e.bridge,
            e.port,
            e.mac.to_string(),
            age
        );
    }
}

fn print_port_stats(stats: &[PortStats]) {
    for s in stats {
        println!("port {} (bridge {}):", s.name, s.bridge);
        println!(
            "    rx: {} packets, {} bytes, {} gso",
            s.rx_packets, s.rx_bytes, s.rx_gso_packets
        );
        println!(
            "    tx: {} packets, {} bytes, {} gso",
            s.tx_packets, s.tx_bytes, s.tx_gso_packets
        );
        let drops: Vec<String> = s.drops.iter().map(|(reason, n)| format!("{reason}={n}")).collect();
        if drops.is_empty() {
            println!("    drops: none");
        } else {
            println!("    drops: {}", drops.join(" "));
        }
        if !s.kernel.is_empty() {
            let kernel: Vec<String> = s.kernel.iter().map(|(name, n)| format!("{name}={n}")).collect();
            println!("    kernel: {}", kernel.join(" "));
        }
    }
}

fn print_pmd_stats(stats: &[PmdStats]) {
    for s in stats {
        println!("pmd core {}: ports [{}]", s.core, s.ports.join(", "));
        println!(
            "    packets {}, busy iterations {}, idle iterations {}, sleeps {}, port reads {}, {:.1} ns/packet",
            s.packets, s.busy_iterations, s.idle_iterations, s.sleeps, s.port_reads, s.avg_ns_per_packet
        );
    }
}

/// One traced frame as a block, like VPP's `show trace`.
pub fn print_traced(f: &vswitch_ctl::TracedFrame) {
    println!("frame received on {} (poll thread {}):", f.port, f.thread);
    for (stage, what) in &f.stages {
        println!("  {stage:<8} {what}");
    }
}
