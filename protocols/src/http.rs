//! HTTP/1.x: request and status lines, `Content-Length` and chunked bodies, pipelining.
//!
//! Bodies are framed by their length fields and unseen bytes are counted against them, so a
//! body mostly beyond the capture size still ends where it should. When framing is lost (a
//! head cut before its blank line, chunk sizes in unseen bytes), a response stays open until
//! the next request or status line, and a request ends with the segment that started it.
//!
//! Only what a `calls` row needs is taken from a head: method, path, `traceparent`, status and
//! the framing headers. Credentials (`Authorization`, `Cookie`, ...) are never copied.

use std::{borrow::Cow, collections::VecDeque};

use memchr::memchr;

use crate::http_fields::{MethodKind, parse_traceparent, resource, status_text};
use crate::http2::Http2Parser;
use crate::stream::{
    Direction, FeedOutcome, MessageEvent, Protocol, RequestInfo, ResponseInfo, Segment,
    StreamParser,
};

/// Most bytes of a head split over segments that are read before it is taken as cut.
const MAX_HEAD: usize = 8 * 1024;
/// Most requests remembered while their responses are awaited (pipelining depth).
const MAX_AWAITING: usize = 1024;
/// Methods a connection may start with; other methods are accepted only with a whole
/// request line in view.
const METHODS: [&str; 9] = [
    "GET", "POST", "PUT", "DELETE", "HEAD", "OPTIONS", "PATCH", "CONNECT", "TRACE",
];
/// A version's fixed part.
const VERSION: &[u8] = b"HTTP/1.";
/// Unseen bytes that end a chunked body when they follow a chunk: `0\r\n\r\n`.
const LAST_CHUNK_LEN: u64 = 5;

/// Whether `data` starts like an HTTP/1.x request: a known method, a space and a target that
/// is a path (`*` for `OPTIONS`, an absolute URL, or `host:port` for `CONNECT`), then, if the
/// line ends in view, ` HTTP/1.x`.
pub fn looks_like_request(data: &[u8]) -> bool {
    let has_target = METHODS.iter().any(|m| {
        data.len() > m.len() + 1 && data.starts_with(m.as_bytes()) && data[m.len()] == b' '
    });
    has_target && request_line(data) != StartLine::Invalid
}

/// HTTP/1.x framing of one connection.
#[derive(Debug, Default)]
pub struct HttpParser {
    request: Side,
    response: Side,
    /// Methods of requests whose responses have not started, oldest first (for `HEAD` and
    /// `CONNECT`, which change how the response is framed).
    awaiting: VecDeque<MethodKind>,
    /// The connection was switched to another protocol (`101`, or `CONNECT` accepted).
    tunnel: bool,
    /// The connection was upgraded to HTTP/2 (`101` with `Upgrade: h2c`): its parser, which
    /// every later segment goes to.
    h2: Option<Box<Http2Parser>>,
}

/// Framing state of one direction.
#[derive(Debug, Default)]
struct Side {
    /// Start of a head split over segments, without the header lines not needed.
    head: Vec<u8>,
    /// Bytes of that head seen so far (at most [`MAX_HEAD`] are read).
    head_seen: usize,
    body: Body,
    /// Whether bytes of the open body were seen (visible or not).
    body_started: bool,
    /// Requests only: the last request was ended early, so bytes up to the next request start
    /// are its own and are skipped without being counted.
    skipping: bool,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Body {
    /// Between messages.
    #[default]
    Idle,
    /// Body bytes still to come.
    Length(u64),
    /// A chunked body.
    Chunked(Chunk),
    /// Responses only: a body without framing (until close, or framing lost); it ends at the
    /// next request start or status line.
    Unframed,
}

/// Where a chunked body is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// In a chunk-size line; `ext` once past the hex digits (extensions are ignored).
    Size { size: u64, digits: u8, ext: bool },
    /// Chunk data bytes still to come.
    Data(u64),
    /// The CRLF after chunk data; `cr` once the CR was seen.
    DataEnd { cr: bool },
    /// Trailer lines after the last chunk; `line_start` at the start of a line.
    Trailer { line_start: bool },
}

/// The start of a chunk-size line.
const CHUNK_SIZE: Chunk = Chunk::Size {
    size: 0,
    digits: 0,
    ext: false,
};

/// How far bytes go toward a valid start line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StartLine {
    /// Not an HTTP message start.
    Invalid,
    /// Valid so far, but the line does not end in view.
    Prefix,
    /// A whole start line, ending just before this index.
    Complete(usize),
}

/// How far bytes go toward a whole head.
#[derive(Debug)]
enum HeadScan {
    /// Not an HTTP message start.
    Invalid,
    /// Valid so far, without the blank line yet.
    Partial,
    /// A whole head of this many bytes, blank line included, and what it says (`None`: its
    /// start line lacks a key field).
    Complete(usize, Option<Head>),
}

/// What the framing headers say about the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    /// Neither `Content-Length` nor `Transfer-Encoding`.
    Absent,
    /// `Content-Length`.
    Length(u64),
    /// `Transfer-Encoding` ending in `chunked`.
    Chunked,
    /// `Transfer-Encoding` not ending in `chunked`: the body runs to the close.
    OtherCoding,
    /// Malformed or conflicting `Content-Length`.
    Bad,
}

/// A start line.
#[derive(Debug)]
enum Start {
    Request {
        method: Cow<'static, str>,
        kind: MethodKind,
        resource: String,
    },
    Response {
        code: u16,
    },
}

/// What was taken from a head.
#[derive(Debug)]
struct Head {
    start: Start,
    framing: Framing,
    trace_id: Option<String>,
    /// `Upgrade` names `h2c`.
    h2c: bool,
}

/// How unseen bytes left a chunked body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unseen {
    /// All taken as body; the body goes on.
    Open,
    /// The body ended with them.
    Ended,
    /// Chunk framing fell into them.
    Lost,
}

impl StreamParser for HttpParser {
    fn feed_into(&mut self, segment: &Segment<'_>, out: &mut FeedOutcome) {
        if let Some(h2) = &mut self.h2 {
            h2.feed_into(segment, out);
        } else if !self.tunnel {
            // Bytes past the syscall's length are not the syscall's.
            let data = &segment.data[..segment.data.len().min(segment.len)];
            let unseen = (segment.len - data.len()) as u64;
            self.feed_side(segment.direction, data, unseen, out);
        }
    }
}

impl HttpParser {
    fn side(&mut self, direction: Direction) -> &mut Side {
        match direction {
            Direction::Request => &mut self.request,
            Direction::Response => &mut self.response,
        }
    }

    /// Frames one segment's visible bytes `data` followed by `unseen` uncaptured ones.
    fn feed_side(
        &mut self,
        direction: Direction,
        data: &[u8],
        mut unseen: u64,
        out: &mut FeedOutcome,
    ) {
        let awaiting = !self.awaiting.is_empty();
        let side = self.side(direction);
        let starts = match direction {
            Direction::Request => request_line(data),
            Direction::Response => status_line(data),
        };
        match side.body {
            // Only a message start ends bytes without framing.
            Body::Unframed if data.len() < 12 || starts == StartLine::Invalid => return,
            Body::Unframed => {
                side.body = Body::Idle;
                out.events.push(MessageEvent::End { direction });
            }
            Body::Idle if side.skipping => {
                if data.is_empty() || starts == StartLine::Invalid {
                    return;
                }
                side.skipping = false;
            }
            // A whole start line where body bytes were due: the body's bytes went by unseen
            // (sendfile, lost events). A response needs a request waiting for it.
            Body::Length(_) | Body::Chunked(_)
                if matches!(starts, StartLine::Complete(_))
                    && (direction == Direction::Request || awaiting) =>
            {
                out.unparsed += 1;
                side.body = Body::Idle;
                out.events.push(MessageEvent::End { direction });
            }
            _ => {}
        }
        let mut pos = 0;
        while !self.tunnel {
            let side = self.side(direction);
            if pos < data.len() || unseen > 0 {
                side.body_started = true;
            }
            match side.body {
                Body::Length(left) => {
                    let visible = (data.len() - pos) as u64;
                    if left <= visible {
                        pos += left as usize;
                    } else {
                        pos = data.len();
                        let left = left - visible;
                        if left > unseen {
                            self.side(direction).body = Body::Length(left - unseen);
                            return;
                        }
                        unseen -= left;
                    }
                }
                Body::Chunked(mut chunk) => {
                    let Some((used, ended)) = feed_chunked(&mut chunk, &data[pos..]) else {
                        out.unparsed += 1;
                        self.lose_framing(direction, out);
                        return;
                    };
                    pos += used;
                    if !ended {
                        match skip_unseen_chunked(&mut chunk, unseen) {
                            Unseen::Open => {
                                self.side(direction).body = Body::Chunked(chunk);
                                return;
                            }
                            Unseen::Ended => unseen = 0,
                            Unseen::Lost => {
                                out.truncated += 1;
                                self.lose_framing(direction, out);
                                return;
                            }
                        }
                    }
                }
                Body::Unframed => return,
                Body::Idle => {
                    if self.start_message(direction, data, &mut pos, &mut unseen, out) {
                        continue;
                    }
                    return;
                }
            }
            // The body ended.
            self.side(direction).body = Body::Idle;
            out.events.push(MessageEvent::End { direction });
        }
        // Switched to HTTP/2 in this segment: the bytes after the `101` are its.
        if let Some(h2) = &mut self.h2 {
            let rest = &data[pos.min(data.len())..];
            let segment = Segment {
                direction,
                data: rest,
                len: rest.len() + unseen as usize,
            };
            h2.feed_into(&segment, out);
        }
    }

