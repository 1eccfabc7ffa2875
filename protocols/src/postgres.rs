//! PostgreSQL frontend/backend protocol v3: queries and their responses.
//!
//! Messages are a type byte and a 4-byte big-endian length (which counts itself), so they are
//! framed by length through bytes beyond the capture size; only the startup messages have no
//! type byte, and the answer to `SSLRequest`/`GSSENCRequest` is a single byte. Startup,
//! authentication, `ParameterStatus`, `BackendKeyData` and the first `ReadyForQuery` are not
//! calls.
//!
//! Calls: a simple `Query`, whose response runs to `ReadyForQuery`; an extended-protocol batch
//! (from its first `Parse`/`Bind`/`Describe`/`Execute`/`Close` to its `Sync`), whose response
//! also runs to `ReadyForQuery` and whose statement comes from its `Parse`, or from the
//! named (or last unnamed) statement a `Bind` refers to; a `FunctionCall`. `Terminate` is not
//! a call (it has no response). Batches are pipelined: each `ReadyForQuery` ends the oldest
//! open call. A response's status is the SQLSTATE of the first `ErrorResponse` seen in the
//! segment where the response began.
//!
//! When a message header falls in bytes not captured (rows of a large result), framing is
//! lost: the response ends when a segment ends with `ReadyForQuery`, or else when the next
//! request starts. `COPY` data is framed like any message. TLS and GSS encryption are not
//! parsed.

use std::collections::VecDeque;

use crate::{
    bounded_map::BoundedMap,
    framing::{Framer, Input, Message, Piece},
    sql::{self, Statement, text_field},
    stream::{
        Direction, FeedOutcome, MessageEvent, RequestInfo, ResponseInfo, Segment, StreamParser,
    },
};

/// Protocol 3.x in a StartupMessage (major version in the high 16 bits).
const PROTOCOL_MAJOR_3: u32 = 3;
const CANCEL_REQUEST: u32 = 80_877_102;
const SSL_REQUEST: u32 = 80_877_103;
const GSSENC_REQUEST: u32 = 80_877_104;
/// Largest startup message the server accepts.
const MAX_STARTUP: usize = 10_000;
/// Largest message length taken as plausible (the server's limit is 1 GiB).
const MAX_MESSAGE: usize = 1 << 30;
/// Typed message header: type byte and length.
const HEADER: usize = 5;
/// Message types a client sends after startup.
const FRONTEND_TYPES: &[u8] = b"QPBEDCHSXFdcfp";
/// Message types a server sends.
const BACKEND_TYPES: &[u8] = b"RKSZENA123CDGHITWcdnstvV";
/// Prepared statements remembered per connection.
const MAX_STATEMENTS: usize = 1024;
/// Requests remembered while their `ReadyForQuery` is awaited.
const MAX_WAITING: usize = 1024;
/// Longest error message kept, in bytes.
const MAX_ERROR: usize = 512;
/// Longest statement name kept, in bytes (the server's limit is 63).
const MAX_NAME: usize = 128;

/// Whether `data` starts like a PostgreSQL session: a StartupMessage (protocol 3), an
/// SSLRequest, GSSENCRequest or CancelRequest; or, for a session already open when it was
/// first seen, a simple `Query` or a `Parse` with plausible SQL text.
pub fn looks_like_startup(data: &[u8]) -> bool {
    match data.first() {
        Some(b'Q') => typed_body(data).is_some_and(|(body, whole)| plausible_sql(body, whole)),
        Some(b'P') => typed_body(data).is_some_and(|(body, whole)| {
            let Some(name_end) = body.iter().position(|&c| c == 0) else {
                return false;
            };
            name_end <= MAX_NAME
                && body[..name_end].iter().all(|c| c.is_ascii_graphic())
                && plausible_sql(&body[name_end + 1..], false)
                && (!whole || body.len() > name_end + 1)
        }),
        _ => {
            let Some((len, code, params)) = untyped_header(data) else {
                return false;
            };
            match code {
                SSL_REQUEST | GSSENC_REQUEST => len == 8,
                CANCEL_REQUEST => len == 16,
                _ if code >> 16 == PROTOCOL_MAJOR_3 && code & 0xffff < 16 => {
                    (9..=MAX_STARTUP).contains(&len)
                        && match params.iter().position(|&c| c == 0) {
                            Some(end) => end > 0 && params[..end].iter().all(u8::is_ascii_graphic),
                            None => params.iter().all(u8::is_ascii_graphic),
                        }
                }
                _ => false,
            }
        }
    }
}

/// The length and code of an untyped (startup) message, and the captured bytes after them.
fn untyped_header(data: &[u8]) -> Option<(usize, u32, &[u8])> {
    let (head, rest) = data.split_first_chunk::<8>()?;
    let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
    let code = u32::from_be_bytes([head[4], head[5], head[6], head[7]]);
    Some((len, code, rest))
}

