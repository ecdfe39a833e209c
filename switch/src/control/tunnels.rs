//! VXLAN tunnels: `add-vxlan`, `del-vxlan`, `add-vtep`, `del-vtep`,
//! `fdb-add`, `fdb-del`, `vtep-show`.
//!
//! A tunnel is part of its bridge's desired state; the uplink that carries
//! it (the bridge's own, or `--underlay`'s) is its local VTEP. The rules
//! that span bridges (the uplink exists, one bridge per uplink, port and
//! VNI) are `validate`'s. MACs learned behind a VTEP live in the bridge's
//! FDB and are flushed here when their VTEP or the tunnel goes.

use std::net::Ipv4Addr;

use tracing::info;
use vswitch_ctl::{req, MacAddr, TunnelInfo};
use vswitch_vxlan::header::VNI_MAX;
use vswitch_vxlan::IANA_PORT;

use super::config::{BridgeConfig, TunnelConfig};
use super::{ControlError, Manager};
use crate::clock;

/// How the tunnel carries frames larger than one underlay packet: cut and
/// each piece encapsulated, or whole, the kernel segmenting (a TAP
/// underlay with UDP-tunnel GSO).
const SOFTWARE_PATH: &str = "software segmentation";
const GSO_PATH: &str = "tunnel GSO";

impl Manager {
    pub(super) fn add_vxlan(&mut self, request: req::AddVxlan) -> Result<(), ControlError> {
        let req::AddVxlan {
            may_exist: _,
            bridge,
            vni,
            port,
            underlay,
            remotes,
            learn,
            udp_csum,
        } = request;
        let br = self.bridge(&bridge)?;
        if let Some(t) = &br.vxlan {
            return Err(ControlError::TunnelExists { bridge, vni: t.vni });
        }
        // 1 and up, as `add-net` (cluster networks) and most VTEPs use them.
        if vni == 0 || vni > VNI_MAX {
            return Err(ControlError::OutOfRange {
                what: "vni",
                value: vni.into(),
                min: 1,
                max: VNI_MAX.into(),
            });
        }
        let port = port.unwrap_or(IANA_PORT);
        if port == 0 {
            return Err(ControlError::PortZero);
        }
        if let Some(u) = &underlay {
            self.bridge(u)?;
        }
        let mut unique = Vec::new();
        for ip in remotes {
            check_vtep(ip)?;
            if !unique.contains(&ip) {
                unique.push(ip);
            }
        }
        let tunnel = TunnelConfig {
            vni,
            port,
            underlay: underlay.filter(|u| *u != bridge),
            remotes: unique,
            learn,
            udp_csum,
            static_macs: Vec::new(),
        };
        self.commit(|txn| {
            txn.bridge_mut(&bridge)?.vxlan = Some(tunnel);
            Ok(())
        })?;
        info!(bridge, vni, port, "tunnel added");
        Ok(())
    }

    pub(super) fn del_vxlan(&mut self, bridge: &str) -> Result<(), ControlError> {
        self.tunnel(bridge)?;
        self.commit(|txn| {
            txn.bridge_mut(bridge)?.vxlan = None;
            Ok(())
        })?;
        let name = bridge.to_string();
        self.when_committed(move |m| {
            if let Some(live) = m.bridges.get(&name) {
                live.fdb.flush_tunnel();
            }
        });
        info!(bridge, "tunnel deleted");
        Ok(())
    }

    pub(super) fn add_vtep(&mut self, bridge: &str, ip: Ipv4Addr) -> Result<(), ControlError> {
        check_vtep(ip)?;
        if self.tunnel(bridge)?.remotes.contains(&ip) {
            return Ok(());
        }
        self.commit(|txn| {
            tunnel_mut(txn.bridge_mut(bridge)?, bridge)?.remotes.push(ip);
            Ok(())
        })?;
        info!(bridge, %ip, "remote VTEP added");
        Ok(())
    }

