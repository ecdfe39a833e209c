//! Sequences of arbitrary packets through parse, track, rewrite and ICMP
//! error translation (see `vswitch_nat::fuzzing`). Run from nat/:
//! `RUSTC_BOOTSTRAP=1 cargo fuzz run packets` (cargo-fuzz needs nightly
//! flags; RUSTC_BOOTSTRAP lets the stable toolchain accept them).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| vswitch_nat::fuzzing::drive(data));
