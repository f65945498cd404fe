#![no_main]
//! `cargo fuzz run upstream_response`: see fuzz/README.md and `echo_gateway::fuzzing::upstream_response`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| echo_gateway::fuzzing::upstream_response(data));
