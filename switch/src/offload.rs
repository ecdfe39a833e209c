//! Finishing what the sender left to "the hardware": checksums and TCP
//! segmentation, for frames leaving through a port without offloads.
//!
//! A TAP port hands us frames as the container's stack built them with
//! offloads on: 64 KB TCP super-frames (GSO) and frames whose L4 checksum is
//! only seeded with the pseudo-header ("needs checksum", from `csum_start`,
//! stored at `csum_start + csum_offset`). Another TAP takes them as they are,
//! virtio-net header included. An AF_XDP port has no such header: what it
//! sends is what the wire carries, so each frame must be complete. This
//! module makes it so, one output frame at a time, into a buffer the caller
//! provides (a UMEM chunk): no allocation.
//!
//! Headers are read and rewritten with etherparse; only the virtio-net
//! checksum contract (sum from `csum_start`, store at `csum_offset`) is done
//! here by hand, because it is not a header format.

use etherparse::checksum::Sum16BitWords;
use etherparse::{NetHeaders, PacketHeaders, TransportHeader};

use crate::packet::{GsoType, VnetHdr};

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum OffloadError {
    #[error("the frame's headers do not match its virtio-net header")]
    Malformed,
    #[error("segmentation of {0:?} frames is not supported")]
    Unsupported(GsoType),
    #[error("the output buffer is too small for a segment")]
    NoRoom,
}

/// What the virtio-net header asks of whoever sends the frame on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OffloadRequest {
    pub gso: Option<GsoType>,
    pub gso_size: u16,
    /// (`csum_start`, `csum_offset`) relative to the Ethernet header.
    pub csum: Option<(u16, u16)>,
}

impl OffloadRequest {
    pub fn from_vnet(hdr: &VnetHdr<'_>) -> OffloadRequest {
        OffloadRequest {
            gso: hdr.gso(),
            gso_size: hdr.gso_size(),
            csum: (hdr.flags() & VnetHdr::F_NEEDS_CSUM != 0).then(|| (hdr.csum_start(), hdr.csum_offset())),
        }
    }

    /// True when the frame can go out as it is.
    pub fn is_none(&self) -> bool {
        self.gso.is_none() && self.csum.is_none()
    }
}

/// Where a TCP super-frame's parts are, parsed once.
struct TcpSplit<'a> {
    frame: &'a [u8],
    headers: PacketHeaders<'a>,
    /// Ethernet (+VLAN) header length: start of the IP header.
    l3: usize,
    /// Start of the TCP header.
    l4: usize,
    payload: &'a [u8],
    mss: usize,
}

enum Plan<'a> {
    /// Copy as it is.
    Copy,
    /// Copy, then finish the L4 checksum.
    Checksum { start: usize, offset: usize },
    /// Cut into MSS-sized TCP segments.
    Tcp(Box<TcpSplit<'a>>),
}

/// Produces the frames that carry `frame` without offloads.
pub struct Segmenter<'a> {
    frame: &'a [u8],
    plan: Plan<'a>,
    /// Next payload byte to send (TCP) or whether the copy is done.
    next: usize,
    index: u16,
    done: bool,
}

