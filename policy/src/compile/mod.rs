//! Policies resolved against the attachments: per attachment and
//! direction, one table merged from every policy that isolates it, keyed
//! by the peer's identity.
//!
//! An identity is a distinct (namespace, labels) pair, numbered in the
//! order met. A `Pods` peer becomes the identities it matches, so at
//! verdict time the peer's address gives its identity and the identity
//! gives the port ranges allowed, whatever the number of policies: the
//! tables of all the policies selecting an attachment are merged into one
//! (Cilium's per-endpoint policy map). Address blocks, their exceptions
//! cut out, become sorted disjoint segments each listing the rules that
//! cover it: a binary search, not a scan of the blocks. Attachments
//! selected by the same policies share one table (`Arc`): a thousand
//! attachments under one policy hold one.
//!
//! Verdicts are asked once per new connection (the switch's connection
//! table remembers them).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;

use hashbrown::HashMap;

use crate::model::{Direction, Labels, Peer, Policy, PortMatch, Protocol, Rule, NAMESPACE_NAME_LABEL};

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
    rule: RuleRef,
}

/// The ports one peer may use: `any` when a rule gave no ports (every
/// protocol, ICMP included), else protocol and port ranges.
#[derive(Clone, Debug, Default)]
struct PortTable {
    any: Option<RuleRef>,
    entries: Vec<PortEntry>,
}

impl PortTable {
    fn add(&mut self, rule: RuleRef, ports: &[PortMatch]) {
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

    fn merge(&mut self, other: &PortTable) {
        if let Some(rule) = other.any {
            self.any.get_or_insert(rule);
        }
        if self.any.is_none() {
            self.entries.extend_from_slice(&other.entries);
        } else {
            self.entries.clear();
        }
    }

    fn find(&self, protocol: u8, port: u16) -> Option<RuleRef> {
        self.any.or_else(|| {
            self.entries
                .iter()
                .find(|e| e.protocol == protocol && (e.lo..=e.hi).contains(&port))
                .map(|e| e.rule)
        })
    }
}

/// Address blocks as sorted disjoint segments: segment `i` runs from
/// `starts[i]` to the next start, and the rules in `covering[i]`
/// (indices into `tables`) allow addresses in it.
#[derive(Debug, Default)]
struct Blocks {
    starts: Vec<u64>,
    covering: Vec<Vec<u32>>,
    tables: Vec<PortTable>,
}

impl Blocks {
    /// `ranges`: inclusive address ranges, each with the ports it allows.
    fn new(ranges: Vec<(u32, u32, PortTable)>) -> Blocks {
        let mut points: Vec<u64> = ranges
            .iter()
            .flat_map(|(lo, hi, _)| [u64::from(*lo), u64::from(*hi) + 1])
            .collect();
        points.sort_unstable();
        points.dedup();
        let mut covering = vec![Vec::new(); points.len()];
        let mut tables = Vec::with_capacity(ranges.len());
        for (i, (lo, hi, ports)) in ranges.into_iter().enumerate() {
            let first = points.partition_point(|&p| p < u64::from(lo));
            let end = points.partition_point(|&p| p <= u64::from(hi));
            for c in &mut covering[first..end] {
                c.push(i as u32);
            }
            tables.push(ports);
        }
        Blocks {
            starts: points,
            covering,
            tables,
        }
    }

