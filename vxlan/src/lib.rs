//! VXLAN (RFC 7348) for vswitch: a pure library over packet bytes.
//!
//! - [`header`]: the 8-byte VXLAN header and the 24-bit VNI;
//! - [`encap`]: writes the outer Ethernet, IPv4, UDP and VXLAN headers in
//!   front of an inner frame (the switch keeps headroom for them);
//! - [`decap`]: checks a frame from the underlay and finds the inner frame,
//!   refusing anything malformed with a reason the switch counts;
//! - [`flow`]: the outer UDP source port, a hash of the inner flow, so the
//!   underlay's ECMP and RSS spread the flows of one tunnel.
//!
//! No I/O, no threads, no switch types: the datapath calls in with byte
//! slices and its own tables, so all of this is unit-tested and fuzzed in
//! memory (`fuzzing`, and the cargo-fuzz target in `vxlan/fuzz`). Headers
//! are read and written through smoltcp's views; only the VXLAN header,
//! which smoltcp does not know, has a view of its own.

#![forbid(unsafe_code)]

pub mod decap;
pub mod encap;
pub mod flow;
pub mod fuzzing;
pub mod header;

pub use decap::{decapsulate, Decapped, Expect, Malformed};
pub use encap::{encapsulate, write_headers, EncapError, Outer, OuterCsum};
pub use flow::source_port;
pub use header::{Vni, VxlanHeader};

/// The IANA port of VXLAN.
pub const IANA_PORT: u16 = 4789;
/// The port Linux's vxlan device (and flannel) use unless told otherwise.
pub const LINUX_PORT: u16 = 8472;

pub const ETH_HDR_LEN: usize = 14;
pub const IPV4_HDR_LEN: usize = 20;
pub const UDP_HDR_LEN: usize = 8;
pub const VXLAN_HDR_LEN: usize = 8;
/// What the tunnel adds in front of an inner frame: outer Ethernet, IPv4
/// (no options), UDP and VXLAN headers.
pub const OVERHEAD: usize = ETH_HDR_LEN + IPV4_HDR_LEN + UDP_HDR_LEN + VXLAN_HDR_LEN;
