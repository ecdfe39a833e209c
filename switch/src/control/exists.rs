//! `--may-exist` and `--if-exists` (ovs-vsctl's habits for scripts that
//! may run twice): a request that asks for one and finds its object
//! already there (or already gone) is done, with nothing changed and no
//! error. Decided on the desired state before the request's handler runs,
//! so inside a transaction the requests before it count.
//!
//! What "already there" means is strict: the same object at the same
//! place (a port of that name on that bridge, a tunnel with that VNI, a
//! rule to that target); one of the same name elsewhere or with other
//! settings still goes to the handler, which refuses it with the reason.

use vswitch_ctl::Request;

use super::config::{BridgeConfig, Published};
use super::Manager;

impl Manager {
    /// True when `request` asks `--may-exist`/`--if-exists` and has nothing to do.
    pub(super) fn nothing_to_do(&self, request: &Request) -> bool {
        let state = &self.desired;
        let bridge = |name: &str| state.bridge(name);
        let on = |name: &str, test: &dyn Fn(&BridgeConfig) -> bool| bridge(name).is_some_and(test);
        match request {
            Request::AddBr(r) => r.may_exist && bridge(&r.name).is_some(),
            Request::AddPort(r) => r.may_exist && state.port(&r.name).is_some_and(|(b, _)| b.name == r.bridge),
            Request::AddUplink(r) => {
                r.may_exist && on(&r.bridge, &|b| b.uplink.as_ref().is_some_and(|u| u.iface == r.iface))
            }
            Request::AddVxlan(r) => r.may_exist && on(&r.bridge, &|b| b.vxlan.as_ref().is_some_and(|t| t.vni == r.vni)),
            Request::Publish(r) => {
                let rule = Published::from(r.rule);
                r.may_exist && on(&r.bridge, &|b| b.published.contains(&rule))
            }
            Request::DelBr(r) => r.if_exists && bridge(&r.name).is_none(),
            Request::DelPort(r) => r.if_exists && !on(&r.bridge, &|b| b.ports.iter().any(|p| p.name == r.name)),
            Request::DelUplink(r) => r.if_exists && !on(&r.bridge, &|b| b.uplink.is_some()),
            Request::DelVxlan(r) => r.if_exists && !on(&r.bridge, &|b| b.vxlan.is_some()),
            Request::DelVtep(r) => {
                r.if_exists
                    && !on(&r.bridge, &|b| {
                        b.vxlan.as_ref().is_some_and(|t| t.remotes.contains(&r.ip))
                    })
            }
            Request::FdbDel(r) => {
                let has = |b: &BridgeConfig| {
                    b.vxlan
                        .as_ref()
                        .is_some_and(|t| t.static_macs.iter().any(|(m, _)| *m == r.mac))
                };
                r.if_exists && !on(&r.bridge, &has)
            }
            Request::Detach(r) => r.if_exists && !on(&r.bridge, &|b| b.leases.iter().any(|l| l.netns == r.netns)),
            Request::Unpublish(r) => {
                let proto = r.proto.into();
                r.if_exists
                    && !on(&r.bridge, &|b| {
                        b.published.iter().any(|p| p.proto == proto && p.port == r.port)
                    })
            }
            _ => false,
        }
    }
}
