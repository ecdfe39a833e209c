//! `vsctl observe`: the policy stages' connection events (`crate::flows`),
//! kept in a history of the last [`KEEP`] and named when read: both ends
//! as attachments (this host's or the cluster's) or addresses, and what
//! decides, in `check-policy`'s words, as the policies are at the read.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use vswitch_ctl::req::{self, FlowVerdict};
use vswitch_ctl::{FlowChunk, FlowInfo};

use super::check::{summary, Judge};
use super::Manager;
use crate::clock;
use crate::flows::{FlowEvent, FlowKind, FlowLogs};

/// Events the history keeps.
pub const KEEP: usize = 10_000;

/// The events drained so far, each with its sequence number.
#[derive(Default)]
pub(super) struct History {
    events: VecDeque<(u64, FlowEvent)>,
    next: u64,
    scratch: Vec<FlowEvent>,
}

impl Manager {
    /// Where housekeeping notes the connections the policy table forgets.
    pub fn flow_logs(&self) -> Arc<FlowLogs> {
        self.flows.clone()
    }

    /// Moves the poll threads' events into the history (housekeeping, and
    /// every read).
    pub fn collect_flows(&mut self) {
        let h = &mut self.flow_history;
        self.flows.drain_into(&mut h.scratch);
        for e in h.scratch.drain(..) {
            h.next += 1;
            h.events.push_back((h.next, e));
        }
        while h.events.len() > KEEP {
            h.events.pop_front();
        }
    }

    pub(super) fn observe_read(&mut self, r: &req::ObserveRead) -> FlowChunk {
        self.collect_flows();
        let wanted = |e: &FlowEvent| match r.verdict {
            None => true,
            Some(FlowVerdict::Denied) => e.kind == FlowKind::Denied,
            Some(FlowVerdict::Allowed) => e.kind != FlowKind::Denied,
        };
        let h = &self.flow_history;
        let mut chosen: Vec<&(u64, FlowEvent)> = match r.after {
            Some(after) => h.events.iter().filter(|(seq, e)| *seq > after && wanted(e)).collect(),
            None => {
                let mut recent: Vec<_> = h.events.iter().rev().filter(|(_, e)| wanted(e)).take(r.last).collect();
                recent.reverse();
                recent
            }
        };
        chosen.truncate(KEEP);
        let judge = Judge::new(&self.desired);
        let now = clock::now_ms();
        let wall_now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let flows = chosen
            .into_iter()
            .map(|(seq, e)| {
                let check = judge.check(judge.address(e.src), judge.address(e.dst), e.protocol, e.dst_port);
                let reason = match e.kind {
                    FlowKind::Closed => "closed: the policy table forgot it".to_string(),
                    _ => summary(&check),
                };
                FlowInfo {
                    seq: *seq,
                    time_ms: wall_now.saturating_sub(now.saturating_sub(e.at_ms)),
                    event: e.kind.name().to_string(),
                    protocol: match e.protocol {
                        1 => "icmp".into(),
                        6 => "tcp".into(),
                        17 => "udp".into(),
                        n => format!("proto {n}"),
                    },
                    src: check.from,
                    src_port: e.src_port,
                    dst: check.to,
                    dst_port: e.dst_port,
                    reason,
                }
            })
            .collect();
        FlowChunk {
            flows,
            last: h.next,
            lost: self.flows.lost(),
        }
    }
}
