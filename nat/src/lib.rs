//! Connection tracking and NAT for vswitch: pure logic over packet bytes.
//!
//! This crate knows nothing of ports, threads or sockets, so it can be unit
//! tested, fuzzed and benchmarked in memory; `switch/` calls it from its NAT
//! stage. What is here:
//! - [`tuple`]: the 5-tuple (plus zone) a connection is known by, in either
//!   direction;
//! - [`tcp`]: the TCP state machine, sequence-window tracking and the
//!   per-state timeouts, after the kernel's `nf_conntrack_proto_tcp`;
//! - [`parse`]: the tuple and TCP segment of a packet;
//! - [`rewrite`]: changing an IPv4 packet's addresses and ports with the
//!   checksums updated incrementally, for complete checksums and for the
//!   pseudo-header seeds that offloaded (and GSO) frames carry;
//! - [`table`]: the connection table, indexed by both directions' tuples;
//! - [`translate`]: what a tracked connection's packets, and the ICMP
//!   errors quoting them, must change;
//! - [`frag`]: what the later fragments of a translated datagram become.
//!
//! The pipeline stage in `switch/` calls these; `fuzz/` drives them all with
//! arbitrary packets.

#![forbid(unsafe_code)]

pub mod checksum;
pub mod frag;
#[doc(hidden)]
pub mod fuzzing;
pub mod parse;
pub mod rewrite;
pub mod table;
pub mod tcp;
pub mod translate;
pub mod tuple;
