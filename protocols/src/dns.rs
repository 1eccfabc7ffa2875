//! DNS over UDP (one message per datagram) and TCP (each message behind a 2-byte big-endian
//! length, several per segment or split across segments).
//!
//! Every query and every response is reported whole (start and end) in the segment where it
//! completes, with its transaction id: the agent pairs answers to queries by it, since a
//! resolver may send several queries at once and get the answers in any order.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::stream::{
    Direction, FeedOutcome, MessageEvent, RequestInfo, ResponseInfo, Segment, StreamParser,
    Transport,
};

/// Size of the fixed message header.
const HEADER_LEN: usize = 12;
/// Answers reported per response.
const MAX_ANSWERS: usize = 32;
/// Bytes of one TCP message kept to read it; the rest is counted by its length.
const MAX_KEPT: usize = 8 * 1024;
/// Labels and compression pointers followed in one name, so pointer loops end.
const MAX_NAME_STEPS: usize = 128;
/// Longest name on the wire (RFC 1035).
const MAX_NAME_LEN: usize = 255;

/// Whether `data` starts like a DNS query (`tcp`: with the 2-byte length prefix).
///
/// Strict, since it decides the protocol from content alone: one standard query (QR=0,
/// opcode 0, one question, no answers or authority, at most two additional records such as
/// EDNS's OPT), a question of plain labels, and nothing after the message (for TCP: the
/// length prefix is exactly the message).
pub fn looks_like_query(data: &[u8], tcp: bool) -> bool {
    let message = if tcp {
        let Some((prefix, rest)) = data.split_first_chunk::<2>() else {
            return false;
        };
        let len = usize::from(u16::from_be_bytes(*prefix));
        match rest.get(..len) {
            Some(message) => message,
            None => return false,
        }
    } else {
        data
    };
    strict_query_len(message) == Some(message.len())
}

/// The length of the standard query at the start of `message`, if it is one.
fn strict_query_len(message: &[u8]) -> Option<usize> {
    let header = Header::parse(message)?;
    let flags_ok = !header.qr && header.opcode == 0 && !header.tc && !header.z && header.rcode == 0;
    let counts_ok =
        header.qdcount == 1 && header.ancount == 0 && header.nscount == 0 && header.arcount <= 2;
    if !flags_ok || !counts_ok {
        return None;
    }
    let mut pos = plain_name_end(message, HEADER_LEN)?;
    let qtype = be16(message, pos)?;
    let qclass = be16(message, pos + 2)?;
    // IN, CH, HS, NONE, ANY.
    if qtype == 0 || !matches!(qclass, 1 | 3 | 4 | 254 | 255) {
        return None;
    }
    pos += 4;
    for _ in 0..header.arcount {
        pos = record_end(message, pos)?;
    }
    Some(pos)
}

/// The end of an uncompressed name of printable labels at `pos`.
fn plain_name_end(message: &[u8], mut pos: usize) -> Option<usize> {
    let start = pos;
    loop {
        let len = usize::from(*message.get(pos)?);
        if len == 0 {
            return Some(pos + 1);
        }
        if len > 63 {
            return None;
        }
        let label = message.get(pos + 1..pos + 1 + len)?;
        if !label.iter().all(u8::is_ascii_graphic) {
            return None;
        }
        pos += 1 + len;
        if pos - start > MAX_NAME_LEN {
            return None;
        }
    }
}

fn be16(message: &[u8], pos: usize) -> Option<u16> {
    let bytes = message.get(pos..pos + 2)?;
    Some(u16::from_be_bytes([bytes[0], bytes[1]]))
}

/// The fixed header of a DNS message.
#[derive(Debug, Clone, Copy)]
struct Header {
    id: u16,
    qr: bool,
    opcode: u8,
    tc: bool,
    z: bool,
    rcode: u8,
    qdcount: u16,
    ancount: u16,
    nscount: u16,
    arcount: u16,
}

impl Header {
    fn parse(message: &[u8]) -> Option<Self> {
        let h = message.get(..HEADER_LEN)?;
        let word = |i: usize| u16::from_be_bytes([h[i], h[i + 1]]);
        Some(Self {
            id: word(0),
            qr: h[2] & 0x80 != 0,
            opcode: (h[2] >> 3) & 0x0f,
            tc: h[2] & 0x02 != 0,
            z: h[3] & 0x40 != 0,
            rcode: h[3] & 0x0f,
            qdcount: word(4),
            ancount: word(6),
            nscount: word(8),
            arcount: word(10),
        })
    }
}

