//! Flight ticket bytes through `FragmentTicket::decode` and the agent's `DoGet` over a small
//! store; see the harness in src/ticket.rs.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    kindling_protocols_fuzz::ticket::run(data);
});
