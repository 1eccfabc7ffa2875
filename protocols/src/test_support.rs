//! Helpers shared by the parsers' table-driven tests.

use crate::stream::{
    Direction, FeedOutcome, MessageEvent, RequestInfo, ResponseInfo, Segment, StreamParser,
};

/// A request start with this method and resource.
pub(crate) fn start(method: &str, resource: &str) -> MessageEvent {
    MessageEvent::RequestStart(RequestInfo {
        method: method.to_owned().into(),
        resource: resource.to_owned(),
        ..RequestInfo::default()
    })
}

/// A successful response start (no status).
pub(crate) fn success() -> MessageEvent {
    MessageEvent::ResponseStart(ResponseInfo::default())
}

/// An error response start.
pub(crate) fn failure(code: &str, message: &str) -> MessageEvent {
    MessageEvent::ResponseStart(ResponseInfo {
        status: code.to_owned().into(),
        is_error: true,
        error_message: Some(message.to_owned()),
        ..ResponseInfo::default()
    })
}

pub(crate) const END_REQ: MessageEvent = MessageEvent::End {
    direction: Direction::Request,
};
pub(crate) const END_RESP: MessageEvent = MessageEvent::End {
    direction: Direction::Response,
};

/// A segment: direction, captured bytes, real length (0: all captured).
pub(crate) type Step = (Direction, Vec<u8>, usize);

pub(crate) fn req(data: Vec<u8>) -> Step {
    (Direction::Request, data, 0)
}

pub(crate) fn resp(data: Vec<u8>) -> Step {
    (Direction::Response, data, 0)
}

/// Feeds `steps` to `parser`, returning each step's outcome.
pub(crate) fn feed_all(parser: &mut dyn StreamParser, steps: &[Step]) -> Vec<FeedOutcome> {
    steps
        .iter()
        .map(|(direction, data, len)| {
            parser.feed(&Segment {
                direction: *direction,
                data,
                len: (*len).max(data.len()),
            })
        })
        .collect()
}

/// An outcome with these events and counts.
pub(crate) fn outcome(events: Vec<MessageEvent>, unparsed: u32, truncated: u32) -> FeedOutcome {
    FeedOutcome {
        events,
        unparsed,
        truncated,
        unknown_headers: 0,
    }
}

pub(crate) fn events(outcome: &FeedOutcome) -> &[MessageEvent] {
    &outcome.events
}

/// Feeds a fresh parser from `make` 3000 random conversations: seeds, random bytes, seeds with a
/// byte flipped, in either direction, sometimes with uncaptured bytes. No panic, and never an
/// end without a start in its direction.
pub(crate) fn assert_random_segments_keep_the_contract(
    make: impl Fn() -> Box<dyn StreamParser>,
    seeds: &[Vec<u8>],
    seed: u64,
) {
    let mut state = seed;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..3000 {
        let mut parser = make();
        let (mut req_open, mut resp_open) = (false, false);
        for _ in 0..(next() % 8) {
            let mut data: Vec<u8> = if next() % 3 == 0 {
                seeds[(next() % seeds.len() as u64) as usize].clone()
            } else {
                (0..next() % 64).map(|_| next() as u8).collect()
            };
            if next() % 2 == 0 && !data.is_empty() {
                let i = (next() as usize) % data.len();
                data[i] = next() as u8;
            }
            let direction = if next() % 2 == 0 {
                Direction::Request
            } else {
                Direction::Response
            };
            let cut = if next() % 4 == 0 {
                (next() % 5000) as usize
            } else {
                0
            };
            let outcome = parser.feed(&Segment {
                direction,
                data: &data,
                len: data.len() + cut,
            });
            for event in outcome.events {
                match event {
                    MessageEvent::RequestStart(_) => req_open = true,
                    MessageEvent::ResponseStart(_) => resp_open = true,
                    MessageEvent::End {
                        direction: Direction::Request,
                    } => assert!(std::mem::take(&mut req_open)),
                    MessageEvent::End {
                        direction: Direction::Response,
                    } => assert!(std::mem::take(&mut resp_open)),
                    other => panic!("a stream event from an ordered parser: {other:?}"),
                }
            }
        }
    }
}
