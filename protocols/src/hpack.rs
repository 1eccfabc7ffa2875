//! HPACK (RFC 7541) header block decoding that knows what it does not know.
//!
//! Huffman-coded strings are decoded by the `httlib-huffman` crate. The rest (integers,
//! strings, the static table and the dynamic table) is written here, because a decoder fed
//! from a capture must cope with what no HPACK library handles: header blocks it never saw. An
//! HTTP/2 endpoint's encoder adds entries to its dynamic table in blocks the agent may miss (a
//! block cut by the capture size, frames whose headers were not captured, a connection opened
//! before the agent started). A library refuses or, worse, resolves later indices against a
//! table that is out of step, to the wrong fields. This decoder instead keeps, after a loss,
//! only the entries it saw added since: they are the newest entries of the encoder's table, so
//! indices into them resolve exactly, and indices beyond them are unknown fields, never
//! guessed. Once entries it saw fill the table size (the encoder has then evicted every older
//! entry), or a size update empties it, the table is whole again.
//!
//! Only the fields a `calls` row needs are kept ([`Field`]); other entries keep their size
//! (for eviction) but not their text, so no other header value, credentials included, stays
//! in memory beyond its block.

use std::collections::VecDeque;

/// Dynamic table size an encoder starts with (SETTINGS_HEADER_TABLE_SIZE's default).
const DEFAULT_TABLE_SIZE: usize = 4096;
/// Largest dynamic table followed; an encoder asking for more is followed in part (its newest
/// entries within this size), and its table is never taken as whole again.
pub(crate) const MAX_TABLE_SIZE: usize = 64 * 1024;
/// Most bytes of one decoded string kept for a field.
const MAX_VALUE: usize = 8 * 1024;
const STATIC_ENTRIES: usize = 61;

/// The header fields a row needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Field {
    Method,
    Path,
    Status,
    ContentType,
    Traceparent,
    GrpcStatus,
    GrpcMessage,
}

impl Field {
    fn of(name: &[u8]) -> Option<Field> {
        Some(match name {
            b":method" => Field::Method,
            b":path" => Field::Path,
            b":status" => Field::Status,
            b"content-type" => Field::ContentType,
            b"traceparent" => Field::Traceparent,
            b"grpc-status" => Field::GrpcStatus,
            b"grpc-message" => Field::GrpcMessage,
            _ => return None,
        })
    }
}

/// The static table (RFC 7541 Appendix A): names, and values where they are not empty.
const STATIC_TABLE: [(&str, &str); STATIC_ENTRIES] = [
    (":authority", ""),
    (":method", "GET"),
    (":method", "POST"),
    (":path", "/"),
    (":path", "/index.html"),
    (":scheme", "http"),
    (":scheme", "https"),
    (":status", "200"),
    (":status", "204"),
    (":status", "206"),
    (":status", "304"),
    (":status", "400"),
    (":status", "404"),
    (":status", "500"),
    ("accept-charset", ""),
    ("accept-encoding", "gzip, deflate"),
    ("accept-language", ""),
    ("accept-ranges", ""),
    ("accept", ""),
    ("access-control-allow-origin", ""),
    ("age", ""),
    ("allow", ""),
    ("authorization", ""),
    ("cache-control", ""),
    ("content-disposition", ""),
    ("content-encoding", ""),
    ("content-language", ""),
    ("content-length", ""),
    ("content-location", ""),
    ("content-range", ""),
    ("content-type", ""),
    ("cookie", ""),
    ("date", ""),
    ("etag", ""),
    ("expect", ""),
    ("expires", ""),
    ("from", ""),
    ("host", ""),
    ("if-match", ""),
    ("if-modified-since", ""),
    ("if-none-match", ""),
    ("if-range", ""),
    ("if-unmodified-since", ""),
    ("last-modified", ""),
    ("link", ""),
    ("location", ""),
    ("max-forwards", ""),
    ("proxy-authenticate", ""),
    ("proxy-authorization", ""),
    ("range", ""),
    ("referer", ""),
    ("refresh", ""),
    ("retry-after", ""),
    ("server", ""),
    ("set-cookie", ""),
    ("strict-transport-security", ""),
    ("transfer-encoding", ""),
    ("user-agent", ""),
    ("vary", ""),
    ("via", ""),
    ("www-authenticate", ""),
];

/// The needed field a static table entry names (1-based `index`, at most 61).
fn static_field(index: usize) -> Option<Field> {
    match index {
        2 | 3 => Some(Field::Method),
        4 | 5 => Some(Field::Path),
        8..=14 => Some(Field::Status),
        31 => Some(Field::ContentType),
        _ => None,
    }
}

