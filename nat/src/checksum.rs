//! Incremental Internet checksum updates (RFC 1624).
//!
//! Two kinds of 16-bit field hold a one's-complement sum over data that NAT
//! changes:
//! - a finished checksum, the complement of the sum: HC' = ~(~HC + ~m + m');
//! - a seed, the sum itself, not complemented: what a sender with checksum
//!   offload leaves in a TCP/UDP header (the pseudo-header sum), for the
//!   device to finish: S' = S + ~m + m'.
//!
//! `m` and `m'` are the old and new contents of the changed words; here they
//! are given as byte slices of equal, even length (an address, a port).

/// Adds the 16-bit big-endian words of `bytes` to `sum` without folding
/// (a last odd byte is the high half of a word).
fn add_words(mut sum: u32, bytes: &[u8]) -> u32 {
    let mut words = bytes.chunks_exact(2);
    for pair in &mut words {
        sum += u32::from(u16::from_be_bytes([pair[0], pair[1]]));
    }
    if let [last] = words.remainder() {
        sum += u32::from(u16::from_be_bytes([*last, 0]));
    }
    sum
}

fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// `sum` minus the words of `old` plus the words of `new`, one's complement.
/// The complement of a word is 0xffff minus it, so the complements of `old`
/// add up to 0xffff per word less the sum of `old`: one pass over each.
fn delta(sum: u16, old: &[u8], new: &[u8]) -> u16 {
    debug_assert_eq!(old.len(), new.len());
    let words = old.len().div_ceil(2) as u32;
    let acc = u32::from(sum) + 0xffff * words - add_words(0, old);
    fold(add_words(acc, new))
}

/// Updates a finished checksum for `old` replaced by `new`.
pub fn update_checksum(checksum: u16, old: &[u8], new: &[u8]) -> u16 {
    !delta(!checksum, old, new)
}

/// Updates a checksum seed (an uncomplemented partial sum) for `old`
/// replaced by `new`.
pub fn update_seed(seed: u16, old: &[u8], new: &[u8]) -> u16 {
    delta(seed, old, new)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Internet checksum of `bytes`, computed from scratch.
    fn full(bytes: &[u8]) -> u16 {
        !fold(add_words(0, bytes))
    }

    #[test]
    fn incremental_matches_recomputation() {
        let mut data = [
            0x45u8, 0, 0, 60, 0x1c, 0x46, 0x40, 0, 0x40, 6, 0, 0, 172, 16, 10, 99, 172, 16, 12, 3,
        ];
        let before = full(&data);
        let (old, new) = ([172u8, 16, 10, 99], [203u8, 0, 113, 7]);
        data[12..16].copy_from_slice(&new);
        assert_eq!(update_checksum(before, &old, &new), full(&data));
    }

    #[test]
    fn seeds_move_like_sums() {
        let pseudo = [10u8, 0, 0, 1, 10, 0, 0, 2, 0, 6, 0, 40];
        let seed = fold(add_words(0, &pseudo));
        let moved = [192u8, 0, 2, 1, 10, 0, 0, 2, 0, 6, 0, 40];
        assert_eq!(update_seed(seed, &pseudo[..4], &moved[..4]), fold(add_words(0, &moved)));
    }
}
