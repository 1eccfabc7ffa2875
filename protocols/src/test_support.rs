//! Helpers shared by the parsers' table-driven tests.

use crate::{
    Direction, FeedOutcome, MessageEvent, RequestInfo, ResponseInfo, Segment, StreamParser,
};

/// A request start with this method and resource.
pub(crate) fn start(method: &str, resource: &str) -> MessageEvent {
    MessageEvent::RequestStart(RequestInfo {
        method: method.to_owned(),
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
        status: code.to_owned(),
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

pub(crate) fn events(outcome: &FeedOutcome) -> &[MessageEvent] {
    &outcome.events
}
