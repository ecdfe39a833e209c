//! The hook through which capture and trace watch a batch: the runner
//! calls it between stages, and it costs one relaxed load per batch when
//! nobody watches. Capture copies the frames as received (and the tx step
//! as sent); trace notes, for the next frames a port receives, their
//! headers as they came, the switching stage's decision, the verdict the
//! pipeline reached and their headers as they leave.

use super::ingress::Ingress;
use crate::capture;
use crate::packet::{Batch, VNET_HDR_LEN};
use crate::trace::{Headers, TraceRecord};
use crate::verdict::Verdict;

/// Frames of this batch being traced (the first `n`).
#[derive(Clone, Copy)]
pub struct Traced(usize);

/// The batch as received: captured if asked, its first frames' headers
/// noted if a trace wants them.
pub fn received(at: &Ingress<'_>, thread: usize, batch: &Batch, trace: &mut Vec<TraceRecord>) -> Traced {
    let port = &at.input.port;
    let offset = if at.input.vnet_hdr { VNET_HDR_LEN } else { 0 };
    if port.capture.armed(capture::RX) {
        port.capture.record(batch.frames().iter(), |_| offset, false);
    }
    trace.clear();
    if !port.trace.armed() {
        return Traced(0);
    }
    let n = port.trace.wanted().min(batch.len());
    trace.extend(batch.frames()[..n].iter().map(|frame| TraceRecord {
        thread,
        before: Headers::of(frame, offset),
        l2: None,
        verdict: Verdict::Consumed,
        after: Headers::default(),
    }));
    Traced(n)
}

/// Before the switching stage: which traced frames it will see.
pub fn classified(traced: Traced, verdicts: &[Verdict], trace: &mut [TraceRecord]) {
    for (r, v) in trace[..traced.0].iter_mut().zip(verdicts) {
        r.l2 = (*v == Verdict::L2).then_some(Verdict::L2);
    }
}

/// After the switching stage: what it decided for them.
pub fn switched(traced: Traced, verdicts: &[Verdict], trace: &mut [TraceRecord]) {
    for (r, v) in trace[..traced.0].iter_mut().zip(verdicts) {
        if r.l2.is_some() {
            r.l2 = Some(*v);
        }
    }
}

/// Once every stage has decided: the verdicts and the headers as they
/// leave, handed to the port's trace.
pub fn decided(at: &Ingress<'_>, traced: Traced, batch: &Batch, verdicts: &[Verdict], trace: &mut [TraceRecord]) {
    if traced.0 == 0 {
        return;
    }
    for ((r, v), frame) in trace[..traced.0].iter_mut().zip(verdicts).zip(batch.frames()) {
        r.verdict = *v;
        r.after = Headers::of(frame, frame.meta.eth_offset.map_or(0, usize::from));
    }
    at.input.port.trace.record(&trace[..traced.0]);
}
