//! Arbitrary frames from the underlay through decapsulation, and what comes
//! out (or the bytes themselves, as an inner frame) through encapsulation
//! and back (see `vswitch_vxlan::fuzzing`). Run from vxlan/:
//! `RUSTC_BOOTSTRAP=1 cargo fuzz run frames fuzz/corpus/frames fuzz/seeds/frames`
//! (the seeds are an ARP request in a tunnel on port 4789 and on 8472, as a
//! kernel VTEP with `udpcsum` sends it; RUSTC_BOOTSTRAP lets the stable
//! toolchain accept cargo-fuzz's flags).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    vswitch_vxlan::fuzzing::drive(data);
});