/// The captured body of the typed message `data` starts with, and whether it is whole.
fn typed_body(data: &[u8]) -> Option<(&[u8], bool)> {
    let len = be32(data.get(1..HEADER)?);
    if !(HEADER..=MAX_MESSAGE).contains(&len) {
        return None;
    }
    let end = (1 + len).min(data.len());
    Some((&data[HEADER..end], data.len() > len))
}

/// Whether `text` is NUL-terminated SQL (or the start of it, when not `whole`).
fn plausible_sql(text: &[u8], whole: bool) -> bool {
    let sql = match text.iter().position(|&c| c == 0) {
        Some(end) if !whole || end + 1 == text.len() => &text[..end],
        Some(_) => return false,
        None if whole => return false,
        None => text,
    };
    sql.iter()
        .all(|&c| c >= 0x20 || matches!(c, b'\t' | b'\n' | b'\r'))
        && !sql::verb(&String::from_utf8_lossy(sql)).is_empty()
}

fn be32(b: &[u8]) -> usize {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize
}

/// PostgreSQL framing of one connection.
#[derive(Debug, Default)]
pub struct PostgresParser {
    requests: Framer,
    responses: Framer,
    conversation: Conversation,
}

impl StreamParser for PostgresParser {
    fn feed_into(&mut self, segment: &Segment<'_>, out: &mut FeedOutcome) {
        let c = &mut self.conversation;
        if c.phase == Phase::Opaque {
            return;
        }
        let mut input = Input::new(segment);
        match segment.direction {
            Direction::Request => {
                if self.requests.is_lost() {
                    if !looks_like_message(segment, FRONTEND_TYPES) {
                        out.unparsed += 1;
                        return;
                    }
                    self.requests.resync();
                }
                c.responses_lost = self.responses.is_lost();
                loop {
                    let untyped = c.phase == Phase::Startup
                        && self.requests.next_first_byte(&input) == Some(0);
                    let piece = if untyped {
                        self.requests.next(&mut input, 8, startup_size)
                    } else {
                        self.requests
                            .next(&mut input, HEADER, |h| typed_size(h, FRONTEND_TYPES))
                    };
                    let Some(piece) = piece else { break };
                    match piece {
                        Piece::Message(m) if untyped => c.on_startup(&m),
                        Piece::Message(m) => {
                            let ended = m.ended;
                            c.on_request(&m, out);
                            if ended {
                                c.request_ended(out);
                            }
                        }
                        Piece::Rest => c.request_ended(out),
                        Piece::Lost | Piece::Invalid => {
                            if matches!(piece, Piece::Lost) {
                                out.truncated += 1;
                            } else {
                                out.unparsed += 1;
                            }
                            c.request_ended(out);
                            c.requests_lost(out);
                        }
                    }
                }
                c.start_batch(out);
                if c.response_cut_off || (c.new_request && self.responses.is_lost()) {
                    self.responses.resync();
                }
                c.response_cut_off = false;
                c.new_request = false;
            }
            Direction::Response => {
                if c.awaiting_byte && self.responses.at_boundary() {
                    c.awaiting_byte = false;
                    match input.peek() {
                        Some(b'S' | b'G') => {
                            c.phase = Phase::Opaque;
                            return;
                        }
                        Some(b'N') => {
                            input.take();
                        }
                        _ => {}
                    }
                }
                if self.responses.is_lost() {
                    if !segment.is_cut() && ends_with_ready(segment.data) {
                        c.lost_response_ended(out);
                        self.responses.resync();
                    }
                    return;
                }
                while let Some(piece) = self
                    .responses
                    .next(&mut input, HEADER, |h| typed_size(h, BACKEND_TYPES))
                {
                    match piece {
                        Piece::Message(m) => c.on_response(&m, out),
                        Piece::Rest => {}
                        Piece::Lost => out.truncated += 1,
                        Piece::Invalid => out.unparsed += 1,
                    }
                }
                c.flush_start(out);
            }
        }
    }
}

/// Whether `data` ends with a whole `ReadyForQuery` message.
fn ends_with_ready(data: &[u8]) -> bool {
    matches!(data, [.., b'Z', 0, 0, 0, 5, b'I' | b'T' | b'E'])
}

fn startup_size(header: &[u8]) -> Option<usize> {
    let len = be32(header);
    (8..=MAX_STARTUP).contains(&len).then_some(len)
}

fn typed_size(header: &[u8], types: &[u8]) -> Option<usize> {
    let len = be32(&header[1..]);
    (types.contains(&header[0]) && (4..=MAX_MESSAGE).contains(&len)).then_some(1 + len)
}

/// Whether a segment, read while request framing is lost, starts with a whole message header.
fn looks_like_message(segment: &Segment<'_>, types: &[u8]) -> bool {
    let d = segment.data;
    d.len() >= HEADER && typed_size(d, types).is_some_and(|size| size <= segment.len)
}

