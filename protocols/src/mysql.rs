//! MySQL and MariaDB client/server protocol: commands and their responses.
//!
//! Every packet is a 3-byte little-endian payload length, a sequence id and the payload, so
//! packets are framed by length through bytes beyond the capture size. The parser starts after
//! the server's greeting (used for detection only): the client's login, any authentication
//! exchange and the server's OK or ERR to it are not calls. Then each client packet with
//! sequence id 0 is a command and a call; its response is framed by what the command returns:
//! OK, ERR, result sets (column count, definitions, an EOF unless `CLIENT_DEPRECATE_EOF`,
//! rows, then an EOF or OK), `COM_STMT_PREPARE`'s definitions, or one packet.
//!
//! When a packet header falls in bytes not captured (rows of a large result set), framing is
//! lost: the response ends when a segment ends with a result set's final EOF/OK, or else when
//! the next command starts. TLS (`CLIENT_SSL`) and compressed connections are not parsed.

use std::collections::VecDeque;

use crate::{
    bounded_map::BoundedMap,
    framing::{Framer, Input, Message, Piece},
    sql::{Statement, text_field},
    stream::{
        Direction, FeedOutcome, MessageEvent, RequestInfo, ResponseInfo, Segment, StreamParser,
    },
};

/// Packet header: payload length (3 bytes) and sequence id.
const HEADER: usize = 4;
/// A payload of this length continues in the next packet.
const MAX_PAYLOAD: usize = 0xFF_FFFF;
/// Capability flags (from the client's login packet).
const CLIENT_COMPRESS: u32 = 0x0000_0020;
const CLIENT_PROTOCOL_41: u32 = 0x0000_0200;
const CLIENT_SSL: u32 = 0x0000_0800;
const CLIENT_DEPRECATE_EOF: u32 = 0x0100_0000;
/// Size of the login packet that asks for TLS (capabilities, max packet, charset, filler).
const SSL_REQUEST_LEN: usize = 32;
/// Server status flags (in OK and EOF packets).
const SERVER_MORE_RESULTS_EXISTS: u16 = 0x0008;
const SERVER_STATUS_CURSOR_EXISTS: u16 = 0x0040;
/// Prepared statements remembered per connection.
const MAX_STATEMENTS: usize = 1024;
/// Commands remembered while their responses are awaited.
const MAX_WAITING: usize = 1024;
/// Longest error message kept, in bytes.
const MAX_ERROR: usize = 512;
/// Longest schema name kept (`COM_INIT_DB`), in bytes.
const MAX_SCHEMA: usize = 256;
/// Largest payload of a result set's final EOF or OK packet looked for at a segment's end.
const MAX_TERMINATOR: usize = 64;

/// Whether `data` starts like a MySQL server greeting: a protocol-10 handshake packet with
/// sequence id 0 and a printable, NUL-terminated server version.
pub fn looks_like_greeting(data: &[u8]) -> bool {
    let [l0, l1, l2, 0, 10, rest @ ..] = data else {
        return false;
    };
    let len = usize::from(*l0) | usize::from(*l1) << 8 | usize::from(*l2) << 16;
    if !(16..=1024).contains(&len) {
        return false;
    }
    let version = &rest[..rest.len().min(len - 1).min(64)];
    match version.iter().position(|&c| c == 0) {
        Some(end) => end > 0 && version[..end].iter().all(|c| (0x20..0x7f).contains(c)),
        None => false,
    }
}

/// MySQL framing of one connection, from the client's login on.
#[derive(Debug, Default)]
pub struct MysqlParser {
    requests: Framer,
    responses: Framer,
    conversation: Conversation,
}

impl StreamParser for MysqlParser {
    fn feed_into(&mut self, segment: &Segment<'_>, out: &mut FeedOutcome) {
        let c = &mut self.conversation;
        if c.phase == Phase::Opaque {
            return;
        }
        let mut input = Input::new(segment);
        match segment.direction {
            Direction::Request => {
                if self.requests.is_lost() {
                    if !looks_like_command(segment) {
                        out.unparsed += 1;
                        return;
                    }
                    self.requests.resync();
                }
                while let Some(piece) = self.requests.next(&mut input, HEADER, packet_size) {
                    match piece {
                        Piece::Message(m) => {
                            let ended = m.ended;
                            c.on_request(&m, out);
                            if ended {
                                c.request_ended(out);
                            }
                        }
                        Piece::Rest => c.request_ended(out),
                        Piece::Lost | Piece::Invalid => {
                            out.truncated += 1;
                            c.request_chain = false;
                            c.request_ended(out);
                        }
                    }
                }
                if c.response_cut_off || (c.new_command && self.responses.is_lost()) {
                    self.responses.resync();
                    c.response_chain = false;
                }
                c.response_cut_off = false;
                c.new_command = false;
            }
            Direction::Response => {
                if self.responses.is_lost() {
                    if !segment.is_cut()
                        && let Some(status) = terminator_at_end(segment.data)
                    {
                        c.lost_response_ended(status, out);
                        self.responses.resync();
                    }
                    return;
                }
                while let Some(piece) = self.responses.next(&mut input, HEADER, packet_size) {
                    match piece {
                        Piece::Message(m) => c.on_response(&m, out),
                        Piece::Rest => {}
                        Piece::Lost | Piece::Invalid => out.truncated += 1,
                    }
                }
                c.flush_start(out);
            }
        }
    }
}

