//! `capture-start`, `capture-read`, `capture-stop`: the control side of
//! `vsctl capture` (the copying is `crate::capture`'s, in the poll threads).
//!
//! A filter is tcpdump's language, compiled here by libpcap (the `pcap`
//! crate) and run on each frame as it is read: vsctl does not load libpcap
//! and its dependencies (~1 ms of every vsctl's start-up, measured, when it
//! did), and filtered-out frames never cross the socket.

use std::fmt::Write;

use tracing::info;
use vswitch_ctl::{req, CaptureChunk, CaptureDirection, CapturedFrame};

use super::{ControlError, Manager};
use crate::capture::{self, Drained, Filter, SNAPLEN};
use crate::port::LivePort;

impl Manager {
    /// A port whose device is up (what capture and trace act on).
    pub(super) fn live_port(&self, port: &str) -> Result<&LivePort, ControlError> {
        match self.ports.get(port).map(|e| &e.live) {
            Some(Ok(live)) => Ok(live),
            Some(Err(reason)) => Err(ControlError::PortDown {
                port: port.to_string(),
                reason: reason.to_string(),
            }),
            None => Err(ControlError::NoPort(port.to_string())),
        }
    }

    pub(super) fn capture_start(&self, request: req::CaptureStart) -> Result<(), ControlError> {
        let (port, count, direction) = (request.port.as_str(), request.count, request.direction);
        let dirs = match direction {
            CaptureDirection::Rx => capture::RX,
            CaptureDirection::Tx => capture::TX,
            CaptureDirection::Both => capture::RX | capture::TX,
        };
        let live = self.live_port(port)?;
        let filter = request.filter.as_deref().map(compile).transpose()?;
        if !live.capture.start(dirs, count, filter) {
            return Err(ControlError::CaptureRunning(port.to_string()));
        }
        info!(port, ?count, ?direction, "capture started");
        Ok(())
    }

    pub(super) fn capture_read(&self, port: &str) -> Result<CaptureChunk, ControlError> {
        let Drained {
            frames,
            skipped,
            filtered,
            done,
        } = (self.live_port(port)?.capture.drain()).ok_or_else(|| ControlError::NoCapture(port.to_string()))?;
        let frames = frames
            .into_iter()
            .map(|f| CapturedFrame {
                unix_ns: f.unix_ns,
                orig_len: f.orig_len as u32,
                tx: f.tx,
                data: f.data.iter().fold(String::with_capacity(f.data.len() * 2), |mut s, b| {
                    let _ = write!(s, "{b:02x}");
                    s
                }),
            })
            .collect();
        Ok(CaptureChunk {
            frames,
            skipped,
            filtered,
            done,
            snaplen: SNAPLEN as u32,
        })
    }

    pub(super) fn capture_stop(&self, port: &str) -> Result<(), ControlError> {
        self.live_port(port)?.capture.stop();
        info!(port, "capture stopped");
        Ok(())
    }

    /// Stops captures nobody reads any more (housekeeping).
    pub fn expire_captures(&self) {
        for (name, entry) in &self.ports {
            if let Ok(live) = &entry.live {
                if live.capture.expire_idle() {
                    info!(port = %name, "capture stopped: not read for a while");
                }
            }
        }
    }
}

/// Compiles tcpdump expression `expr` for Ethernet frames.
fn compile(expr: &str) -> Result<Filter, ControlError> {
    let bad = |source| ControlError::BadFilter {
        expr: expr.to_string(),
        source,
    };
    let program = pcap::Capture::dead(pcap::Linktype::ETHERNET)
        .map_err(bad)?
        .compile(expr, true)
        .map_err(bad)?;
    Ok(Box::new(move |frame: &[u8]| program.filter(frame)))
}
