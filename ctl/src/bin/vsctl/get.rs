//! Reads vsctl answers from `show`: `get bridge BR [KEY...]` (a bridge's
//! settings, one value a line in the order asked, every key when none is,
//! or one JSON object) and `list-published` without a bridge (every
//! bridge's rules, each with its bridge).

use vswitch_ctl::{BridgeInfo, Reply, Request};

use crate::Daemon;

/// The keys `get bridge` knows, in the order `get` with none prints them.
const KEYS: [&str; 8] = [
    "aging",
    "max-macs",
    "learned-macs",
    "subnet",
    "gateway",
    "ip-range",
    "masquerade",
    "icc",
];

fn value(b: &BridgeInfo, key: &str) -> Option<serde_json::Value> {
    let text = |v: Option<String>| v.map_or(serde_json::Value::Null, serde_json::Value::String);
    Some(match key {
        "aging" | "aging-secs" => b.aging_secs.into(),
        "max-macs" | "max_macs" => b.max_macs.into(),
        "learned-macs" => b.learned_macs.into(),
        "subnet" => text(b.subnet.map(|n| n.to_string())),
        "gateway" => text(b.gateway.map(|g| g.to_string())),
        "ip-range" => text(b.ip_range.map(|n| n.to_string())),
        "masquerade" => b.masquerade.into(),
        "icc" => b.icc.into(),
        _ => return None,
    })
}

pub fn bridge(daemon: &Daemon, name: &str, keys: &[String], json: bool) -> anyhow::Result<()> {
    let keys: Vec<&str> = if keys.is_empty() {
        KEYS.to_vec()
    } else {
        keys.iter().map(String::as_str).collect()
    };
    if let Some(unknown) = keys
        .iter()
        .find(|k| !KEYS.contains(k) && !matches!(**k, "aging-secs" | "max_macs"))
    {
        anyhow::bail!("bridges have no key '{unknown}' (one of: {})", KEYS.join(", "));
    }
    let Reply::Show(bridges) = daemon.call(&Request::Show)? else {
        anyhow::bail!("vswitchd answered show with something else");
    };
    let Some(b) = bridges.iter().find(|b| b.name == name) else {
        anyhow::bail!("bridge '{name}' does not exist");
    };
    let values: Vec<(&str, serde_json::Value)> = keys.iter().filter_map(|k| value(b, k).map(|v| (*k, v))).collect();
    if json {
        let object: serde_json::Map<String, serde_json::Value> =
            values.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
        println!("{}", serde_json::to_string_pretty(&object)?);
    } else {
        for (_, v) in values {
            match v {
                serde_json::Value::String(s) => println!("{s}"),
                serde_json::Value::Null => println!(),
                other => println!("{other}"),
            }
        }
    }
    Ok(())
}

/// `list-published` with no bridge: every bridge's rules, with the bridge.
pub fn published(daemon: &Daemon, json: bool) -> anyhow::Result<()> {
    let Reply::Show(bridges) = daemon.call(&Request::Show)? else {
        anyhow::bail!("vswitchd answered show with something else");
    };
    let rules = bridges
        .iter()
        .flat_map(|b| b.published.iter().map(move |r| (b.name.as_str(), r)));
    if json {
        let list: Vec<serde_json::Value> = rules
            .map(|(bridge, r)| {
                let mut v = serde_json::to_value(r).unwrap_or_default();
                if let Some(o) = v.as_object_mut() {
                    o.insert("bridge".into(), bridge.into());
                }
                v
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
    } else {
        for (bridge, r) in rules {
            println!("{bridge} {} {} -> {}:{}", r.proto, r.port, r.to_ip, r.to_port);
        }
    }
    Ok(())
}
