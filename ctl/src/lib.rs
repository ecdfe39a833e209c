//! The control protocol between `vsctl` and `vswitchd`.
//!
//! One JSON object per line in each direction over a Unix stream socket: the
//! client writes a [`Request`], the daemon answers with a [`Response`]. The
//! types live here so both ends agree by construction; `vswitchd` depends on
//! this crate, never the other way round.

#![forbid(unsafe_code)]

pub mod client;
pub mod mac;
pub mod net;
pub mod network;
pub mod proto;
pub mod records;
pub mod req;

pub use mac::{MacAddr, MacParseError};
pub use net::{check_subnet, parse_subnet, Ipv4Net, NetParseError, SubnetExt};
pub use proto::*;
pub use records::*;
pub use req::Request;

/// Where vswitchd listens and vsctl connects unless told otherwise.
pub const DEFAULT_SOCKET: &str = "/run/vswitch/vswitchd.sock";
