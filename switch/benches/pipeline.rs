//! The whole pipeline on prebuilt batches of 32 frames, in memory: ns per
//! frame for L2 forwarding between two ports of one bridge and for routing
//! between two linked bridges (TTL, checksum, next hop from the ARP table,
//! MAC rewrite), so the pipeline's own cost is known apart from the ports'.
//! `routed_nat` is a container's frame of an established masqueraded UDP
//! flow leaving through the uplink (route, conntrack, SNAT rewrite, the
//! uplink's next hop); the NAT stage alone over many flows has its own
//! benchmark (`nat_stage`). `l2_forward_guarded` is `l2_forward` from a
//! port with a source guard (an attached container); `l2_forward_policy_N`
//! is that to an attachment N network policies isolate, the flow allowed
//! and established.
//!
//! Each iteration refills the batch from a 60-byte template, runs it and
//! hands the frames back to the pool. The output port only counts what it
//! is given. `refill_only` is that loop without the pipeline: what the
//! ports' rx and the release cost in the datapath too, here to subtract
//! when a stage's own figure is wanted.
//!
//! `cargo bench -p vswitch --bench pipeline`

use std::hint::black_box;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use etherparse::PacketBuilder;
use vswitch::packet::{Batch, PacketPool, VNET_HDR_LEN};
use vswitch::pipeline::{run_batch, Scratch};
use vswitch::port::{LivePort, PortFault, PortIo};
use vswitch::snapshot::SourceGuard;
use vswitch::snapshot::{BridgeL3, BridgeSlot, NatL3, PolicyView, PortSlot, Snapshot, UplinkL3};
use vswitch::stats::PortCounters;
use vswitch::tables::fdb::Fdb;
use vswitch::tables::neigh::NeighTable;
use vswitch_nat::table::ConnTable;

const BATCH: usize = 32;
const NOW: u64 = 1_000;
const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 0xa];
const MAC_B: [u8; 6] = [2, 0, 0, 0, 0, 0xb];
const GW_A: [u8; 6] = [2, 0x76, 0x73, 0, 0, 1];
const GW_B: [u8; 6] = [2, 0x76, 0x73, 0, 0, 2];

/// A port that only counts what it is asked to send.
struct CountingPort;

impl PortIo for CountingPort {
    fn rx_burst(&self, _: &mut PacketPool, _: &mut Batch, _: &PortCounters) -> Result<(), PortFault> {
        Ok(())
    }

    fn tx_burst(&self, _: &Batch, which: &[u16], counters: &PortCounters) {
        counters.tx_packets.add(which.len() as u64);
    }

    fn raw_fd(&self) -> RawFd {
        -1
    }

    fn has_vnet_hdr(&self) -> bool {
        true
    }
}

/// A bridge's member ports, subnet, gateway address and gateway MAC.
type BridgeSpec = (&'static [u32], &'static str, [u8; 4], [u8; 6]);

struct World {
    snap: Snapshot,
    pool: PacketPool,
    scratch: Scratch,
}

/// Port 0 on bridge 0; port 1 on bridge 0 (`routed` false) or on bridge 1,
/// with a gateway on each bridge and the two linked. Port 0 has `guard`.
fn world(routed: bool, guard: Option<SourceGuard>) -> World {
    let mut snap = Snapshot {
        generation: 1,
        ..Default::default()
    };
    for slot in 0..2u32 {
        let live = Arc::new(LivePort::new(
            u64::from(slot) + 1,
            format!("p{slot}"),
            Box::new(CountingPort),
            1,
        ));
        snap.ports.push(Some(PortSlot {
            port: live,
            bridge: if routed { slot } else { 0 },
            vnet_hdr: true,
            guard: if slot == 0 { guard } else { None },
            uplink: false,
            policy: None,
        }));
    }
    let bridges: &[BridgeSpec] = if routed {
        &[
            (&[0], "10.1.0.0/24", [10, 1, 0, 1], GW_A),
            (&[1], "10.2.0.0/24", [10, 2, 0, 1], GW_B),
        ]
    } else {
        &[(&[0, 1], "10.1.0.0/24", [10, 1, 0, 1], GW_A)]
    };
    for (i, (ports, subnet, gw, gw_mac)) in bridges.iter().enumerate() {
        let l3 = routed.then(|| BridgeL3 {
            subnet: subnet.parse().expect("subnet"),
            gateway: (*gw).into(),
            gateway_mac: *gw_mac,
            routes_to: vec![i as u32, 1 - i as u32],
            neigh: Arc::new(NeighTable::default()),
            internal: None,
            uplink: None,
            nat: None,
        });
        snap.bridges.push(Some(BridgeSlot {
            fdb: Arc::new(Fdb::new(1024, 300)),
            ports: ports.to_vec(),
            l3,
            tunnel: None,
            policy_zone: 0,
        }));
    }
    let mut scratch = Scratch::default();
    scratch.fit(snap.ports.len());
    World {
        snap,
        pool: PacketPool::new(2 * BATCH),
        scratch,
    }
}

