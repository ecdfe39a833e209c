//! A runtime's network on vswitch, made the one way both runtimes need it:
//! a bridge with its subnet and gateway, an internal port on it so the
//! host reaches its containers (the role of docker0), and masquerade when
//! asked. The CNI plugin and the Docker driver both send [`RuntimeNetwork::create`]:
//! one transaction, so a failure anywhere leaves nothing behind.

use std::net::Ipv4Addr;

use crate::net::Ipv4Net;
use crate::proto::PortType;
use crate::req::{self, Request};

/// What a runtime asks for when it makes a network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuntimeNetwork {
    pub bridge: String,
    pub subnet: Ipv4Net,
    /// None: the subnet's first host address.
    pub gateway: Option<Ipv4Addr>,
    /// The bridge whose uplink is the way out, when not this one.
    pub uplink_via: Option<String>,
    /// The name of the internal port (the host's leg on the network).
    pub internal: String,
    pub masquerade: bool,
    /// Its containers may reach each other (Docker's `enable_icc`).
    pub icc: bool,
}

impl RuntimeNetwork {
    /// The transaction that makes the network.
    pub fn create(&self) -> Request {
        let mut requests = vec![
            Request::AddBr(req::AddBr {
                may_exist: false,
                name: self.bridge.clone(),
                aging_secs: None,
                max_macs: None,
                icc: (!self.icc).then_some(false),
                subnet: Some(self.subnet),
                gateway: self.gateway,
                ip_range: None,
                uplink_via: self.uplink_via.clone(),
            }),
            Request::AddPort(req::AddPort {
                may_exist: false,
                bridge: self.bridge.clone(),
                name: self.internal.clone(),
                port_type: PortType::Internal,
                netns: None,
                ifname: None,
                mac: None,
                mode: None,
                queue: None,
                iface: None,
            }),
        ];
        if self.masquerade {
            requests.push(Request::SetNat(req::SetNat {
                bridge: self.bridge.clone(),
                masquerade: true,
            }));
        }
        Request::Transaction(req::Transaction { requests })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_network_is_one_transaction_with_masquerade_only_when_asked() {
        let mut net = RuntimeNetwork {
            bridge: "br-x".into(),
            subnet: "10.30.0.0/24".parse().expect("a subnet"),
            gateway: None,
            uplink_via: Some("up".into()),
            internal: "vsnx".into(),
            masquerade: false,
            icc: true,
        };
        let Request::Transaction(req::Transaction { requests }) = net.create() else {
            panic!("a transaction")
        };
        assert_eq!(requests.len(), 2);
        assert!(requests.iter().all(|r| r.not_transactional().is_none()));
        assert!(matches!(&requests[1], Request::AddPort(p) if p.port_type == PortType::Internal && p.bridge == "br-x"));
        net.masquerade = true;
        let Request::Transaction(req::Transaction { requests }) = net.create() else {
            panic!("a transaction")
        };
        assert!(matches!(
            &requests[2],
            Request::SetNat(req::SetNat { masquerade: true, .. })
        ));
    }
}
