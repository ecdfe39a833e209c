//! Classify: check a frame's outer headers once and record where they are.
//!
//! Everything after this stage may index the Ethernet header without
//! checking its length again (`meta.eth_offset` is set only then), and reads
//! the Ethernet type and the checksum state from `meta` instead of parsing
//! them again. The virtio-net header is validated here too, so
//! a frame the kernel would refuse on output is dropped with a name instead.

use smoltcp::wire::EthernetFrame;

use super::ingress::Ingress;
use crate::packet::{Batch, Frame, GsoType, Meta, VnetHdr, VNET_HDR_LEN};
use crate::stats::DropReason;
use crate::verdict::Verdict;

/// The stage: every frame of the batch classified, and sent on to the
/// switch (a bridge member's) or to the underlay's side (an uplink's).
#[inline]
pub fn pass(batch: &mut Batch, at: &Ingress<'_>, verdicts: &mut [Verdict]) {
    let vnet_hdr = at.input.vnet_hdr;
    let next = if at.uplink() { Verdict::Underlay } else { Verdict::L2 };
    for (frame, out) in batch.frames_mut().iter_mut().zip(verdicts.iter_mut()) {
        *out = match classify(frame, vnet_hdr) {
            Ok(()) => {
                if frame.meta.gso.is_some() {
                    at.counters.rx_gso_packets.add(1);
                }
                next
            }
            Err(reason) => Verdict::Drop(reason),
        };
    }
}

pub fn classify(frame: &mut Frame, vnet_hdr: bool) -> Result<(), DropReason> {
    let data = frame.data();
    let mut meta = Meta::default();
    let eth_offset = if vnet_hdr {
        let hdr = VnetHdr::new_checked(data).ok_or(DropReason::Malformed)?;
        meta.gso = hdr.gso();
        match meta.gso {
            Some(GsoType::Unknown(_)) => return Err(DropReason::BadVnetHdr),
            Some(_) if hdr.gso_size() == 0 => return Err(DropReason::BadVnetHdr),
            _ => {}
        }
        let l2_len = data.len() - VNET_HDR_LEN;
        let csum_end = usize::from(hdr.csum_start()) + usize::from(hdr.csum_offset()) + 2;
        meta.csum_partial = hdr.flags() & VnetHdr::F_NEEDS_CSUM != 0;
        meta.csum_valid = hdr.flags() & VnetHdr::F_DATA_VALID != 0;
        if meta.csum_partial && csum_end > l2_len {
            return Err(DropReason::BadVnetHdr);
        }
        VNET_HDR_LEN
    } else {
        0
    };
    let eth = EthernetFrame::new_checked(&data[eth_offset..]).map_err(|_| DropReason::Malformed)?;
    meta.eth_offset = Some(eth_offset as u16);
    meta.ethertype = Some(eth.ethertype());
    frame.meta = meta;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::PacketPool;

    fn frame_with(bytes: &[u8]) -> Frame {
        let mut pool = PacketPool::new(1);
        let mut f = pool.alloc().unwrap();
        f.fill(bytes);
        f
    }

    fn eth() -> Vec<u8> {
        let mut v = vec![0xff; 6];
        v.extend_from_slice(&[2, 0, 0, 0, 0, 1, 0x08, 0x06]);
        v.extend_from_slice(&[0; 28]);
        v
    }

    #[test]
    fn plain_and_vnet_frames() {
        let mut f = frame_with(&eth());
        assert_eq!(classify(&mut f, false), Ok(()));
        assert_eq!(f.meta.eth_offset, Some(0));

        let mut bytes = vec![0u8; VNET_HDR_LEN];
        bytes.extend(eth());
        let mut f = frame_with(&bytes);
        assert_eq!(classify(&mut f, true), Ok(()));
        assert_eq!(f.meta.eth_offset, Some(VNET_HDR_LEN as u16));
        assert_eq!(f.meta.gso, None);
    }

    #[test]
    fn short_frames_are_malformed() {
        assert_eq!(
            classify(&mut frame_with(&eth()[..13]), false),
            Err(DropReason::Malformed)
        );
        assert_eq!(classify(&mut frame_with(&[0; 11]), true), Err(DropReason::Malformed));
        assert_eq!(
            classify(&mut frame_with(&[0; 12 + 13]), true),
            Err(DropReason::Malformed)
        );
        assert_eq!(classify(&mut frame_with(&[]), false), Err(DropReason::Malformed));
    }

    #[test]
    fn bad_vnet_headers_are_named() {
        let mut bytes = vec![0u8; VNET_HDR_LEN];
        bytes.extend(eth());
        let unknown_gso = {
            let mut b = bytes.clone();
            b[1] = 9;
            b[4] = 100;
            b
        };
        assert_eq!(
            classify(&mut frame_with(&unknown_gso), true),
            Err(DropReason::BadVnetHdr)
        );
        let zero_gso_size = {
            let mut b = bytes.clone();
            b[1] = 1;
            b
        };
        assert_eq!(
            classify(&mut frame_with(&zero_gso_size), true),
            Err(DropReason::BadVnetHdr)
        );
        let csum_past_end = {
            let mut b = bytes.clone();
            b[0] = VnetHdr::F_NEEDS_CSUM;
            b[6] = 40;
            b[8] = 16;
            b
        };
        assert_eq!(
            classify(&mut frame_with(&csum_past_end), true),
            Err(DropReason::BadVnetHdr)
        );
        let gso_ok = {
            let mut b = bytes.clone();
            b[1] = 1;
            b[4] = 0xa8;
            b[5] = 0x05;
            b
        };
        let mut f = frame_with(&gso_ok);
        assert_eq!(classify(&mut f, true), Ok(()));
        assert_eq!(f.meta.gso, Some(GsoType::TcpV4));
    }
}
