//! Ring-buffer records through the agent's decode, connection tracker, sessionizer and row
//! builders, in the pipeline's rounds; see the harness in src/events.rs.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    kindling_protocols_fuzz::events::Harness::run(data);
});
