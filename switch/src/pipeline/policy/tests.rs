//! The policy stages' unit tests: verdicts of crafted frames against
//! small compiled views.

use std::collections::BTreeMap;
use std::sync::Arc;

use etherparse::PacketBuilder;
use vswitch_nat::table::ConnTable;
use vswitch_policy::compile::{compile, Member};
use vswitch_policy::model::{Labels, Peer, Policy, PortMatch, Protocol, Rule, Selector};

use super::*;
use crate::flows::FlowLogs;
use crate::packet::PacketPool;

const GW: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
const WEB: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 2);
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 3);
const OTHER: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 4);
const WEB_M: u32 = 0;
const MAC: [u8; 6] = [2, 0, 0, 0, 0, 9];

fn labels(app: &str) -> Labels {
    [("app".to_string(), app.to_string())].into()
}

/// web isolated for ingress; app=client may reach TCP 80 (or, with
/// `open`, anything).
fn view(generation: u64, open: bool) -> PolicyView {
    let ls = [labels("web"), labels("client"), labels("other")];
    let members: Vec<Member> = [WEB, CLIENT, OTHER]
        .iter()
        .zip(&ls)
        .map(|(&addr, labels)| Member {
            namespace: "default",
            labels,
            addr,
        })
        .collect();
    let ports = if open {
        vec![]
    } else {
        vec![PortMatch {
            protocol: Protocol::Tcp,
            port: Some(80),
            end_port: None,
        }]
    };
    let policy = Policy {
        namespace: "default".into(),
        name: "web".into(),
        pod_selector: Selector {
            match_labels: labels("web"),
            ..Default::default()
        },
        ingress: Some(vec![Rule {
            peers: vec![Peer::Pods {
                pods: Some(Selector {
                    match_labels: labels("client"),
                    ..Default::default()
                }),
                namespaces: None,
            }],
            ports,
        }]),
        egress: None,
    };
    let compiled = compile(&[policy], &BTreeMap::new(), &members);
    PolicyView {
        compiled: Arc::new(compiled),
        members: [((0, WEB), 0), ((0, CLIENT), 1), ((0, OTHER), 2)].into_iter().collect(),
        apart: vec![None; 3],
        flows: Arc::new(FlowLogs::default()),
        ct: Arc::new(ConnTable::new(64).without_windows()),
        generation,
    }
}

fn frame(bytes: &[u8]) -> Frame {
    let mut pool = PacketPool::new(1);
    let mut f = pool.alloc().expect("a buffer");
    f.fill(bytes);
    f.meta.eth_offset = Some(0);
    f
}

fn tcp(src: Ipv4Addr, sport: u16, dst: Ipv4Addr, dport: u16, syn: bool) -> Frame {
    let mut out = Vec::new();
    let b = PacketBuilder::ethernet2(MAC, MAC).ipv4(src.octets(), dst.octets(), 64);
    let b = b.tcp(sport, dport, 1000, 65535);
    let b = if syn { b.syn() } else { b.ack(1) };
    b.write(&mut out, &[]).expect("build");
    frame(&out)
}

fn echo(src: Ipv4Addr, dst: Ipv4Addr, id: u16, request: bool) -> Frame {
    let mut out = Vec::new();
    let b = PacketBuilder::ethernet2(MAC, MAC).ipv4(src.octets(), dst.octets(), 64);
    let b = if request {
        b.icmpv4_echo_request(id, 1)
    } else {
        b.icmpv4_echo_reply(id, 1)
    };
    b.write(&mut out, b"ping").expect("build");
    frame(&out)
}

fn inbound(v: &PolicyView, f: &Frame) -> Result<(), DropReason> {
    judge(v, f, 0, Some(GW), End::Dst(WEB_M), 0, 0).map(|_| ())
}

fn outbound(v: &PolicyView, f: &Frame) -> Result<(), DropReason> {
    judge(v, f, 0, Some(GW), End::Src(WEB_M), 0, 0).map(|_| ())
}

