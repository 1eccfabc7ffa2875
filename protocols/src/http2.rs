//! HTTP/2 over cleartext TCP (h2c with prior knowledge) and gRPC on it: one call per stream.
//!
//! Each direction is a sequence of frames (RFC 9113 §4): a 9-byte header (length, type, flags,
//! stream id) and its payload. Requests open streams with a HEADERS block (plus CONTINUATION
//! frames), bodies are DATA frames, and END_STREAM or RST_STREAM ends a direction of a stream.
//! Streams interleave on the connection, so the parser reports stream events
//! ([`MessageEvent::StreamRequest`], [`MessageEvent::StreamResponse`],
//! [`MessageEvent::StreamEnd`]) that the sessionizer pairs by stream id. A stream whose request
//! has `content-type: application/grpc` is a gRPC call: its status is the `grpc-status` of the
//! response's trailers, by name (`OK`, `NOT_FOUND`, ...), with `grpc-message` as the error text.
//!
//! Header blocks are decoded by [`hpack`], one decoder per direction (each end's encoder
//! keeps its own dynamic table). Only the fields a row needs are kept (`:method`, `:path`
//! without its query, `:status`, `content-type`, `traceparent`, `grpc-status`,
//! `grpc-message`); no other header value, credentials included, is ever stored.
//!
//! The framing is written here, not taken from an HTTP/2 library, because it must cope with
//! what a capture loses: only the first bytes of each syscall are seen, and of a long TCP
//! syscall its last bytes too (the agent feeds them as a segment of their own, after the
//! unseen middle). A frame's unseen payload is skipped by its length (so DATA frames far
//! beyond the capture are still counted whole, and the frames that end a write of a message
//! of a few KiB, such as a gRPC answer's trailers, are found in its tail), but when a frame
//! header itself lies in unseen bytes that direction's framing is lost; each later segment is
//! then tried as the start of a frame (a plausible type, flags and stream id), and one
//! captured to its end as the place where a chain of such frames ends, and parsing resumes at
//! the first that is. A header block cut by the capture, or
//! one that may have passed while framing was lost, leaves the direction's dynamic table
//! behind its encoder's: the decoder then resolves what the static table, literals and the
//! entries added since say, and marks the rest unknown, until the table has turned over. A
//! stream is a call even when its headers were not all known, with its timing and sizes and
//! empty method, path or status; each such message is counted in `unknown_headers` (in
//! `truncated` when the block itself was cut).

use std::{borrow::Cow, collections::HashMap};

use crate::{
    hpack::{Field, Hpack},
    http_fields::{MethodKind, parse_traceparent, resource, status_text},
    stream::{
        Direction, FeedOutcome, MessageEvent, Protocol, RequestInfo, ResponseInfo, Segment,
        StreamParser,
    },
};

/// The client connection preface (RFC 9113 §3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const FRAME_HEADER: usize = 9;
/// Most bytes of one header block (HEADERS and its CONTINUATIONs) assembled; a bigger block
/// is taken as cut.
const MAX_BLOCK: usize = 16 * 1024;
/// Most streams open at once on one connection; a stream beyond is not followed (counted in
/// `unparsed`).
const MAX_STREAMS: usize = 1024;
/// Frame lengths a lost direction accepts as a frame start (the default
/// SETTINGS_MAX_FRAME_SIZE).
const RESYNC_MAX_LEN: u32 = 16 * 1024;

const DATA: u8 = 0;
const HEADERS: u8 = 1;
const PRIORITY: u8 = 2;
const RST_STREAM: u8 = 3;
const SETTINGS: u8 = 4;
const PUSH_PROMISE: u8 = 5;
const PING: u8 = 6;
const GOAWAY: u8 = 7;
const WINDOW_UPDATE: u8 = 8;
const CONTINUATION: u8 = 9;

const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY_FLAG: u8 = 0x20;

/// Whether `data` starts with the client preface (or is a prefix of it, when the client's
/// first write was split).
pub fn looks_like_preface(data: &[u8]) -> bool {
    if data.len() >= PREFACE.len() {
        data.starts_with(PREFACE)
    } else {
        data.len() >= 8 && PREFACE.starts_with(data)
    }
}

/// Whether `data` (a connection's first request bytes seen, when the agent joined it after
/// its preface) is a chain of plausible client frames ending exactly where `data` does.
pub fn looks_like_frames(data: &[u8]) -> bool {
    frame_chain(data, Direction::Request)
}

