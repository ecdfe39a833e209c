//! Desired state and live objects -> the datapath's [`Snapshot`].
//!
//! Ports and bridges go to their slots; each poll thread gets its share of
//! the ports to read (round robin over the live ones); routed bridges get
//! their gateway view: linked bridges, internal port, uplink, NAT.

use hashbrown::HashMap;
use std::net::Ipv4Addr;

use tracing::warn;
use vswitch_vxlan::{Vni, ETH_HDR_LEN, OVERHEAD};

use super::config::{BridgeConfig, DesiredState, PortKind};
use super::delta::settings;
use super::{gateway_mac, Manager};
use crate::snapshot::SourceGuard;
use crate::snapshot::{BridgeL3, BridgeSlot, NatL3, PortSlot, Snapshot, TunnelIn, TunnelL2, UplinkL3};
use crate::sys::read_mtu;

/// The MTU assumed for an underlay whose own cannot be read.
const DEFAULT_MTU: usize = 1500;

/// True when `old` and `new` make the same snapshot: they differ at most in
/// published rules, which the snapshot holds by their bridges' tables
/// (edited in place), not one by one; only whether a bridge has any
/// matters (NAT is set up for it).
pub(super) fn same_snapshot(old: &DesiredState, new: &DesiredState) -> bool {
    let same_bridge = |a: &BridgeConfig, b: &BridgeConfig| {
        a.published.is_empty() == b.published.is_empty()
            && a.ports == b.ports
            && a.leases == b.leases
            && settings(a) == settings(b)
    };
    old.links == new.links
        && old.policies == new.policies
        && old.namespaces == new.namespaces
        && old.remote_members == new.remote_members
        && old.bridges.len() == new.bridges.len()
        && (old.bridges.iter().zip(&new.bridges)).all(|(a, b)| same_bridge(a, b))
}

impl Manager {
    pub(super) fn build_snapshot(&self) -> Snapshot {
        let mut snap = Snapshot {
            generation: self.generation,
            ..Default::default()
        };
        let zones = self.policy_zones();
        let mut port_members = HashMap::new();
        snap.policy = super::policy::policy_view(
            &self.desired,
            &zones,
            &self.policy_ct,
            &self.flows,
            self.generation,
            &mut port_members,
        );
        for (name, br) in &self.bridges {
            let slot = br.slot as usize;
            if snap.bridges.len() <= slot {
                snap.bridges.resize_with(slot + 1, || None);
            }
            snap.bridges[slot] = Some(BridgeSlot {
                fdb: br.fdb.clone(),
                ports: Vec::new(),
                l3: self.bridge_l3(name),
                tunnel: self.desired.bridge(name).and_then(|c| self.tunnel_l2(c)),
                policy_zone: zones.get(name).copied().unwrap_or(br.slot as u16),
            });
        }
        // Guards by port name, in one pass over ports and leases (a bridge
        // may have a thousand of each).
        let mut guards: HashMap<&str, SourceGuard> = HashMap::new();
        for br in &self.desired.bridges {
            let leased: HashMap<&str, Ipv4Addr> = br.leases.iter().map(|l| (l.port.as_str(), l.ip)).collect();
            for p in br.ports.iter().filter(|p| !p.allow_any_src) {
                if let (Some(ip), Some(mac)) = (leased.get(p.name.as_str()), p.mac) {
                    guards.insert(p.name.as_str(), SourceGuard { mac: mac.0, ip: *ip });
                }
            }
        }
        let mut live_slots = Vec::new();
        for entry in self.ports.values() {
            let (Ok(live), Some(br)) = (&entry.live, self.bridges.get(&entry.bridge)) else {
                continue;
            };
            let slot = entry.slot as usize;
            if snap.ports.len() <= slot {
                snap.ports.resize_with(slot + 1, || None);
            }
            snap.ports[slot] = Some(PortSlot {
                port: live.clone(),
                bridge: br.slot,
                vnet_hdr: live.io.has_vnet_hdr(),
                uplink: entry.uplink,
                guard: guards.get(live.name.as_str()).copied(),
                policy: port_members.get(live.name.as_str()).copied(),
            });
            if let Some(Some(b)) = snap.bridges.get_mut(br.slot as usize).filter(|_| !entry.uplink) {
                b.ports.push(entry.slot);
            }
            live_slots.push(entry.slot);
        }
        for b in snap.bridges.iter_mut().flatten() {
            b.ports.sort_unstable();
        }
        snap.tunnels = snap.bridges.iter().flatten().any(|b| b.tunnel.is_some());
        live_slots.sort_unstable();
        let threads = self.pmds.len().max(1);
        snap.rx_assign = vec![Vec::new(); threads];
        for (i, slot) in live_slots.into_iter().enumerate() {
            snap.rx_assign[i % threads].push(slot);
        }
        snap
    }

    /// Each bridge's policy zone: the lowest slot among the bridges it is
    /// routed with (linked, or sharing a way out), transitively, so a
    /// routed connection is one connection at both its ends.
    fn policy_zones(&self) -> HashMap<String, u16> {
        let mut zone: HashMap<String, u16> = (self.bridges.iter())
            .map(|(name, b)| (name.clone(), b.slot as u16))
            .collect();
        let mut edges: Vec<(&str, &str)> = self
            .desired
            .links
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        edges.extend(self.desired.bridges.iter().map(|b| (b.name.as_str(), b.way_out())));
        // Relax until nothing moves: a handful of bridges, a few rounds.
        let mut moved = true;
        while moved {
            moved = false;
            for &(a, b) in &edges {
                let (Some(za), Some(zb)) = (zone.get(a).copied(), zone.get(b).copied()) else {
                    continue;
                };
                let low = za.min(zb);
                for name in [a, b] {
                    if let Some(z) = zone.get_mut(name).filter(|z| **z != low) {
                        *z = low;
                        moved = true;
                    }
                }
            }
        }
        zone
    }

