//! The connection table's tests: tracking, NAT, limits, expiry, shares,
//! restarts and mid-stream pickup.

use super::*;
use crate::tcp::Segment::{self, *};

const UPLINK: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);

fn tcp(src: [u8; 4], sport: u16, dst: [u8; 4], dport: u16, seg: Segment) -> Seen {
    let tuple = Tuple {
        zone: 1,
        proto: Proto::Tcp,
        src: src.into(),
        src_port: sport,
        dst: dst.into(),
        dst_port: dport,
    };
    Seen {
        tuple,
        tcp: Some(handshake(seg)),
    }
}

/// A segment of the handshake between ISNs 1000 (client) and 5000 (server).
fn handshake(kind: Segment) -> TcpSeg {
    let (seq, ack) = match kind {
        Syn => (1000, None),
        SynAck => (5000, Some(1001)),
        _ => (1001, Some(5001)),
    };
    TcpSeg {
        kind,
        seq,
        ack,
        window: 64_000,
        len: 0,
        wscale: None,
    }
}

/// A container's UDP flow to a DNS server.
fn dns_query(src_port: u16) -> Tuple {
    Tuple {
        zone: 1,
        proto: Proto::Udp,
        src: [10, 0, 0, 2].into(),
        src_port,
        dst: [192, 0, 2, 53].into(),
        dst_port: 53,
    }
}

fn masq(_: &Tuple) -> Nat {
    Nat {
        snat: Some(UPLINK),
        dnat: None,
    }
}

#[test]
fn both_directions_find_one_connection_through_masquerade() {
    let ct = ConnTable::new(100);
    let syn = tcp([10, 0, 0, 2], 40000, [192, 0, 2, 1], 80, Syn);
    let t = ct.track(syn, 0, masq).unwrap();
    assert_eq!(t.dir, Dir::Original);
    let out = t.conn.translated(Dir::Original);
    assert_eq!(
        (out.src, out.src_port),
        (UPLINK, 40000),
        "the container's port is kept when free"
    );
    // The answer comes to the uplink address.
    let synack = tcp([192, 0, 2, 1], 80, UPLINK.octets(), 40000, SynAck);
    let r = ct.track(synack, 1, |_| panic!("no new connection")).unwrap();
    assert_eq!(r.dir, Dir::Reply);
    let back = r.conn.translated(Dir::Reply);
    assert_eq!(
        (back.dst, back.dst_port),
        ([10, 0, 0, 2].into(), 40000),
        "translated back"
    );
    assert!(ct
        .track(tcp([10, 0, 0, 2], 40000, [192, 0, 2, 1], 80, Ack), 2, masq)
        .is_ok());
    assert_eq!(ct.len(), 1);
    assert_eq!(ct.snapshot(3)[0].2, Some(TcpState::Established));
}

#[test]
fn two_containers_with_one_source_port_get_distinct_ports() {
    let ct = ConnTable::new(100);
    let a = ct
        .track(tcp([10, 0, 0, 2], 5000, [192, 0, 2, 1], 80, Syn), 0, masq)
        .unwrap();
    let b = ct
        .track(tcp([10, 0, 0, 3], 5000, [192, 0, 2, 1], 80, Syn), 0, masq)
        .unwrap();
    let (pa, pb) = (
        a.conn.translated(Dir::Original).src_port,
        b.conn.translated(Dir::Original).src_port,
    );
    assert_eq!(pa, 5000);
    assert_ne!(pa, pb);
    assert!(MASQ_PORTS.contains(&pb));
    let to_b = ct
        .track(tcp([192, 0, 2, 1], 80, UPLINK.octets(), pb, SynAck), 1, masq)
        .unwrap();
    assert_eq!(
        to_b.conn.orig.src,
        Ipv4Addr::new(10, 0, 0, 3),
        "the reply finds the second container"
    );
}

#[test]
fn invalid_segments_limits_and_exhaustion_are_refused_and_counted() {
    let ct = ConnTable::new(2);
    assert_eq!(
        ct.track(tcp([10, 0, 0, 2], 1, [192, 0, 2, 1], 80, Ack), 0, masq).err(),
        Some(CtDrop::Invalid)
    );
    ct.track(tcp([10, 0, 0, 2], 1, [192, 0, 2, 1], 80, Syn), 0, masq)
        .unwrap();
    ct.track(tcp([10, 0, 0, 2], 2, [192, 0, 2, 1], 80, Syn), 0, masq)
        .unwrap();
    assert_eq!(
        ct.track(tcp([10, 0, 0, 2], 3, [192, 0, 2, 1], 80, Syn), 0, masq).err(),
        Some(CtDrop::TableFull)
    );
    assert!(
        ct.track(tcp([10, 0, 0, 2], 1, [192, 0, 2, 1], 80, Syn), 0, masq)
            .is_ok(),
        "existing ones still work"
    );
    assert_eq!(ct.stats.invalid.load(Ordering::Relaxed), 1);
    assert_eq!(ct.stats.table_full.load(Ordering::Relaxed), 1);

    // Every port toward one destination taken: the search gives up.
    let full = ConnTable::new(100_000);
    let dst = [192, 0, 2, 9];
    for port in MASQ_PORTS.clone().chain([7u16]) {
        let reply = Tuple {
            zone: 1,
            proto: Proto::Tcp,
            src: dst.into(),
            src_port: 80,
            dst: UPLINK,
            dst_port: port,
        };
        full.track(
            Seen {
                tuple: reply,
                tcp: Some(handshake(Syn)),
            },
            0,
            |_| Nat::default(),
        )
        .unwrap();
    }
    assert_eq!(
        full.track(tcp([10, 0, 0, 2], 7, dst, 80, Syn), 0, masq).err(),
        Some(CtDrop::PortsExhausted)
    );
}

