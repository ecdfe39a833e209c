//! Kubernetes manifests read into vswitch's own model, strictly.
//!
//! `vsctl apply -f` takes what a user would give `kubectl apply -f`: YAML
//! or JSON, several documents separated by `---`, or a `kind: List`. Each
//! object is deserialised into `k8s-openapi`'s type through
//! `serde_ignored` (every field the type does not know is named, with its
//! path, as the API server's strict field validation does) and
//! `serde_path_to_error` (a wrong type is named the same way), then
//! validated as the API server validates it and converted to
//! [`vswitch_policy::model`]. One error refuses the whole file: nothing of
//! it is applied.
//!
//! Kinds understood: `NetworkPolicy` (networking.k8s.io/v1) and
//! `Namespace` (v1, its labels are what `namespaceSelector` sees).

mod network_policy;

use serde::Deserialize;
use vswitch_policy::model::{Labels, Policy};

/// A namespace and the labels a manifest gives it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Namespace {
    pub name: String,
    pub labels: Labels,
}

/// Everything one file holds, in the order written.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Objects {
    pub policies: Vec<Policy>,
    pub namespaces: Vec<Namespace>,
    /// What was understood but is ignored, as `kubectl` prints warnings.
    pub warnings: Vec<String>,
}

/// Why a file was refused: which document, which object, where in it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{}{}{message}", place(*.document, .object), if .path.is_empty() { String::new() } else { format!("{}: ", .path) })]
pub struct KubeError {
    /// 1-based, in the order of the file.
    pub document: usize,
    /// `Kind NS/NAME` when known.
    pub object: Option<String>,
    /// Field path in Kubernetes' spelling, `spec.ingress[0].from[1]`.
    pub path: String,
    pub message: String,
}

fn place(document: usize, object: &Option<String>) -> String {
    match object {
        Some(o) => format!("document {document} ({o}): "),
        None => format!("document {document}: "),
    }
}

impl KubeError {
    fn new(document: usize, object: Option<String>, path: impl Into<String>, message: impl Into<String>) -> KubeError {
        KubeError {
            document,
            object,
            path: path.into(),
            message: message.into(),
        }
    }
}

/// Reads every object of `text`.
pub fn parse(text: &str) -> Result<Objects, KubeError> {
    let mut out = Objects::default();
    let mut document = 0;
    for doc in serde_yaml_ng::Deserializer::from_str(text) {
        document += 1;
        let value =
            serde_yaml_ng::Value::deserialize(doc).map_err(|e| KubeError::new(document, None, "", e.to_string()))?;
        object(document, value, "", &mut out)?;
    }
    if document == 0 || (out.policies.is_empty() && out.namespaces.is_empty()) {
        return Err(KubeError::new(
            document.max(1),
            None,
            "",
            "no objects: expected NetworkPolicy or Namespace",
        ));
    }
    Ok(out)
}

