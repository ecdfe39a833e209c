//! The plugin's inputs besides the configuration: the CNI_* environment.

use crate::spec::{CniError, Code};

#[derive(Debug)]
pub struct Env {
    pub command: String,
    pub container_id: Option<String>,
    pub netns: Option<String>,
    pub ifname: Option<String>,
    /// `CNI_ARGS`: `K=V;K=V`.
    pub args: Vec<(String, String)>,
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl Env {
    pub fn read() -> Result<Env, CniError> {
        let command =
            var("CNI_COMMAND").ok_or_else(|| CniError::new(Code::BadEnvironment, "CNI_COMMAND is not set"))?;
        let args = match var("CNI_ARGS") {
            None => Vec::new(),
            Some(text) => parse_args(&text)?,
        };
        Ok(Env {
            command,
            container_id: var("CNI_CONTAINERID"),
            netns: var("CNI_NETNS"),
            ifname: var("CNI_IFNAME"),
            args,
        })
    }

    /// A variable the command cannot do without.
    pub fn need<'a>(&self, value: &'a Option<String>, name: &str) -> Result<&'a str, CniError> {
        value
            .as_deref()
            .ok_or_else(|| CniError::new(Code::BadEnvironment, format!("{name} is not set ({})", self.command)))
    }

    pub fn container_id(&self) -> Result<&str, CniError> {
        let id = self.need(&self.container_id, "CNI_CONTAINERID")?;
        let ok = id.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !ok {
            return Err(CniError::new(
                Code::BadEnvironment,
                format!("CNI_CONTAINERID '{id}' has characters other than letters, digits, '.', '_' and '-'"),
            ));
        }
        Ok(id)
    }

    pub fn ifname(&self) -> Result<&str, CniError> {
        let name = self.need(&self.ifname, "CNI_IFNAME")?;
        let ok = name.len() < 16 && name.bytes().all(|b| b.is_ascii_graphic() && b != b'/' && b != b':');
        if !ok || name == "." || name == ".." {
            return Err(CniError::new(
                Code::BadEnvironment,
                format!("CNI_IFNAME '{name}' is not an interface name"),
            ));
        }
        Ok(name)
    }

    /// The value of `key` in CNI_ARGS.
    pub fn arg(&self, key: &str) -> Option<&str> {
        self.args.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// Keys this plugin reads from CNI_ARGS (others need `IgnoreUnknown=1`):
/// the address and MAC asked for, the Kubernetes pod's namespace and name
/// (kubelet's and podman's keys; podman passes the container's name and
/// the caller's own CNI_ARGS), and `VSWITCH_LABELS=k=v,k=v` (labels for
/// a runtime that passes none in `args.cni.labels`).
const KNOWN_ARGS: [&str; 8] = [
    "IP",
    "MAC",
    "IgnoreUnknown",
    "K8S_POD_NAMESPACE",
    "K8S_POD_NAME",
    "K8S_POD_INFRA_CONTAINER_ID",
    "K8S_POD_UID",
    LABELS_ARG,
];

/// The CNI_ARGS key of labels: `VSWITCH_LABELS=app=web,tier=front`.
pub const LABELS_ARG: &str = "VSWITCH_LABELS";

fn parse_args(text: &str) -> Result<Vec<(String, String)>, CniError> {
    let mut out = Vec::new();
    for pair in text.split(';').filter(|p| !p.is_empty()) {
        let Some((k, v)) = pair.split_once('=') else {
            return Err(CniError::new(
                Code::BadEnvironment,
                format!("CNI_ARGS: '{pair}' is not KEY=VALUE"),
            ));
        };
        out.push((k.to_string(), v.to_string()));
    }
    let ignore = out
        .iter()
        .any(|(k, v)| k == "IgnoreUnknown" && matches!(v.to_ascii_lowercase().as_str(), "1" | "true"));
    if !ignore {
        if let Some((k, _)) = out.iter().find(|(k, _)| !KNOWN_ARGS.contains(&k.as_str())) {
            return Err(CniError::new(
                Code::BadEnvironment,
                format!(
                    "CNI_ARGS: unknown key '{k}' (known: {}; IgnoreUnknown=1 skips others)",
                    KNOWN_ARGS.join(", ")
                ),
            ));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cni_args() {
        let args = parse_args("IgnoreUnknown=1;IP=10.88.0.9;FOO=x").unwrap();
        assert_eq!(args.len(), 3);
        let pod = parse_args("K8S_POD_NAMESPACE=shop;K8S_POD_NAME=web-1;VSWITCH_LABELS=app=web,tier=front").unwrap();
        assert_eq!(pod[2], (LABELS_ARG.to_string(), "app=web,tier=front".to_string()));
        assert_eq!(
            parse_args("IP=10.88.0.9;MAC=02:00:00:00:00:01").unwrap()[1].1,
            "02:00:00:00:00:01"
        );
        assert!(parse_args("FOO=x").unwrap_err().msg.contains("unknown key 'FOO'"));
        assert!(parse_args("IP").is_err());
        assert!(parse_args("").unwrap().is_empty());
    }
}
