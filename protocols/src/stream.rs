//! The vocabulary every parser shares: what a session's bytes come as ([`Segment`]), what a
//! parser says about them ([`MessageEvent`], [`FeedOutcome`]) and the [`StreamParser`] trait.

use std::{borrow::Cow, fmt::Debug};

/// The transport a session runs over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// A TCP byte stream.
    Tcp,
    /// UDP datagrams: each segment is one whole datagram.
    Udp,
}

/// Which way bytes move, in protocol terms (not socket terms).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Client to server.
    Request,
    /// Server to client.
    Response,
}

/// The protocols Kindling parses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// HTTP/1.0 and HTTP/1.1.
    Http,
    /// DNS over UDP or TCP.
    Dns,
    /// MySQL and MariaDB client/server protocol.
    Mysql,
    /// Redis RESP2/RESP3.
    Redis,
    /// PostgreSQL frontend/backend protocol v3.
    Postgresql,
    /// HTTP/2 over cleartext TCP (h2c).
    Http2,
    /// gRPC: an HTTP/2 stream whose request has `content-type: application/grpc`. Never a
    /// session's protocol, only a call's.
    Grpc,
}

impl Protocol {
    /// Every protocol.
    pub const ALL: [Self; 7] = [
        Self::Http,
        Self::Dns,
        Self::Mysql,
        Self::Redis,
        Self::Postgresql,
        Self::Http2,
        Self::Grpc,
    ];

    /// The name stored in the `protocol` column.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Dns => "dns",
            Self::Mysql => "mysql",
            Self::Redis => "redis",
            Self::Postgresql => "postgresql",
            Self::Http2 => "http2",
            Self::Grpc => "grpc",
        }
    }
}

/// The bytes of one syscall (or, for UDP, one datagram).
#[derive(Debug, Clone, Copy)]
pub struct Segment<'a> {
    /// Which way the bytes went.
    pub direction: Direction,
    /// The captured prefix of the bytes (possibly empty).
    pub data: &'a [u8],
    /// How many bytes the syscall really moved (`>= data.len()`); the rest were not captured.
    pub len: usize,
}

impl Segment<'_> {
    /// Whether bytes of this segment were not captured.
    pub fn is_cut(&self) -> bool {
        self.len > self.data.len()
    }
}

/// What the `calls` row needs to know of a request.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RequestInfo {
    /// HTTP method, SQL verb (`SELECT`, ...), Redis command (`GET`), DNS qtype (`A`).
    pub method: Cow<'static, str>,
    /// URL path without query string, normalized SQL, Redis command name, DNS domain.
    pub resource: String,
    /// Trace id of a W3C `traceparent` header (32 lowercase hex digits).
    pub trace_id: Option<String>,
    /// DNS transaction id (responses are matched by it).
    pub dns_id: Option<u16>,
}

/// What the `calls` row needs to know of a response.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResponseInfo {
    /// HTTP status code, MySQL error number or PostgreSQL SQLSTATE, Redis error prefix, DNS
    /// rcode name; empty when the protocol's answer has none (a SQL success).
    pub status: Cow<'static, str>,
    /// Whether the response is an error (HTTP status >= 400, any SQL or Redis error, DNS rcode
    /// other than NOERROR).
    pub is_error: bool,
    /// The error's text, for SQL and Redis errors.
    pub error_message: Option<String>,
    /// DNS transaction id.
    pub dns_id: Option<u16>,
    /// DNS answer data as text (addresses, CNAME targets), in answer order.
    pub dns_answers: Vec<String>,
}

/// One step of framing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MessageEvent {
    /// A request began in this segment.
    RequestStart(RequestInfo),
    /// A response began in this segment.
    ResponseStart(ResponseInfo),
    /// The message in progress in this direction ended in this segment.
    End {
        /// Which message ended.
        direction: Direction,
    },
    /// The connection switched to a multiplexed protocol (HTTP/1.1 upgraded to h2c): the
    /// request waiting for its response continues as `stream`, whose response completes it,
    /// and what follows is `protocol`'s.
    StreamUpgrade {
        /// The stream the waiting request became.
        stream: u32,
        /// The connection's protocol from now on.
        protocol: Protocol,
    },
    /// A request began on a stream of a multiplexed connection (HTTP/2). Streams interleave:
    /// the response with the same `stream` completes it, whatever the order.
    StreamRequest {
        /// Stream id.
        stream: u32,
        /// The call's protocol (gRPC or plain HTTP/2).
        protocol: Protocol,
        /// What the row needs of the request.
        info: RequestInfo,
    },
    /// The response of `stream` began.
    StreamResponse {
        /// Stream id.
        stream: u32,
        /// What the row needs of the response, as far as its headers tell.
        info: ResponseInfo,
    },
    /// One direction of `stream` ended (or the stream was reset).
    StreamEnd {
        /// Which message ended.
        direction: Direction,
        /// Stream id.
        stream: u32,
        /// The message's body bytes (HTTP/2 DATA payload), seen or not.
        bytes: u64,
        /// For a response: what its trailers (gRPC status) or a reset changed in what
        /// [`MessageEvent::StreamResponse`] said.
        response: Option<ResponseInfo>,
        /// For a response: the call's protocol when the response showed it to be another than
        /// its request did (gRPC trailers on a request whose `content-type` was not known).
        protocol: Option<Protocol>,
    },
}

/// What one [`StreamParser::feed`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeedOutcome {
    /// Starts and ends, in byte order.
    pub events: Vec<MessageEvent>,
    /// Messages (or stretches of bytes) that could not be framed and were skipped.
    pub unparsed: u32,
    /// Messages whose header was cut by the capture size (framed from what was seen).
    pub truncated: u32,
    /// Messages with header fields that could not be known: they index entries of a
    /// compression table the parser never saw (HPACK after the agent joined mid-connection).
    pub unknown_headers: u32,
}

impl FeedOutcome {
    /// Empties the outcome for the next segment (keeps the events' allocation).
    pub fn clear(&mut self) {
        self.events.clear();
        self.unparsed = 0;
        self.truncated = 0;
        self.unknown_headers = 0;
    }
}

/// Frames one connection's (or UDP socket-and-peer's) bytes into messages.
///
/// Contract, relied on by the agent's sessionizer:
/// - Each direction's messages are reported in order: `RequestStart` then, later or in the
///   same segment, `End { Request }`; likewise for responses. A start without an end (for
///   example a response cut short by a close) is allowed; an end without a start never is.
/// - Several messages may start and end in one segment (pipelining).
/// - Parsers never panic and never hold more than a bounded amount of bytes (a message header
///   split over segments may be buffered up to a small fixed limit).
/// - Bytes that cannot be framed are counted in `unparsed` and skipped; the parser then looks
///   for the next message start.
pub trait StreamParser: Debug + Send {
    /// Feeds one segment, in the order the bytes moved in its direction: appends the events
    /// it found to `out.events` and adds its counts to `out`'s (the agent passes one outcome,
    /// cleared, for every segment, so that no segment allocates a list of its own).
    fn feed_into(&mut self, segment: &Segment<'_>, out: &mut FeedOutcome);

    /// [`StreamParser::feed_into`] a new outcome.
    fn feed(&mut self, segment: &Segment<'_>) -> FeedOutcome {
        let mut out = FeedOutcome::default();
        self.feed_into(segment, &mut out);
        out
    }
}
