//! What a user writes down: selectors over labels, peers, ports, rules and
//! policies, with Kubernetes NetworkPolicy's meaning (networking.k8s.io/v1)
//! in the switch's own types. The Kubernetes spelling is converted at the
//! edge (`vswitch-kube`); these are what the desired state saves and what
//! [`crate::compile`] reads.
//!
//! The meaning, as Kubernetes gives it:
//! - a policy selects the attachments of its namespace that its
//!   `pod_selector` matches (an empty selector: all of them);
//! - `ingress: Some(rules)` isolates them for incoming connections
//!   (`policyTypes` has `Ingress`), `egress: Some(rules)` for outgoing
//!   ones; `Some(vec![])` allows nothing, `None` says nothing of that
//!   direction;
//! - a rule allows a connection when one of its peers matches the other
//!   end (no peers: any) and one of its ports matches (no ports: any);
//! - a peer is attachments (by pod and/or namespace selector, ANDed) or an
//!   address block less its exceptions.

use std::collections::BTreeMap;

use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};

/// Labels of an attachment or a namespace.
pub type Labels = BTreeMap<String, String>;

/// The label every namespace carries with its own name, as Kubernetes
/// sets it, so that a `namespaceSelector` can name one namespace.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// The namespace of an attachment given none.
pub const DEFAULT_NAMESPACE: &str = "default";

/// A label selector: every `match_labels` pair and every expression must
/// hold. The empty selector matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Selector {
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: Labels,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<Expression>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Expression {
    pub key: String,
    pub operator: Operator,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Operator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

impl Selector {
    pub fn matches(&self, labels: &Labels) -> bool {
        self.match_labels.iter().all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|e| e.matches(labels))
    }

    pub fn is_empty(&self) -> bool {
        self.match_labels.is_empty() && self.match_expressions.is_empty()
    }
}

impl Expression {
    pub fn matches(&self, labels: &Labels) -> bool {
        let value = labels.get(&self.key);
        match self.operator {
            Operator::In => value.is_some_and(|v| self.values.contains(v)),
            // Kubernetes: NotIn matches a missing key too.
            Operator::NotIn => value.is_none_or(|v| !self.values.contains(v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
        }
    }
}

impl std::fmt::Display for Selector {
    /// Kubernetes' own spelling of a selector (`app=web,tier in (a,b)`);
    /// `<all>` for the empty one.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_empty() {
            return f.write_str("<all>");
        }
        let mut parts: Vec<String> = self.match_labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        parts.extend(self.match_expressions.iter().map(|e| match e.operator {
            Operator::In => format!("{} in ({})", e.key, e.values.join(",")),
            Operator::NotIn => format!("{} notin ({})", e.key, e.values.join(",")),
            Operator::Exists => e.key.clone(),
            Operator::DoesNotExist => format!("!{}", e.key),
        }));
        f.write_str(&parts.join(","))
    }
}

/// The other end of a connection a rule allows.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Peer {
    /// Attachments: those `pods` matches in the namespaces `namespaces`
    /// matches; `namespaces: None` is the policy's own namespace, `pods:
    /// None` every attachment of the chosen namespaces.
    Pods {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pods: Option<Selector>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        namespaces: Option<Selector>,
    },
    /// Addresses in `cidr` but in none of `except`.
    Block {
        cidr: Ipv4Net,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        except: Vec<Ipv4Net>,
    },
}

/// Transport protocols a rule's ports name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Sctp => "sctp",
        }
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One entry of a rule's `ports`: a protocol and a port, a range
/// (`port`..=`end_port`), or every port of the protocol (`port: None`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PortMatch {
    pub protocol: Protocol,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_port: Option<u16>,
}

impl PortMatch {
    /// The ports it covers, as an inclusive range.
    pub fn range(&self) -> (u16, u16) {
        match (self.port, self.end_port) {
            (None, _) => (0, u16::MAX),
            (Some(p), None) => (p, p),
            (Some(p), Some(end)) => (p, end.max(p)),
        }
    }
}

