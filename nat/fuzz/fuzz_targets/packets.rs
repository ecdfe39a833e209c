//! Sequences of arbitrary packets through parse, track, rewrite and ICMP
//! error translation (see `vswitch_nat::fuzzing`). Run from nat/:
//! `RUSTC_BOOTSTRAP=1 cargo fuzz run packets fuzz/corpus/packets fuzz/seeds/packets`
//! (the seeds are a handshake, a published port, an ICMP error, a ping and
//! an expiry, in the input format of `drive`; cargo-fuzz needs nightly
//! flags; RUSTC_BOOTSTRAP lets the stable toolchain accept them).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    vswitch_nat::fuzzing::drive(data);
});
