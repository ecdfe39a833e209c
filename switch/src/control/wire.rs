//! The control boundary: the protocol's types (`vswitch_ctl`) to the
//! switch's own and back. The saved state and the datapath never see the
//! protocol's types, so either side can change without the other.

use vswitch_ctl::{NatProto, PortType, PublishRule, XdpModeRequest};

use super::config::{L4Proto, PortKind, Published, XdpChoice};

impl From<PortType> for PortKind {
    fn from(t: PortType) -> PortKind {
        match t {
            PortType::Tap => PortKind::Tap,
            PortType::Afxdp => PortKind::Afxdp,
            PortType::Internal => PortKind::Internal,
        }
    }
}

impl From<PortKind> for PortType {
    fn from(k: PortKind) -> PortType {
        match k {
            PortKind::Tap => PortType::Tap,
            PortKind::Afxdp => PortType::Afxdp,
            PortKind::Internal => PortType::Internal,
        }
    }
}

impl From<XdpModeRequest> for XdpChoice {
    fn from(m: XdpModeRequest) -> XdpChoice {
        match m {
            XdpModeRequest::Auto => XdpChoice::Auto,
            XdpModeRequest::Native => XdpChoice::Native,
            XdpModeRequest::Generic => XdpChoice::Generic,
        }
    }
}

impl From<NatProto> for L4Proto {
    fn from(p: NatProto) -> L4Proto {
        match p {
            NatProto::Tcp => L4Proto::Tcp,
            NatProto::Udp => L4Proto::Udp,
        }
    }
}

impl From<L4Proto> for NatProto {
    fn from(p: L4Proto) -> NatProto {
        match p {
            L4Proto::Tcp => NatProto::Tcp,
            L4Proto::Udp => NatProto::Udp,
        }
    }
}

impl From<PublishRule> for Published {
    fn from(r: PublishRule) -> Published {
        Published {
            proto: r.proto.into(),
            port: r.port,
            to_ip: r.to_ip,
            to_port: r.to_port,
        }
    }
}

impl From<Published> for PublishRule {
    fn from(r: Published) -> PublishRule {
        PublishRule {
            proto: r.proto.into(),
            port: r.port,
            to_ip: r.to_ip,
            to_port: r.to_port,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The saved state and the protocol spell every value the same way, so
    /// a state file written before the switch had its own types still loads.
    #[test]
    fn both_sides_spell_values_alike() {
        let json = |v: serde_json::Value| v.to_string();
        for t in [PortType::Tap, PortType::Afxdp, PortType::Internal] {
            assert_eq!(json(serde_json::json!(t)), json(serde_json::json!(PortKind::from(t))));
        }
        for m in [XdpModeRequest::Auto, XdpModeRequest::Native, XdpModeRequest::Generic] {
            assert_eq!(json(serde_json::json!(m)), json(serde_json::json!(XdpChoice::from(m))));
        }
        let rule = PublishRule {
            proto: NatProto::Udp,
            port: 53,
            to_ip: "10.0.0.2".parse().unwrap(),
            to_port: 5353,
        };
        let own = Published::from(rule);
        assert_eq!(json(serde_json::json!(rule)), json(serde_json::json!(own)));
        assert_eq!(PublishRule::from(own), rule);
    }
}
