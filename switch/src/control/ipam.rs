//! Addresses for attachments: which address of a network a new lease gets,
//! and the MAC that goes with it. Used by `attach` (a lease) and `bridges`
//! (a range must have room); no other control file's business.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use vswitch_ctl::{Ipv4Net, MacAddr, SubnetExt};

use super::config::Lease;

/// The lowest address of `range` (all of `subnet` when None) that is a host
/// of `subnet`, not the gateway, and not leased.
pub(super) fn next_free(
    subnet: Ipv4Net,
    range: Option<Ipv4Net>,
    gateway: Ipv4Addr,
    leases: &[Lease],
) -> Option<Ipv4Addr> {
    let leased: HashSet<Ipv4Addr> = leases.iter().map(|l| l.ip).collect();
    range
        .unwrap_or(subnet)
        .addresses()
        .find(|ip| subnet.is_host(*ip) && *ip != gateway && !leased.contains(ip))
}

/// The MAC of an attached interface unless told otherwise: 0a:76 and the
/// four bytes of its address (locally administered, unique where the
/// address is). A namespace attached again gets the MAC it had with the
/// address, so its neighbours' ARP caches stay right: with a new random
/// MAC they kept sending to the old one until their entry went stale
/// (tens of seconds), as Docker avoids with its 02:42 MACs.
pub(super) fn lease_mac(ip: Ipv4Addr) -> MacAddr {
    let [a, b, c, d] = ip.octets();
    MacAddr([0x0a, 0x76, a, b, c, d])
}

#[cfg(test)]
mod tests {
    use super::*;
    use vswitch_policy::model::Labels;

    fn lease(ip: &str) -> Lease {
        Lease {
            ip: ip.parse().unwrap(),
            netns: ip.to_string(),
            port: String::new(),
            owner: None,
            no_default_route: false,
            name: None,
            namespace: None,
            labels: Labels::new(),
        }
    }

    #[test]
    fn an_address_keeps_its_mac() {
        let mac = lease_mac("10.154.0.6".parse().unwrap());
        assert_eq!(mac.to_string(), "0a:76:0a:9a:00:06");
        assert_eq!(mac, lease_mac("10.154.0.6".parse().unwrap()));
        assert_ne!(mac, lease_mac("10.154.0.7".parse().unwrap()));
    }

    #[test]
    fn addresses_come_from_the_range_lowest_free_first() {
        let subnet: Ipv4Net = "10.20.0.0/24".parse().unwrap();
        let gw = "10.20.0.1".parse().unwrap();
        let ip = |s: &str| Some(s.parse::<Ipv4Addr>().unwrap());
        assert_eq!(next_free(subnet, None, gw, &[]), ip("10.20.0.2"));
        let upper = Some("10.20.0.128/25".parse().unwrap());
        // The range's own first address is a host of the subnet: handed out.
        assert_eq!(next_free(subnet, upper, gw, &[]), ip("10.20.0.128"));
        assert_eq!(
            next_free(subnet, upper, gw, &[lease("10.20.0.128"), lease("10.20.0.130")]),
            ip("10.20.0.129")
        );
        // The subnet's broadcast address is not.
        let last = Some("10.20.0.252/30".parse().unwrap());
        let taken: Vec<Lease> = ["10.20.0.252", "10.20.0.253", "10.20.0.254"].map(lease).to_vec();
        assert_eq!(next_free(subnet, last, gw, &taken), None);
        // Nor the gateway, nor the network address.
        let first = Some("10.20.0.0/30".parse().unwrap());
        assert_eq!(next_free(subnet, first, gw, &[]), ip("10.20.0.2"));
    }
}
