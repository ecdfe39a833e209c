//! NAT: `set-nat`, `publish`, `unpublish`, and the connection table's
//! `ct-show`, `ct-flush`, `ct-stats`.
//!
//! Settings and published ports are desired state and go through the
//! transaction; the connections themselves are the datapath's and are only
//! read or flushed here.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::atomic::Ordering::Relaxed;

use tracing::info;
use vswitch_ctl::{ConnEntry, CtStatsInfo, SubnetExt};
use vswitch_nat::tcp::TcpState;
use vswitch_nat::tuple::{Proto, Tuple};

use super::config::{L4Proto, Published};
use super::{ControlError, Manager};
use crate::clock;

impl Manager {
    pub(super) fn set_nat(&mut self, bridge: &str, masquerade: bool) -> Result<(), ControlError> {
        let (br, subnet) = self.routed_bridge(bridge)?;
        if br.masquerade == masquerade {
            return Ok(());
        }
        let zone = self.zone(bridge)?;
        self.commit(|txn| {
            txn.bridge_mut(bridge)?.masquerade = masquerade;
            Ok(())
        })?;
        if !masquerade {
            // Masqueraded connections cannot go on untranslated (the zone
            // may be shared with the bridges of one way out: this one's only).
            self.when_committed(move |m| {
                m.ct.flush(|c| c.orig.zone == zone && c.reply.dst != c.orig.src && subnet.contains(&c.orig.src));
            });
        }
        info!(bridge, masquerade, "NAT changed");
        Ok(())
    }

    pub(super) fn publish_port(&mut self, bridge: &str, rule: Published) -> Result<(), ControlError> {
        let (_, subnet) = self.routed_bridge(bridge)?;
        if rule.port == 0 || rule.to_port == 0 {
            return Err(ControlError::PortZero);
        }
        if !subnet.is_host(rule.to_ip) {
            return Err(ControlError::PublishOutside {
                ip: rule.to_ip,
                bridge: bridge.to_string(),
                subnet,
            });
        }
        self.commit(|txn| {
            txn.bridge_mut(bridge)?.published.push(rule);
            Ok(())
        })?;
        info!(bridge, proto = %rule.proto, port = rule.port, to = %rule.to_ip, to_port = rule.to_port, "port published");
        Ok(())
    }

    pub(super) fn unpublish_port(&mut self, bridge: &str, proto: L4Proto, port: u16) -> Result<(), ControlError> {
        let br = self.bridge(bridge)?;
        if !br.published.iter().any(|r| r.proto == proto && r.port == port) {
            return Err(ControlError::NotPublished {
                bridge: bridge.to_string(),
                proto,
                port,
            });
        }
        self.commit(|txn| {
            txn.bridge_mut(bridge)?
                .published
                .retain(|r| !(r.proto == proto && r.port == port));
            Ok(())
        })?;
        info!(bridge, %proto, port, "port unpublished");
        Ok(())
    }

    /// The zone of bridge `only`, or None for every bridge.
    fn zone_filter(&self, only: Option<&str>) -> Result<Option<u16>, ControlError> {
        only.map(|name| self.zone(name)).transpose()
    }

    pub(super) fn ct_show(&self, only: Option<&str>) -> Result<Vec<ConnEntry>, ControlError> {
        let zone = self.zone_filter(only)?;
        let names: BTreeMap<u16, &str> = self.bridges.iter().map(|(n, b)| (b.slot as u16, n.as_str())).collect();
        let show = |t: &Tuple| format!("{}:{} -> {}:{}", t.src, t.src_port, t.dst, t.dst_port);
        let mut entries: Vec<ConnEntry> = self
            .ct
            .snapshot(clock::now_ms())
            .into_iter()
            .filter(|(orig, ..)| zone.is_none_or(|z| z == orig.zone))
            .map(|(orig, reply, state, secs)| ConnEntry {
                bridge: names
                    .get(&orig.zone)
                    .map_or_else(|| format!("zone {}", orig.zone), |n| n.to_string()),
                proto: match orig.proto {
                    Proto::Tcp => "tcp",
                    Proto::Udp => "udp",
                    Proto::IcmpEcho => "icmp",
                }
                .to_string(),
                orig: show(&orig),
                reply: show(&reply),
                state: state.map_or_else(|| "-".to_string(), |s| tcp_state_name(s).to_string()),
                expires_secs: secs,
            })
            .collect();
        entries.sort_by(|a, b| (&a.bridge, &a.orig).cmp(&(&b.bridge, &b.orig)));
        Ok(entries)
    }

    pub(super) fn ct_flush(&self, only: Option<&str>, addr: Option<Ipv4Addr>) -> Result<usize, ControlError> {
        let zone = self.zone_filter(only)?;
        Ok(self.ct.flush(|c| {
            zone.is_none_or(|z| z == c.orig.zone)
                && addr.is_none_or(|a| [c.orig.src, c.orig.dst, c.reply.src, c.reply.dst].contains(&a))
        }))
    }

    pub(super) fn ct_stats(&self) -> CtStatsInfo {
        let s = &self.ct.stats;
        CtStatsInfo {
            entries: self.ct.len(),
            max_entries: self.ct.max_entries(),
            creates: s.creates.load(Relaxed),
            expiries: s.expiries.load(Relaxed),
            invalid: s.invalid.load(Relaxed),
            out_of_window: s.out_of_window.load(Relaxed),
            table_full: s.table_full.load(Relaxed),
            ports_exhausted: s.ports_exhausted.load(Relaxed),
            max_per_port: self.ct.max_per_host(),
            host_limit: s.host_limit.load(Relaxed),
            picked_up: s.picked_up.load(Relaxed),
        }
    }
}

fn tcp_state_name(state: TcpState) -> &'static str {
    match state {
        TcpState::SynSent => "SYN_SENT",
        TcpState::SynRecv => "SYN_RECV",
        TcpState::Established => "ESTABLISHED",
        TcpState::FinWait(_) => "FIN_WAIT",
        TcpState::CloseWait(_) => "CLOSE_WAIT",
        TcpState::LastAck => "LAST_ACK",
        TcpState::TimeWait => "TIME_WAIT",
        TcpState::Close => "CLOSE",
    }
}
