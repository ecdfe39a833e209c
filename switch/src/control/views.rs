//! Read-only replies: `show`, `list-*`, `fdb-show`, `port-stats`,
//! `pmd-stats`, `neigh-show`. Built from the desired state, the live tables
//! and the counters; nothing here changes anything.

use std::collections::BTreeMap;

use vswitch_ctl::{
    BridgeInfo, FdbEntry, LeaseInfo, MacAddr, NeighEntry, PmdStats, PortInfo, PortStats, PublishRule, UplinkInfo,
};

use super::{gateway_mac, ControlError, Manager, PortEntry};
use crate::clock;
use crate::stats::DropReason;
use crate::tables::fdb::Dest;

/// What `fdb-show` calls the tunnel, as the port of MACs behind it.
const TUNNEL_PORT: &str = "vxlan";

impl Manager {
    pub(super) fn list_br(&self) -> Vec<String> {
        self.desired.bridges.iter().map(|b| b.name.clone()).collect()
    }

    /// The bridges a read names: one (which must exist) or every one.
    fn bridges_named(&self, only: Option<&str>) -> Result<Vec<&super::config::BridgeConfig>, ControlError> {
        match only {
            Some(name) => Ok(vec![self.bridge(name)?]),
            None => Ok(self.desired.bridges.iter().collect()),
        }
    }

    pub(super) fn list_ports(&self, only: Option<&str>) -> Result<Vec<String>, ControlError> {
        let bridges = self.bridges_named(only)?;
        Ok(bridges
            .iter()
            .flat_map(|b| b.ports.iter().map(|p| p.name.clone()))
            .collect())
    }

    pub(super) fn list_published(&self, bridge: &str) -> Result<Vec<PublishRule>, ControlError> {
        Ok(self.bridge(bridge)?.published.iter().map(|&r| r.into()).collect())
    }

    pub(super) fn port_state(entry: &PortEntry) -> String {
        match &entry.live {
            Ok(live) => live.state(),
            Err(reason) => reason.to_string(),
        }
    }

    pub(super) fn show(&self) -> Vec<BridgeInfo> {
        let snap = self.cell.load();
        self.desired
            .bridges
            .iter()
            .map(|br| {
                let fdb = self.bridges.get(&br.name).map(|b| b.fdb.clone());
                BridgeInfo {
                    name: br.name.clone(),
                    aging_secs: br.aging_secs,
                    max_macs: br.max_macs,
                    learned_macs: fdb.as_ref().map_or(0, |f| f.records(clock::now_ms()).len()),
                    learn_limit_hits: fdb.as_ref().map_or(0, |f| f.limit_hits()),
                    mac_moves: fdb.as_ref().map_or(0, |f| f.moves()),
                    subnet: br.subnet,
                    gateway: br.gateway,
                    gateway_mac: br.subnet.map(|_| MacAddr(gateway_mac(&br.name))),
                    ip_range: br.ip_range,
                    leases: br
                        .leases
                        .iter()
                        .map(|l| LeaseInfo {
                            ip: l.ip,
                            netns: l.netns.clone(),
                            port: l.port.clone(),
                            owner: l.owner.clone(),
                        })
                        .collect(),
                    uplink_via: br.uplink_via.clone(),
                    icc: br.icc,
                    linked: self
                        .desired
                        .bridges
                        .iter()
                        .filter(|o| o.name != br.name && self.desired.linked(&br.name, &o.name))
                        .map(|o| o.name.clone())
                        .collect(),
                    uplink: br.uplink.as_ref().map(|u| {
                        let entry = self.ports.get(&u.iface);
                        UplinkInfo {
                            iface: u.iface.clone(),
                            port_type: u.port_type.into(),
                            ip: u.ip,
                            prefix: u.prefix,
                            gw: u.gw,
                            mac: u.mac,
                            state: entry.map_or_else(|| "unknown".to_string(), Self::port_state),
                            detail: entry.and_then(|e| e.live.as_ref().ok()).and_then(|l| l.io.describe()),
                            netns: u.netns.clone(),
                            shared: u.shared,
                        }
                    }),
                    masquerade: br.masquerade,
                    published: br.published.iter().map(|&r| r.into()).collect(),
                    tunnel: self.tunnel_info(br, clock::now_ms()),
                    ports: br
                        .ports
                        .iter()
                        .map(|p| {
                            let entry = self.ports.get(&p.name);
                            PortInfo {
                                name: p.name.clone(),
                                port_type: p.port_type.into(),
                                netns: p.netns.clone(),
                                ifname: p.ifname.clone(),
                                mac: p.mac,
                                pmd_core: entry
                                    .filter(|e| e.live.is_ok())
                                    .and_then(|e| snap.reader_of(e.slot))
                                    .and_then(|i| self.pmds.get(i))
                                    .map(|pmd| pmd.core),
                                state: entry.map_or_else(|| "unknown".to_string(), Self::port_state),
                                detail: entry.and_then(|e| e.live.as_ref().ok()).and_then(|l| l.io.describe()),
                                guard: self.guard_of(&br.name, &p.name).map(|g| (MacAddr(g.mac), g.ip)),
                            }
                        })
                        .collect(),
                }
            })
            .collect()
    }

    /// `list-fdb [BR]`: one bridge's table, or every bridge's in turn.
    pub(super) fn fdb_show(&self, only: Option<&str>) -> Result<Vec<FdbEntry>, ControlError> {
        let mut all = Vec::new();
        for b in self.bridges_named(only)? {
            all.extend(self.fdb_of(&b.name)?);
        }
        Ok(all)
    }