const UPLINK_MAC: [u8; 6] = [2, 0x76, 0x74, 0, 0, 1];
const OUTSIDE_GW_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0xfe];

/// Port 0 on a masquerading bridge whose uplink is port 1, the outside's
/// gateway known to the uplink's ARP table.
fn world_nat() -> World {
    let mut w = world(false, None);
    let neigh = Arc::new(NeighTable::default());
    neigh.learn([198, 51, 100, 1].into(), OUTSIDE_GW_MAC, NOW);
    if let Some(Some(p)) = w.snap.ports.get_mut(1) {
        p.uplink = true;
    }
    if let Some(Some(br)) = w.snap.bridges.get_mut(0) {
        br.ports = vec![0];
        br.l3 = Some(BridgeL3 {
            subnet: "10.1.0.0/24".parse().expect("subnet"),
            gateway: [10, 1, 0, 1].into(),
            gateway_mac: GW_A,
            routes_to: vec![0],
            neigh: Arc::new(NeighTable::default()),
            internal: None,
            uplink: Some(UplinkL3 {
                slot: 1,
                ip: [198, 51, 100, 2].into(),
                net: "198.51.100.0/24".parse().expect("uplink net"),
                gw: [198, 51, 100, 1].into(),
                mac: UPLINK_MAC,
                neigh,
                tunnels: Vec::new(),
            }),
            nat: Some(NatL3 {
                masquerade: true,
                published: Vec::new(),
                ct: Arc::new(ConnTable::new(1024).without_windows()),
                zone: 0,
            }),
        });
    }
    w
}

/// Makes port 1 (10.1.0.3, app=server) isolated for ingress by `count`
/// policies, policy `i` allowing app=client (port 0, 10.1.0.2) on UDP
/// port 9 + `i`.
fn isolate_port_1(w: &mut World, count: u16) {
    use vswitch_policy::compile::{compile, Member};
    use vswitch_policy::model::{Labels, Peer, Policy, PortMatch, Protocol, Rule, Selector};
    let app = |v: &str| -> Labels { [("app".to_string(), v.to_string())].into() };
    let select = |v: &str| Selector {
        match_labels: app(v),
        ..Default::default()
    };
    let policies: Vec<Policy> = (0..count)
        .map(|i| Policy {
            namespace: "default".into(),
            name: format!("p{i}"),
            pod_selector: select("server"),
            ingress: Some(vec![Rule {
                peers: vec![Peer::Pods {
                    pods: Some(select("client")),
                    namespaces: None,
                }],
                ports: vec![PortMatch {
                    protocol: Protocol::Udp,
                    port: Some(9 + i),
                    end_port: None,
                }],
            }]),
            egress: None,
        })
        .collect();
    let (client, server) = (app("client"), app("server"));
    let members = [
        Member {
            namespace: "default",
            labels: &client,
            addr: [10, 1, 0, 2].into(),
        },
        Member {
            namespace: "default",
            labels: &server,
            addr: [10, 1, 0, 3].into(),
        },
    ];
    let compiled = compile(&policies, &Default::default(), &members);
    w.snap.policy = Some(PolicyView {
        compiled: Arc::new(compiled),
        members: [((0, [10, 1, 0, 2].into()), 0), ((0, [10, 1, 0, 3].into()), 1)]
            .into_iter()
            .collect(),
        apart: vec![None, None],
        flows: Arc::new(vswitch::flows::FlowLogs::default()),
        ct: Arc::new(ConnTable::new(1024).without_windows()),
        generation: w.snap.generation,
    });
    if let Some(Some(p)) = w.snap.ports.get_mut(1) {
        p.policy = Some(1);
    }
}

fn udp(src_mac: [u8; 6], dst_mac: [u8; 6], src: [u8; 4], dst: [u8; 4]) -> Vec<u8> {
    let b = PacketBuilder::ethernet2(src_mac, dst_mac)
        .ipv4(src, dst, 64)
        .udp(40000, 9);
    let mut out = vec![0u8; VNET_HDR_LEN];
    b.write(&mut out, &[0x41; 18]).expect("frame");
    out
}

impl World {
    /// Runs `n` batches of `template` from port `slot`; the time per frame.
    fn run(&mut self, slot: u32, template: &[u8], n: u64) -> Duration {
        self.batches(template, n, Some(slot))
    }

