//! Redis RESP2/RESP3 framing.
//!
//! Commands are arrays of bulk strings (or, rarely, inline lines); replies are any RESP value,
//! nested to a bounded depth. Bulk payloads are framed by their length, so values far beyond
//! the captured prefix of a syscall are counted, not seen. Pipelining is the norm: one segment
//! may hold many commands or replies, and any message may be split at any byte. Pub/sub pushes
//! answer no command and are skipped, so they never pair with one.

use std::collections::VecDeque;

use crate::stream::{
    Direction, FeedOutcome, MessageEvent, RequestInfo, ResponseInfo, Segment, StreamParser,
};

/// Nesting of aggregate replies followed; deeper replies lose framing.
const MAX_DEPTH: usize = 16;
/// Bytes of a header line kept (the rest of a long simple string or error is only scanned).
const MAX_LINE_KEPT: usize = 1024;
/// A line longer than this without its newline is not RESP.
const MAX_LINE: usize = 64 * 1024;
/// Length and count lines are short; a longer one is garbage.
const MAX_NUMBER_LINE: usize = 24;
/// Longest command name kept.
const MAX_NAME: u64 = 64;
/// Longest first element of a reply array kept to recognize pub/sub messages.
const MAX_KIND: u64 = 16;
/// Longest error text kept.
const MAX_ERROR: usize = 512;
/// Commands remembered while their replies are awaited (pub/sub pairing only).
const MAX_PENDING: usize = 1024;

/// Whether `data` starts like a RESP command: `*<n>\r\n$<m>\r\n<name>\r\n` with a plausible
/// command name, which HTTP, PostgreSQL, MySQL and DNS bytes never are.
pub fn looks_like_request(data: &[u8]) -> bool {
    let Some((count, rest)) = number_line(data, b'*') else {
        return false;
    };
    let Some((len, rest)) = number_line(rest, b'$') else {
        return false;
    };
    if count == 0 || len == 0 || len > MAX_NAME {
        return false;
    }
    let len = len as usize;
    rest.len() >= len + 2 && is_command_name(&rest[..len]) && &rest[len..len + 2] == b"\r\n"
}

/// `<prefix><digits>\r\n` at the start of `data`: the number and the bytes after the line.
fn number_line(data: &[u8], prefix: u8) -> Option<(u64, &[u8])> {
    let rest = data.strip_prefix(&[prefix])?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > 10 {
        return None;
    }
    let after = rest[digits..].strip_prefix(b"\r\n")?;
    let number = std::str::from_utf8(&rest[..digits]).ok()?.parse().ok()?;
    Some((number, after))
}

/// Letters first, then letters, digits and the separators of module commands (`JSON.SET`).
fn is_command_name(name: &[u8]) -> bool {
    name.first().is_some_and(u8::is_ascii_alphabetic)
        && name
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Which way a RESP stream goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    /// Client to server: commands.
    Commands,
    /// Server to client: replies and pushes.
    Replies,
}

/// One open aggregate: how many values it still holds.
#[derive(Debug, Clone, Copy)]
struct Level {
    left: u64,
    /// An attribute (`|`) annotates the value after it and is not a value of its parent.
    attribute: bool,
}

/// A start that waits for more of its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Deferred {
    /// A command: its name is its first element.
    Command,
    /// A reply array or push: its first element tells pub/sub messages apart.
    Aggregate { push: bool, count: u64 },
    /// A blob error (`!`): its text is its payload.
    BlobError,
}

/// A reply's start, as far as the pairing needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Reply {
    /// Any value but an error or an array.
    Value,
    /// An array or push, with its first element when it is a short string.
    Aggregate {
        push: bool,
        count: u64,
        first: Option<Vec<u8>>,
    },
    /// An error, with its text.
    Error(String),
}

/// What one RESP stream found, before pairing.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Found {
    /// A command began; its name, uppercased (empty when not seen).
    Command(String),
    /// A reply began.
    Reply(Reply),
    /// The message in progress ended.
    End,
}

/// Why framing was lost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Loss {
    /// Bytes that are not RESP.
    Garbage,
    /// The capture ended where a header was due.
    Cut,
}

/// Frames one direction of RESP.
#[derive(Debug, Clone)]
struct RespStream {
    side: Side,
    /// Kept prefix of the header line being read.
    line: Vec<u8>,
    /// Full length of that line so far.
    line_len: usize,
    /// Bulk payload bytes still to pass.
    bulk_left: u64,
    /// Bytes of the CRLF after the payload still to pass.
    crlf_left: u8,
    stack: Vec<Level>,
    in_message: bool,
    /// Whether the message in progress has been reported (so its end must be).
    started: bool,
    deferred: Option<Deferred>,
    /// Kept payload of the bulk being passed, when `capturing`.
    capture: Vec<u8>,
    capturing: bool,
    /// Bytes of the captured bulk went by unseen.
    capture_cut: bool,
    /// Framing is lost: wait for a segment that starts a message.
    lost: bool,
    /// A reported message lost its framing and has not been ended.
    open_lost: bool,
}

impl RespStream {
    fn new(side: Side) -> Self {
        Self {
            side,
            line: Vec::new(),
            line_len: 0,
            bulk_left: 0,
            crlf_left: 0,
            stack: Vec::new(),
            in_message: false,
            started: false,
            deferred: None,
            capture: Vec::new(),
            capturing: false,
            capture_cut: false,
            lost: false,
            open_lost: false,
        }
    }

    /// Frames one segment's bytes (`len` of them moved, `data` seen); returns unparsed and
    /// truncated counts. `may_resync`: whether a message may start here after lost framing.
    fn feed(
        &mut self,
        data: &[u8],
        len: usize,
        may_resync: bool,
        found: &mut Vec<Found>,
    ) -> (u32, u32) {
        if self.lost {
            // Resynchronize only where the whole visible segment reads as RESP from its start.
            let starts = may_resync
                && data.first().is_some_and(|&b| match self.side {
                    Side::Commands => b == b'*',
                    Side::Replies => b"+-:$*_,#(=!%~>|".contains(&b),
                });
            if !starts {
                return (u32::from(len > 0), 0);
            }
            let mut trial = Self::new(self.side);
            let mut trial_found = Vec::new();
            let result = trial.run(data, len, &mut trial_found);
            if result == Err(Loss::Garbage) {
                return (1, 0);
            }
            if self.open_lost {
                found.push(Found::End);
            }
            *self = trial;
            found.append(&mut trial_found);
            return match result {
                Ok(()) => (0, 0),
                Err(loss) => self.lose(loss, found),
            };
        }
        match self.run(data, len, found) {
            Ok(()) => (0, 0),
            Err(loss) => self.lose(loss, found),
        }
    }