/// Where the connection is.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Login and authentication.
    #[default]
    Handshake,
    /// Commands and their responses.
    Commands,
    /// TLS or compression: nothing more is parsed.
    Opaque,
}

/// How a command's response is framed.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    /// OK, ERR or result sets (`COM_QUERY`, `COM_STMT_EXECUTE`, ...).
    Results,
    /// `COM_STMT_PREPARE`: OK with parameter and column definitions, or ERR. The statement is
    /// remembered by the id the server gives it.
    Prepare(Statement),
    /// One packet.
    Single,
    /// Packets up to an EOF (`COM_FIELD_LIST`, `COM_STMT_FETCH`).
    UntilEof,
    /// Packets up to an OK or ERR (`COM_CHANGE_USER`'s authentication).
    UntilOk,
    /// No end of its own (`COM_BINLOG_DUMP`): it ends when the next command starts.
    Stream,
}

/// The next packet expected in a response.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// OK, ERR, `LOCAL INFILE` request or a result set's column count.
    Result,
    /// Column definitions still to come.
    Columns(u64),
    /// The EOF after the definitions (unless deprecated), or the first row.
    AfterColumns,
    /// Rows, up to the final EOF or OK.
    Rows,
    /// The first packet of a `COM_STMT_PREPARE` response.
    Prepared,
    /// `COM_STMT_PREPARE`'s definitions and EOFs still to come.
    Definitions {
        defs: u32,
        eofs: u8,
    },
    UntilEof,
    UntilOk,
    Single,
    Stream,
}

impl Expect {
    fn first(kind: &Kind) -> Self {
        match kind {
            Kind::Results => Self::Result,
            Kind::Prepare(_) => Self::Prepared,
            Kind::Single => Self::Single,
            Kind::UntilEof => Self::UntilEof,
            Kind::UntilOk => Self::UntilOk,
            Kind::Stream => Self::Stream,
        }
    }
}

/// The state of the conversation, apart from framing.
#[derive(Debug)]
struct Conversation {
    phase: Phase,
    login_seen: bool,
    deprecate_eof: bool,
    /// The last client packet had the maximum length: the next one continues it.
    request_chain: bool,
    /// Likewise for the server.
    response_chain: bool,
    /// A command's `RequestStart` was reported and its end not yet.
    request_open: bool,
    /// Commands whose responses are awaited, oldest first.
    waiting: VecDeque<Kind>,
    /// Where the response to the oldest waiting command is, once it began.
    response: Option<Expect>,
    /// The response that began in this segment, reported at its end (so that an error later
    /// in the same segment can still mark it).
    start: Option<ResponseInfo>,
    statements: BoundedMap<u32, Statement>,
    /// The statement of the last `COM_STMT_PREPARE` (MariaDB executes id `0xffffffff` as it).
    last_prepared: Option<Statement>,
    /// A command started in this segment.
    new_command: bool,
    /// A command ended the response in progress: response framing starts over.
    response_cut_off: bool,
}

impl Default for Conversation {
    fn default() -> Self {
        Self {
            phase: Phase::Handshake,
            login_seen: false,
            deprecate_eof: false,
            request_chain: false,
            response_chain: false,
            request_open: false,
            waiting: VecDeque::new(),
            response: None,
            start: None,
            statements: BoundedMap::new(MAX_STATEMENTS),
            last_prepared: None,
            new_command: false,
            response_cut_off: false,
        }
    }
}

impl Conversation {
    fn on_request(&mut self, m: &Message<'_>, out: &mut FeedOutcome) {
        let seq = m.bytes[3];
        let payload = &m.bytes[HEADER..];
        let chained = self.request_chain;
        self.request_chain = m.size - HEADER == MAX_PAYLOAD;
        if chained {
            return;
        }
        match self.phase {
            Phase::Handshake if seq != 0 => {
                self.login(payload, m.size - HEADER);
                return;
            }
            Phase::Handshake => self.phase = Phase::Commands,
            Phase::Commands if seq != 0 => return,
            Phase::Commands | Phase::Opaque => {}
        }
        self.command(payload, m.is_cut(), out);
    }

    /// The client's login packet (or its TLS request): capabilities.
    fn login(&mut self, payload: &[u8], len: usize) {
        if std::mem::replace(&mut self.login_seen, true) || payload.len() < 4 {
            return;
        }
        let mut caps = u32::from_le_bytes([payload[0], payload[1], payload[2], payload[3]]);
        if caps & CLIENT_PROTOCOL_41 == 0 {
            caps &= 0xffff;
        }
        if (caps & CLIENT_SSL != 0 && len == SSL_REQUEST_LEN) || caps & CLIENT_COMPRESS != 0 {
            self.phase = Phase::Opaque;
        }
        self.deprecate_eof = caps & CLIENT_DEPRECATE_EOF != 0;
    }