    /// Reads a head at `data[*pos..]` (after any buffered start of it) and starts its
    /// message; false when the segment has nothing more to frame.
    fn start_message(
        &mut self,
        direction: Direction,
        data: &[u8],
        pos: &mut usize,
        unseen: &mut u64,
        out: &mut FeedOutcome,
    ) -> bool {
        let side = self.side(direction);
        let mut head = std::mem::take(&mut side.head);
        if head.is_empty() {
            // Blank lines between messages are allowed (and sent after some POST bodies).
            while *pos < data.len() && matches!(data[*pos], b'\r' | b'\n') {
                *pos += 1;
            }
        }
        let rest = &data[*pos..];
        if rest.is_empty() {
            if *unseen > 0 {
                *unseen = 0;
                if !head.is_empty() {
                    self.start_truncated(direction, &head, out);
                } else if !side.skipping {
                    // A message wholly beyond the capture size.
                    out.unparsed += 1;
                }
            } else {
                side.head = head;
            }
            return false;
        }
        let buffered = head.len();
        let buf: &[u8] = if buffered == 0 {
            side.head_seen = rest.len();
            rest
        } else {
            let take = rest.len().min(MAX_HEAD.saturating_sub(side.head_seen));
            side.head_seen += take;
            head.extend_from_slice(&rest[..take]);
            &head
        };
        let head_seen = side.head_seen;
        let skipping = side.skipping;
        match scan_head(buf, direction) {
            HeadScan::Invalid => {
                if !skipping {
                    out.unparsed += 1;
                }
                *pos = data.len();
                *unseen = 0;
                false
            }
            HeadScan::Complete(len, head) => {
                *pos += len.saturating_sub(buffered);
                match head {
                    Some(head) => self.begin(direction, head, true, out),
                    None => out.unparsed += 1,
                }
                true
            }
            HeadScan::Partial if *unseen > 0 || head_seen >= MAX_HEAD => {
                // The rest of the head is beyond the capture (or too long to buffer).
                self.start_truncated(direction, buf, out);
                *pos = data.len();
                *unseen = 0;
                false
            }
            HeadScan::Partial => {
                self.side(direction).head = compact_head(buf);
                *pos = data.len();
                false
            }
        }
    }

    /// Starts a message whose head was cut: from its start line and the header lines seen.
    fn start_truncated(&mut self, direction: Direction, buf: &[u8], out: &mut FeedOutcome) {
        match parse_head(buf, direction) {
            Some(parsed) => {
                out.truncated += 1;
                self.begin(direction, parsed, false, out);
            }
            None => out.unparsed += 1,
        }
    }

    /// Reports a message start and sets up its body; `whole` when the head was seen to its
    /// end (otherwise its framing is unknown).
    fn begin(&mut self, direction: Direction, head: Head, whole: bool, out: &mut FeedOutcome) {
        match head.start {
            Start::Request {
                method,
                kind,
                resource,
            } => {
                // Without pipelining a new request means the open response is over: when it
                // has no framing, or when none of its body was seen (nginx sends files with
                // sendfile(2), which is not captured).
                let response = &mut self.response;
                let over = match response.body {
                    Body::Unframed => true,
                    Body::Length(_) | Body::Chunked(_) if !response.body_started => {
                        out.unparsed += 1;
                        true
                    }
                    _ => false,
                };
                if over {
                    response.body = Body::Idle;
                    out.events.push(MessageEvent::End {
                        direction: Direction::Response,
                    });
                }
                out.events.push(MessageEvent::RequestStart(RequestInfo {
                    method,
                    resource,
                    trace_id: head.trace_id,
                    dns_id: None,
                }));
                if self.awaiting.len() >= MAX_AWAITING {
                    self.awaiting.pop_front();
                }
                self.awaiting.push_back(kind);
                let side = &mut self.request;
                side.skipping = false;
                side.body_started = false;
                let framing = if whole { head.framing } else { Framing::Bad };
                match framing {
                    Framing::Length(len) if len > 0 => side.body = Body::Length(len),
                    Framing::Chunked => side.body = Body::Chunked(CHUNK_SIZE),
                    Framing::Absent | Framing::Length(_) => {
                        out.events.push(MessageEvent::End { direction });
                    }
                    Framing::OtherCoding | Framing::Bad => {
                        // Requests have no read-until-close: end it here, skip its bytes.
                        if whole {
                            out.unparsed += 1;
                        }
                        side.skipping = true;
                        out.events.push(MessageEvent::End { direction });
                    }
                }
            }
            Start::Response { code } => {
                // Interim responses (100 Continue, 103 Early Hints) precede the real one.
                if (100..200).contains(&code) && code != 101 {
                    return;
                }
                let kind = self.awaiting.pop_front().unwrap_or(MethodKind::Other);
                if code == 101 && head.h2c {
                    // HTTP/2 over cleartext by upgrade (RFC 7540, 3.2; dropped by RFC 9113 but
                    // still sent by curl --http2): the request is stream 1, answered in
                    // HTTP/2; the 101 is only interim.
                    out.events.push(MessageEvent::StreamUpgrade {
                        stream: 1,
                        protocol: Protocol::Http2,
                    });
                    self.h2 = Some(Box::new(Http2Parser::upgraded()));
                    self.tunnel = true;
                    return;
                }
                out.events.push(MessageEvent::ResponseStart(ResponseInfo {
                    status: status_text(code),
                    is_error: code >= 400,
                    ..ResponseInfo::default()
                }));
                let end = MessageEvent::End { direction };
                if code == 101 || (kind == MethodKind::Connect && (200..300).contains(&code)) {
                    // What follows is another protocol.
                    out.events.push(end);
                    self.tunnel = true;
                    return;
                }
                if kind == MethodKind::Head || code == 204 || code == 304 {
                    out.events.push(end);
                    return;
                }
                let framing = if whole {
                    head.framing
                } else {
                    Framing::OtherCoding
                };
                let side = &mut self.response;
                side.body_started = false;
                match framing {
                    Framing::Length(0) => out.events.push(end),
                    Framing::Length(len) => side.body = Body::Length(len),
                    Framing::Chunked => side.body = Body::Chunked(CHUNK_SIZE),
                    Framing::Absent | Framing::OtherCoding => side.body = Body::Unframed,
                    Framing::Bad => {
                        out.unparsed += 1;
                        side.body = Body::Unframed;
                    }
                }
            }
        }
    }

    /// The open body's framing is unknown from here: a request ends now (its remaining bytes
    /// are skipped), a response stays open until the next message start.
    fn lose_framing(&mut self, direction: Direction, out: &mut FeedOutcome) {
        let side = self.side(direction);
        match direction {
            Direction::Request => {
                side.body = Body::Idle;
                side.skipping = true;
                out.events.push(MessageEvent::End { direction });
            }
            Direction::Response => side.body = Body::Unframed,
        }
    }
}

/// Checks a request line: a method, a target and `HTTP/1.x`. Known methods may be cut short
/// (`Prefix`); others need the whole line.
fn request_line(buf: &[u8]) -> StartLine {
    let method_len = buf
        .iter()
        .position(|b| !b.is_ascii_uppercase())
        .unwrap_or(buf.len());
    let method = &buf[..method_len];
    let known = METHODS.iter().any(|m| m.as_bytes() == method);
    let cut = if known {
        StartLine::Prefix
    } else {
        StartLine::Invalid
    };
    if method_len == buf.len() {
        return if METHODS.iter().any(|m| m.as_bytes().starts_with(method)) {
            StartLine::Prefix
        } else {
            StartLine::Invalid
        };
    }
    if method_len == 0 || method_len > 20 || buf[method_len] != b' ' {
        return StartLine::Invalid;
    }
    let target_at = method_len + 1;
    let target_len = buf[target_at..]
        .iter()
        .position(|&b| b == b' ' || b.is_ascii_control())
        .unwrap_or(buf.len() - target_at);
    let target = &buf[target_at..target_at + target_len];
    let version_at = target_at + target_len;
    let whole_target = version_at < buf.len();
    if !target_ok(method, target, whole_target) {
        return StartLine::Invalid;
    }
    if !whole_target {
        return cut;
    }
    if buf[version_at] != b' ' {
        return StartLine::Invalid;
    }
    match line_end(&buf[version_at + 1..], VERSION.len() + 1, |version| {
        version_ok(version)
    }) {
        StartLine::Complete(end) => StartLine::Complete(version_at + 1 + end),
        StartLine::Prefix => cut,
        StartLine::Invalid => StartLine::Invalid,
    }
}

/// Checks `HTTP/1.x` (or as much of it as there is).
fn version_ok(version: &[u8]) -> bool {
    let fixed = version.len().min(VERSION.len());
    version[..fixed] == VERSION[..fixed]
        && version.get(VERSION.len()).is_none_or(u8::is_ascii_digit)
}