/// Whether `data` is a chain of plausible frames of `direction` ending exactly where `data`
/// does.
fn frame_chain(data: &[u8], direction: Direction) -> bool {
    let mut pos = 0;
    while pos < data.len() {
        let Some(header) = data
            .get(pos..)
            .and_then(|rest| plausible_frame(rest, direction))
        else {
            return false;
        };
        pos += FRAME_HEADER + header.len as usize;
    }
    pos == data.len() && pos > 0
}

/// A frame header (RFC 9113 §4.1).
#[derive(Debug, Clone, Copy)]
struct FrameHeader {
    len: u32,
    kind: u8,
    flags: u8,
    /// The stream id, without the reserved bit.
    stream: u32,
    /// The reserved bit, which senders leave clear.
    reserved: bool,
}

impl FrameHeader {
    fn of(h: &[u8; FRAME_HEADER]) -> Self {
        let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]);
        Self {
            len: u32::from_be_bytes([0, h[0], h[1], h[2]]),
            kind: h[3],
            flags: h[4],
            stream: stream & 0x7fff_ffff,
            reserved: stream & 0x8000_0000 != 0,
        }
    }

    /// The header at the start of `data`, when `data` holds one.
    fn read(data: &[u8]) -> Option<Self> {
        Some(Self::of(data.get(..FRAME_HEADER)?.try_into().ok()?))
    }
}

/// HTTP/2 framing of one connection.
#[derive(Debug, Default)]
pub struct Http2Parser {
    /// Request (client to server) and response directions.
    sides: [Side; 2],
    streams: HashMap<u32, Stream>,
    /// Whether the first segment was seen: it starts with the preface, or the agent joined
    /// the connection later (its header tables are then unknown).
    started: bool,
}

/// One direction's framing and header decoding.
#[derive(Debug, Default)]
struct Side {
    /// Bytes of the client preface still to pass (request direction, at the start).
    preface: usize,
    /// A frame header split over segments.
    header: [u8; FRAME_HEADER],
    have: usize,
    /// The frame whose payload is arriving.
    frame: Option<Frame>,
    /// A header block waiting for its CONTINUATION frames.
    block: Option<Block>,
    hpack: Hpack,
    /// A frame header was not captured: looking for a frame start.
    framing_lost: bool,
}

#[derive(Debug)]
struct Frame {
    kind: u8,
    flags: u8,
    stream: u32,
    len: u32,
    /// Payload bytes still to come.
    left: u32,
    /// The payload as far as it is kept (header blocks, RST_STREAM's code, DATA's pad length).
    payload: Vec<u8>,
    /// Payload bytes were not captured (or beyond [`MAX_BLOCK`]).
    cut: bool,
}

impl Frame {
    /// Payload bytes worth keeping.
    fn keep(&self) -> usize {
        match self.kind {
            HEADERS | CONTINUATION | PUSH_PROMISE => MAX_BLOCK,
            RST_STREAM => 4,
            DATA if self.flags & PADDED != 0 => 1,
            _ => 0,
        }
    }
}

#[derive(Debug)]
struct Block {
    stream: u32,
    end_stream: bool,
    /// A PUSH_PROMISE's block: decoded only to keep the table in step.
    push: bool,
    fragment: Vec<u8>,
    cut: bool,
}

/// One open stream.
#[derive(Debug, Default)]
struct Stream {
    grpc: bool,
    /// The request did not say gRPC, its response's trailers did.
    grpc_by_trailers: bool,
    /// DATA payload bytes per direction (request, response).
    bytes: [u64; 2],
    ended: [bool; 2],
    response_started: bool,
    /// What the trailers or a reset said, once they changed the response.
    update: Option<ResponseInfo>,
}

/// The fields of a header block a row needs, and whether some of its fields were unknown
/// (they index dynamic table entries never seen, see [`hpack`]).
#[derive(Debug, Default)]
struct Fields {
    method: Option<String>,
    path: Option<Vec<u8>>,
    status: Option<u16>,
    grpc: bool,
    trace_id: Option<String>,
    grpc_status: Option<u32>,
    grpc_message: Option<String>,
    partial: bool,
    /// Some fields index table entries never seen (else a partial block was cut or bad).
    unknown: bool,
}

