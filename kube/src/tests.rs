use super::*;
use vswitch_policy::model::{Direction, Peer, PortMatch, Protocol, Selector};

/// The example of the Kubernetes documentation's NetworkPolicy page.
const DOCS_EXAMPLE: &str = r#"
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: test-network-policy
  namespace: default
spec:
  podSelector:
    matchLabels:
      role: db
  policyTypes:
    - Ingress
    - Egress
  ingress:
    - from:
        - ipBlock:
            cidr: 172.17.0.0/16
            except:
              - 172.17.1.0/24
        - namespaceSelector:
            matchLabels:
              project: myproject
        - podSelector:
            matchLabels:
              role: frontend
      ports:
        - protocol: TCP
          port: 6379
  egress:
    - to:
        - ipBlock:
            cidr: 10.0.0.0/24
      ports:
        - protocol: TCP
          port: 5978
"#;

fn sel(k: &str, v: &str) -> Selector {
    Selector {
        match_labels: [(k.to_string(), v.to_string())].into(),
        ..Default::default()
    }
}

fn one(text: &str) -> Policy {
    let objects = parse(text).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(objects.policies.len(), 1);
    objects.policies[0].clone()
}

fn refused(text: &str) -> String {
    match parse(text) {
        Ok(o) => panic!("accepted: {o:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn the_documentation_example_reads_as_written() {
    let p = one(DOCS_EXAMPLE);
    assert_eq!(p.key(), "default/test-network-policy");
    assert_eq!(p.pod_selector, sel("role", "db"));
    let ingress = p.rules(Direction::Ingress).unwrap();
    assert_eq!(ingress.len(), 1);
    assert_eq!(
        ingress[0].peers,
        vec![
            Peer::Block {
                cidr: "172.17.0.0/16".parse().unwrap(),
                except: vec!["172.17.1.0/24".parse().unwrap()],
            },
            Peer::Pods {
                pods: None,
                namespaces: Some(sel("project", "myproject")),
            },
            Peer::Pods {
                pods: Some(sel("role", "frontend")),
                namespaces: None,
            },
        ]
    );
    assert_eq!(
        ingress[0].ports,
        vec![PortMatch {
            protocol: Protocol::Tcp,
            port: Some(6379),
            end_port: None
        }]
    );
    assert_eq!(p.rules(Direction::Egress).unwrap()[0].ports[0].port, Some(5978));
}

#[test]
fn policy_types_default_as_the_api_server_defaults_them() {
    let base = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p}\nspec:\n  podSelector: {}\n";
    // Nothing said: ingress isolated, allowing nothing; egress untouched.
    let p = one(base);
    assert_eq!(p.namespace, "default");
    assert_eq!(p.ingress, Some(vec![]));
    assert_eq!(p.egress, None);
    // Egress rules imply Egress.
    let p = one(&format!(
        "{base}  egress:\n    - ports: [{{port: 53, protocol: UDP}}]\n"
    ));
    assert!(p.ingress.is_some() && p.egress.as_ref().is_some_and(|e| e.len() == 1));
    // An empty egress list does not.
    assert_eq!(one(&format!("{base}  egress: []\n")).egress, None);
    // Egress only: default-deny egress, ingress open.
    let p = one(&format!("{base}  policyTypes: [Egress]\n"));
    assert_eq!((p.ingress, p.egress), (None, Some(vec![])));
    // Rules of a direction not named are ignored, with a warning.
    let o = parse(&format!("{base}  policyTypes: [Egress]\n  ingress: [{{}}]\n")).unwrap();
    assert_eq!(o.policies[0].ingress, None);
    assert!(o.warnings[0].contains("spec.ingress is ignored"), "{:?}", o.warnings);
    assert!(refused(&format!("{base}  policyTypes: [ingress]\n")).contains("spec.policyTypes[0]: \"ingress\": must be"));
}

#[test]
fn an_unknown_field_is_named_with_its_path() {
    // matchLabels one level too high: a peer has no such field.
    let e = refused(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: web, namespace: shop}\nspec:\n  podSelector: {}\n  ingress:\n    - from:\n        - podSelector: {}\n        - matchLabels: {app: web}\n",
    );
    assert_eq!(e, "document 1: spec.ingress[0].from[1]: unknown field \"matchLabels\"");
    let e = refused("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: web}\nspce: {}\n");
    assert_eq!(e, "document 1: unknown field \"spce\"");
}

#[test]
fn a_wrong_type_is_named_with_its_path() {
    let e = refused(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: web}\nspec:\n  podSelector: {}\n  ingress:\n    - ports: [{port: [80]}]\n",
    );
    assert!(e.starts_with("document 1: spec.ingress[0].ports[0].port: "), "{e}");
    let e = refused("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: web}\nspec: [1]\n");
    assert!(e.starts_with("document 1: spec: "), "{e}");
    // YAML that does not parse says where.
    let e = refused("apiVersion: v1\nkind: Namespace\nmetadata: {name: [}\n");
    assert!(e.starts_with("document 1: ") && e.contains("line"), "{e}");
}