/// A dynamic table entry: which needed field it is (with its value), and its size.
#[derive(Debug, Clone)]
struct Entry {
    field: Option<(Field, Box<[u8]>)>,
    name_len: usize,
    /// Name length + value length + 32 (RFC 7541 §4.1).
    size: usize,
}

/// A field's name as the decoder resolved it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Name {
    Known(Option<Field>),
    /// An index into dynamic table entries never seen.
    Unknown,
}

/// A table entry as a lookup resolves it: its name (a needed field or not), the name's length
/// (entries added with this name are sized by it) and its value (empty unless needed).
struct Resolved<'a> {
    name: Name,
    name_len: usize,
    value: &'a [u8],
}

/// The decoded fields of one header block: the needed ones seen, and how many fields could
/// not be resolved.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Block {
    pub(crate) fields: Vec<(Field, Vec<u8>)>,
    pub(crate) unknown: u32,
}

/// A header block the decoder could not read: its table is no longer known ([`Hpack::lose`]
/// was applied).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Malformed;

/// One direction's decoder state.
#[derive(Debug)]
pub(crate) struct Hpack {
    /// Newest first: the newest `entries.len()` entries of the encoder's table.
    entries: VecDeque<Entry>,
    size: usize,
    max_size: usize,
    /// Whether `entries` is the encoder's whole table.
    whole: bool,
    /// The encoder's table may be larger than [`MAX_TABLE_SIZE`]: never whole again.
    capped: bool,
}

impl Default for Hpack {
    fn default() -> Self {
        Self {
            entries: VecDeque::new(),
            size: 0,
            max_size: DEFAULT_TABLE_SIZE,
            whole: true,
            capped: false,
        }
    }
}

impl Hpack {
    /// A decoder for a connection whose earlier blocks were not seen.
    pub(crate) fn joined_late() -> Self {
        Self {
            whole: false,
            ..Self::default()
        }
    }

    /// Blocks of this direction were missed (or one was cut): the entries known so far may no
    /// longer be the newest, so they are forgotten.
    pub(crate) fn lose(&mut self) {
        self.entries.clear();
        self.size = 0;
        self.whole = false;
    }

    /// Whether the decoder knows the encoder's whole table.
    #[cfg(test)]
    fn is_whole(&self) -> bool {
        self.whole
    }

    /// Decodes one whole header block. An index past a table taken as whole means blocks were
    /// missed after all: the table is lost ([`Self::lose`]) and the block read again, for what
    /// it says through the static table and in literals. A block malformed even so is an error
    /// (the table is lost).
    pub(crate) fn decode(&mut self, block: &[u8]) -> Result<Block, Malformed> {
        let mut out = Block::default();
        if self.decode_into(block, &mut out).is_ok() {
            return Ok(out);
        }
        self.lose();
        let mut out = Block::default();
        let result = self.decode_into(block, &mut out);
        if result.is_err() {
            self.lose();
        }
        result.map(|()| out)
    }

    fn decode_into(&mut self, mut buf: &[u8], out: &mut Block) -> Result<(), Malformed> {
        while let Some(&first) = buf.first() {
            if first & 0x80 != 0 {
                // Indexed field (§6.1).
                let index = integer(&mut buf, 7)?;
                match self.lookup(index)? {
                    Some(Resolved {
                        name: Name::Known(Some(field)),
                        value,
                        ..
                    }) => out.fields.push((field, value.to_vec())),
                    Some(Resolved {
                        name: Name::Known(None),
                        ..
                    }) => {}
                    _ => out.unknown += 1,
                }
            } else if first & 0xe0 == 0x20 {
                // Dynamic table size update (§6.3).
                let size = integer(&mut buf, 5)?;
                self.resize(size);
            } else {
                // Literal (§6.2): with incremental indexing (01), without (0000), never (0001).
                let indexing = first & 0x40 != 0;
                let index = integer(&mut buf, if indexing { 6 } else { 4 })?;
                let (name, name_len) = if index == 0 {
                    let (raw, len) = string(&mut buf, true)?;
                    (Name::Known(Field::of(&raw)), len)
                } else {
                    self.lookup(index)?
                        .map_or((Name::Unknown, 0), |e| (e.name, e.name_len))
                };
                // A value is decoded only when it is kept or sized (a field added to the
                // table); others are skipped.
                let needed = matches!(name, Name::Known(Some(_)));
                let (mut value, value_len) = string(&mut buf, needed || indexing)?;
                match name {
                    Name::Known(Some(field)) => {
                        // Copied only when the table keeps it too.
                        let kept = if indexing {
                            value.clone()
                        } else {
                            std::mem::take(&mut value)
                        };
                        out.fields.push((field, kept));
                    }
                    Name::Known(None) => {}
                    Name::Unknown => out.unknown += 1,
                }
                if indexing {
                    match name {
                        Name::Known(field) => self.insert(Entry {
                            field: field.map(|f| (f, value.into_boxed_slice())),
                            name_len,
                            size: name_len + value_len + 32,
                        }),
                        // An entry whose name (and so size) is unknown: what follows is no
                        // longer the newest entries in known order.
                        Name::Unknown => self.lose(),
                    }
                }
            }
        }
        Ok(())
    }