/// Checks a start line's last field (`field_len` bytes, checked by `field_ok` even when cut)
/// and the line end after it; indices are relative to `buf`.
fn line_end(buf: &[u8], field_len: usize, field_ok: impl Fn(&[u8]) -> bool) -> StartLine {
    if !field_ok(&buf[..buf.len().min(field_len)]) {
        return StartLine::Invalid;
    }
    match buf.get(field_len..) {
        None | Some([] | [b'\r']) => StartLine::Prefix,
        Some([b'\n', ..]) => StartLine::Complete(field_len + 1),
        Some([b'\r', b'\n', ..]) => StartLine::Complete(field_len + 2),
        Some(_) => StartLine::Invalid,
    }
}

/// Whether a request target (or its start, when not `whole`) suits the method.
fn target_ok(method: &[u8], target: &[u8], whole: bool) -> bool {
    let Some(&first) = target.first() else {
        return !whole;
    };
    if method == b"CONNECT" {
        // Authority form: host:port.
        return target
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b".-_:[]%".contains(&b))
            && (!whole || target.contains(&b':'));
    }
    match first {
        b'/' => true,
        b'*' => method == b"OPTIONS" && target.len() == 1,
        _ => [&b"http://"[..], b"https://"].iter().any(|scheme| {
            let n = target.len().min(scheme.len());
            target[..n].eq_ignore_ascii_case(&scheme[..n]) && (!whole || target.len() > n)
        }),
    }
}

/// Checks a status line: `HTTP/1.x`, a 3-digit code, then a reason phrase or the line end.
fn status_line(buf: &[u8]) -> StartLine {
    let version_len = VERSION.len() + 1;
    if !version_ok(&buf[..buf.len().min(version_len)]) {
        return StartLine::Invalid;
    }
    let code_at = version_len + 1;
    match buf.get(version_len) {
        None => return StartLine::Prefix,
        Some(b' ') => {}
        Some(_) => return StartLine::Invalid,
    }
    let code = &buf[code_at.min(buf.len())..buf.len().min(code_at + 3)];
    let code_ok = code.iter().all(u8::is_ascii_digit) && code.first().is_none_or(|&d| d != b'0');
    if !code_ok {
        return StartLine::Invalid;
    }
    match buf.get(code_at + 3) {
        None => StartLine::Prefix,
        Some(b' ') => memchr(b'\n', &buf[code_at + 3..]).map_or(StartLine::Prefix, |i| {
            StartLine::Complete(code_at + 3 + i + 1)
        }),
        Some(_) => match line_end(&buf[code_at + 3..], 0, |_| true) {
            StartLine::Complete(end) => StartLine::Complete(code_at + 3 + end),
            other => other,
        },
    }
}

/// How far `buf` goes toward a whole head in `direction`, and a whole head's fields: its
/// lines are read as they are found, so that a whole head is searched once.
fn scan_head(buf: &[u8], direction: Direction) -> HeadScan {
    let line = match direction {
        Direction::Request => request_line(buf),
        Direction::Response => status_line(buf),
    };
    let start_len = match line {
        StartLine::Invalid => return HeadScan::Invalid,
        StartLine::Prefix => return HeadScan::Partial,
        StartLine::Complete(end) => end,
    };
    let mut at = start_len;
    let mut fields = HeaderFields::default();
    loop {
        let rest = &buf[at..];
        let blank = if rest.starts_with(b"\r\n") {
            2
        } else if rest.starts_with(b"\n") {
            1
        } else {
            0
        };
        if blank > 0 {
            let head = parse_start(&buf[..start_len], direction).map(|start| fields.head(start));
            return HeadScan::Complete(at + blank, head);
        }
        match memchr(b'\n', rest) {
            Some(i) => {
                fields.read(&rest[..i]);
                at += i + 1;
            }
            None => return HeadScan::Partial,
        }
    }
}

/// A partial head to keep for the next segment: its start line and framing and trace header
/// lines. Other complete lines are dropped, and other values of the line in progress too, so
/// credentials (`Authorization`, `Cookie`, ...) are never kept.
fn compact_head(buf: &[u8]) -> Vec<u8> {
    let line_len = memchr(b'\n', buf).map_or(buf.len(), |i| i + 1);
    let mut kept = buf[..line_len].to_vec();
    for line in lines(&buf[line_len..]) {
        let whole = line.ends_with(b"\n");
        match memchr(b':', line) {
            Some(colon) if needed_header(line[..colon].trim_ascii()) => {
                kept.extend_from_slice(line);
            }
            // The rest of this line comes with the next segment; its value is not needed.
            Some(colon) if !whole => kept.extend_from_slice(&line[..=colon]),
            // A folded value's continuation: only its leading space is needed.
            None if !whole && matches!(line.first(), Some(b' ' | b'\t')) => {
                kept.push(b' ');
            }
            // A name still being written, or the blank line's CR.
            None if !whole => kept.extend_from_slice(line),
            _ => {}
        }
    }
    kept
}

/// Whether a header's value is read.
fn needed_header(name: &[u8]) -> bool {
    [&b"content-length"[..], b"transfer-encoding", b"traceparent"]
        .iter()
        .any(|needed| name.eq_ignore_ascii_case(needed))
}

/// The lines of `buf`, each with its `\n` (the last one without, when cut): what
/// `split_inclusive` gives, found with `memchr` (a head is scanned a few times per message,
/// and a byte-at-a-time search was the parser's hottest loop).
fn lines(buf: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = buf;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let end = memchr(b'\n', rest).map_or(rest.len(), |i| i + 1);
        let (line, after) = rest.split_at(end);
        rest = after;
        Some(line)
    })
}

/// Takes what is needed from a cut head (its start line and the header lines seen whole);
/// `None` when not even the start line's key fields are there.
fn parse_head(buf: &[u8], direction: Direction) -> Option<Head> {
    let line_len = memchr(b'\n', buf).map_or(buf.len(), |i| i + 1);
    let start = parse_start(&buf[..line_len], direction)?;
    let mut fields = HeaderFields::default();
    for raw in lines(&buf[line_len..]) {
        let Some(field) = raw.strip_suffix(b"\n") else {
            // The line the capture cut.
            break;
        };
        if matches!(field, b"" | b"\r") {
            break;
        }
        fields.read(field);
    }
    Some(fields.head(start))
}

/// The key fields of a head's start line `line` (whole, or cut by the capture).
fn parse_start(line: &[u8], direction: Direction) -> Option<Start> {
    Some(match direction {
        Direction::Request => {
            let space = line.iter().position(|&b| b == b' ')?;
            let method = &line[..space];
            let target = &line[space + 1..];
            let target_len = target
                .iter()
                .position(|&b| b == b' ' || b.is_ascii_control())
                .unwrap_or(target.len());
            let kind = match method {
                b"HEAD" => MethodKind::Head,
                b"CONNECT" => MethodKind::Connect,
                _ => MethodKind::Other,
            };
            Start::Request {
                method: method_name(method),
                kind,
                resource: resource(kind, &target[..target_len]),
            }
        }
        Direction::Response => {
            let code = line.get(9..12)?;
            if !code.iter().all(u8::is_ascii_digit) {
                return None;
            }
            let code = code.iter().fold(0u16, |n, &d| n * 10 + u16::from(d - b'0'));
            Start::Response { code }
        }
    })
}

/// What a head's header lines say about framing, tracing and an upgrade to h2c. Only these four headers are
/// read; every other value (credentials included) is ignored.
#[derive(Debug, Default)]
struct HeaderFields {
    length: Option<u64>,
    chunked: Option<bool>,
    bad_length: bool,
    trace_id: Option<String>,
    h2c: bool,
}

impl HeaderFields {
    /// Reads one header line, without its `\n` (a `\r` before it is allowed).
    fn read(&mut self, line: &[u8]) {
        let field = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = memchr(b':', field) else {
            return;
        };
        let name = field[..colon].trim_ascii();
        let value = field[colon + 1..].trim_ascii();
        if name.eq_ignore_ascii_case(b"content-length") {
            match parse_length(value) {
                Some(n) if self.length.is_none_or(|old| old == n) => self.length = Some(n),
                _ => self.bad_length = true,
            }
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            let last = value.rsplit(|&b| b == b',').next().unwrap_or(value);
            self.chunked = Some(last.trim_ascii().eq_ignore_ascii_case(b"chunked"));
        } else if name.eq_ignore_ascii_case(b"traceparent") && self.trace_id.is_none() {
            self.trace_id = parse_traceparent(value);
        } else if name.eq_ignore_ascii_case(b"upgrade") {
            self.h2c = value
                .split(|&b| b == b',')
                .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"h2c"));
        }
    }

    /// The head these fields and `start` make.
    fn head(self, start: Start) -> Head {
        // Transfer-Encoding overrides Content-Length.
        let framing = match (self.chunked, self.length, self.bad_length) {
            (Some(true), _, _) => Framing::Chunked,
            (Some(false), _, _) => Framing::OtherCoding,
            (None, _, true) => Framing::Bad,
            (None, Some(n), false) => Framing::Length(n),
            (None, None, false) => Framing::Absent,
        };
        Head {
            start,
            framing,
            trace_id: self.trace_id,
            h2c: self.h2c,
        }
    }
}

/// The name of a request's method, without allocating for the common ones.
fn method_name(raw: &[u8]) -> Cow<'static, str> {
    match METHODS.iter().find(|m| m.as_bytes() == raw) {
        Some(name) => Cow::Borrowed(name),
        None => Cow::Owned(String::from_utf8_lossy(raw).into_owned()),
    }
}