/// Where the (possibly compressed) name at `pos` ends, without following pointers.
fn name_end(message: &[u8], mut pos: usize) -> Option<usize> {
    for _ in 0..MAX_NAME_STEPS {
        let len = *message.get(pos)?;
        match len & 0xc0 {
            0x00 if len == 0 => return Some(pos + 1),
            0x00 => pos += 1 + usize::from(len),
            0xc0 => return (pos + 2 <= message.len()).then_some(pos + 2),
            _ => return None,
        }
    }
    None
}

/// The text of the name at `pos`, following compression pointers a bounded number of times:
/// lowercased, without the trailing dot (`.` for the root).
fn read_name(message: &[u8], mut pos: usize) -> Option<String> {
    let mut name = String::new();
    let mut wire_len = 0;
    for _ in 0..MAX_NAME_STEPS {
        let len = *message.get(pos)?;
        match len & 0xc0 {
            0x00 if len == 0 => {
                if name.is_empty() {
                    name.push('.');
                }
                return Some(name);
            }
            0x00 => {
                let label = message.get(pos + 1..pos + 1 + usize::from(len))?;
                wire_len += label.len() + 1;
                if wire_len > MAX_NAME_LEN {
                    return None;
                }
                if !name.is_empty() {
                    name.push('.');
                }
                push_label(&mut name, label);
                pos += 1 + label.len();
            }
            0xc0 => {
                let low = *message.get(pos + 1)?;
                pos = (usize::from(len & 0x3f) << 8) | usize::from(low);
            }
            _ => return None,
        }
    }
    None
}

/// Appends a label as presentation text: lowercase, with dots, backslashes and unprintable
/// bytes escaped as dig does.
fn push_label(name: &mut String, label: &[u8]) {
    for &b in label {
        match b {
            b'.' | b'\\' => {
                name.push('\\');
                name.push(char::from(b));
            }
            _ if b.is_ascii_graphic() => name.push(char::from(b.to_ascii_lowercase())),
            _ => name.push_str(&format!("\\{b:03}")),
        }
    }
}

/// The end of the resource record at `pos`.
fn record_end(message: &[u8], pos: usize) -> Option<usize> {
    let fixed = name_end(message, pos)?;
    let rdlen = usize::from(be16(message, fixed + 8)?);
    let end = fixed + 10 + rdlen;
    (end <= message.len()).then_some(end)
}

/// The name of a query type, as dig writes it.
fn qtype_name(qtype: u16) -> String {
    let name = match qtype {
        1 => "A",
        2 => "NS",
        5 => "CNAME",
        6 => "SOA",
        12 => "PTR",
        15 => "MX",
        16 => "TXT",
        28 => "AAAA",
        33 => "SRV",
        64 => "SVCB",
        65 => "HTTPS",
        255 => "ANY",
        _ => return format!("TYPE{qtype}"),
    };
    name.to_owned()
}

/// The name of a response code.
fn rcode_name(rcode: u8) -> String {
    let name = match rcode {
        0 => "NOERROR",
        1 => "FORMERR",
        2 => "SERVFAIL",
        3 => "NXDOMAIN",
        4 => "NOTIMP",
        5 => "REFUSED",
        _ => return format!("RCODE{rcode}"),
    };
    name.to_owned()
}

/// A query's row data, if `message` is a query.
fn read_query(message: &[u8]) -> Option<RequestInfo> {
    let header = Header::parse(message)?;
    if header.qr {
        return None;
    }
    let (method, resource) = if header.qdcount == 0 {
        (String::new(), String::new())
    } else {
        let end = name_end(message, HEADER_LEN)?;
        let qtype = be16(message, end)?;
        (qtype_name(qtype), read_name(message, HEADER_LEN)?)
    };
    Some(RequestInfo {
        method: method.into(),
        resource,
        trace_id: None,
        dns_id: Some(header.id),
    })
}

/// A response's row data, if `message` is a response, and whether its answers ran past the
/// bytes seen (`cut`: the message was longer than `message`).
fn read_response(message: &[u8], cut: bool) -> Option<(ResponseInfo, bool)> {
    let header = Header::parse(message)?;
    if !header.qr {
        return None;
    }
    let mut info = ResponseInfo {
        status: rcode_name(header.rcode).into(),
        is_error: header.rcode != 0,
        error_message: None,
        dns_id: Some(header.id),
        dns_answers: Vec::new(),
    };
    let mut pos = Some(HEADER_LEN);
    for _ in 0..header.qdcount {
        pos = pos
            .and_then(|p| name_end(message, p))
            .map(|p| p + 4)
            .filter(|&p| p <= message.len());
    }
    for _ in 0..header.ancount {
        let Some((text, next)) = pos.and_then(|p| read_answer(message, p)) else {
            pos = None;
            break;
        };
        if info.dns_answers.len() < MAX_ANSWERS {
            info.dns_answers.push(text);
        }
        pos = Some(next);
    }
    Some((info, cut && pos.is_none()))
}

