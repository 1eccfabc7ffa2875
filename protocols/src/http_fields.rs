//! What HTTP/1.x and HTTP/2 read alike from a message: the path of a request target, the trace
//! id of a `traceparent` header, a status code's text, and what a request's method means for
//! its response's framing. Below both parsers, so that HTTP/1.x can hand an upgraded
//! connection to HTTP/2 without the two modules importing each other.

use std::{borrow::Cow, sync::LazyLock};

/// What a response's framing depends on in its request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MethodKind {
    /// Its response has no body.
    Head,
    /// A 2xx response turns the connection into a tunnel.
    Connect,
    /// Anything else.
    Other,
}

/// Every status code's text, made once: a response's `status` borrows it.
static STATUS_TEXT: LazyLock<Vec<String>> =
    LazyLock::new(|| (0..1000).map(|code| code.to_string()).collect());

/// The text of a status code (HTTP/1 or HTTP/2), without allocating.
pub(crate) fn status_text(code: u16) -> Cow<'static, str> {
    match STATUS_TEXT.get(usize::from(code)) {
        Some(text) => Cow::Borrowed(text),
        None => Cow::Owned(code.to_string()),
    }
}

/// The path of a request target, without query string or fragment; the authority for
/// `CONNECT`.
pub(crate) fn resource(kind: MethodKind, target: &[u8]) -> String {
    if kind == MethodKind::Connect {
        return String::from_utf8_lossy(target).into_owned();
    }
    let path = match target.windows(3).position(|w| w == b"://") {
        // Absolute form: the path follows the authority.
        Some(i) if target.first() != Some(&b'/') => {
            let after = &target[i + 3..];
            match after.iter().position(|b| b"/?#".contains(b)) {
                Some(j) if after[j] == b'/' => &after[j..],
                _ => b"/",
            }
        }
        _ => target,
    };
    let end = path
        .iter()
        .position(|&b| b == b'?' || b == b'#')
        .unwrap_or(path.len());
    String::from_utf8_lossy(&path[..end]).into_owned()
}

/// The trace id of a W3C `traceparent` value (`version-traceid-parentid-flags`), lowercased;
/// `None` when malformed or all zeros.
pub(crate) fn parse_traceparent(value: &[u8]) -> Option<String> {
    let hex = |b: &[u8]| !b.is_empty() && b.iter().all(u8::is_ascii_hexdigit);
    let nonzero = |b: &[u8]| b.iter().any(|&d| d != b'0');
    let version = value.get(0..2)?;
    let trace = value.get(3..35)?;
    let parent = value.get(36..52)?;
    let flags = value.get(53..55)?;
    let dashes = [2, 35, 52].iter().all(|&i| value[i] == b'-');
    // Version 00 is exactly 55 bytes; later versions may append `-` fields.
    let tail_ok = match value.get(55) {
        None => true,
        Some(&b) => b == b'-' && version != b"00",
    };
    let ok = dashes
        && tail_ok
        && hex(version)
        && !version.eq_ignore_ascii_case(b"ff")
        && hex(trace)
        && nonzero(trace)
        && hex(parent)
        && nonzero(parent)
        && hex(flags);
    ok.then(|| String::from_utf8_lossy(trace).to_ascii_lowercase())
}