    fn find(&self, addr: Ipv4Addr, protocol: u8, port: u16) -> Option<RuleRef> {
        let at = self.starts.partition_point(|&s| s <= u64::from(u32::from(addr)));
        let segment = self.covering.get(at.checked_sub(1)?)?;
        segment
            .iter()
            .find_map(|&t| self.tables.get(t as usize)?.find(protocol, port))
    }
}

/// The rules of one direction of the attachments some set of policies
/// selects, merged.
#[derive(Debug, Default)]
pub struct RuleTable {
    /// The policies merged, by index.
    policies: Vec<u32>,
    any_peer: PortTable,
    by_identity: HashMap<u32, PortTable>,
    blocks: Blocks,
}

impl RuleTable {
    fn find(&self, peer: Ipv4Addr, identity: Option<u32>, protocol: u8, port: u16) -> Option<RuleRef> {
        self.any_peer
            .find(protocol, port)
            .or_else(|| identity.and_then(|id| self.by_identity.get(&id)?.find(protocol, port)))
            .or_else(|| self.blocks.find(peer, protocol, port))
    }
}

/// One policy's rules of one direction, its selectors resolved: what is
/// merged into the tables of the attachments it selects.
#[derive(Default)]
struct Part {
    any_peer: PortTable,
    by_identity: HashMap<u32, PortTable>,
    blocks: Vec<(u32, u32, PortTable)>,
}

/// What isolates one attachment: per direction, `None` when no policy
/// selecting it names that direction, else the merged table of those
/// that do (possibly allowing nothing).
#[derive(Clone, Debug, Default)]
pub struct EndpointRules {
    ingress: Option<Arc<RuleTable>>,
    egress: Option<Arc<RuleTable>>,
}

impl EndpointRules {
    fn side(&self, dir: Direction) -> Option<&RuleTable> {
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
        self.side(dir).into_iter().flat_map(|t| t.policies.iter().copied())
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
    /// Distinct merged tables (attachments selected by the same policies
    /// share one).
    table_count: usize,
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

    pub fn table_count(&self) -> usize {
        self.table_count
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
        let Some(table) = self.endpoint(index).side(dir) else {
            return Verdict::Open;
        };
        table
            .find(peer, self.identity(peer), protocol, port)
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
    let ns_labels: BTreeMap<&str, Labels> = by_id
        .iter()
        .map(|(ns, _)| {
            let mut labels = namespaces.get(*ns).cloned().unwrap_or_default();
            labels.insert(NAMESPACE_NAME_LABEL.to_string(), ns.to_string());
            (*ns, labels)
        })
        .collect();

    // Which policies select each identity (members of one identity are
    // selected alike), per direction.
    let mut selecting: Vec<[Vec<u32>; 2]> = vec![[Vec::new(), Vec::new()]; by_id.len()];
    let mut parts: HashMap<(u32, usize), Part> = HashMap::new();
    for (pi, policy) in policies.iter().enumerate() {
        let pi = pi as u32;
        for (d, dir) in [Direction::Ingress, Direction::Egress].into_iter().enumerate() {
            let Some(rules) = policy.rules(dir) else { continue };
            let mut any = false;
            for (id, (ns, labels)) in by_id.iter().enumerate() {
                if *ns == policy.namespace && policy.pod_selector.matches(labels) {
                    selecting[id][d].push(pi);
                    any = true;
                }
            }
            if any {
                parts.insert((pi, d), part(pi, policy, rules, &by_id, &ns_labels));
            }
        }
    }
    // One merged table per direction and distinct set of policies: the
    // same policies isolating one side and the other are two tables.
    let mut merged: HashMap<(usize, &[u32]), Arc<RuleTable>> = HashMap::new();
    let mut sides: Vec<[Option<Arc<RuleTable>>; 2]> = Vec::with_capacity(by_id.len());
    for sel in &selecting {
        let mut side: [Option<Arc<RuleTable>>; 2] = [None, None];
        for (d, set) in sel.iter().enumerate() {
            if set.is_empty() {
                continue;
            }
            let table = merged
                .entry((d, set.as_slice()))
                .or_insert_with(|| Arc::new(merge(set, d, &parts)))
                .clone();
            side[d] = Some(table);
        }
        sides.push(side);
    }
    let endpoints = member_ids
        .iter()
        .map(|&id| {
            let [ingress, egress] = sides[id as usize].clone();
            EndpointRules { ingress, egress }
        })
        .collect();
    Compiled {
        endpoints,
        identities,
        identity_count: by_id.len(),
        table_count: merged.len(),
    }
}

fn merge(set: &[u32], d: usize, parts: &HashMap<(u32, usize), Part>) -> RuleTable {
    let mut t = RuleTable {
        policies: set.to_vec(),
        ..Default::default()
    };
    let mut ranges = Vec::new();
    for p in set {
        let Some(part) = parts.get(&(*p, d)) else { continue };
        t.any_peer.merge(&part.any_peer);
        for (id, ports) in &part.by_identity {
            t.by_identity.entry(*id).or_default().merge(ports);
        }
        ranges.extend(part.blocks.iter().cloned());
    }
    t.blocks = Blocks::new(ranges);
    t
}

fn part(
    policy_index: u32,
    policy: &Policy,
    rules: &[Rule],
    by_id: &[(&str, &Labels)],
    ns_labels: &BTreeMap<&str, Labels>,
) -> Part {
    let mut t = Part::default();
    for (ri, rule) in rules.iter().enumerate() {
        let at = RuleRef {
            policy: policy_index,
            rule: ri as u16,
        };
        if rule.peers.is_empty() {
            t.any_peer.add(at, &rule.ports);
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
                            t.by_identity.entry(id as u32).or_default().add(at, &rule.ports);
                        }
                    }
                }
                Peer::Block { cidr, except } => {
                    let mut ports = PortTable::default();
                    ports.add(at, &rule.ports);
                    let range = (u32::from(cidr.network()), u32::from(cidr.broadcast()));
                    let mut holes: Vec<(u32, u32)> = except
                        .iter()
                        .map(|e| (u32::from(e.network()), u32::from(e.broadcast())))
                        .collect();
                    holes.sort_unstable();
                    let mut from = u64::from(range.0);
                    for (lo, hi) in holes {
                        if u64::from(lo) > from {
                            t.blocks.push((from as u32, lo - 1, ports.clone()));
                        }
                        from = from.max(u64::from(hi) + 1);
                    }
                    if from <= u64::from(range.1) {
                        t.blocks.push((from as u32, range.1, ports.clone()));
                    }
                }
            }
        }
    }
    t
}

#[cfg(test)]
mod tests;
