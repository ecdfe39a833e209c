//! networking.k8s.io/v1 NetworkPolicy to [`vswitch_policy::model::Policy`],
//! validated as the API server validates it (`pkg/apis/networking/validation`)
//! and defaulted as it defaults it (`policyTypes`).

use ipnet::{IpNet, Ipv4Net};
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyPeer, NetworkPolicyPort};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use vswitch_policy::model::{
    check_label, check_name, Direction, Expression, Operator, Peer, Policy, PortMatch, Protocol, Rule, Selector,
    DEFAULT_NAMESPACE,
};

/// Refused: the object (`NetworkPolicy NS/NAME`, when known), the path in
/// it and why.
type Refusal = (Option<String>, String, String);

pub(crate) fn convert(np: NetworkPolicy) -> Result<(Policy, Vec<String>), Refusal> {
    let namespace = np.metadata.namespace.unwrap_or_else(|| DEFAULT_NAMESPACE.to_string());
    let name = np.metadata.name.unwrap_or_default();
    let object = Some(format!("NetworkPolicy {namespace}/{name}"));
    let refuse = |path: &str, m: String| (object.clone(), path.to_string(), m);
    check_name("namespace", &namespace).map_err(|m| refuse("metadata.namespace", m))?;
    if name.is_empty() {
        return Err(refuse("metadata.name", "a NetworkPolicy needs a name".into()));
    }
    check_name("name", &name).map_err(|m| refuse("metadata.name", m))?;
    let spec = np.spec.unwrap_or_default();
    let pod_selector = selector(spec.pod_selector.as_ref(), "spec.podSelector").map_err(|(p, m)| refuse(&p, m))?;

    // The API server's defaulting: Ingress always, Egress when there are
    // egress rules.
    let types: Vec<Direction> = match &spec.policy_types {
        Some(types) if !types.is_empty() => types
            .iter()
            .enumerate()
            .map(|(i, t)| match t.as_str() {
                "Ingress" => Ok(Direction::Ingress),
                "Egress" => Ok(Direction::Egress),
                other => Err(refuse(
                    &format!("spec.policyTypes[{i}]"),
                    format!("{other:?}: must be \"Ingress\" or \"Egress\""),
                )),
            })
            .collect::<Result<_, _>>()?,
        _ => {
            let mut t = vec![Direction::Ingress];
            if spec.egress.as_ref().is_some_and(|e| !e.is_empty()) {
                t.push(Direction::Egress);
            }
            t
        }
    };
    let mut warnings = Vec::new();
    let mut side = |dir: Direction, rules: Vec<RawRule>| {
        let (field, peers_field) = match dir {
            Direction::Ingress => ("spec.ingress", "from"),
            Direction::Egress => ("spec.egress", "to"),
        };
        if !types.contains(&dir) {
            if !rules.is_empty() {
                warnings.push(format!("{field} is ignored: policyTypes does not name {}", cap(dir)));
            }
            return Ok(None);
        }
        let mut out = Vec::new();
        for (i, (peers, ports)) in rules.into_iter().enumerate() {
            let at = format!("{field}[{i}]");
            if let Some(rule) = rule(&at, peers_field, peers, ports, &mut warnings).map_err(|(p, m)| refuse(&p, m))? {
                out.push(rule);
            }
        }
        Ok(Some(out))
    };
    let ingress = side(
        Direction::Ingress,
        spec.ingress
            .unwrap_or_default()
            .into_iter()
            .map(|r| (r.from, r.ports))
            .collect(),
    )?;
    let egress = side(
        Direction::Egress,
        spec.egress
            .unwrap_or_default()
            .into_iter()
            .map(|r| (r.to, r.ports))
            .collect(),
    )?;
    Ok((
        Policy {
            namespace,
            name,
            pod_selector,
            ingress,
            egress,
        },
        warnings,
    ))
}

fn cap(dir: Direction) -> &'static str {
    match dir {
        Direction::Ingress => "Ingress",
        Direction::Egress => "Egress",
    }
}

type PathError = (String, String);

/// An ingress or egress rule as written: its peers (`from`/`to`) and ports.
type RawRule = (Option<Vec<NetworkPolicyPeer>>, Option<Vec<NetworkPolicyPort>>);

/// One rule; `None` when every peer it names is one vswitch cannot carry
/// (IPv6 blocks): dropping the peers would leave "any peer".
fn rule(
    at: &str,
    peers_field: &str,
    peers: Option<Vec<NetworkPolicyPeer>>,
    ports: Option<Vec<NetworkPolicyPort>>,
    warnings: &mut Vec<String>,
) -> Result<Option<Rule>, PathError> {
    let given = peers.as_ref().is_some_and(|p| !p.is_empty());
    let mut out = Rule::default();
    for (i, p) in peers.unwrap_or_default().into_iter().enumerate() {
        if let Some(peer) = peer(&format!("{at}.{peers_field}[{i}]"), p, warnings)? {
            out.peers.push(peer);
        }
    }
    for (i, p) in ports.unwrap_or_default().into_iter().enumerate() {
        out.ports.push(port(&format!("{at}.ports[{i}]"), p)?);
    }
    if given && out.peers.is_empty() {
        warnings.push(format!("{at} is ignored: it names IPv6 peers only"));
        return Ok(None);
    }
    Ok(Some(out))
}

