//! The cleartext start of a TLS connection: the ClientHello's server name (SNI) and the
//! version the ServerHello chose, read from the first bytes each way (RFC 8446 §4.1.2-3,
//! RFC 5246 §7.4.1, RFC 6066 §3 for `server_name`).
//!
//! Hand-written rather than taken from a TLS library: the input is whatever prefix of the
//! handshake the capture kept (the first KiB of a syscall, a record possibly cut), the parse
//! must never fail on a partial message, and only two fields are wanted. Each reader returns
//! `None` when the bytes are not that message or end before the field.

/// Record content types (RFC 8446 §5.1).
pub const HANDSHAKE: u8 = 22;
/// Application data, and in TLS 1.3 every encrypted record.
pub const APPLICATION_DATA: u8 = 23;

const CLIENT_HELLO: u8 = 1;
const SERVER_HELLO: u8 = 2;
const EXT_SERVER_NAME: u16 = 0;
const EXT_SUPPORTED_VERSIONS: u16 = 43;
/// Longest host name kept (RFC 1035: 253 characters).
const MAX_NAME: usize = 253;

/// A byte cursor that fails (None) past the end instead of panicking.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = self.0.split_at_checked(n)?;
        self.0 = rest;
        Some(head)
    }

    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }

    fn u16(&mut self) -> Option<u16> {
        let b = self.take(2)?;
        Some(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u24(&mut self) -> Option<usize> {
        let b = self.take(3)?;
        Some(usize::from(b[0]) << 16 | usize::from(b[1]) << 8 | usize::from(b[2]))
    }

    /// A vector with a length prefix of `width` bytes.
    fn vec(&mut self, width: usize) -> Option<&'a [u8]> {
        let n = match width {
            1 => usize::from(self.u8()?),
            2 => usize::from(self.u16()?),
            _ => self.u24()?,
        };
        self.take(n)
    }
}

/// Whether `data` starts like a TLS record of content type `kind` (its type and a
/// `3.x` legacy version).
pub fn is_record(data: &[u8], kind: u8) -> bool {
    matches!(data, [k, 3, 0..=4, ..] if *k == kind)
}

/// Whether a record of content type `kind` begins anywhere in the chain of records at the
/// start of `data`, as far as their headers were captured.
pub fn has_record(data: &[u8], kind: u8) -> bool {
    let mut pos = 0;
    while let Some(header) = data.get(pos..pos + 5) {
        if !is_record(header, header[0]) {
            return false;
        }
        if header[0] == kind {
            return true;
        }
        pos += 5 + usize::from(u16::from_be_bytes([header[3], header[4]]));
    }
    false
}

/// The body of the handshake message of type `kind` starting the record at the start of
/// `data`, as far as it was captured.
fn handshake(data: &[u8], kind: u8) -> Option<&[u8]> {
    if !is_record(data, HANDSHAKE) {
        return None;
    }
    let mut c = Cursor(data.get(5..)?);
    if c.u8()? != kind {
        return None;
    }
    let len = c.u24()?;
    Some(&c.0[..len.min(c.0.len())])
}

/// Each extension (type, data) of a hello's extension block, until the bytes run out.
fn extensions(block: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    let mut c = Cursor(block);
    std::iter::from_fn(move || {
        let kind = c.u16()?;
        let data = c.vec(2)?;
        Some((kind, data))
    })
}

/// The server name a ClientHello at the start of `data` asks for (its first `host_name`),
/// when the bytes hold it: lowercase, at most 253 characters of a DNS name.
pub fn client_hello_sni(data: &[u8]) -> Option<String> {
    let mut c = Cursor(handshake(data, CLIENT_HELLO)?);
    c.take(2 + 32)?; // legacy_version, random
    c.vec(1)?; // legacy_session_id
    c.vec(2)?; // cipher_suites
    c.vec(1)?; // legacy_compression_methods
    let block = c.vec(2).unwrap_or(c.0);
    let (_, sni) = extensions(block).find(|(kind, _)| *kind == EXT_SERVER_NAME)?;
    let mut list = Cursor(Cursor(sni).vec(2)?);
    while let Some(name_type) = list.u8() {
        let name = list.vec(2)?;
        if name_type == 0 {
            let ok = !name.is_empty()
                && name.len() <= MAX_NAME
                && name
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
            return ok.then(|| String::from_utf8_lossy(name).to_ascii_lowercase());
        }
    }
    None
}