impl StreamParser for Http2Parser {
    fn feed_into(&mut self, segment: &Segment<'_>, out: &mut FeedOutcome) {
        let data = &segment.data[..segment.data.len().min(segment.len)];
        let d = side_index(segment.direction);
        if !std::mem::replace(&mut self.started, true) {
            let preface = data.len().min(PREFACE.len());
            if segment.direction == Direction::Request
                && preface > 0
                && data[..preface] == PREFACE[..preface]
            {
                self.sides[0].preface = PREFACE.len();
            } else {
                for side in &mut self.sides {
                    side.hpack = Hpack::joined_late();
                }
            }
        }
        let mut pos = 0;
        let side = &mut self.sides[d];
        if side.preface > 0 {
            let n = side.preface.min(segment.len);
            side.preface -= n;
            pos = n;
        }
        if side.framing_lost {
            let rest = data.get(pos..).unwrap_or_default();
            let found = if plausible_frame(rest, segment.direction).is_some() {
                Some(0)
            } else if data.len() == segment.len {
                // Captured to its end (a short read that began inside a frame, or the tail
                // of a long syscall): frames found again where a chain of them ends with it.
                (1..rest.len()).find(|&k| frame_chain(&rest[k..], segment.direction))
            } else {
                None
            };
            let Some(skip) = found else {
                out.unparsed += 1;
                return;
            };
            side.framing_lost = false;
            pos += skip;
        }
        while pos < segment.len {
            let side = &mut self.sides[d];
            if let Some(frame) = &mut side.frame {
                let n = (frame.left as usize).min(segment.len - pos);
                let seen = &data[pos.min(data.len())..(pos + n).min(data.len())];
                let keep = frame.keep();
                let room = keep.saturating_sub(frame.payload.len());
                let wanted = n.min(room);
                if !frame.cut {
                    // Kept bytes are contiguous: none once some were not captured.
                    frame
                        .payload
                        .extend_from_slice(&seen[..seen.len().min(wanted)]);
                }
                // Bytes to keep were not captured, or a header block outgrew its bound.
                if seen.len() < wanted || (keep == MAX_BLOCK && n > room) {
                    frame.cut = true;
                }
                frame.left -= n as u32;
                pos += n;
                if frame.left == 0 {
                    let frame = side.frame.take().expect("checked above");
                    self.on_frame(segment.direction, frame, out);
                }
                continue;
            }
            if pos >= data.len() {
                // The next frame header was not captured.
                side.framing_lost = true;
                side.have = 0;
                side.block = None;
                // Header blocks may pass unseen until framing is found again.
                side.hpack.lose();
                out.unparsed += 1;
                return;
            }
            let n = (FRAME_HEADER - side.have).min(data.len() - pos);
            side.header[side.have..side.have + n].copy_from_slice(&data[pos..pos + n]);
            side.have += n;
            pos += n;
            if side.have < FRAME_HEADER {
                continue;
            }
            side.have = 0;
            let header = FrameHeader::of(&side.header);
            let frame = Frame {
                kind: header.kind,
                flags: header.flags,
                stream: header.stream,
                len: header.len,
                left: header.len,
                payload: Vec::new(),
                cut: false,
            };
            if frame.len == 0 {
                self.on_frame(segment.direction, frame, out);
            } else {
                side.frame = Some(frame);
            }
        }
    }
}

impl Http2Parser {
    /// The parser of a connection upgraded from HTTP/1.1 (`Upgrade: h2c` answered by `101`):
    /// both header tables start empty, the client's preface is still to come, and stream 1 is
    /// the upgrade request, already sent, waiting for its response.
    pub fn upgraded() -> Self {
        let mut parser = Self {
            started: true,
            ..Self::default()
        };
        parser.sides[0].preface = PREFACE.len();
        parser.streams.insert(
            1,
            Stream {
                ended: [true, false],
                ..Stream::default()
            },
        );
        parser
    }