    fn run(&mut self, data: &[u8], len: usize, found: &mut Vec<Found>) -> Result<(), Loss> {
        let mut pos = 0;
        while pos < data.len() {
            let rest = &data[pos..];
            if self.bulk_left > 0 {
                let n = usize::try_from(self.bulk_left).map_or(rest.len(), |b| b.min(rest.len()));
                if self.capturing {
                    let room = MAX_ERROR.saturating_sub(self.capture.len());
                    self.capture.extend_from_slice(&rest[..n.min(room)]);
                }
                self.bulk_left -= n as u64;
                pos += n;
            } else if self.crlf_left > 0 {
                let want = if self.crlf_left == 2 { b'\r' } else { b'\n' };
                if rest[0] != want {
                    return Err(Loss::Garbage);
                }
                self.crlf_left -= 1;
                pos += 1;
                if self.crlf_left == 0 {
                    self.bulk_done(found);
                }
            } else {
                match rest.iter().position(|&b| b == b'\n') {
                    Some(i) => {
                        self.take_line(&rest[..i])?;
                        pos += i + 1;
                        let line = std::mem::take(&mut self.line);
                        let overflowed = self.line_len > line.len();
                        self.line_len = 0;
                        let result = self.header(&line, overflowed, found);
                        self.line = line;
                        self.line.clear();
                        result?;
                    }
                    None => {
                        self.take_line(rest)?;
                        pos = data.len();
                    }
                }
            }
        }
        // Bytes not captured: only a bulk payload (and its CRLF) can be passed unseen.
        let mut gap = len.saturating_sub(data.len()) as u64;
        if gap == 0 {
            return Ok(());
        }
        if self.bulk_left > 0 || self.crlf_left > 0 {
            let n = gap.min(self.bulk_left);
            self.bulk_left -= n;
            gap -= n;
            if n > 0 && self.capturing {
                self.capture_cut = true;
            }
            if self.bulk_left == 0 {
                let c = gap.min(u64::from(self.crlf_left));
                self.crlf_left -= c as u8;
                gap -= c;
                if self.crlf_left == 0 {
                    self.bulk_done(found);
                }
            }
        }
        if gap > 0 { Err(Loss::Cut) } else { Ok(()) }
    }

    /// Adds bytes of a header line, rejecting what cannot start or be a RESP line early.
    fn take_line(&mut self, bytes: &[u8]) -> Result<(), Loss> {
        if self.line_len == 0
            && let Some(&first) = bytes.first()
        {
            let ok = match self.side {
                Side::Commands if self.in_message => first == b'$',
                Side::Commands => first == b'*' || first == b'\r' || first.is_ascii_alphabetic(),
                Side::Replies => b"+-:$*_,#(=!%~>|".contains(&first),
            };
            if !ok {
                return Err(Loss::Garbage);
            }
        }
        self.line_len += bytes.len();
        let room = MAX_LINE_KEPT.saturating_sub(self.line.len());
        self.line.extend_from_slice(&bytes[..bytes.len().min(room)]);
        let long_ok = matches!(self.line.first(), Some(b'+' | b'-' | b'(' | b',' | b'\r'))
            || self.line.first().is_some_and(u8::is_ascii_alphabetic);
        if self.line_len > MAX_LINE || (!long_ok && self.line_len > MAX_NUMBER_LINE) {
            return Err(Loss::Garbage);
        }
        Ok(())
    }

    /// Handles one complete header line (without its `\n`).
    fn header(
        &mut self,
        line: &[u8],
        overflowed: bool,
        found: &mut Vec<Found>,
    ) -> Result<(), Loss> {
        let inline_allowed = self.side == Side::Commands && !self.in_message;
        let body = match line.strip_suffix(b"\r") {
            Some(body) => body,
            None if overflowed || inline_allowed => line,
            None => return Err(Loss::Garbage),
        };
        let Some((&kind, text)) = body.split_first() else {
            // Redis skips empty lines between inline commands.
            return if inline_allowed {
                Ok(())
            } else {
                Err(Loss::Garbage)
            };
        };
        match self.side {
            Side::Commands => self.command_header(kind, text, overflowed, found),
            Side::Replies => self.reply_header(kind, text, overflowed, found),
        }
    }

    fn command_header(
        &mut self,
        kind: u8,
        text: &[u8],
        overflowed: bool,
        found: &mut Vec<Found>,
    ) -> Result<(), Loss> {
        if !self.in_message {
            if kind.is_ascii_alphabetic() {
                // An inline command: its first word is the name; the rest may be secret.
                let mut name = vec![kind];
                name.extend(text.iter().take_while(|b| !b.is_ascii_whitespace()));
                name.truncate(MAX_NAME as usize);
                found.push(Found::Command(upper(&name)));
                found.push(Found::End);
                return Ok(());
            }
            if kind != b'*' || overflowed {
                return Err(Loss::Garbage);
            }
            let count = parse_count(text, true)?;
            if count > 0 {
                self.in_message = true;
                self.deferred = Some(Deferred::Command);
                self.stack.push(Level {
                    left: count,
                    attribute: false,
                });
            }
            // Redis ignores `*0` and `*-1` commands: nothing to report.
            return Ok(());
        }
        if kind != b'$' || overflowed {
            return Err(Loss::Garbage);
        }
        let len = parse_count(text, false)?;
        if self.deferred == Some(Deferred::Command) {
            if len <= MAX_NAME {
                self.capturing = true;
            } else {
                self.resolve(None, found);
            }
        }
        self.bulk_left = len;
        self.crlf_left = 2;
        Ok(())
    }

