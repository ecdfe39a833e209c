//! Network policy for vswitch, pure logic: what a user writes down
//! ([`model`]) and the tables the datapath consults once per new
//! connection ([`compile`]).
//!
//! Compile, don't interpret (Cilium's identities, OVN's address sets,
//! Calico's ipsets): label sets become numeric identities and every
//! selector is resolved against the attachments that exist when the
//! policy or an attachment changes, so a verdict is a map lookup by the
//! peer's identity, a scan of the address blocks and a scan of a few port
//! ranges. Label strings never reach the datapath. Connection tracking,
//! which makes a verdict hold for the replies and the rest of a
//! connection, is the switch's (it reuses `vswitch-nat`'s table).
//!
//! This crate imports nothing of the switch: it is tested on its own, and
//! `vswitch-ctl` carries its model types on the control protocol.

pub mod compile;
pub mod model;

pub use compile::{compile, Compiled, Member, RuleRef, Verdict};
pub use model::{Direction, Labels, Peer, Policy, PortMatch, Protocol, Rule, Selector};
