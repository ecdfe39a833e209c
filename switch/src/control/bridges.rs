//! Bridges: `add-br`, `del-br`, `link-br` and `unlink-br`.

use tracing::info;
use vswitch_ctl::{check_subnet, req, SubnetExt};

use super::config::{BridgeConfig, Shared, DEFAULT_AGING_SECS, DEFAULT_MAX_MACS};
use super::ipam::next_free;
use super::validate::valid_name;
use super::{ControlError, Manager};

const MAX_AGING_SECS: u64 = 1_000_000;
const MAX_MACS_LIMIT: usize = 1 << 20;
const MAX_BRIDGE_NAME: usize = 32;

/// `value`, or an error naming `what` and the range it must be in.
fn in_range(what: &'static str, value: u64, min: u64, max: u64) -> Result<u64, ControlError> {
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(ControlError::OutOfRange { what, value, min, max })
    }
}

impl Manager {
    pub(super) fn add_br(&mut self, request: req::AddBr) -> Result<(), ControlError> {
        let req::AddBr {
            may_exist: _,
            name,
            aging_secs,
            max_macs,
            subnet,
            gateway,
            ip_range,
            uplink_via,
            icc,
        } = request;
        if uplink_via.is_some() && subnet.is_none() {
            return Err(ControlError::Option("--uplink-via needs --subnet"));
        }
        if gateway.is_some() && subnet.is_none() {
            return Err(ControlError::Option("--gateway needs --subnet"));
        }
        if ip_range.is_some() && subnet.is_none() {
            return Err(ControlError::Option("--ip-range needs --subnet"));
        }
        if !valid_name(&name, MAX_BRIDGE_NAME) {
            return Err(ControlError::BadBridgeName(name));
        }
        let aging_secs = in_range("aging", aging_secs.unwrap_or(DEFAULT_AGING_SECS), 1, MAX_AGING_SECS)?;
        let max_macs = max_macs.unwrap_or(DEFAULT_MAX_MACS);
        in_range("max-macs", max_macs as u64, 1, MAX_MACS_LIMIT as u64)?;
        let gateway = match subnet {
            Some(net) => {
                // What a client other than vsctl sends is held to what
                // vsctl's parser asks (ipnet accepts host bits, any prefix).
                check_subnet(&net)?;
                if let Some(range) = &ip_range {
                    check_subnet(range)?;
                }
                let gw = gateway.unwrap_or_else(|| net.first_host());
                if !net.is_host(gw) {
                    return Err(ControlError::BadGateway {
                        gateway: gw,
                        subnet: net,
                    });
                }
                if let Some(range) = ip_range {
                    if !net.contains(&range) || next_free(net, Some(range), gw, &[]).is_none() {
                        return Err(ControlError::BadIpRange { range, subnet: net });
                    }
                }
                Some(gw)
            }
            None => None,
        };
        let config = BridgeConfig {
            name: name.clone(),
            aging_secs,
            max_macs,
            icc: icc.unwrap_or(true),
            ports: Shared::default(),
            subnet,
            gateway,
            ip_range,
            leases: Shared::default(),
            uplink: None,
            masquerade: false,
            published: Shared::default(),
            vxlan: None,
            uplink_via,
        };
        self.commit(|txn| {
            txn.desired.bridges.push(config);
            Ok(())
        })?;
        info!(bridge = %name, aging_secs, max_macs, "bridge added");
        Ok(())
    }

    /// `set bridge`: the settings it names, checked as `add-br` checks
    /// them; the FDB takes its new limits when the change is applied.
    pub(super) fn set_bridge(&mut self, request: req::SetBridge) -> Result<(), ControlError> {
        let req::SetBridge {
            name,
            aging_secs,
            max_macs,
            icc,
        } = request;
        self.bridge(&name)?;
        if aging_secs.is_none() && max_macs.is_none() && icc.is_none() {
            return Err(ControlError::Option(
                "set bridge: nothing to set (aging=SECS, max-macs=N, icc=true|false)",
            ));
        }
        if let Some(aging) = aging_secs {
            in_range("aging", aging, 1, MAX_AGING_SECS)?;
        }
        if let Some(max) = max_macs {
            in_range("max-macs", max as u64, 1, MAX_MACS_LIMIT as u64)?;
        }
        self.commit(|txn| {
            let br = txn.bridge_mut(&name)?;
            br.aging_secs = aging_secs.unwrap_or(br.aging_secs);
            br.max_macs = max_macs.unwrap_or(br.max_macs);
            br.icc = icc.unwrap_or(br.icc);
            Ok(())
        })?;
        info!(bridge = %name, ?aging_secs, ?max_macs, ?icc, "bridge settings changed");
        Ok(())
    }

    /// Removes the bridge with its ports, uplink, links and connections.
    pub(super) fn del_br(&mut self, name: &str) -> Result<(), ControlError> {
        let ports = self.bridge(name)?.ports.len();
        self.commit(|txn| {
            txn.desired.bridges.retain(|b| b.name != name);
            txn.desired.links.retain(|(a, b)| a != name && b != name);
            Ok(())
        })?;
        info!(bridge = %name, ports, "bridge deleted");
        Ok(())
    }

    /// Routes between two bridges (`link`), or stops it.
    pub(super) fn link_br(&mut self, a: &str, b: &str, link: bool) -> Result<(), ControlError> {
        for name in [a, b] {
            self.routed_bridge(name)?;
        }
        if a == b {
            return Err(ControlError::SelfLink);
        }
        if self.desired.linked(a, b) == link {
            return Ok(());
        }
        self.commit(|txn| {
            let links = &mut txn.desired.links;
            if link {
                links.push((a.to_string(), b.to_string()));
            } else {
                links.retain(|(x, y)| !((x == a && y == b) || (x == b && y == a)));
            }
            Ok(())
        })?;
        info!(a, b, link, "bridge link changed");
        Ok(())
    }
}
