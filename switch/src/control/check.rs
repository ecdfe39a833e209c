//! `vsctl check-policy`, and the policy line of `vsctl trace`: what the
//! policies would do to a new connection between two parties, and which
//! policy and rule decide, without sending anything. The answer is the
//! datapath's (`pipeline::policy`): the same compiler over the same
//! attachments, the same order of questions (the gateway passes; a bridge
//! with icc off keeps its attachments apart; the opener's egress and the
//! acceptor's ingress must both allow).

use std::net::Ipv4Addr;

use vswitch_ctl::req;
use vswitch_ctl::{PolicyCheck, SideCheck};
use vswitch_policy::compile::{compile, Compiled, Member, Verdict};
use vswitch_policy::Direction;

use super::config::{BridgeConfig, DesiredState, Lease};
use super::{ControlError, Manager};

/// A party found: its address, and its attachment (lease index) if any.
pub(super) struct Found {
    ip: Ipv4Addr,
    lease: Option<usize>,
    label: String,
}

/// An attachment as the judge knows it: this host's (with its bridge) or
/// another host's of the cluster.
struct Party<'a> {
    bridge: Option<&'a BridgeConfig>,
    namespace: &'a str,
    name: &'a str,
    ip: Ipv4Addr,
    labels: &'a vswitch_policy::model::Labels,
    /// The other host it is on.
    node: Option<&'a str>,
}

/// The policies compiled against every attachment (this host's, then the
/// other hosts'), to ask about connections one after the other.
pub(super) struct Judge<'a> {
    desired: &'a DesiredState,
    leases: Vec<Party<'a>>,
    compiled: Compiled,
}

impl Manager {
    pub(super) fn check_policy(&self, r: &req::CheckPolicy) -> Result<PolicyCheck, ControlError> {
        let judge = Judge::new(&self.desired);
        let (from, to) = (judge.find(&r.from)?, judge.find(&r.to)?);
        Ok(judge.check(from, to, r.protocol, r.port))
    }
}

impl<'a> Judge<'a> {
    pub(super) fn new(desired: &'a DesiredState) -> Judge<'a> {
        let local = (desired.bridges.iter()).flat_map(|b| {
            b.leases.iter().map(move |l: &Lease| Party {
                bridge: Some(b),
                namespace: l.namespace(),
                name: l.name(),
                ip: l.ip,
                labels: &l.labels,
                node: None,
            })
        });
        let remote = desired.remote_members.iter().map(|m| Party {
            bridge: None,
            namespace: &m.namespace,
            name: &m.name,
            ip: m.ip,
            labels: &m.labels,
            node: Some(&m.node),
        });
        let leases: Vec<Party> = local.chain(remote).collect();
        let members: Vec<Member> = (leases.iter())
            .map(|p| Member {
                namespace: p.namespace,
                labels: p.labels,
                addr: p.ip,
            })
            .collect();
        let compiled = compile(&desired.policies, &desired.namespaces, &members);
        Judge {
            desired,
            leases,
            compiled,
        }
    }

    /// Finds `party` among the attachments: one by name must exist; an
    /// address may be anyone's.
    pub(super) fn find(&self, party: &req::Party) -> Result<Found, ControlError> {
        match party {
            req::Party::Attachment { namespace, name } => {
                let i = (self.leases.iter())
                    .position(|p| p.namespace == namespace && p.name == name)
                    .ok_or_else(|| ControlError::NoAttachment {
                        namespace: namespace.clone(),
                        name: name.clone(),
                    })?;
                Ok(self.found(self.leases[i].ip, Some(i)))
            }
            req::Party::Address(ip) => Ok(self.address(*ip)),
        }
    }

    /// Whoever has address `ip`.
    pub(super) fn address(&self, ip: Ipv4Addr) -> Found {
        self.found(ip, self.leases.iter().position(|p| p.ip == ip))
    }

    fn found(&self, ip: Ipv4Addr, lease: Option<usize>) -> Found {
        let label = lease.map_or_else(
            || ip.to_string(),
            |i| {
                let p = &self.leases[i];
                match p.node {
                    Some(node) => format!("{}/{} ({ip}, on {node})", p.namespace, p.name),
                    None => format!("{}/{} ({ip})", p.namespace, p.name),
                }
            },
        );
        Found { ip, lease, label }
    }

    /// A new connection from `from` to `to`'s `port` over IP protocol
    /// `protocol`.
    pub(super) fn check(&self, from: Found, to: Found, protocol: u8, port: u16) -> PolicyCheck {
        let egress = self.side(&from, Direction::Egress, to.ip, protocol, port);
        let ingress = self.side(&to, Direction::Ingress, from.ip, protocol, port);
        let gateway = |ip: Ipv4Addr| self.desired.bridges.iter().any(|b| b.gateway == Some(ip));
        let apart = match (from.lease, to.lease) {
            (Some(a), Some(b)) => match (self.leases[a].bridge, self.leases[b].bridge) {
                (Some(ba), Some(bb)) => (ba.name == bb.name && !ba.icc).then(|| {
                    format!(
                        "bridge {} has icc off: its attachments do not reach each other",
                        ba.name
                    )
                }),
                _ => None,
            },
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
        PolicyCheck {
            allowed,
            from: from.label,
            to: to.label,
            protocol,
            port,
            egress,
            ingress,
            note,
        }
    }

    fn side(&self, who: &Found, dir: Direction, peer: Ipv4Addr, protocol: u8, port: u16) -> Option<SideCheck> {
        let i = who.lease?;
        let party = &self.leases[i];
        let name_of = |p: u32| (self.desired.policies.get(p as usize)).map_or_else(String::new, |p| p.key());
        let (allowed, allowed_by) = match self.compiled.verdict(i, dir, peer, protocol, port) {
            Verdict::Open => (true, None),
            Verdict::Allowed(rule) => (true, Some((name_of(rule.policy), rule.rule))),
            Verdict::Denied => (false, None),
        };
        Some(SideCheck {
            attachment: format!("{}/{}", party.namespace, party.name),
            isolated_by: self.compiled.endpoint(i).policies(dir).map(name_of).collect(),
            allowed,
            allowed_by,
        })
    }
}

/// One line for a trace: the verdict and what decided it.
pub(super) fn summary(c: &PolicyCheck) -> String {
    if let Some(note) = &c.note {
        let verdict = if c.allowed { "allowed" } else { "denied" };
        return format!("{verdict}: {note}");
    }
    let mut why = Vec::new();
    for (dir, side) in [("egress", &c.egress), ("ingress", &c.ingress)] {
        let Some(s) = side else { continue };
        match (&s.allowed_by, s.isolated_by.is_empty()) {
            (_, true) => {}
            (Some((policy, rule)), false) => why.push(format!("{dir} of {} by {policy} rule {rule}", s.attachment)),
            (None, false) => why.push(format!(
                "{dir} of {}: isolated by {}, no rule allows it",
                s.attachment,
                s.isolated_by.join(", ")
            )),
        }
    }
    match (c.allowed, why.is_empty()) {
        (true, true) => "allowed: no policy isolates either end".to_string(),
        (true, false) => format!("allowed: {}", why.join("; ")),
        (false, _) => format!("denied: {}", why.join("; ")),
    }
}
