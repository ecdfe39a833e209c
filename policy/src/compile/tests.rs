//! The compiler's semantics, one case a test.

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

#[test]
fn a_thousand_policies_merge_into_one_table_per_set_of_them() {
    let w = World::new();
    let policies: Vec<Policy> = (0..1000u16)
        .map(|i| {
            let mut p = policy("default", &format!("p{i}"), select(&[("app", "web")]));
            p.ingress = Some(vec![Rule {
                peers: vec![pods(select(&[("app", "client")]))],
                ports: vec![tcp(10_000 + i)],
            }]);
            p
        })
        .collect();
    let c = w.compile(&policies);
    assert_eq!(c.table_count(), 1, "web is the only one selected");
    assert_eq!(
        c.verdict(TO_WEB, Direction::Ingress, CLIENT, IPPROTO_TCP, 10_999),
        Verdict::Allowed(RuleRef { policy: 999, rule: 0 })
    );
    assert_eq!(
        c.verdict(TO_WEB, Direction::Ingress, OTHER, IPPROTO_TCP, 10_999),
        Verdict::Denied
    );
    assert_eq!(c.endpoint(TO_WEB).policies(Direction::Ingress).count(), 1000);
}

#[test]
fn overlapping_blocks_and_exceptions_become_disjoint_segments() {
    let block = |cidr: &str, except: &[&str]| Peer::Block {
        cidr: cidr.parse().unwrap(),
        except: except.iter().map(|e| e.parse().unwrap()).collect(),
    };
    let mut p = policy("default", "blocks", select(&[("app", "web")]));
    p.egress = Some(vec![
        Rule {
            peers: vec![block("10.0.0.0/8", &["10.1.0.0/16", "10.2.0.0/16"])],
            ports: vec![tcp(80)],
        },
        Rule {
            peers: vec![block("10.1.2.0/24", &[]), block("0.0.0.0/0", &["10.0.0.0/8"])],
            ports: vec![tcp(443)],
        },
    ]);
    let c = World::new().compile(&[p]);
    let v = |addr: &str, port| c.verdict(TO_WEB, Direction::Egress, addr.parse().unwrap(), IPPROTO_TCP, port);
    let rule = |rule| Verdict::Allowed(RuleRef { policy: 0, rule });
    assert_eq!(v("10.0.0.1", 80), rule(0));
    assert_eq!(v("10.255.255.255", 80), rule(0));
    assert_eq!(v("10.1.2.3", 80), Verdict::Denied, "cut out of rule 0");
    assert_eq!(v("10.1.2.3", 443), rule(1), "but inside rule 1's other block");
    assert_eq!(v("10.1.3.3", 443), Verdict::Denied);
    assert_eq!(v("10.3.0.0", 80), rule(0), "right after the second hole");
    assert_eq!(v("0.0.0.0", 443), rule(1));
    assert_eq!(v("255.255.255.255", 443), rule(1));
    assert_eq!(v("11.0.0.0", 80), Verdict::Denied);
}

/// Merging the tables of several policies selecting one pod.
mod merging {
    use super::*;
    use crate::model::{Rule, Selector};

    fn l(v: &str) -> Labels {
        [("app".to_string(), v.to_string())].into()
    }

    fn sel(v: &str) -> Selector {
        Selector {
            match_labels: l(v),
            ..Default::default()
        }
    }

    /// web at 10.0.0.2 and client at 10.0.0.3, both in shop.
    fn shop<'a>(web: &'a Labels, client: &'a Labels) -> [Member<'a>; 2] {
        let at = |labels, last| Member {
            namespace: "shop",
            labels,
            addr: Ipv4Addr::new(10, 0, 0, last),
        };
        [at(web, 2), at(client, 3)]
    }

    /// A deny-all and a port-range allow selecting the same pod merge into
    /// the range alone: the port after the range stays denied.
    #[test]
    fn a_deny_all_merged_with_a_range_allows_the_range_only() {
        let (web, client) = (l("web"), l("client"));
        let members = shop(&web, &client);
        let deny = Policy {
            namespace: "shop".into(),
            name: "d".into(),
            pod_selector: sel("web"),
            ingress: Some(vec![]),
            egress: None,
        };
        let allow = Policy {
            namespace: "shop".into(),
            name: "a".into(),
            pod_selector: sel("web"),
            ingress: Some(vec![Rule {
                peers: vec![Peer::Pods {
                    pods: Some(sel("client")),
                    namespaces: None,
                }],
                ports: vec![PortMatch {
                    protocol: Protocol::Tcp,
                    port: Some(8000),
                    end_port: Some(8080),
                }],
            }]),
            egress: None,
        };
        let c = compile(&[deny, allow], &BTreeMap::new(), &members);
        let v = |p| c.verdict(0, Direction::Ingress, Ipv4Addr::new(10, 0, 0, 3), IPPROTO_TCP, p);
        assert!(v(8080).allows());
        assert!(!v(8081).allows(), "{:?}", v(8081));
    }

    /// One policy isolating both directions gives two tables: what ingress
    /// allows is not what egress allows.
    #[test]
    fn one_policy_on_both_sides_keeps_its_sides_apart() {
        let (web, client) = (l("web"), l("client"));
        let members = shop(&web, &client);
        let rule = |port| Rule {
            peers: vec![Peer::Pods {
                pods: Some(sel("client")),
                namespaces: None,
            }],
            ports: vec![PortMatch {
                protocol: Protocol::Tcp,
                port: Some(port),
                end_port: None,
            }],
        };
        let both = Policy {
            namespace: "shop".into(),
            name: "both".into(),
            pod_selector: sel("web"),
            ingress: Some(vec![rule(80)]),
            egress: Some(vec![rule(53)]),
        };
        let c = compile(&[both], &BTreeMap::new(), &members);
        let client = Ipv4Addr::new(10, 0, 0, 3);
        let v = |d, p| c.verdict(0, d, client, IPPROTO_TCP, p).allows();
        assert!(v(Direction::Ingress, 80));
        assert!(!v(Direction::Ingress, 53));
        assert!(v(Direction::Egress, 53));
        assert!(!v(Direction::Egress, 80));
    }
}
