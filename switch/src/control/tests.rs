//! The transaction helper, without devices: bridges, links, NAT settings
//! and published ports need no root and no kernel objects.

use std::fs;
use std::path::{Path, PathBuf};

use vswitch_ctl::{req, NatProto, PublishRule, Reply, Request};
use vswitch_nat::table::ConnTable;
use vswitch_nat::tuple::Proto;

use super::store::{Store, JOURNAL_FILE, STATE_FILE};
use super::validate::valid_name;
use super::*;
use crate::snapshot::Snapshot;

fn temp_dir(tag: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("vswitch-control-{tag}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// What is saved in `dir`: the state file and the journal.
fn saved_files(dir: &Path) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
    (
        fs::read(dir.join(STATE_FILE)).ok(),
        fs::read(dir.join(JOURNAL_FILE)).ok(),
    )
}

/// Makes every save fail: directories where the state file's temporary and
/// the journal go stop even root. The journal, to put back.
fn block_saves(dir: &Path) -> Option<Vec<u8>> {
    let journal = fs::read(dir.join(JOURNAL_FILE)).ok();
    let _ = fs::remove_file(dir.join(JOURNAL_FILE));
    fs::create_dir(dir.join(JOURNAL_FILE)).unwrap();
    fs::create_dir(dir.join(format!("{STATE_FILE}.tmp"))).unwrap();
    journal
}

fn unblock_saves(dir: &Path, journal: Option<Vec<u8>>) {
    fs::remove_dir(dir.join(JOURNAL_FILE)).unwrap();
    fs::remove_dir(dir.join(format!("{STATE_FILE}.tmp"))).unwrap();
    if let Some(journal) = journal {
        fs::write(dir.join(JOURNAL_FILE), journal).unwrap();
    }
}

fn manager(dir: &Path) -> Manager {
    let cell = Arc::new(SnapshotCell::new(Snapshot::default()));
    let mut m = Manager::new(
        dir.to_path_buf(),
        Store::open(dir).unwrap(),
        Vec::new(),
        cell,
        ConnTable::new(16),
    );
    m.restore();
    m
}

fn add_br(name: &str, subnet: &str) -> Request {
    Request::AddBr(req::AddBr {
        may_exist: false,
        name: name.into(),
        aging_secs: None,
        max_macs: None,
        subnet: Some(subnet.parse().unwrap()),
        gateway: None,
        ip_range: None,
        uplink_via: None,
        icc: None,
    })
}

fn publish(port: u16) -> Request {
    Request::Publish(req::Publish {
        may_exist: false,
        bridge: "br0".into(),
        rule: PublishRule {
            proto: NatProto::Tcp,
            port,
            to_ip: "10.1.0.5".parse().unwrap(),
            to_port: 80,
        },
    })
}

/// What a client can see of the switch: the state it shows and the
/// snapshot the poll threads forward with.
fn seen(m: &Manager) -> (String, u64, Vec<bool>) {
    let show = serde_json::to_string(&m.show()).unwrap();
    let snap = m.cell.load();
    let l3 = snap.bridges.iter().flatten().map(|b| b.l3.is_some()).collect();
    (show, snap.generation, l3)
}

#[test]
fn a_failed_save_changes_nothing() {
    let dir = temp_dir("save");
    let mut m = manager(&dir);
    for r in [
        add_br("br0", "10.1.0.0/24"),
        add_br("br1", "10.2.0.0/24"),
        publish(8080),
    ] {
        assert_eq!(m.handle(r).unwrap(), Reply::Done);
    }
    let file = saved_files(&dir);
    let before = seen(&m);
    let desired = m.desired.clone();

    let journal = block_saves(&dir);
    let changes = [
        add_br("br2", "10.3.0.0/24"),
        Request::DelBr(req::DelBr {
            if_exists: false,
            name: "br1".into(),
        }),
        Request::LinkBr(req::LinkBr {
            a: "br0".into(),
            b: "br1".into(),
        }),
        Request::SetNat(req::SetNat {
            bridge: "br0".into(),
            masquerade: true,
        }),
        publish(9090),
        Request::Unpublish(req::Unpublish {
            if_exists: false,
            bridge: "br0".into(),
            proto: NatProto::Tcp,
            port: 8080,
        }),
    ];
    for request in changes {
        let err = m.handle(request.clone()).expect_err("the save must fail");
        let text = error_chain(&err);
        assert!(
            text.starts_with("cannot save the configuration; nothing was changed: cannot write state file"),
            "{request:?}: {text}"
        );
        assert_eq!(saved_files(&dir).0, file.0, "{request:?}: the state file moved");
        assert_eq!(seen(&m), before, "{request:?}: the running switch moved");
        assert_eq!(m.desired, desired, "{request:?}");
        let table = &m.bridges["br0"].published;
        assert!(table.get(Proto::Tcp, 8080).is_some() && table.get(Proto::Tcp, 9090).is_none());
        assert_eq!(m.bridges.len(), 2);
    }

    let counted = m.control_stats();
    assert_eq!(
        (counted.changes, counted.save_failures),
        (3, 6),
        "three changes, six failed saves"
    );

    unblock_saves(&dir, journal);
    assert_eq!(saved_files(&dir), file);
    m.handle(publish(9090)).unwrap();
    assert_eq!(m.control_stats().changes, 4);
    m.handle(Request::DelBr(req::DelBr {
        if_exists: false,
        name: "br1".into(),
    }))
    .unwrap();
    assert!(m.bridges["br0"].published.get(Proto::Tcp, 9090).is_some());
    assert_eq!(m.bridges.len(), 1);
    assert!(seen(&m).1 > before.1, "a new snapshot was published");
    let saved = Store::open(&dir).unwrap().0;
    assert_eq!(saved, m.desired);
    assert_eq!(saved.bridges.len(), 1);
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn an_invalid_change_is_refused_whole() {
    let dir = temp_dir("invalid");
    let mut m = manager(&dir);
    m.handle(add_br("br0", "10.1.0.0/24")).unwrap();
    m.handle(publish(8080)).unwrap();
    let file = saved_files(&dir);
    let before = seen(&m);
    for (request, expected) in [
        (add_br("br0", "10.9.0.0/24"), "bridge 'br0' already exists"),
        (
            add_br("big", "10.0.0.0/8"),
            "subnet 10.0.0.0/8 of bridge 'big' overlaps 10.1.0.0/24 of bridge 'br0'",
        ),
        (publish(8080), "port tcp/8080 is already published on bridge 'br0'"),
        // What another client than vsctl sends is held to vsctl's rules.
        (
            add_br("hb", "10.5.0.1/24"),
            "invalid subnet '10.5.0.1/24': host bits are set (did you mean 10.5.0.0/24?)",
        ),
        (
            add_br("tiny", "10.6.0.0/31"),
            "invalid subnet '10.6.0.0/31': the prefix must be between 8 and 30",
        ),
    ] {
        let text = error_chain(&m.handle(request).unwrap_err());
        assert_eq!(text, expected);
        assert_eq!(saved_files(&dir), file);
        assert_eq!(seen(&m), before);
    }
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn an_address_range_must_lie_in_the_subnet() {
    let dir = temp_dir("range");
    let mut m = manager(&dir);
    let with_range = |name: &str, range: &str| {
        Request::AddBr(req::AddBr {
            may_exist: false,
            name: name.into(),
            aging_secs: None,
            max_macs: None,
            subnet: Some("10.1.0.0/24".parse().unwrap()),
            gateway: None,
            ip_range: Some(range.parse().unwrap()),
            uplink_via: None,
            icc: None,
        })
    };
    for range in ["10.2.0.0/25", "10.1.0.0/23"] {
        let text = error_chain(&m.handle(with_range("br0", range)).unwrap_err());
        assert_eq!(
            text,
            format!("address range {range} is not part of 10.1.0.0/24, or holds no host address but the gateway")
        );
    }
    assert!(m.desired.bridges.is_empty());
    m.handle(with_range("br0", "10.1.0.128/25")).unwrap();
    let shown = m.show();
    assert_eq!(shown[0].ip_range, Some("10.1.0.128/25".parse().unwrap()));
    assert_eq!(Store::open(&dir).unwrap().0.bridges[0].ip_range, shown[0].ip_range);
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_change_that_changes_nothing_saves_nothing() {
    let dir = temp_dir("noop");
    let mut m = manager(&dir);
    m.handle(add_br("br0", "10.1.0.0/24")).unwrap();
    let generation = seen(&m).1;
    block_saves(&dir);
    let off = Request::SetNat(req::SetNat {
        bridge: "br0".into(),
        masquerade: false,
    });
    assert_eq!(m.handle(off).unwrap(), Reply::Done, "already off: no save needed");
    assert_eq!(seen(&m).1, generation);
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn slots_are_reused_lowest_first() {
    assert_eq!(free_slot([].into_iter()), 0);
    assert_eq!(free_slot([0, 1, 3].into_iter()), 2);
    assert_eq!(free_slot([3, 1, 0, 2].into_iter()), 4);
    assert_eq!(free_slot([1].into_iter()), 0);
}

#[test]
fn names() {
    assert!(valid_name("br-0_a.b", 32));
    assert!(!valid_name("", 32));
    assert!(!valid_name("br 0", 32));
    assert!(!valid_name("a/b", 32));
    assert!(!valid_name(&"x".repeat(33), 32));
}

#[test]
fn tunnel_requests_that_cannot_work_are_refused_with_the_reason() {
    let dir = temp_dir("tunnel");
    let mut m = manager(&dir);
    m.handle(add_br("ov", "10.1.0.0/24")).unwrap();
    let vxlan = |vni: u32, underlay: Option<&str>, remotes: &[&str]| {
        Request::AddVxlan(req::AddVxlan {
            may_exist: false,
            bridge: "ov".into(),
            vni,
            port: None,
            underlay: underlay.map(Into::into),
            remotes: remotes.iter().map(|r| r.parse().unwrap()).collect(),
            learn: true,
            udp_csum: false,
        })
    };
    let refused = |m: &mut Manager, r: Request| error_chain(&m.handle(r).unwrap_err());
    assert_eq!(
        refused(&mut m, vxlan(42, None, &[])),
        "the tunnel of bridge 'ov' needs the uplink of bridge 'ov' (add-uplink first; del-vxlan before removing it)"
    );
    assert_eq!(
        refused(&mut m, vxlan(42, Some("nope"), &[])),
        "bridge 'nope' does not exist"
    );
    assert_eq!(
        refused(&mut m, vxlan(1 << 24, None, &[])),
        "vni must be between 1 and 16777215, not 16777216"
    );
    assert_eq!(
        refused(&mut m, vxlan(0, None, &[])),
        "vni must be between 1 and 16777215, not 0"
    );
    assert_eq!(
        refused(&mut m, vxlan(42, None, &["224.0.0.1"])),
        "224.0.0.1 cannot be a remote VTEP (one unicast host address)"
    );
    let vtep: std::net::Ipv4Addr = "192.0.2.9".parse().unwrap();
    assert_eq!(
        refused(
            &mut m,
            Request::AddVtep(req::AddVtep {
                bridge: "ov".into(),
                ip: vtep
            })
        ),
        "bridge 'ov' has no tunnel (add-vxlan)"
    );
    assert!(
        m.desired.bridge("ov").unwrap().vxlan.is_none(),
        "nothing was half-added"
    );
    assert_eq!(m.vtep_show(None).unwrap(), Vec::new());
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn bridges_leaving_through_one_uplink_share_its_zone_and_published_ports() {
    let dir = temp_dir("via");
    let mut m = manager(&dir);
    let via = |name: &str, subnet: &str, via: &str| match add_br(name, subnet) {
        Request::AddBr(req::AddBr {
            name,
            aging_secs,
            max_macs,
            subnet,
            gateway,
            ip_range,
            ..
        }) => Request::AddBr(req::AddBr {
            may_exist: false,
            name,
            aging_secs,
            max_macs,
            subnet,
            gateway,
            ip_range,
            uplink_via: Some(via.into()),
            icc: None,
        }),
        other => other,
    };
    let refused = |m: &mut Manager, r: Request| error_chain(&m.handle(r).unwrap_err());
    assert!(refused(&mut m, via("d1", "10.2.0.0/24", "ul"))
        .starts_with("bridge 'd1' leaves through bridge 'ul', which is not"));
    m.handle(add_br("br0", "10.1.0.0/24")).unwrap();
    m.handle(via("d1", "10.2.0.0/24", "br0")).unwrap();
    m.handle(via("d2", "10.3.0.0/24", "br0")).unwrap();
    assert!(refused(&mut m, via("d3", "10.4.0.0/24", "d1")).contains("which is not a routed bridge of its own way out"));
    assert!(refused(
        &mut m,
        Request::DelBr(req::DelBr {
            if_exists: false,
            name: "br0".into()
        })
    )
    .starts_with("bridge 'd1' leaves through bridge 'br0'"));

    // One rule per port of the one address.
    m.handle(publish(8080)).unwrap();
    let on_d1 = |port: u16| {
        Request::Publish(req::Publish {
            may_exist: false,
            bridge: "d1".into(),
            rule: PublishRule {
                proto: NatProto::Tcp,
                port,
                to_ip: "10.2.0.5".parse().unwrap(),
                to_port: 80,
            },
        })
    };
    assert_eq!(
        refused(&mut m, on_d1(8080)),
        "port tcp/8080 is already published on bridge 'br0'"
    );
    m.handle(on_d1(8081)).unwrap();
    m.handle(Request::SetNat(req::SetNat {
        bridge: "d2".into(),
        masquerade: true,
    }))
    .unwrap();

    // The datapath's view: one zone (the uplink bridge's), every published
    // table of the group, routes between each sharer and the uplink bridge
    // but not between the sharers.
    let snap = m.cell.load();
    let slot = |name: &str| m.bridges[name].slot;
    let l3 = |name: &str| snap.bridge(slot(name)).and_then(|b| b.l3.as_ref()).unwrap();
    for name in ["br0", "d1", "d2"] {
        let nat = l3(name).nat.as_ref().unwrap_or_else(|| panic!("{name} translates"));
        assert_eq!(nat.zone, slot("br0") as u16, "{name}");
        assert_eq!(nat.published.len(), 3, "{name}");
        assert!(nat.published.iter().any(|t| t.get(Proto::Tcp, 8081).is_some()));
        assert_eq!(nat.masquerade, name == "d2");
    }
    assert!(l3("br0").routes_to.contains(&slot("d1")) && l3("br0").routes_to.contains(&slot("d2")));
    assert!(l3("d1").routes_to.contains(&slot("br0")) && !l3("d1").routes_to.contains(&slot("d2")));
    assert_eq!(
        m.show()
            .iter()
            .find(|b| b.name == "d1")
            .and_then(|b| b.uplink_via.clone()),
        Some("br0".into())
    );
    let saved = Store::open(&dir).unwrap().0;
    assert_eq!(
        saved.bridge("d2").and_then(|b| b.uplink_via.clone()),
        Some("br0".into())
    );
    m.handle(Request::DelBr(req::DelBr {
        if_exists: false,
        name: "d1".into(),
    }))
    .unwrap();
    m.handle(Request::DelBr(req::DelBr {
        if_exists: false,
        name: "d2".into(),
    }))
    .unwrap();
    m.handle(Request::DelBr(req::DelBr {
        if_exists: false,
        name: "br0".into(),
    }))
    .unwrap();
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn a_rule_among_rules_takes_effect_without_a_new_snapshot() {
    let dir = temp_dir("rules");
    let mut m = manager(&dir);
    m.handle(add_br("br0", "10.1.0.0/24")).unwrap();
    let generation = seen(&m).1;
    m.handle(publish(8080)).unwrap();
    assert!(
        seen(&m).1 > generation,
        "the bridge's first rule sets up NAT: a new snapshot"
    );
    let generation = seen(&m).1;
    let before = m.desired.clone();
    m.handle(publish(8081)).unwrap();
    assert_eq!(seen(&m).1, generation, "a second rule: the shared table only");
    assert!(m.bridges["br0"].published.get(Proto::Tcp, 8081).is_some());
    let (old, new) = (&before.bridges[0], &m.desired.bridges[0]);
    assert!(
        std::ptr::eq(old.ports.as_slice(), new.ports.as_slice()),
        "the lists a change does not touch stay shared with the copy before it"
    );
    m.handle(Request::Unpublish(req::Unpublish {
        if_exists: false,
        bridge: "br0".into(),
        proto: NatProto::Tcp,
        port: 8081,
    }))
    .unwrap();
    assert!(m.bridges["br0"].published.get(Proto::Tcp, 8081).is_none());
    assert_eq!(Store::open(&dir).unwrap().0, m.desired);
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn may_exist_and_if_exists_make_nothing_to_do_no_error_and_no_save() {
    let dir = temp_dir("idem");
    let mut m = manager(&dir);
    m.handle(add_br("br0", "10.1.0.0/24")).unwrap();
    let file = saved_files(&dir);
    let again = |may_exist| {
        Request::AddBr(req::AddBr {
            may_exist,
            ..match add_br("br0", "10.9.0.0/24") {
                Request::AddBr(r) => r,
                _ => unreachable!(),
            }
        })
    };
    assert!(m.handle(again(false)).is_err());
    assert_eq!(m.handle(again(true)).unwrap(), Reply::Done);
    let del = |if_exists| {
        Request::DelBr(req::DelBr {
            name: "nope".into(),
            if_exists,
        })
    };
    assert!(m.handle(del(false)).is_err());
    assert_eq!(m.handle(del(true)).unwrap(), Reply::Done);
    assert_eq!(saved_files(&dir), file, "nothing saved");
    assert_eq!(
        m.show()[0].subnet,
        Some("10.1.0.0/24".parse().unwrap()),
        "the first settings stay"
    );
    fs::remove_dir_all(dir).unwrap();
}

#[test]
fn set_bridge_changes_the_live_table_and_the_saved_state_or_nothing() {
    let dir = temp_dir("setbr");
    let mut m = manager(&dir);
    m.handle(add_br("br0", "10.1.0.0/24")).unwrap();
    let set = |aging_secs, max_macs| {
        Request::SetBridge(req::SetBridge {
            name: "br0".into(),
            aging_secs,
            max_macs,
            icc: None,
        })
    };
    m.handle(set(Some(42), Some(7))).unwrap();
    let fdb = &m.bridges["br0"].fdb;
    assert_eq!((fdb.aging_secs(), fdb.max_entries()), (42, 7), "the live table");
    assert_eq!((m.show()[0].aging_secs, m.show()[0].max_macs), (42, 7));
    let saved = &Store::open(&dir).unwrap().0.bridges[0];
    assert_eq!((saved.aging_secs, saved.max_macs), (42, 7), "saved");
    m.handle(set(None, Some(9))).unwrap();
    assert_eq!(
        (m.show()[0].aging_secs, m.show()[0].max_macs),
        (42, 9),
        "only what is named changes"
    );
    let file = saved_files(&dir);
    for bad in [set(Some(0), None), set(None, Some(0)), set(None, None)] {
        assert!(m.handle(bad).is_err());
    }
    assert_eq!(saved_files(&dir), file);
    assert_eq!(
        m.bridges["br0"].fdb.max_entries(),
        9,
        "a refused change changed nothing"
    );
    fs::remove_dir_all(dir).unwrap();
}
