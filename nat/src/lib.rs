//! Connection tracking and NAT for vswitch: pure logic over packet bytes.
//!
//! This crate knows nothing of ports, threads or sockets, so it can be unit
//! tested, fuzzed and benchmarked in memory; `switch/` calls it from its NAT
//! stage. What is here so far:
//! - [`tuple`]: the 5-tuple (plus zone) a connection is known by, in either
//!   direction;
//! - [`tcp`]: the TCP state machine and the per-state timeouts, after the
//!   kernel's `nf_conntrack_proto_tcp` defaults;
//! - [`rewrite`]: changing an IPv4 packet's addresses and ports with the
//!   checksums updated incrementally, for complete checksums and for the
//!   pseudo-header seeds that offloaded (and GSO) frames carry.
//!
//! The connection table and the pipeline stage build on these.

pub mod checksum;
pub mod rewrite;
pub mod table;
pub mod tcp;
pub mod tuple;