/// The version a ServerHello at the start of `data` chose: `TLS 1.3` from its
/// `supported_versions` extension or from a `key_share` extension (which only a TLS 1.3
/// ServerHello has), else its legacy version (`TLS 1.2`, ...). A ServerHello cut before its
/// extensions end (a post-quantum key share makes it longer than the capture) gives what came
/// before the cut, else None: its legacy version would claim `TLS 1.2` for a TLS 1.3
/// connection.
pub fn server_hello_version(data: &[u8]) -> Option<&'static str> {
    const EXT_KEY_SHARE: u16 = 51;
    let mut c = Cursor(handshake(data, SERVER_HELLO)?);
    let legacy = c.u16()?;
    c.take(32)?; // random
    // The session id, cipher suite and compression method, then the extensions, if any.
    c.vec(1)?;
    c.take(2 + 1)?;
    if c.0.is_empty() {
        return version_name(legacy);
    }
    let declared = usize::from(c.u16()?);
    let mut exts = Cursor(c.0.get(..declared).unwrap_or(c.0));
    // Each extension's header, its data when captured whole.
    while let (Some(kind), Some(len)) = (exts.u16(), exts.u16()) {
        match (kind, exts.take(usize::from(len))) {
            (EXT_SUPPORTED_VERSIONS, Some(&[a, b])) => {
                return version_name(u16::from_be_bytes([a, b]));
            }
            (EXT_KEY_SHARE, _) => return version_name(0x0304),
            (_, Some(_)) => {}
            (_, None) => return None,
        }
    }
    // None named the version: the legacy one, if every extension was seen.
    if c.0.len() >= declared {
        version_name(legacy)
    } else {
        None
    }
}

