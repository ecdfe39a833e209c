//! `trace-start`, `trace-read`, `trace-stop`: the words for what the poll
//! threads noted (`crate::trace`) — port and bridge names, addresses,
//! what a route or NAT changed.

use std::fmt::Write;

use vswitch_ctl::{TraceChunk, TracedFrame};

use super::check::{summary, Judge};
use super::{ControlError, Manager};
use crate::snapshot::Snapshot;
use crate::trace::{Headers, TraceRecord};
use crate::verdict::{FloodFrom, NextHop, Verdict};

fn mac(m: [u8; 6]) -> String {
    m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

fn proto_name(p: u8) -> String {
    match p {
        1 => "ICMP".into(),
        6 => "TCP".into(),
        17 => "UDP".into(),
        n => format!("proto {n}"),
    }
}

fn icmp_name((kind, code): (u8, u8)) -> String {
    match (kind, code) {
        (8, _) => "ICMP echo request".into(),
        (0, _) => "ICMP echo reply".into(),
        (3, 0) => "ICMP net unreachable".into(),
        (3, 1) => "ICMP host unreachable".into(),
        (3, 3) => "ICMP port unreachable".into(),
        (3, 4) => "ICMP fragmentation needed".into(),
        (11, _) => "ICMP time exceeded".into(),
        (t, c) => format!("ICMP type {t} code {c}"),
    }
}

fn tcp_flags(f: u8) -> String {
    let names = [(0x02, "S"), (0x10, "."), (0x01, "F"), (0x04, "R"), (0x08, "P")];
    names.iter().filter(|(bit, _)| f & bit != 0).map(|(_, n)| *n).collect()
}

fn endpoint(ip: std::net::Ipv4Addr, port: Option<u16>) -> String {
    match port {
        Some(p) => format!("{ip}:{p}"),
        None => ip.to_string(),
    }
}

/// "02:.. > 02:.., IPv4 10.0.0.2:1234 > 10.0.0.3:80 TCP ttl 64, 74 bytes"
fn describe(h: &Headers) -> String {
    let mut s = format!("{} > {}", mac(h.src_mac), mac(h.dst_mac));
    match (h.ethertype, h.ipv4) {
        (0x0800, Some((src, dst, proto, ttl))) => {
            let what = match (h.icmp, h.tcp_flags) {
                (Some(icmp), _) => icmp_name(icmp),
                (_, Some(flags)) => format!("TCP [{}]", tcp_flags(flags)),
                _ => proto_name(proto),
            };
            let _ = write!(
                s,
                ", IPv4 {} > {} {what} ttl {ttl}",
                endpoint(src, h.ports.map(|p| p.0)),
                endpoint(dst, h.ports.map(|p| p.1)),
            );
        }
        (0x0806, _) => s.push_str(", ARP"),
        (0x86dd, _) => s.push_str(", IPv6"),
        (t, _) => {
            let _ = write!(s, ", ethertype {t:#06x}");
        }
    }
    let _ = write!(s, ", {} bytes", h.len);
    s
}

fn port_name(snap: &Snapshot, slot: u32) -> String {
    snap.port(slot)
        .map_or_else(|| format!("slot {slot}"), |p| p.port.name.clone())
}

fn verdict_words(snap: &Snapshot, names: &dyn Fn(u32) -> String, v: &Verdict) -> String {
    match v {
        Verdict::Drop(reason) => format!("drop: {}", reason.name()),
        Verdict::Forward(slot) => format!("forward to port {}", port_name(snap, *slot)),
        Verdict::Flood { bridge, from } => match from {
            FloodFrom::Port(e) => format!(
                "flood bridge {} (all ports but {})",
                names(*bridge),
                port_name(snap, *e)
            ),
            FloodFrom::Tunnel => format!("flood bridge {} (from the tunnel: local ports only)", names(*bridge)),
            FloodFrom::Router => format!("flood bridge {} (from the router: local ports only)", names(*bridge)),
        },
        Verdict::L2 => "to the switch (L2)".into(),
        Verdict::Underlay => "to the uplink's tunnels and router".into(),
        Verdict::L3 => "to the gateway (L3)".into(),
        Verdict::Consumed => "taken by the gateway (nothing sent on)".into(),
        Verdict::Hold { via, ip } => match via {
            NextHop::Bridge(b) => format!("held until {ip} answers ARP on bridge {}", names(*b)),
            NextHop::Uplink(b) => format!("held until {ip} answers ARP on the uplink of {}", names(*b)),
        },
        Verdict::Tunnel { bridge, vtep } => format!("into the tunnel of bridge {} to VTEP {vtep}", names(*bridge)),
    }
}

/// What a route or NAT changed between the headers in and out.
fn changes(before: &Headers, after: &Headers) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let (Some((s0, d0, _, ttl0)), Some((s1, d1, _, ttl1))) = (before.ipv4, after.ipv4) else {
        return out;
    };
    if ttl1 != ttl0 {
        let mut route = format!("ttl {ttl0} -> {ttl1}");
        if before.dst_mac != after.dst_mac {
            let _ = write!(route, ", next hop {} from {}", mac(after.dst_mac), mac(after.src_mac));
        }
        out.push(("route".into(), route));
    }
    let (p0, p1) = (before.ports.unwrap_or_default(), after.ports.unwrap_or_default());
    let mut nat = Vec::new();
    if (s0, p0.0) != (s1, p1.0) {
        nat.push(format!(
            "source {} -> {}",
            endpoint(s0, before.ports.map(|p| p.0)),
            endpoint(s1, after.ports.map(|p| p.0))
        ));
    }
    if (d0, p0.1) != (d1, p1.1) {
        nat.push(format!(
            "destination {} -> {}",
            endpoint(d0, before.ports.map(|p| p.1)),
            endpoint(d1, after.ports.map(|p| p.1))
        ));
    }
    if !nat.is_empty() {
        out.push(("nat".into(), nat.join(", ")));
    }
    out
}