    fn reply_header(
        &mut self,
        kind: u8,
        text: &[u8],
        overflowed: bool,
        found: &mut Vec<Found>,
    ) -> Result<(), Loss> {
        if overflowed && !matches!(kind, b'+' | b'-' | b'(' | b',') {
            return Err(Loss::Garbage);
        }
        let top = self.stack.is_empty();
        let first_element =
            self.stack.len() == 1 && matches!(self.deferred, Some(Deferred::Aggregate { .. }));
        match kind {
            b'+' | b'-' | b':' | b'_' | b',' | b'#' | b'(' => {
                if !scalar_ok(kind, text, overflowed) {
                    return Err(Loss::Garbage);
                }
                if top {
                    self.in_message = true;
                    let reply = if kind == b'-' {
                        Reply::Error(error_text(text))
                    } else {
                        Reply::Value
                    };
                    found.push(Found::Reply(reply));
                    self.started = true;
                } else if first_element {
                    let first =
                        (kind == b'+' && text.len() <= MAX_KIND as usize).then(|| text.to_vec());
                    self.resolve(first, found);
                }
                self.value_done(found);
            }
            b'$' | b'=' | b'!' => {
                if kind == b'$' && text == b"-1" {
                    // RESP2 null bulk string.
                    return self.reply_header(b'_', b"", false, found);
                }
                let len = parse_count(text, false)?;
                if top {
                    self.in_message = true;
                    if kind == b'!' {
                        self.deferred = Some(Deferred::BlobError);
                        self.capturing = true;
                    } else {
                        found.push(Found::Reply(Reply::Value));
                        self.started = true;
                    }
                } else if first_element {
                    if len <= MAX_KIND {
                        self.capturing = true;
                    } else {
                        self.resolve(None, found);
                    }
                }
                self.bulk_left = len;
                self.crlf_left = 2;
            }
            b'*' | b'~' | b'>' | b'%' | b'|' => {
                if kind == b'*' && text == b"-1" {
                    // RESP2 null array.
                    return self.reply_header(b'_', b"", false, found);
                }
                let n = parse_count(text, false)?;
                let attribute = kind == b'|';
                let count = if matches!(kind, b'%' | b'|') {
                    n.checked_mul(2).ok_or(Loss::Garbage)?
                } else {
                    n
                };
                if top {
                    self.in_message = true;
                    if !attribute {
                        if count > 0 && matches!(kind, b'*' | b'>') {
                            self.deferred = Some(Deferred::Aggregate {
                                push: kind == b'>',
                                count,
                            });
                        } else {
                            found.push(Found::Reply(Reply::Value));
                            self.started = true;
                        }
                    }
                } else if first_element && !attribute {
                    self.resolve(None, found);
                }
                if count == 0 {
                    if !attribute {
                        self.value_done(found);
                    }
                } else {
                    if self.stack.len() >= MAX_DEPTH {
                        return Err(Loss::Garbage);
                    }
                    self.stack.push(Level {
                        left: count,
                        attribute,
                    });
                }
            }
            _ => return Err(Loss::Garbage),
        }
        Ok(())
    }

    /// Reports the deferred start, with the first element's bytes when known.
    fn resolve(&mut self, first: Option<Vec<u8>>, found: &mut Vec<Found>) {
        let Some(deferred) = self.deferred.take() else {
            return;
        };
        let start = match deferred {
            Deferred::Command => Found::Command(first.as_deref().map(upper).unwrap_or_default()),
            Deferred::Aggregate { push, count } => {
                Found::Reply(Reply::Aggregate { push, count, first })
            }
            Deferred::BlobError => Found::Reply(Reply::Error(error_text(
                first.as_deref().unwrap_or_default(),
            ))),
        };
        found.push(start);
        self.started = true;
    }

    /// A bulk payload and its CRLF have passed.
    fn bulk_done(&mut self, found: &mut Vec<Found>) {
        if self.capturing {
            self.capturing = false;
            let bytes = std::mem::take(&mut self.capture);
            let whole = !std::mem::take(&mut self.capture_cut);
            // A partly seen name is no name; a partly seen error text is still its start.
            let keep = whole || self.deferred == Some(Deferred::BlobError);
            self.resolve(keep.then_some(bytes), found);
        }
        self.value_done(found);
    }

    /// A value is complete: close the aggregates it completes, and the message.
    fn value_done(&mut self, found: &mut Vec<Found>) {
        loop {
            let Some(level) = self.stack.last_mut() else {
                self.resolve(None, found);
                if self.started {
                    found.push(Found::End);
                }
                self.in_message = false;
                self.started = false;
                return;
            };
            level.left -= 1;
            if level.left > 0 {
                return;
            }
            let attribute = level.attribute;
            self.stack.pop();
            if attribute {
                return;
            }
        }
    }

    /// Gives up framing until a segment starts a message; returns unparsed and truncated.
    fn lose(&mut self, loss: Loss, found: &mut Vec<Found>) -> (u32, u32) {
        let mut truncated = 0;
        if loss == Loss::Cut {
            if self.in_message {
                // A real message whose rest went unseen: report what is known of it.
                if self.capturing && self.deferred == Some(Deferred::BlobError) {
                    let text = std::mem::take(&mut self.capture);
                    self.resolve(Some(text), found);
                } else {
                    self.resolve(None, found);
                }
                truncated = 1;
            } else if self.side == Side::Commands
                && self.line.first().is_some_and(u8::is_ascii_alphabetic)
            {
                // An inline command cut short: its name if a space shows where it ends.
                let name: Vec<u8> = match self.line.iter().position(|b| b.is_ascii_whitespace()) {
                    Some(end) if end as u64 <= MAX_NAME => self.line[..end].to_vec(),
                    _ => Vec::new(),
                };
                found.push(Found::Command(upper(&name)));
                self.started = true;
                truncated = 1;
            }
        }
        let open_lost = self.started;
        *self = Self::new(self.side);
        self.lost = true;
        self.open_lost = open_lost;
        (1, truncated)
    }
}

/// A length or count: digits (or `-1` where `null_ok`), at most 2^40.
fn parse_count(text: &[u8], null_ok: bool) -> Result<u64, Loss> {
    if null_ok && text == b"-1" {
        return Ok(0);
    }
    if text.is_empty() || text.len() > 13 || !text.iter().all(u8::is_ascii_digit) {
        return Err(Loss::Garbage);
    }
    let n = text.iter().fold(0u64, |n, &d| n * 10 + u64::from(d - b'0'));
    if n > 1 << 40 {
        Err(Loss::Garbage)
    } else {
        Ok(n)
    }
}

/// Whether a one-line value's text fits its type.
fn scalar_ok(kind: u8, text: &[u8], overflowed: bool) -> bool {
    let signed_digits = |t: &[u8]| {
        let digits = t
            .strip_prefix(b"-")
            .or_else(|| t.strip_prefix(b"+"))
            .unwrap_or(t);
        !digits.is_empty() && digits.iter().all(u8::is_ascii_digit)
    };
    match kind {
        b':' => text.len() <= 21 && signed_digits(text),
        b'(' => overflowed || signed_digits(text),
        b'_' => text.is_empty(),
        b'#' => text == b"t" || text == b"f",
        b',' => !text.is_empty() && text.iter().all(u8::is_ascii_graphic),
        _ => !text.contains(&b'\r'),
    }
}

fn upper(name: &[u8]) -> String {
    String::from_utf8_lossy(name).to_ascii_uppercase()
}

