//! Connection tracking and NAT for vswitch: pure logic over frame bytes.
//!
//! This crate knows nothing of ports, threads or sockets, so it can be unit
//! tested, fuzzed and benchmarked in memory. It is empty until the conntrack
//! issue lands; `switch/` will call it from its NAT pipeline stage.