    fn command(&mut self, payload: &[u8], cut: bool, out: &mut FeedOutcome) {
        let Some((&code, body)) = payload.split_first() else {
            out.unparsed += 1;
            return;
        };
        let Some((name, kind)) = command(code) else {
            out.unparsed += 1;
            return;
        };
        self.new_command = true;
        // Strictly request/response: a response still open when the client speaks again is
        // over (its end was in bytes not captured, or not framed).
        if self.response.is_some() {
            self.end_response(out);
            self.response_cut_off = true;
        }
        let request = match code {
            // COM_QUIT, COM_STMT_SEND_LONG_DATA and COM_STMT_CLOSE have no response: not
            // calls (a call that can never complete would only count as unmatched).
            0x01 | 0x18 => return,
            0x19 => {
                if let Some(id) = statement_id(body) {
                    self.statements.remove(&id);
                }
                return;
            }
            0x03 | 0x16 => {
                if cut {
                    out.truncated += 1;
                }
                let statement = Statement::of_mysql(body);
                let method = if code == 0x03 {
                    statement.verb.clone()
                } else {
                    name.to_owned()
                };
                RequestInfo {
                    method: method.into(),
                    resource: statement.normalized.clone(),
                    ..RequestInfo::default()
                }
            }
            0x17 | 0xfa => {
                let statement = statement_id(body).and_then(|id| match id {
                    u32::MAX => self.last_prepared.as_ref(),
                    id => self.statements.get(&id),
                });
                RequestInfo {
                    method: name.into(),
                    resource: statement.map_or_else(|| name.to_owned(), |s| s.normalized.clone()),
                    ..RequestInfo::default()
                }
            }
            0x02 => RequestInfo {
                method: name.into(),
                resource: text_field(body, MAX_SCHEMA),
                ..RequestInfo::default()
            },
            _ => named(name),
        };
        let kind = match kind {
            Kind::Prepare(_) => {
                let statement = Statement {
                    verb: String::new(),
                    normalized: request.resource.clone(),
                };
                self.last_prepared = Some(statement.clone());
                Kind::Prepare(statement)
            }
            other => other,
        };
        if self.waiting.len() >= MAX_WAITING {
            self.waiting.pop_front();
            self.response = None;
            self.start = None;
        }
        self.waiting.push_back(kind);
        out.events.push(MessageEvent::RequestStart(request));
        self.request_open = true;
    }

    fn request_ended(&mut self, out: &mut FeedOutcome) {
        if self.request_open && !self.request_chain {
            self.request_open = false;
            out.events.push(MessageEvent::End {
                direction: Direction::Request,
            });
        }
    }

    fn on_response(&mut self, m: &Message<'_>, out: &mut FeedOutcome) {
        let payload = &m.bytes[HEADER..];
        let len = m.size - HEADER;
        let chained = self.response_chain;
        self.response_chain = len == MAX_PAYLOAD;
        if chained {
            return;
        }
        let first = payload.first().copied();
        if self.phase == Phase::Handshake {
            // OK or ERR ends the login; auth switch (0xfe) and more data (0x01) go on.
            if matches!(first, Some(0x00 | 0xff)) {
                self.phase = Phase::Commands;
            }
            return;
        }
        let expect = match self.response {
            Some(expect) => expect,
            None => {
                let Some(kind) = self.waiting.front() else {
                    out.unparsed += 1;
                    return;
                };
                self.start = Some(ResponseInfo::default());
                Expect::first(kind)
            }
        };
        self.response = Some(expect);
        if first == Some(0xff) {
            // ERR ends any response (0xff starts no row, definition or OK).
            self.set_error(error_info(payload));
            self.end_response(out);
            return;
        }
        // A 0xfe packet shorter than the longest payload is an EOF, or an OK replacing it.
        let eof = first == Some(0xfe) && len < MAX_PAYLOAD;
        match expect {
            Expect::Result => match first {
                Some(0x00) | Some(0xfe) => self.result_done(end_status(payload, len), out),
                Some(0xfb) => self.response = Some(Expect::UntilOk),
                _ => {
                    self.response = Some(match length_encoded(payload) {
                        Some(0) => Expect::AfterColumns,
                        Some(n) => Expect::Columns(n),
                        None => Expect::Stream,
                    })
                }
            },
            Expect::Columns(n) => {
                self.response = Some(if n > 1 {
                    Expect::Columns(n - 1)
                } else {
                    Expect::AfterColumns
                });
            }
            // An EOF packet is 5 bytes; an OK (0xfe) ending a result set without rows under
            // CLIENT_DEPRECATE_EOF is at least 7, so the length tells them apart (whether or
            // not the login was seen).
            Expect::AfterColumns if eof && len == 5 => {
                let status = end_status(payload, len);
                if status & SERVER_STATUS_CURSOR_EXISTS != 0 {
                    self.result_done(status, out);
                } else {
                    self.response = Some(Expect::Rows);
                }
            }
            Expect::AfterColumns | Expect::Rows if eof => {
                self.result_done(end_status(payload, len), out)
            }
            Expect::AfterColumns => self.response = Some(Expect::Rows),
            Expect::Rows | Expect::Stream => {}
            Expect::Prepared => self.prepared(payload, out),
            Expect::Definitions { defs, eofs } => {
                let (defs, eofs) = if first == Some(0xfe) && len < 9 {
                    (defs, eofs.saturating_sub(1))
                } else {
                    (defs.saturating_sub(1), eofs)
                };
                if defs == 0 && eofs == 0 {
                    self.end_response(out);
                } else {
                    self.response = Some(Expect::Definitions { defs, eofs });
                }
            }
            Expect::UntilEof if eof => self.end_response(out),
            Expect::UntilOk if first == Some(0x00) => self.end_response(out),
            Expect::UntilEof | Expect::UntilOk => {}
            Expect::Single => self.end_response(out),
        }
    }