    /// A whole frame arrived (its payload as far as it was kept).
    fn on_frame(&mut self, direction: Direction, frame: Frame, out: &mut FeedOutcome) {
        let side = &mut self.sides[side_index(direction)];
        if side.block.is_some() && frame.kind != CONTINUATION {
            // A header block interrupted: a protocol error, or frames lost.
            side.block = None;
            side.hpack.lose();
            out.unparsed += 1;
        }
        match frame.kind {
            DATA => {
                let mut body = u64::from(frame.len);
                if frame.flags & PADDED != 0 {
                    let pad = frame.payload.first().map_or(0, |&p| u64::from(p));
                    body = body.saturating_sub(1 + pad);
                }
                if let Some(stream) = self.streams.get_mut(&frame.stream) {
                    stream.bytes[side_index(direction)] += body;
                }
                if frame.flags & END_STREAM != 0 {
                    self.end(direction, frame.stream, out);
                }
            }
            HEADERS | PUSH_PROMISE => {
                let push = frame.kind == PUSH_PROMISE;
                let (stream, flags, cut) = (frame.stream, frame.flags, frame.cut);
                let fragment = block_fragment(frame);
                let block = Block {
                    stream,
                    end_stream: !push && flags & END_STREAM != 0,
                    push,
                    cut: cut || fragment.is_none(),
                    fragment: fragment.unwrap_or_default(),
                };
                if flags & END_HEADERS != 0 {
                    self.on_block(direction, block, out);
                } else {
                    side.block = Some(block);
                }
            }
            CONTINUATION => match side.block.take() {
                Some(mut block) if block.stream == frame.stream => {
                    block.cut |=
                        frame.cut || block.fragment.len() + frame.payload.len() > MAX_BLOCK;
                    if !block.cut {
                        block.fragment.extend_from_slice(&frame.payload);
                    }
                    if frame.flags & END_HEADERS != 0 {
                        self.on_block(direction, block, out);
                    } else {
                        side.block = Some(block);
                    }
                }
                _ => {
                    side.hpack.lose();
                    out.unparsed += 1;
                }
            },
            RST_STREAM => {
                let code = <[u8; 4]>::try_from(frame.payload.as_slice())
                    .map_or(u32::MAX, u32::from_be_bytes);
                self.reset(frame.stream, code, out);
            }
            PRIORITY | SETTINGS | PING | GOAWAY | WINDOW_UPDATE => {}
            // Extension frames are ignored (RFC 9113 §5.5).
            _ => {}
        }
    }

    /// A whole header block of `direction`.
    fn on_block(&mut self, direction: Direction, block: Block, out: &mut FeedOutcome) {
        let side = &mut self.sides[side_index(direction)];
        let fields = if block.cut {
            // Entries the unseen part added are missed.
            side.hpack.lose();
            None
        } else {
            decode(&mut side.hpack, &block.fragment)
        };
        if block.push {
            return;
        }
        let fields = fields.unwrap_or(Fields {
            partial: true,
            ..Fields::default()
        });
        let id = block.stream;
        match direction {
            Direction::Request => {
                if !self.streams.contains_key(&id) {
                    if self.streams.len() >= MAX_STREAMS || id == 0 {
                        out.unparsed += 1;
                        return;
                    }
                    if fields.partial && (fields.method.is_none() || fields.path.is_none()) {
                        count_partial(&fields, out);
                    }
                    let protocol = if fields.grpc {
                        Protocol::Grpc
                    } else {
                        Protocol::Http2
                    };
                    let resource = fields
                        .path
                        .as_deref()
                        .map_or_else(String::new, |p| resource(MethodKind::Other, p));
                    self.streams.insert(
                        id,
                        Stream {
                            grpc: fields.grpc,
                            ..Stream::default()
                        },
                    );
                    out.events.push(MessageEvent::StreamRequest {
                        stream: id,
                        protocol,
                        info: RequestInfo {
                            method: fields.method.map(Cow::from).unwrap_or_default(),
                            resource,
                            trace_id: fields.trace_id,
                            dns_id: None,
                        },
                    });
                }
                if block.end_stream {
                    self.end(direction, id, out);
                }
            }
            Direction::Response => {
                let Some(stream) = self.streams.get_mut(&id) else {
                    // A stream opened before the agent saw the connection, or not followed.
                    out.unparsed += 1;
                    return;
                };
                if fields.grpc_status.is_some() && !stream.grpc {
                    // Only gRPC sends `grpc-status`: a request whose content-type was not
                    // known (an entry never seen) was gRPC after all.
                    stream.grpc = true;
                    stream.grpc_by_trailers = true;
                }
                let informational = fields.status.is_some_and(|s| s < 200);
                if !stream.response_started && !informational {
                    stream.response_started = true;
                    if fields.partial && fields.status.is_none() {
                        count_partial(&fields, out);
                    }
                    let info = response_info(stream.grpc, &fields);
                    if fields.grpc_status.is_some() {
                        // Trailers-only: a gRPC answer with no body.
                        stream.update = Some(info.clone());
                    }
                    out.events
                        .push(MessageEvent::StreamResponse { stream: id, info });
                } else if stream.response_started && fields.grpc_status.is_some() {
                    stream.update = Some(response_info(stream.grpc, &fields));
                } else if stream.response_started && fields.partial {
                    // Trailers not all decoded: they may have carried a gRPC status, so the
                    // call's outcome is unknown (not the success its `:status` would say).
                    count_partial(&fields, out);
                    stream.update = Some(ResponseInfo::default());
                }
                if block.end_stream {
                    self.end(direction, id, out);
                }
            }
        }
    }