#[test]
fn connections_expire_and_are_swept_and_flushed() {
    let ct = ConnTable::new(100);
    let udp = dns_query(5353);
    ct.track(Seen { tuple: udp, tcp: None }, 0, masq).unwrap();
    assert_eq!(ct.snapshot(29_999).len(), 1, "unreplied UDP lives 30 s");
    assert_eq!(ct.sweep(30_000), 1);
    assert!(ct.is_empty());
    ct.track(Seen { tuple: udp, tcp: None }, 40_000, masq).unwrap();
    let reply = Tuple {
        src: [192, 0, 2, 53].into(),
        src_port: 53,
        dst: UPLINK,
        dst_port: 5353,
        ..udp
    };
    ct.track(
        Seen {
            tuple: reply,
            tcp: None,
        },
        40_001,
        masq,
    )
    .unwrap();
    assert_eq!(ct.snapshot(40_001 + 119_000).len(), 1, "answered UDP lives 120 s");
    assert_eq!(ct.flush(|c| c.orig.src == Ipv4Addr::new(10, 0, 0, 2)), 1);
    assert!(ct.is_empty());
    assert!(
        ct.track(
            Seen {
                tuple: reply,
                tcp: None
            },
            40_002,
            |_| Nat::default()
        )
        .unwrap()
        .dir == Dir::Original,
        "after a flush, an answer is a new connection"
    );
}

#[test]
fn timeouts_can_be_shortened() {
    let short = Timeouts {
        udp: Duration::from_secs(2),
        ..Timeouts::default()
    };
    let ct = ConnTable::with_timeouts(10, short);
    let udp = dns_query(1);
    ct.track(Seen { tuple: udp, tcp: None }, 0, masq).unwrap();
    assert_eq!(ct.snapshot(1_999).len(), 1);
    assert_eq!(ct.sweep(2_000), 1, "gone after 2 s instead of 30");
}

#[test]
fn port_publishing_translates_the_destination() {
    let ct = ConnTable::new(100);
    let publish = |_: &Tuple| Nat {
        snat: None,
        dnat: Some((Ipv4Addr::new(10, 0, 0, 5), 80)),
    };
    let syn = tcp([203, 0, 113, 7], 50000, UPLINK.octets(), 8080, Syn);
    let t = ct.track(syn, 0, publish).unwrap();
    let inward = t.conn.translated(Dir::Original);
    assert_eq!((inward.dst, inward.dst_port), (Ipv4Addr::new(10, 0, 0, 5), 80));
    let answer = tcp([10, 0, 0, 5], 80, [203, 0, 113, 7], 50000, SynAck);
    let r = ct.track(answer, 1, publish).unwrap();
    let outward = r.conn.translated(Dir::Reply);
    assert_eq!(
        (outward.src, outward.src_port),
        (UPLINK, 8080),
        "the answer leaves from the published address"
    );
}

#[test]
fn one_container_cannot_hold_more_than_its_share() {
    let table = ConnTable::new(100).with_max_per_host(2);
    let udp = |port| Seen {
        tuple: dns_query(port),
        tcp: None,
    };
    table.track(udp(1), 0, masq).unwrap();
    table.track(udp(2), 0, masq).unwrap();
    assert!(matches!(table.track(udp(3), 0, masq), Err(CtDrop::HostLimit)));
    assert_eq!(table.stats.host_limit.load(Ordering::Relaxed), 1);
    // A packet of a connection it holds still passes.
    assert!(table.track(udp(1), 1, masq).is_ok());
    // A sibling still gets its own share.
    let sibling = Seen {
        tuple: Tuple {
            src: [10, 0, 0, 3].into(),
            ..dns_query(1)
        },
        tcp: None,
    };
    assert!(table.track(sibling, 0, masq).is_ok());
    assert_eq!(table.held_by(1, [10, 0, 0, 2].into()), 2);
    // A published port counts against the container it leads to.
    let inbound = Seen {
        tuple: Tuple {
            zone: 1,
            proto: Proto::Tcp,
            src: [203, 0, 113, 9].into(),
            src_port: 40_000,
            dst: UPLINK,
            dst_port: 8080,
        },
        tcp: Some(handshake(Syn)),
    };
    let publish = |_: &Tuple| Nat {
        snat: None,
        dnat: Some(([10, 0, 0, 2].into(), 80)),
    };
    assert!(matches!(table.track(inbound, 0, publish), Err(CtDrop::HostLimit)));
    // Once a connection goes, the share is back.
    table.flush(|c| c.orig.src_port == 2);
    assert_eq!(table.held_by(1, [10, 0, 0, 2].into()), 1);
    assert!(table.track(inbound, 0, publish).is_ok());
    table.flush(|_| true);
    assert_eq!(
        table.held_by(1, [10, 0, 0, 2].into()),
        0,
        "nothing held, nothing counted"
    );
}

