//! The tables the datapath reads on every frame and that live longer than
//! one snapshot: learned MACs (`fdb`), the gateways' ARP tables (`neigh`),
//! both built on one sharded aging map (`aging`), and published ports
//! (`publish`).
//!
//! Below both the snapshot (which holds them by `Arc`) and the pipeline
//! (which reads and fills them): nothing here imports either, nor the
//! control plane, nor any port or OS code.

pub mod aging;
pub mod fdb;
pub mod neigh;
pub mod publish;