    /// `COM_STMT_PREPARE_OK`: remembers the statement, then expects its definitions.
    fn prepared(&mut self, payload: &[u8], out: &mut FeedOutcome) {
        let [0x00, i0, i1, i2, i3, c0, c1, p0, p1, ..] = *payload else {
            // Not readable: the response ends when the next command starts.
            self.response = Some(Expect::Stream);
            return;
        };
        if let Some(Kind::Prepare(statement)) = self.waiting.front() {
            self.statements
                .insert(u32::from_le_bytes([i0, i1, i2, i3]), statement.clone());
        }
        let columns = u16::from_le_bytes([c0, c1]);
        let params = u16::from_le_bytes([p0, p1]);
        let eofs = if self.deprecate_eof {
            0
        } else {
            u8::from(params > 0) + u8::from(columns > 0)
        };
        let defs = u32::from(columns) + u32::from(params);
        if defs == 0 && eofs == 0 {
            self.end_response(out);
        } else {
            self.response = Some(Expect::Definitions { defs, eofs });
        }
    }

    /// A result ended with `status`: the response goes on if more results follow.
    fn result_done(&mut self, status: u16, out: &mut FeedOutcome) {
        if status & SERVER_MORE_RESULTS_EXISTS != 0 {
            self.response = Some(Expect::Result);
        } else {
            self.end_response(out);
        }
    }

    /// A segment ending in a result's final packet ended a response whose framing was lost.
    fn lost_response_ended(&mut self, status: u16, out: &mut FeedOutcome) {
        if self.response.is_some() {
            self.result_done(status, out);
        }
        self.flush_start(out);
    }

    fn set_error(&mut self, info: ResponseInfo) {
        if let Some(start) = &mut self.start
            && !start.is_error
        {
            *start = info;
        }
    }

    fn flush_start(&mut self, out: &mut FeedOutcome) {
        if let Some(info) = self.start.take() {
            out.events.push(MessageEvent::ResponseStart(info));
        }
    }

    fn end_response(&mut self, out: &mut FeedOutcome) {
        self.flush_start(out);
        if self.response.take().is_some() {
            out.events.push(MessageEvent::End {
                direction: Direction::Response,
            });
        }
        self.waiting.pop_front();
        self.response_chain = false;
    }
}

/// A command's name (the `method` of its call) and how its response is framed.
fn command(code: u8) -> Option<(&'static str, Kind)> {
    use Kind::*;
    Some(match code {
        0x00 => ("SLEEP", Single),
        0x01 => ("QUIT", Single),
        0x02 => ("INIT_DB", Single),
        0x03 => ("QUERY", Results),
        0x04 => ("FIELD_LIST", UntilEof),
        0x05 => ("CREATE_DB", Single),
        0x06 => ("DROP_DB", Single),
        0x07 => ("REFRESH", Single),
        0x08 => ("SHUTDOWN", Single),
        0x09 => ("STATISTICS", Single),
        0x0a => ("PROCESS_INFO", Results),
        0x0b => ("CONNECT", Single),
        0x0c => ("PROCESS_KILL", Single),
        0x0d => ("DEBUG", Single),
        0x0e => ("PING", Single),
        0x0f => ("TIME", Single),
        0x10 => ("DELAYED_INSERT", Single),
        0x11 => ("CHANGE_USER", UntilOk),
        0x12 => ("BINLOG_DUMP", Stream),
        0x13 => ("TABLE_DUMP", Single),
        0x14 => ("CONNECT_OUT", Single),
        0x15 => ("REGISTER_SLAVE", Single),
        0x16 => (
            "PREPARE",
            Prepare(Statement {
                verb: String::new(),
                normalized: String::new(),
            }),
        ),
        0x17 => ("EXECUTE", Results),
        0x18 => ("STMT_SEND_LONG_DATA", Single),
        0x19 => ("STMT_CLOSE", Single),
        0x1a => ("STMT_RESET", Single),
        0x1b => ("SET_OPTION", Single),
        0x1c => ("STMT_FETCH", UntilEof),
        0x1d => ("DAEMON", Single),
        0x1e => ("BINLOG_DUMP_GTID", Stream),
        0x1f => ("RESET_CONNECTION", Single),
        // MariaDB's COM_STMT_BULK_EXECUTE.
        0xfa => ("EXECUTE", Results),
        _ => return None,
    })
}

fn named(name: &'static str) -> RequestInfo {
    RequestInfo {
        method: name.into(),
        resource: name.to_owned(),
        ..RequestInfo::default()
    }
}

fn packet_size(header: &[u8]) -> Option<usize> {
    Some(HEADER + le24(header))
}

fn le24(b: &[u8]) -> usize {
    usize::from(b[0]) | usize::from(b[1]) << 8 | usize::from(b[2]) << 16
}

fn statement_id(body: &[u8]) -> Option<u32> {
    Some(u32::from_le_bytes(body.get(..4)?.try_into().ok()?))
}

/// Whether a segment, read while request framing is lost, starts with a whole command.
fn looks_like_command(segment: &Segment<'_>) -> bool {
    let d = segment.data;
    d.len() > HEADER
        && d[3] == 0
        && le24(d) >= 1
        && HEADER + le24(d) <= segment.len
        && command(d[4]).is_some()
}