#[test]
fn a_saved_table_comes_back_in_new_zones_and_keeps_its_state() {
    let ct = ConnTable::new(100);
    ct.track(tcp([10, 0, 0, 2], 1000, [192, 0, 2, 1], 80, Syn), 0, masq)
        .unwrap();
    let reply = tcp([192, 0, 2, 1], 80, [198, 51, 100, 2], 1000, SynAck);
    ct.track(reply, 1, masq).unwrap();
    ct.track(tcp([10, 0, 0, 2], 1000, [192, 0, 2, 1], 80, Ack), 2, masq)
        .unwrap();
    let udp = Seen {
        tuple: dns_query(53),
        tcp: None,
    };
    ct.track(udp, 0, masq).unwrap();
    let saved = ct.export(10);
    assert_eq!(saved.len(), 2);
    // Through JSON, as vswitchd writes it.
    let saved: Vec<SavedConn> = serde_json_roundtrip(&saved);

    let back = ConnTable::new(100);
    // 29.99 s after the save: the unanswered UDP flow (30 s) is almost
    // gone but not quite; zone 1 is zone 7 now.
    assert_eq!(back.import(saved.clone(), 0, 29_980, |z| (z == 1).then_some(7)), 2);
    let data = |seg| Seen {
        tuple: Tuple {
            zone: 7,
            ..tcp([10, 0, 0, 2], 1000, [192, 0, 2, 1], 80, seg).tuple
        },
        tcp: Some(TcpSeg {
            seq: 1001,
            ack: Some(5001),
            len: 100,
            ..handshake(Ack)
        }),
    };
    let t = back.track_existing(data(Ack), 1).expect("found").expect("in window");
    assert_eq!(t.conn.reply.dst, UPLINK, "the translation came back");
    assert_eq!(back.held_by(7, [10, 0, 0, 2].into()), 2);
    // A zone that is gone takes its connections with it; too late is too late.
    assert_eq!(ConnTable::new(100).import(saved.clone(), 0, 0, |_| None), 0);
    assert_eq!(
        ConnTable::new(100).import(saved, 0, 31_000, Some),
        1,
        "only the TCP one is left"
    );
}

fn serde_json_roundtrip(saved: &[SavedConn]) -> Vec<SavedConn> {
    let text = serde_json::to_string(saved).expect("serialize");
    serde_json::from_str(&text).expect("deserialize")
}

#[test]
fn established_flows_are_picked_up_only_after_a_crash_and_only_if_rebuildable() {
    let ct = ConnTable::new(100);
    let mid = |sport| tcp([10, 0, 0, 2], sport, [192, 0, 2, 1], 80, Ack);
    assert_eq!(
        ct.track(mid(1000), 0, masq).err(),
        Some(CtDrop::Invalid),
        "not after a clean start"
    );
    ct.pick_up_until(60_000);
    let t = ct.track(mid(1000), 1, masq).expect("picked up");
    assert_eq!(t.conn.reply.dst_port, 1000, "the source port kept");
    assert_eq!(ct.stats.picked_up.load(Ordering::Relaxed), 1);
    // Its windows are unknown: any sequence number of the flow passes.
    let far = Seen {
        tcp: Some(TcpSeg {
            seq: 3_000_000_000,
            ack: Some(77),
            ..handshake(Ack)
        }),
        ..mid(1000)
    };
    assert!(ct.track(far, 2, masq).is_ok());
    let answer = tcp([192, 0, 2, 1], 80, [198, 51, 100, 2], 1000, Ack);
    assert!(
        ct.track_existing(answer, 3,).expect("found").is_ok(),
        "the answer finds it"
    );
    // The port is taken now (by the picked-up flow): another container's
    // flow with the same source port cannot be picked up.
    let other = Seen {
        tuple: Tuple {
            src: [10, 0, 0, 3].into(),
            ..mid(1000).tuple
        },
        ..mid(1000)
    };
    assert_eq!(ct.track(other, 4, masq).err(), Some(CtDrop::Invalid));
    // The window closes.
    assert_eq!(ct.track(mid(2000), 60_000, masq).err(), Some(CtDrop::Invalid));
}