    pub(super) fn del_vtep(&mut self, bridge: &str, ip: Ipv4Addr) -> Result<(), ControlError> {
        if !self.tunnel(bridge)?.remotes.contains(&ip) {
            return Err(ControlError::NoVtep {
                bridge: bridge.to_string(),
                ip,
            });
        }
        self.commit(|txn| {
            tunnel_mut(txn.bridge_mut(bridge)?, bridge)?
                .remotes
                .retain(|r| *r != ip);
            Ok(())
        })?;
        let name = bridge.to_string();
        self.when_committed(move |m| {
            if let Some(live) = m.bridges.get(&name) {
                live.fdb.flush_vtep(ip);
            }
        });
        info!(bridge, %ip, "remote VTEP deleted");
        Ok(())
    }

    pub(super) fn fdb_add(&mut self, bridge: &str, mac: MacAddr, vtep: Ipv4Addr) -> Result<(), ControlError> {
        check_vtep(vtep)?;
        self.tunnel(bridge)?;
        self.commit(|txn| {
            let statics = &mut tunnel_mut(txn.bridge_mut(bridge)?, bridge)?.static_macs;
            statics.retain(|(m, _)| *m != mac);
            statics.push((mac, vtep));
            Ok(())
        })?;
        info!(bridge, %mac, %vtep, "static remote MAC added");
        Ok(())
    }

    pub(super) fn fdb_del(&mut self, bridge: &str, mac: MacAddr) -> Result<(), ControlError> {
        if !self.tunnel(bridge)?.static_macs.iter().any(|(m, _)| *m == mac) {
            return Err(ControlError::NoStaticMac {
                bridge: bridge.to_string(),
                mac,
            });
        }
        self.commit(|txn| {
            tunnel_mut(txn.bridge_mut(bridge)?, bridge)?
                .static_macs
                .retain(|(m, _)| *m != mac);
            Ok(())
        })?;
        info!(bridge, %mac, "static remote MAC deleted");
        Ok(())
    }

    pub(super) fn vtep_show(&self, only: Option<&str>) -> Result<Vec<TunnelInfo>, ControlError> {
        if let Some(name) = only {
            self.tunnel(name)?;
        }
        let now = clock::now_ms();
        let tunnels = (self.desired.bridges.iter())
            .filter(|b| only.is_none_or(|o| o == b.name))
            .filter_map(|b| self.tunnel_info(b, now))
            .collect();
        Ok(tunnels)
    }

    /// What `vtep-show` and `show` say of bridge `b`'s tunnel.
    pub(super) fn tunnel_info(&self, b: &BridgeConfig, now: u64) -> Option<TunnelInfo> {
        let t = b.vxlan.as_ref()?;
        let underlay = b.underlay()?.to_string();
        let up = self.desired.bridge(&underlay).and_then(|u| u.uplink.as_ref());
        let whole = up
            .and_then(|u| self.ports.get(&u.iface))
            .and_then(|e| e.live.as_ref().ok())
            .is_some_and(|live| live.io.tunnel_gso());
        let learned = self.bridges.get(&b.name).map_or(0, |live| {
            (live.fdb.records(now).iter())
                .filter(|r| r.dest.vtep().is_some())
                .count()
        });
        Some(TunnelInfo {
            bridge: b.name.clone(),
            vni: t.vni,
            port: t.port,
            underlay,
            uplink: up.map(|u| u.iface.clone()),
            local_ip: up.map(|u| u.ip),
            remotes: t.remotes.clone(),
            learn: t.learn,
            udp_csum: t.udp_csum,
            // An outer checksum is computed over each whole packet here.
            path: if whole && !t.udp_csum { GSO_PATH } else { SOFTWARE_PATH }.to_string(),
            static_macs: t.static_macs.clone(),
            learned_macs: learned,
        })
    }

    /// The tunnel of bridge `name`.
    fn tunnel(&self, name: &str) -> Result<&TunnelConfig, ControlError> {
        self.bridge(name)?
            .vxlan
            .as_ref()
            .ok_or_else(|| ControlError::NoTunnel(name.to_string()))
    }
}

fn tunnel_mut<'a>(br: &'a mut super::config::BridgeConfig, name: &str) -> Result<&'a mut TunnelConfig, ControlError> {
    br.vxlan
        .as_mut()
        .ok_or_else(|| ControlError::NoTunnel(name.to_string()))
}

/// A remote VTEP is one unicast host.
fn check_vtep(ip: Ipv4Addr) -> Result<(), ControlError> {
    if ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() || ip.is_loopback() {
        return Err(ControlError::BadVtep(ip));
    }
    Ok(())
}