/// One object (or a `List` of them) at `path` of document `document`.
fn object(document: usize, value: serde_yaml_ng::Value, path: &str, out: &mut Objects) -> Result<(), KubeError> {
    if value.is_null() {
        return Ok(()); // an empty document, as after a trailing `---`
    }
    let field = |name: &str| value.get(name).and_then(|v| v.as_str()).map(str::to_string);
    let (api_version, kind) = (field("apiVersion"), field("kind"));
    let Some(kind) = kind else {
        return Err(KubeError::new(
            document,
            None,
            path,
            "no \"kind\": every object needs apiVersion and kind",
        ));
    };
    let at = |p: &str| {
        if path.is_empty() {
            p.to_string()
        } else {
            format!("{path}.{p}")
        }
    };
    match (api_version.as_deref(), kind.as_str()) {
        (Some("v1"), "List") => {
            let Some(serde_yaml_ng::Value::Sequence(items)) = value.get("items").cloned() else {
                return Err(KubeError::new(
                    document,
                    None,
                    at("items"),
                    "a List needs a sequence of items",
                ));
            };
            for (i, item) in items.into_iter().enumerate() {
                object(document, item, &at(&format!("items[{i}]")), out)?;
            }
            Ok(())
        }
        (Some("networking.k8s.io/v1"), "NetworkPolicy") => {
            let np: k8s_openapi::api::networking::v1::NetworkPolicy = strict(document, value, path)?;
            let (policy, warnings) =
                network_policy::convert(np).map_err(|(object, p, m)| KubeError::new(document, object, at(&p), m))?;
            let object = Some(format!("NetworkPolicy {}", policy.key()));
            if out.policies.iter().any(|p| p.key() == policy.key()) {
                return Err(KubeError::new(document, object, path, "defined twice in this file"));
            }
            out.warnings.extend(
                warnings
                    .into_iter()
                    .map(|w| format!("NetworkPolicy {}: {w}", policy.key())),
            );
            out.policies.push(policy);
            Ok(())
        }
        (Some("v1"), "Namespace") => {
            let ns: k8s_openapi::api::core::v1::Namespace = strict(document, value, path)?;
            let name = ns.metadata.name.unwrap_or_default();
            let object = Some(format!("Namespace {name}"));
            vswitch_policy::model::check_name("namespace", &name)
                .map_err(|m| KubeError::new(document, object.clone(), at("metadata.name"), m))?;
            let labels: Labels = ns.metadata.labels.unwrap_or_default();
            for (k, v) in &labels {
                vswitch_policy::model::check_label(k, v)
                    .map_err(|m| KubeError::new(document, object.clone(), at("metadata.labels"), m))?;
            }
            out.namespaces.push(Namespace { name, labels });
            Ok(())
        }
        (_, "NetworkPolicy" | "Namespace" | "List") => Err(KubeError::new(
            document,
            None,
            at("apiVersion"),
            format!(
                "{kind} wants apiVersion {:?}, not {:?}",
                if kind == "NetworkPolicy" {
                    "networking.k8s.io/v1"
                } else {
                    "v1"
                },
                api_version.unwrap_or_default()
            ),
        )),
        (_, other) => Err(KubeError::new(
            document,
            None,
            at("kind"),
            format!("kind {other:?} is not understood here (NetworkPolicy, Namespace, or a List of them)"),
        )),
    }
}

/// Deserialises `value` as `T`, refusing any field `T` does not have and
/// naming the path of the first wrong one.
fn strict<T: serde::de::DeserializeOwned>(
    document: usize,
    value: serde_yaml_ng::Value,
    base: &str,
) -> Result<T, KubeError> {
    let mut unknown: Vec<(String, String)> = Vec::new();
    let mut note = |p: serde_ignored::Path| unknown.push(split_last(&p));
    let result: Result<T, _> = serde_path_to_error::deserialize(serde_ignored::Deserializer::new(value, &mut note));
    let join = |p: String| match (base.is_empty(), p.is_empty()) {
        (true, _) => p,
        (false, true) => base.to_string(),
        (false, false) => format!("{base}.{p}"),
    };
    match result {
        Err(e) => {
            let path = e.path().to_string();
            let path = if path == "." { String::new() } else { path };
            Err(KubeError::new(document, None, join(path), e.into_inner().to_string()))
        }
        Ok(_) if !unknown.is_empty() => {
            let (parent, field) = unknown.swap_remove(0);
            Err(KubeError::new(
                document,
                None,
                join(parent),
                format!("unknown field {field:?}"),
            ))
        }
        Ok(v) => Ok(v),
    }
}

/// A `serde_ignored` path in Kubernetes' spelling, split into the parent
/// (`spec.ingress[0].from[1]`) and the ignored field (`matchLabels`).
fn split_last(p: &serde_ignored::Path) -> (String, String) {
    fn render(p: &serde_ignored::Path) -> String {
        use serde_ignored::Path;
        match p {
            Path::Root => String::new(),
            Path::Seq { parent, index } => format!("{}[{index}]", render(parent)),
            Path::Map { parent, key } => match render(parent) {
                s if s.is_empty() => key.clone(),
                s => format!("{s}.{key}"),
            },
            Path::Some { parent } | Path::NewtypeStruct { parent } | Path::NewtypeVariant { parent } => render(parent),
        }
    }
    match p {
        serde_ignored::Path::Map { parent, key } => (render(parent), key.clone()),
        other => (String::new(), render(other)),
    }
}

#[cfg(test)]
mod tests;
