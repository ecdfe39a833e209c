//! Start-up: the live switch rebuilt from the saved desired state, before
//! the first frame is forwarded and before the control socket answers.
//!
//! Nothing is saved here: the state is the one read from disk. A port that
//! cannot be recreated (its namespace is gone, say) is kept in the
//! configuration and shown with the reason; `del-port` removes it.

use std::sync::Arc;

use tracing::{info, warn};

use super::attach::{configure_address, overlay_mtu};
use super::config::PortKind;
use super::ports::{configure_internal, open_port_io, open_uplink_io, route_uplink_via_internal};
use super::{error_chain, ControlError, Manager, NotLive};
use crate::port::{LivePort, PortIo};

impl Manager {
    /// Builds the live switch from the desired state read at start-up. A port
    /// that cannot be recreated (its namespace is gone, say) is reported and
    /// kept in the configuration, marked with the reason.
    pub fn restore(&mut self) {
        // Taken out while the live objects are built, put back to publish.
        let desired = std::mem::take(&mut self.desired);
        for br in &desired.bridges {
            self.start_bridge(br);
            for port in &br.ports {
                let opened = open_port_io(port, true).map_err(|source| ControlError::CreatePort {
                    port: port.name.clone(),
                    source,
                });
                let live = self.restored(&port.name, &br.name, opened.map(|(io, _)| io));
                self.insert_entry(port.name.clone(), br.name.clone(), live, false);
            }
        }
        for br in &desired.bridges {
            let Some(cfg) = &br.uplink else { continue };
            let live = self.restored(&cfg.iface, &br.name, open_uplink_io(cfg).map(|(io, _)| io));
            self.insert_entry(cfg.iface.clone(), br.name.clone(), live, true);
        }
        for br in &desired.bridges {
            let (Some(subnet), Some(gateway)) = (br.subnet, br.gateway) else {
                continue;
            };
            for port in br.ports.iter().filter(|p| p.port_type == PortKind::Internal) {
                if self.ports.get(&port.name).is_some_and(|p| p.live.is_ok()) {
                    if let Err(err) = configure_internal(&port.ifname, gateway, subnet.prefix_len()) {
                        warn!(port = %port.name, %err, "gateway address not restored on the internal port");
                    }
                }
            }
        }
        // Attached containers get their addresses back (a TAP device is new
        // after a restart; a veth kept them, and adding them again is harmless).
        for br in &desired.bridges {
            let (Some(subnet), Some(gateway)) = (br.subnet, br.gateway) else {
                continue;
            };
            for lease in &br.leases {
                let live = self.ports.get(&lease.port).is_some_and(|p| p.live.is_ok());
                let Some(port) = br.ports.iter().find(|p| p.name == lease.port).filter(|_| live) else {
                    continue;
                };
                let mtu = overlay_mtu(&desired, &br.name);
                let route = (!lease.no_default_route).then_some(gateway);
                if let Err(err) =
                    configure_address(&lease.netns, &port.ifname, lease.ip, subnet.prefix_len(), route, mtu)
                {
                    warn!(netns = %lease.netns, ip = %lease.ip, error = %error_chain(&err), "address not restored");
                }
            }
        }
        for br in &desired.bridges {
            route_uplink_via_internal(br);
        }
        let up = self.ports.values().filter(|p| p.live.is_ok()).count();
        info!(
            bridges = desired.bridges.len(),
            ports = self.ports.len(),
            up,
            "configuration restored"
        );
        self.desired = desired;
        // Connections come back before the first frame is forwarded.
        self.load_conntrack(self.pickup);
        self.publish();
    }

    /// A restored port's device, live, or why it is not (logged).
    fn restored(
        &mut self,
        name: &str,
        bridge: &str,
        opened: Result<Box<dyn PortIo>, ControlError>,
    ) -> Result<Arc<LivePort>, NotLive> {
        match opened {
            Ok(io) => Ok(self.make_live(name.to_string(), io)),
            Err(err) => {
                let msg = error_chain(&err);
                warn!(port = %name, bridge = %bridge, error = %msg, "port not restored");
                Err(NotLive::NotRestored(msg))
            }
        }
    }
}