#[test]
fn a_connection_is_judged_once_and_its_replies_pass() {
    let v = view(1, false);
    assert_eq!(
        inbound(&v, &tcp(OTHER, 5000, WEB, 80, true)),
        Err(DropReason::PolicyDenied)
    );
    assert_eq!(
        inbound(&v, &tcp(CLIENT, 5000, WEB, 81, true)),
        Err(DropReason::PolicyDenied)
    );
    assert_eq!(v.ct.len(), 0, "nothing denied is entered");
    assert_eq!(inbound(&v, &tcp(CLIENT, 5000, WEB, 80, true)), Ok(()));
    assert_eq!(v.ct.len(), 1);
    let mut synack = tcp(WEB, 80, CLIENT, 5000, true);
    // SYN-ACK: set the ACK flag on the SYN built above (byte 47 of the frame).
    synack.data_mut()[47] |= 0x10;
    assert_eq!(outbound(&v, &synack), Ok(()), "the reply of an allowed connection");
    // web opens connections freely (egress not isolated), the replies come in.
    assert_eq!(outbound(&v, &tcp(WEB, 6000, OTHER, 22, true)), Ok(()));
    let mut reply = tcp(OTHER, 22, WEB, 6000, true);
    reply.data_mut()[47] |= 0x10;
    assert_eq!(inbound(&v, &reply), Ok(()));
}

/// The segments a flow memo let through were never shown to the table:
/// a later one far ahead in sequence still belongs to the connection.
#[test]
fn segments_the_table_did_not_see_do_not_break_a_connection() {
    let v = view(1, false);
    assert_eq!(inbound(&v, &tcp(CLIENT, 5000, WEB, 80, true)), Ok(()));
    let mut synack = tcp(WEB, 80, CLIENT, 5000, true);
    synack.data_mut()[47] |= 0x10;
    assert_eq!(outbound(&v, &synack), Ok(()));
    assert_eq!(inbound(&v, &tcp(CLIENT, 5000, WEB, 80, false)), Ok(()));
    // 10 MB later.
    let mut later = tcp(WEB, 80, CLIENT, 5000, false);
    later.data_mut()[38..42].copy_from_slice(&10_000_000u32.to_be_bytes());
    assert_eq!(outbound(&v, &later), Ok(()));
}

#[test]
fn an_echo_request_in_is_not_the_reply_of_an_echo_out() {
    let v = view(1, false);
    assert_eq!(outbound(&v, &echo(WEB, OTHER, 7, true)), Ok(()));
    assert_eq!(inbound(&v, &echo(OTHER, WEB, 7, false)), Ok(()), "its reply");
    assert_eq!(
        inbound(&v, &echo(OTHER, WEB, 7, true)),
        Err(DropReason::PolicyDenied),
        "a request with the same identifier"
    );
}

#[test]
fn arp_and_the_gateway_pass_other_frames_do_not() {
    let v = view(1, false);
    let mut arp = vec![0xff; 6];
    arp.extend_from_slice(&MAC);
    arp.extend_from_slice(&[0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1]);
    arp.extend_from_slice(&[0; 20]);
    assert_eq!(inbound(&v, &frame(&arp)), Ok(()));
    let mut raw = arp.clone();
    raw[12..14].copy_from_slice(&[0x88, 0xb5]);
    assert_eq!(inbound(&v, &frame(&raw)), Err(DropReason::PolicyDenied));
    assert_eq!(inbound(&v, &echo(GW, WEB, 1, true)), Ok(()), "the node");
    assert_eq!(inbound(&v, &frame(&arp[..10])), Err(DropReason::Malformed));
}