impl<'a> Segmenter<'a> {
    /// `frame` starts at the Ethernet header.
    pub fn new(frame: &'a [u8], request: OffloadRequest) -> Result<Segmenter<'a>, OffloadError> {
        let plan = match (request.gso, request.csum) {
            (None, None) => Plan::Copy,
            (None, Some((start, offset))) => {
                let (start, offset) = (usize::from(start), usize::from(offset));
                if start + offset + 2 > frame.len() {
                    return Err(OffloadError::Malformed);
                }
                Plan::Checksum { start, offset }
            }
            (Some(GsoType::TcpV4 | GsoType::TcpV6), _) => Plan::Tcp(Box::new(tcp_split(frame, request.gso_size)?)),
            (Some(other), _) => return Err(OffloadError::Unsupported(other)),
        };
        Ok(Segmenter {
            frame,
            plan,
            next: 0,
            index: 0,
            done: false,
        })
    }

    /// Writes the next output frame into `out` and returns its length, or
    /// `None` when every frame has been written.
    pub fn next_into(&mut self, out: &mut [u8]) -> Option<Result<usize, OffloadError>> {
        if self.done {
            return None;
        }
        let result = match &self.plan {
            Plan::Copy => {
                self.done = true;
                copy_into(self.frame, out)
            }
            Plan::Checksum { start, offset } => {
                self.done = true;
                copy_into(self.frame, out).inspect(|&len| finish_checksum(&mut out[..len], *start, *offset))
            }
            Plan::Tcp(split) => {
                let result = write_segment(split, self.next, self.index, out);
                self.next += split.mss;
                self.index = self.index.wrapping_add(1);
                self.done = self.next >= split.payload.len();
                result
            }
        };
        if result.is_err() {
            self.done = true;
        }
        Some(result)
    }
}

fn copy_into(frame: &[u8], out: &mut [u8]) -> Result<usize, OffloadError> {
    let dst = out.get_mut(..frame.len()).ok_or(OffloadError::NoRoom)?;
    dst.copy_from_slice(frame);
    Ok(frame.len())
}

/// Completes a checksum the sender seeded with its pseudo-header sum.
pub fn finish_checksum(frame: &mut [u8], start: usize, offset: usize) {
    let Some(covered) = frame.get(start..) else { return };
    // Sum16BitWords adds the bytes as native-endian words, so its result is
    // already in memory order: stored as is, not byte-swapped.
    let sum = Sum16BitWords::new()
        .add_slice(covered)
        .to_ones_complement_with_no_zero();
    if let Some(field) = frame.get_mut(start + offset..start + offset + 2) {
        field.copy_from_slice(&sum.to_ne_bytes());
    }
}

fn tcp_split(frame: &[u8], gso_size: u16) -> Result<TcpSplit<'_>, OffloadError> {
    let headers = PacketHeaders::from_ethernet_slice(frame).map_err(|_| OffloadError::Malformed)?;
    let l3 = headers.link.as_ref().map_or(0, |l| l.header_len()) + headers.vlan.as_ref().map_or(0, |v| v.header_len());
    let ip_len = match &headers.net {
        Some(NetHeaders::Ipv4(ip, ext)) => ip.header_len() + ext.header_len(),
        Some(NetHeaders::Ipv6(ip, ext)) => ip.header_len() + ext.header_len(),
        None => return Err(OffloadError::Malformed),
    };
    let Some(TransportHeader::Tcp(_)) = &headers.transport else {
        return Err(OffloadError::Malformed);
    };
    let payload = headers.payload.slice();
    let mss = usize::from(gso_size);
    if mss == 0 {
        return Err(OffloadError::Malformed);
    }
    Ok(TcpSplit {
        frame,
        l3,
        l4: l3 + ip_len,
        payload,
        mss,
        headers,
    })
}