#[test]
fn documents_lists_namespaces_and_json() {
    let text = format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: prod\n  labels: {{env: prod}}\n---\n{DOCS_EXAMPLE}\n---\napiVersion: v1\nkind: List\nitems:\n  - {{apiVersion: networking.k8s.io/v1, kind: NetworkPolicy, metadata: {{name: deny, namespace: prod}}, spec: {{podSelector: {{}}}}}}\n---\n"
    );
    let o = parse(&text).unwrap();
    assert_eq!(
        o.namespaces,
        vec![Namespace {
            name: "prod".into(),
            labels: [("env".to_string(), "prod".to_string())].into()
        }]
    );
    assert_eq!(
        o.policies.iter().map(Policy::key).collect::<Vec<_>>(),
        ["default/test-network-policy", "prod/deny"]
    );
    let json = r#"{"apiVersion":"networking.k8s.io/v1","kind":"NetworkPolicy","metadata":{"name":"j"},"spec":{"podSelector":{"matchExpressions":[{"key":"app","operator":"In","values":["a","b"]}]}}}"#;
    assert_eq!(one(json).pod_selector.to_string(), "app in (a,b)");
    let e = refused(&format!("{DOCS_EXAMPLE}\n---\n{DOCS_EXAMPLE}"));
    assert_eq!(
        e,
        "document 2 (NetworkPolicy default/test-network-policy): defined twice in this file"
    );
}

#[test]
fn what_the_api_server_refuses_is_refused() {
    let rule = |r: &str| {
        refused(&format!(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {{name: p}}\nspec:\n  podSelector: {{}}\n  ingress:\n    - {r}\n"
        ))
    };
    assert!(rule("ports: [{port: http}]")
        .contains("spec.ingress[0].ports[0].port: named ports (\"http\") are not supported"));
    assert!(rule("ports: [{port: 90, endPort: 80}]").contains("spec.ingress[0].ports[0].endPort: 80 is below port 90"));
    assert!(rule("ports: [{endPort: 80}]").contains("endPort needs a numeric port"));
    assert!(rule("ports: [{port: 70000}]").contains("70000 is not a port"));
    assert!(rule("ports: [{port: 80, protocol: tcp}]").contains("spec.ingress[0].ports[0].protocol"));
    assert!(rule("from: [{}]").contains("spec.ingress[0].from[0]: a peer needs"));
    assert!(rule("from: [{ipBlock: {cidr: 10.0.0.0/8}, podSelector: {}}]").contains("cannot be combined"));
    assert!(rule("from: [{ipBlock: {cidr: 10.0.0.0/8, except: [192.168.0.0/16]}}]")
        .contains("spec.ingress[0].from[0].ipBlock.except[0]: 192.168.0.0/16 must be strictly inside 10.0.0.0/8"));
    assert!(rule("from: [{ipBlock: {cidr: ten}}]").contains("is not an address block"));
    assert!(
        rule("from: [{podSelector: {matchExpressions: [{key: app, operator: In}]}}]")
            .contains("spec.ingress[0].from[0].podSelector.matchExpressions[0].values: In needs values")
    );
    assert!(rule("from: [{podSelector: {matchLabels: {app: 'a b'}}}]").contains("podSelector.matchLabels: label value"));
    assert!(refused("apiVersion: v1\nkind: Service\nmetadata: {name: s}\n")
        .contains("kind \"Service\" is not understood here"));
    assert!(refused("apiVersion: v1\nkind: NetworkPolicy\nmetadata: {name: s}\n")
        .contains("wants apiVersion \"networking.k8s.io/v1\""));
    assert!(
        refused("apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {namespace: x}\n")
            .contains("needs a name")
    );
    assert!(refused("").contains("no objects"));
    assert!(refused("apiVersion: v1\nkind: Namespace\nmetadata: {name: Prod}\n").contains("metadata.name"));
}

#[test]
fn ipv6_blocks_are_ignored_without_widening_a_rule() {
    let o = parse(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: p}\nspec:\n  podSelector: {}\n  policyTypes: [Egress]\n  egress:\n    - to: [{ipBlock: {cidr: '::/0'}}]\n    - to: [{ipBlock: {cidr: '::/0'}}, {ipBlock: {cidr: 10.1.2.3/16}}]\n",
    )
    .unwrap();
    let egress = o.policies[0].egress.as_ref().unwrap();
    assert_eq!(
        egress.len(),
        1,
        "the rule naming IPv6 only is gone, not turned into 'any peer'"
    );
    assert_eq!(
        egress[0].peers,
        vec![Peer::Block {
            cidr: "10.1.0.0/16".parse().unwrap(),
            except: vec![]
        }]
    );
    assert_eq!(o.warnings.len(), 3, "{:?}", o.warnings);
}