/// Docker's `enable_icc=false`: web and client share a bridge that
/// keeps them apart, other is elsewhere; no policy at all.
#[test]
fn a_bridge_without_icc_keeps_its_attachments_apart_and_nothing_else() {
    let v = PolicyView {
        compiled: Arc::new(compile(&[], &BTreeMap::new(), &[])),
        apart: vec![Some(7), Some(7), None],
        ..view(1, true)
    };
    assert_eq!(
        inbound(&v, &tcp(CLIENT, 40000, WEB, 80, true)),
        Err(DropReason::PolicyDenied)
    );
    assert_eq!(
        outbound(&v, &tcp(WEB, 40001, CLIENT, 22, true)),
        Err(DropReason::PolicyDenied)
    );
    assert_eq!(inbound(&v, &echo(CLIENT, WEB, 5, true)), Err(DropReason::PolicyDenied));
    assert_eq!(
        inbound(&v, &tcp(OTHER, 40002, WEB, 80, true)),
        Ok(()),
        "another bridge's"
    );
    let outside = Ipv4Addr::new(192, 0, 2, 7);
    assert_eq!(
        outbound(&v, &tcp(WEB, 40003, outside, 443, true)),
        Ok(()),
        "the outside"
    );
    assert_eq!(outbound(&v, &echo(WEB, outside, 9, true)), Ok(()));
    assert_eq!(inbound(&v, &echo(outside, WEB, 9, false)), Ok(()), "and its replies");
    assert_eq!(inbound(&v, &echo(GW, WEB, 1, true)), Ok(()), "the gateway");
}

#[test]
fn a_policy_change_judges_open_connections_again() {
    let open = view(1, true);
    assert_eq!(inbound(&open, &echo(CLIENT, WEB, 3, true)), Ok(()));
    // The same table under a policy that allows TCP 80 only.
    let narrow = PolicyView {
        ct: open.ct.clone(),
        ..view(2, false)
    };
    assert_eq!(
        outbound(&narrow, &echo(WEB, CLIENT, 3, false)),
        Err(DropReason::PolicyDenied),
        "the reply of a connection no longer allowed"
    );
    assert_eq!(narrow.ct.len(), 0, "it is forgotten");
}

#[test]
fn an_icmp_error_passes_only_about_an_allowed_connection() {
    let v = view(1, false);
    assert_eq!(outbound(&v, &tcp(WEB, 6000, OTHER, 22, true)), Ok(()));
    let error = |quoted: &[u8]| {
        let mut out = Vec::new();
        PacketBuilder::ethernet2(MAC, MAC)
            .ipv4(OTHER.octets(), WEB.octets(), 64)
            .icmpv4(etherparse::Icmpv4Type::DestinationUnreachable(
                etherparse::icmpv4::DestUnreachableHeader::Port,
            ))
            .write(&mut out, quoted)
            .expect("build");
        frame(&out)
    };
    let sent = tcp(WEB, 6000, OTHER, 22, true);
    assert_eq!(inbound(&v, &error(&sent.data()[14..54])), Ok(()));
    let other = tcp(WEB, 6001, OTHER, 22, true);
    assert_eq!(
        inbound(&v, &error(&other.data()[14..54])),
        Err(DropReason::PolicyDenied)
    );
}

/// The stages note a connection's verdict once: its first packet, not the
/// ones after (observe).
#[test]
fn connections_allowed_and_refused_are_noted_once() {
    use crate::flows::{FlowEvent, FlowKind};
    let v = view(1, false);
    assert_eq!(inbound(&v, &tcp(CLIENT, 5001, WEB, 80, true)), Ok(()));
    assert_eq!(inbound(&v, &tcp(CLIENT, 5001, WEB, 80, true)), Ok(()), "its SYN again");
    assert_eq!(
        inbound(&v, &tcp(OTHER, 5002, WEB, 80, true)),
        Err(DropReason::PolicyDenied)
    );
    let mut events: Vec<FlowEvent> = Vec::new();
    v.flows.drain_into(&mut events);
    let kinds: Vec<(FlowKind, Ipv4Addr, u16)> = events.iter().map(|e| (e.kind, e.src, e.dst_port)).collect();
    assert_eq!(kinds, vec![(FlowKind::New, CLIENT, 80), (FlowKind::Denied, OTHER, 80)]);
}
