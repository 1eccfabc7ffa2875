//! Scripted segments through a fresh HTTP/2 parser over TCP; see the harness in src/lib.rs.
#![no_main]

use kindling_protocols::{Protocol, Transport};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    kindling_protocols_fuzz::fuzz_protocol(Protocol::Http2, Transport::Tcp, data);
});
