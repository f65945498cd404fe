#![no_main]
//! `cargo fuzz run admin_doc`: see fuzz/README.md and `echo_gateway::fuzzing::admin_doc`.

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| echo_gateway::fuzzing::admin_doc(data));
