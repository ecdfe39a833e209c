//! Poll-mode threads: one per `--cores` entry, pinned, reading their share of
//! the ports in bursts and running each burst through the pipeline.
//!
//! Adaptive polling: while traffic is recent (within `spin`), a thread keeps
//! polling its ports without sleeping, so a frame arriving finds it awake and
//! pays no wake-up (the ~15-80 µs floor measured on these machines). After
//! `spin` of nothing it sleeps in epoll on its ports' descriptors and its
//! waker, so an idle switch costs about nothing and the next frame (or a new
//! snapshot) wakes it. Under load it never reaches the sleep.
//!
//! A port with work left over (frames queued for a kernel that sends them
//! only when asked, as AF_XDP copy mode) keeps its thread awake until done.
//!
//! Spinning yields the core (sched_yield) on every idle pass: when the
//! thread shares its core with the containers it serves, a container that
//! wants the core gets it at once instead of after the spin (DESIGN.md: a
//! 200 us spin there cost p99 213 us); on a core of its own the call
//! returns at once and the spin is as before. No flag to choose between
//! the two placements.
//!
//! Owns its thread's pool, batch and scratch; reads the snapshot, never
//! the control plane's state.
//!
//! Which ports a pass reads is `watch`'s business: all of them with a few,
//! the ones epoll reports with many.
//!
//! mio's epoll is edge-triggered. That is safe here because a thread sleeps
//! only after a pass in which every port it read answered EAGAIN, and a port
//! it did not read has not been read since its last edge: any frame queued
//! after that raises a new edge.

mod watch;

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::{Events, Poll, Token, Waker};
use tracing::{info, warn};

use crate::clock;
use crate::packet::{Batch, PacketPool, POOL_FRAMES};
use crate::pipeline::{self, Scratch};
use crate::snapshot::{Snapshot, SnapshotCell};
use crate::stats::PmdCounters;
use watch::Watch;

const WAKE_TOKEN: Token = Token(usize::MAX);
/// Longest sleep without looking at the stop flag and the snapshot.
const MAX_SLEEP: Duration = Duration::from_secs(1);

/// The shared face of a poll thread.
pub struct PmdHandle {
    pub index: usize,
    pub core: usize,
    pub counters: PmdCounters,
    /// Generation of the snapshot this thread forwards with.
    pub seen_generation: AtomicU64,
    waker: Waker,
}

impl PmdHandle {
    /// Interrupts the thread's sleep so it looks at the snapshot and stop flag.
    pub fn wake(&self) {
        if let Err(err) = self.waker.wake() {
            warn!(core = self.core, %err, "cannot wake poll thread");
        }
    }
}

pub struct PmdParams {
    pub index: usize,
    pub core: usize,
    pub spin: Duration,
    pub cell: Arc<SnapshotCell>,
    pub stop: Arc<AtomicBool>,
}

/// Starts a poll thread pinned to `params.core`.
pub fn spawn(params: PmdParams) -> io::Result<(Arc<PmdHandle>, JoinHandle<()>)> {
    let poll = Poll::new()?;
    let waker = Waker::new(poll.registry(), WAKE_TOKEN)?;
    let handle = Arc::new(PmdHandle {
        index: params.index,
        core: params.core,
        counters: PmdCounters::default(),
        seen_generation: AtomicU64::new(0),
        waker,
    });
    let shared = handle.clone();
    let thread = std::thread::Builder::new()
        .name(format!("pmd-core{}", params.core))
        .spawn(move || run(shared, poll, params))?;
    Ok((handle, thread))
}

/// What a thread owns and reuses from pass to pass.
struct Work {
    pool: PacketPool,
    batch: Batch,
    scratch: Scratch,
}

impl Work {
    /// Reads port `slot` once and runs what came through the pipeline.
    /// Returns the frames read and whether the port has work left over.
    fn serve(&mut self, snap: &Snapshot, thread: usize, slot: u32, now_ms: u64) -> (u64, bool) {
        let Some(input) = snap.port(slot) else {
            return (0, false);
        };
        if input.port.fault().is_some() {
            return (0, false);
        }
        let Work { pool, batch, scratch } = self;
        if let Err(fault) = input.port.io.rx_burst(pool, batch, input.port.stats.cell(thread)) {
            input.port.set_fault(fault);
            warn!(port = %input.port.name, state = %input.port.state(), "port stopped: its device is gone");
        }
        let moved = batch.len() as u64;
        if !batch.is_empty() {
            pipeline::run_batch(snap, thread, slot, batch, pool, scratch, now_ms);
            batch.release(pool);
        }
        (moved, input.port.io.service())
    }
}

fn run(h: Arc<PmdHandle>, mut poll: Poll, params: PmdParams) {
    if !core_affinity::set_for_current(core_affinity::CoreId { id: h.core }) {
        warn!(core = h.core, "cannot pin poll thread to its core");
    }
    info!(core = h.core, "poll thread started");
    let mut work = Work {
        pool: PacketPool::new(POOL_FRAMES),
        batch: Batch::default(),
        scratch: Scratch::default(),
    };
    let mut events = Events::with_capacity(256);
    let mut watch = Watch::default();
    let mut snap = params.cell.load();
    watch.sync(&poll, &snap, h.index);
    work.scratch.fit(snap.ports.len());
    h.seen_generation.store(snap.generation, Ordering::Release);
    let mut last_work = Instant::now();

    while !params.stop.load(Ordering::Relaxed) {
        if params.cell.generation() != snap.generation {
            let next = params.cell.load();
            watch.sync(&poll, &next, h.index);
            work.scratch.fit(next.ports.len());
            snap = next;
            h.seen_generation.store(snap.generation, Ordering::Release);
        }

        let started = Instant::now();
        let now_ms = clock::ms_at(started);
        let mut moved = 0u64;
        let mut pending = false;
        let mut reads = watch.every_pass().len();
        for &slot in watch.every_pass() {
            let (n, left) = work.serve(&snap, h.index, slot, now_ms);
            moved += n;
            pending |= left;
        }
        if watch.on_ready() {
            match poll.poll(&mut events, Some(Duration::ZERO)) {
                Ok(()) => watch.collect(&events),
                Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
                Err(err) => warn!(core = h.core, %err, "epoll failed"),
            }
            reads += watch.work_len();
            for i in 0..watch.work_len() {
                let (n, left) = work.serve(&snap, h.index, watch.work_slot(i), now_ms);
                if n > 0 || left {
                    watch.yielded(i);
                }
                moved += n;
                pending |= left;
            }
            watch.settle();
        }
        h.counters.port_reads.add(reads as u64);
        if work.scratch.held() > 0 {
            let Work { pool, batch, scratch } = &mut work;
            pending |= pipeline::run_held(&snap, h.index, batch, pool, scratch, now_ms);
        }

        if moved > 0 {
            h.counters.packets.add(moved);
            h.counters.busy_iterations.add(1);
            h.counters.busy_ns.add(started.elapsed().as_nanos() as u64);
            last_work = started;
            continue;
        }
        h.counters.idle_iterations.add(1);
        if pending || started.duration_since(last_work) < params.spin {
            std::thread::yield_now();
            continue;
        }
        h.counters.sleeps.add(1);
        match poll.poll(&mut events, Some(MAX_SLEEP)) {
            Ok(()) if !events.is_empty() => {
                watch.collect(&events);
                last_work = Instant::now();
            }
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => {
                warn!(core = h.core, %err, "epoll failed; polling without sleeping for a while");
                last_work = Instant::now();
            }
        }
    }
    info!(core = h.core, "poll thread stopped");
}
