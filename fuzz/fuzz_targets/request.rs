#![no_main]
//! `cargo fuzz run request`: see fuzz/README.md and `echo_gateway::fuzzing::request`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| echo_gateway::fuzzing::request(data));
