//! The TCP connection state machine conntrack keeps, and how long each state
//! lives without traffic.
//!
//! The states and timeouts follow the kernel's `nf_conntrack_proto_tcp`
//! (SYN_SENT 120 s ... ESTABLISHED 5 days ... CLOSE 10 s). Transitions are
//! written out as a match rather than the kernel's table so that each can be
//! read and tested. A connection only starts on a bare SYN: an ACK with no
//! connection is invalid (no mid-stream pickup), as are segments that make
//! no sense in the current state (a SYN on an established connection, flags
//! no stack sends).
//!
//! [`Windows`] tracks where each side is in the sequence space, after
//! Rooij's "Real Stateful TCP Packet Filtering" as the kernel's
//! `tcp_in_window` does it: a segment must start no further than the other
//! side allowed (its ACK plus window), must not end before what the other
//! side can still be waiting for, and must acknowledge only data that was
//! sent. Segments outside are dropped: an injected RST or stray data with a
//! guessed 4-tuple does not reach the container.

use std::time::Duration;

/// Which way a segment goes, relative to the packet that opened the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
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

/// One TCP segment as conntrack sees it: its flags and its place in the
/// sequence space.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TcpSeg {
    pub kind: Segment,
    pub seq: u32,
    /// The acknowledgement number, when the ACK flag is set.
    pub ack: Option<u32>,
    /// The advertised window as carried (before scaling).
    pub window: u16,
    /// Payload bytes (of the whole super-frame, for GSO frames).
    pub len: u32,
    /// The window-scale option of a SYN or SYN-ACK.
    pub wscale: Option<u8>,
}

impl TcpSeg {
    fn is_syn(&self) -> bool {
        matches!(self.kind, Segment::Syn | Segment::SynAck)
    }

    /// The sequence number after this segment: SYN and FIN count as one byte.
    fn end(&self) -> u32 {
        let flags = u32::from(self.is_syn()) + u32::from(self.kind == Segment::Fin);
        self.seq.wrapping_add(self.len).wrapping_add(flags)
    }
}

