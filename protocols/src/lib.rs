//! L7 protocol detection and stream framing, with no I/O (dependencies: `memchr`, and
//! `httlib-huffman` for HPACK's Huffman code).
//!
//! The agent sees a connection as a sequence of [`Segment`]s: the first bytes (at most the
//! capture size) of each socket syscall, with the syscall's full length. A [`StreamParser`]
//! per connection turns them into [`MessageEvent`]s: where requests and responses start (with
//! what the row needs to know of them) and where they end. Bytes beyond the captured prefix are
//! never seen, so parsers frame by length fields where the protocol has them and count the
//! unseen bytes against them.
//!
//! - [`detect`]: which protocol a connection speaks, from its first bytes (never its port).
//! - [`http`], [`http2`] (with gRPC), [`redis`], [`dns`], [`mysql`], [`postgres`]: one parser
//!   each.
//! - [`stream`]: the vocabulary every parser shares (segments, message events, the parser
//!   trait), re-exported here.
//! - [`sql`]: SQL normalization (literals to `?`) shared by the SQL protocols.
//! - `http_fields` (crate-private): what HTTP/1.x and HTTP/2 read alike (a target's path, a
//!   `traceparent`, a status code's text), below both parsers.
//! - `framing` (length-prefixed messages) and `bounded_map` (prepared statements): crate-private
//!   pieces the MySQL and PostgreSQL parsers share.
#![deny(missing_docs)]

mod bounded_map;
pub mod dns;
mod framing;
mod hpack;
pub mod http;
pub mod http2;
mod http_fields;
pub mod mysql;
pub mod postgres;
pub mod redis;
pub mod sql;
pub mod stream;
#[cfg(test)]
mod test_support;
pub mod tls;

pub use stream::{
    Direction, FeedOutcome, MessageEvent, Protocol, RequestInfo, ResponseInfo, Segment,
    StreamParser, Transport,
};

/// Recognizes the protocol of a session from its first request bytes and, when the server
/// spoke first (MySQL's greeting), from its first response bytes.
pub fn detect(
    transport: Transport,
    first_request: &[u8],
    first_response: Option<&[u8]>,
) -> Option<Protocol> {
    match transport {
        Transport::Udp => dns::looks_like_query(first_request, false).then_some(Protocol::Dns),
        Transport::Tcp => {
            if let Some(greeting) = first_response
                && mysql::looks_like_greeting(greeting)
            {
                return Some(Protocol::Mysql);
            }
            if http2::looks_like_preface(first_request) {
                Some(Protocol::Http2)
            } else if http::looks_like_request(first_request) {
                Some(Protocol::Http)
            } else if postgres::looks_like_startup(first_request) {
                Some(Protocol::Postgresql)
            } else if redis::looks_like_request(first_request) {
                Some(Protocol::Redis)
            } else if dns::looks_like_query(first_request, true) {
                Some(Protocol::Dns)
            } else if http2::looks_like_frames(first_request) {
                // An HTTP/2 connection the agent joined after its preface.
                Some(Protocol::Http2)
            } else {
                None
            }
        }
    }
}

/// A parser for `protocol` over `transport`, at the start of a session.
///
/// A MySQL parser starts in the handshake phase: the server's greeting, the client's login and
/// the server's answer to it are not calls.
pub fn parser(protocol: Protocol, transport: Transport) -> Box<dyn StreamParser> {
    match protocol {
        Protocol::Http => Box::new(http::HttpParser::default()),
        Protocol::Http2 | Protocol::Grpc => Box::new(http2::Http2Parser::default()),
        Protocol::Dns => Box::new(dns::DnsParser::new(transport)),
        Protocol::Mysql => Box::new(mysql::MysqlParser::default()),
        Protocol::Redis => Box::new(redis::RedisParser::default()),
        Protocol::Postgresql => Box::new(postgres::PostgresParser::default()),
    }
}