/// The text of the answer record at `pos`, and where it ends.
fn read_answer(message: &[u8], pos: usize) -> Option<(String, usize)> {
    let fixed = name_end(message, pos)?;
    let rtype = be16(message, fixed)?;
    let rdlen = usize::from(be16(message, fixed + 8)?);
    let start = fixed + 10;
    let rdata = message.get(start..start + rdlen)?;
    let text = match (rtype, rdata.len()) {
        (1, 4) => Ipv4Addr::new(rdata[0], rdata[1], rdata[2], rdata[3]).to_string(),
        (28, 16) => {
            let mut octets = [0u8; 16];
            octets.copy_from_slice(rdata);
            Ipv6Addr::from(octets).to_string()
        }
        // NS, CNAME, PTR: a name, possibly compressed against earlier parts of the message.
        (2 | 5 | 12, _) => read_name(message, start)?,
        _ => format!("TYPE{rtype}"),
    };
    Some((text, start + rdlen))
}

/// Reading one TCP direction: length prefixes and message bodies.
#[derive(Debug, Default)]
struct TcpStream {
    /// Bytes of the length prefix read so far.
    prefix: Vec<u8>,
    /// Body bytes of the current message still to come; `None` while reading a prefix.
    body_left: Option<usize>,
    /// Kept bytes of the current body.
    body: Vec<u8>,
    /// Bytes of the current body went unseen (or beyond what is kept).
    body_cut: bool,
    /// Framing is lost: wait for a segment that starts a message.
    lost: bool,
}

/// DNS framing.
#[derive(Debug)]
pub struct DnsParser {
    transport: Transport,
    queries: TcpStream,
    responses: TcpStream,
}

impl DnsParser {
    /// A parser for DNS over `transport`.
    pub fn new(transport: Transport) -> Self {
        Self {
            transport,
            queries: TcpStream::default(),
            responses: TcpStream::default(),
        }
    }
}

/// Reports one whole message (start and end) going `direction`, or counts it unparsed.
fn report(direction: Direction, message: &[u8], cut: bool, out: &mut FeedOutcome) {
    match direction {
        Direction::Request => match read_query(message) {
            Some(info) => {
                out.events.push(MessageEvent::RequestStart(info));
                out.events.push(MessageEvent::End { direction });
            }
            None => out.unparsed += 1,
        },
        Direction::Response => match read_response(message, cut) {
            Some((info, truncated)) => {
                out.events.push(MessageEvent::ResponseStart(info));
                out.events.push(MessageEvent::End { direction });
                out.truncated += u32::from(truncated);
            }
            None => out.unparsed += 1,
        },
    }
}

impl TcpStream {
    fn feed(&mut self, direction: Direction, data: &[u8], len: usize, out: &mut FeedOutcome) {
        if self.lost {
            if !starts_tcp_message(direction, data) {
                out.unparsed += u32::from(len > 0);
                return;
            }
            *self = Self::default();
        }
        let mut rest = data;
        while !rest.is_empty() {
            match self.body_left {
                None => {
                    let n = (2 - self.prefix.len()).min(rest.len());
                    self.prefix.extend_from_slice(&rest[..n]);
                    rest = &rest[n..];
                    if self.prefix.len() == 2 {
                        let size =
                            usize::from(u16::from_be_bytes([self.prefix[0], self.prefix[1]]));
                        self.prefix.clear();
                        if size < HEADER_LEN {
                            self.lose(out);
                            return;
                        }
                        self.body_left = Some(size);
                        self.body.clear();
                        self.body_cut = false;
                    }
                }
                Some(left) => {
                    let n = left.min(rest.len());
                    let room = MAX_KEPT.saturating_sub(self.body.len());
                    self.body.extend_from_slice(&rest[..n.min(room)]);
                    self.body_cut |= n > room;
                    rest = &rest[n..];
                    self.advance(direction, left - n, out);
                }
            }
        }
        // Uncaptured bytes: only a message body can be passed unseen.
        let mut gap = len.saturating_sub(data.len());
        if gap > 0
            && let Some(left) = self.body_left
        {
            let n = left.min(gap);
            gap -= n;
            self.body_cut = true;
            self.advance(direction, left - n, out);
        }
        if gap > 0 {
            self.lose(out);
        }
    }

