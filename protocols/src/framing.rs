//! Framing of length-prefixed messages, shared by the MySQL and PostgreSQL parsers: a
//! [`Framer`] splits one direction of a stream into messages through headers split over
//! segments and bytes beyond the capture size, keeping a bounded prefix of each.

use crate::stream::Segment;

/// Most bytes of one message (header included) the framer keeps for the parser to read.
const KEEP: usize = 2048;

/// What is left of a segment being framed: captured bytes, then bytes not captured.
#[derive(Debug)]
pub(crate) struct Input<'s> {
    data: &'s [u8],
    pos: usize,
    unseen: usize,
}

impl<'s> Input<'s> {
    pub(crate) fn new(segment: &Segment<'s>) -> Self {
        Self {
            data: segment.data,
            pos: 0,
            unseen: segment.len.saturating_sub(segment.data.len()),
        }
    }

    /// The next captured byte, without taking it.
    pub(crate) fn peek(&self) -> Option<u8> {
        self.data.get(self.pos).copied()
    }

    /// Takes the next captured byte.
    pub(crate) fn take(&mut self) -> Option<u8> {
        let c = self.peek()?;
        self.pos += 1;
        Some(c)
    }

    fn skip_all(&mut self) {
        self.pos = self.data.len();
        self.unseen = 0;
    }
}

/// One step of framing.
#[derive(Debug)]
pub(crate) enum Piece<'a> {
    /// A message began; its rest may still be to come (`Piece::Rest` then tells its end).
    Message(Message<'a>),
    /// The rest of the message delivered last ended.
    Rest,
    /// A message header fell in bytes not captured: framing is lost until `resync`.
    Lost,
    /// A header made no sense: framing is lost until `resync`.
    Invalid,
}

/// A message as far as it was captured.
#[derive(Debug)]
pub(crate) struct Message<'a> {
    /// Its header and the captured start of its body (at most [`KEEP`] bytes in all).
    pub(crate) bytes: &'a [u8],
    /// Its whole size, header included.
    pub(crate) size: usize,
    /// Whether it ended; if not, its end is reported later as `Piece::Rest`.
    pub(crate) ended: bool,
}

impl Message<'_> {
    /// Whether bytes of the message are missing from `bytes` (not captured, or not kept).
    pub(crate) fn is_cut(&self) -> bool {
        self.bytes.len() < self.size
    }
}

/// Splits one direction of a stream into length-prefixed messages.
///
/// A message is delivered once it ended, once [`KEEP`] bytes of it were read, or when its
/// segment was cut inside it (the rest cannot be seen); a header split over segments is held
/// until complete. Unseen bytes count against the message in progress; a header that falls in
/// them loses the framing until the parser calls [`Framer::resync`].
#[derive(Debug, Default)]
pub(crate) struct Framer {
    /// Header and kept body bytes of the message in progress.
    buf: Vec<u8>,
    /// Size of the message in progress once its header is known, else 0.
    size: usize,
    /// Bytes of it consumed so far, seen or not.
    consumed: usize,
    /// It was delivered and its rest is being skipped.
    delivered: bool,
    /// The last delivered message ended: clear at the next call.
    done: bool,
    lost: bool,
}

impl Framer {
    /// Whether framing is lost.
    pub(crate) fn is_lost(&self) -> bool {
        self.lost
    }

    /// Whether the next byte starts a message.
    pub(crate) fn at_boundary(&self) -> bool {
        !self.lost && (self.done || (self.size == 0 && self.buf.is_empty()))
    }

    /// The first byte of the next message, if it was captured.
    pub(crate) fn next_first_byte(&self, input: &Input<'_>) -> Option<u8> {
        if self.lost || self.delivered || (self.size != 0 && !self.done) {
            return None;
        }
        match (self.done, self.buf.first()) {
            (false, Some(&c)) => Some(c),
            _ => input.peek(),
        }
    }

    /// Takes up framing again: the next byte starts a message.
    pub(crate) fn resync(&mut self) {
        self.buf.clear();
        self.size = 0;
        self.consumed = 0;
        self.delivered = false;
        self.done = false;
        self.lost = false;
    }