fn version_name(version: u16) -> Option<&'static str> {
    Some(match version {
        0x0300 => "SSL 3.0",
        0x0301 => "TLS 1.0",
        0x0302 => "TLS 1.1",
        0x0303 => "TLS 1.2",
        0x0304 => "TLS 1.3",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ClientHello record as OpenSSL 3 sends it for `openssl s_client -servername NAME`
    /// (abridged cipher list, the extensions that matter here).
    fn client_hello(name: &str) -> Vec<u8> {
        let mut sni = vec![0];
        sni.extend((name.len() as u16).to_be_bytes());
        sni.extend(name.as_bytes());
        let mut sni_ext = (sni.len() as u16).to_be_bytes().to_vec();
        sni_ext.extend(sni);
        let mut exts = Vec::new();
        for (kind, data) in [
            (11u16, vec![3, 0, 1, 2]),
            (EXT_SERVER_NAME, sni_ext),
            (EXT_SUPPORTED_VERSIONS, vec![4, 3, 4, 3, 3]),
        ] {
            exts.extend(kind.to_be_bytes());
            exts.extend((data.len() as u16).to_be_bytes());
            exts.extend(data);
        }
        let mut body = vec![3, 3];
        body.extend([7; 32]);
        body.extend([32]);
        body.extend([9; 32]);
        body.extend([0, 4, 0x13, 0x01, 0x13, 0x02]);
        body.extend([1, 0]);
        body.extend((exts.len() as u16).to_be_bytes());
        body.extend(exts);
        let mut hs = vec![CLIENT_HELLO];
        hs.extend(&(body.len() as u32).to_be_bytes()[1..]);
        hs.extend(body);
        let mut record = vec![HANDSHAKE, 3, 1];
        record.extend((hs.len() as u16).to_be_bytes());
        record.extend(hs);
        record
    }

    /// A ServerHello record with these extensions (none: no extension block).
    fn server_hello_with(exts: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut block = Vec::new();
        for (kind, data) in exts {
            block.extend(kind.to_be_bytes());
            block.extend((data.len() as u16).to_be_bytes());
            block.extend(data);
        }
        let mut body = vec![3, 3];
        body.extend([5; 32]);
        body.extend([0, 0x13, 0x01, 0]);
        if !exts.is_empty() {
            body.extend((block.len() as u16).to_be_bytes());
            body.extend(block);
        }
        let mut hs = vec![SERVER_HELLO];
        hs.extend(&(body.len() as u32).to_be_bytes()[1..]);
        hs.extend(body);
        let mut record = vec![HANDSHAKE, 3, 3];
        record.extend((hs.len() as u16).to_be_bytes());
        record.extend(hs);
        record
    }

    /// A ServerHello choosing `supported` in its supported_versions, or without extensions.
    fn server_hello(supported: Option<u16>) -> Vec<u8> {
        let exts: Vec<_> = supported
            .map(|v| (EXT_SUPPORTED_VERSIONS, v.to_be_bytes().to_vec()))
            .into_iter()
            .collect();
        server_hello_with(&exts)
    }

    #[test]
    fn the_server_name_is_read_from_a_client_hello_whole_or_cut_after_it() {
        let hello = client_hello("Api.Example-1.svc");
        assert_eq!(
            client_hello_sni(&hello).as_deref(),
            Some("api.example-1.svc")
        );
        // Cut inside the supported_versions extension, after the name: still read.
        assert_eq!(
            client_hello_sni(&hello[..hello.len() - 3]).as_deref(),
            Some("api.example-1.svc")
        );
        // Cut inside the name: not guessed.
        let at = hello.len() - 9 - 4;
        assert_eq!(client_hello_sni(&hello[..at]), None);
        for n in 0..hello.len() {
            let _ = client_hello_sni(&hello[..n]);
        }
    }

    #[test]
    fn what_is_not_a_client_hello_with_a_name_gives_none() {
        assert_eq!(client_hello_sni(b"GET / HTTP/1.1\r\n\r\n"), None);
        assert_eq!(client_hello_sni(&server_hello(None)), None);
        // A name of characters no host name has.
        assert_eq!(client_hello_sni(&client_hello("a b")), None);
        assert_eq!(client_hello_sni(&client_hello(&"x".repeat(254))), None);
        assert!(is_record(&client_hello("x"), HANDSHAKE));
        // TLS 1.3's client Finished: a ChangeCipherSpec record, then application data.
        let finished = [&[20, 3, 3, 0, 1, 1][..], &[23, 3, 3, 0, 2, 9, 9]].concat();
        assert!(has_record(&finished, APPLICATION_DATA));
        assert!(!has_record(&finished[..6], APPLICATION_DATA));
        assert!(!has_record(&client_hello("x"), APPLICATION_DATA));
        assert!(!has_record(b"GET / HTTP/1.1\r\n", APPLICATION_DATA));
        assert!(!is_record(b"\x16\x02\x01", HANDSHAKE));
    }

    #[test]
    fn the_version_is_the_server_hellos_choice() {
        assert_eq!(
            server_hello_version(&server_hello(Some(0x0304))),
            Some("TLS 1.3")
        );
        assert_eq!(server_hello_version(&server_hello(None)), Some("TLS 1.2"));
        assert_eq!(server_hello_version(&client_hello("x")), None);
        let whole = server_hello(Some(0x0304));
        for n in 0..whole.len() {
            let _ = server_hello_version(&whole[..n]);
        }
        // A ServerHello with a hybrid post-quantum key share (1,120 bytes), cut by the capture
        // inside it, supported_versions before (Go) or after it (BoringSSL): TLS 1.3 either
        // way (only TLS 1.3 has a key_share there).
        let key_share = (51, [&[0x11, 0xec, 4, 96][..], &[7; 1120]].concat());
        let versions = (EXT_SUPPORTED_VERSIONS, vec![3, 4]);
        let go = server_hello_with(&[versions.clone(), key_share.clone()]);
        assert_eq!(server_hello_version(&go[..1024]), Some("TLS 1.3"));
        let boring = server_hello_with(&[key_share, versions]);
        assert_eq!(server_hello_version(&boring[..1024]), Some("TLS 1.3"));
        // A TLS 1.2 ServerHello cut inside an extension before the end: not known.
        let renegotiation = (0xff01, vec![0; 40]);
        let tls12 = server_hello_with(&[(11, vec![1, 0]), renegotiation]);
        assert_eq!(server_hello_version(&tls12), Some("TLS 1.2"));
        assert_eq!(server_hello_version(&tls12[..tls12.len() - 10]), None);
    }
}
