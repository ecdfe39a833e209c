//! vsctl's network-policy commands: `label`, `label-namespace`, `apply -f`,
//! `delete`, `list-policies`, `show-policy`, and how their answers print.
//! Manifests are read here (`vswitch-kube`), so a file that does not parse
//! never reaches vswitchd.

use std::io::Read;
use std::path::Path;

use vswitch_ctl::req::{self, LabelChange};
use vswitch_ctl::{Applied, PolicyInfo, Reply, Request};
use vswitch_policy::model::{Direction, Peer, Policy, Rule, DEFAULT_NAMESPACE};

use crate::Daemon;

/// `KEY=VALUE` of `attach --label`.
pub fn parse_label(text: &str) -> Result<(String, String), String> {
    let (k, v) = text
        .split_once('=')
        .ok_or_else(|| format!("'{text}' is not KEY=VALUE"))?;
    vswitch_policy::model::check_label(k, v)?;
    Ok((k.to_string(), v.to_string()))
}

/// `KEY=VALUE` sets, `KEY-` removes, as `kubectl label` reads them.
fn changes(words: &[String]) -> anyhow::Result<LabelChange> {
    let mut change = LabelChange::default();
    for w in words {
        if let Some(key) = w.strip_suffix('-').filter(|_| !w.contains('=')) {
            vswitch_policy::model::check_label(key, "").map_err(anyhow::Error::msg)?;
            change.remove.push(key.to_string());
        } else {
            let (k, v) = parse_label(w).map_err(|e| anyhow::anyhow!("{e} (or KEY- to remove a label)"))?;
            change.set.insert(k, v);
        }
    }
    Ok(change)
}

/// `NS/NAME`, or `NAME` in the default namespace.
pub fn target(text: &str) -> anyhow::Result<(String, String)> {
    let (ns, name) = text.split_once('/').unwrap_or((DEFAULT_NAMESPACE, text));
    if ns.is_empty() || name.is_empty() || name.contains('/') {
        anyhow::bail!("'{text}' is not NAMESPACE/NAME (or NAME, in namespace \"default\")");
    }
    Ok((ns.to_string(), name.to_string()))
}

pub fn label(text: &str, words: &[String]) -> anyhow::Result<Request> {
    let (namespace, name) = target(text)?;
    Ok(Request::Label(req::Label {
        namespace,
        name,
        change: changes(words)?,
    }))
}

pub fn label_namespace(namespace: String, words: &[String]) -> anyhow::Result<Request> {
    Ok(Request::LabelNamespace(req::LabelNamespace {
        namespace,
        change: changes(words)?,
    }))
}

fn read_manifest(file: &Path) -> anyhow::Result<vswitch_kube::Objects> {
    let mut text = String::new();
    if file == Path::new("-") {
        std::io::stdin().read_to_string(&mut text)?;
    } else {
        text = std::fs::read_to_string(file).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
    }
    let objects =
        vswitch_kube::parse(&text).map_err(|e| anyhow::anyhow!("{}: {e}; nothing was applied", file.display()))?;
    for w in &objects.warnings {
        eprintln!("Warning: {w}");
    }
    Ok(objects)
}

pub fn apply(file: &Path) -> anyhow::Result<Request> {
    let objects = read_manifest(file)?;
    Ok(Request::ApplyPolicies(req::ApplyPolicies {
        policies: objects.policies,
        namespaces: objects.namespaces.into_iter().map(|n| (n.name, n.labels)).collect(),
    }))
}

pub fn delete(names: &[String], file: Option<&Path>, if_exists: bool) -> anyhow::Result<Request> {
    let policies = match (file, names.split_first()) {
        (Some(file), _) => {
            let objects = read_manifest(file)?;
            objects.policies.into_iter().map(|p| (p.namespace, p.name)).collect()
        }
        (None, Some((kind, rest))) => {
            if !matches!(
                kind.as_str(),
                "networkpolicy" | "networkpolicies" | "netpol" | "networkpolicy.networking.k8s.io"
            ) {
                anyhow::bail!("vsctl deletes networkpolicy objects, not '{kind}' (delete networkpolicy NS/NAME, or delete -f FILE)");
            }
            if rest.is_empty() {
                anyhow::bail!("which networkpolicy? give NAMESPACE/NAME (or NAME in \"default\")");
            }
            rest.iter().map(|t| target(t)).collect::<anyhow::Result<_>>()?
        }
        (None, None) => anyhow::bail!("delete needs networkpolicy NS/NAME... or -f FILE"),
    };
    Ok(Request::DeletePolicies(req::DeletePolicies { policies, if_exists }))
}