impl std::fmt::Display for PortMatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.port, self.end_port) {
            (None, _) => write!(f, "{}", self.protocol),
            (Some(p), None) => write!(f, "{p}/{}", self.protocol),
            (Some(p), Some(e)) => write!(f, "{p}-{e}/{}", self.protocol),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Rule {
    /// Empty: any peer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<Peer>,
    /// Empty: any port of any protocol (ICMP included).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PortMatch>,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Policy {
    pub namespace: String,
    pub name: String,
    #[serde(default)]
    pub pod_selector: Selector,
    /// `Some`: isolates the selected for incoming connections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ingress: Option<Vec<Rule>>,
    /// `Some`: isolates the selected for outgoing connections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress: Option<Vec<Rule>>,
}

impl Policy {
    /// `NS/NAME`, as the CLI names a policy.
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    pub fn rules(&self, dir: Direction) -> Option<&[Rule]> {
        match dir {
            Direction::Ingress => self.ingress.as_deref(),
            Direction::Egress => self.egress.as_deref(),
        }
    }
}

impl Policy {
    /// What the API server would refuse in it, for policies that did not
    /// come through `vswitch-kube` (a raw control request).
    pub fn check(&self) -> Result<(), String> {
        check_name("namespace", &self.namespace)?;
        check_name("name", &self.name)?;
        let selector = |s: &Selector| -> Result<(), String> {
            s.match_labels.iter().try_for_each(|(k, v)| check_label(k, v))?;
            for e in &s.match_expressions {
                let wants_values = matches!(e.operator, Operator::In | Operator::NotIn);
                if wants_values == e.values.is_empty() {
                    return Err(format!(
                        "selector on {:?}: {:?} {} values",
                        e.key,
                        e.operator,
                        if wants_values { "needs" } else { "takes no" }
                    ));
                }
                e.values.iter().try_for_each(|v| check_label(&e.key, v))?;
            }
            Ok(())
        };
        selector(&self.pod_selector)?;
        for rule in self.ingress.iter().chain(&self.egress).flatten() {
            for peer in &rule.peers {
                match peer {
                    Peer::Pods { pods, namespaces } => {
                        pods.iter().chain(namespaces).try_for_each(selector)?;
                    }
                    Peer::Block { cidr, except } => {
                        if let Some(e) = except
                            .iter()
                            .find(|e| !(cidr.contains(*e) && e.prefix_len() > cidr.prefix_len()))
                        {
                            return Err(format!("except {e} is not strictly inside {cidr}"));
                        }
                    }
                }
            }
            for p in &rule.ports {
                match (p.port, p.end_port) {
                    (Some(0), _) => return Err("port 0 is not a port".into()),
                    (None, Some(_)) => return Err("endPort needs a port".into()),
                    (Some(a), Some(b)) if b < a => return Err(format!("endPort {b} is below port {a}")),
                    _ => {}
                }
            }
        }
        Ok(())
    }
}

/// Which way a connection goes for the attachment a policy selects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Toward it: someone else opened the connection.
    Ingress,
    /// From it: it opened the connection.
    Egress,
}

impl Direction {
    pub fn name(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }
}

/// Checks a label's key and value as Kubernetes does: a key is an optional
/// DNS-subdomain prefix and `/`, then a name of at most 63 characters of
/// alphanumerics, `-`, `_`, `.`, beginning and ending alphanumeric; a
/// value is empty or such a name.
pub fn check_label(key: &str, value: &str) -> Result<(), String> {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        let ok = !prefix.is_empty()
            && prefix.len() <= 253
            && prefix.split('.').all(|part| {
                !part.is_empty()
                    && part
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                    && !part.starts_with('-')
                    && !part.ends_with('-')
            });
        if !ok {
            return Err(format!(
                "label key {key:?}: the prefix must be a DNS subdomain (lowercase, dots)"
            ));
        }
    }
    if !is_label_name(name) || name.is_empty() {
        return Err(format!(
            "label key {key:?}: the name must be 1-63 characters of letters, digits, '-', '_' or '.', beginning and ending with a letter or digit"
        ));
    }
    if !value.is_empty() && !is_label_name(value) {
        return Err(format!(
            "label value {value:?} (key {key}): at most 63 characters of letters, digits, '-', '_' or '.', beginning and ending with a letter or digit"
        ));
    }
    Ok(())
}

