//! A coarse monotonic clock shared by the datapath and housekeeping.

use std::sync::OnceLock;
use std::time::Instant;

static START: OnceLock<Instant> = OnceLock::new();

/// Milliseconds since the process first asked.
pub fn now_ms() -> u64 {
    ms_at(Instant::now())
}

/// Milliseconds since the process first asked, at `instant`.
pub fn ms_at(instant: Instant) -> u64 {
    let start = *START.get_or_init(Instant::now);
    instant.saturating_duration_since(start).as_millis() as u64
}
