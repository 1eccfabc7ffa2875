//! Shared harness for the protocol fuzz targets: turns a fuzz input into a script of
//! [`Segment`]s, feeds them to a fresh parser and checks the [`StreamParser`] contract.
//! With the `agent` feature, [`events`] and [`ticket`] hold the harnesses of the agent targets.
//!
//! Script format, repeated until the input runs out:
//!
//! ```text
//! flags: u8      bit 0: direction (0 request, 1 response)
//!                bit 1: cut (the syscall moved more bytes than were captured)
//! size:  u16 LE  captured bytes that follow (clamped to what is left of the input)
//! [extra: u24 LE] only when cut: uncaptured bytes, reduced modulo MAX_EXTRA + 1
//! data:  [u8; size]
//! ```

use kindling_protocols::{Direction, MessageEvent, Segment, StreamParser};

#[cfg(feature = "agent")]
pub mod events;
#[cfg(feature = "agent")]
pub mod ticket;

/// Largest number of uncaptured bytes a segment claims (a capture cut), 1 MiB.
pub const MAX_EXTRA: usize = 1 << 20;

/// One scripted segment, borrowing its captured bytes from the fuzz input.
#[derive(Debug, Clone, Copy)]
pub struct Step<'a> {
    /// Which way the bytes went.
    pub direction: Direction,
    /// Captured bytes.
    pub data: &'a [u8],
    /// Bytes the syscall moved (`>= data.len()`).
    pub len: usize,
}

/// Splits `input` into scripted segments (see the crate docs).
pub fn script(mut input: &[u8]) -> Vec<Step<'_>> {
    let mut steps = Vec::new();
    while let Some((&flags, rest)) = input.split_first() {
        input = rest;
        let direction = if flags & 1 == 0 {
            Direction::Request
        } else {
            Direction::Response
        };
        let size = match input {
            [a, b, rest @ ..] => {
                input = rest;
                usize::from(u16::from_le_bytes([*a, *b]))
            }
            _ => {
                // Too short for a size: the rest (0 or 1 byte) is the segment's data.
                let size = input.len();
                size
            }
        };
        let mut extra = 0;
        if flags & 2 != 0 {
            if let [a, b, c, rest @ ..] = input {
                input = rest;
                extra = (usize::from(*a) | usize::from(*b) << 8 | usize::from(*c) << 16)
                    % (MAX_EXTRA + 1);
            }
        }
        let size = size.min(input.len());
        let (data, rest) = input.split_at(size);
        input = rest;
        steps.push(Step {
            direction,
            data,
            len: data.len() + extra,
        });
    }
    steps
}

/// Tracks messages in progress per direction and checks each event against the contract.
#[derive(Debug, Default)]
pub struct Checker {
    /// Starts not yet ended, per direction (request, response).
    open: [u64; 2],
    /// Streams a multiplexed parser (HTTP/2) opened.
    streams: std::collections::HashSet<u32>,
    /// Every event so far, for the panic message.
    log: Vec<String>,
}

fn index(direction: Direction) -> usize {
    match direction {
        Direction::Request => 0,
        Direction::Response => 1,
    }
}

impl Checker {
    /// Checks the events of one feed.
    pub fn check(&mut self, step: &Step<'_>, events: &[MessageEvent]) {
        self.log.push(format!(
            "feed {:?} data={} len={}",
            step.direction,
            step.data.len(),
            step.len
        ));
        for event in events {
            self.log.push(format!("  {event:?}"));
            match event {
                MessageEvent::RequestStart(info) => {
                    self.open[0] += 1;
                    if let Some(trace_id) = &info.trace_id {
                        assert!(
                            trace_id.len() == 32
                                && trace_id
                                    .bytes()
                                    .all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')),
                            "trace_id {trace_id:?} is not 32 lowercase hex digits\n{}",
                            self.log.join("\n")
                        );
                    }
                }
                MessageEvent::ResponseStart(_) => self.open[1] += 1,
                MessageEvent::End { direction } => {
                    let i = index(*direction);
                    assert!(
                        self.open[i] > 0,
                        "End {{ {direction:?} }} without a matching start\n{}",
                        self.log.join("\n")
                    );
                    self.open[i] -= 1;
                }
                MessageEvent::StreamRequest { stream, .. }
                | MessageEvent::StreamUpgrade { stream, .. } => {
                    self.streams.insert(*stream);
                }
                MessageEvent::StreamResponse { stream, .. }
                | MessageEvent::StreamEnd { stream, .. } => {
                    assert!(
                        self.streams.contains(stream),
                        "{event:?} on a stream never opened\n{}",
                        self.log.join("\n")
                    );
                }
            }
        }
    }
}

/// Feeds `steps` to `parser` in order, checking the contract after every feed.
pub fn run(parser: &mut dyn StreamParser, steps: &[Step<'_>]) {
    let mut checker = Checker::default();
    for step in steps {
        let outcome = parser.feed(&Segment {
            direction: step.direction,
            data: step.data,
            len: step.len,
        });
        checker.check(step, &outcome.events);
    }
}

/// The whole fuzz body of a single-protocol target.
pub fn fuzz_protocol(
    protocol: kindling_protocols::Protocol,
    transport: kindling_protocols::Transport,
    input: &[u8],
) {
    let steps = script(input);
    let mut parser = kindling_protocols::parser(protocol, transport);
    run(parser.as_mut(), &steps);
}
