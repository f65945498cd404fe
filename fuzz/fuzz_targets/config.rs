#![no_main]
//! `cargo fuzz run config`: see fuzz/README.md and `echo_gateway::fuzzing::config`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| echo_gateway::fuzzing::config(data));