    /// The source guard of port `port` of `bridge` (see [`guard`]).
    pub(super) fn guard_of(&self, bridge: &str, port: &str) -> Option<SourceGuard> {
        guard(self.desired.bridge(bridge)?, port)
    }

    /// The gateway view of bridge `name` for the snapshot.
    fn bridge_l3(&self, name: &str) -> Option<BridgeL3> {
        let config = self.desired.bridge(name)?;
        let (subnet, gateway) = (config.subnet?, config.gateway?);
        let live = self.bridges.get(name)?;
        let mut routes_to = vec![live.slot];
        // Bridges sharing a way out route to each other's subnets as linked
        // ones do: answers coming in through the uplink need it.
        let shares = |other: &BridgeConfig| {
            other.uplink_via.as_deref() == Some(name) || config.uplink_via.as_deref() == Some(other.name.as_str())
        };
        for other in &self.desired.bridges {
            let linked = other.name != name
                && other.subnet.is_some()
                && (self.desired.linked(name, &other.name) || shares(other));
            if let Some(b) = self.bridges.get(&other.name).filter(|_| linked) {
                routes_to.push(b.slot);
            }
        }
        // The way out: this bridge's uplink, or the one it leaves through.
        let exit = self.desired.bridge(config.way_out())?;
        let exit_live = self.bridges.get(&exit.name)?;
        let group: Vec<&BridgeConfig> = (self.desired.bridges.iter())
            .filter(|b| b.way_out() == exit.name)
            .collect();
        let internal = config
            .ports
            .iter()
            .filter(|p| p.port_type == PortKind::Internal)
            .find_map(|p| self.ports.get(&p.name).filter(|e| e.live.is_ok()).map(|e| e.slot));
        let uplink = exit.uplink.as_ref().and_then(|u| {
            let entry = self.ports.get(&u.iface).filter(|e| e.uplink && e.live.is_ok())?;
            Some(UplinkL3 {
                slot: entry.slot,
                ip: u.ip,
                net: ipnet::Ipv4Net::new(u.ip, u.prefix).ok()?.trunc().into(),
                gw: u.gw,
                mac: u.mac?.0,
                neigh: exit_live.uplink_neigh.clone(),
                // Tunnels arrive on the uplink's own bridge only.
                tunnels: if exit.name == name {
                    self.tunnels_over(name)
                } else {
                    Vec::new()
                },
            })
        });
        // Every bridge of a way out translates when one does: answers arrive
        // at the uplink's own bridge, and a container may reach a port
        // another bridge of the group published (hairpin).
        let needed = group.iter().any(|b| b.masquerade || !b.published.is_empty());
        let nat = needed.then(|| NatL3 {
            masquerade: config.masquerade,
            published: (group.iter())
                .filter_map(|b| self.bridges.get(&b.name).map(|l| l.published.clone()))
                .collect(),
            ct: self.ct.clone(),
            zone: exit_live.slot as u16,
        });
        Some(BridgeL3 {
            subnet: subnet.into(),
            gateway,
            gateway_mac: gateway_mac(name),
            routes_to,
            neigh: live.neigh.clone(),
            internal,
            uplink,
            nat,
        })
    }

    /// The tunnel of bridge `config`, when its underlay uplink is there.
    fn tunnel_l2(&self, config: &BridgeConfig) -> Option<TunnelL2> {
        let t = config.vxlan.as_ref()?;
        let underlay = config.underlay()?;
        let up = self.desired.bridge(underlay)?.uplink.as_ref()?;
        let mtu = match read_mtu(up.netns.as_deref(), &up.iface) {
            Ok(mtu) => mtu,
            Err(err) => {
                warn!(uplink = %up.iface, %err, "cannot read the underlay's MTU; assuming {DEFAULT_MTU}");
                DEFAULT_MTU
            }
        };
        Some(TunnelL2 {
            vni: Vni::new(t.vni)?,
            port: t.port,
            underlay: self.bridges.get(underlay)?.slot,
            remotes: t.remotes.clone(),
            learn: t.learn,
            udp_csum: t.udp_csum,
            statics: t.static_macs.iter().map(|(mac, vtep)| (mac.0, *vtep)).collect(),
            max_inner: mtu.saturating_sub(OVERHEAD - ETH_HDR_LEN),
        })
    }

    /// The tunnels the uplink of bridge `underlay` carries.
    fn tunnels_over(&self, underlay: &str) -> Vec<TunnelIn> {
        self.desired
            .bridges
            .iter()
            .filter(|b| b.underlay() == Some(underlay))
            .filter_map(|b| {
                let t = b.vxlan.as_ref()?;
                Some(TunnelIn {
                    port: t.port,
                    vni: Vni::new(t.vni)?,
                    bridge: self.bridges.get(&b.name)?.slot,
                    learn: t.learn,
                })
            })
            .collect()
    }
}

/// The source guard of port `port` of `br`: for a port a lease was made for
/// (attach, runtimes), whose MAC is known, unless it was attached with
/// `--allow-any-src`.
fn guard(br: &BridgeConfig, port: &str) -> Option<SourceGuard> {
    let config = br.ports.iter().find(|p| p.name == port).filter(|p| !p.allow_any_src)?;
    let lease = br.leases.iter().find(|l| l.port == port)?;
    Some(SourceGuard {
        mac: config.mac?.0,
        ip: lease.ip,
    })
}
