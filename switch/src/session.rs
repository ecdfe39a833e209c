//! A port's observation session, as capture and trace both keep one: an
//! armed flag the poll thread reads once per batch (one relaxed load when
//! nobody watches), the session's state behind a lock the poll thread
//! takes once per batch while armed, one session at a time, and a session
//! nobody has read for [`IDLE_LIMIT`] stopped by housekeeping (vsctl
//! killed, say).

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// A session not read for this long stops.
pub const IDLE_LIMIT: Duration = Duration::from_secs(10);

struct Running<S> {
    state: S,
    last_read: Instant,
}

pub struct Session<S> {
    /// What the poll thread is to do, as bits the owner defines; 0: nothing.
    armed: AtomicU8,
    running: Mutex<Option<Running<S>>>,
}

impl<S> Default for Session<S> {
    fn default() -> Self {
        Session {
            armed: AtomicU8::new(0),
            running: Mutex::new(None),
        }
    }
}

impl<S> Session<S> {
    fn running(&self) -> MutexGuard<'_, Option<Running<S>>> {
        self.running.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The armed bits (poll thread, once per batch).
    #[inline]
    pub fn armed(&self) -> u8 {
        self.armed.load(Ordering::Relaxed)
    }

    /// The poll thread is done: nothing more to record.
    pub fn disarm(&self) {
        self.armed.store(0, Ordering::Relaxed);
    }

    /// Starts a session with `state`, armed with `bits`; false, and nothing
    /// changed, when one runs already.
    pub fn start(&self, bits: u8, state: S) -> bool {
        let mut running = self.running();
        if running.is_some() {
            return false;
        }
        *running = Some(Running {
            state,
            last_read: Instant::now(),
        });
        self.armed.store(bits, Ordering::Relaxed);
        true
    }

    pub fn stop(&self) {
        self.disarm();
        *self.running() = None;
    }

    /// Works on the session's state (the poll thread recording); None when
    /// no session runs.
    pub fn with<T>(&self, f: impl FnOnce(&mut S) -> T) -> Option<T> {
        self.running().as_mut().map(|r| f(&mut r.state))
    }

    /// Reads the session's state (the reader): it counts as read now.
    pub fn read<T>(&self, f: impl FnOnce(&mut S) -> T) -> Option<T> {
        self.running().as_mut().map(|r| {
            r.last_read = Instant::now();
            f(&mut r.state)
        })
    }

    /// Stops a session nobody has read for [`IDLE_LIMIT`]; true if it did.
    pub fn expire_idle(&self) -> bool {
        let idle = self
            .running()
            .as_ref()
            .is_some_and(|r| r.last_read.elapsed() > IDLE_LIMIT);
        if idle {
            self.stop();
        }
        idle
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_session_at_a_time_armed_until_stopped() {
        let s: Session<Vec<u32>> = Session::default();
        assert_eq!(s.armed(), 0);
        assert!(s.with(|v| v.push(1)).is_none(), "nothing runs");
        assert!(s.start(2, Vec::new()));
        assert!(!s.start(1, Vec::new()), "one at a time");
        assert_eq!(s.armed(), 2);
        s.with(|v| v.push(7));
        assert_eq!(s.read(std::mem::take), Some(vec![7]));
        assert!(!s.expire_idle(), "just read");
        s.disarm();
        assert_eq!(s.armed(), 0);
        assert!(s.read(|v| v.len()).is_some(), "disarmed, still readable");
        s.stop();
        assert!(s.read(|v| v.len()).is_none());
    }
}