    fn fdb_of(&self, bridge: &str) -> Result<Vec<FdbEntry>, ControlError> {
        let br = self
            .bridges
            .get(bridge)
            .ok_or_else(|| ControlError::NoBridge(bridge.to_string()))?;
        let by_uid: BTreeMap<u64, &str> = self
            .ports
            .iter()
            .filter_map(|(name, e)| e.live.as_ref().ok().map(|l| (l.uid, name.as_str())))
            .collect();
        let statics = self.bridge(bridge)?.vxlan.iter().flat_map(|t| &t.static_macs);
        let mut entries: Vec<FdbEntry> = statics
            .map(|(mac, vtep)| FdbEntry {
                bridge: bridge.to_string(),
                mac: *mac,
                port: TUNNEL_PORT.to_string(),
                age_secs: 0,
                vtep: Some(*vtep),
                is_static: true,
            })
            .collect();
        entries.extend(br.fdb.records(clock::now_ms()).into_iter().filter_map(|r| {
            let port = match r.dest {
                Dest::Vtep(_) => TUNNEL_PORT,
                Dest::Port(p) => by_uid.get(&p.uid)?,
            };
            Some(FdbEntry {
                bridge: bridge.to_string(),
                mac: MacAddr(r.mac),
                port: port.to_string(),
                age_secs: r.age_ms / 1000,
                vtep: r.dest.vtep(),
                is_static: false,
            })
        }));
        Ok(entries)
    }

    pub(super) fn port_stats(&self, only: Option<&str>) -> Result<Vec<PortStats>, ControlError> {
        // Ports, then uplinks, each with its bridge.
        let names: Vec<(&str, &str)> = self
            .desired
            .ports()
            .map(|(br, p)| (br.name.as_str(), p.name.as_str()))
            .chain(
                self.desired
                    .bridges
                    .iter()
                    .filter_map(|b| Some((b.name.as_str(), b.uplink.as_ref()?.iface.as_str()))),
            )
            .collect();
        if let Some(name) = only {
            if !names.iter().any(|(_, n)| *n == name) {
                return Err(ControlError::NoPort(name.to_string()));
            }
        }
        let stats = names
            .into_iter()
            .filter(|(_, name)| only.is_none_or(|n| n == *name))
            .map(|(bridge, name)| {
                let live = self.ports.get(name).and_then(|e| e.live.as_ref().ok());
                let totals = live.map(|l| l.stats.totals()).unwrap_or_default();
                PortStats {
                    name: name.to_string(),
                    bridge: bridge.to_string(),
                    rx_packets: totals.rx_packets,
                    rx_bytes: totals.rx_bytes,
                    rx_gso_packets: totals.rx_gso_packets,
                    tx_packets: totals.tx_packets,
                    tx_bytes: totals.tx_bytes,
                    tx_gso_packets: totals.tx_gso_packets,
                    drops: DropReason::ALL
                        .iter()
                        .map(|r| (r.name().to_string(), totals.drops(*r)))
                        .collect(),
                    kernel: live
                        .map(|l| {
                            l.io.kernel_stats()
                                .into_iter()
                                .map(|(k, v)| (k.to_string(), v))
                                .collect()
                        })
                        .unwrap_or_default(),
                }
            })
            .collect();
        Ok(stats)
    }

    pub(super) fn pmd_stats(&self) -> Vec<PmdStats> {
        let snap = self.cell.load();
        self.pmds
            .iter()
            .map(|pmd| {
                let c = &pmd.counters;
                let ports = snap
                    .rx_assign
                    .get(pmd.index)
                    .map(|slots| {
                        slots
                            .iter()
                            .filter_map(|&s| snap.port(s))
                            .map(|p| p.port.name.clone())
                            .collect()
                    })
                    .unwrap_or_default();
                let packets = c.packets.get();
                PmdStats {
                    core: pmd.core,
                    ports,
                    packets,
                    busy_iterations: c.busy_iterations.get(),
                    idle_iterations: c.idle_iterations.get(),
                    sleeps: c.sleeps.get(),
                    port_reads: c.port_reads.get(),
                    avg_ns_per_packet: if packets == 0 {
                        0.0
                    } else {
                        c.busy_ns.get() as f64 / packets as f64
                    },
                    busy_ns: c.busy_ns.get(),
                }
            })
            .collect()
    }

    pub(super) fn neigh_show(&self, only: Option<&str>) -> Result<Vec<NeighEntry>, ControlError> {
        if let Some(name) = only {
            self.bridge(name)?;
        }
        let now = clock::now_ms();
        let entries = self
            .bridges
            .iter()
            .filter(|(name, _)| only.is_none_or(|o| o == name.as_str()))
            .flat_map(|(name, b)| {
                let uplink = format!("{name} (uplink)");
                let inside = b.neigh.records(now).into_iter().map(move |r| (name.clone(), r));
                let outside = b
                    .uplink_neigh
                    .records(now)
                    .into_iter()
                    .map(move |r| (uplink.clone(), r));
                inside.chain(outside).map(|(bridge, (ip, mac, age))| NeighEntry {
                    bridge,
                    ip,
                    mac: MacAddr(mac),
                    age_secs: age / 1000,
                })
            })
            .collect();
        Ok(entries)
    }
}