/// Where the connection is.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Startup and authentication, up to the first `ReadyForQuery`.
    #[default]
    Startup,
    /// Requests and responses.
    Ready,
    /// TLS or GSS encryption: nothing more is parsed.
    Opaque,
}

/// An extended-protocol batch being sent (up to its `Sync`).
#[derive(Debug)]
struct Batch {
    /// Its `RequestStart` was reported.
    started: bool,
    /// Its statement, once known.
    statement: Option<Statement>,
    /// The type of its first message, naming it when its statement is not known.
    first: u8,
}

/// The state of the conversation, apart from framing.
#[derive(Debug)]
struct Conversation {
    phase: Phase,
    /// An SSLRequest or GSSENCRequest awaits its one-byte answer.
    awaiting_byte: bool,
    /// Requests whose `ReadyForQuery` is awaited, oldest first: whether each is a call (a
    /// `Sync` outside any batch is not).
    waiting: VecDeque<bool>,
    /// The oldest waiting call's response began.
    responding: bool,
    /// The response that began in this segment, reported at its end (so that an error later
    /// in the same segment can still mark it).
    start: Option<ResponseInfo>,
    /// The request message in progress ends a call's request (`Query`, `Sync`, ...).
    end_with_message: bool,
    batch: Option<Batch>,
    statements: BoundedMap<String, Statement>,
    /// The statement of the last `Bind` (for `Execute` and `Describe` of portals).
    last_bound: Option<Statement>,
    /// Response framing was lost when this request segment began.
    responses_lost: bool,
    /// A request started in this segment.
    new_request: bool,
    /// A request ended the response in progress: response framing starts over.
    response_cut_off: bool,
}

impl Default for Conversation {
    fn default() -> Self {
        Self {
            phase: Phase::Startup,
            awaiting_byte: false,
            waiting: VecDeque::new(),
            responding: false,
            start: None,
            end_with_message: false,
            batch: None,
            statements: BoundedMap::new(MAX_STATEMENTS),
            last_bound: None,
            responses_lost: false,
            new_request: false,
            response_cut_off: false,
        }
    }
}

impl Conversation {
    fn on_startup(&mut self, m: &Message<'_>) {
        if let Some((_, SSL_REQUEST | GSSENC_REQUEST, _)) = untyped_header(m.bytes) {
            self.awaiting_byte = true;
        }
    }

    fn on_request(&mut self, m: &Message<'_>, out: &mut FeedOutcome) {
        let kind = m.bytes[0];
        let body = &m.bytes[HEADER..];
        if self.phase == Phase::Startup {
            if kind == b'p' {
                return;
            }
            // A session first seen after its startup.
            self.phase = Phase::Ready;
        }
        match kind {
            b'Q' => {
                let text = cstr(body);
                if text.len() == body.len() {
                    out.truncated += 1;
                }
                let statement = Statement::of(text);
                self.call(
                    RequestInfo {
                        method: statement.verb.into(),
                        resource: statement.normalized,
                        ..RequestInfo::default()
                    },
                    out,
                );
            }
            b'F' => self.call(
                RequestInfo {
                    method: "FUNCTION_CALL".into(),
                    resource: "FUNCTION_CALL".to_owned(),
                    ..RequestInfo::default()
                },
                out,
            ),
            b'P' => {
                let name = cstr(body);
                let rest = body.get(name.len() + 1..).unwrap_or_default();
                let text = cstr(rest);
                if text.len() == rest.len() {
                    out.truncated += 1;
                }
                let statement = Statement::of(text);
                self.statements
                    .insert(text_field(name, MAX_NAME), statement.clone());
                self.batch(kind, out).statement.get_or_insert(statement);
            }
            b'B' => {
                let portal = cstr(body);
                let name = cstr(body.get(portal.len() + 1..).unwrap_or_default());
                self.last_bound = self.statements.get(&text_field(name, MAX_NAME)).cloned();
                let bound = self.last_bound.clone();
                self.batch(kind, out);
                self.set_batch_statement(bound);
            }
            b'D' | b'E' => {
                let described = match body {
                    [b'S', name @ ..] if kind == b'D' => self
                        .statements
                        .get(&text_field(cstr(name), MAX_NAME))
                        .cloned(),
                    _ => self.last_bound.clone(),
                };
                self.batch(kind, out);
                self.set_batch_statement(described);
            }
            b'C' => {
                if let [b'S', name @ ..] = body {
                    self.statements.remove(&text_field(cstr(name), MAX_NAME));
                }
                self.batch(kind, out);
            }
            b'H' => self.start_batch(out),
            b'S' => match self.batch.is_some() {
                true => {
                    self.start_batch(out);
                    self.batch = None;
                    self.end_with_message = true;
                }
                false => self.wait(false),
            },
            b'X' => {
                self.new_request(out);
            }
            // CopyData, CopyDone, CopyFail, password messages: part of the call in progress.
            _ => {}
        }
    }