fn peer(at: &str, p: NetworkPolicyPeer, warnings: &mut Vec<String>) -> Result<Option<Peer>, PathError> {
    match (p.ip_block, p.pod_selector, p.namespace_selector) {
        (Some(block), None, None) => {
            let cidr: IpNet = block.cidr.parse().map_err(|_| {
                (
                    format!("{at}.ipBlock.cidr"),
                    format!("{:?} is not an address block (like 10.0.0.0/8)", block.cidr),
                )
            })?;
            let IpNet::V4(cidr) = cidr else {
                warnings.push(format!(
                    "{at}: the IPv6 block {cidr} is ignored: vswitch does not carry IPv6 yet"
                ));
                return Ok(None);
            };
            let cidr = cidr.trunc();
            let mut except = Vec::new();
            for (i, e) in block.except.unwrap_or_default().iter().enumerate() {
                let path = format!("{at}.ipBlock.except[{i}]");
                let net: Ipv4Net = e
                    .parse()
                    .map_err(|_| (path.clone(), format!("{e:?} is not an IPv4 address block")))?;
                if !(cidr.contains(&net) && net.prefix_len() > cidr.prefix_len()) {
                    return Err((path, format!("{e} must be strictly inside {cidr}")));
                }
                except.push(net.trunc());
            }
            Ok(Some(Peer::Block { cidr, except }))
        }
        (Some(_), _, _) => Err((
            at.to_string(),
            "ipBlock cannot be combined with podSelector or namespaceSelector".into(),
        )),
        (None, None, None) => Err((
            at.to_string(),
            "a peer needs podSelector, namespaceSelector or ipBlock".into(),
        )),
        (None, pods, namespaces) => Ok(Some(Peer::Pods {
            pods: pods
                .map(|s| selector(Some(&s), &format!("{at}.podSelector")))
                .transpose()?,
            namespaces: namespaces
                .map(|s| selector(Some(&s), &format!("{at}.namespaceSelector")))
                .transpose()?,
        })),
    }
}

fn port(at: &str, p: NetworkPolicyPort) -> Result<PortMatch, PathError> {
    let protocol = match p.protocol.as_deref() {
        None | Some("TCP") => Protocol::Tcp,
        Some("UDP") => Protocol::Udp,
        Some("SCTP") => Protocol::Sctp,
        Some(other) => {
            return Err((
                format!("{at}.protocol"),
                format!("{other:?}: must be \"TCP\", \"UDP\" or \"SCTP\""),
            ))
        }
    };
    let number = |n: i32, field: &str| {
        u16::try_from(n)
            .ok()
            .filter(|&n| n != 0)
            .ok_or_else(|| (format!("{at}.{field}"), format!("{n} is not a port (1-65535)")))
    };
    let port = match p.port {
        None => None,
        Some(IntOrString::Int(n)) => Some(number(n, "port")?),
        Some(IntOrString::String(name)) => {
            return Err((
                format!("{at}.port"),
                format!("named ports ({name:?}) are not supported: vswitch does not know the containers' port names; give the number"),
            ))
        }
    };
    let end_port = match (p.end_port, port) {
        (None, _) => None,
        (Some(_), None) => return Err((format!("{at}.endPort"), "endPort needs a numeric port".into())),
        (Some(end), Some(start)) => {
            let end = number(end, "endPort")?;
            if end < start {
                return Err((format!("{at}.endPort"), format!("{end} is below port {start}")));
            }
            Some(end)
        }
    };
    Ok(PortMatch {
        protocol,
        port,
        end_port,
    })
}

fn selector(s: Option<&LabelSelector>, at: &str) -> Result<Selector, PathError> {
    let Some(s) = s else { return Ok(Selector::default()) };
    let match_labels = s.match_labels.clone().unwrap_or_default();
    for (k, v) in &match_labels {
        check_label(k, v).map_err(|m| (format!("{at}.matchLabels"), m))?;
    }
    let mut match_expressions = Vec::new();
    for (i, e) in s.match_expressions.iter().flatten().enumerate() {
        let path = format!("{at}.matchExpressions[{i}]");
        check_label(&e.key, "").map_err(|m| (format!("{path}.key"), m))?;
        let values = e.values.clone().unwrap_or_default();
        let operator = match e.operator.as_str() {
            "In" => Operator::In,
            "NotIn" => Operator::NotIn,
            "Exists" => Operator::Exists,
            "DoesNotExist" => Operator::DoesNotExist,
            other => {
                return Err((
                    format!("{path}.operator"),
                    format!("{other:?}: must be \"In\", \"NotIn\", \"Exists\" or \"DoesNotExist\""),
                ))
            }
        };
        match operator {
            Operator::In | Operator::NotIn if values.is_empty() => {
                return Err((format!("{path}.values"), format!("{} needs values", e.operator)));
            }
            Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
                return Err((format!("{path}.values"), format!("{} takes no values", e.operator)));
            }
            _ => {}
        }
        for v in &values {
            check_label(&e.key, v).map_err(|m| (format!("{path}.values"), m))?;
        }
        match_expressions.push(Expression {
            key: e.key.clone(),
            operator,
            values,
        });
    }
    Ok(Selector {
        match_labels,
        match_expressions,
    })
}