    /// Records how much of the body is left, and reports the message when it is complete.
    fn advance(&mut self, direction: Direction, left: usize, out: &mut FeedOutcome) {
        if left > 0 {
            self.body_left = Some(left);
            return;
        }
        self.body_left = None;
        report(direction, &self.body, self.body_cut, out);
        self.body.clear();
    }

    fn lose(&mut self, out: &mut FeedOutcome) {
        *self = Self {
            lost: true,
            ..Self::default()
        };
        out.unparsed += 1;
    }
}

/// Whether a TCP segment starts with a plausible message of `direction`: a length prefix
/// and a header with the right QR bit, a standard opcode and at most one question.
fn starts_tcp_message(direction: Direction, data: &[u8]) -> bool {
    let Some((prefix, message)) = data.split_first_chunk::<2>() else {
        return false;
    };
    let Some(header) = Header::parse(message) else {
        return false;
    };
    usize::from(u16::from_be_bytes(*prefix)) >= HEADER_LEN
        && header.qr == (direction == Direction::Response)
        && header.opcode == 0
        && header.qdcount <= 1
}

impl StreamParser for DnsParser {
    fn feed_into(&mut self, segment: &Segment<'_>, out: &mut FeedOutcome) {
        match self.transport {
            Transport::Udp => {
                if segment.len > 0 || !segment.data.is_empty() {
                    report(segment.direction, segment.data, segment.is_cut(), out);
                }
            }
            Transport::Tcp => {
                let stream = match segment.direction {
                    Direction::Request => &mut self.queries,
                    Direction::Response => &mut self.responses,
                };
                stream.feed(segment.direction, segment.data, segment.len, out);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::*;

    /// `dig @127.0.0.1 example.com` (BIND 9.18, EDNS with a cookie) and dnsmasq's answer.
    const EXAMPLE_Q: &str = "6d5701200001000000000001076578616d706c6503636f6d000001000100002904d000000000000c000a0008f033a46090f7484d";
    const EXAMPLE_R: &str = "6d5785800001000100000001076578616d706c6503636f6d0000010001c00c000100010000000000045db8d82200002904d0000000000000";
    /// `dig www.example.org`: a CNAME answer.
    const CNAME_Q: &str = "438f0120000100000000000103777777076578616d706c65036f7267000001000100002904d000000000000c000a0008b60afd4ae4e8475f";
    const CNAME_R: &str = "438f8580000100010000000103777777076578616d706c65036f72670000010001c00c0005000100000000000d076578616d706c6503636f6d0000002904d0000000000000";
    /// `dig -x 93.184.216.34`.
    const PTR_Q: &str = "ad0101200001000000000001023334033231360331383402393307696e2d61646472046172706100000c000100002904d000000000000c000a0008a422d0138a1b432d";
    const PTR_R: &str = "ad0185800001000100000001023334033231360331383402393307696e2d61646472046172706100000c0001c00c000c000100000000000d076578616d706c6503636f6d0000002904d0000000000000";
    /// `dig nxdomain.invalid` to a dnsmasq without upstream: REFUSED, with an extended error.
    const REFUSED_Q: &str = "c52301200001000000000001086e78646f6d61696e07696e76616c6964000001000100002904d000000000000c000a00080bb6c988198df63a";
    const REFUSED_R: &str = "c52381850001000000000001086e78646f6d61696e07696e76616c6964000001000100002904d0000000000006000f0002000e";
    /// `dig nx.test`: NXDOMAIN.
    const NX_Q: &str = "3a1901200001000000000001026e780474657374000001000100002904d000000000000c000a00085fad62a5183161d9";
    const NX_R: &str = "3a1981830001000000000001026e780474657374000001000100002904d0000000000000";
    /// `dig example.com AAAA`.
    const AAAA_Q: &str = "e3fa01200001000000000001076578616d706c6503636f6d00001c000100002904d000000000000c000a0008daa3038e27a54236";
    const AAAA_R: &str = "e3fa85800001000100000001076578616d706c6503636f6d00001c0001c00c001c000100000000001026062800022000010248189325c8194600002904d0000000000000";
    /// `dig example.com MX`.
    const MX_Q: &str = "1f5c01200001000000000001076578616d706c6503636f6d00000f000100002904d000000000000c000a000847040fece96a3b13";
    const MX_R: &str = "1f5c85800001000100000001076578616d706c6503636f6d00000f0001c00c000f0001000000000014000a046d61696c076578616d706c6503636f6d0000002904d0000000000000";
    /// `dig alias.test`: a CNAME whose target is compressed against itself, then its address.
    const CHAIN_Q: &str = "782a0120000100000000000105616c6961730474657374000001000100002904d000000000000c000a0008b24c36a49281549f";
    const CHAIN_R: &str = "782a8580000100020000000105616c69617304746573740000010001c00c0005000100000000000a03776562047465737400c028000100010000000000040a01020300002904d0000000000000";
    /// `dig +noedns many.test`: three addresses.
    const MANY_Q: &str = "93cb01200001000000000000046d616e7904746573740000010001";
    const MANY_R: &str = "93cb85800001000300000000046d616e7904746573740000010001c00c000100010000000000040a000003c00c000100010000000000040a000002c00c000100010000000000040a000001";
    /// `dig +tcp www.example.org`, with the length prefixes.
    const TCP_Q: &str = "0038bef40120000100000000000103777777076578616d706c65036f7267000001000100002904d000000000000c000a0008c3c2fd69c8ebb364";
    const TCP_R: &str = "0045bef48580000100010000000103777777076578616d706c65036f72670000010001c00c0005000100000000000d076578616d706c6503636f6d0000002904d0000000000000";

    fn hex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
            .collect()
    }

    fn query(id: u16, qtype: &str, name: &str) -> MessageEvent {
        MessageEvent::RequestStart(RequestInfo {
            method: qtype.to_owned().into(),
            resource: name.to_owned(),
            trace_id: None,
            dns_id: Some(id),
        })
    }

    fn answer(id: u16, rcode: &str, answers: &[&str]) -> MessageEvent {
        MessageEvent::ResponseStart(ResponseInfo {
            status: rcode.to_owned().into(),
            is_error: rcode != "NOERROR",
            error_message: None,
            dns_id: Some(id),
            dns_answers: answers.iter().map(|a| (*a).to_owned()).collect(),
        })
    }

    fn events(events: Vec<MessageEvent>) -> FeedOutcome {
        outcome(events, 0, 0)
    }

    fn segment(direction: Direction, data: &[u8]) -> Segment<'_> {
        Segment {
            direction,
            data,
            len: data.len(),
        }
    }

    fn check(transport: Transport, name: &str, steps: &[(Segment<'_>, FeedOutcome)]) {
        let mut parser = DnsParser::new(transport);
        for (i, (segment, expected)) in steps.iter().enumerate() {
            assert_eq!(&parser.feed(segment), expected, "{name}: segment {i}");
        }
    }

    #[test]
    fn detects_queries_only() {
        let tcp_q = hex(TCP_Q);
        let mut two = tcp_q.clone();
        two.extend_from_slice(&tcp_q);
        let mut trailing = hex(MANY_Q);
        trailing.push(0);
        let mut opcode_notify = hex(MANY_Q);
        opcode_notify[2] |= 4 << 3;
        let mut two_questions = hex(MANY_Q);
        two_questions[5] = 2;
        let cases: &[(&str, &[u8], bool, bool)] = &[
            ("dig", &hex(EXAMPLE_Q), false, true),
            ("dig -x", &hex(PTR_Q), false, true),
            ("dig +noedns", &hex(MANY_Q), false, true),
            ("dig +tcp", &tcp_q, true, true),
            ("tcp, two queries", &two, true, true),
            ("tcp bytes over udp", &tcp_q, false, false),
            ("udp bytes over tcp", &hex(MANY_Q), true, false),
            ("tcp, prefix only", &tcp_q[..2], true, false),
            ("tcp, cut", &tcp_q[..40], true, false),
            ("response", &hex(EXAMPLE_R), false, false),
            ("response over tcp", &hex(TCP_R), true, false),
            ("trailing byte", &trailing, false, false),
            ("notify", &opcode_notify, false, false),
            ("two questions", &two_questions, false, false),
            ("header only", &hex(MANY_Q)[..12], false, false),
            (
                "http",
                b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
                true,
                false,
            ),
            ("redis", b"*2\r\n$3\r\nGET\r\n$3\r\nfoo\r\n", true, false),
            (
                "postgres startup",
                b"\x00\x00\x00\x08\x04\xd2\x16\x2f",
                true,
                false,
            ),
            ("empty", b"", false, false),
        ];
        for (name, data, tcp, want) in cases {
            assert_eq!(looks_like_query(data, *tcp), *want, "{name}");
        }
    }

    #[test]
    fn udp_exchanges() {
        let cases: &[(&str, &str, &str, MessageEvent, MessageEvent)] = &[
            (
                "A",
                EXAMPLE_Q,
                EXAMPLE_R,
                query(0x6d57, "A", "example.com"),
                answer(0x6d57, "NOERROR", &["93.184.216.34"]),
            ),
            (
                "CNAME",
                CNAME_Q,
                CNAME_R,
                query(0x438f, "A", "www.example.org"),
                answer(0x438f, "NOERROR", &["example.com"]),
            ),
            (
                "PTR",
                PTR_Q,
                PTR_R,
                query(0xad01, "PTR", "34.216.184.93.in-addr.arpa"),
                answer(0xad01, "NOERROR", &["example.com"]),
            ),
            (
                "NXDOMAIN",
                NX_Q,
                NX_R,
                query(0x3a19, "A", "nx.test"),
                answer(0x3a19, "NXDOMAIN", &[]),
            ),
            (
                "REFUSED",
                REFUSED_Q,
                REFUSED_R,
                query(0xc523, "A", "nxdomain.invalid"),
                answer(0xc523, "REFUSED", &[]),
            ),
            (
                "AAAA",
                AAAA_Q,
                AAAA_R,
                query(0xe3fa, "AAAA", "example.com"),
                answer(0xe3fa, "NOERROR", &["2606:2800:220:1:248:1893:25c8:1946"]),
            ),
            (
                "MX",
                MX_Q,
                MX_R,
                query(0x1f5c, "MX", "example.com"),
                answer(0x1f5c, "NOERROR", &["TYPE15"]),
            ),
            (
                "CNAME chain",
                CHAIN_Q,
                CHAIN_R,
                query(0x782a, "A", "alias.test"),
                answer(0x782a, "NOERROR", &["web.test", "10.1.2.3"]),
            ),
            (
                "three addresses",
                MANY_Q,
                MANY_R,
                query(0x93cb, "A", "many.test"),
                answer(0x93cb, "NOERROR", &["10.0.0.3", "10.0.0.2", "10.0.0.1"]),
            ),
        ];
        for (name, q, r, want_q, want_r) in cases {
            let (q, r) = (hex(q), hex(r));
            check(
                Transport::Udp,
                name,
                &[
                    (
                        segment(Direction::Request, &q),
                        events(vec![want_q.clone(), END_REQ]),
                    ),
                    (
                        segment(Direction::Response, &r),
                        events(vec![want_r.clone(), END_RESP]),
                    ),
                ],
            );
        }
    }

    #[test]
    fn udp_answers_in_any_order_and_unseen_queries() {
        let (a_q, aaaa_q, a_r, aaaa_r) = (hex(EXAMPLE_Q), hex(AAAA_Q), hex(EXAMPLE_R), hex(AAAA_R));
        check(
            Transport::Udp,
            "A and AAAA together",
            &[
                (
                    segment(Direction::Request, &a_q),
                    events(vec![query(0x6d57, "A", "example.com"), END_REQ]),
                ),
                (
                    segment(Direction::Request, &aaaa_q),
                    events(vec![query(0xe3fa, "AAAA", "example.com"), END_REQ]),
                ),
                (
                    segment(Direction::Response, &aaaa_r),
                    events(vec![
                        answer(0xe3fa, "NOERROR", &["2606:2800:220:1:248:1893:25c8:1946"]),
                        END_RESP,
                    ]),
                ),
                (
                    segment(Direction::Response, &a_r),
                    events(vec![
                        answer(0x6d57, "NOERROR", &["93.184.216.34"]),
                        END_RESP,
                    ]),
                ),
            ],
        );
        // A response whose query was never seen is still reported (the agent counts it).
        check(
            Transport::Udp,
            "response only",
            &[(
                segment(Direction::Response, &a_r),
                events(vec![
                    answer(0x6d57, "NOERROR", &["93.184.216.34"]),
                    END_RESP,
                ]),
            )],
        );
    }

    /// A response with `count` copies of many.test's first answer.
    fn many_answers(count: u16) -> Vec<u8> {
        let response = hex(MANY_R);
        let record = &response[27..43];
        let mut out = response[..27].to_vec();
        out[6..8].copy_from_slice(&count.to_be_bytes());
        for _ in 0..count {
            out.extend_from_slice(record);
        }
        out
    }

    #[test]
    fn cut_and_long_responses() {
        let many = hex(MANY_R);
        let big = many_answers(100);
        let first_32 = vec!["10.0.0.3"; MAX_ANSWERS];
        check(
            Transport::Udp,
            "cut datagrams",
            &[
                // Cut inside the second answer: the first is read, the rest counted truncated.
                (
                    Segment {
                        direction: Direction::Response,
                        data: &many[..50],
                        len: many.len(),
                    },
                    outcome(
                        vec![answer(0x93cb, "NOERROR", &["10.0.0.3"]), END_RESP],
                        0,
                        1,
                    ),
                ),
                // Cut after the answers: nothing of them is missing.
                (
                    Segment {
                        direction: Direction::Response,
                        data: &hex(EXAMPLE_R)[..45],
                        len: 54,
                    },
                    events(vec![
                        answer(0x6d57, "NOERROR", &["93.184.216.34"]),
                        END_RESP,
                    ]),
                ),
                (
                    Segment {
                        direction: Direction::Response,
                        data: &big[..1024],
                        len: big.len(),
                    },
                    outcome(vec![answer(0x93cb, "NOERROR", &first_32), END_RESP], 0, 1),
                ),
                (
                    segment(Direction::Response, &big),
                    events(vec![answer(0x93cb, "NOERROR", &first_32), END_RESP]),
                ),
            ],
        );
        // Over TCP, a 1.6 kB response written at once and captured to 1024 bytes.
        let mut framed = (big.len() as u16).to_be_bytes().to_vec();
        framed.extend_from_slice(&big);
        let q = hex(TCP_Q);
        check(
            Transport::Tcp,
            "cut tcp",
            &[
                (
                    Segment {
                        direction: Direction::Response,
                        data: &framed[..1024],
                        len: framed.len(),
                    },
                    outcome(vec![answer(0x93cb, "NOERROR", &first_32), END_RESP], 0, 1),
                ),
                (
                    segment(Direction::Request, &q),
                    events(vec![query(0xbef4, "A", "www.example.org"), END_REQ]),
                ),
            ],
        );
    }

    #[test]
    fn tcp_framing() {
        let q = hex(TCP_Q);
        let r = hex(TCP_R);
        let want_q = || vec![query(0xbef4, "A", "www.example.org"), END_REQ];
        let want_r = || vec![answer(0xbef4, "NOERROR", &["example.com"]), END_RESP];
        let two = [q.clone(), q.clone()].concat();
        check(
            Transport::Tcp,
            "dig +tcp",
            &[
                (segment(Direction::Request, &q), events(want_q())),
                (segment(Direction::Response, &r), events(want_r())),
                // The prefix written alone, then the message.
                (segment(Direction::Request, &q[..2]), events(vec![])),
                (segment(Direction::Request, &q[2..]), events(want_q())),
                // Split inside the prefix and inside the message.
                (segment(Direction::Response, &r[..1]), events(vec![])),
                (segment(Direction::Response, &r[1..30]), events(vec![])),
                (segment(Direction::Response, &r[30..]), events(want_r())),
                // Two queries in one segment, and a message's end with the next one's start.
                (
                    segment(Direction::Request, &two),
                    events([want_q(), want_q()].concat()),
                ),
                (segment(Direction::Request, &two[..40]), events(vec![])),
                (
                    segment(Direction::Request, &two[40..]),
                    events([want_q(), want_q()].concat()),
                ),
            ],
        );
        for at in 0..=two.len() {
            let mut parser = DnsParser::new(Transport::Tcp);
            let mut all = parser.feed(&segment(Direction::Request, &two[..at])).events;
            all.extend(parser.feed(&segment(Direction::Request, &two[at..])).events);
            assert_eq!(all, [want_q(), want_q()].concat(), "split at {at}");
        }
    }

    #[test]
    fn garbage_and_resync() {
        let q = hex(TCP_Q);
        let r = hex(TCP_R);
        let mut response_as_query = q.clone();
        response_as_query[4] |= 0x80;
        check(
            Transport::Tcp,
            "tcp garbage",
            &[
                // A length below the header size loses framing.
                (
                    segment(Direction::Request, b"\x00\x03abc"),
                    outcome(vec![], 1, 0),
                ),
                (
                    segment(Direction::Request, b"more garbage"),
                    outcome(vec![], 1, 0),
                ),
                (
                    segment(Direction::Request, &q),
                    events(vec![query(0xbef4, "A", "www.example.org"), END_REQ]),
                ),
                // Bytes not captured where a prefix was due.
                (
                    Segment {
                        direction: Direction::Request,
                        data: &q,
                        len: q.len() + 10,
                    },
                    outcome(vec![query(0xbef4, "A", "www.example.org"), END_REQ], 1, 0),
                ),
                (segment(Direction::Request, &r), outcome(vec![], 1, 0)),
                (
                    segment(Direction::Request, &response_as_query),
                    outcome(vec![], 1, 0),
                ),
                (
                    segment(Direction::Response, &r),
                    events(vec![answer(0xbef4, "NOERROR", &["example.com"]), END_RESP]),
                ),
            ],
        );
        let r_udp = hex(EXAMPLE_R);
        check(
            Transport::Udp,
            "udp garbage",
            &[
                (segment(Direction::Request, b"short"), outcome(vec![], 1, 0)),
                (segment(Direction::Request, &r_udp), outcome(vec![], 1, 0)),
                (
                    segment(Direction::Response, &hex(EXAMPLE_Q)),
                    outcome(vec![], 1, 0),
                ),
                (segment(Direction::Request, b""), events(vec![])),
            ],
        );
    }

    #[test]
    fn names_and_codes() {
        // A CNAME answer whose target points at itself: the pointer loop ends, unreported.
        let mut looped = hex(CNAME_R);
        let rdata = 12 + 17 + 4 + 12;
        looped[rdata..rdata + 2].copy_from_slice(&[0xc0, rdata as u8]);
        assert_eq!(
            read_response(&looped, false).map(|(info, _)| info.dns_answers),
            Some(vec![])
        );
        // Escapes, case and the root.
        let mut name = String::new();
        push_label(&mut name, b"A.b\\c\x07");
        assert_eq!(name, "a\\.b\\\\c\\007");
        assert_eq!(read_name(b"\x00", 0).as_deref(), Some("."));
        assert_eq!(read_name(b"\x03WwW\x00", 0).as_deref(), Some("www"));
        assert_eq!(read_name(&[0x80, 0], 0), None);
        for (code, want) in [
            (0, "NOERROR"),
            (1, "FORMERR"),
            (2, "SERVFAIL"),
            (3, "NXDOMAIN"),
            (4, "NOTIMP"),
            (5, "REFUSED"),
            (9, "RCODE9"),
        ] {
            assert_eq!(rcode_name(code), want);
        }
        for (code, want) in [
            (1, "A"),
            (2, "NS"),
            (5, "CNAME"),
            (6, "SOA"),
            (12, "PTR"),
            (15, "MX"),
            (16, "TXT"),
            (28, "AAAA"),
            (33, "SRV"),
            (64, "SVCB"),
            (65, "HTTPS"),
            (255, "ANY"),
            (99, "TYPE99"),
        ] {
            assert_eq!(qtype_name(code), want);
        }
    }

    fn next(state: &mut u64) -> u64 {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        let samples: Vec<Vec<u8>> = [EXAMPLE_R, CHAIN_R, MANY_R, TCP_Q, TCP_R, REFUSED_R]
            .iter()
            .map(|h| hex(h))
            .collect();
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        for round in 0..4000 {
            let transport = if round % 2 == 0 {
                Transport::Udp
            } else {
                Transport::Tcp
            };
            let mut parser = DnsParser::new(transport);
            for _ in 0..6 {
                let mut data = samples[(next(&mut state) % 6) as usize].clone();
                let flips = next(&mut state) % 6;
                for _ in 0..flips {
                    let at = (next(&mut state) as usize) % data.len();
                    data[at] = next(&mut state) as u8;
                }
                if round % 3 == 0 {
                    data = (0..next(&mut state) % 200)
                        .map(|_| next(&mut state) as u8)
                        .collect();
                }
                let keep = (next(&mut state) as usize) % (data.len() + 1);
                let direction = if next(&mut state).is_multiple_of(2) {
                    Direction::Request
                } else {
                    Direction::Response
                };
                let out = parser.feed(&Segment {
                    direction,
                    data: &data[..keep],
                    len: data.len(),
                });
                for pair in out.events.chunks(2) {
                    assert!(matches!(
                        pair,
                        [
                            MessageEvent::RequestStart(_),
                            MessageEvent::End {
                                direction: Direction::Request
                            }
                        ] | [
                            MessageEvent::ResponseStart(_),
                            MessageEvent::End {
                                direction: Direction::Response
                            }
                        ]
                    ));
                    if let MessageEvent::ResponseStart(info) = &pair[0] {
                        assert!(info.dns_answers.len() <= MAX_ANSWERS);
                    }
                }
                assert!(
                    parser.queries.body.len() <= MAX_KEPT
                        && parser.responses.body.len() <= MAX_KEPT
                );
            }
        }
    }
}
