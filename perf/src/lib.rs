//! `vsperf`, the measurement harness, grows here (see the perf harness issue).
//! Until then the measurements in `perf/RESULTS.md` come from the scripts in
//! `perf/scripts/`, which compare vswitch with the Linux bridge in one run.