    /// Gives the batch in progress `statement`, unless it has one.
    fn set_batch_statement(&mut self, statement: Option<Statement>) {
        if let Some(batch) = &mut self.batch
            && batch.statement.is_none()
        {
            batch.statement = statement;
        }
    }

    /// The batch in progress, begun by a message of type `first` if there was none.
    fn batch(&mut self, first: u8, out: &mut FeedOutcome) -> &mut Batch {
        if self.batch.is_none() {
            self.new_request(out);
        }
        self.batch.get_or_insert(Batch {
            started: false,
            statement: None,
            first,
        })
    }

    /// Reports the batch in progress as a call, if not done yet.
    fn start_batch(&mut self, out: &mut FeedOutcome) {
        let Some(batch) = &mut self.batch else { return };
        if std::mem::replace(&mut batch.started, true) {
            return;
        }
        let request = match &batch.statement {
            Some(s) => RequestInfo {
                method: s.verb.clone().into(),
                resource: s.normalized.clone(),
                ..RequestInfo::default()
            },
            None => {
                let name = match batch.first {
                    b'P' => "PARSE",
                    b'B' => "BIND",
                    b'D' => "DESCRIBE",
                    b'C' => "CLOSE",
                    _ => "EXECUTE",
                };
                RequestInfo {
                    method: name.into(),
                    resource: name.to_owned(),
                    ..RequestInfo::default()
                }
            }
        };
        self.wait(true);
        out.events.push(MessageEvent::RequestStart(request));
    }

    /// A `Query` or `FunctionCall`: a call whose request is this message.
    fn call(&mut self, request: RequestInfo, out: &mut FeedOutcome) {
        self.new_request(out);
        self.wait(true);
        out.events.push(MessageEvent::RequestStart(request));
        self.end_with_message = true;
    }

    /// A request starts: a response whose framing was lost is over.
    fn new_request(&mut self, out: &mut FeedOutcome) {
        self.new_request = true;
        if self.responses_lost && !self.response_cut_off {
            self.response_cut_off = true;
            self.end_response(out);
        }
    }

    fn wait(&mut self, call: bool) {
        if self.waiting.len() >= MAX_WAITING {
            self.waiting.pop_front();
            self.responding = false;
            self.start = None;
        }
        self.waiting.push_back(call);
    }

    fn request_ended(&mut self, out: &mut FeedOutcome) {
        if std::mem::take(&mut self.end_with_message) {
            out.events.push(MessageEvent::End {
                direction: Direction::Request,
            });
        }
    }

    /// Request framing was lost: a batch in progress is taken to end in the unseen bytes.
    fn requests_lost(&mut self, out: &mut FeedOutcome) {
        if self.batch.is_some() {
            self.start_batch(out);
            self.batch = None;
            out.events.push(MessageEvent::End {
                direction: Direction::Request,
            });
        }
    }

    fn on_response(&mut self, m: &Message<'_>, out: &mut FeedOutcome) {
        let kind = m.bytes[0];
        if self.phase == Phase::Startup {
            if kind == b'Z' {
                self.phase = Phase::Ready;
            }
            return;
        }
        // Messages outside any request (notices, notifications, parameter changes).
        let Some(&call) = self.waiting.front() else {
            return;
        };
        if call && !self.responding {
            self.responding = true;
            self.start = Some(ResponseInfo::default());
        }
        match kind {
            b'E' => {
                if let Some(start) = &mut self.start
                    && !start.is_error
                {
                    *start = error_info(&m.bytes[HEADER..]);
                }
            }
            b'Z' => self.end_response(out),
            _ => {}
        }
    }

    /// A segment ending in `ReadyForQuery` ended a response whose framing was lost.
    fn lost_response_ended(&mut self, out: &mut FeedOutcome) {
        self.end_response(out);
    }

    fn flush_start(&mut self, out: &mut FeedOutcome) {
        if let Some(info) = self.start.take() {
            out.events.push(MessageEvent::ResponseStart(info));
        }
    }

    /// The oldest waiting request got its `ReadyForQuery`.
    fn end_response(&mut self, out: &mut FeedOutcome) {
        self.flush_start(out);
        if std::mem::take(&mut self.responding) {
            out.events.push(MessageEvent::End {
                direction: Direction::Response,
            });
        }
        self.waiting.pop_front();
    }
}

/// The bytes of `b` up to its first NUL (all of `b` if it has none: cut by the capture).
fn cstr(b: &[u8]) -> &[u8] {
    &b[..b.iter().position(|&c| c == 0).unwrap_or(b.len())]
}

/// SQLSTATEs whose messages quote values of the failed statement: invalid text for a type
/// (22P02), bad dates (22007, 22008), numbers out of range (22003), bad byte sequences (22021),
/// and the token a syntax error stopped at (42601). Their quoted text is masked.
const VALUE_QUOTING_STATES: [&str; 6] = ["22P02", "22007", "22008", "22003", "22021", "42601"];

