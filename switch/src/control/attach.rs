//! `attach` and `detach`: a namespace joins a network with an address.
//!
//! One transaction each: attach creates the port, gives the interface its
//! leased address and a default route via the gateway (netlink, from inside
//! the namespace), and records the lease; if any of it fails, the device is
//! closed and nothing is recorded. Leases are part of the saved state: a
//! namespace attached again gets its address back.

use std::net::Ipv4Addr;

use tracing::info;
use vswitch_ctl::AttachInfo;

use super::config::{Lease, PortKind};
use super::ports::NewPort;
use super::{fnv1a, ControlError, Manager};
use crate::sys::netlink;
use crate::sys::netns::{self, NetnsError};

/// `attach` as asked.
pub(super) struct Attach {
    pub bridge: String,
    pub netns: String,
    pub kind: PortKind,
    pub ip: Option<Ipv4Addr>,
    pub ifname: String,
}

impl Manager {
    pub(super) fn attach(&mut self, request: Attach) -> Result<AttachInfo, ControlError> {
        let Attach {
            bridge,
            netns,
            kind,
            ip,
            ifname,
        } = request;
        let (br, subnet) = self.routed_bridge(&bridge)?;
        let Some(gateway) = br.gateway else {
            return Err(ControlError::NoSubnet(bridge));
        };
        netns::open_netns(&netns).map_err(ControlError::Address)?;
        let lease = br.leases.iter().find(|l| l.netns == netns).cloned();
        if let Some(lease) = &lease {
            if br.ports.iter().any(|p| p.name == lease.port) {
                return Err(ControlError::AlreadyAttached {
                    netns,
                    bridge,
                    port: lease.port.clone(),
                });
            }
        }
        let ip = match (ip, &lease) {
            (Some(ip), Some(l)) if ip != l.ip => {
                return Err(ControlError::LeaseMismatch {
                    netns,
                    ip: l.ip,
                    bridge,
                })
            }
            (_, Some(l)) => l.ip,
            (Some(ip), None) => {
                if !subnet.is_host(ip) || ip == gateway {
                    return Err(ControlError::BadAddress { ip, subnet, gateway });
                }
                ip
            }
            (None, None) => subnet
                .hosts()
                .find(|h| *h != gateway && !br.leases.iter().any(|l| l.ip == *h))
                .ok_or(ControlError::SubnetFull(subnet))?,
        };
        let port = match &lease {
            Some(l) => l.port.clone(),
            None => self.attach_port_name(&bridge, &netns),
        };
        let config = self.port_config(NewPort::into_netns(&bridge, &port, kind, &netns, &ifname))?;
        self.commit(|txn| {
            if lease.is_none() {
                txn.bridge_mut(&bridge)?.leases.push(Lease {
                    ip,
                    netns: netns.clone(),
                    port: port.clone(),
                });
            }
            // Validates the lease with the port, before the device exists.
            txn.add_port(&bridge, config)?;
            configure_address(&netns, &ifname, ip, subnet.prefix(), gateway).map_err(ControlError::Address)
        })?;
        info!(bridge = %bridge, netns = %netns, %ip, port = %port, "namespace attached");
        Ok(AttachInfo {
            port,
            ip,
            prefix: subnet.prefix(),
            gateway,
        })
    }

    /// A port name for an attached namespace: short enough for an interface
    /// of the host namespace (AF_XDP names its veth after it), unique.
    fn attach_port_name(&self, bridge: &str, netns: &str) -> String {
        let base = fnv1a(format!("{bridge}/{netns}").as_bytes());
        (0u32..)
            .map(|n| format!("vsa{:08x}", base.wrapping_add(n)))
            .find(|name| {
                self.desired.port(name).is_none()
                    && !self
                        .desired
                        .bridges
                        .iter()
                        .any(|b| b.leases.iter().any(|l| &l.port == name))
            })
            .unwrap_or_else(|| format!("vsa{base:08x}"))
    }

    /// Removes the namespace's port, releases its address and forgets its
    /// connections.
    pub(super) fn detach(&mut self, bridge: &str, netns: &str) -> Result<(), ControlError> {
        let Some(lease) = self.bridge(bridge)?.leases.iter().find(|l| l.netns == netns).cloned() else {
            return Err(ControlError::NotAttached {
                netns: netns.to_string(),
                bridge: bridge.to_string(),
            });
        };
        let zone = self.zone(bridge)?;
        self.commit(|txn| {
            let br = txn.bridge_mut(bridge)?;
            br.ports.retain(|p| p.name != lease.port);
            br.leases.retain(|l| l.netns != netns);
            Ok(())
        })?;
        // A container that comes back must not meet its old connections
        // (stale UDP entries are a known pain of the kernel model).
        let flushed = self
            .ct
            .flush(|c| c.orig.zone == zone && (c.orig.src == lease.ip || c.reply.src == lease.ip));
        info!(bridge = %bridge, netns = %netns, ip = %lease.ip, flushed, "namespace detached");
        Ok(())
    }
}

/// Puts `ip/prefix` on `ifname` in `netns`, with a default route via
/// `gateway`, through netlink from inside the namespace.
pub(super) fn configure_address(
    netns: &str,
    ifname: &str,
    ip: Ipv4Addr,
    prefix: u8,
    gateway: Ipv4Addr,
) -> Result<(), NetnsError> {
    netns::run_in(netns, || {
        let index = nix::net::if_::if_nametoindex(ifname).map_err(std::io::Error::from)?;
        netlink::add_address(index, ip, prefix)?;
        netlink::set_default_route(index, gateway)
    })
}