/// A `Content-Length` value: decimal digits only.
fn parse_length(value: &[u8]) -> Option<u64> {
    if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(
        value
            .iter()
            .fold(0u64, |n, &d| n * 10 + u64::from(d - b'0')),
    )
}

/// Feeds visible bytes to a chunked body: how many it used and whether the body ended;
/// `None` when the chunk framing is malformed.
fn feed_chunked(chunk: &mut Chunk, data: &[u8]) -> Option<(usize, bool)> {
    let mut i = 0;
    while i < data.len() {
        match *chunk {
            Chunk::Data(left) => {
                let take = left.min((data.len() - i) as u64);
                i += take as usize;
                *chunk = if take == left {
                    Chunk::DataEnd { cr: false }
                } else {
                    Chunk::Data(left - take)
                };
                continue;
            }
            Chunk::Size { size, digits, ext } => {
                *chunk = match data[i] {
                    b'\n' if digits == 0 => return None,
                    b'\n' if size == 0 => Chunk::Trailer { line_start: true },
                    b'\n' => Chunk::Data(size),
                    _ if ext => *chunk,
                    b';' | b' ' | b'\t' | b'\r' if digits > 0 => Chunk::Size {
                        size,
                        digits,
                        ext: true,
                    },
                    b if b.is_ascii_hexdigit() && digits < 16 => Chunk::Size {
                        size: (size << 4) | u64::from(hex_value(b)),
                        digits: digits + 1,
                        ext,
                    },
                    _ => return None,
                };
            }
            Chunk::DataEnd { cr } => {
                *chunk = match data[i] {
                    b'\r' if !cr => Chunk::DataEnd { cr: true },
                    b'\n' => CHUNK_SIZE,
                    _ => return None,
                };
            }
            Chunk::Trailer { line_start } => match data[i] {
                b'\n' if line_start => return Some((i + 1, true)),
                b'\n' => *chunk = Chunk::Trailer { line_start: true },
                b'\r' => {}
                _ => *chunk = Chunk::Trailer { line_start: false },
            },
        }
        i += 1;
    }
    Some((i, false))
}

fn hex_value(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        _ => b - b'A' + 10,
    }
}

