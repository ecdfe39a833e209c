//! Published ports of one bridge (`vsctl publish`): which container address
//! and port a connection to the uplink address's port leads to.

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::{PoisonError, RwLock};

use vswitch_nat::tuple::Proto;

/// Published ports of one bridge: (protocol, uplink port) -> container
/// address and port. Shared by every snapshot and changed in place, so one
/// rule costs the same to add or remove however many there are; read only
/// by the first packet of a connection.
#[derive(Default)]
pub struct PublishTable {
    rules: RwLock<HashMap<(Proto, u16), (Ipv4Addr, u16)>>,
}

impl PublishTable {
    pub fn get(&self, proto: Proto, port: u16) -> Option<(Ipv4Addr, u16)> {
        self.rules
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&(proto, port))
            .copied()
    }

    pub fn insert(&self, proto: Proto, port: u16, to: (Ipv4Addr, u16)) {
        self.rules
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .insert((proto, port), to);
    }

    pub fn remove(&self, proto: Proto, port: u16) {
        self.rules
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&(proto, port));
    }
}
