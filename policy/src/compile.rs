//! Policies resolved against the attachments: per attachment and direction,
//! the policies that isolate it, each compiled once into a table keyed by
//! the peer's identity.
//!
//! An identity is a distinct (namespace, labels) pair, numbered in the
//! order met. A `Pods` peer becomes the set of identities it matches, so
//! at verdict time the peer's address gives its identity and the identity
//! gives the port ranges allowed; address blocks and "any peer" rules are
//! scanned beside it. A policy's table is shared (`Arc`) by every
//! attachment it selects: a thousand attachments under one policy hold one
//! table.
//!
//! Verdicts are asked once per new connection (the switch's connection
//! table remembers them), so a few short linear scans are the right size;
//! the identity map is a hash lookup.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use hashbrown::HashMap;
use ipnet::Ipv4Net;

use crate::model::{Direction, Labels, Peer, Policy, PortMatch, Protocol, NAMESPACE_NAME_LABEL};

/// IP protocol numbers a verdict is asked for.
pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_SCTP: u8 = 132;

impl Protocol {
    pub fn number(self) -> u8 {
        match self {
            Protocol::Tcp => IPPROTO_TCP,
            Protocol::Udp => IPPROTO_UDP,
            Protocol::Sctp => IPPROTO_SCTP,
        }
    }
}

/// One attachment, local or on another host: what selectors see of it.
#[derive(Clone, Copy, Debug)]
pub struct Member<'a> {
    pub namespace: &'a str,
    pub labels: &'a Labels,
    pub addr: Ipv4Addr,
}

/// Which rule allowed a connection: `policy` indexes the slice given to
/// [`compile`], `rule` that policy's rules of the direction asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RuleRef {
    pub policy: u32,
    pub rule: u16,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// No policy isolates the attachment in this direction.
    Open,
    Allowed(RuleRef),
    /// Isolated, and no rule of any policy selecting it allows this.
    Denied,
}

impl Verdict {
    pub fn allows(self) -> bool {
        !matches!(self, Verdict::Denied)
    }
}

#[derive(Clone, Copy, Debug)]
struct PortEntry {
    protocol: u8,
    lo: u16,
    hi: u16,
    rule: u16,
}

/// The ports one peer may use: `any` when a rule gave no ports (every
/// protocol, ICMP included), else protocol and port ranges.
#[derive(Clone, Debug, Default)]
struct PortTable {
    any: Option<u16>,
    entries: Vec<PortEntry>,
}

impl PortTable {
    fn add(&mut self, rule: u16, ports: &[PortMatch]) {
        if ports.is_empty() {
            self.any.get_or_insert(rule);
            return;
        }
        for p in ports {
            let (lo, hi) = p.range();
            self.entries.push(PortEntry {
                protocol: p.protocol.number(),
                lo,
                hi,
                rule,
            });
        }
    }

    fn find(&self, protocol: u8, port: u16) -> Option<u16> {
        self.any.or_else(|| {
            self.entries
                .iter()
                .find(|e| e.protocol == protocol && (e.lo..=e.hi).contains(&port))
                .map(|e| e.rule)
        })
    }
}

#[derive(Clone, Debug)]
struct Block {
    net: Ipv4Net,
    except: Vec<Ipv4Net>,
    ports: PortTable,
}

/// One policy's rules of one direction, with every selector resolved.
#[derive(Debug)]
pub struct PolicyTable {
    policy: u32,
    any_peer: PortTable,
    by_identity: HashMap<u32, PortTable>,
    blocks: Vec<Block>,
}

impl PolicyTable {
    fn find(&self, peer: Ipv4Addr, identity: Option<u32>, protocol: u8, port: u16) -> Option<RuleRef> {
        let rule = self
            .any_peer
            .find(protocol, port)
            .or_else(|| identity.and_then(|id| self.by_identity.get(&id)?.find(protocol, port)))
            .or_else(|| {
                self.blocks
                    .iter()
                    .filter(|b| b.net.contains(&peer) && !b.except.iter().any(|e| e.contains(&peer)))
                    .find_map(|b| b.ports.find(protocol, port))
            })?;
        Some(RuleRef {
            policy: self.policy,
            rule,
        })
    }
}

/// What isolates one attachment: per direction, `None` when no policy
/// selecting it names that direction, else the tables of those that do
/// (possibly allowing nothing).
#[derive(Clone, Debug, Default)]
pub struct EndpointRules {
    ingress: Option<Vec<Arc<PolicyTable>>>,
    egress: Option<Vec<Arc<PolicyTable>>>,
}