/// Takes `unseen` uncaptured bytes into a chunked body. They may finish chunk data and its
/// CRLF; a chunk-size line among them cannot be read, except that exactly five unseen bytes
/// at a chunk boundary are taken as the last chunk `0\r\n\r\n` (servers often write it with
/// the final data).
fn skip_unseen_chunked(chunk: &mut Chunk, mut unseen: u64) -> Unseen {
    loop {
        if unseen == 0 {
            return Unseen::Open;
        }
        match *chunk {
            Chunk::Data(left) => {
                let take = left.min(unseen);
                unseen -= take;
                *chunk = if take == left {
                    Chunk::DataEnd { cr: false }
                } else {
                    Chunk::Data(left - take)
                };
            }
            Chunk::DataEnd { cr } => {
                let need = if cr { 1 } else { 2 };
                if unseen < need {
                    *chunk = Chunk::DataEnd { cr: true };
                    return Unseen::Open;
                }
                unseen -= need;
                *chunk = CHUNK_SIZE;
            }
            CHUNK_SIZE if unseen == LAST_CHUNK_LEN => return Unseen::Ended,
            Chunk::Size { .. } | Chunk::Trailer { .. } => return Unseen::Lost,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_as_split_inclusive_does() {
        for buf in [
            &b""[..],
            b"\n",
            b"no newline",
            b"Host: a\r\n",
            b"Host: a\r\nContent-Length: 5\r\n\r\n",
            b"a\n\nb",
            b"cut: line\nHost: b",
        ] {
            let ours: Vec<&[u8]> = lines(buf).collect();
            let std: Vec<&[u8]> = buf.split_inclusive(|&b| b == b'\n').collect();
            assert_eq!(ours, std, "{:?}", String::from_utf8_lossy(buf));
        }
    }

    /// A whole head's header lines are read while its end is searched; a cut head's by
    /// `parse_head`. Both read the same lines the same way.
    #[test]
    fn whole_and_cut_heads_read_the_same_fields() {
        const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
        let cases: &[(&[u8], Framing, Option<&str>)] = &[
            (b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", Framing::Length(100), None),
            (b"HTTP/1.1 200 OK\nContent-Length:7\n\n", Framing::Length(7), None),
            (
                b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\nContent-Length: 6\r\n\r\n",
                Framing::Bad,
                None,
            ),
            (
                b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                Framing::Chunked,
                None,
            ),
            (
                b"GET / HTTP/1.1\r\nNo colon here\r\n\r\r\n\r\n",
                Framing::Absent,
                None,
            ),
            (
                b"POST /p HTTP/1.1\r\ntraceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\
                  Transfer-Encoding: br\r\n\r\n",
                Framing::OtherCoding,
                Some(TRACE),
            ),
        ];
        for &(head, framing, trace_id) in cases {
            let direction = if head.starts_with(b"HTTP/") {
                Direction::Response
            } else {
                Direction::Request
            };
            let what = String::from_utf8_lossy(head);
            let HeadScan::Complete(len, Some(whole)) = scan_head(head, direction) else {
                panic!("not a whole head: {what:?}");
            };
            assert_eq!(len, head.len(), "{what:?}");
            // The same bytes without their last line's end are a head the capture cut.
            let cut = parse_head(&head[..head.len() - 1], direction).unwrap();
            for read in [whole, cut] {
                assert_eq!(read.framing, framing, "{what:?}");
                assert_eq!(read.trace_id.as_deref(), trace_id, "{what:?}");
            }
        }
    }

    use crate::test_support::*;

    /// curl 7.88.1 `curl http://127.0.0.1:18080/api/users?id=7#frag`, as captured.
    const CURL_GET: &[u8] = b"GET /api/users?id=7 HTTP/1.1\r\nHost: 127.0.0.1:18080\r\n\
        User-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n";
    /// curl 7.88.1 `curl -d hello=world -H 'traceparent: ...' .../submit`, as captured.
    const CURL_POST: &[u8] = b"POST /submit HTTP/1.1\r\nHost: 127.0.0.1:18080\r\n\
        User-Agent: curl/7.88.1\r\nAccept: */*\r\n\
        traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01\r\n\
        Content-Length: 11\r\nContent-Type: application/x-www-form-urlencoded\r\n\r\nhello=world";
    const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    /// curl 7.88.1 `curl -I .../x`, as captured.
    const CURL_HEAD: &[u8] = b"HEAD /x HTTP/1.1\r\nHost: 127.0.0.1:18080\r\n\
        User-Agent: curl/7.88.1\r\nAccept: */*\r\n\r\n";
    /// curl 7.88.1 `curl --data-binary @big.txt .../upload?x=1` (1 MiB), head as captured.
    const CURL_UPLOAD_HEAD: &[u8] = b"POST /upload?x=1 HTTP/1.1\r\nHost: 127.0.0.1:18082\r\n\
        User-Agent: curl/7.88.1\r\nAccept: */*\r\nContent-Length: 1048576\r\n\
        Content-Type: application/x-www-form-urlencoded\r\n\r\n";
    /// Python 3.11 http.server: the head and the body of a file, written separately.
    const PY_200_HEAD: &[u8] = b"HTTP/1.0 200 OK\r\nServer: SimpleHTTP/0.6 Python/3.11.7\r\n\
        Date: Wed, 25 Nov 2026 22:53:04 GMT\r\nContent-type: text/plain\r\n\
        Content-Length: 18\r\nLast-Modified: Wed, 25 Nov 2026 22:53:03 GMT\r\n\r\n";
    const PY_200_BODY: &[u8] = b"hello from python\n";
    /// Python 3.11 http.server's 404 head (its 335-byte page follows in another write).
    const PY_404_HEAD: &[u8] = b"HTTP/1.0 404 File not found\r\n\
        Server: SimpleHTTP/0.6 Python/3.11.7\r\nDate: Wed, 25 Nov 2026 22:53:04 GMT\r\n\
        Connection: close\r\nContent-Type: text/html;charset=utf-8\r\nContent-Length: 335\r\n\r\n";
    /// nginx 1.22's own 404 page, head and body in one writev.
    const NGINX_404: &[u8] = b"HTTP/1.1 404 Not Found\r\nServer: nginx/1.22.1\r\n\
        Date: Wed, 25 Nov 2026 22:53:04 GMT\r\nContent-Type: text/html\r\n\
        Content-Length: 153\r\nConnection: keep-alive\r\n\r\n\
        <html>\r\n<head><title>404 Not Found</title></head>\r\n<body>\r\n\
        <center><h1>404 Not Found</h1></center>\r\n<hr><center>nginx/1.22.1</center>\r\n\
        </body>\r\n</html>\r\n";
    /// nginx 1.22 head of a static file; the body goes by sendfile(2).
    const NGINX_FILE_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\n\
        Date: Wed, 25 Nov 2026 22:53:04 GMT\r\nContent-Type: text/html\r\n\
        Content-Length: 615\r\nLast-Modified: Tue, 14 Feb 2023 16:24:15 GMT\r\n\
        Connection: keep-alive\r\nETag: \"63ebb6af-267\"\r\nAccept-Ranges: bytes\r\n\r\n";
    /// nginx 1.22 proxying a chunked answer.
    const NGINX_CHUNKED: &[u8] = b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\n\
        Date: Wed, 25 Nov 2026 22:53:04 GMT\r\nContent-Type: application/json\r\n\
        Transfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n\
        1a\r\n{\"users\":[{\"id\":7}],\"n\":1}\r\n0\r\n\r\n";
    const NGINX_304: &[u8] = b"HTTP/1.1 304 Not Modified\r\nServer: nginx/1.22.1\r\n\
        Date: Wed, 25 Nov 2026 22:53:04 GMT\r\nLast-Modified: Tue, 14 Feb 2023 16:24:15 GMT\r\n\
        Connection: keep-alive\r\nETag: \"63ebb6af-267\"\r\n\r\n";
    const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";
    const CREATED: &[u8] = b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n";
    const NO_CONTENT: &[u8] = b"HTTP/1.1 204 No Content\r\n\r\n";

    fn request(method: &str, resource: &str) -> MessageEvent {
        MessageEvent::RequestStart(RequestInfo {
            method: method.to_owned().into(),
            resource: resource.to_owned(),
            ..RequestInfo::default()
        })
    }

    fn traced(method: &str, resource: &str, trace_id: &str) -> MessageEvent {
        MessageEvent::RequestStart(RequestInfo {
            method: method.to_owned().into(),
            resource: resource.to_owned(),
            trace_id: Some(trace_id.to_owned()),
            dns_id: None,
        })
    }

    fn response(status: &str) -> MessageEvent {
        MessageEvent::ResponseStart(ResponseInfo {
            status: status.to_owned().into(),
            is_error: status >= "400",
            ..ResponseInfo::default()
        })
    }

    /// One segment fed and what it must yield.
    #[derive(Debug)]
    struct Step {
        direction: Direction,
        data: Vec<u8>,
        len: usize,
        outcome: FeedOutcome,
    }

    fn step(direction: Direction, data: &[u8], events: Vec<MessageEvent>) -> Step {
        Step {
            direction,
            data: data.to_vec(),
            len: data.len(),
            outcome: FeedOutcome {
                events,
                ..FeedOutcome::default()
            },
        }
    }

    /// A client-to-server segment.
    fn send(data: &[u8], events: Vec<MessageEvent>) -> Step {
        step(Direction::Request, data, events)
    }

    /// A server-to-client segment.
    fn recv(data: &[u8], events: Vec<MessageEvent>) -> Step {
        step(Direction::Response, data, events)
    }

    impl Step {
        /// The syscall moved `len` bytes, of which only `data` was captured.
        fn len(mut self, len: usize) -> Self {
            self.len = len;
            self
        }

        fn unparsed(mut self, n: u32) -> Self {
            self.outcome.unparsed = n;
            self
        }

        fn truncated(mut self, n: u32) -> Self {
            self.outcome.truncated = n;
            self
        }
    }

    fn cat(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    fn run(name: &str, steps: &[Step]) {
        let mut parser = HttpParser::default();
        for (i, step) in steps.iter().enumerate() {
            let outcome = parser.feed(&Segment {
                direction: step.direction,
                data: &step.data,
                len: step.len,
            });
            assert_eq!(outcome, step.outcome, "{name}: step {i}");
        }
    }

    #[test]
    fn detects_requests_and_nothing_else() {
        let postgres_startup: &[u8] =
            b"\x00\x00\x00\x29\x00\x03\x00\x00user\x00postgres\x00database\x00app\x00\x00";
        let postgres_ssl: &[u8] = b"\x00\x00\x00\x08\x04\xd2\x16\x2f";
        let mysql_login: &[u8] = b"\x55\x00\x00\x01\x8d\xa6\xff\x09\x00\x00\x00\x01\x21";
        let dns_tcp: &[u8] = b"\x00\x1d\xab\xcd\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\
            \x07example\x03com\x00\x00\x01\x00\x01";
        let cases: &[(&[u8], bool)] = &[
            (CURL_GET, true),
            (CURL_POST, true),
            (CURL_HEAD, true),
            (b"PUT /a HTTP/1.1\r\n", true),
            (b"DELETE /a/1 HTTP/1.0\r\n\r\n", true),
            (b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", true),
            (b"PATCH /p", true),
            (b"CONNECT example.com:443 HTTP/1.1\r\n", true),
            (b"TRACE / HTTP/1.1\r\n", true),
            (b"GET http://example.com/x?y HTTP/1.1\r\n", true),
            (b"GET /", true),
            (b"", false),
            (b"GET", false),
            (b"GET ", false),
            (b"GET  / HTTP/1.1\r\n", false),
            (b"get / HTTP/1.1\r\n", false),
            (b"GETX / HTTP/1.1\r\n", false),
            (b"PROPFIND / HTTP/1.1\r\n", false),
            (b"GET / HTTP/2.0\r\n", false),
            (b"GET /\r\n", false),
            (b"GET / FTP/1.1\r\n", false),
            (b"OPTIONS *x HTTP/1.1\r\n", false),
            (b"GET * HTTP/1.1\r\n", false),
            (b"CONNECT /x HTTP/1.1\r\n", false),
            (b"HTTP/1.1 200 OK\r\n\r\n", false),
            (b"*2\r\n$3\r\nGET\r\n$3\r\nkey\r\n", false),
            (b"GET key\r\n", false),
            (b"GET /key\r\n", false),
            (b"PING\r\n", false),
            (postgres_startup, false),
            (postgres_ssl, false),
            (mysql_login, false),
            (dns_tcp, false),
        ];
        for &(data, expected) in cases {
            assert_eq!(
                looks_like_request(data),
                expected,
                "{}",
                String::from_utf8_lossy(data)
            );
        }
    }

    #[test]
    fn real_exchanges() {
        let py_404_page = vec![b'x'; 335];
        let cases: Vec<(&str, Vec<Step>)> = vec![
            (
                "curl GET, python 200 head then body",
                vec![
                    send(CURL_GET, vec![request("GET", "/api/users"), END_REQ]),
                    recv(PY_200_HEAD, vec![response("200")]),
                    recv(PY_200_BODY, vec![END_RESP]),
                ],
            ),
            (
                "curl POST with traceparent, python 404",
                vec![
                    send(
                        CURL_POST,
                        vec![traced("POST", "/submit", TRACE_ID), END_REQ],
                    ),
                    recv(PY_404_HEAD, vec![response("404")]),
                    recv(&py_404_page, vec![END_RESP]),
                ],
            ),
            (
                "curl HEAD: the response has a length but no body",
                vec![
                    send(CURL_HEAD, vec![request("HEAD", "/x"), END_REQ]),
                    recv(PY_200_HEAD, vec![response("200"), END_RESP]),
                    send(CURL_GET, vec![request("GET", "/api/users"), END_REQ]),
                    recv(NGINX_404, vec![response("404"), END_RESP]),
                ],
            ),
            (
                "nginx chunked and 304",
                vec![
                    send(CURL_GET, vec![request("GET", "/api/users"), END_REQ]),
                    recv(NGINX_CHUNKED, vec![response("200"), END_RESP]),
                    send(CURL_GET, vec![request("GET", "/api/users"), END_REQ]),
                    recv(NGINX_304, vec![response("304"), END_RESP]),
                ],
            ),
            (
                "204 without a body, then the next response in the same segment",
                vec![
                    send(
                        &cat(&[CURL_GET, CURL_GET]),
                        vec![
                            request("GET", "/api/users"),
                            END_REQ,
                            request("GET", "/api/users"),
                            END_REQ,
                        ],
                    ),
                    recv(
                        &cat(&[NO_CONTENT, PY_200_HEAD, PY_200_BODY]),
                        vec![response("204"), END_RESP, response("200"), END_RESP],
                    ),
                ],
            ),
        ];
        for (name, steps) in &cases {
            run(name, steps);
        }
    }

    #[test]
    fn pipelining() {
        let cases: Vec<(&str, Vec<Step>)> = vec![
            (
                "three requests in one segment, three responses in one segment",
                vec![
                    send(
                        &cat(&[CURL_GET, CURL_POST, CURL_HEAD]),
                        vec![
                            request("GET", "/api/users"),
                            END_REQ,
                            traced("POST", "/submit", TRACE_ID),
                            END_REQ,
                            request("HEAD", "/x"),
                            END_REQ,
                        ],
                    ),
                    recv(
                        &cat(&[NGINX_CHUNKED, NGINX_404, PY_200_HEAD]),
                        vec![
                            response("200"),
                            END_RESP,
                            response("404"),
                            END_RESP,
                            response("200"),
                            END_RESP,
                        ],
                    ),
                ],
            ),
            (
                "responses spread across segment boundaries",
                vec![
                    send(
                        &cat(&[CURL_GET, CURL_GET, CURL_GET]),
                        vec![
                            request("GET", "/api/users"),
                            END_REQ,
                            request("GET", "/api/users"),
                            END_REQ,
                            request("GET", "/api/users"),
                            END_REQ,
                        ],
                    ),
                    recv(&NGINX_404[..160], vec![response("404")]),
                    recv(
                        &cat(&[&NGINX_404[160..], &NGINX_CHUNKED[..170]]),
                        vec![END_RESP, response("200")],
                    ),
                    recv(
                        &cat(&[&NGINX_CHUNKED[170..], NO_CONTENT]),
                        vec![END_RESP, response("204"), END_RESP],
                    ),
                ],
            ),
            (
                "blank lines between requests are skipped",
                vec![send(
                    &cat(&[CURL_POST, b"\r\n", CURL_GET]),
                    vec![
                        traced("POST", "/submit", TRACE_ID),
                        END_REQ,
                        request("GET", "/api/users"),
                        END_REQ,
                    ],
                )],
            ),
        ];
        for (name, steps) in &cases {
            run(name, steps);
        }
    }

    #[test]
    fn split_heads() {
        let cases: Vec<(&str, Vec<Step>)> = vec![
            (
                "request head in three segments, response head split at its CRLF",
                vec![
                    send(&CURL_POST[..10], vec![]),
                    send(&CURL_POST[10..120], vec![]),
                    send(
                        &CURL_POST[120..],
                        vec![traced("POST", "/submit", TRACE_ID), END_REQ],
                    ),
                    recv(&NGINX_404[..NGINX_404.len() - 155], vec![]),
                    recv(
                        &NGINX_404[NGINX_404.len() - 155..],
                        vec![response("404"), END_RESP],
                    ),
                ],
            ),
            (
                "the body's first bytes come with the end of the head",
                vec![
                    send(CURL_GET, vec![request("GET", "/api/users"), END_REQ]),
                    recv(&PY_200_HEAD[..PY_200_HEAD.len() - 3], vec![]),
                    recv(&PY_200_HEAD[PY_200_HEAD.len() - 3..], vec![response("200")]),
                    recv(&PY_200_BODY[..5], vec![]),
                    recv(&PY_200_BODY[5..], vec![END_RESP]),
                ],
            ),
        ];
        for (name, steps) in &cases {
            run(name, steps);
        }
        // Every split point of a request, then of a response, frames the same.
        for direction in [Direction::Request, Direction::Response] {
            let (bytes, events) = match direction {
                Direction::Request => (
                    CURL_POST,
                    vec![traced("POST", "/submit", TRACE_ID), END_REQ],
                ),
                Direction::Response => (NGINX_CHUNKED, vec![response("200"), END_RESP]),
            };
            for at in 1..bytes.len() {
                let mut parser = HttpParser::default();
                let mut seen = FeedOutcome::default();
                for part in [&bytes[..at], &bytes[at..]] {
                    let out = parser.feed(&Segment {
                        direction,
                        data: part,
                        len: part.len(),
                    });
                    seen.events.extend(out.events);
                    seen.unparsed += out.unparsed;
                    seen.truncated += out.truncated;
                }
                let expected = FeedOutcome {
                    events: events.clone(),
                    ..FeedOutcome::default()
                };
                assert_eq!(seen, expected, "{direction:?} split at {at}");
            }
        }
    }

    #[test]
    fn cut_heads() {
        let mut long_request = b"GET /search?q=1 HTTP/1.1\r\nHost: example.com\r\n\
            traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01\r\nCookie: "
            .to_vec();
        long_request.resize(1024, b'c');
        let mut long_response = b"HTTP/1.1 500 Internal Server Error\r\nX-Debug: ".to_vec();
        long_response.resize(1024, b'd');
        let cases: Vec<(&str, Vec<Step>)> = vec![
            (
                "a request head beyond the capture ends with its segment; its rest is skipped",
                vec![
                    send(
                        &long_request,
                        vec![
                            traced("GET", "/search", "0af7651916cd43dd8448eb211c80319c"),
                            END_REQ,
                        ],
                    )
                    .len(5000)
                    .truncated(1),
                    send(b"cccccccccc\r\n\r\n", vec![]),
                    recv(NO_CONTENT, vec![response("204"), END_RESP]),
                    send(CURL_GET, vec![request("GET", "/api/users"), END_REQ]),
                ],
            ),
            (
                "a response head beyond the capture stays open until the next request",
                vec![
                    send(CURL_GET, vec![request("GET", "/api/users"), END_REQ]),
                    recv(&long_response, vec![response("500")])
                        .len(9000)
                        .truncated(1),
                    recv(b"more of it", vec![]).len(70000),
                    send(CURL_HEAD, vec![END_RESP, request("HEAD", "/x"), END_REQ]),
                    recv(PY_200_HEAD, vec![response("200"), END_RESP]),
                ],
            ),
            (
                "a cut HEAD response needs no framing",
                vec![
                    send(CURL_HEAD, vec![request("HEAD", "/x"), END_REQ]),
                    recv(&long_response, vec![response("500"), END_RESP])
                        .len(2000)
                        .truncated(1),
                    send(CURL_GET, vec![request("GET", "/api/users"), END_REQ]),
                ],
            ),
            (
                "a response head over 8 KiB in uncut segments",
                vec![
                    send(CURL_GET, vec![request("GET", "/api/users"), END_REQ]),
                    recv(&long_response, vec![]),
                    recv(&[b'd'; 4096], vec![]),
                    recv(&[b'd'; 4096], vec![response("500")]).truncated(1),
                    recv(&[b'd'; 4096], vec![]),
                    send(
                        CURL_GET,
                        vec![END_RESP, request("GET", "/api/users"), END_REQ],
                    ),
                ],
            ),
            (
                "cut inside the status code: nothing to report",
                vec![
                    send(CURL_GET, vec![request("GET", "/api/users"), END_REQ]),
                    recv(b"HTTP/1.1 2", vec![]).len(300).unparsed(1),
                    recv(NO_CONTENT, vec![response("204"), END_RESP]),
                ],
            ),
        ];
        for (name, steps) in &cases {
            run(name, steps);
        }
    }

    /// A message of `head` and a 1 MiB body written in syscalls of `syscall` bytes of which
    /// `capture` are seen, the last one followed by `next` when it fits in the capture.
    fn large_message(
        direction: Direction,
        head: &[u8],
        start: MessageEvent,
        (capture, syscall): (usize, usize),
        next: (&[u8], Vec<MessageEvent>),
    ) -> Vec<Step> {
        let end = MessageEvent::End { direction };
        let mut left = head.len() + (1 << 20);
        let mut steps = Vec::new();
        let mut events = vec![start];
        while left > syscall {
            let mut data = if events.is_empty() {
                Vec::new()
            } else {
                head.to_vec()
            };
            data.resize(capture.min(syscall), b'z');
            steps.push(step(direction, &data, std::mem::take(&mut events)).len(syscall));
            left -= syscall;
        }
        if left <= capture {
            let data = cat(&[&vec![b'z'; left], next.0]);
            let mut events = vec![end];
            events.extend(next.1);
            steps.push(step(direction, &data, events));
        } else {
            steps.push(step(direction, &vec![b'z'; capture], vec![end]).len(left));
            steps.push(step(direction, next.0, next.1));
        }
        steps
    }

    #[test]
    fn large_bodies_counted_by_length() {
        let response_head = b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\
            Content-Length: 1048576\r\n\r\n";
        for sizes in [
            (1024, 65536),
            (1024, 4096),
            (256, 1000),
            (1024, 1 << 20),
            (1024, 1000),
        ] {
            let mut steps = vec![send(
                &cat(&[CURL_GET, CURL_GET]),
                vec![
                    request("GET", "/api/users"),
                    END_REQ,
                    request("GET", "/api/users"),
                    END_REQ,
                ],
            )];
            steps.extend(large_message(
                Direction::Response,
                response_head,
                response("200"),
                sizes,
                (NGINX_404, vec![response("404"), END_RESP]),
            ));
            run(&format!("1 MiB response, {sizes:?}"), &steps);

            let steps = large_message(
                Direction::Request,
                CURL_UPLOAD_HEAD,
                request("POST", "/upload"),
                sizes,
                (CURL_HEAD, vec![request("HEAD", "/x"), END_REQ]),
            );
            run(&format!("1 MiB upload, {sizes:?}"), &steps);
        }
    }

    #[test]
    fn chunked_bodies() {
        const HEAD: &[u8] = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
        let head = HEAD;
        let big_chunk = cat(&[head, b"2000\r\n", &[b'j'; 1024 - HEAD.len() - 6]]);
        let upload_head = b"PUT /files/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n";
        let cases: Vec<(&str, Vec<Step>)> = vec![
            (
                "chunks cut by the capture: data and CRLF counted unseen",
                vec![
                    send(CURL_GET, vec![request("GET", "/api/users"), END_REQ]),
                    // 0x2000 data bytes and their CRLF in one syscall.
                    recv(&big_chunk, vec![response("200")]).len(head.len() + 6 + 0x2000 + 2),
                    recv(b"1000\r\njjjj", vec![]).len(6 + 0x1000 + 2),
                    recv(b"0\r\n\r\n", vec![END_RESP]),
                ],
            ),
            (
                "the last chunk unseen right after the data",
                vec![
                    send(CURL_GET, vec![request("GET", "/api/users"), END_REQ]),
                    recv(&big_chunk, vec![response("200"), END_RESP])
                        .len(head.len() + 6 + 0x2000 + 2 + 5),
                    send(CURL_HEAD, vec![request("HEAD", "/x"), END_REQ]),
                ],
            ),
            (
                "a chunk size unseen: the response ends at the next request",
                vec![
                    send(CURL_GET, vec![request("GET", "/api/users"), END_REQ]),
                    recv(&big_chunk, vec![response("200")])
                        .len(head.len() + 6 + 0x2000 + 2 + 100)
                        .truncated(1),
                    recv(b"jjjjjjjj\r\n0\r\n\r\n", vec![]),
                    send(
                        CURL_GET,
                        vec![END_RESP, request("GET", "/api/users"), END_REQ],
                    ),
                    recv(NO_CONTENT, vec![response("204"), END_RESP]),
                ],
            ),
            (
                "extensions, trailers and bare LFs",
                vec![
                    send(CURL_GET, vec![request("GET", "/api/users"), END_REQ]),
                    recv(
                        &cat(&[
                            head,
                            b"5;name=value\r\nhello\r\n3\nabc\n0\r\nExpires: never\r\n",
                        ]),
                        vec![response("200")],
                    ),
                    recv(b"Checksum: 1\r\n\r\n", vec![END_RESP]),
                ],
            ),
            (
                "a chunked upload",
                vec![
                    send(
                        &cat(&[upload_head, b"4\r\nabcd\r\n"]),
                        vec![request("PUT", "/files/a")],
                    ),
                    send(b"A\r\n0123456789\r\n", vec![]),
                    send(b"0\r\n\r\n", vec![END_REQ]),
                    recv(CREATED, vec![response("201"), END_RESP]),
                ],
            ),
            (
                "a malformed chunk size: the response has no framing left",
                vec![
                    send(CURL_GET, vec![request("GET", "/api/users"), END_REQ]),
                    recv(&cat(&[head, b"zz\r\nhello\r\n"]), vec![response("200")]).unparsed(1),
                    recv(b"more", vec![]),
                    send(
                        CURL_GET,
                        vec![END_RESP, request("GET", "/api/users"), END_REQ],
                    ),
                ],
            ),
            (
                "a malformed chunked upload ends with its segment",
                vec![
                    send(
                        &cat(&[upload_head, b"4\r\nabcdXY"]),
                        vec![request("PUT", "/files/a"), END_REQ],
                    )
                    .unparsed(1),
                    send(b"0\r\n\r\n", vec![]),
                    send(CURL_HEAD, vec![request("HEAD", "/x"), END_REQ]),
                ],
            ),
        ];
        for (name, steps) in &cases {
            run(name, steps);
        }
    }

    #[test]
    fn interim_responses_and_tunnels() {
        let expect_head = b"POST /upload HTTP/1.1\r\nHost: 127.0.0.1:18082\r\n\
            User-Agent: curl/7.88.1\r\nAccept: */*\r\nContent-Length: 5\r\n\
            Expect: 100-continue\r\n\r\n";
        let connect = b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\
            User-Agent: curl/7.88.1\r\nProxy-Connection: Keep-Alive\r\n\r\n";
        let tls_hello = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03";
        let upgrade = b"GET /chat HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n\
            Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
            Sec-WebSocket-Version: 13\r\n\r\n";
        let switching = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\
            Connection: Upgrade\r\nSec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
        let cases: Vec<(&str, Vec<Step>)> =
            vec![
                (
                    "100 Continue, then the body, then the answer",
                    vec![
                        send(expect_head, vec![request("POST", "/upload")]),
                        recv(CONTINUE, vec![]),
                        send(b"hello", vec![END_REQ]),
                        recv(CREATED, vec![response("201"), END_RESP]),
                    ],
                ),
                (
                    "interim responses in the same segment as the final one",
                    vec![
                    send(CURL_GET, vec![request("GET", "/api/users"), END_REQ]),
                    recv(
                        &cat(&[
                            CONTINUE,
                            b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n",
                            NGINX_404,
                        ]),
                        vec![response("404"), END_RESP],
                    ),
                ],
                ),
                (
                    "an answer before the announced body: the body never comes",
                    vec![
                        send(expect_head, vec![request("POST", "/upload")]),
                        recv(
                            b"HTTP/1.1 417 Expectation Failed\r\nContent-Length: 0\r\n\r\n",
                            vec![response("417"), END_RESP],
                        ),
                        send(
                            CURL_GET,
                            vec![END_REQ, request("GET", "/api/users"), END_REQ],
                        )
                        .unparsed(1),
                    ],
                ),
                (
                    "CONNECT accepted: the tunnel is not HTTP",
                    vec![
                        send(
                            connect,
                            vec![request("CONNECT", "example.com:443"), END_REQ],
                        ),
                        recv(
                            b"HTTP/1.1 200 Connection established\r\n\r\n",
                            vec![response("200"), END_RESP],
                        ),
                        send(tls_hello, vec![]).len(517),
                        recv(b"\x16\x03\x03\x00\x7a\x02", vec![]).len(4000),
                        send(CURL_GET, vec![]),
                    ],
                ),
                (
                    "CONNECT refused: still HTTP",
                    vec![
                    send(connect, vec![request("CONNECT", "example.com:443"), END_REQ]),
                    recv(
                        b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n",
                        vec![response("407"), END_RESP],
                    ),
                    send(CURL_GET, vec![request("GET", "/api/users"), END_REQ]),
                ],
                ),
                (
                    "WebSocket upgrade",
                    vec![
                        send(upgrade, vec![request("GET", "/chat"), END_REQ]),
                        recv(switching, vec![response("101"), END_RESP]),
                        send(b"\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58", vec![]),
                    ],
                ),
            ];
        for (name, steps) in &cases {
            run(name, steps);
        }
    }

    #[test]
    fn bodies_without_framing() {
        let until_close = b"HTTP/1.0 200 OK\r\nServer: BaseHTTP/0.6 Python/3.11.7\r\n\
            Content-Type: text/plain\r\n\r\n";
        let cases: Vec<(&str, Vec<Step>)> = vec![
            (
                "no length: open until the close (or a next request)",
                vec![
                    send(CURL_GET, vec![request("GET", "/api/users"), END_REQ]),
                    recv(&cat(&[until_close, b"some text"]), vec![response("200")]),
                    recv(b"HTTP/1.1 is a protocol", vec![]),
                    recv(b"more text", vec![]).len(5000),
                    send(
                        CURL_GET,
                        vec![END_RESP, request("GET", "/api/users"), END_REQ],
                    ),
                ],
            ),
            (
                "no length, pipelined: a status line ends the body",
                vec![
                    send(
                        &cat(&[CURL_GET, CURL_HEAD]),
                        vec![
                            request("GET", "/api/users"),
                            END_REQ,
                            request("HEAD", "/x"),
                            END_REQ,
                        ],
                    ),
                    recv(until_close, vec![response("200")]),
                    recv(PY_200_HEAD, vec![END_RESP, response("200"), END_RESP]),
                ],
            ),
            (
                "sendfile(2): a file body is never seen, the next request ends the response",
                vec![
                    send(CURL_GET, vec![request("GET", "/api/users"), END_REQ]),
                    recv(NGINX_FILE_HEAD, vec![response("200")]),
                    send(
                        CURL_GET,
                        vec![END_RESP, request("GET", "/api/users"), END_REQ],
                    )
                    .unparsed(1),
                    recv(NGINX_404, vec![response("404"), END_RESP]),
                ],
            ),
            (
                "lost body bytes: a status line for a waiting request ends the body",
                vec![
                    send(
                        &cat(&[CURL_GET, CURL_GET]),
                        vec![
                            request("GET", "/api/users"),
                            END_REQ,
                            request("GET", "/api/users"),
                            END_REQ,
                        ],
                    ),
                    recv(&NGINX_404[..170], vec![response("404")]),
                    recv(NGINX_304, vec![END_RESP, response("304"), END_RESP]).unparsed(1),
                ],
            ),
            (
                "a body that contains a status line is still a body",
                vec![
                    send(CURL_GET, vec![request("GET", "/api/users"), END_REQ]),
                    recv(&NGINX_404[..170], vec![response("404")]),
                    recv(&NGINX_304[..138], vec![END_RESP]),
                ],
            ),
        ];
        for (name, steps) in &cases {
            run(name, steps);
        }
    }

    #[test]
    fn garbage_is_counted_and_skipped() {
        let cases: Vec<(&str, Vec<Step>)> = vec![
            (
                "garbage, then a request",
                vec![
                    send(b"\x00\x01\x02garbage", vec![]).unparsed(1),
                    send(b"get / http/1.1\r\n\r\n", vec![]).unparsed(1),
                    send(CURL_GET, vec![request("GET", "/api/users"), END_REQ]),
                    recv(b"HTTP/2 200\r\n\r\n", vec![]).unparsed(1),
                    recv(b"HTTP/1.1 20x OK\r\n\r\n", vec![]).unparsed(1),
                    recv(b"HTTP/1.1 200OK\r\n\r\n", vec![]).unparsed(1),
                    recv(NO_CONTENT, vec![response("204"), END_RESP]),
                ],
            ),
            (
                "garbage after a request in the same segment",
                vec![
                    send(
                        &cat(&[CURL_GET, b"\xff\xfe junk"]),
                        vec![request("GET", "/api/users"), END_REQ],
                    )
                    .unparsed(1),
                ],
            ),
            (
                "a message wholly beyond the capture",
                vec![
                    send(CURL_GET, vec![request("GET", "/api/users"), END_REQ])
                        .len(CURL_GET.len() + 80)
                        .unparsed(1),
                    send(b"", vec![]).len(300).unparsed(1),
                ],
            ),
            (
                "bad or conflicting lengths",
                vec![
                    send(
                        b"POST /a HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
                        vec![request("POST", "/a"), END_REQ],
                    )
                    .unparsed(1),
                    send(
                        b"POST /b HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
                        vec![request("POST", "/b"), END_REQ],
                    ),
                    recv(
                        b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
                        vec![response("200")],
                    )
                    .unparsed(1),
                    recv(
                        b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
                        vec![END_RESP, response("200"), END_RESP],
                    ),
                ],
            ),
        ];
        for (name, steps) in &cases {
            run(name, steps);
        }
    }

    #[test]
    fn request_lines() {
        let cases: &[(&[u8], &str, &str)] = &[
            (b"GET /a/b?c=d#e HTTP/1.1\r\n\r\n", "GET", "/a/b"),
            (b"GET /a#e?f HTTP/1.1\r\n\r\n", "GET", "/a"),
            (
                b"GET http://example.com:8080/p/q?x=1 HTTP/1.1\r\n\r\n",
                "GET",
                "/p/q",
            ),
            (b"GET HTTPS://example.com HTTP/1.1\r\n\r\n", "GET", "/"),
            (b"GET http://example.com?x=1 HTTP/1.1\r\n\r\n", "GET", "/"),
            (b"OPTIONS * HTTP/1.1\r\n\r\n", "OPTIONS", "*"),
            (
                b"CONNECT [::1]:8443 HTTP/1.1\r\n\r\n",
                "CONNECT",
                "[::1]:8443",
            ),
            (
                b"DELETE /items/%C3%A9 HTTP/1.0\n\n",
                "DELETE",
                "/items/%C3%A9",
            ),
            (b"PROPFIND /dav/ HTTP/1.1\r\n\r\n", "PROPFIND", "/dav/"),
            (b"TRACE / HTTP/1.1\r\nHost: x\r\n\r\n", "TRACE", "/"),
        ];
        for &(bytes, method, resource) in cases {
            let mut parser = HttpParser::default();
            let outcome = parser.feed(&Segment {
                direction: Direction::Request,
                data: bytes,
                len: bytes.len(),
            });
            let expected = FeedOutcome {
                events: vec![request(method, resource), END_REQ],
                ..FeedOutcome::default()
            };
            assert_eq!(outcome, expected, "{}", String::from_utf8_lossy(bytes));
        }
    }

    #[test]
    fn traceparent_values() {
        let cases: &[(&[u8], Option<&str>)] = &[
            (
                b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                Some(TRACE_ID),
            ),
            (
                b"00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-00",
                Some(TRACE_ID),
            ),
            (
                b"01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-future",
                Some(TRACE_ID),
            ),
            (
                b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
                None,
            ),
            (
                b"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                None,
            ),
            (
                b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
                None,
            ),
            (
                b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                None,
            ),
            (
                b"00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",
                None,
            ),
            (
                b"00-4bf92f3577b34da6a3ce929d0e0e473g-00f067aa0ba902b7-01",
                None,
            ),
            (
                b"00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",
                None,
            ),
            (b"", None),
        ];
        for &(value, expected) in cases {
            assert_eq!(
                parse_traceparent(value).as_deref(),
                expected,
                "{}",
                String::from_utf8_lossy(value)
            );
        }
        // Header names are case-insensitive and the value may be padded.
        let bytes = b"GET / HTTP/1.1\r\n\
            TraceParent:   00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01  \r\n\r\n";
        let outcome = HttpParser::default().feed(&Segment {
            direction: Direction::Request,
            data: bytes,
            len: bytes.len(),
        });
        assert_eq!(outcome.events, vec![traced("GET", "/", TRACE_ID), END_REQ]);
    }

    #[test]
    fn credentials_are_never_kept() {
        let bytes = b"GET /me HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer SECRET-TOKEN\r\n\
            Proxy-Authorization: Basic SECRET-PROXY\r\nCookie: sid=SECRET-COOKIE\r\n\r\n";
        let answer = b"HTTP/1.1 200 OK\r\nSet-Cookie: sid=SECRET-SET; HttpOnly\r\n\
            Content-Length: 0\r\n\r\n";
        for (direction, bytes) in [
            (Direction::Request, &bytes[..]),
            (Direction::Response, &answer[..]),
        ] {
            for at in 1..bytes.len() {
                let mut parser = HttpParser::default();
                if direction == Direction::Response {
                    parser.feed(&Segment {
                        direction: Direction::Request,
                        data: CURL_GET,
                        len: CURL_GET.len(),
                    });
                }
                for part in [&bytes[..at], &bytes[at..]] {
                    let outcome = parser.feed(&Segment {
                        direction,
                        data: part,
                        len: part.len(),
                    });
                    let kept = format!("{parser:?} {outcome:?}");
                    assert!(!kept.contains("SECRET"), "split at {at}: {kept}");
                    let kept_bytes = parser.request.head.iter().chain(&parser.response.head);
                    let text: Vec<u8> = kept_bytes.copied().collect();
                    assert!(!text.windows(6).any(|w| w == b"SECRET"), "split at {at}");
                }
            }
        }
    }

    /// Arbitrary bytes, cut or not, in either direction: no panic, bounded state, and every
    /// end has a start.
    #[test]
    fn arbitrary_bytes() {
        let pieces: &[&[u8]] = &[
            CURL_GET,
            CURL_POST,
            NGINX_CHUNKED,
            NGINX_404,
            CONTINUE,
            b"HTTP/1.1 200 OK\r\n",
            b"Content-Length: 7\r\n",
            b"Transfer-Encoding: chunked\r\n",
            b"\r\n",
            b"0\r\n\r\n",
            b"5\r\nhello\r\n",
            b"HEAD / HTTP/1.1\r\n",
            b"CONNECT a:1 HTTP/1.1\r\n",
            b"HTTP/1.1 101 ",
        ];
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..3000 {
            let mut parser = HttpParser::default();
            let mut open = [false, false];
            for _ in 0..(next() % 12) {
                let direction = if next() % 2 == 0 {
                    Direction::Request
                } else {
                    Direction::Response
                };
                let mut data = Vec::new();
                for _ in 0..(next() % 4) {
                    if next() % 3 == 0 {
                        data.extend((0..next() % 40).map(|_| next() as u8));
                    } else {
                        let piece = pieces[(next() % pieces.len() as u64) as usize];
                        let from = (next() % (piece.len() as u64 + 1)) as usize;
                        data.extend_from_slice(&piece[from.min(piece.len() / 2)..]);
                    }
                }
                let len = match next() % 4 {
                    0 => data.len() + (next() % 100_000) as usize,
                    1 => (next() % (data.len() as u64 + 1)) as usize,
                    _ => data.len(),
                };
                let outcome = parser.feed(&Segment {
                    direction,
                    data: &data,
                    len,
                });
                for event in outcome.events {
                    let (index, starts) = match event {
                        MessageEvent::RequestStart(_) => (0, true),
                        MessageEvent::ResponseStart(_) => (1, true),
                        MessageEvent::End {
                            direction: Direction::Request,
                        } => (0, false),
                        MessageEvent::End {
                            direction: Direction::Response,
                        } => (1, false),
                        other => panic!("a stream event from an ordered parser: {other:?}"),
                    };
                    assert_ne!(
                        open[index], starts,
                        "start while open, or end without start"
                    );
                    open[index] = starts;
                }
                assert!(parser.request.head.len() <= MAX_HEAD);
                assert!(parser.response.head.len() <= MAX_HEAD);
                assert!(parser.awaiting.len() <= MAX_AWAITING);
            }
        }
    }
}

/// Header names whose values are credentials: [`redact_credentials`] masks them.
const CREDENTIAL_HEADERS: [&[u8]; 4] = [
    b"authorization",
    b"proxy-authorization",
    b"cookie",
    b"set-cookie",
];

/// A copy of `bytes` (the start of an HTTP message, or any bytes) with the value of every
/// `Authorization`, `Proxy-Authorization`, `Cookie` and `Set-Cookie` header line replaced by
/// `***`. A header line cut at the end of `bytes` is masked to the end.
pub fn redact_credentials(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    for line in bytes.split_inclusive(|&b| b == b'\n') {
        let colon = line.iter().position(|&b| b == b':');
        let credential = colon.is_some_and(|c| {
            let name = line[..c].trim_ascii();
            CREDENTIAL_HEADERS
                .iter()
                .any(|h| name.eq_ignore_ascii_case(h))
        });
        match colon {
            Some(c) if credential => {
                out.extend_from_slice(&line[..=c]);
                out.extend_from_slice(b" ***");
                if line.ends_with(b"\r\n") {
                    out.extend_from_slice(b"\r\n");
                } else if line.ends_with(b"\n") {
                    out.push(b'\n');
                }
            }
            _ => out.extend_from_slice(line),
        }
    }
    out
}

#[cfg(test)]
mod redaction_tests {
    use super::redact_credentials;

    #[test]
    fn credential_headers_are_masked_in_any_case_and_when_cut() {
        let head = b"GET / HTTP/1.1\r\nHost: a\r\nauthorization: Bearer kl-1\r\n\
            Cookie: s=kl-2\r\nX-Cookie-Note: kept\r\nSet-Cookie: kl-3";
        assert_eq!(
            String::from_utf8(redact_credentials(head)).unwrap(),
            "GET / HTTP/1.1\r\nHost: a\r\nauthorization: ***\r\nCookie: ***\r\n\
             X-Cookie-Note: kept\r\nSet-Cookie: ***"
        );
    }
}