    /// `direction` of stream `id` ended.
    fn end(&mut self, direction: Direction, id: u32, out: &mut FeedOutcome) {
        let d = side_index(direction);
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        if stream.ended[d] {
            return;
        }
        if direction == Direction::Response && !stream.response_started {
            // A body-less end with no response headers seen: nothing to pair.
            return;
        }
        stream.ended[d] = true;
        out.events.push(MessageEvent::StreamEnd {
            direction,
            stream: id,
            bytes: stream.bytes[d],
            response: match direction {
                Direction::Request => None,
                Direction::Response => stream.update.take(),
            },
            protocol: (direction == Direction::Response && stream.grpc_by_trailers)
                .then_some(Protocol::Grpc),
        });
        if stream.ended == [true, true] {
            self.streams.remove(&id);
        }
    }

    /// Stream `id` was reset with error `code` (either end).
    fn reset(&mut self, id: u32, code: u32, out: &mut FeedOutcome) {
        let Some(stream) = self.streams.get_mut(&id) else {
            return;
        };
        if code != 0 && !stream.ended[1] {
            let name = error_name(code);
            let info = ResponseInfo {
                status: name.into(),
                is_error: true,
                error_message: Some(format!("stream reset: {name}")),
                ..ResponseInfo::default()
            };
            if !stream.response_started {
                stream.response_started = true;
                out.events.push(MessageEvent::StreamResponse {
                    stream: id,
                    info: info.clone(),
                });
            }
            stream.update = Some(info);
        }
        self.end(Direction::Request, id, out);
        self.end(Direction::Response, id, out);
        self.streams.remove(&id);
    }
}

fn side_index(direction: Direction) -> usize {
    usize::from(direction == Direction::Response)
}

/// The header block fragment of a HEADERS or PUSH_PROMISE frame: its payload without padding,
/// priority or promised stream id; `None` when those do not fit.
fn block_fragment(frame: Frame) -> Option<Vec<u8>> {
    let mut p = frame.payload;
    let mut start = 0;
    let mut pad = 0;
    if frame.flags & PADDED != 0 {
        pad = usize::from(*p.first()?);
        start = 1;
    }
    if frame.kind == HEADERS && frame.flags & PRIORITY_FLAG != 0 {
        start += 5;
    }
    if frame.kind == PUSH_PROMISE {
        start += 4;
    }
    // The fragment ends `pad` bytes before the frame does.
    let end = (frame.len as usize).checked_sub(pad)?;
    if start > end || start > p.len() {
        return None;
    }
    // In place: the payload becomes the fragment, without a copy of its own.
    p.truncate(end);
    p.drain(..start);
    Some(p)
}

/// Decodes one header block into the fields a row needs; `None` when the block is malformed.
fn decode(hpack: &mut Hpack, block: &[u8]) -> Option<Fields> {
    let decoded = hpack.decode(block).ok()?;
    let text = |v: &[u8]| String::from_utf8_lossy(v).into_owned();
    let number = |v: &[u8]| std::str::from_utf8(v).ok()?.parse().ok();
    let mut fields = Fields {
        partial: decoded.unknown > 0,
        unknown: decoded.unknown > 0,
        ..Fields::default()
    };
    for (field, value) in &decoded.fields {
        match field {
            Field::Method => fields.method = Some(text(value)),
            Field::Path => fields.path = Some(value.clone()),
            Field::Status => fields.status = number(value).and_then(|n: u32| u16::try_from(n).ok()),
            Field::ContentType => fields.grpc = value.starts_with(b"application/grpc"),
            Field::Traceparent => fields.trace_id = parse_traceparent(value),
            Field::GrpcStatus => fields.grpc_status = number(value),
            Field::GrpcMessage => fields.grpc_message = Some(percent_decode(value)),
        }
    }
    Some(fields)
}

