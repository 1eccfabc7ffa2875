//! Scripted segments through a fresh DNS parser; the first input byte's low bit chooses the
//! transport (0 UDP, 1 TCP). See the harness in src/lib.rs.
#![no_main]

use kindling_protocols::{Protocol, Transport};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let transport = if first & 1 == 0 {
        Transport::Udp
    } else {
        Transport::Tcp
    };
    kindling_protocols_fuzz::fuzz_protocol(Protocol::Dns, transport, rest);
});
