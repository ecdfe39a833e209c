//! The NAT stage on established flows, in memory: ns per frame with 1, 10k
//! and 1M connections in the table, and the memory one connection costs.
//!
//! Each iteration does what the datapath does for a masqueraded frame of an
//! existing connection: read its tuple (`pipeline::nat::seen`), find the
//! connection and advance its state (`track_existing`), rewrite addresses,
//! ports and checksums (`pipeline::nat::apply`). The frames rotate over up to
//! 64k distinct flows spread over the table, so a large table pays for its
//! cache misses. Refilling
//! the frame from its template (~60 bytes) is part of each iteration.
//!
//! `cargo bench -p vswitch --bench nat_stage`

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicIsize, Ordering};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use etherparse::PacketBuilder;
use vswitch::packet::{Frame, PacketPool};
use vswitch::pipeline::nat;
use vswitch_nat::table::{ConnTable, Nat, Seen};
use vswitch_nat::tuple::{Proto, Tuple};

/// Counts live heap bytes, to measure what a connection costs.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const UPLINK: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
const ZONE: u16 = 1;
const MAX_TEMPLATES: usize = 65_536;

/// Flow `i`: container address and port, and server address. One uplink
/// address can masquerade at most ~64k flows to one server address and port
/// (the translated tuples must differ), so a million flows go to many
/// servers, 20k each.
fn flow(i: usize) -> (Ipv4Addr, u16, Ipv4Addr) {
    let host = 2 + (i / 50_000) as u32;
    let src = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 0, 0, 0)) + host);
    let dst = Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 1)) + (i / 20_000) as u32);
    (src, 10_000 + (i % 50_000) as u16, dst)
}

fn frame_bytes(src: Ipv4Addr, sport: u16, dst: Ipv4Addr) -> Vec<u8> {
    let b = PacketBuilder::ethernet2([2; 6], [4; 6])
        .ipv4(src.octets(), dst.octets(), 64)
        .udp(sport, 53);
    let mut out = Vec::new();
    b.write(&mut out, b"0123456789abcdef").unwrap();
    out
}

/// A table holding `n` masqueraded UDP connections, all answered.
fn table(n: usize) -> ConnTable {
    let ct = ConnTable::new(n + 1);
    for i in 0..n {
        let (src, src_port, dst) = flow(i);
        let tuple = Tuple {
            zone: ZONE,
            proto: Proto::Udp,
            src,
            src_port,
            dst,
            dst_port: 53,
        };
        ct.track(Seen { tuple, tcp: None }, 0, |_| Nat {
            snat: Some(UPLINK),
            dnat: None,
        })
        .unwrap();
    }
    ct
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("nat_stage_established");
    for n in [1usize, 10_000, 1_000_000] {
        let before = LIVE.load(Ordering::Relaxed);
        let ct = table(n);
        let bytes = LIVE.load(Ordering::Relaxed) - before;
        eprintln!(
            "{n} connections: {bytes} bytes of heap, {} bytes per connection",
            bytes / n as isize
        );

        // Spread over the whole table, not only its first flows.
        let step = (n / n.min(MAX_TEMPLATES)).max(1);
        let templates: Vec<Vec<u8>> = (0..n.min(MAX_TEMPLATES))
            .map(|k| {
                let (src, sport, dst) = flow(k * step);
                frame_bytes(src, sport, dst)
            })
            .collect();
        let mut pool = PacketPool::new(1);
        let mut frame: Frame = pool.alloc().unwrap();
        let mut next = 0usize;
        group.bench_function(format!("{n}_connections"), |b| {
            b.iter_batched_ref(
                || {
                    next = (next + 1) % templates.len();
                    next
                },
                |&mut i| {
                    frame.fill(&templates[i]);
                    frame.meta.eth_offset = Some(0);
                    let seen = nat::seen(&frame, 14, ZONE).unwrap().unwrap();
                    let tracked = ct.track_existing(seen, 1).unwrap().unwrap();
                    nat::apply(&mut frame, 14, &seen, &tracked).unwrap();
                    black_box(frame.data()[26]);
                },
                BatchSize::SmallInput,
            )
        });
        drop(ct);
    }
    group.finish();

    // Two threads on one table (each on its own flows, as two poll threads
    // would be): time per frame per thread, to compare with one thread.
    let mut group = c.benchmark_group("nat_stage_threads");
    let n = 10_000;
    let ct = std::sync::Arc::new(table(n));
    let templates: std::sync::Arc<Vec<Vec<u8>>> = std::sync::Arc::new(
        (0..n)
            .map(|i| {
                let (src, sport, dst) = flow(i);
                frame_bytes(src, sport, dst)
            })
            .collect(),
    );
    for threads in [1usize, 2] {
        group.bench_function(format!("{threads}_threads_10000_connections"), |b| {
            b.iter_custom(|iters| {
                let start = std::time::Instant::now();
                std::thread::scope(|scope| {
                    for t in 0..threads {
                        let (ct, templates) = (ct.clone(), templates.clone());
                        scope.spawn(move || {
                            let mut pool = PacketPool::new(1);
                            let mut frame = pool.alloc().unwrap();
                            for k in 0..iters as usize {
                                // Thread t takes every other flow: no flow is shared.
                                let i = (k * threads + t) % templates.len();
                                frame.fill(&templates[i]);
                                frame.meta.eth_offset = Some(0);
                                let seen = nat::seen(&frame, 14, ZONE).unwrap().unwrap();
                                let tracked = ct.track_existing(seen, 1).unwrap().unwrap();
                                nat::apply(&mut frame, 14, &seen, &tracked).unwrap();
                                black_box(frame.data()[26]);
                            }
                        });
                    }
                });
                start.elapsed()
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
