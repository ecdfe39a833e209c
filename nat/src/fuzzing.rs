//! One input of the fuzz target (`nat/fuzz`), shared with the in-tree
//! robustness test so that CI runs the same code on stable.
//!
//! An input is a sequence of packets, each `[control, length, bytes...]`,
//! fed in order through a fresh table the way the NAT stage feeds them:
//! parse, track (with the policy `control` picks), rewrite; ICMP errors
//! translated. Time moves by `control >> 4` seconds per packet, so entries
//! expire and are swept too. Nothing may panic.

use std::net::Ipv4Addr;

use crate::parse;
use crate::rewrite::{rewrite_ipv4, L4Checksum};
use crate::table::{ConnTable, Nat};
use crate::translate;

/// Feeds `data`; returns how many connections it created.
pub fn drive(mut data: &[u8]) -> u64 {
    let ct = ConnTable::new(64);
    let mut now_ms = 0u64;
    while let [control, len, rest @ ..] = data {
        let len = usize::from(*len).min(rest.len());
        let mut packet = rest[..len].to_vec();
        data = &rest[len..];
        now_ms += u64::from(control >> 4) * 1000;
        let nat = Nat {
            snat: (control & 1 != 0).then_some(Ipv4Addr::new(198, 51, 100, 2)),
            dnat: (control & 2 != 0).then_some((Ipv4Addr::new(10, 0, 0, 5), 80)),
        };
        if let Ok(Some(seen)) = parse::seen(&packet, 1) {
            if let Ok(tracked) = ct.track(seen, now_ms, |_| nat) {
                let rw = translate::rewrite_for(&tracked, &seen.tuple);
                let mode = if control & 4 != 0 {
                    L4Checksum::Seed
                } else {
                    L4Checksum::Complete
                };
                let _ = rewrite_ipv4(&mut packet, &rw, mode);
            }
        }
        let _ = translate::icmp_error(&mut packet, 1, &ct, now_ms);
        if control & 8 != 0 {
            ct.sweep(now_ms);
        }
    }
    let _ = ct.snapshot(now_ms);
    ct.stats.creates.load(std::sync::atomic::Ordering::Relaxed)
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
    use etherparse::{IcmpEchoHeader, Icmpv4Type, PacketBuilder};

    /// Well-formed packets of a few flows, both ways, to mutate.
    fn templates() -> Vec<Vec<u8>> {
        let (c, s, up) = ([10, 0, 0, 2], [192, 0, 2, 1], [198, 51, 100, 2]);
        macro_rules! write {
            ($builder:expr, $payload:expr $(,)?) => {{
                let mut p = Vec::new();
                $builder.write(&mut p, $payload).expect("writes");
                p
            }};
        }
        let tcp = |src, dst, sp, dp, seq| PacketBuilder::ipv4(src, dst, 64).tcp(sp, dp, seq, 64_000);
        let mut out = vec![
            write!(tcp(c, s, 4000, 80, 1000).syn(), b""),
            write!(tcp(s, up, 80, 4000, 5000).syn().ack(1001), b""),
            write!(tcp(c, s, 4000, 80, 1001).ack(5001), b"data"),
            write!(tcp(s, up, 80, 4000, 5001).ack(1005).fin(), b""),
            write!(tcp(c, s, 4000, 80, 1005).rst(), b""),
            write!(tcp(s, up, 80, 8080, 7).syn(), b""),
            write!(PacketBuilder::ipv4(c, s, 64).udp(53, 53), b"query"),
            write!(PacketBuilder::ipv4(s, up, 64).udp(53, 53), b"answer"),
            write!(
                PacketBuilder::ipv4(c, s, 64).icmpv4(Icmpv4Type::EchoRequest(IcmpEchoHeader { id: 9, seq: 1 })),
                b"ping",
            ),
        ];
        // A port unreachable from the server, quoting the UDP query as it
        // left through the uplink.
        let mut quoted = out[6].clone();
        quoted[12..16].copy_from_slice(&up);
        out.push(write!(
            PacketBuilder::ipv4(s, up, 64).icmpv4(Icmpv4Type::DestinationUnreachable(
                etherparse::icmpv4::DestUnreachableHeader::Port,
            )),
            &quoted,
        ));
        out
    }

    /// The fuzz target's seeds reach the connection table (they are not
    /// thrown away by the parser), and what the fuzzer derives from them
    /// starts from there.
    #[test]
    fn the_fuzz_seeds_create_connections() {
        let seeds: [(&str, &[u8]); 5] = [
            ("tcp-handshake", include_bytes!("../fuzz/seeds/packets/tcp-handshake")),
            ("published-port", include_bytes!("../fuzz/seeds/packets/published-port")),
            (
                "udp-and-unreachable",
                include_bytes!("../fuzz/seeds/packets/udp-and-unreachable"),
            ),
            ("ping", include_bytes!("../fuzz/seeds/packets/ping")),
            (
                "expiry-and-sweep",
                include_bytes!("../fuzz/seeds/packets/expiry-and-sweep"),
            ),
        ];
        for (name, seed) in seeds {
            let created = drive(seed);
            let expected = if name == "expiry-and-sweep" { 2 } else { 1 };
            assert_eq!(created, expected, "{name}");
        }
    }

    #[test]
    fn arbitrary_packet_sequences_never_panic() {
        let templates = templates();
        let mut rng = Rng(0x2545_f491_4f6c_dd1d);
        for _ in 0..20_000 {
            let mut input = Vec::new();
            for _ in 0..(rng.next() % 12) {
                let mut p = templates[(rng.next() as usize) % templates.len()].clone();
                match rng.next() % 4 {
                    0 => {}
                    1 => {
                        let i = (rng.next() as usize) % p.len();
                        p[i] = rng.next() as u8;
                    }
                    2 => p.truncate((rng.next() as usize) % (p.len() + 1)),
                    _ => p = (0..rng.next() % 80).map(|_| rng.next() as u8).collect(),
                }
                input.push(rng.next() as u8);
                input.push(p.len() as u8);
                input.extend_from_slice(&p);
            }
            drive(&input);
        }
    }
}