/// Writes segment `index`, carrying payload bytes from `offset`.
fn write_segment(split: &TcpSplit<'_>, offset: usize, index: u16, out: &mut [u8]) -> Result<usize, OffloadError> {
    let end = (offset + split.mss).min(split.payload.len());
    let chunk = split.payload.get(offset..end).ok_or(OffloadError::Malformed)?;
    let last = end == split.payload.len();
    let Some(TransportHeader::Tcp(tcp)) = &split.headers.transport else {
        return Err(OffloadError::Malformed);
    };
    let mut tcp = tcp.clone();
    tcp.sequence_number = tcp.sequence_number.wrapping_add(offset as u32);
    if !last {
        tcp.fin = false;
        tcp.psh = false;
    }
    if index > 0 {
        tcp.cwr = false;
    }
    let tcp_len = tcp.header_len();
    let total = split.l4 + tcp_len + chunk.len();
    let out = out.get_mut(..total).ok_or(OffloadError::NoRoom)?;
    let (head, rest) = out.split_at_mut(split.l3);
    head.copy_from_slice(&split.frame[..split.l3]);
    match &split.headers.net {
        Some(NetHeaders::Ipv4(ip, ext)) => {
            let mut ip = ip.clone();
            ip.set_payload_len(ext.header_len() + tcp_len + chunk.len())
                .map_err(|_| OffloadError::Malformed)?;
            ip.identification = ip.identification.wrapping_add(index);
            ip.header_checksum = ip.calc_header_checksum();
            tcp.checksum = tcp
                .calc_checksum_ipv4(&ip, chunk)
                .map_err(|_| OffloadError::Malformed)?;
            let bytes = ip.to_bytes();
            rest[..bytes.len()].copy_from_slice(&bytes);
        }
        Some(NetHeaders::Ipv6(ip, ext)) => {
            let mut ip = ip.clone();
            ip.set_payload_length(ext.header_len() + tcp_len + chunk.len())
                .map_err(|_| OffloadError::Malformed)?;
            tcp.checksum = tcp
                .calc_checksum_ipv6(&ip, chunk)
                .map_err(|_| OffloadError::Malformed)?;
            rest[..ip.header_len()].copy_from_slice(&ip.to_bytes());
        }
        None => return Err(OffloadError::Malformed),
    }
    let ip_fixed = match &split.headers.net {
        Some(NetHeaders::Ipv4(ip, _)) => ip.header_len(),
        _ => etherparse::Ipv6Header::LEN,
    };
    // IP extension headers / IPv4 options beyond the fixed part: as they were.
    let ext = split.l3 + ip_fixed..split.l4;
    out[ext.clone()].copy_from_slice(&split.frame[ext]);
    let tcp_bytes = tcp.to_bytes();
    out[split.l4..split.l4 + tcp_len].copy_from_slice(&tcp_bytes);
    out[split.l4 + tcp_len..].copy_from_slice(chunk);
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::{PacketBuilder, SlicedPacket, TransportSlice};

    const MSS: u16 = 1000;

    /// A TCP super-frame as a container's stack hands it to a TAP with TSO:
    /// full-length IP header, TCP checksum seeded with the pseudo-header.
    fn super_frame(v6: bool, payload: &[u8], fin: bool) -> Vec<u8> {
        let eth = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
        let ip = if v6 {
            eth.ipv6(
                [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
                [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
                64,
            )
        } else {
            eth.ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        };
        let mut tcp = ip.tcp(40000, 5201, 0xffff_ff00, 502).ack(77).psh().cwr();
        if fin {
            tcp = tcp.fin();
        }
        // Timestamp and SACK-permitted options, as Linux sends them.
        let tcp = tcp
            .options(&[
                etherparse::TcpOptionElement::Noop,
                etherparse::TcpOptionElement::Noop,
                etherparse::TcpOptionElement::Timestamp(1, 2),
            ])
            .unwrap();
        let mut out = Vec::new();
        tcp.write(&mut out, payload).unwrap();
        out
    }

    /// What a segment carried, as an independent parser sees it.
    struct Seen {
        seq: u32,
        payload: Vec<u8>,
        fin: bool,
        psh: bool,
        cwr: bool,
        ip_id: Option<u16>,
    }

    fn payload(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 7 % 251) as u8).collect()
    }

    fn segments(frame: &[u8], request: OffloadRequest) -> Vec<Vec<u8>> {
        let mut seg = Segmenter::new(frame, request).unwrap();
        let mut out = Vec::new();
        let mut buf = vec![0u8; 2048];
        while let Some(r) = seg.next_into(&mut buf) {
            let len = r.unwrap();
            out.push(buf[..len].to_vec());
        }
        out
    }

    /// Checks every segment independently of the code under test: etherparse
    /// parses it, and the checksums it carries are the ones etherparse
    /// computes.
    fn verify(segs: &[Vec<u8>]) -> Vec<Seen> {
        segs.iter()
            .map(|s| {
                let p = SlicedPacket::from_ethernet(s).expect("segment parses");
                let Some(TransportSlice::Tcp(tcp)) = p.transport else {
                    panic!("tcp")
                };
                let payload = tcp.payload().to_vec();
                let header = tcp.to_header();
                let (expected, id) = match &p.net {
                    Some(etherparse::InternetSlice::Ipv4(ip)) => {
                        let h = ip.header().to_header();
                        assert_eq!(h.header_checksum, h.calc_header_checksum(), "IPv4 header checksum");
                        (header.calc_checksum_ipv4(&h, &payload).unwrap(), Some(h.identification))
                    }
                    Some(etherparse::InternetSlice::Ipv6(ip)) => (
                        header.calc_checksum_ipv6(&ip.header().to_header(), &payload).unwrap(),
                        None,
                    ),
                    _ => panic!("ip"),
                };
                assert_eq!(header.checksum, expected, "TCP checksum");
                Seen {
                    seq: header.sequence_number,
                    payload,
                    fin: header.fin,
                    psh: header.psh,
                    cwr: header.cwr,
                    ip_id: id,
                }
            })
            .collect()
    }

    fn tso(v6: bool) -> OffloadRequest {
        let l4 = if v6 { 14 + 40 } else { 14 + 20 };
        OffloadRequest {
            gso: Some(if v6 { GsoType::TcpV6 } else { GsoType::TcpV4 }),
            gso_size: MSS,
            csum: Some((l4, 16)),
        }
    }

    #[test]
    fn tcp_v4_super_frame_is_cut_into_valid_segments() {
        let data = payload(3500);
        let frame = super_frame(false, &data, true);
        let segs = verify(&segments(&frame, tso(false)));
        assert_eq!(segs.len(), 4);
        let joined: Vec<u8> = segs.iter().flat_map(|s| s.payload.clone()).collect();
        assert_eq!(joined, data, "payload survives in order");
        for (i, s) in segs.iter().enumerate() {
            let expected_seq = 0xffff_ff00u32.wrapping_add(i as u32 * u32::from(MSS));
            assert_eq!(s.seq, expected_seq, "sequence numbers wrap correctly");
            assert_eq!(s.payload.len(), if i < 3 { 1000 } else { 500 });
            let last = i == 3;
            assert_eq!((s.fin, s.psh), (last, last), "FIN and PSH only on the last segment");
            assert_eq!(s.cwr, i == 0, "CWR only on the first");
            assert_eq!(s.ip_id, Some(i as u16), "IP id counts up from the original");
        }
    }

    #[test]
    fn tcp_v6_super_frame_is_cut_into_valid_segments() {
        let data = payload(2001);
        let frame = super_frame(true, &data, false);
        let segs = verify(&segments(&frame, tso(true)));
        assert_eq!(
            segs.iter().map(|s| s.payload.len()).collect::<Vec<_>>(),
            vec![1000, 1000, 1]
        );
        assert!(segs.iter().all(|s| !s.fin), "no FIN anywhere");
        assert!(segs[2].psh && !segs[0].psh, "PSH on the last only");
    }

    #[test]
    fn a_partial_checksum_is_finished() {
        let data = payload(300);
        let mut frame = super_frame(false, &data, false);
        // What the sender's stack leaves with tx checksum offload: the
        // pseudo-header sum, not complemented, in the checksum field.
        let p = SlicedPacket::from_ethernet(&frame).unwrap();
        let Some(etherparse::InternetSlice::Ipv4(ip)) = &p.net else {
            panic!()
        };
        let h = ip.header().to_header();
        let tcp_len = (frame.len() - 34) as u16;
        let seed = Sum16BitWords::new()
            .add_4bytes(h.source)
            .add_4bytes(h.destination)
            .add_2bytes([0, 6])
            .add_2bytes(tcp_len.to_be_bytes())
            .ones_complement();
        frame[34 + 16..34 + 18].copy_from_slice(&(!seed).to_ne_bytes());
        let request = OffloadRequest {
            gso: None,
            gso_size: 0,
            csum: Some((34, 16)),
        };
        let segs = verify(&segments(&frame, request));
        assert_eq!(segs.len(), 1);
        assert_eq!(segs[0].payload, data);
    }

    #[test]
    fn plain_frames_are_copied_and_bad_requests_refused() {
        let frame = super_frame(false, b"hi", false);
        assert_eq!(segments(&frame, OffloadRequest::default()), vec![frame.clone()]);
        let udp = OffloadRequest {
            gso: Some(GsoType::UdpL4),
            gso_size: 100,
            csum: None,
        };
        assert_eq!(
            Segmenter::new(&frame, udp).err(),
            Some(OffloadError::Unsupported(GsoType::UdpL4))
        );
        let past_end = OffloadRequest {
            gso: None,
            gso_size: 0,
            csum: Some((60, 16)),
        };
        assert_eq!(Segmenter::new(&frame, past_end).err(), Some(OffloadError::Malformed));
        assert_eq!(
            Segmenter::new(&frame[..20], tso(false)).err(),
            Some(OffloadError::Malformed)
        );
        let mut seg = Segmenter::new(&frame, OffloadRequest::default()).unwrap();
        assert_eq!(seg.next_into(&mut [0u8; 10]), Some(Err(OffloadError::NoRoom)));
        assert_eq!(seg.next_into(&mut [0u8; 100]), None, "stops after an error");
    }
}
