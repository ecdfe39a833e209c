//! vswitchd's datapath and control plane.
//!
//! Frames flow `port` -> `pmd` -> `pipeline` (classify, l2) -> `port`; the
//! control plane (`control`, `manager`, `config`) turns requests into new
//! `snapshot`s that the poll threads pick up between batches. See
//! DESIGN.md at the top of the shared tree for the whole map.

pub mod clock;
pub mod config;
pub mod control;
pub mod cores;
pub mod manager;
pub mod offload;
pub mod packet;
pub mod pipeline;
pub mod pmd;
pub mod port;
pub mod snapshot;
pub mod stats;
