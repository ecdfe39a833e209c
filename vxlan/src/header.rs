//! The VXLAN header (RFC 7348, section 5):
//!
//! ```text
//! | flags (8) | reserved (24) | VNI (24) | reserved (8) |
//! ```
//!
//! Only the I flag (0x08, "the VNI is valid") is defined. The RFC asks
//! receivers to ignore the reserved bits; Linux's vxlan drops a packet with
//! any other bit set unless an extension (GBP, GPE) was configured, and so
//! do we: such a packet was meant for a VTEP that speaks the extension.

use std::fmt;

use crate::VXLAN_HDR_LEN;

/// The I flag: the VNI field is valid.
pub const FLAG_I: u8 = 0x08;
/// Largest VNI: 24 bits.
pub const VNI_MAX: u32 = (1 << 24) - 1;

/// A VXLAN network identifier (24 bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Vni(u32);

impl Vni {
    pub const ZERO: Vni = Vni(0);

    /// The VNI `value`, if it fits in 24 bits.
    pub fn new(value: u32) -> Option<Vni> {
        (value <= VNI_MAX).then_some(Vni(value))
    }

    pub fn get(self) -> u32 {
        self.0
    }
}

impl fmt::Display for Vni {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A view of a VXLAN header over bytes, smoltcp style.
#[derive(Debug)]
pub struct VxlanHeader<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> VxlanHeader<T> {
    /// The header at the start of `buffer`, if there are 8 bytes.
    pub fn new_checked(buffer: T) -> Option<VxlanHeader<T>> {
        (buffer.as_ref().len() >= VXLAN_HDR_LEN).then_some(VxlanHeader { buffer })
    }

    /// The header at the start of `buffer`, which the caller has checked
    /// holds 8 bytes (accessors panic otherwise).
    pub fn new_unchecked(buffer: T) -> VxlanHeader<T> {
        VxlanHeader { buffer }
    }

    fn bytes(&self) -> &[u8] {
        &self.buffer.as_ref()[..VXLAN_HDR_LEN]
    }

    pub fn flags(&self) -> u8 {
        self.bytes()[0]
    }

    pub fn vni(&self) -> Vni {
        let b = self.bytes();
        Vni(u32::from_be_bytes([0, b[4], b[5], b[6]]))
    }

    /// The VNI, when the header is one a plain VTEP accepts: the I flag
    /// set, every other bit of the flags and reserved fields zero.
    pub fn valid_vni(&self) -> Option<Vni> {
        let b = self.bytes();
        let plain = b[0] == FLAG_I && b[1..4] == [0, 0, 0] && b[7] == 0;
        plain.then(|| self.vni())
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> VxlanHeader<T> {
    /// Writes a plain header for `vni`: the I flag, reserved bits zero.
    pub fn emit(&mut self, vni: Vni) {
        let b = &mut self.buffer.as_mut()[..VXLAN_HDR_LEN];
        let v = vni.0.to_be_bytes();
        b.copy_from_slice(&[FLAG_I, 0, 0, 0, v[1], v[2], v[3], 0]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vni_is_24_bits() {
        assert_eq!(Vni::new(VNI_MAX).map(Vni::get), Some(0xff_ffff));
        assert_eq!(Vni::new(VNI_MAX + 1), None);
    }

    #[test]
    fn header_round_trip_and_strictness() {
        let mut bytes = [0xffu8; 8];
        VxlanHeader::new_checked(&mut bytes[..])
            .unwrap()
            .emit(Vni::new(0x12_3456).unwrap());
        assert_eq!(bytes, [0x08, 0, 0, 0, 0x12, 0x34, 0x56, 0]);
        let view = VxlanHeader::new_checked(&bytes[..]).unwrap();
        assert_eq!(view.valid_vni().map(Vni::get), Some(0x12_3456));

        for (at, value) in [(0, 0x00), (0, 0x0c), (0, 0x88), (1, 1), (3, 0x80), (7, 1)] {
            let mut bad = bytes;
            bad[at] = value;
            assert_eq!(
                VxlanHeader::new_checked(&bad[..]).unwrap().valid_vni(),
                None,
                "{at}={value:#x}"
            );
        }
        assert!(VxlanHeader::new_checked(&bytes[..7]).is_none());
    }
}
