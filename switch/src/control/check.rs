//! `vsctl check-policy`: what the policies would do to a new connection
//! between two parties, and which policy and rule decide, without sending
//! anything. The answer is the datapath's (`pipeline::policy`): the same
//! compiler over the same attachments, the same order of questions (the
//! gateway passes; a bridge with icc off keeps its attachments apart; the
//! opener's egress and the acceptor's ingress must both allow).

use std::net::Ipv4Addr;

use vswitch_ctl::req::{self, Party};
use vswitch_ctl::{PolicyCheck, SideCheck};
use vswitch_policy::compile::{compile, Member, Verdict};
use vswitch_policy::Direction;

use super::config::{BridgeConfig, Lease};
use super::{ControlError, Manager};

/// A party found: its address, and its attachment (lease index) if any.
struct Found {
    ip: Ipv4Addr,
    lease: Option<usize>,
    label: String,
}

impl Manager {
    pub(super) fn check_policy(&self, r: &req::CheckPolicy) -> Result<PolicyCheck, ControlError> {
        let leases: Vec<(&BridgeConfig, &Lease)> = (self.desired.bridges.iter())
            .flat_map(|b| b.leases.iter().map(move |l| (b, l)))
            .collect();
        let from = find(&leases, &r.from)?;
        let to = find(&leases, &r.to)?;
        let gateway = |ip: Ipv4Addr| self.desired.bridges.iter().any(|b| b.gateway == Some(ip));
        let members: Vec<Member> = (leases.iter())
            .map(|(_, l)| Member {
                namespace: l.namespace(),
                labels: &l.labels,
                addr: l.ip,
            })
            .collect();
        let compiled = compile(&self.desired.policies, &self.desired.namespaces, &members);
        let side = |who: &Found, dir: Direction, peer: Ipv4Addr| {
            who.lease.map(|i| {
                let (_, lease) = leases[i];
                let name_of = |p: u32| {
                    self.desired
                        .policies
                        .get(p as usize)
                        .map(|p| p.key())
                        .unwrap_or_default()
                };
                let (allowed, allowed_by) = match compiled.verdict(i, dir, peer, r.protocol, r.port) {
                    Verdict::Open => (true, None),
                    Verdict::Allowed(rule) => (true, Some((name_of(rule.policy), rule.rule))),
                    Verdict::Denied => (false, None),
                };
                SideCheck {
                    attachment: format!("{}/{}", lease.namespace(), lease.name()),
                    isolated_by: compiled.endpoint(i).policies(dir).map(name_of).collect(),
                    allowed,
                    allowed_by,
                }
            })
        };
        let egress = side(&from, Direction::Egress, to.ip);
        let ingress = side(&to, Direction::Ingress, from.ip);
        let apart = match (from.lease, to.lease) {
            (Some(a), Some(b)) => {
                let (ba, bb) = (leases[a].0, leases[b].0);
                (ba.name == bb.name && !ba.icc).then(|| {
                    format!(
                        "bridge {} has icc off: its attachments do not reach each other",
                        ba.name
                    )
                })
            }
            _ => None,
        };
        let (allowed, note) = if gateway(from.ip) || gateway(to.ip) {
            (
                true,
                Some("the gateway (the node) is never subject to policy".to_string()),
            )
        } else if apart.is_some() {
            (false, apart)
        } else {
            let allows = |s: &Option<SideCheck>| s.as_ref().is_none_or(|s| s.allowed);
            (allows(&egress) && allows(&ingress), None)
        };
        Ok(PolicyCheck {
            allowed,
            from: from.label,
            to: to.label,
            protocol: r.protocol,
            port: r.port,
            egress,
            ingress,
            note,
        })
    }
}

/// Finds `party` among the leases: an attachment by name must exist; an
/// address may be anyone's.
fn find(leases: &[(&BridgeConfig, &Lease)], party: &Party) -> Result<Found, ControlError> {
    let named = |i: usize| {
        let l = leases[i].1;
        format!("{}/{} ({})", l.namespace(), l.name(), l.ip)
    };
    match party {
        Party::Attachment { namespace, name } => {
            let i = (leases.iter())
                .position(|(_, l)| l.namespace() == namespace && l.name() == name)
                .ok_or_else(|| ControlError::NoAttachment {
                    namespace: namespace.clone(),
                    name: name.clone(),
                })?;
            Ok(Found {
                ip: leases[i].1.ip,
                lease: Some(i),
                label: named(i),
            })
        }
        Party::Address(ip) => {
            let i = leases.iter().position(|(_, l)| l.ip == *ip);
            Ok(Found {
                ip: *ip,
                lease: i,
                label: i.map_or_else(|| ip.to_string(), named),
            })
        }
    }
}
