//! `detect` on arbitrary first bytes, then the detected protocol's parser on the rest.
//!
//! Input: `flags: u8` (bit 0: transport, 0 TCP / 1 UDP; bit 1: a first response is present),
//! `split: u16 LE`, then the first request (`split` bytes, clamped), the first response (the
//! rest, when present). The detected parser (if any) is then fed the first request and the
//! first response, followed by scripted segments from the same bytes (src/lib.rs).
#![no_main]

use kindling_protocols::{Direction, Transport, detect, parser};
use kindling_protocols_fuzz::{Step, run, script};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let [flags, a, b, body @ ..] = data else {
        let _ = detect(Transport::Tcp, data, None);
        let _ = detect(Transport::Tcp, data, Some(data));
        let _ = detect(Transport::Udp, data, None);
        return;
    };
    let transport = if flags & 1 == 0 {
        Transport::Tcp
    } else {
        Transport::Udp
    };
    let split = usize::from(u16::from_le_bytes([*a, *b])).min(body.len());
    let (request, response) = body.split_at(split);
    let response = (flags & 2 != 0).then_some(response);
    let Some(protocol) = detect(transport, request, response) else {
        return;
    };
    let mut steps = Vec::new();
    if let Some(response) = response {
        // A server that spoke first (MySQL's greeting) was detected from its response.
        steps.push(Step {
            direction: Direction::Response,
            data: response,
            len: response.len(),
        });
    }
    steps.push(Step {
        direction: Direction::Request,
        data: request,
        len: request.len(),
    });
    if let Some(response) = response {
        steps.push(Step {
            direction: Direction::Response,
            data: response,
            len: response.len(),
        });
    }
    steps.extend(script(body));
    let mut parser = parser(protocol, transport);
    run(parser.as_mut(), &steps);
});