/// A length-encoded integer at the start of `b`.
fn length_encoded(b: &[u8]) -> Option<u64> {
    let (&first, rest) = b.split_first()?;
    let width = match first {
        0..=0xfa => return Some(u64::from(first)),
        0xfc => 2,
        0xfd => 3,
        0xfe => 8,
        _ => return None,
    };
    let bytes = rest.get(..width)?;
    Some(bytes.iter().rev().fold(0, |n, &c| n << 8 | u64::from(c)))
}

/// Bytes a length-encoded integer takes at the start of `b`.
fn length_encoded_size(b: &[u8]) -> Option<usize> {
    match *b.first()? {
        0..=0xfa => Some(1),
        0xfc => Some(3),
        0xfd => Some(4),
        0xfe => Some(9),
        _ => None,
    }
}

/// Server status flags of an EOF (5 bytes) or OK packet, 0 when not captured.
fn end_status(payload: &[u8], len: usize) -> u16 {
    let at = if payload.first() == Some(&0xfe) && len == 5 {
        Some(3)
    } else {
        payload.get(1..).and_then(|rest| {
            let affected = length_encoded_size(rest)?;
            let insert_id = length_encoded_size(rest.get(affected..)?)?;
            Some(1 + affected + insert_id)
        })
    };
    at.and_then(|i| payload.get(i..i + 2))
        .map_or(0, |s| u16::from_le_bytes([s[0], s[1]]))
}

/// Error numbers whose messages quote values of the failed statement (MySQL and MariaDB):
/// duplicate entries (1062, 1586), the text after a syntax error (1064), values of the wrong
/// type or out of range (1292, 1366, 1367, 1411, 1690). Their quoted text is masked.
const VALUE_QUOTING_ERRORS: [&str; 8] = [
    "1062", "1064", "1292", "1366", "1367", "1411", "1586", "1690",
];

/// An ERR packet: error number as status, message without the SQLSTATE marker (quoted values
/// masked for [`VALUE_QUOTING_ERRORS`]).
fn error_info(payload: &[u8]) -> ResponseInfo {
    let status = payload.get(1..3).map_or_else(String::new, |c| {
        u16::from_le_bytes([c[0], c[1]]).to_string()
    });
    let text = payload.get(3..).unwrap_or_default();
    let message = match text {
        [b'#', _, _, _, _, _, rest @ ..] => rest,
        _ => text,
    };
    let mut message = text_field(message, MAX_ERROR);
    if VALUE_QUOTING_ERRORS.contains(&status.as_str()) {
        message = crate::sql::mask_quoted(&message, '\'');
    }
    ResponseInfo {
        status: status.into(),
        is_error: true,
        error_message: Some(message),
        ..ResponseInfo::default()
    }
}