    /// `n` batches of `template` through the pipeline from port `slot`, or
    /// (None) only filled and given back; the time per frame.
    fn batches(&mut self, template: &[u8], n: u64, slot: Option<u32>) -> Duration {
        let mut batch = Batch::default();
        let start = Instant::now();
        for _ in 0..n {
            for _ in 0..BATCH {
                let mut f = self.pool.alloc().expect("pool holds a batch");
                f.fill(template);
                batch.push(f).expect("room in the batch");
            }
            if let Some(slot) = slot {
                run_batch(&self.snap, 0, slot, &mut batch, &mut self.pool, &mut self.scratch, NOW);
            }
            black_box(&mut batch);
            batch.release(&mut self.pool);
        }
        black_box(&self.snap);
        start.elapsed() / BATCH as u32
    }
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("pipeline");

    let mut harness = world(false, None);
    let template = udp(MAC_A, MAC_B, [10, 1, 0, 2], [10, 1, 0, 3]);
    group.bench_function("refill_only", |b| {
        b.iter_custom(|n| harness.batches(&template, n, None))
    });

    let mut l2 = world(false, None);
    // Port 1 speaks first, so its MAC is known and frames to it are unicast.
    l2.run(1, &udp(MAC_B, MAC_A, [10, 1, 0, 3], [10, 1, 0, 2]), 1);
    let to_b = udp(MAC_A, MAC_B, [10, 1, 0, 2], [10, 1, 0, 3]);
    group.bench_function("l2_forward", |b| b.iter_custom(|n| l2.run(0, &to_b, n)));

    let guard = SourceGuard {
        mac: MAC_A,
        ip: [10, 1, 0, 2].into(),
    };
    let mut guarded = world(false, Some(guard));
    guarded.run(1, &udp(MAC_B, MAC_A, [10, 1, 0, 3], [10, 1, 0, 2]), 1);
    group.bench_function("l2_forward_guarded", |b| b.iter_custom(|n| guarded.run(0, &to_b, n)));

    let mut routed = world(true, None);
    let (b_ip, b_mac) = ([10, 2, 0, 2], MAC_B);
    // The host on bridge 1 is known to its gateway's ARP table and FDB.
    if let Some(Some(br)) = routed.snap.bridges.get(1) {
        if let Some(l3) = &br.l3 {
            l3.neigh.learn(b_ip.into(), b_mac, NOW);
        }
    }
    routed.run(1, &udp(b_mac, GW_B, b_ip, [10, 1, 0, 2]), 1);
    let via_gw = udp(MAC_A, GW_A, [10, 1, 0, 2], b_ip);
    group.bench_function("routed", |b| b.iter_custom(|n| routed.run(0, &via_gw, n)));

    let mut nat = world_nat();
    let out = udp(MAC_A, GW_A, [10, 1, 0, 2], [198, 18, 0, 1]);
    // The first frame makes the connection; the benchmark's are established.
    nat.run(0, &out, 1);
    group.bench_function("routed_nat", |b| b.iter_custom(|n| nat.run(0, &out, n)));

    // l2_forward_guarded to an attachment isolated by 1 and by 1000
    // policies, each allowing port 0's identity on its own UDP port; the
    // flow established by its first frame.
    let mut policed = Vec::new();
    for count in [1u16, 1000] {
        let mut w = world(false, Some(guard));
        w.run(1, &udp(MAC_B, MAC_A, [10, 1, 0, 3], [10, 1, 0, 2]), 1);
        isolate_port_1(&mut w, count);
        w.run(0, &to_b, 1);
        policed.push((count, w));
    }
    for (count, w) in &mut policed {
        let name = format!("l2_forward_policy_{count}");
        group.bench_function(&name, |b| b.iter_custom(|n| w.run(0, &to_b, n)));
    }
    group.finish();

    // What actually left: every frame of the benchmark reached port 1.
    for (name, w) in [
        ("l2_forward", &l2),
        ("l2_forward_guarded", &guarded),
        ("routed", &routed),
        ("routed_nat", &nat),
        ("l2_forward_policy_1", &policed[0].1),
        ("l2_forward_policy_1000", &policed[1].1),
    ] {
        let sent = w.snap.port(1).map(|p| p.port.stats.totals().tx_packets).unwrap_or(0);
        let drops = w
            .snap
            .port(0)
            .map(|p| p.port.stats.totals().drops.iter().sum::<u64>())
            .unwrap_or(0);
        eprintln!("{name}: {sent} frames sent to port 1, {drops} dropped at port 0");
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
