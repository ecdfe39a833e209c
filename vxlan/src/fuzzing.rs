//! One input of the fuzz target (`vxlan/fuzz`), shared with the in-tree
//! robustness test so that CI runs the same code on stable.
//!
//! An input is `[control, bytes...]`: the bytes are decapsulated as a frame
//! from the underlay (port and checksum policy from `control`), and
//! whatever comes out whole is encapsulated again and must decapsulate to
//! the same VNI, VTEP and inner bytes. The bytes are also encapsulated as
//! an inner frame and must come back the same. Nothing may panic.

use std::net::Ipv4Addr;

use crate::decap::{decapsulate, Expect};
use crate::encap::{encapsulate, Outer, OuterCsum};
use crate::flow::{source_port, SOURCE_PORTS};
use crate::header::Vni;
use crate::{IANA_PORT, LINUX_PORT, OVERHEAD};

/// The local VTEP of every fuzz input.
pub const LOCAL: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

fn outer(src_ip: Ipv4Addr, dst_port: u16, vni: Vni, inner: &[u8], csum: OuterCsum) -> Outer {
    Outer {
        src_mac: [2, 0, 0, 0, 0, 9],
        dst_mac: [2, 0, 0, 0, 0, 1],
        src_ip,
        dst_ip: LOCAL,
        src_port: source_port(inner, SOURCE_PORTS),
        dst_port,
        vni,
        ttl: 64,
        ident: 0,
        dont_frag: false,
        csum,
    }
}

/// Encapsulates `inner` and decapsulates the result; panics if it does not
/// come back whole.
fn round_trip(inner: &[u8], src_ip: Ipv4Addr, port: u16, vni: Vni, csum: OuterCsum) {
    let mut packet = vec![0u8; OVERHEAD];
    packet.extend_from_slice(inner);
    if encapsulate(&mut packet, &outer(src_ip, port, vni, inner, csum)).is_err() {
        return;
    }
    let expect = Expect {
        local_ip: LOCAL,
        port,
        verify_csum: true,
    };
    let d = decapsulate(&packet, &expect, |v| v == vni)
        .expect("our own packet is well-formed")
        .expect("our own packet is ours");
    assert_eq!((d.vni, d.vtep), (vni, src_ip));
    assert_eq!(&packet[d.inner_at..d.inner_at + d.inner_len], inner);
}

/// Feeds one input; returns true when the bytes decapsulated.
pub fn drive(data: &[u8]) -> bool {
    let Some((&control, bytes)) = data.split_first() else {
        return false;
    };
    let port = if control & 1 == 0 { IANA_PORT } else { LINUX_PORT };
    let csum = if control & 2 == 0 {
        OuterCsum::Zero
    } else {
        OuterCsum::Full
    };
    let expect = Expect {
        local_ip: LOCAL,
        port,
        verify_csum: control & 4 == 0,
    };
    let known = |v: Vni| control & 8 == 0 || v.get().is_multiple_of(2);
    let found = decapsulate(bytes, &expect, known);
    if let Ok(Some(d)) = found {
        let inner = bytes
            .get(d.inner_at..d.inner_at + d.inner_len)
            .expect("the inner frame is inside the packet");
        round_trip(inner, d.vtep, port, d.vni, csum);
    }
    if bytes.len() >= crate::ETH_HDR_LEN {
        round_trip(bytes, Ipv4Addr::new(198, 51, 100, 7), port, Vni::ZERO, csum);
    }
    matches!(found, Ok(Some(_)))
}

/// xorshift64*: deterministic, so a failure of a generated test reproduces.
#[cfg(test)]
pub(crate) struct Rng(pub u64);

#[cfg(test)]
impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::PacketBuilder;

    /// Well-formed tunnel packets, as a kernel VTEP sends them, to mutate.
    fn templates() -> Vec<Vec<u8>> {
        let mut inner = Vec::new();
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 0xa], [2, 0, 0, 0, 0, 0xb])
            .ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .tcp(4000, 80, 1, 1000)
            .write(&mut inner, b"payload")
            .unwrap();
        let mut out = Vec::new();
        for (port, vni) in [(IANA_PORT, 42u8), (LINUX_PORT, 7)] {
            let mut payload = vec![0x08, 0, 0, 0, 0, 0, vni, 0];
            payload.extend_from_slice(&inner);
            let mut packet = Vec::new();
            PacketBuilder::ethernet2([2, 0, 0, 0, 0, 9], [2, 0, 0, 0, 0, 1])
                .ipv4([192, 0, 2, 9], LOCAL.octets(), 64)
                .udp(50_000, port)
                .write(&mut packet, &payload)
                .unwrap();
            out.push(packet);
        }
        out.push(inner);
        out
    }

    #[test]
    fn the_fuzz_seeds_decapsulate() {
        let seeds: [(&str, &[u8]); 2] = [
            ("iana-port", include_bytes!("../fuzz/seeds/frames/iana-port")),
            ("linux-port", include_bytes!("../fuzz/seeds/frames/linux-port")),
        ];
        for (name, seed) in seeds {
            assert!(drive(seed), "{name} does not decapsulate");
        }
    }

    #[test]
    fn arbitrary_frames_never_panic_and_round_trip() {
        let templates = templates();
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut decapsulated = 0;
        for _ in 0..20_000 {
            let mut p = templates[(rng.next() as usize) % templates.len()].clone();
            match rng.next() % 4 {
                0 => {}
                1 => {
                    let i = (rng.next() as usize) % p.len();
                    p[i] = rng.next() as u8;
                }
                2 => p.truncate((rng.next() as usize) % (p.len() + 1)),
                _ => p = (0..rng.next() % 120).map(|_| rng.next() as u8).collect(),
            }
            // Listen on the port the packet was sent to, most of the time.
            let linux = p.get(36..38) == Some(&LINUX_PORT.to_be_bytes()[..]);
            let mut input = vec![rng.next() as u8 & 0x0e | u8::from(linux)];
            input.extend_from_slice(&p);
            decapsulated += u32::from(drive(&input));
        }
        assert!(
            decapsulated > 1000,
            "the mutations reach the decapsulator: {decapsulated}"
        );
    }
}