fn is_label_name(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
        && b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
}

/// Checks a namespace's (or an attachment's) name as Kubernetes checks a
/// namespace's: a DNS label, 1-63 lowercase letters, digits and `-`.
pub fn check_name(what: &str, name: &str) -> Result<(), String> {
    let b = name.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b.first().is_some_and(|c| c.is_ascii_alphanumeric())
        && b.last().is_some_and(|c| c.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what} {name:?}: must be 1-63 lowercase letters, digits or '-', beginning and ending with a letter or digit"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn selectors_match_as_kubernetes_says() {
        let l = labels(&[("app", "web"), ("tier", "front")]);
        assert!(Selector::default().matches(&l));
        assert!(Selector::default().matches(&Labels::new()));
        let by_label = Selector {
            match_labels: labels(&[("app", "web")]),
            ..Default::default()
        };
        assert!(by_label.matches(&l));
        assert!(!by_label.matches(&labels(&[("app", "db")])));
        let expr = |operator, values: &[&str]| Selector {
            match_expressions: vec![Expression {
                key: "tier".into(),
                operator,
                values: values.iter().map(|v| v.to_string()).collect(),
            }],
            ..Default::default()
        };
        assert!(expr(Operator::In, &["front", "back"]).matches(&l));
        assert!(!expr(Operator::In, &["back"]).matches(&l));
        assert!(!expr(Operator::In, &["front"]).matches(&Labels::new()));
        assert!(expr(Operator::NotIn, &["back"]).matches(&l));
        assert!(
            expr(Operator::NotIn, &["back"]).matches(&Labels::new()),
            "NotIn matches a missing key"
        );
        assert!(!expr(Operator::NotIn, &["front"]).matches(&l));
        assert!(expr(Operator::Exists, &[]).matches(&l));
        assert!(!expr(Operator::DoesNotExist, &[]).matches(&l));
        assert!(expr(Operator::DoesNotExist, &[]).matches(&Labels::new()));
        // Both parts must hold.
        let both = Selector {
            match_labels: labels(&[("app", "web")]),
            match_expressions: expr(Operator::In, &["back"]).match_expressions,
        };
        assert!(!both.matches(&l));
        assert_eq!(both.to_string(), "app=web,tier in (back)");
    }

    #[test]
    fn labels_and_names_are_checked_as_kubernetes_does() {
        assert!(check_label("app", "web").is_ok());
        assert!(check_label("app.kubernetes.io/name", "my-app_1.2").is_ok());
        assert!(check_label("app", "").is_ok());
        assert!(check_label("", "x").is_err());
        assert!(check_label("-app", "x").is_err());
        assert!(check_label("Example.COM/app", "x").is_err());
        assert!(check_label("app", "bad value").is_err());
        assert!(check_label("app", &"x".repeat(64)).is_err());
        assert!(check_name("namespace", "team-a").is_ok());
        assert!(check_name("namespace", "Team").is_err());
        assert!(check_name("namespace", "").is_err());
    }

    #[test]
    fn port_ranges() {
        let p = |port, end_port| PortMatch {
            protocol: Protocol::Tcp,
            port,
            end_port,
        };
        assert_eq!(p(None, None).range(), (0, 65535));
        assert_eq!(p(Some(80), None).range(), (80, 80));
        assert_eq!(p(Some(8000), Some(8080)).range(), (8000, 8080));
        assert_eq!(p(Some(8000), Some(8080)).to_string(), "8000-8080/tcp");
    }
}
