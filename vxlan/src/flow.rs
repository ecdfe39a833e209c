//! The outer UDP source port: a hash of the inner flow (RFC 7348, 5: "it
//! is recommended that the UDP source port number be calculated using a
//! hash of fields from the inner packet"), so that the underlay's ECMP and
//! RSS spread one tunnel's flows the way they would spread the flows
//! themselves, while each flow keeps one path (no reordering).
//!
//! The fields: the inner MAC addresses and type; for IPv4 and IPv6 the
//! addresses and protocol; for TCP and UDP (not in later fragments) the
//! ports. FNV-1a, by hand: a few bytes, no key, nothing to protect (the
//! port only steers load); not worth a dependency.

use std::ops::RangeInclusive;

use smoltcp::wire::{EthernetFrame, EthernetProtocol, IpProtocol, Ipv4Packet, Ipv6Packet};

/// The dynamic port range RFC 7348 recommends for the source port.
pub const SOURCE_PORTS: RangeInclusive<u16> = 49152..=65535;

const FNV_OFFSET: u32 = 0x811c_9dc5;
const FNV_PRIME: u32 = 0x0100_0193;

fn fnv1a(h: u32, bytes: &[u8]) -> u32 {
    bytes.iter().fold(h, |h, &b| (h ^ u32::from(b)).wrapping_mul(FNV_PRIME))
}

/// The hash of the inner frame's flow. Whatever the frame holds (short,
/// unknown types) it hashes what it can.
pub fn flow_hash(inner: &[u8]) -> u32 {
    let Ok(eth) = EthernetFrame::new_checked(inner) else {
        return fnv1a(FNV_OFFSET, inner);
    };
    let mut h = fnv1a(FNV_OFFSET, &inner[..14]);
    let (proto, l4) = match eth.ethertype() {
        EthernetProtocol::Ipv4 => match Ipv4Packet::new_checked(eth.payload()) {
            Ok(ip) => {
                h = fnv1a(h, &ip.src_addr().octets());
                h = fnv1a(h, &ip.dst_addr().octets());
                let first = ip.frag_offset() == 0;
                (ip.next_header(), first.then(|| ip.payload()))
            }
            Err(_) => return h,
        },
        EthernetProtocol::Ipv6 => match Ipv6Packet::new_checked(eth.payload()) {
            Ok(ip) => {
                h = fnv1a(h, &ip.src_addr().octets());
                h = fnv1a(h, &ip.dst_addr().octets());
                (ip.next_header(), Some(ip.payload()))
            }
            Err(_) => return h,
        },
        _ => return h,
    };
    h = fnv1a(h, &[u8::from(proto)]);
    match (proto, l4.and_then(|p| p.get(..4))) {
        (IpProtocol::Tcp | IpProtocol::Udp, Some(ports)) => fnv1a(h, ports),
        _ => h,
    }
}

/// The source port for the inner frame, in `range`.
pub fn source_port(inner: &[u8], range: RangeInclusive<u16>) -> u16 {
    let (lo, hi) = (u32::from(*range.start()), u32::from(*range.end()));
    if hi <= lo {
        return *range.start();
    }
    let h = flow_hash(inner);
    // Scale the hash into the range (the kernel's reciprocal_scale).
    let span = u64::from(hi - lo + 1);
    (u64::from(lo) + ((u64::from(h) * span) >> 32)) as u16
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    fn tcp(src_port: u16, dst_port: u16) -> Vec<u8> {
        let mut frame = Vec::new();
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(src_port, dst_port, 1, 1000)
            .write(&mut frame, b"data")
            .unwrap();
        frame
    }

    #[test]
    fn one_flow_one_port_many_flows_many_ports() {
        let a = source_port(&tcp(1000, 80), SOURCE_PORTS);
        assert_eq!(a, source_port(&tcp(1000, 80), SOURCE_PORTS), "stable");
        // The payload and sequence numbers are not part of the flow.
        let mut other_payload = tcp(1000, 80);
        let last = other_payload.len() - 1;
        other_payload[last] ^= 0xff;
        assert_eq!(a, source_port(&other_payload, SOURCE_PORTS));
        let ports: std::collections::HashSet<u16> = (0..256)
            .map(|p| source_port(&tcp(1000 + p, 80), SOURCE_PORTS))
            .collect();
        assert!(ports.len() > 200, "256 flows share only {} ports", ports.len());
        assert!(ports.iter().all(|p| SOURCE_PORTS.contains(p)));
    }

    #[test]
    fn any_bytes_hash_and_narrow_ranges_hold() {
        for len in 0..80 {
            let junk: Vec<u8> = (0..len).map(|i| (i * 37) as u8).collect();
            assert!(SOURCE_PORTS.contains(&source_port(&junk, SOURCE_PORTS)));
        }
        assert_eq!(source_port(&tcp(1, 2), 5000..=5000), 5000);
        assert!((5000..=5001).contains(&source_port(&tcp(1, 2), 5000..=5001)));
    }
}