/// Counts a message whose needed fields a partial block did not give: unknown entries, or a
/// block cut by the capture (or undecodable).
fn count_partial(fields: &Fields, out: &mut FeedOutcome) {
    if fields.unknown {
        out.unknown_headers += 1;
    } else {
        out.truncated += 1;
    }
}

/// What a response's headers (or a gRPC call's trailers) say.
fn response_info(grpc: bool, fields: &Fields) -> ResponseInfo {
    match (grpc, fields.grpc_status) {
        (true, Some(code)) => ResponseInfo {
            status: grpc_status_name(code).into(),
            is_error: code != 0,
            error_message: fields.grpc_message.clone().filter(|_| code != 0),
            ..ResponseInfo::default()
        },
        _ => {
            let status = fields.status.unwrap_or(0);
            ResponseInfo {
                status: fields.status.map(status_text).unwrap_or_default(),
                is_error: status >= 400,
                ..ResponseInfo::default()
            }
        }
    }
}

/// `grpc-message` is percent-encoded (gRPC over HTTP/2 spec).
fn percent_decode(value: &[u8]) -> String {
    let hex = |b: Option<&u8>| b.and_then(|&b| (b as char).to_digit(16));
    let mut out = Vec::with_capacity(value.len());
    let mut i = 0;
    while i < value.len() {
        match (value[i], hex(value.get(i + 1)), hex(value.get(i + 2))) {
            (b'%', Some(h), Some(l)) => {
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The name of a gRPC status code.
fn grpc_status_name(code: u32) -> &'static str {
    const NAMES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    NAMES.get(code as usize).copied().unwrap_or("UNKNOWN")
}

/// The name of an HTTP/2 error code (RFC 9113 §7).
fn error_name(code: u32) -> &'static str {
    const NAMES: [&str; 14] = [
        "NO_ERROR",
        "PROTOCOL_ERROR",
        "INTERNAL_ERROR",
        "FLOW_CONTROL_ERROR",
        "SETTINGS_TIMEOUT",
        "STREAM_CLOSED",
        "FRAME_SIZE_ERROR",
        "REFUSED_STREAM",
        "CANCEL",
        "COMPRESSION_ERROR",
        "CONNECT_ERROR",
        "ENHANCE_YOUR_CALM",
        "INADEQUATE_SECURITY",
        "HTTP_1_1_REQUIRED",
    ];
    NAMES.get(code as usize).copied().unwrap_or("UNKNOWN_ERROR")
}

/// The frame header `data` starts with, if `direction` could send it: a known type other
/// than CONTINUATION (which only follows a block), flags that type defines, a length within
/// the default maximum, and a stream id where the type needs one (odd for a client's HEADERS)
/// and none where it must have none.
fn plausible_frame(data: &[u8], direction: Direction) -> Option<FrameHeader> {
    let h = FrameHeader::read(data)?;
    if h.reserved || h.len > RESYNC_MAX_LEN {
        return None;
    }
    // The flags the type defines, and whether it is sent on a stream (None: either).
    let (allowed, on_stream) = match h.kind {
        DATA => (END_STREAM | PADDED, Some(true)),
        HEADERS => (
            END_STREAM | END_HEADERS | PADDED | PRIORITY_FLAG,
            Some(true),
        ),
        PRIORITY | RST_STREAM => (0, Some(true)),
        SETTINGS | PING => (1, Some(false)),
        PUSH_PROMISE => (END_HEADERS | PADDED, Some(true)),
        GOAWAY => (0, Some(false)),
        WINDOW_UPDATE => (0, None),
        _ => return None,
    };
    let stream_ok = on_stream.is_none_or(|on| on == (h.stream != 0));
    let odd_request = !(h.kind == HEADERS && direction == Direction::Request) || h.stream % 2 == 1;
    (h.flags & !allowed == 0 && stream_ok && odd_request).then_some(h)
}

#[cfg(test)]
mod tests;