impl EndpointRules {
    fn side(&self, dir: Direction) -> Option<&[Arc<PolicyTable>]> {
        match dir {
            Direction::Ingress => self.ingress.as_deref(),
            Direction::Egress => self.egress.as_deref(),
        }
    }

    pub fn isolated(&self, dir: Direction) -> bool {
        self.side(dir).is_some()
    }

    /// The indices of the policies isolating it in `dir`.
    pub fn policies(&self, dir: Direction) -> impl Iterator<Item = u32> + '_ {
        self.side(dir).into_iter().flatten().map(|t| t.policy)
    }
}

/// Every policy resolved against every member.
#[derive(Debug, Default)]
pub struct Compiled {
    endpoints: Vec<EndpointRules>,
    /// A member's address to its identity; `None` when members of
    /// different identities share the address (overlapping subnets on
    /// unrouted bridges): such a peer is matched by address blocks only.
    identities: HashMap<Ipv4Addr, Option<u32>>,
    identity_count: usize,
}

impl Compiled {
    /// The rules of the member at `index` in the slice given to [`compile`].
    pub fn endpoint(&self, index: usize) -> &EndpointRules {
        static OPEN: EndpointRules = EndpointRules {
            ingress: None,
            egress: None,
        };
        self.endpoints.get(index).unwrap_or(&OPEN)
    }

    pub fn identity(&self, addr: Ipv4Addr) -> Option<u32> {
        self.identities.get(&addr).copied().flatten()
    }

    pub fn identity_count(&self) -> usize {
        self.identity_count
    }

    /// Whether any member is isolated in any direction: when not, the
    /// switch skips its policy stages.
    pub fn any_isolated(&self) -> bool {
        self.endpoints.iter().any(|e| e.ingress.is_some() || e.egress.is_some())
    }

    /// May a connection between member `index` and `peer` go, `dir` saying
    /// who opened it (`Egress`: the member)? `port` is the destination
    /// port of the connection's first packet (0 for ICMP).
    pub fn verdict(&self, index: usize, dir: Direction, peer: Ipv4Addr, protocol: u8, port: u16) -> Verdict {
        let Some(tables) = self.endpoint(index).side(dir) else {
            return Verdict::Open;
        };
        let identity = self.identity(peer);
        tables
            .iter()
            .find_map(|t| t.find(peer, identity, protocol, port))
            .map_or(Verdict::Denied, Verdict::Allowed)
    }
}