/// The server status of the EOF or OK packet that `data` ends with, if it does.
fn terminator_at_end(data: &[u8]) -> Option<u16> {
    (5..=MAX_TERMINATOR).find_map(|len| {
        let at = data.len().checked_sub(HEADER + len)?;
        let packet = &data[at..];
        (le24(packet) == len && packet[HEADER] == 0xfe).then(|| end_status(&packet[HEADER..], len))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::*;

    /// A packet: header for `payload`, with sequence id `seq`.
    fn pkt(seq: u8, payload: &[u8]) -> Vec<u8> {
        let n = payload.len();
        let mut p = vec![n as u8, (n >> 8) as u8, (n >> 16) as u8, seq];
        p.extend_from_slice(payload);
        p
    }

    fn cat(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }

    /// The greeting of MariaDB 10.11 (Debian 12).
    fn greeting() -> Vec<u8> {
        pkt(
            0,
            &cat(&[
                b"\x0a5.5.5-10.11.6-MariaDB-0+deb12u1\0",
                b"\x1f\0\0\0",
                b"6<cq}7[O\0",
                b"\xfe\xf7\x2d\x02\x00\xff\x81\x15",
                b"\0\0\0\0\0\0\x1d\0\0\0",
                b"0\\d|Yz-3tB8K\0",
                b"mysql_native_password\0",
            ]),
        )
    }

    /// The login packet (sequence 1) with capability flags `caps`.
    fn login(caps: &[u8; 4]) -> Vec<u8> {
        pkt(
            1,
            &cat(&[
                caps,
                b"\0\0\0\x01\x2d",
                &[0; 19],
                b"\x1d\0\0\0",
                b"root\0",
                b"\x14\x9d\x1f\x8e\xa0\x93\x04\x8d\x5c\x7e\x1e\xa1\x9b\x06\x6b\x1e\x1c\x0a\x34\x8f\x52",
                b"mysql_native_password\0",
            ]),
        )
    }

    /// mariadb client 10.11: no CLIENT_DEPRECATE_EOF.
    const MARIADB_CAPS: &[u8; 4] = b"\x85\xa6\x3f\x20";
    /// mysql client 8.0: CLIENT_DEPRECATE_EOF.
    const MYSQL8_CAPS: &[u8; 4] = b"\x85\xa6\xff\x01";

    fn login_ok() -> Vec<u8> {
        pkt(2, b"\x00\x00\x00\x02\x00\x00\x00")
    }

    fn query(sql: &str) -> Vec<u8> {
        pkt(0, &cat(&[b"\x03", sql.as_bytes()]))
    }

    fn column(name: &str, seq: u8) -> Vec<u8> {
        let mut p = b"\x03def\0\0\0".to_vec();
        p.push(name.len() as u8);
        p.extend_from_slice(name.as_bytes());
        p.extend_from_slice(b"\0\x0c\x21\0\x18\0\0\0\xfd\0\0\x27\0\0");
        pkt(seq, &p)
    }

    fn row(value: &str, seq: u8) -> Vec<u8> {
        let mut p = vec![value.len() as u8];
        p.extend_from_slice(value.as_bytes());
        pkt(seq, &p)
    }

    fn eof(seq: u8, status: u16) -> Vec<u8> {
        pkt(seq, &cat(&[b"\xfe\0\0", &status.to_le_bytes()]))
    }

    fn ok_eof(seq: u8, status: u16) -> Vec<u8> {
        pkt(seq, &cat(&[b"\xfe\0\0", &status.to_le_bytes(), b"\0\0"]))
    }

    fn ok(seq: u8) -> Vec<u8> {
        pkt(seq, b"\x00\x01\x00\x02\x00\x00\x00")
    }

    fn run(steps: &[Step]) -> Vec<FeedOutcome> {
        feed_all(&mut MysqlParser::default(), steps)
    }

    /// The login of a mariadb client, answered with OK: no calls.
    fn logged_in(caps: &[u8; 4]) -> Vec<Step> {
        vec![req(login(caps)), resp(login_ok())]
    }

    #[test]
    fn greeting_detection() {
        assert!(looks_like_greeting(&greeting()));
        let mut wrong_seq = greeting();
        wrong_seq[3] = 1;
        let mut wrong_proto = greeting();
        wrong_proto[4] = 9;
        let mut unprintable = greeting();
        unprintable[6] = 0x07;
        for data in [
            wrong_seq,
            wrong_proto,
            unprintable,
            b"GET / HTTP/1.1\r\n".to_vec(),
            b"\x05\0\0\0\x0a\0".to_vec(),
            Vec::new(),
        ] {
            assert!(!looks_like_greeting(&data), "{data:?}");
        }
    }

    #[test]
    fn result_sets() {
        let sql = "select @@version_comment limit 1";
        let classic = cat(&[
            &pkt(1, b"\x01"),
            &column("@@version_comment", 2),
            &eof(3, 2),
            &row("Debian 12", 4),
            &eof(5, 2),
        ]);
        let deprecated = cat(&[
            &pkt(1, b"\x01"),
            &column("@@version_comment", 2),
            &row("Debian 12", 3),
            &ok_eof(4, 2),
        ]);
        let empty_classic = cat(&[&pkt(1, b"\x01"), &column("a", 2), &eof(3, 2), &eof(4, 2)]);
        let empty_deprecated = cat(&[&pkt(1, b"\x01"), &column("a", 2), &ok_eof(3, 2)]);
        let cases = [
            (MARIADB_CAPS, classic),
            (MYSQL8_CAPS, deprecated.clone()),
            (MARIADB_CAPS, empty_classic),
            (MYSQL8_CAPS, empty_deprecated.clone()),
            // Login not seen: the 7-byte OK is still told from a 5-byte EOF.
            (b"\0\0\0\0", deprecated),
            (b"\0\0\0\0", empty_deprecated),
        ];
        for (caps, response) in cases {
            let mut steps = logged_in(caps);
            if caps == b"\0\0\0\0" {
                steps.clear();
            }
            steps.push(req(query(sql)));
            steps.push(resp(response.clone()));
            let got = run(&steps);
            let n = got.len();
            assert!(got[..n - 2].iter().all(|o| o.events.is_empty()));
            assert_eq!(
                events(&got[n - 2]),
                [start("SELECT", "select @@version_comment limit ?"), END_REQ]
            );
            assert_eq!(events(&got[n - 1]), [success(), END_RESP], "{response:?}");
            assert_eq!((got[n - 1].unparsed, got[n - 1].truncated), (0, 0));
        }
    }

    #[test]
    fn errors_and_oks() {
        let err = pkt(
            1,
            b"\xff\x28\x04#42000You have an error in your SQL syntax; check the manual that \
              corresponds to your MariaDB server version for the right syntax to use near \
              'selec 1' at line 1",
        );
        let got = run(&[
            req(login(MARIADB_CAPS)),
            resp(login_ok()),
            req(query("selec 1")),
            resp(err),
            req(query("INSERT INTO t (a, b) VALUES (1, 'secret')")),
            resp(ok(1)),
            req(pkt(0, b"\x0e")),
            resp(pkt(1, b"\x00\x00\x00\x02\x00\x00\x00")),
            req(pkt(0, b"\x02shop")),
            resp(pkt(1, b"\xff\x19\x04#42000Unknown database 'shop'")),
        ]);
        assert_eq!(events(&got[2]), [start("SELEC", "selec ?"), END_REQ]);
        assert_eq!(
            events(&got[3]),
            [
                failure(
                    "1064",
                    "You have an error in your SQL syntax; check the manual that corresponds \
                     to your MariaDB server version for the right syntax to use near '?' at \
                     line 1"
                ),
                END_RESP
            ]
        );
        assert_eq!(
            events(&got[4]),
            [
                start("INSERT", "INSERT INTO t (a, b) VALUES (?, ?)"),
                END_REQ
            ]
        );
        assert_eq!(events(&got[5]), [success(), END_RESP]);
        assert_eq!(events(&got[6]), [start("PING", "PING"), END_REQ]);
        assert_eq!(events(&got[7]), [success(), END_RESP]);
        assert_eq!(events(&got[8]), [start("INIT_DB", "shop"), END_REQ]);
        assert_eq!(
            events(&got[9]),
            [failure("1049", "Unknown database 'shop'"), END_RESP]
        );
    }

    #[test]
    fn login_exchanges_are_not_calls() {
        let got = run(&[
            req(login(MARIADB_CAPS)),
            // Auth switch to another plugin, the client's answer, then OK.
            resp(pkt(2, b"\xfemysql_native_password\0abcdefghijklmnopqrst\0")),
            req(pkt(3, &[0x5a; 20])),
            resp(pkt(4, b"\x00\x00\x00\x02\x00\x00\x00")),
            req(pkt(0, b"\x0e")),
            resp(pkt(1, b"\x00\x00\x00\x02\x00\x00\x00")),
        ]);
        assert!(got[..4].iter().all(|o| o.events.is_empty()));
        assert_eq!(events(&got[4]), [start("PING", "PING"), END_REQ]);
        assert_eq!(events(&got[5]), [success(), END_RESP]);
        // TLS: nothing after the TLS request is parsed.
        let ssl_request = pkt(1, &cat(&[b"\x85\xae\xff\x01", b"\0\0\0\x01\x2d", &[0; 23]]));
        let got = run(&[
            req(ssl_request),
            resp(b"\x16\x03\x03\x00\x7a\x02\x00\x00\x76".to_vec()),
            req(query("SELECT 1")),
        ]);
        assert!(got.iter().all(|o| o.events.is_empty() && o.unparsed == 0));
    }

    #[test]
    fn quit_and_statement_close_have_no_response() {
        let got = run(&[
            req(login(MARIADB_CAPS)),
            resp(login_ok()),
            req(pkt(0, b"\x19\x01\0\0\0")),
            req(pkt(0, b"\x01")),
        ]);
        assert!(events(&got[2]).is_empty());
        assert!(events(&got[3]).is_empty());
    }

    #[test]
    fn prepared_statements() {
        let sql = "SELECT id, name FROM users WHERE email = ?";
        let prepare = pkt(0, &cat(&[b"\x16", sql.as_bytes()]));
        // MariaDB pipelines PREPARE and EXECUTE of "the last statement" (id 0xffffffff).
        let execute_last = pkt(
            0,
            b"\x17\xff\xff\xff\xff\x00\x01\x00\x00\x00\x00\x01\xfe\x00\x03a@b",
        );
        let prepare_ok = cat(&[
            &pkt(1, b"\x00\x07\x00\x00\x00\x02\x00\x01\x00\x00\x00\x00"),
            &column("?", 2),
            &eof(3, 2),
            &column("id", 4),
            &column("name", 5),
            &eof(6, 2),
        ]);
        let binary_rows = cat(&[
            &pkt(1, b"\x02"),
            &column("id", 2),
            &column("name", 3),
            &eof(4, 2),
            &pkt(5, b"\x00\x00\x07\x00\x00\x00\x03bob"),
            &eof(6, 2),
        ]);
        let execute_7 = pkt(
            0,
            b"\x17\x07\x00\x00\x00\x00\x01\x00\x00\x00\x00\x01\xfe\x00\x03c@d",
        );
        let got = run(&[
            req(login(MARIADB_CAPS)),
            resp(login_ok()),
            req(cat(&[&prepare, &execute_last])),
            resp(prepare_ok),
            resp(binary_rows.clone()),
            req(execute_7.clone()),
            resp(binary_rows.clone()),
            req(pkt(0, b"\x19\x07\0\0\0")),
            req(execute_7),
            resp(pkt(1, b"\xff\xdb\x04#HY000Unknown prepared statement handler (7) given to mysqld_stmt_execute")),
        ]);
        let normalized = "SELECT id, name FROM users WHERE email = ?";
        assert_eq!(
            events(&got[2]),
            [
                start("PREPARE", normalized),
                END_REQ,
                start("EXECUTE", normalized),
                END_REQ
            ]
        );
        assert_eq!(events(&got[3]), [success(), END_RESP]);
        assert_eq!(events(&got[4]), [success(), END_RESP]);
        assert_eq!(events(&got[5]), [start("EXECUTE", normalized), END_REQ]);
        assert_eq!(events(&got[6]), [success(), END_RESP]);
        assert!(events(&got[7]).is_empty());
        assert_eq!(events(&got[8]), [start("EXECUTE", "EXECUTE"), END_REQ]);
        assert_eq!(
            events(&got[9]),
            [
                failure(
                    "1243",
                    "Unknown prepared statement handler (7) given to mysqld_stmt_execute"
                ),
                END_RESP
            ]
        );
    }

    #[test]
    fn multiple_results_are_one_response() {
        let response = cat(&[
            &pkt(1, b"\x01"),
            &column("1", 2),
            &eof(3, 0x000a),
            &row("1", 4),
            &eof(5, 0x000a),
            &pkt(6, b"\x01"),
            &column("2", 7),
            &eof(8, 0x0002),
            &row("2", 9),
            &eof(10, 0x0002),
        ]);
        let ok_then_err = cat(&[
            &pkt(1, b"\x00\x01\x00\x0a\x00\x00\x00"),
            &pkt(2, b"\xff\x7a\x04#42S02Table 'test.nope' doesn't exist"),
        ]);
        let got = run(&[
            req(login(MARIADB_CAPS)),
            resp(login_ok()),
            req(query("select 1; select 2")),
            resp(response[..30].to_vec()),
            resp(response[30..].to_vec()),
            req(query("insert into t values (1); select * from nope")),
            resp(ok_then_err),
        ]);
        assert_eq!(
            events(&got[2]),
            [start("SELECT", "select ?; select ?"), END_REQ]
        );
        assert_eq!(events(&got[3]), [success()]);
        assert_eq!(events(&got[4]), [END_RESP]);
        assert_eq!(
            events(&got[6]),
            [failure("1146", "Table 'test.nope' doesn't exist"), END_RESP]
        );
    }

    #[test]
    fn split_headers_and_long_packets() {
        let head = cat(&[&pkt(1, b"\x01"), &column("doc", 2), &eof(3, 2)]);
        // One row of 100000 bytes, most of it not captured, framed by its length.
        let mut big_row = vec![0xa0, 0x86, 0x01, 4, 0xfd, 0x9c, 0x86, 0x01];
        big_row.extend(std::iter::repeat_n(b'x', 900));
        let cut_segment = cat(&[&head, &big_row]);
        let cut_len = head.len() + 4 + 100_000;
        let ok = login_ok();
        let long_sql = format!("SELECT * FROM t WHERE a IN ({})", "12345, ".repeat(1000));
        let long_query = query(&long_sql);
        let got = run(&[
            req(login(MARIADB_CAPS)),
            resp(ok[..2].to_vec()),
            resp(ok[2..].to_vec()),
            req(query("select doc from docs")),
            (Direction::Response, cut_segment, cut_len),
            resp(eof(5, 2)[..3].to_vec()),
            resp(eof(5, 2)[3..].to_vec()),
            (
                Direction::Request,
                long_query[..1024].to_vec(),
                long_query.len(),
            ),
            resp(ok_eof(1, 2)),
        ]);
        assert!(got[..3].iter().all(|o| o.events.is_empty()));
        assert_eq!(
            events(&got[3]),
            [start("SELECT", "select doc from docs"), END_REQ]
        );
        assert_eq!(events(&got[4]), [success()]);
        assert_eq!((got[4].truncated, got[4].unparsed), (0, 0));
        assert!(events(&got[5]).is_empty());
        assert_eq!(events(&got[6]), [END_RESP]);
        let visible = String::from_utf8_lossy(&long_query[5..1024]).into_owned();
        assert_eq!(
            events(&got[7]),
            [start("SELECT", &normalize_visible(&visible)), END_REQ]
        );
        assert_eq!(got[7].truncated, 1);
        assert_eq!(events(&got[8]), [success(), END_RESP]);
    }

    fn normalize_visible(sql: &str) -> String {
        crate::sql::normalize_mysql(sql)
    }

    #[test]
    fn rows_far_beyond_the_capture() {
        let mut rows = cat(&[&pkt(1, b"\x01"), &column("n", 2), &eof(3, 2)]);
        let mut seq = 4u8;
        while rows.len() < 4096 {
            rows.extend(row("some value of a row", seq));
            seq = seq.wrapping_add(1);
        }
        let tail = cat(&[&rows[2000..2100], &eof(seq, 2)]);
        let got = run(&[
            req(login(MARIADB_CAPS)),
            resp(login_ok()),
            req(query("select n from big")),
            (Direction::Response, rows[..1024].to_vec(), 16_384),
            (Direction::Response, rows[1024..2048].to_vec(), 16_384),
            // The last read ends with the final EOF: the response ends there.
            resp(tail),
            req(query("select n from big")),
            (Direction::Response, rows[..1024].to_vec(), 16_384),
            (Direction::Response, rows[2000..2100].to_vec(), 100),
            // Without a visible end, the next command ends the response.
            req(pkt(0, b"\x0e")),
            resp(ok(1)),
        ]);
        assert_eq!(events(&got[3]), [success()]);
        assert_eq!(got[3].truncated, 1);
        assert!(events(&got[4]).is_empty());
        assert_eq!(events(&got[5]), [END_RESP]);
        assert_eq!(
            events(&got[6]),
            [start("SELECT", "select n from big"), END_REQ]
        );
        assert_eq!(events(&got[7]), [success()]);
        assert!(events(&got[8]).is_empty());
        assert_eq!(events(&got[9]), [END_RESP, start("PING", "PING"), END_REQ]);
        assert_eq!(events(&got[10]), [success(), END_RESP]);
    }

    #[test]
    fn garbage_is_counted_not_parsed() {
        let got = run(&[
            req(login(MARIADB_CAPS)),
            resp(login_ok()),
            req(pkt(0, b"\x99hello")),
            resp(ok(1)),
            req(pkt(0, b"")),
        ]);
        assert!(got.iter().all(|o| o.events.is_empty()));
        assert_eq!(got[2].unparsed, 1);
        assert_eq!(got[3].unparsed, 1);
        assert_eq!(got[4].unparsed, 1);
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let seeds = vec![
            login(MARIADB_CAPS),
            login_ok(),
            query("select 1"),
            eof(3, 8),
        ];
        assert_random_segments_keep_the_contract(
            || Box::new(MysqlParser::default()),
            &seeds,
            0x9e37_79b9_7f4a_7c15_u64,
        );
    }
}
