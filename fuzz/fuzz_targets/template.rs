#![no_main]
//! `cargo fuzz run template`: see fuzz/README.md and `echo_gateway::fuzzing::template`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| echo_gateway::fuzzing::template(data));
