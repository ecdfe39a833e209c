//! vswitchd's datapath and control plane.
//!
//! Frames flow `port` -> `pmd` -> `pipeline` (its stages in order, see
//! its module comment) -> `port`, reading the `snapshot` and the `tables`
//! below it; `verdict` is the stages' shared vocabulary, low enough that
//! `trace` can record it. The control
//! plane (`control`) turns requests into a new desired state and a new
//! snapshot that the poll threads pick up between batches; `sys` is the OS
//! plumbing it uses (netlink, namespaces, veth, BPF). Dependencies point
//! down: control -> snapshot -> tables; pipeline -> snapshot, tables; port
//! -> sys. See DESIGN.md at the top of the shared tree for the whole map.

pub mod capture;
pub mod clock;
pub mod control;
pub mod cores;
pub mod flows;
pub mod metrics;
pub mod offload;
pub mod packet;
pub mod pipeline;
pub mod pmd;
pub mod port;
pub mod session;
pub mod snapshot;
pub mod stats;
pub mod sys;
pub mod tables;
pub mod trace;
pub mod verdict;