pub fn show(daemon: &Daemon, text: &str, json: bool) -> anyhow::Result<()> {
    let (namespace, name) = target(text)?;
    let Reply::Policies(list) = daemon.call(&Request::ListPolicies)? else {
        anyhow::bail!("vswitchd answered list-policies with something else");
    };
    let Some(info) = list
        .iter()
        .find(|i| i.policy.namespace == namespace && i.policy.name == name)
    else {
        anyhow::bail!("network policy {namespace}/{name} does not exist (list-policies shows them)");
    };
    if json {
        println!("{}", serde_json::to_string_pretty(info)?);
    } else {
        print_policy(info);
    }
    Ok(())
}

pub fn print_policies(list: &[PolicyInfo]) {
    if list.is_empty() {
        println!("no network policies");
        return;
    }
    println!(
        "{:<16} {:<24} {:<24} {:<16} SELECTS",
        "NAMESPACE", "NAME", "POD-SELECTOR", "TYPES"
    );
    for i in list {
        let p = &i.policy;
        let types: Vec<&str> = [("Ingress", p.ingress.is_some()), ("Egress", p.egress.is_some())]
            .iter()
            .filter(|(_, on)| *on)
            .map(|(t, _)| *t)
            .collect();
        println!(
            "{:<16} {:<24} {:<24} {:<16} {}",
            p.namespace,
            p.name,
            p.pod_selector.to_string(),
            types.join(","),
            i.selects.len()
        );
    }
}

fn print_policy(info: &PolicyInfo) {
    let p = &info.policy;
    println!("{}", p.key());
    println!("  pod selector: {}", p.pod_selector);
    let selects = if info.selects.is_empty() {
        "nothing attached yet".to_string()
    } else {
        info.selects.join(", ")
    };
    println!("  selects: {selects}");
    for dir in [Direction::Ingress, Direction::Egress] {
        match p.rules(dir) {
            None => println!("  {}: not isolated by this policy", dir.name()),
            Some([]) => println!("  {}: isolated, nothing allowed", dir.name()),
            Some(rules) => {
                println!("  {}: isolated, allowed:", dir.name());
                for (i, r) in rules.iter().enumerate() {
                    println!("    rule {i}: {}", describe(p, r, dir));
                }
            }
        }
    }
}

fn describe(p: &Policy, r: &Rule, dir: Direction) -> String {
    let word = match dir {
        Direction::Ingress => "from",
        Direction::Egress => "to",
    };
    let peers = if r.peers.is_empty() {
        "anyone".to_string()
    } else {
        let list: Vec<String> = r
            .peers
            .iter()
            .map(|peer| match peer {
                Peer::Pods { pods, namespaces } => {
                    let pods = pods
                        .as_ref()
                        .map_or("every attachment".to_string(), |s| format!("attachments {s}"));
                    match namespaces {
                        None => format!("{pods} in {}", p.namespace),
                        Some(ns) => format!("{pods} in namespaces {ns}"),
                    }
                }
                Peer::Block { cidr, except } if except.is_empty() => cidr.to_string(),
                Peer::Block { cidr, except } => {
                    let except: Vec<String> = except.iter().map(ToString::to_string).collect();
                    format!("{cidr} except {}", except.join(" "))
                }
            })
            .collect();
        list.join(" | ")
    };
    let ports = if r.ports.is_empty() {
        "any port, any protocol".to_string()
    } else {
        let list: Vec<String> = r.ports.iter().map(ToString::to_string).collect();
        list.join(", ")
    };
    format!("{word} {peers}; {ports}")
}

pub fn print_applied(a: &Applied) {
    for (kind, name, outcome) in &a.objects {
        println!("{kind}/{name} {outcome}");
    }
}
