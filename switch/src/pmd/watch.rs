//! Which of its ports a poll thread reads on a pass.
//!
//! With a few ports the thread reads every one on every pass: a read that
//! finds nothing costs one system call, cheaper than asking epoll first.
//! With many (1000 containers on one thread) that is 1000 empty reads a
//! pass; the thread then reads a port only when epoll reported it readable
//! (`epoll_wait` with no timeout once a pass), and keeps reading it while it
//! still yields frames. Ports whose rings sit in shared memory (AF_XDP:
//! [`PortIo::polls_cheaply`]) are read on every pass in both modes.
//!
//! The epoll set is edge-triggered: a port is reported once per arrival
//! while unread, so a port is dropped from the work list only after a read
//! that found nothing (it hit EAGAIN, and the next frame raises a new edge).
//!
//! A new snapshot changes the epoll set by difference: only ports added,
//! removed or replaced are registered or deregistered (with 1000 ports a
//! full re-registration was 2000 `epoll_ctl` calls per configuration change).
//!
//! [`PortIo::polls_cheaply`]: crate::port::PortIo::polls_cheaply

use std::os::fd::RawFd;

use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use tracing::warn;

use crate::snapshot::Snapshot;

/// Above this many ports that cost a system call to read, a thread reads
/// them on readiness instead of every pass.
pub const DIRECT_POLL_MAX: usize = 16;

/// A port in the thread's epoll set.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Watched {
    slot: u32,
    uid: u64,
    fd: RawFd,
}

#[derive(Default)]
pub struct Watch {
    /// In the epoll set, by slot.
    registered: Vec<Watched>,
    /// Read on every pass.
    every_pass: Vec<u32>,
    /// Reading on readiness (more than [`DIRECT_POLL_MAX`] such ports).
    on_ready: bool,
    /// Readiness mode: ports to read this pass, and whether the pass
    /// found frames on them.
    work: Vec<(u32, bool)>,
    /// By slot: in `work` already, or read on every pass.
    queued: Vec<bool>,
}

impl Watch {
    /// Makes the epoll set and the reading lists match the ports `snap`
    /// gives thread `index`. Runs while the previous snapshot is still
    /// held, so every old descriptor is still open when it is removed.
    pub fn sync(&mut self, poll: &Poll, snap: &Snapshot, index: usize) {
        let mut want: Vec<(Watched, bool)> = snap
            .rx_assign
            .get(index)
            .map(Vec::as_slice)
            .unwrap_or(&[])
            .iter()
            .filter_map(|&slot| {
                let p = snap.port(slot)?;
                let watched = Watched {
                    slot,
                    uid: p.port.uid,
                    fd: p.port.io.raw_fd(),
                };
                Some((watched, p.port.io.polls_cheaply()))
            })
            .collect();
        want.sort_unstable_by_key(|(w, _)| w.slot);

        // Both lists are sorted by slot: lookups are binary searches.
        let wanted = |w: &Watched| {
            want.binary_search_by_key(&w.slot, |(x, _)| x.slot)
                .is_ok_and(|i| want[i].0 == *w)
        };
        let registry = poll.registry();
        let before = std::mem::take(&mut self.registered);
        let had = |w: &Watched| {
            before
                .binary_search_by_key(&w.slot, |x| x.slot)
                .is_ok_and(|i| before[i] == *w)
        };
        for old in &before {
            if !wanted(old) {
                // A descriptor already gone from the set is not an error worth a line.
                let _ = registry.deregister(&mut SourceFd(&old.fd));
            }
        }
        let mut added = Vec::new();
        let mut unwatched = Vec::new();
        for (w, _) in &want {
            if had(w) {
                self.registered.push(*w);
                continue;
            }
            match registry.register(&mut SourceFd(&w.fd), Token(w.slot as usize), Interest::READABLE) {
                Ok(()) => {
                    self.registered.push(*w);
                    added.push(w.slot);
                }
                Err(err) => {
                    let name = snap.port(w.slot).map(|p| p.port.name.as_str()).unwrap_or("?");
                    warn!(port = %name, %err, "cannot watch port; it is read on every pass");
                    unwatched.push(w.slot);
                }
            }
        }

        let costly = want
            .iter()
            .filter(|(w, cheap)| !cheap && !unwatched.contains(&w.slot))
            .count();
        let was_on_ready = self.on_ready;
        self.on_ready = costly > DIRECT_POLL_MAX;
        self.every_pass = want
            .iter()
            .filter(|(w, cheap)| !self.on_ready || *cheap || unwatched.contains(&w.slot))
            .map(|(w, _)| w.slot)
            .collect();

        // Readiness: what was still to be read stays (if the same port is
        // still here), new ports are read once; entering the mode, all are.
        let kept: Vec<u32> = std::mem::take(&mut self.work)
            .into_iter()
            .map(|(slot, _)| slot)
            .filter(|&slot| {
                let i = self.registered.binary_search_by_key(&slot, |r| r.slot);
                i.is_ok_and(|i| had(&self.registered[i]))
            })
            .collect();
        self.queued.clear();
        self.queued.resize(snap.ports.len(), false);
        for &slot in &self.every_pass {
            if let Some(q) = self.queued.get_mut(slot as usize) {
                *q = true;
            }
        }
        if self.on_ready {
            let fresh = if was_on_ready {
                added
            } else {
                self.registered.iter().map(|w| w.slot).collect()
            };
            for slot in kept.into_iter().chain(fresh) {
                self.enqueue(slot);
            }
        }
    }

    /// Ports read on every pass.
    pub fn every_pass(&self) -> &[u32] {
        &self.every_pass
    }

    /// Reading on readiness: the caller asks epoll once a pass.
    pub fn on_ready(&self) -> bool {
        self.on_ready
    }

    /// Queues the ports epoll reported (ignoring other tokens).
    pub fn collect(&mut self, events: &Events) {
        if !self.on_ready {
            return;
        }
        for event in events.iter() {
            let slot = event.token().0;
            if slot < self.queued.len() {
                self.enqueue(slot as u32);
            }
        }
    }

    fn enqueue(&mut self, slot: u32) {
        if let Some(queued) = self.queued.get_mut(slot as usize) {
            if !*queued {
                *queued = true;
                self.work.push((slot, false));
            }
        }
    }

    /// How many ports to read this pass (readiness mode).
    pub fn work_len(&self) -> usize {
        self.work.len()
    }

    /// The `i`th port to read this pass.
    pub fn work_slot(&self, i: usize) -> u32 {
        self.work[i].0
    }

    /// The pass found frames on the `i`th port.
    pub fn yielded(&mut self, i: usize) {
        self.work[i].1 = true;
    }

    /// After the pass: keeps the ports that yielded frames (more may wait),
    /// drops the rest until epoll reports them again.
    pub fn settle(&mut self) {
        let queued = &mut self.queued;
        self.work.retain_mut(|(slot, yielded)| {
            if !*yielded {
                if let Some(q) = queued.get_mut(*slot as usize) {
                    *q = false;
                }
            }
            std::mem::take(yielded)
        });
    }
}