/// Resolves `policies` against `members`. `namespaces` holds the labels
/// users gave namespaces; every namespace also carries
/// `kubernetes.io/metadata.name` with its name, whether labelled or not.
pub fn compile(policies: &[Policy], namespaces: &BTreeMap<String, Labels>, members: &[Member<'_>]) -> Compiled {
    // Identities, in the order met.
    let mut ids: HashMap<(&str, &Labels), u32> = HashMap::new();
    let mut by_id: Vec<(&str, &Labels)> = Vec::new();
    let member_ids: Vec<u32> = members
        .iter()
        .map(|m| {
            *ids.entry((m.namespace, m.labels)).or_insert_with(|| {
                by_id.push((m.namespace, m.labels));
                (by_id.len() - 1) as u32
            })
        })
        .collect();
    let mut identities: HashMap<Ipv4Addr, Option<u32>> = HashMap::new();
    for (m, &id) in members.iter().zip(&member_ids) {
        identities
            .entry(m.addr)
            .and_modify(|known| {
                if *known != Some(id) {
                    *known = None;
                }
            })
            .or_insert(Some(id));
    }
    let ns_labels = |name: &str| -> Labels {
        let mut labels = namespaces.get(name).cloned().unwrap_or_default();
        labels.insert(NAMESPACE_NAME_LABEL.to_string(), name.to_string());
        labels
    };
    let ns_cache: BTreeMap<&str, Labels> = by_id.iter().map(|(ns, _)| (*ns, ns_labels(ns))).collect();

    let mut endpoints = vec![EndpointRules::default(); members.len()];
    for (pi, policy) in policies.iter().enumerate() {
        let selected: Vec<usize> = members
            .iter()
            .enumerate()
            .filter(|(_, m)| m.namespace == policy.namespace && policy.pod_selector.matches(m.labels))
            .map(|(i, _)| i)
            .collect();
        for dir in [Direction::Ingress, Direction::Egress] {
            let Some(rules) = policy.rules(dir) else { continue };
            let table = Arc::new(table(pi as u32, policy, rules, &by_id, &ns_cache));
            for &i in &selected {
                let side = match dir {
                    Direction::Ingress => &mut endpoints[i].ingress,
                    Direction::Egress => &mut endpoints[i].egress,
                };
                side.get_or_insert_with(Vec::new).push(table.clone());
            }
        }
    }
    Compiled {
        endpoints,
        identities,
        identity_count: by_id.len(),
    }
}

fn table(
    policy_index: u32,
    policy: &Policy,
    rules: &[crate::model::Rule],
    by_id: &[(&str, &Labels)],
    ns_labels: &BTreeMap<&str, Labels>,
) -> PolicyTable {
    let mut t = PolicyTable {
        policy: policy_index,
        any_peer: PortTable::default(),
        by_identity: HashMap::new(),
        blocks: Vec::new(),
    };
    for (ri, rule) in rules.iter().enumerate() {
        let ri = ri as u16;
        if rule.peers.is_empty() {
            t.any_peer.add(ri, &rule.ports);
            continue;
        }
        for peer in &rule.peers {
            match peer {
                Peer::Pods { pods, namespaces } => {
                    for (id, (ns, labels)) in by_id.iter().enumerate() {
                        let ns_ok = match namespaces {
                            None => *ns == policy.namespace,
                            Some(sel) => ns_labels.get(ns).is_some_and(|l| sel.matches(l)),
                        };
                        if ns_ok && pods.as_ref().is_none_or(|sel| sel.matches(labels)) {
                            t.by_identity.entry(id as u32).or_default().add(ri, &rule.ports);
                        }
                    }
                }
                Peer::Block { cidr, except } => {
                    let mut ports = PortTable::default();
                    ports.add(ri, &rule.ports);
                    t.blocks.push(Block {
                        net: *cidr,
                        except: except.clone(),
                        ports,
                    });
                }
            }
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Rule, Selector};

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn select(pairs: &[(&str, &str)]) -> Selector {
        Selector {
            match_labels: labels(pairs),
            ..Default::default()
        }
    }

    fn policy(ns: &str, name: &str, pod_selector: Selector) -> Policy {
        Policy {
            namespace: ns.into(),
            name: name.into(),
            pod_selector,
            ingress: None,
            egress: None,
        }
    }

    fn tcp(port: u16) -> PortMatch {
        PortMatch {
            protocol: Protocol::Tcp,
            port: Some(port),
            end_port: None,
        }
    }

    fn pods(sel: Selector) -> Peer {
        Peer::Pods {
            pods: Some(sel),
            namespaces: None,
        }
    }

    const WEB: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
    const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 3);
    const OTHER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 4);
    const PROD_CLIENT: Ipv4Addr = Ipv4Addr::new(10, 0, 1, 3);
    const OUTSIDE: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 9);

    /// web, client and other in `default`; a client in `prod`.
    struct World {
        labels: Vec<Labels>,
        namespaces: BTreeMap<String, Labels>,
    }

    impl World {
        fn new() -> World {
            World {
                labels: vec![
                    labels(&[("app", "web")]),
                    labels(&[("app", "client")]),
                    labels(&[("app", "other")]),
                    labels(&[("app", "client")]),
                ],
                namespaces: [("prod".to_string(), labels(&[("env", "prod")]))].into(),
            }
        }

        fn compile(&self, policies: &[Policy]) -> Compiled {
            let ns = ["default", "default", "default", "prod"];
            let addrs = [WEB, CLIENT, OTHER, PROD_CLIENT];
            let members: Vec<Member> = (0..4)
                .map(|i| Member {
                    namespace: ns[i],
                    labels: &self.labels[i],
                    addr: addrs[i],
                })
                .collect();
            compile(policies, &self.namespaces, &members)
        }
    }

    const TO_WEB: usize = 0;

    #[test]
    fn without_policy_everything_is_open() {
        let c = World::new().compile(&[]);
        assert!(!c.any_isolated());
        assert_eq!(
            c.verdict(TO_WEB, Direction::Ingress, CLIENT, IPPROTO_TCP, 80),
            Verdict::Open
        );
        assert_eq!(
            c.identity_count(),
            4,
            "the two clients have the same labels in different namespaces"
        );
    }

    #[test]
    fn default_deny_isolates_one_direction_only() {
        let mut deny = policy("default", "deny", Selector::default());
        deny.ingress = Some(vec![]);
        let c = World::new().compile(&[deny]);
        assert!(c.any_isolated());
        assert_eq!(
            c.verdict(TO_WEB, Direction::Ingress, CLIENT, IPPROTO_TCP, 80),
            Verdict::Denied
        );
        assert_eq!(
            c.verdict(TO_WEB, Direction::Egress, CLIENT, IPPROTO_TCP, 80),
            Verdict::Open
        );
        // Another namespace's members are not selected.
        assert_eq!(c.verdict(3, Direction::Ingress, CLIENT, IPPROTO_TCP, 80), Verdict::Open);
    }

    #[test]
    fn pod_selector_peers_and_ports() {
        let mut p = policy("default", "web", select(&[("app", "web")]));
        p.ingress = Some(vec![Rule {
            peers: vec![pods(select(&[("app", "client")]))],
            ports: vec![tcp(80)],
        }]);
        let c = World::new().compile(&[p]);
        let allowed = Verdict::Allowed(RuleRef { policy: 0, rule: 0 });
        assert_eq!(c.verdict(TO_WEB, Direction::Ingress, CLIENT, IPPROTO_TCP, 80), allowed);
        assert_eq!(
            c.verdict(TO_WEB, Direction::Ingress, CLIENT, IPPROTO_TCP, 81),
            Verdict::Denied
        );
        assert_eq!(
            c.verdict(TO_WEB, Direction::Ingress, CLIENT, IPPROTO_UDP, 80),
            Verdict::Denied
        );
        assert_eq!(
            c.verdict(TO_WEB, Direction::Ingress, CLIENT, IPPROTO_ICMP, 0),
            Verdict::Denied,
            "ports name TCP only"
        );
        assert_eq!(
            c.verdict(TO_WEB, Direction::Ingress, OTHER, IPPROTO_TCP, 80),
            Verdict::Denied
        );
        // A peer selector without a namespace selector is the policy's namespace.
        assert_eq!(
            c.verdict(TO_WEB, Direction::Ingress, PROD_CLIENT, IPPROTO_TCP, 80),
            Verdict::Denied
        );
        assert_eq!(
            c.verdict(TO_WEB, Direction::Ingress, OUTSIDE, IPPROTO_TCP, 80),
            Verdict::Denied
        );
        // client is not selected by this policy.
        assert_eq!(c.verdict(1, Direction::Ingress, OTHER, IPPROTO_TCP, 80), Verdict::Open);
    }

    #[test]
    fn policies_add_up() {
        let mut a = policy("default", "a", select(&[("app", "web")]));
        a.ingress = Some(vec![Rule {
            peers: vec![pods(select(&[("app", "client")]))],
            ports: vec![],
        }]);
        let mut b = policy("default", "b", Selector::default());
        b.ingress = Some(vec![Rule {
            peers: vec![pods(select(&[("app", "other")]))],
            ports: vec![tcp(443)],
        }]);
        let c = World::new().compile(&[a, b]);
        assert_eq!(
            c.verdict(TO_WEB, Direction::Ingress, CLIENT, IPPROTO_ICMP, 0),
            Verdict::Allowed(RuleRef { policy: 0, rule: 0 }),
            "a rule without ports allows ICMP too"
        );
        assert_eq!(
            c.verdict(TO_WEB, Direction::Ingress, OTHER, IPPROTO_TCP, 443),
            Verdict::Allowed(RuleRef { policy: 1, rule: 0 })
        );
        assert_eq!(
            c.verdict(TO_WEB, Direction::Ingress, OTHER, IPPROTO_TCP, 80),
            Verdict::Denied
        );
        assert_eq!(
            c.endpoint(TO_WEB).policies(Direction::Ingress).collect::<Vec<_>>(),
            vec![0, 1]
        );
    }

    #[test]
    fn namespace_and_pod_selectors_and_within_a_peer_or_across_peers() {
        let prod = Selector {
            match_labels: labels(&[("env", "prod")]),
            ..Default::default()
        };
        // One peer, both selectors: clients in prod only.
        let mut and = policy("default", "and", select(&[("app", "web")]));
        and.ingress = Some(vec![Rule {
            peers: vec![Peer::Pods {
                pods: Some(select(&[("app", "client")])),
                namespaces: Some(prod.clone()),
            }],
            ports: vec![],
        }]);
        let c = World::new().compile(std::slice::from_ref(&and));
        assert!(c
            .verdict(TO_WEB, Direction::Ingress, PROD_CLIENT, IPPROTO_TCP, 80)
            .allows());
        assert!(!c.verdict(TO_WEB, Direction::Ingress, CLIENT, IPPROTO_TCP, 80).allows());
        // Two peers: anything in prod, or clients of the policy's namespace.
        let mut or = and.clone();
        or.ingress = Some(vec![Rule {
            peers: vec![
                Peer::Pods {
                    pods: None,
                    namespaces: Some(prod),
                },
                pods(select(&[("app", "client")])),
            ],
            ports: vec![],
        }]);
        let c = World::new().compile(&[or]);
        assert!(c
            .verdict(TO_WEB, Direction::Ingress, PROD_CLIENT, IPPROTO_TCP, 80)
            .allows());
        assert!(c.verdict(TO_WEB, Direction::Ingress, CLIENT, IPPROTO_TCP, 80).allows());
        assert!(!c.verdict(TO_WEB, Direction::Ingress, OTHER, IPPROTO_TCP, 80).allows());
        // Every namespace carries its name as a label.
        let mut by_name = policy("default", "by-name", select(&[("app", "web")]));
        by_name.ingress = Some(vec![Rule {
            peers: vec![Peer::Pods {
                pods: None,
                namespaces: Some(select(&[(NAMESPACE_NAME_LABEL, "default")])),
            }],
            ports: vec![],
        }]);
        let c = World::new().compile(&[by_name]);
        assert!(c.verdict(TO_WEB, Direction::Ingress, OTHER, IPPROTO_TCP, 80).allows());
        assert!(!c
            .verdict(TO_WEB, Direction::Ingress, PROD_CLIENT, IPPROTO_TCP, 80)
            .allows());
    }

    #[test]
    fn address_blocks_with_exceptions_and_port_ranges() {
        let mut p = policy("default", "out", select(&[("app", "web")]));
        p.egress = Some(vec![Rule {
            peers: vec![Peer::Block {
                cidr: "192.0.2.0/24".parse().unwrap(),
                except: vec!["192.0.2.8/29".parse().unwrap()],
            }],
            ports: vec![PortMatch {
                protocol: Protocol::Udp,
                port: Some(5000),
                end_port: Some(5010),
            }],
        }]);
        let c = World::new().compile(&[p]);
        let v = |addr: &str, proto, port| c.verdict(TO_WEB, Direction::Egress, addr.parse().unwrap(), proto, port);
        assert!(v("192.0.2.1", IPPROTO_UDP, 5000).allows());
        assert!(v("192.0.2.1", IPPROTO_UDP, 5010).allows());
        assert!(!v("192.0.2.1", IPPROTO_UDP, 5011).allows());
        assert!(!v("192.0.2.1", IPPROTO_TCP, 5005).allows());
        assert!(!v("192.0.2.9", IPPROTO_UDP, 5005).allows(), "in the exception");
        assert!(v("192.0.2.16", IPPROTO_UDP, 5005).allows());
        assert!(!v("198.51.100.1", IPPROTO_UDP, 5005).allows());
        assert_eq!(
            c.verdict(TO_WEB, Direction::Ingress, OUTSIDE, IPPROTO_UDP, 5005),
            Verdict::Open
        );
    }

    #[test]
    fn an_address_two_identities_share_is_matched_by_blocks_only() {
        let (web, db) = (labels(&[("app", "web")]), labels(&[("app", "db")]));
        let shared = Ipv4Addr::new(10, 9, 0, 2);
        let members = [
            Member {
                namespace: "default",
                labels: &web,
                addr: WEB,
            },
            Member {
                namespace: "default",
                labels: &web,
                addr: shared,
            },
            Member {
                namespace: "default",
                labels: &db,
                addr: shared,
            },
        ];
        let mut p = policy("default", "p", select(&[("app", "web")]));
        p.ingress = Some(vec![Rule {
            peers: vec![pods(select(&[("app", "web")]))],
            ports: vec![],
        }]);
        let c = compile(&[p], &BTreeMap::new(), &members);
        assert_eq!(c.identity(shared), None);
        assert!(!c.verdict(0, Direction::Ingress, shared, IPPROTO_TCP, 80).allows());
    }
}