/// An ErrorResponse: SQLSTATE (`C` field) as status and the message (`M` field; quoted values
/// masked for [`VALUE_QUOTING_STATES`]).
fn error_info(mut fields: &[u8]) -> ResponseInfo {
    let mut info = ResponseInfo {
        is_error: true,
        ..ResponseInfo::default()
    };
    while let Some((&code, rest)) = fields.split_first() {
        if code == 0 {
            break;
        }
        let value = cstr(rest);
        match code {
            b'C' => info.status = text_field(value, 5).into(),
            b'M' => info.error_message = Some(text_field(value, MAX_ERROR)),
            _ => {}
        }
        fields = rest.get(value.len() + 1..).unwrap_or_default();
    }
    // C may come after M: mask once both are known.
    if VALUE_QUOTING_STATES.contains(&info.status.as_ref())
        && let Some(message) = &info.error_message
    {
        info.error_message = Some(crate::sql::mask_quoted(message, '"'));
    }
    info
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::*;

    /// A typed message.
    fn msg(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![kind];
        m.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
        m.extend_from_slice(body);
        m
    }

    fn cat(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    /// What psql 15 sends first.
    fn startup() -> Vec<u8> {
        let body = b"\x00\x03\x00\x00user\0postgres\0database\0postgres\0\
                     application_name\0psql\0client_encoding\0UTF8\0\0";
        cat(&[&(body.len() as u32 + 4).to_be_bytes(), body])
    }

    const SSL_REQUEST_BYTES: &[u8] = b"\x00\x00\x00\x08\x04\xd2\x16\x2f";

    /// The server's answer to a trusted login: AuthenticationOk, parameters, key, ready.
    fn login_answer() -> Vec<u8> {
        cat(&[
            &msg(b'R', b"\0\0\0\0"),
            &msg(b'S', b"application_name\0psql\0"),
            &msg(b'S', b"client_encoding\0UTF8\0"),
            &msg(b'S', b"server_version\x0015.8 (Debian 15.8-0+deb12u1)\0"),
            &msg(b'K', b"\0\0\x1f\x90\x5e\x2b\x11\x07"),
            &ready(b'I'),
        ])
    }

    fn ready(status: u8) -> Vec<u8> {
        msg(b'Z', &[status])
    }

    fn query(sql: &str) -> Vec<u8> {
        msg(b'Q', &cat(&[sql.as_bytes(), b"\0"]))
    }

    /// `SELECT 1`'s answer: one column, one row.
    fn select_one() -> Vec<u8> {
        cat(&[
            &msg(
                b'T',
                b"\x00\x01?column?\0\0\0\0\0\0\0\0\0\0\x17\x00\x04\xff\xff\xff\xff\x00\x00",
            ),
            &msg(b'D', b"\x00\x01\x00\x00\x00\x011"),
            &msg(b'C', b"SELECT 1\0"),
            &ready(b'I'),
        ])
    }

    fn error_42p01() -> Vec<u8> {
        msg(
            b'E',
            b"SERROR\0VERROR\0C42P01\0Mrelation \"nope\" does not exist\0P15\0\
              Fparse_relation.c\0L1392\0RparserOpenTable\0\0",
        )
    }

    fn run(steps: &[Step]) -> Vec<FeedOutcome> {
        feed_all(&mut PostgresParser::default(), steps)
    }

    #[test]
    fn values_quoted_by_errors_are_masked_identifiers_of_others_kept() {
        let info =
            error_info(b"SERROR\0Minvalid input syntax for type integer: \"s3cret\"\0C22P02\0\0");
        assert_eq!(info.status, "22P02");
        assert_eq!(
            info.error_message.as_deref(),
            Some("invalid input syntax for type integer: \"?\"")
        );
        let info = error_info(b"SERROR\0C42P01\0Mrelation \"nope\" does not exist\0\0");
        assert_eq!(
            info.error_message.as_deref(),
            Some("relation \"nope\" does not exist")
        );
    }

    #[test]
    fn detection() {
        let yes: Vec<Vec<u8>> = vec![
            startup(),
            startup()[..20].to_vec(),
            SSL_REQUEST_BYTES.to_vec(),
            b"\x00\x00\x00\x08\x04\xd2\x16\x30".to_vec(),
            b"\x00\x00\x00\x10\x04\xd2\x16\x2e\x00\x00\x1f\x90\x5e\x2b\x11\x07".to_vec(),
            query("SELECT 1;"),
            query("  select * from t")[..12].to_vec(),
            msg(
                b'P',
                b"\0SELECT abalance FROM pgbench_accounts WHERE aid = $1\0\0\0",
            ),
            msg(b'P', b"P0_1\0BEGIN;\0\0\0"),
        ];
        for data in &yes {
            assert!(looks_like_startup(data), "{data:?}");
        }
        let no: Vec<Vec<u8>> = vec![
            b"GET / HTTP/1.1\r\n".to_vec(),
            b"*1\r\n$4\r\nPING\r\n".to_vec(),
            b"\x00\x00\x00\x08\x04\xd2\x16\x99".to_vec(),
            b"\x00\x00\x00\x09\x04\xd2\x16\x2f".to_vec(),
            b"\x00\x00\x00\x54\x00\x02\x00\x00user\0".to_vec(),
            msg(b'Q', b"SELECT 1"),
            msg(b'Q', b"\x01\x02\x03\0"),
            msg(b'Q', b"\0"),
            msg(b'Q', b"SELECT 1\0extra\0"),
            b"Q\xff\xff\xff\xffSELECT".to_vec(),
            Vec::new(),
        ];
        for data in &no {
            assert!(!looks_like_startup(data), "{data:?}");
        }
    }

    #[test]
    fn psql_session() {
        let got = run(&[
            req(SSL_REQUEST_BYTES.to_vec()),
            resp(b"N".to_vec()),
            req(startup()),
            resp(login_answer()),
            req(query("SELECT 1;")),
            resp(select_one()),
            req(query("select * from nope where secret = 'hunter2'")),
            resp(cat(&[&error_42p01(), &ready(b'I')])),
            req(query("BEGIN")),
            resp(cat(&[&msg(b'C', b"BEGIN\0"), &ready(b'T')])),
            req(query("")),
            resp(cat(&[&msg(b'I', b""), &ready(b'T')])),
            req(msg(b'X', b"")),
        ]);
        assert!(
            got[..4]
                .iter()
                .all(|o| o.events.is_empty() && o.unparsed == 0)
        );
        assert_eq!(events(&got[4]), [start("SELECT", "SELECT ?;"), END_REQ]);
        assert_eq!(events(&got[5]), [success(), END_RESP]);
        assert_eq!(
            events(&got[6]),
            [
                start("SELECT", "select * from nope where secret = ?"),
                END_REQ
            ]
        );
        assert_eq!(
            events(&got[7]),
            [
                failure("42P01", "relation \"nope\" does not exist"),
                END_RESP
            ]
        );
        assert_eq!(events(&got[8]), [start("BEGIN", "BEGIN"), END_REQ]);
        assert_eq!(events(&got[9]), [success(), END_RESP]);
        assert_eq!(events(&got[10]), [start("", ""), END_REQ]);
        assert_eq!(events(&got[11]), [success(), END_RESP]);
        assert!(events(&got[12]).is_empty());
        assert!(got.iter().all(|o| o.unparsed == 0 && o.truncated == 0));
    }

    #[test]
    fn tls_is_not_parsed() {
        let got = run(&[
            req(SSL_REQUEST_BYTES.to_vec()),
            resp(b"S".to_vec()),
            req(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03".to_vec()),
            resp(b"\x16\x03\x03\x00\x7a\x02".to_vec()),
            req(query("SELECT 1")),
        ]);
        assert!(got.iter().all(|o| o.events.is_empty() && o.unparsed == 0));
    }

    /// pgbench -M extended: Parse, Bind, Describe, Execute, Sync per statement.
    fn extended(sql: &str, param: &[u8]) -> Vec<u8> {
        cat(&[
            &msg(b'P', &cat(&[b"\0", sql.as_bytes(), b"\0\0\0"])),
            &msg(
                b'B',
                &cat(&[
                    b"\0\0\0\0\0\x01",
                    &(param.len() as u32).to_be_bytes(),
                    param,
                    b"\0\0",
                ]),
            ),
            &msg(b'D', b"P\0"),
            &msg(b'E', b"\0\0\0\0\0"),
            &msg(b'S', b""),
        ])
    }

    fn extended_answer(rows: &[&[u8]], tag: &[u8]) -> Vec<u8> {
        let mut out = cat(&[
            &msg(b'1', b""),
            &msg(b'2', b""),
            &msg(
                b'T',
                b"\x00\x01abalance\0\0\0\x40\x06\x00\x03\0\0\0\x17\x00\x04\xff\xff\xff\xff\x00\x00",
            ),
        ]);
        for row in rows {
            out.extend(msg(
                b'D',
                &cat(&[b"\x00\x01", &(row.len() as u32).to_be_bytes(), row]),
            ));
        }
        out.extend(msg(b'C', tag));
        out.extend(ready(b'I'));
        out
    }

    #[test]
    fn pipelined_extended_batches() {
        let select = "SELECT abalance FROM pgbench_accounts WHERE aid = $1";
        let update = "UPDATE pgbench_accounts SET abalance = abalance + $1 WHERE aid = $2";
        let error = cat(&[
            &msg(b'1', b""),
            &msg(b'2', b""),
            &msg(b'n', b""),
            &msg(
                b'E',
                b"SERROR\0VERROR\0C23505\0Mduplicate key value violates unique constraint \"t_pkey\"\0\0",
            ),
            &ready(b'I'),
        ]);
        let got = run(&[
            req(startup()),
            resp(login_answer()),
            req(cat(&[&extended(select, b"42"), &extended(update, b"-7")])),
            resp(cat(&[
                &extended_answer(&[b"0"], b"SELECT 1\0"),
                &extended_answer(&[], b"UPDATE 1\0"),
            ])),
            req(extended("INSERT INTO t VALUES ($1)", b"1")),
            resp(error[..12].to_vec()),
            resp(error[12..].to_vec()),
            req(extended("INSERT INTO t VALUES ($1)", b"1")),
            resp(error.clone()),
        ]);
        assert_eq!(
            events(&got[2]),
            [
                start(
                    "SELECT",
                    "SELECT abalance FROM pgbench_accounts WHERE aid = $1"
                ),
                END_REQ,
                start("UPDATE", update),
                END_REQ
            ]
        );
        assert_eq!(events(&got[3]), [success(), END_RESP, success(), END_RESP]);
        assert_eq!(
            events(&got[4]),
            [start("INSERT", "INSERT INTO t VALUES ($1)"), END_REQ]
        );
        // The error came in a later segment than the response's start.
        assert_eq!(events(&got[5]), [success()]);
        assert_eq!(events(&got[6]), [END_RESP]);
        assert_eq!(
            events(&got[8]),
            [
                failure(
                    "23505",
                    "duplicate key value violates unique constraint \"t_pkey\""
                ),
                END_RESP
            ]
        );
    }

    #[test]
    fn named_statements() {
        // pgbench -M prepared: Parse of a named statement once, then Bind/Execute by name.
        let sql = "SELECT abalance FROM pgbench_accounts WHERE aid = $1";
        let prepare = cat(&[
            &msg(
                b'P',
                &cat(&[b"P0_1\0", sql.as_bytes(), b"\0\0\x01\0\0\0\x17"]),
            ),
            &msg(b'S', b""),
        ]);
        let execute = cat(&[
            &msg(b'B', b"\0P0_1\0\0\x01\0\x01\0\0\0\x0212\0\x01\0\x01"),
            &msg(b'D', b"P\0"),
            &msg(b'E', b"\0\0\0\0\0"),
            &msg(b'S', b""),
        ]);
        let got = run(&[
            req(startup()),
            resp(login_answer()),
            req(prepare),
            resp(cat(&[&msg(b'1', b""), &ready(b'I')])),
            req(execute.clone()),
            resp(extended_answer(&[b"0"], b"SELECT 1\0")[5..].to_vec()),
            req(cat(&[&msg(b'C', b"SP0_1\0"), &msg(b'S', b"")])),
            resp(cat(&[&msg(b'3', b""), &ready(b'I')])),
            req(execute),
            // A lone Sync gets its own ReadyForQuery and is not a call.
            req(msg(b'S', b"")),
            resp(cat(&[
                &msg(
                    b'E',
                    b"SERROR\0C26000\0Mprepared statement \"P0_1\" does not exist\0\0",
                ),
                &ready(b'I'),
                &ready(b'I'),
            ])),
        ]);
        assert_eq!(events(&got[2]), [start("SELECT", sql), END_REQ]);
        assert_eq!(events(&got[3]), [success(), END_RESP]);
        assert_eq!(events(&got[4]), [start("SELECT", sql), END_REQ]);
        assert_eq!(events(&got[5]), [success(), END_RESP]);
        assert_eq!(events(&got[6]), [start("CLOSE", "CLOSE"), END_REQ]);
        assert_eq!(events(&got[7]), [success(), END_RESP]);
        assert_eq!(events(&got[8]), [start("BIND", "BIND"), END_REQ]);
        assert!(events(&got[9]).is_empty());
        assert_eq!(
            events(&got[10]),
            [
                failure("26000", "prepared statement \"P0_1\" does not exist"),
                END_RESP
            ]
        );
    }

    #[test]
    fn rows_far_beyond_the_capture() {
        let rows: Vec<Vec<u8>> = (0..2000)
            .map(|i| format!("row number {i}").into_bytes())
            .collect();
        let rows: Vec<&[u8]> = rows.iter().map(Vec::as_slice).collect();
        let answer = extended_answer(&rows, b"SELECT 2000\0")[10..].to_vec();
        let n = answer.len();
        let got = run(&[
            req(startup()),
            resp(login_answer()),
            req(query("SELECT * FROM big")),
            (Direction::Response, answer[..1024].to_vec(), 8192),
            (Direction::Response, answer[8192..9216].to_vec(), 8192),
            // The last read ends with ReadyForQuery: the response ends there.
            resp(answer[n - 300..].to_vec()),
            req(query("SELECT * FROM big")),
            (Direction::Response, answer[..1024].to_vec(), 8192),
            (Direction::Response, answer[8192..9216].to_vec(), 8192),
            // Without a visible end, the next request ends the response.
            req(query("SELECT 1")),
            resp(select_one()),
        ]);
        assert_eq!(events(&got[3]), [success()]);
        assert_eq!(got[3].truncated, 1);
        assert!(events(&got[4]).is_empty());
        assert_eq!(events(&got[5]), [END_RESP]);
        assert_eq!(events(&got[7]), [success()]);
        assert!(events(&got[8]).is_empty());
        assert_eq!(
            events(&got[9]),
            [END_RESP, start("SELECT", "SELECT ?"), END_REQ]
        );
        assert_eq!(events(&got[10]), [success(), END_RESP]);
    }

    #[test]
    fn split_and_cut_messages() {
        let long_sql = format!("INSERT INTO t VALUES {}", "(1, 'secret'), ".repeat(500));
        let long_query = query(&long_sql);
        let answer = select_one();
        let got = run(&[
            req(startup()[..3].to_vec()),
            req(startup()[3..].to_vec()),
            resp(login_answer()),
            req(query("SELECT 1")[..3].to_vec()),
            req(query("SELECT 1")[3..].to_vec()),
            resp(answer[..4].to_vec()),
            resp(answer[4..40].to_vec()),
            resp(answer[40..].to_vec()),
            (
                Direction::Request,
                long_query[..1024].to_vec(),
                long_query.len(),
            ),
            resp(cat(&[&msg(b'C', b"INSERT 0 500\0"), &ready(b'I')])),
        ]);
        assert!(got[..4].iter().all(|o| o.events.is_empty()));
        assert_eq!(events(&got[4]), [start("SELECT", "SELECT ?"), END_REQ]);
        assert!(events(&got[5]).is_empty());
        assert_eq!(events(&got[6]), [success()]);
        assert_eq!(events(&got[7]), [END_RESP]);
        let MessageEvent::RequestStart(info) = &got[8].events[0] else {
            panic!("{:?}", got[8]);
        };
        assert_eq!(info.method, "INSERT");
        assert!(
            info.resource
                .starts_with("INSERT INTO t VALUES (?, ?), (?, ?)")
        );
        assert!(!info.resource.contains("secret"));
        assert_eq!(got[8].events[1], END_REQ);
        assert_eq!(got[8].truncated, 1);
        assert_eq!(events(&got[9]), [success(), END_RESP]);
    }

    #[test]
    fn copy_and_mid_stream_sessions() {
        let got = run(&[
            // First seen after its startup: the session starts with a query.
            req(query("COPY t (a) FROM STDIN")),
            resp(msg(b'G', b"\0\0\x01\0\0")),
            req(cat(&[&msg(b'd', b"1\n2\n3\n"), &msg(b'c', b"")])),
            resp(cat(&[&msg(b'C', b"COPY 3\0"), &ready(b'I')])),
            req(query("COPY t TO STDOUT")),
            resp(cat(&[
                &msg(b'H', b"\0\0\x01\0\0"),
                &msg(b'd', b"1\n"),
                &msg(b'c', b""),
                &msg(b'C', b"COPY 1\0"),
                &ready(b'I'),
            ])),
            // A notice outside any request is not a call.
            resp(msg(b'N', b"SNOTICE\0C00000\0Mhello\0\0")),
        ]);
        assert_eq!(
            events(&got[0]),
            [start("COPY", "COPY t (a) FROM STDIN"), END_REQ]
        );
        assert_eq!(events(&got[1]), [success()]);
        assert!(events(&got[2]).is_empty());
        assert_eq!(events(&got[3]), [END_RESP]);
        assert_eq!(
            events(&got[4]),
            [start("COPY", "COPY t TO STDOUT"), END_REQ]
        );
        assert_eq!(events(&got[5]), [success(), END_RESP]);
        assert!(events(&got[6]).is_empty());
        assert!(got.iter().all(|o| o.unparsed == 0 && o.truncated == 0));
    }

    #[test]
    fn garbage_is_counted() {
        let got = run(&[
            req(startup()),
            resp(login_answer()),
            req(b"\x01\x02\x03\x04\x05\x06".to_vec()),
            req(b"still garbage".to_vec()),
            req(query("SELECT 1")),
            resp(select_one()),
        ]);
        assert_eq!(got[2].unparsed, 1);
        assert_eq!(got[3].unparsed, 1);
        assert_eq!(events(&got[4]), [start("SELECT", "SELECT ?"), END_REQ]);
        assert_eq!(events(&got[5]), [success(), END_RESP]);
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let seeds = vec![
            startup(),
            login_answer(),
            query("select 1"),
            extended("select $1", b"1"),
            select_one(),
            SSL_REQUEST_BYTES.to_vec(),
        ];
        assert_random_segments_keep_the_contract(
            || Box::new(PostgresParser::default()),
            &seeds,
            0x2545_f491_4f6c_dd1d_u64,
        );
    }
}
