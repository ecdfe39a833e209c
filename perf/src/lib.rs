//! vsperf: measures vswitch side by side with the systems users would
//! otherwise choose (the Linux bridge with Docker's iptables ruleset, and
//! Open vSwitch's userspace datapath), on real namespaces, with independent
//! tools, in one interleaved run.
//!
//! - [`cmd`]: running tools in namespaces; Ctrl-C handling;
//! - [`lab`]: everything one measurement creates, removed when dropped;
//! - [`systems`]: the topologies of each scenario on each system;
//! - [`measure`]: the figures (iperf3, trafgen, sockperf, /proc);
//! - [`run`]: the interleaved repetitions;
//! - [`report`]: medians, per-pair ratios, Markdown, JSON and SVG.
//!
//! The perf/scripts/*-compare.sh scripts came first and measured one
//! scenario each; their figures in RESULTS.md stay as they were recorded.

pub mod cmd;
pub mod lab;
pub mod measure;
pub mod report;
pub mod run;
pub mod systems;