    /// The entry at `index` (1-based over the static then the dynamic table); `None` for an
    /// entry never seen; an error for an index past a whole table.
    fn lookup(&self, index: usize) -> Result<Option<Resolved<'_>>, Malformed> {
        if index == 0 {
            return Err(Malformed);
        }
        if index <= STATIC_ENTRIES {
            let (name, value) = STATIC_TABLE[index - 1];
            return Ok(Some(Resolved {
                name: Name::Known(static_field(index)),
                name_len: name.len(),
                value: value.as_bytes(),
            }));
        }
        match self.entries.get(index - STATIC_ENTRIES - 1) {
            Some(entry) => Ok(Some(Resolved {
                name: Name::Known(entry.field.as_ref().map(|(f, _)| *f)),
                name_len: entry.name_len,
                value: entry.field.as_ref().map_or(&[], |(_, v)| v),
            })),
            None if self.whole => Err(Malformed),
            None => Ok(None),
        }
    }

    fn insert(&mut self, entry: Entry) {
        if entry.size > self.max_size {
            // An entry larger than the table empties it (§4.4).
            self.entries.clear();
            self.size = 0;
            self.whole = !self.capped;
            return;
        }
        if self.size + entry.size > self.max_size {
            // Every entry older than the ones known is evicted first: the encoder's table is
            // now exactly what is known, less the oldest known that do not fit.
            self.whole = !self.capped;
        }
        self.size += entry.size;
        self.entries.push_front(entry);
        self.evict();
    }

    fn resize(&mut self, size: usize) {
        if size > MAX_TABLE_SIZE {
            self.capped = true;
            self.whole = false;
        }
        self.max_size = size.min(MAX_TABLE_SIZE);
        if self.size > self.max_size || size == 0 {
            self.whole = !self.capped;
        }
        self.evict();
    }

    fn evict(&mut self) {
        while self.size > self.max_size {
            match self.entries.pop_back() {
                Some(old) => self.size -= old.size,
                None => break,
            }
        }
    }
}

/// Reads an integer with an `n`-bit prefix (§5.1).
fn integer(buf: &mut &[u8], n: u8) -> Result<usize, Malformed> {
    let (&first, mut rest) = buf.split_first().ok_or(Malformed)?;
    let max = (1usize << n) - 1;
    let mut value = usize::from(first) & max;
    if value == max {
        let mut shift = 0;
        loop {
            let (&b, tail) = rest.split_first().ok_or(Malformed)?;
            rest = tail;
            if shift > 28 {
                return Err(Malformed);
            }
            value += usize::from(b & 0x7f) << shift;
            shift += 7;
            if b & 0x80 == 0 {
                break;
            }
        }
    }
    *buf = rest;
    Ok(value)
}

/// Reads a string literal (§5.2), Huffman-coded or not: its first [`MAX_VALUE`] bytes when
/// `decode`, and its decoded length (the table sizes an entry by it).
fn string(buf: &mut &[u8], decode: bool) -> Result<(Vec<u8>, usize), Malformed> {
    let huffman = buf.first().ok_or(Malformed)? & 0x80 != 0;
    let len = integer(buf, 7)?;
    if len > buf.len() {
        return Err(Malformed);
    }
    let (raw, rest) = buf.split_at(len);
    *buf = rest;
    if !decode {
        return Ok((Vec::new(), 0));
    }
    let mut out = Vec::new();
    if huffman {
        httlib_huffman::decode(raw, &mut out, httlib_huffman::DecoderSpeed::FiveBits)
            .map_err(|_| Malformed)?;
    } else {
        out.extend_from_slice(raw);
    }
    let decoded = out.len();
    out.truncate(MAX_VALUE);
    Ok((out, decoded))
}

#[cfg(test)]
mod tests;