/// `a` comes before `b` in sequence space (RFC 1982 serial arithmetic).
fn before(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

fn after(a: u32, b: u32) -> bool {
    before(b, a)
}

/// How far back an acknowledgement may lag when the sender's window is
/// not known yet (the kernel's MAXACKWINCONST).
const MAX_ACK_WINDOW: u32 = 66_000;
/// The largest window-scale shift (RFC 7323).
const MAX_WSCALE: u8 = 14;

/// What one side has done in the sequence space.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
struct Side {
    /// The highest sequence number it sent, plus the segment's length.
    end: u32,
    /// The highest sequence number the other side lets it send (ack + window).
    maxend: u32,
    /// The largest window it advertised (scaled); 0 until it has sent anything.
    maxwin: u32,
    scale: u8,
    offered_scale: bool,
}

impl Side {
    fn start(seg: &TcpSeg) -> Side {
        Side {
            end: seg.end(),
            maxend: seg.end(),
            maxwin: u32::from(seg.window).max(1),
            scale: seg.wscale.unwrap_or(0).min(MAX_WSCALE),
            offered_scale: seg.wscale.is_some(),
        }
    }
}

/// The sequence windows of both sides of a TCP connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Windows([Side; 2]);

impl Windows {
    /// The windows of a connection that `syn` opens.
    pub fn open(syn: &TcpSeg) -> Windows {
        Windows([Side::start(syn), Side::default()])
    }

    /// Whether `seg`, travelling `dir` on a connection in `state`, lies in
    /// the windows; if it does, it is recorded. Nothing changes otherwise.
    pub fn accept(&mut self, state: TcpState, dir: Dir, seg: &TcpSeg) -> bool {
        let (s, r) = match dir {
            Dir::Original => (0, 1),
            Dir::Reply => (1, 0),
        };
        let (mut sender, mut receiver) = (self.0[s], self.0[r]);
        let (mut seq, mut end) = (seg.seq, seg.end());
        if sender.maxwin == 0 {
            // This side's first segment: its SYN-ACK (or SYN, opening at
            // the same time), or a reset refusing the connection.
            match seg.kind {
                Segment::Syn | Segment::SynAck => {
                    sender = Side::start(seg);
                    // RFC 7323: scaling is on only if both sides offer it.
                    if !(sender.offered_scale && receiver.offered_scale) {
                        sender.scale = 0;
                        receiver.scale = 0;
                    }
                    if seg.ack.is_none() {
                        self.0[s] = sender;
                        self.0[r] = receiver;
                        return true;
                    }
                }
                Segment::Rst => {
                    let win = u32::from(seg.window).max(1);
                    sender = Side {
                        end,
                        maxend: end.wrapping_add(win),
                        maxwin: win,
                        ..Side::default()
                    };
                }
                _ => return false,
            }
        } else if seg.is_syn()
            && after(end, sender.end)
            && matches!(
                (state, dir),
                (TcpState::SynSent, Dir::Original) | (TcpState::SynRecv, Dir::Reply)
            )
        {
            // A SYN sent again with a new initial sequence number.
            sender = Side::start(seg);
        }
        let ack = match seg.ack {
            // Some stacks send RST+ACK with a zero acknowledgement.
            Some(0) if seg.kind == Segment::Rst => receiver.end,
            Some(ack) => ack,
            None => receiver.end,
        };
        if seg.kind == Segment::Rst && seq == 0 && state == TcpState::SynSent {
            // A reset answering a SYN carries sequence number zero.
            seq = sender.end;
            end = sender.end;
        }
        let ack_window = if sender.maxwin == 0 {
            MAX_ACK_WINDOW
        } else {
            sender.maxwin
        };
        let in_window = !after(seq, sender.maxend)
            && (receiver.maxwin == 0 || after(end, sender.end.wrapping_sub(receiver.maxwin).wrapping_sub(1)))
            && !after(ack, receiver.end)
            && after(ack, receiver.end.wrapping_sub(ack_window).wrapping_sub(1));
        if !in_window {
            return false;
        }
        let win = if seg.is_syn() {
            u32::from(seg.window)
        } else {
            u32::from(seg.window) << sender.scale
        };
        sender.maxwin = sender.maxwin.max(win);
        if after(end, sender.end) {
            sender.end = end;
        }
        if receiver.maxwin != 0 && after(end, sender.maxend) {
            receiver.maxwin = receiver.maxwin.wrapping_add(end.wrapping_sub(sender.maxend));
        }
        let allowed = ack.wrapping_add(win).wrapping_add(u32::from(win == 0));
        if after(allowed, receiver.maxend) {
            receiver.maxend = allowed;
        }
        self.0[s] = sender;
        self.0[r] = receiver;
        true
    }
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

    fn seg(kind: Segment, seq: u32, ack: Option<u32>, window: u16, len: u32) -> TcpSeg {
        TcpSeg {
            kind,
            seq,
            ack,
            window,
            len,
            wscale: None,
        }
    }

    /// SYN from ISN `c`, SYN-ACK from ISN `s`, both offering `scale`, and
    /// the client's ACK: the windows of an established connection.
    fn established(c: u32, s: u32, scale: Option<u8>) -> Windows {
        let syn = TcpSeg {
            wscale: scale,
            ..seg(Syn, c, None, 64_240, 0)
        };
        let mut w = Windows::open(&syn);
        let synack = TcpSeg {
            wscale: scale,
            ..seg(SynAck, s, Some(c.wrapping_add(1)), 65_160, 0)
        };
        assert!(w.accept(SynSent, R, &synack));
        assert!(w.accept(
            SynRecv,
            O,
            &seg(Ack, c.wrapping_add(1), Some(s.wrapping_add(1)), 502, 0)
        ));
        w
    }

    #[test]
    fn segments_inside_the_windows_pass_and_are_recorded() {
        let (c, s) = (1_000, 7_000_000);
        let mut w = established(c, s, Some(7));
        // 502 << 7 = 64256 bytes the server may send; 65160 the client may.
        assert!(w.accept(Established, O, &seg(Ack, c + 1, Some(s + 1), 502, 1_448)));
        assert!(w.accept(Established, R, &seg(Ack, s + 1, Some(c + 1 + 1_448), 509, 60_000)));
        assert!(
            w.accept(Established, O, &seg(Ack, c + 1, Some(s + 1), 502, 1_448)),
            "a retransmission of acknowledged data still passes"
        );
        assert!(
            w.accept(
                Established,
                R,
                &seg(Ack, s + 1 + 60_000, Some(c + 1 + 1_448), 509, 4_256)
            ),
            "the server fills the scaled window exactly"
        );
        assert!(w.accept(Established, O, &seg(Fin, c + 1 + 1_448, Some(s + 64_257), 502, 0)));
    }

    #[test]
    fn segments_outside_the_windows_are_refused_and_change_nothing() {
        let (c, s) = (1_000, 7_000_000);
        let mut w = established(c, s, Some(7));
        let before = w;
        let beyond = seg(Ack, s + 1 + 64_257, Some(c + 1), 509, 100);
        assert!(!w.accept(Established, R, &beyond), "data past what the client allowed");
        let blind_rst = seg(Rst, c + 3_000_000, None, 0, 0);
        assert!(
            !w.accept(Established, O, &blind_rst),
            "a reset with a guessed sequence number"
        );
        let acks_unsent = seg(Ack, s + 1, Some(c + 5_000), 509, 0);
        assert!(!w.accept(Established, R, &acks_unsent), "acknowledges data never sent");
        let ancient = seg(Ack, c.wrapping_sub(200_000), Some(s + 1), 502, 100);
        assert!(!w.accept(Established, O, &ancient), "ends long before the window");
        assert_eq!(w, before);
        assert!(
            w.accept(Established, O, &seg(Rst, c + 1, None, 0, 0)),
            "an in-window reset"
        );
    }

    #[test]
    fn scaling_needs_both_sides_and_sequence_numbers_wrap() {
        // The server does not offer scaling: the client's 502 means 502 bytes.
        let c = u32::MAX - 10;
        let s = 42;
        let syn = TcpSeg {
            wscale: Some(7),
            ..seg(Syn, c, None, 64_240, 0)
        };
        let mut w = Windows::open(&syn);
        assert!(w.accept(SynSent, R, &seg(SynAck, s, Some(c.wrapping_add(1)), 65_160, 0)));
        assert!(w.accept(SynRecv, O, &seg(Ack, c.wrapping_add(1), Some(s + 1), 502, 0)));
        assert!(w.accept(Established, R, &seg(Ack, s + 1, Some(c.wrapping_add(1)), 509, 502)));
        assert!(
            !w.accept(Established, R, &seg(Ack, s + 1 + 503, Some(c.wrapping_add(1)), 509, 10)),
            "unscaled window: 502 bytes and no more"
        );
        assert!(
            w.accept(Established, O, &seg(Ack, c.wrapping_add(1), Some(s + 1 + 502), 502, 20)),
            "the client's data crosses sequence number zero"
        );
        assert!(w.accept(Established, O, &seg(Ack, c.wrapping_add(21), Some(s + 503), 502, 20)));
    }

    #[test]
    fn resets_answering_a_syn_must_acknowledge_it() {
        let syn = seg(Syn, 1_000, None, 64_240, 0);
        let mut w = Windows::open(&syn);
        assert!(!w.accept(SynSent, R, &seg(Rst, 0, Some(999_999), 0, 0)), "wrong ack");
        assert!(
            !w.accept(SynSent, R, &seg(Ack, 0, Some(1_001), 0, 0)),
            "nothing but SYN-ACK or RST first"
        );
        assert!(
            w.accept(SynSent, R, &seg(Rst, 0, Some(1_001), 0, 0)),
            "connection refused"
        );
        let mut again = Windows::open(&syn);
        let new_isn = seg(Syn, 500_000, None, 64_240, 0);
        assert!(again.accept(SynSent, O, &new_isn), "a SYN sent again with a new ISN");
        assert!(
            !again.accept(SynSent, R, &seg(SynAck, 9, Some(1_001), 65_160, 0)),
            "a SYN-ACK for the old ISN"
        );
        assert!(again.accept(SynSent, R, &seg(SynAck, 9, Some(500_001), 65_160, 0)));
    }

    #[test]
    fn udp_and_icmp_timeouts() {
        assert_eq!(udp_timeout(false), Duration::from_secs(30));
        assert_eq!(udp_timeout(true), Duration::from_secs(120));
        assert_eq!(ICMP_TIMEOUT, Duration::from_secs(30));
    }
}