    /// The next piece of `input`, or `None` when it is used up. `size` gives a message's
    /// whole size from its `header_len`-byte header, or `None` if the header is invalid.
    pub(crate) fn next(
        &mut self,
        input: &mut Input<'_>,
        header_len: usize,
        size: impl FnOnce(&[u8]) -> Option<usize>,
    ) -> Option<Piece<'_>> {
        if self.done {
            self.resync();
        }
        if self.lost {
            input.skip_all();
            return None;
        }
        if self.delivered {
            self.buf.clear();
            self.consume(input);
            if self.consumed == self.size {
                self.done = true;
                return Some(Piece::Rest);
            }
            return None;
        }
        if self.size == 0 {
            let avail = &input.data[input.pos..];
            let take = header_len.saturating_sub(self.buf.len()).min(avail.len());
            self.buf.extend_from_slice(&avail[..take]);
            input.pos += take;
            self.consumed += take;
            if self.buf.len() < header_len {
                if input.unseen > 0 {
                    self.lost = true;
                    input.skip_all();
                    return Some(Piece::Lost);
                }
                return None;
            }
            match size(&self.buf) {
                Some(s) if s >= header_len => self.size = s,
                _ => {
                    self.lost = true;
                    input.skip_all();
                    return Some(Piece::Invalid);
                }
            }
        }
        let remaining = self.size - self.consumed;
        let avail = &input.data[input.pos..];
        let take = remaining.min(avail.len());
        let keep = take.min(KEEP.saturating_sub(self.buf.len()));
        self.buf.extend_from_slice(&avail[..keep]);
        input.pos += take;
        self.consumed += take;
        let mut cut = false;
        if self.consumed < self.size && input.unseen > 0 {
            cut = true;
            self.consume(input);
        }
        let ended = self.consumed == self.size;
        if ended {
            self.done = true;
        } else if cut || self.buf.len() >= KEEP {
            self.delivered = true;
        } else {
            return None;
        }
        Some(Piece::Message(Message {
            bytes: &self.buf,
            size: self.size,
            ended,
        }))
    }

    /// Consumes bytes of the message in progress: captured ones, then unseen ones.
    fn consume(&mut self, input: &mut Input<'_>) {
        let take = (self.size - self.consumed).min(input.data.len() - input.pos);
        input.pos += take;
        self.consumed += take;
        if input.pos == input.data.len() {
            let take = (self.size - self.consumed).min(input.unseen);
            input.unseen -= take;
            self.consumed += take;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::Direction;

    /// Frames segments with a 2-byte big-endian length header (length of the body).
    fn frame(segments: &[(&[u8], usize)]) -> Vec<String> {
        let mut framer = Framer::default();
        let mut got = Vec::new();
        for &(data, len) in segments {
            let seg = Segment {
                direction: Direction::Request,
                data,
                len,
            };
            let mut input = Input::new(&seg);
            while let Some(piece) = framer.next(&mut input, 2, |h| {
                let n = usize::from(u16::from_be_bytes([h[0], h[1]]));
                (n != 0xFFFF).then_some(2 + n)
            }) {
                got.push(match piece {
                    Piece::Message(m) => format!(
                        "msg {:?} size {} ended {}",
                        String::from_utf8_lossy(&m.bytes[2..]),
                        m.size,
                        m.ended
                    ),
                    Piece::Rest => "rest".to_owned(),
                    Piece::Lost => "lost".to_owned(),
                    Piece::Invalid => "invalid".to_owned(),
                });
            }
            got.push("|".to_owned());
        }
        got
    }

    #[test]
    fn framer_cases() {
        // Two messages in one segment, then a header split over two segments.
        assert_eq!(
            frame(&[(b"\0\x02ab\0\x01c\0", 8), (b"\x03xyz", 4)]),
            [
                "msg \"ab\" size 4 ended true",
                "msg \"c\" size 3 ended true",
                "|",
                "msg \"xyz\" size 5 ended true",
                "|"
            ]
        );
        // A body mostly not captured, its rest in the next segment, then a message.
        assert_eq!(
            frame(&[(b"\0\x0aab", 8), (b"cdef\0\x01z", 7)]),
            [
                "msg \"ab\" size 12 ended false",
                "|",
                "rest",
                "msg \"z\" size 3 ended true",
                "|"
            ]
        );
        // A body split over uncut segments is held until it ends.
        assert_eq!(
            frame(&[(b"\0\x04ab", 4), (b"cd", 2)]),
            ["|", "msg \"abcd\" size 6 ended true", "|"]
        );
        // A header in unseen bytes loses framing until resync; later input is skipped.
        assert_eq!(
            frame(&[(b"\0\x01a", 10), (b"\0\x01a", 3)]),
            ["msg \"a\" size 3 ended true", "lost", "|", "|"]
        );
        assert_eq!(frame(&[(b"\xff\xffzz", 4)]), ["invalid", "|"]);
        // Unseen bytes that end exactly with the message.
        assert_eq!(
            frame(&[(b"\0\x03a", 5), (b"\0\x00", 2)]),
            [
                "msg \"a\" size 5 ended true",
                "|",
                "msg \"\" size 2 ended true",
                "|"
            ]
        );
    }

    #[test]
    fn framer_keeps_a_bounded_prefix() {
        let mut data = vec![0x10, 0x00];
        data.extend(std::iter::repeat_n(b'x', 0x1000));
        let seg = Segment {
            direction: Direction::Request,
            data: &data,
            len: data.len(),
        };
        let mut framer = Framer::default();
        let mut input = Input::new(&seg);
        let size = |h: &[u8]| Some(2 + usize::from(u16::from_be_bytes([h[0], h[1]])));
        match framer.next(&mut input, 2, size) {
            Some(Piece::Message(m)) => {
                assert_eq!((m.bytes.len(), m.size, m.ended), (KEEP, 0x1002, true));
                assert!(m.is_cut());
            }
            other => panic!("{other:?}"),
        }
        assert!(framer.next(&mut input, 2, size).is_none());
        assert!(framer.at_boundary());
    }
}