/// What the policies say of a traced frame that opens a connection (a TCP
/// SYN, a UDP datagram, an echo request): judged from its sender to its
/// receiver's own address and port (after a published port's
/// translation). Other packets belong to a connection judged at its first.
fn policy_line(judge: &Judge<'_>, r: &TraceRecord) -> Option<String> {
    let (src, _, protocol, _) = r.before.ipv4?;
    let (_, dst, _, _) = r.after.ipv4?;
    let opens = match protocol {
        6 => r.before.tcp_flags.is_some_and(|f| f & 0x12 == 0x02),
        17 => true,
        1 => r.before.icmp.is_some_and(|(kind, _)| kind == 8),
        _ => false,
    };
    if !opens {
        let dropped = r.verdict == Verdict::Drop(crate::stats::DropReason::PolicyDenied);
        return dropped.then(|| "denied: no allowed connection has this packet".to_string());
    }
    let port = r.after.ports.map_or(0, |p| p.1);
    let check = judge.check(judge.address(src), judge.address(dst), protocol, port);
    Some(summary(&check))
}

impl Manager {
    pub(super) fn trace_start(&self, port: &str, count: u64) -> Result<(), ControlError> {
        if !(1..=10_000).contains(&count) {
            return Err(ControlError::OutOfRange {
                what: "count",
                value: count,
                min: 1,
                max: 10_000,
            });
        }
        if !self.live_port(port)?.trace.start(count) {
            return Err(ControlError::TraceRunning(port.to_string()));
        }
        Ok(())
    }

    pub(super) fn trace_read(&self, port: &str) -> Result<TraceChunk, ControlError> {
        let (records, done) = self
            .live_port(port)?
            .trace
            .drain()
            .ok_or_else(|| ControlError::NoTrace(port.to_string()))?;
        let snap = self.cell.load();
        // Policies are judged again here, once a trace read, by the same
        // compiler: only when some are in force.
        let judge = snap.policy.is_some().then(|| Judge::new(&self.desired));
        let bridge_names = |slot: u32| {
            (self.bridges.iter())
                .find(|(_, b)| b.slot == slot)
                .map_or_else(|| format!("slot {slot}"), |(n, _)| n.clone())
        };
        let frames = records
            .iter()
            .map(|r: &TraceRecord| {
                let mut stages = vec![("parse".to_string(), describe(&r.before))];
                if let Some(l2) = &r.l2 {
                    stages.push(("l2".into(), verdict_words(&snap, &bridge_names, l2)));
                }
                // The gateway wrote its answer over the frame (ARP reply,
                // echo reply, ICMP error) and sends it back to the sender.
                let answered = matches!(r.verdict, Verdict::Forward(_))
                    && r.after.dst_mac == r.before.src_mac
                    && r.after.src_mac != r.before.src_mac;
                if answered {
                    stages.push(("gateway".into(), format!("answers: {}", describe(&r.after))));
                } else {
                    stages.extend(changes(&r.before, &r.after));
                }
                if let Some(line) = judge.as_ref().and_then(|j| policy_line(j, r)) {
                    stages.push(("policy".into(), line));
                }
                stages.push(("verdict".into(), verdict_words(&snap, &bridge_names, &r.verdict)));
                if !answered && r.after != r.before && r.after.ipv4.is_some() {
                    stages.push(("out".into(), describe(&r.after)));
                }
                TracedFrame {
                    port: port.to_string(),
                    thread: r.thread,
                    stages,
                }
            })
            .collect();
        Ok(TraceChunk { frames, done })
    }

    pub(super) fn trace_stop(&self, port: &str) -> Result<(), ControlError> {
        self.live_port(port)?.trace.stop();
        Ok(())
    }

    /// Stops traces nobody reads any more (housekeeping).
    pub fn expire_traces(&self) {
        for entry in self.ports.values() {
            if let Ok(live) = &entry.live {
                live.trace.expire_idle();
            }
        }
    }
}
