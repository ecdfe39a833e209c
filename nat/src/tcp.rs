//! The TCP connection state machine conntrack keeps, and how long each state
//! lives without traffic.
//!
//! The states and timeouts follow the kernel's `nf_conntrack_proto_tcp`
//! (SYN_SENT 120 s ... ESTABLISHED 5 days ... CLOSE 10 s). Transitions are
//! written out as a match rather than the kernel's table so that each can be
//! read and tested. A connection only starts on a bare SYN: an ACK with no
//! connection is invalid (no mid-stream pickup), as are segments that make
//! no sense in the current state (a SYN on an established connection, flags
//! no stack sends). Sequence-window tracking is not done here yet: an
//! out-of-window segment passes as long as its flags fit the state.

use std::time::Duration;

/// Which way a segment goes, relative to the packet that opened the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    Original,
    Reply,
}

impl Dir {
    pub fn other(self) -> Dir {
        match self {
            Dir::Original => Dir::Reply,
            Dir::Reply => Dir::Original,
        }
    }
}

/// The flags of a segment, as far as the state machine cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Segment {
    Syn,
    SynAck,
    Fin,
    Ack,
    Rst,
    /// Flag combinations no TCP stack sends (SYN+FIN, SYN+RST, none at all).
    Invalid,
}

impl Segment {
    pub fn from_flags(syn: bool, ack: bool, fin: bool, rst: bool) -> Segment {
        match (syn, ack, fin, rst) {
            (true, _, true, _) | (true, _, _, true) => Segment::Invalid,
            (true, false, false, false) => Segment::Syn,
            (true, true, false, false) => Segment::SynAck,
            (false, _, _, true) => Segment::Rst,
            (false, _, true, false) => Segment::Fin,
            (false, true, false, false) => Segment::Ack,
            (false, false, false, false) => Segment::Invalid,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcpState {
    SynSent,
    SynRecv,
    Established,
    /// One side (the one named) has sent its FIN.
    FinWait(Dir),
    /// The FIN of the side named was acknowledged; the other side may still send.
    CloseWait(Dir),
    /// Both sides have sent FIN; waiting for the last ACK.
    LastAck,
    TimeWait,
    Close,
}

/// The state of a new connection whose first segment is `seg`, or None if
/// such a segment cannot open a connection.
pub fn open(seg: Segment) -> Option<TcpState> {
    (seg == Segment::Syn).then_some(TcpState::SynSent)
}

/// The state after `seg` travels in direction `dir`, or None if the segment
/// is invalid in `state` (the packet is dropped and counted; the state stays).
pub fn next(state: TcpState, dir: Dir, seg: Segment) -> Option<TcpState> {
    use Dir::{Original, Reply};
    use Segment::*;
    use TcpState::*;
    match (state, dir, seg) {
        (_, _, Invalid) => None,
        (_, _, Rst) => Some(Close),
        (SynSent, Original, Syn) => Some(SynSent),
        (SynSent, Reply, SynAck) => Some(SynRecv),
        // Simultaneous open: both sides sent SYN.
        (SynSent, Reply, Syn) => Some(SynRecv),
        (SynSent, _, _) => None,
        (SynRecv, Original, Ack) => Some(Established),
        (SynRecv, Original, Fin) => Some(FinWait(Original)),
        (SynRecv, Reply, SynAck) | (SynRecv, Original, Syn) => Some(SynRecv),
        (SynRecv, _, _) => None,
        (Established, _, Ack) => Some(Established),
        (Established, d, Fin) => Some(FinWait(d)),
        (Established, _, _) => None,
        (FinWait(f), d, Ack) if d != f => Some(CloseWait(f)),
        (FinWait(f), d, Fin) if d != f => Some(LastAck),
        (FinWait(f), _, Ack | Fin) => Some(FinWait(f)),
        (CloseWait(f), d, Fin) if d != f => Some(LastAck),
        (CloseWait(f), _, Ack | Fin) => Some(CloseWait(f)),
        (LastAck, _, Ack) => Some(TimeWait),
        (LastAck, _, Fin) => Some(LastAck),
        (TimeWait, Original, Syn) | (Close, Original, Syn) => Some(SynSent),
        (TimeWait, _, Ack | Fin) => Some(TimeWait),
        // What was in flight when the RST went out (the kernel keeps these
        // valid too, and the connection closed).
        (Close, _, Ack | Fin) => Some(Close),
        (FinWait(_) | CloseWait(_) | LastAck | TimeWait | Close, _, _) => None,
    }
}

/// How long a connection in `state` lives without a packet.
pub fn timeout(state: TcpState) -> Duration {
    let secs = match state {
        TcpState::SynSent => 120,
        TcpState::SynRecv => 60,
        TcpState::Established => 5 * 24 * 3600,
        TcpState::FinWait(_) => 120,
        TcpState::CloseWait(_) => 60,
        TcpState::LastAck => 30,
        TcpState::TimeWait => 120,
        TcpState::Close => 10,
    };
    Duration::from_secs(secs)
}

/// UDP: 30 s until the other side has answered, 120 s after.
pub fn udp_timeout(replied: bool) -> Duration {
    Duration::from_secs(if replied { 120 } else { 30 })
}

/// ICMP echo: 30 s.
pub const ICMP_TIMEOUT: Duration = Duration::from_secs(30);

#[cfg(test)]
mod tests {
    use super::*;
    use Dir::{Original as O, Reply as R};
    use Segment::*;
    use TcpState::*;

    fn walk(start: Segment, steps: &[(Dir, Segment)]) -> Vec<Option<TcpState>> {
        let mut state = open(start).expect("opens");
        steps
            .iter()
            .map(|&(d, s)| {
                let n = next(state, d, s);
                if let Some(n) = n {
                    state = n;
                }
                n
            })
            .collect()
    }

    #[test]
    fn handshake_data_and_orderly_close() {
        let states = walk(
            Syn,
            &[
                (R, SynAck),
                (O, Ack),
                (O, Ack),
                (R, Ack),
                (O, Fin),
                (R, Ack),
                (R, Fin),
                (O, Ack),
            ],
        );
        assert_eq!(
            states,
            vec![
                Some(SynRecv),
                Some(Established),
                Some(Established),
                Some(Established),
                Some(FinWait(O)),
                Some(CloseWait(O)),
                Some(LastAck),
                Some(TimeWait),
            ]
        );
        assert_eq!(timeout(TimeWait), Duration::from_secs(120));
        assert_eq!(timeout(Established), Duration::from_secs(432_000));
    }

    #[test]
    fn both_sides_closing_at_once() {
        let states = walk(Syn, &[(R, SynAck), (O, Ack), (R, Fin), (O, Fin), (R, Ack)]);
        assert_eq!(states[2..], [Some(FinWait(R)), Some(LastAck), Some(TimeWait)]);
    }

    #[test]
    fn invalid_segments_are_refused_and_reset_closes() {
        assert_eq!(open(Ack), None, "an ACK with no connection is invalid");
        assert_eq!(open(SynAck), None);
        assert_eq!(next(SynSent, O, Ack), None, "no ACK before the SYN-ACK");
        assert_eq!(next(Established, O, Syn), None, "a SYN on an established connection");
        assert_eq!(next(Established, R, Invalid), None);
        assert_eq!(next(Established, R, Rst), Some(Close));
        assert_eq!(next(Close, O, Syn), Some(SynSent), "a closed tuple can be reused");
        assert_eq!(
            next(Close, R, Ack),
            Some(Close),
            "late ACKs after a reset are not invalid"
        );
        assert_eq!(next(Close, R, SynAck), None);
        assert_eq!(timeout(Close), Duration::from_secs(10));
    }

    #[test]
    fn flag_classification() {
        assert_eq!(Segment::from_flags(true, false, false, false), Syn);
        assert_eq!(Segment::from_flags(true, true, false, false), SynAck);
        assert_eq!(Segment::from_flags(false, true, true, false), Fin);
        assert_eq!(Segment::from_flags(false, true, false, true), Rst);
        assert_eq!(Segment::from_flags(true, false, true, false), Invalid, "SYN+FIN");
        assert_eq!(Segment::from_flags(false, false, false, false), Invalid, "no flags");
    }

    #[test]
    fn udp_and_icmp_timeouts() {
        assert_eq!(udp_timeout(false), Duration::from_secs(30));
        assert_eq!(udp_timeout(true), Duration::from_secs(120));
        assert_eq!(ICMP_TIMEOUT, Duration::from_secs(30));
    }
}