/// An error's text, bounded at a character boundary.
fn error_text(text: &[u8]) -> String {
    let mut s = String::from_utf8_lossy(&text[..text.len().min(MAX_ERROR)]).into_owned();
    if s.len() > MAX_ERROR {
        let mut end = MAX_ERROR;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// Whether a command subscribes to channels (its replies come as pub/sub messages).
fn subscribes(name: &str) -> bool {
    matches!(name, "SUBSCRIBE" | "PSUBSCRIBE" | "SSUBSCRIBE")
}

/// Whether a command's reply is a pub/sub confirmation rather than a plain value.
fn is_pubsub_command(name: &str) -> bool {
    subscribes(name) || matches!(name, "UNSUBSCRIBE" | "PUNSUBSCRIBE" | "SUNSUBSCRIBE")
}

/// RESP framing of both directions, and pairing rules for pub/sub.
#[derive(Debug)]
pub struct RedisParser {
    commands: RespStream,
    replies: RespStream,
    /// Per command awaiting its reply (oldest first): whether it is a (un)subscribe.
    pending: VecDeque<bool>,
    /// The client has subscribed: arrays shaped like pub/sub messages are pushes.
    subscribed: bool,
    /// The reply in progress is a push that answers no command: its end is not reported.
    skipping: bool,
    /// What the streams found in the segment being fed (empty between segments).
    found: Vec<Found>,
}

impl Default for RedisParser {
    fn default() -> Self {
        Self {
            commands: RespStream::new(Side::Commands),
            replies: RespStream::new(Side::Replies),
            pending: VecDeque::new(),
            subscribed: false,
            skipping: false,
            found: Vec::new(),
        }
    }
}

impl RedisParser {
    fn command(&mut self, name: String, events: &mut Vec<MessageEvent>) {
        if std::mem::take(&mut self.replies.open_lost) {
            // A reply whose framing was lost is over by the next command, as far as we know.
            self.end_reply(events);
        }
        if subscribes(&name) {
            self.subscribed = true;
        } else if name == "RESET" {
            self.subscribed = false;
        }
        if self.pending.len() >= MAX_PENDING {
            self.pending.pop_front();
        }
        self.pending.push_back(is_pubsub_command(&name));
        events.push(MessageEvent::RequestStart(RequestInfo {
            method: name.clone().into(),
            resource: name,
            trace_id: None,
            dns_id: None,
        }));
    }

    fn reply(&mut self, reply: Reply, events: &mut Vec<MessageEvent>) {
        if std::mem::take(&mut self.commands.open_lost) {
            // The server answers a command only once it has all of it.
            events.push(MessageEvent::End {
                direction: Direction::Request,
            });
        }
        let info = match reply {
            Reply::Error(text) => {
                self.pending.pop_front();
                ResponseInfo {
                    status: text.split(' ').next().unwrap_or_default().to_owned().into(),
                    is_error: true,
                    error_message: Some(text),
                    ..ResponseInfo::default()
                }
            }
            Reply::Value => {
                self.pending.pop_front();
                ResponseInfo::default()
            }
            Reply::Aggregate { push, count, first } => {
                let kind = first.map(|f| f.to_ascii_lowercase()).unwrap_or_default();
                let message = matches!(
                    (kind.as_slice(), count),
                    (b"message" | b"smessage", 3) | (b"pmessage", 4)
                );
                let confirmation = count == 3
                    && matches!(
                        kind.as_slice(),
                        b"subscribe"
                            | b"psubscribe"
                            | b"ssubscribe"
                            | b"unsubscribe"
                            | b"punsubscribe"
                            | b"sunsubscribe"
                    );
                if push || (self.subscribed && (message || confirmation)) {
                    // One confirmation answers each (un)subscribe; the others, and messages,
                    // answer nothing.
                    if confirmation && self.pending.front() == Some(&true) {
                        self.pending.pop_front();
                    } else {
                        self.skipping = true;
                        return;
                    }
                } else {
                    self.pending.pop_front();
                }
                ResponseInfo::default()
            }
        };
        events.push(MessageEvent::ResponseStart(info));
    }

    fn end_reply(&mut self, events: &mut Vec<MessageEvent>) {
        if !std::mem::take(&mut self.skipping) {
            events.push(MessageEvent::End {
                direction: Direction::Response,
            });
        }
    }
}

impl StreamParser for RedisParser {
    fn feed_into(&mut self, segment: &Segment<'_>, out: &mut FeedOutcome) {
        // The streams' findings go through a list kept between segments (no allocation each).
        let mut found = std::mem::take(&mut self.found);
        // A reply stream that lost framing waits for a command still unanswered: pieces of a
        // long reply often start at one of its elements, which reads like a reply.
        let (stream, may_resync) = match segment.direction {
            Direction::Request => (&mut self.commands, true),
            Direction::Response => (&mut self.replies, !self.pending.is_empty()),
        };
        let (unparsed, truncated) = stream.feed(segment.data, segment.len, may_resync, &mut found);
        out.unparsed += unparsed;
        out.truncated += truncated;
        for item in found.drain(..) {
            match (segment.direction, item) {
                (_, Found::Command(name)) => self.command(name, &mut out.events),
                (_, Found::Reply(reply)) => self.reply(reply, &mut out.events),
                (Direction::Request, Found::End) => out.events.push(MessageEvent::End {
                    direction: Direction::Request,
                }),
                (Direction::Response, Found::End) => self.end_reply(&mut out.events),
            }
        }
        self.found = found;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::*;

    /// Bytes captured between redis-cli / redis-benchmark 7.0 and redis-server 7.0.
    const SET: &[u8] = b"*3\r\n$3\r\nSET\r\n$3\r\nfoo\r\n$3\r\nbar\r\n";
    const GET: &[u8] = b"*2\r\n$3\r\nGET\r\n$3\r\nfoo\r\n";
    const HELLO3: &[u8] = b"*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n";
    const HELLO3_REPLY: &[u8] = b"%7\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nversion\r\n$6\r\n7.0.15\r\n$5\r\nproto\r\n:3\r\n$2\r\nid\r\n:9\r\n$4\r\nmode\r\n$10\r\nstandalone\r\n$4\r\nrole\r\n$6\r\nmaster\r\n$7\r\nmodules\r\n*0\r\n";
    const BENCH_SET: &[u8] = b"*3\r\n$3\r\nSET\r\n$16\r\nkey:__rand_int__\r\n$3\r\nVXK\r\n";
    const WRONGTYPE: &str = "WRONGTYPE Operation against a key holding the wrong kind of value";

    fn request(data: &[u8]) -> Segment<'_> {
        Segment {
            direction: Direction::Request,
            data,
            len: data.len(),
        }
    }

    fn response(data: &[u8]) -> Segment<'_> {
        Segment {
            direction: Direction::Response,
            data,
            len: data.len(),
        }
    }

    /// A syscall of `len` bytes of which only `data` was captured.
    fn cut(direction: Direction, data: &[u8], len: usize) -> Segment<'_> {
        Segment {
            direction,
            data,
            len,
        }
    }

    fn cmd(name: &str) -> MessageEvent {
        MessageEvent::RequestStart(RequestInfo {
            method: name.to_owned().into(),
            resource: name.to_owned(),
            trace_id: None,
            dns_id: None,
        })
    }

    fn ok() -> MessageEvent {
        MessageEvent::ResponseStart(ResponseInfo::default())
    }

    fn error(status: &str, text: &str) -> MessageEvent {
        MessageEvent::ResponseStart(ResponseInfo {
            status: status.to_owned().into(),
            is_error: true,
            error_message: Some(text.to_owned()),
            ..ResponseInfo::default()
        })
    }

    fn events(events: Vec<MessageEvent>) -> FeedOutcome {
        outcome(events, 0, 0)
    }

    /// Feeds the segments in order and compares each outcome.
    fn check(name: &str, steps: &[(Segment<'_>, FeedOutcome)]) {
        let mut parser = RedisParser::default();
        for (i, (segment, expected)) in steps.iter().enumerate() {
            assert_eq!(&parser.feed(segment), expected, "{name}: segment {i}");
        }
    }

    #[test]
    fn detects_commands_only() {
        let cases: &[(&str, &[u8], bool)] = &[
            ("SET", SET, true),
            ("GET", GET, true),
            ("HELLO", HELLO3, true),
            (
                "module command",
                b"*2\r\n$8\r\nJSON.GET\r\n$1\r\nk\r\n",
                true,
            ),
            ("pipelined", BENCH_SET, true),
            ("inline PING", b"PING\r\n", false),
            ("name cut", b"*1\r\n$4\r\nPI", false),
            ("name length wrong", b"*1\r\n$4\r\nPINGS\r\n", false),
            ("not a name", b"*3\r\n$3\r\n1ET\r\n", false),
            ("integer element", b"*1\r\n:1\r\n", false),
            ("no elements", b"*0\r\n", false),
            ("reply", b"+OK\r\n", false),
            ("http", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", false),
            (
                "postgres startup",
                b"\x00\x00\x00\x08\x04\xd2\x16\x2f",
                false,
            ),
            (
                "mysql login",
                b"\x55\x00\x00\x01\x8d\xa6\xff\x09\x00\x00\x00\x01\x21\x00\x00\x00",
                false,
            ),
            (
                "dns over tcp",
                b"\x00\x38\xbe\xf4\x01\x20\x00\x01\x00\x00\x00\x00\x00\x01\x03www",
                false,
            ),
            ("empty", b"", false),
        ];
        for (name, data, want) in cases {
            assert_eq!(looks_like_request(data), *want, "{name}");
        }
    }

    /// A case name, a command, its reply, and what each should start.
    type Exchange<'a> = (&'a str, &'a [u8], &'a [u8], MessageEvent, MessageEvent);

    #[test]
    fn pairs_real_exchanges() {
        let blob_error = b"!21\r\nSYNTAX invalid syntax\r\n";
        let cases: &[Exchange<'_>] = &[
            ("simple string", SET, b"+OK\r\n", cmd("SET"), ok()),
            ("bulk", GET, b"$3\r\nbar\r\n", cmd("GET"), ok()),
            (
                "null bulk",
                b"*2\r\n$3\r\nGET\r\n$5\r\nnokey\r\n",
                b"$-1\r\n",
                cmd("GET"),
                ok(),
            ),
            (
                "error",
                b"*3\r\n$5\r\nLPUSH\r\n$3\r\nfoo\r\n$1\r\nx\r\n",
                b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
                cmd("LPUSH"),
                error("WRONGTYPE", WRONGTYPE),
            ),
            (
                "integer",
                b"*6\r\n$4\r\nHSET\r\n$1\r\nh\r\n$1\r\na\r\n$1\r\n1\r\n$1\r\nb\r\n$1\r\n2\r\n",
                b":2\r\n",
                cmd("HSET"),
                ok(),
            ),
            (
                "array",
                b"*2\r\n$7\r\nHGETALL\r\n$1\r\nh\r\n",
                b"*4\r\n$1\r\na\r\n$1\r\n1\r\n$1\r\nb\r\n$1\r\n2\r\n",
                cmd("HGETALL"),
                ok(),
            ),
            (
                "config get is its first word",
                b"*3\r\n$6\r\nCONFIG\r\n$3\r\nGET\r\n$9\r\nmaxmemory\r\n",
                b"*2\r\n$9\r\nmaxmemory\r\n$1\r\n0\r\n",
                cmd("CONFIG"),
                ok(),
            ),
            ("resp3 map with nested empty array", HELLO3, HELLO3_REPLY, cmd("HELLO"), ok()),
            (
                "resp3 empty set",
                b"*2\r\n$8\r\nSMEMBERS\r\n$3\r\nnos\r\n",
                b"~0\r\n",
                cmd("SMEMBERS"),
                ok(),
            ),
            (
                "resp3 set",
                b"*3\r\n$5\r\nDEBUG\r\n$8\r\nPROTOCOL\r\n$3\r\nset\r\n",
                b"~3\r\n:0\r\n:1\r\n:2\r\n",
                cmd("DEBUG"),
                ok(),
            ),
            (
                "resp3 map of booleans",
                b"*3\r\n$5\r\nDEBUG\r\n$8\r\nPROTOCOL\r\n$3\r\nmap\r\n",
                b"%3\r\n:0\r\n#f\r\n:1\r\n#t\r\n:2\r\n#f\r\n",
                cmd("DEBUG"),
                ok(),
            ),
            (
                "resp3 double",
                b"*3\r\n$5\r\nDEBUG\r\n$8\r\nPROTOCOL\r\n$6\r\ndouble\r\n",
                b",3.141\r\n",
                cmd("DEBUG"),
                ok(),
            ),
            (
                "resp3 big number",
                b"*3\r\n$5\r\nDEBUG\r\n$8\r\nPROTOCOL\r\n$6\r\nbignum\r\n",
                b"(1234567999999999999999999999999999999\r\n",
                cmd("DEBUG"),
                ok(),
            ),
            (
                "resp3 boolean",
                b"*3\r\n$5\r\nDEBUG\r\n$8\r\nPROTOCOL\r\n$4\r\ntrue\r\n",
                b"#t\r\n",
                cmd("DEBUG"),
                ok(),
            ),
            (
                "resp3 verbatim with a newline inside",
                b"*3\r\n$5\r\nDEBUG\r\n$8\r\nPROTOCOL\r\n$8\r\nverbatim\r\n",
                b"=29\r\ntxt:This is a verbatim\nstring\r\n",
                cmd("DEBUG"),
                ok(),
            ),
            (
                "resp3 null",
                b"*3\r\n$5\r\nDEBUG\r\n$8\r\nPROTOCOL\r\n$4\r\nnull\r\n",
                b"_\r\n",
                cmd("DEBUG"),
                ok(),
            ),
            (
                "resp3 attribute before the reply",
                b"*3\r\n$5\r\nDEBUG\r\n$8\r\nPROTOCOL\r\n$6\r\nattrib\r\n",
                b"|1\r\n$14\r\nkey-popularity\r\n*2\r\n$7\r\nkey:123\r\n:90\r\n$39\r\nSome real reply following the attribute\r\n",
                cmd("DEBUG"),
                ok(),
            ),
            (
                "resp3 blob error",
                b"*2\r\n$4\r\nEVAL\r\n$1\r\n(\r\n",
                blob_error,
                cmd("EVAL"),
                error("SYNTAX", "SYNTAX invalid syntax"),
            ),
            (
                "lowercase command",
                b"*2\r\n$3\r\nget\r\n$3\r\nfoo\r\n",
                b"$-1\r\n",
                cmd("GET"),
                ok(),
            ),
        ];
        for (name, req, resp, want_req, want_resp) in cases {
            check(
                name,
                &[
                    (request(req), events(vec![want_req.clone(), END_REQ])),
                    (response(resp), events(vec![want_resp.clone(), END_RESP])),
                ],
            );
        }
    }

    #[test]
    fn push_before_reply_is_skipped() {
        // DEBUG PROTOCOL push: an out-of-band push, then the command's reply.
        check(
            "push",
            &[
                (
                    request(b"*3\r\n$5\r\nDEBUG\r\n$8\r\nPROTOCOL\r\n$4\r\npush\r\n"),
                    events(vec![cmd("DEBUG"), END_REQ]),
                ),
                (
                    response(b">2\r\n$16\r\nserver-cpu-usage\r\n:42\r\n$40\r\nSome real reply following the push reply\r\n"),
                    events(vec![ok(), END_RESP]),
                ),
            ],
        );
    }

    #[test]
    fn pipelined_commands_and_replies() {
        let commands = BENCH_SET.repeat(16);
        let replies = b"+OK\r\n".repeat(16);
        let gets = b"*2\r\n$3\r\nGET\r\n$16\r\nkey:__rand_int__\r\n".repeat(16);
        let values = b"$3\r\nVXK\r\n".repeat(16);
        let mut config = b"*3\r\n$6\r\nCONFIG\r\n$3\r\nGET\r\n$4\r\nsave\r\n".to_vec();
        config.extend_from_slice(b"*3\r\n$6\r\nCONFIG\r\n$3\r\nGET\r\n$10\r\nappendonly\r\n");
        let config_replies: &[u8] =
            b"*2\r\n$4\r\nsave\r\n$0\r\n\r\n*2\r\n$10\r\nappendonly\r\n$2\r\nno\r\n";
        let sets: Vec<_> = (0..16).flat_map(|_| [cmd("SET"), END_REQ]).collect();
        let oks: Vec<_> = (0..16).flat_map(|_| [ok(), END_RESP]).collect();
        let get_events: Vec<_> = (0..16).flat_map(|_| [cmd("GET"), END_REQ]).collect();
        check(
            "redis-benchmark -P 16",
            &[
                (
                    request(&config),
                    events(vec![cmd("CONFIG"), END_REQ, cmd("CONFIG"), END_REQ]),
                ),
                (
                    response(config_replies),
                    events(vec![ok(), END_RESP, ok(), END_RESP]),
                ),
                (request(&commands), events(sets.clone())),
                (response(&replies), events(oks.clone())),
                (request(&gets), events(get_events)),
                (response(&values), events(oks)),
            ],
        );
    }

    /// Feeds `stream` split into pieces at the given cut points; returns all events.
    fn feed_pieces(direction: Direction, stream: &[u8], cuts: &[usize]) -> FeedOutcome {
        let mut parser = RedisParser::default();
        if direction == Direction::Response {
            for _ in 0..8 {
                parser.feed(&request(GET));
            }
        }
        let mut all = FeedOutcome::default();
        let mut start = 0;
        for &end in cuts.iter().chain([&stream.len()]) {
            let out = parser.feed(&Segment {
                direction,
                data: &stream[start..end],
                len: end - start,
            });
            all.events.extend(out.events);
            all.unparsed += out.unparsed;
            all.truncated += out.truncated;
            start = end;
        }
        all
    }

    #[test]
    fn splits_at_any_byte() {
        let mut commands = SET.to_vec();
        commands.extend_from_slice(b"*2\r\n$8\r\nJSON.GET\r\n$1\r\nk\r\n");
        commands.extend_from_slice(b"PING\r\n");
        commands.extend_from_slice(GET);
        let mut replies = HELLO3_REPLY.to_vec();
        replies.extend_from_slice(
            b"-WRONGTYPE Operation against a key holding the wrong kind of value\r\n",
        );
        replies.extend_from_slice(b"!21\r\nSYNTAX invalid syntax\r\n");
        replies.extend_from_slice(
            b"|1\r\n$14\r\nkey-popularity\r\n*2\r\n$7\r\nkey:123\r\n:90\r\n$2\r\nok\r\n",
        );
        replies.extend_from_slice(b"*2\r\n*1\r\n$1\r\na\r\n$-1\r\n");
        let want_commands = events(vec![
            cmd("SET"),
            END_REQ,
            cmd("JSON.GET"),
            END_REQ,
            cmd("PING"),
            END_REQ,
            cmd("GET"),
            END_REQ,
        ]);
        let want_replies = events(vec![
            ok(),
            END_RESP,
            error("WRONGTYPE", WRONGTYPE),
            END_RESP,
            error("SYNTAX", "SYNTAX invalid syntax"),
            END_RESP,
            ok(),
            END_RESP,
            ok(),
            END_RESP,
        ]);
        for (direction, stream, want) in [
            (Direction::Request, &commands, &want_commands),
            (Direction::Response, &replies, &want_replies),
        ] {
            assert_eq!(&feed_pieces(direction, stream, &[]), want, "whole");
            for at in 1..stream.len() {
                assert_eq!(
                    &feed_pieces(direction, stream, &[at]),
                    want,
                    "split at {at}"
                );
            }
            let every: Vec<usize> = (1..stream.len()).collect();
            assert_eq!(
                &feed_pieces(direction, stream, &every),
                want,
                "byte by byte"
            );
        }
    }

    #[test]
    fn split_command_as_sent() {
        // The command's value arrives in a second write (real bytes, sent by hand).
        check(
            "split",
            &[
                (
                    request(b"*1\r\n$4\r\nPING\r\n*3\r\n$3\r\nSET\r\n$1\r\n"),
                    events(vec![cmd("PING"), END_REQ, cmd("SET")]),
                ),
                (response(b"+PONG\r\n"), events(vec![ok(), END_RESP])),
                (request(b"k\r\n$1\r\nv\r\n"), events(vec![END_REQ])),
                (response(b"+OK\r\n"), events(vec![ok(), END_RESP])),
            ],
        );
    }

    #[test]
    fn large_values_counted_by_length() {
        const MIB: usize = 1 << 20;
        let header = b"$1048576\r\n";
        let mut first = header.to_vec();
        first.resize(1024, b'x');
        let middle = vec![b'x'; 1024];
        // The reply read by hiredis in 16 KiB reads, each captured to 1024 bytes.
        let total = header.len() + MIB + 2;
        let mut steps = vec![
            (request(GET), events(vec![cmd("GET"), END_REQ])),
            (cut(Direction::Response, &first, 16384), events(vec![ok()])),
        ];
        let mut moved = 16384;
        while total - moved > 16384 {
            steps.push((cut(Direction::Response, &middle, 16384), events(vec![])));
            moved += 16384;
        }
        let last = total - moved;
        let mut end = vec![b'x'; last - 2];
        end.extend_from_slice(b"\r\n");
        steps.push((
            cut(Direction::Response, &end[..last.min(1024)], last),
            events(vec![END_RESP]),
        ));
        check("1 MiB GET", &steps);

        // The tail and CRLF seen, with the next reply in the same read.
        let mut tail = vec![b'x'; 100];
        tail.extend_from_slice(b"\r\n+OK\r\n");
        check(
            "tail seen",
            &[
                (request(GET), events(vec![cmd("GET"), END_REQ])),
                (request(SET), events(vec![cmd("SET"), END_REQ])),
                (
                    cut(Direction::Response, &first, header.len() + MIB - 100),
                    events(vec![ok()]),
                ),
                (response(&tail), events(vec![END_RESP, ok(), END_RESP])),
            ],
        );

        // Server side: a 1 MiB SET value arriving in reads the capture cuts.
        let mut set = b"*3\r\n$3\r\nSET\r\n$3\r\nbig\r\n$1048576\r\n".to_vec();
        let set_header = set.len();
        set.resize(1024, b'x');
        let mut rest = vec![b'x'; 1000];
        rest.extend_from_slice(b"\r\n");
        check(
            "1 MiB SET",
            &[
                (
                    cut(Direction::Request, &set, set_header + MIB - 1000),
                    events(vec![cmd("SET")]),
                ),
                (request(&rest), events(vec![END_REQ])),
                (response(b"+OK\r\n"), events(vec![ok(), END_RESP])),
            ],
        );
    }

    #[test]
    fn cut_pipeline_resyncs() {
        // 32 pipelined SETs of 45 bytes in one write; the capture keeps 1024 bytes, so 22
        // commands are seen whole and the 23rd is cut in its key.
        let batch = BENCH_SET.repeat(32);
        assert_eq!(1024 / BENCH_SET.len(), 22);
        assert_eq!(1024 % BENCH_SET.len(), 34);
        let mut want: Vec<_> = (0..22).flat_map(|_| [cmd("SET"), END_REQ]).collect();
        want.push(cmd("SET"));
        let replies = b"+OK\r\n".repeat(32);
        let mut want_replies = vec![END_REQ];
        want_replies.extend((0..32).flat_map(|_| [ok(), END_RESP]));
        let next: Vec<_> = (0..2).flat_map(|_| [cmd("SET"), END_REQ]).collect();
        check(
            "cut pipeline",
            &[
                (
                    cut(Direction::Request, &batch[..1024], batch.len()),
                    outcome(want, 1, 1),
                ),
                (response(&replies), events(want_replies)),
                (request(&BENCH_SET.repeat(2)), events(next)),
            ],
        );
    }

    #[test]
    fn lost_reply_ends_at_next_command() {
        // COMMAND DOCS: a huge nested reply read in 16 KiB pieces; the capture loses framing.
        let docs: &[u8] = b"*480\r\n$6\r\nincrby\r\n*10\r\n$7\r\nsummary\r\n$56\r\nIncrement the integer value of a key by the given amount\r\n$5\r\nsince\r\n";
        let middle: &[u8] = b"\ngroup\r\n$9\r\nscripting\r\n$10\r\ncomplexity\r\n";
        check(
            "COMMAND DOCS",
            &[
                (
                    request(b"*2\r\n$7\r\nCOMMAND\r\n$4\r\nDOCS\r\n"),
                    events(vec![cmd("COMMAND"), END_REQ]),
                ),
                (
                    cut(Direction::Response, docs, 16384),
                    outcome(vec![ok()], 1, 1),
                ),
                (
                    cut(Direction::Response, middle, 16384),
                    outcome(vec![], 1, 0),
                ),
                // A piece that starts at an element reads like a reply, but nothing awaits one.
                (
                    cut(Direction::Response, b"$9\r\nscripting\r\n", 16384),
                    outcome(vec![], 1, 0),
                ),
                (
                    request(b"*1\r\n$4\r\nPING\r\n"),
                    events(vec![END_RESP, cmd("PING"), END_REQ]),
                ),
                (response(b"+PONG\r\n"), events(vec![ok(), END_RESP])),
            ],
        );
        // The same, but the next reply resynchronizes before any command shows.
        check(
            "resync on reply",
            &[
                (
                    request(&[GET, GET].concat()),
                    events(vec![cmd("GET"), END_REQ, cmd("GET"), END_REQ]),
                ),
                (
                    response(b"*2\r\n$1\r\na\r\n*1\r\n\x01\x02"),
                    outcome(vec![ok()], 1, 0),
                ),
                (response(b"\x03garbage"), outcome(vec![], 1, 0)),
                (
                    response(b"$1\r\nb\r\n"),
                    events(vec![END_RESP, ok(), END_RESP]),
                ),
            ],
        );
    }

    #[test]
    fn pubsub_messages_are_not_paired() {
        check(
            "resp2 subscribe",
            &[
                (
                    request(b"*3\r\n$9\r\nSUBSCRIBE\r\n$4\r\nnews\r\n$5\r\nsport\r\n"),
                    events(vec![cmd("SUBSCRIBE"), END_REQ]),
                ),
                (
                    response(b"*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n*3\r\n$9\r\nsubscribe\r\n$5\r\nsport\r\n:2\r\n"),
                    events(vec![ok(), END_RESP]),
                ),
                (response(b"*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$5\r\nhello\r\n"), events(vec![])),
                (request(b"*1\r\n$4\r\nPING\r\n"), events(vec![cmd("PING"), END_REQ])),
                (
                    response(b"*4\r\n$8\r\npmessage\r\n$2\r\nn*\r\n$4\r\nnews\r\n$2\r\nhi\r\n*2\r\n$4\r\npong\r\n$0\r\n\r\n"),
                    events(vec![ok(), END_RESP]),
                ),
            ],
        );
        check(
            "resp2 subscribe, message before pong",
            &[
                (
                    request(b"*2\r\n$9\r\nSUBSCRIBE\r\n$4\r\nnews\r\n"),
                    events(vec![cmd("SUBSCRIBE"), END_REQ]),
                ),
                (response(b"*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n"), events(vec![ok(), END_RESP])),
                (request(b"*1\r\n$4\r\nPING\r\n"), events(vec![cmd("PING"), END_REQ])),
                (
                    response(b"*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$5\r\nhello\r\n*2\r\n$4\r\npong\r\n$0\r\n\r\n"),
                    events(vec![ok(), END_RESP]),
                ),
            ],
        );
        check(
            "resp3 subscribe",
            &[
                (request(HELLO3), events(vec![cmd("HELLO"), END_REQ])),
                (response(HELLO3_REPLY), events(vec![ok(), END_RESP])),
                (
                    request(b"*2\r\n$9\r\nSUBSCRIBE\r\n$4\r\nnews\r\n"),
                    events(vec![cmd("SUBSCRIBE"), END_REQ]),
                ),
                (
                    response(b">3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n"),
                    events(vec![ok(), END_RESP]),
                ),
                (
                    response(b">3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$3\r\nhi3\r\n"),
                    events(vec![]),
                ),
            ],
        );
        check(
            "message-like array outside pub/sub",
            &[
                (
                    request(b"*4\r\n$6\r\nLRANGE\r\n$1\r\nl\r\n$1\r\n0\r\n$2\r\n-1\r\n"),
                    events(vec![cmd("LRANGE"), END_REQ]),
                ),
                (
                    response(b"*3\r\n$7\r\nmessage\r\n$1\r\na\r\n$1\r\nb\r\n"),
                    events(vec![ok(), END_RESP]),
                ),
            ],
        );
    }

    #[test]
    fn inline_commands() {
        check(
            "inline",
            &[
                (request(b"PING\r\n"), events(vec![cmd("PING"), END_REQ])),
                (response(b"+PONG\r\n"), events(vec![ok(), END_RESP])),
                (
                    request(b"\r\nset k v\nGET k\r\n"),
                    events(vec![cmd("SET"), END_REQ, cmd("GET"), END_REQ]),
                ),
                (
                    response(b"+OK\r\n$1\r\nv\r\n"),
                    events(vec![ok(), END_RESP, ok(), END_RESP]),
                ),
            ],
        );
    }

    #[test]
    fn garbage_and_depth_lose_framing() {
        let deep = [b"*1\r\n".repeat(17), b":1\r\n".to_vec()].concat();
        let ok_deep = [b"*1\r\n".repeat(16), b":1\r\n".to_vec()].concat();
        check(
            "depth",
            &[
                (
                    request(&[GET, GET].concat()),
                    events(vec![cmd("GET"), END_REQ, cmd("GET"), END_REQ]),
                ),
                (response(&ok_deep), events(vec![ok(), END_RESP])),
                (response(&deep), outcome(vec![ok()], 1, 0)),
                (request(GET), events(vec![END_RESP, cmd("GET"), END_REQ])),
            ],
        );
        check(
            "garbage commands",
            &[
                (
                    request(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"),
                    outcome(vec![], 1, 0),
                ),
                (request(b"GET / HTTP/1.1\r\n"), outcome(vec![], 1, 0)),
                (request(GET), events(vec![cmd("GET"), END_REQ])),
                (request(b"*2\r\n:1\r\n"), outcome(vec![], 1, 0)),
                (
                    request(b"*2\r\n$3\r\nGET\r\n$3\r\nfooXX"),
                    outcome(vec![], 1, 0),
                ),
                (request(GET), events(vec![cmd("GET"), END_REQ])),
                (
                    request(b"*2\r\n$3\r\nGET\r\n$3\r\nfooXX"),
                    outcome(vec![cmd("GET")], 1, 0),
                ),
                (
                    response(b"$3\r\nbar\r\n"),
                    events(vec![END_REQ, ok(), END_RESP]),
                ),
                (response(b"$3\r\nbar\r\n"), events(vec![ok(), END_RESP])),
            ],
        );
        check(
            "bad reply lines",
            &[
                (request(GET), events(vec![cmd("GET"), END_REQ])),
                (response(b"$abc\r\n"), outcome(vec![], 1, 0)),
                (response(b":12x\r\n"), outcome(vec![], 1, 0)),
                (response(b"+OK\n"), outcome(vec![], 1, 0)),
                (response(b"#x\r\n"), outcome(vec![], 1, 0)),
                (
                    response(&[b"$", &[b'9'; 30][..]].concat()),
                    outcome(vec![], 1, 0),
                ),
                (response(b"+OK\r\n"), events(vec![ok(), END_RESP])),
            ],
        );
    }

    #[test]
    fn long_lines_are_bounded() {
        let long_error = [b"-ERR ".as_slice(), &[b'e'; 5000], b"\r\n"].concat();
        let mut parser = RedisParser::default();
        parser.feed(&request(GET));
        let mut events = Vec::new();
        for piece in long_error.chunks(100) {
            events.extend(parser.feed(&response(piece)).events);
            assert!(parser.replies.line.len() <= MAX_LINE_KEPT);
        }
        let text = ["ERR ", &"e".repeat(MAX_ERROR - 4)].concat();
        assert_eq!(events, vec![error("ERR", &text), END_RESP]);
        // A line that never ends is given up.
        let mut parser = RedisParser::default();
        let mut unparsed = 0;
        for _ in 0..100 {
            unparsed += parser.feed(&response(&[b'+'; 1000])).unparsed;
        }
        // Lost past the limit; with no command awaiting a reply, the rest is skipped.
        assert_eq!(unparsed, 100 - MAX_LINE as u32 / 1000);
    }

    /// Xorshift64, so the test needs no crates.
    fn next(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let valid = [
            SET,
            GET,
            HELLO3_REPLY,
            b"+OK\r\n",
            b"*2\r\n$1\r\na\r\n%1\r\n:1\r\n|1\r\n",
        ]
        .concat();
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        for round in 0..4000 {
            let mut parser = RedisParser::default();
            let mut open = [0usize; 2];
            for _ in 0..8 {
                let len = (next(&mut state) % 300) as usize;
                let mut data: Vec<u8> = if round % 2 == 0 {
                    (0..len).map(|_| next(&mut state) as u8).collect()
                } else {
                    let start = (next(&mut state) as usize) % valid.len();
                    valid
                        .iter()
                        .cycle()
                        .skip(start)
                        .take(len)
                        .copied()
                        .collect()
                };
                if round % 3 == 0 && !data.is_empty() {
                    let at = (next(&mut state) as usize) % data.len();
                    data[at] = b"*$\r\n-:%|>!"[(next(&mut state) % 10) as usize];
                }
                let extra = if next(&mut state).is_multiple_of(4) {
                    (next(&mut state) % 5000) as usize
                } else {
                    0
                };
                let direction = if next(&mut state).is_multiple_of(2) {
                    Direction::Request
                } else {
                    Direction::Response
                };
                let out = parser.feed(&Segment {
                    direction,
                    data: &data,
                    len: data.len() + extra,
                });
                for event in out.events {
                    let (i, start) = match event {
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
                    if start {
                        assert_eq!(open[i], 0, "start while open");
                        open[i] = 1;
                    } else {
                        assert_eq!(open[i], 1, "end without start");
                        open[i] = 0;
                    }
                }
                for stream in [&parser.commands, &parser.replies] {
                    assert!(stream.line.len() <= MAX_LINE_KEPT);
                    assert!(stream.capture.len() <= MAX_ERROR);
                    assert!(stream.stack.len() <= MAX_DEPTH);
                }
                assert!(parser.pending.len() <= MAX_PENDING);
            }
        }
    }
}
