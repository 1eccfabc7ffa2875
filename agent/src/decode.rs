//! Decoding what the kernel hands up: ring-buffer records into the event structs of
//! `kindling_agent_common`, and the kernel's raw values in them (addresses, task names, TCP
//! states, monotonic timestamps, reason codes) into what rows hold.
//!
//! Pure functions and plain data: the capture side (`capture`) reads the rings, the
//! trackers ([`crate::conntrack`], [`crate::sessions`]) and the fuzzers use these to read what
//! it read.

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use kindling_agent_common::{
    AF_INET6, CAPTURE_MAX, DATA_HEADER_LEN, DataEvent, TAIL_MAX, TcpEvent, tcp_state,
};

/// Reads a [`TcpEvent`] from ring-buffer bytes, or None if the size is wrong.
pub fn tcp_event(bytes: &[u8]) -> Option<TcpEvent> {
    if bytes.len() != size_of::<TcpEvent>() {
        return None;
    }
    // SAFETY: TcpEvent is repr(C) plain data, every bit pattern is valid, and the length was
    // checked; read_unaligned copes with any alignment.
    Some(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<TcpEvent>()) })
}

/// Reads a data ring record (a [`DataEvent`]'s header and its captured bytes) into `out`, or
/// None if its length does not match its `captured` field or its `tail` is not part of the
/// captured bytes. Bytes of `out.payload` past
/// `captured` keep whatever they held.
pub fn data_event<'a>(bytes: &[u8], out: &'a mut DataEvent) -> Option<&'a DataEvent> {
    let (header, payload) = bytes.split_at_checked(DATA_HEADER_LEN)?;
    // SAFETY: DataEvent is repr(C) plain data and every bit pattern is valid; exactly
    // DATA_HEADER_LEN bytes are written, all before the payload field.
    unsafe {
        std::ptr::copy_nonoverlapping(
            header.as_ptr(),
            std::ptr::from_mut(out).cast::<u8>(),
            DATA_HEADER_LEN,
        );
    }
    if usize::from(out.captured) != payload.len()
        || payload.len() > CAPTURE_MAX
        || out.tail > out.captured
        || usize::from(out.tail) > TAIL_MAX
    {
        return None;
    }
    out.payload[..payload.len()].copy_from_slice(payload);
    Some(out)
}

/// The data events of one capture round, decoded straight from their ring records into
/// slots kept between rounds. A record is copied once, as its header and captured bytes; the
/// rest of a slot's 1 KiB payload array is not touched (a 100-byte request moves 212 bytes,
/// not the 1,136 of a whole `DataEvent`).
#[derive(Debug, Default)]
pub struct DataBatch {
    slots: Vec<DataEvent>,
    len: usize,
}

impl DataBatch {
    /// An empty batch with room for `n` events before it allocates.
    pub fn with_capacity(n: usize) -> Self {
        Self {
            slots: Vec::with_capacity(n),
            len: 0,
        }
    }

    /// Forgets the events (keeps the slots).
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Decodes a data ring record (see [`data_event`]) into the next slot and keeps it;
    /// returns the event, or None (nothing kept) if the record is malformed.
    pub fn push_record(&mut self, bytes: &[u8]) -> Option<&mut DataEvent> {
        if self.len == self.slots.len() {
            self.slots.push(DataEvent::zeroed());
        }
        let slot = &mut self.slots[self.len];
        data_event(bytes, slot)?;
        self.len += 1;
        Some(slot)
    }

    /// Keeps only the events that returned after `horizon` (kernel monotonic ns), moved to
    /// the front in their order; the next records are pushed after them.
    pub fn keep_after(&mut self, horizon: u64) {
        let mut kept = 0;
        for i in 0..self.len {
            if self.slots[i].ts_exit_ns > horizon {
                self.slots.swap(kept, i);
                kept += 1;
            }
        }
        self.len = kept;
    }

    /// The events kept since the last [`DataBatch::clear`], in the order they were pushed.
    pub fn events(&self) -> &[DataEvent] {
        &self.slots[..self.len]
    }
}

/// Converts kernel monotonic timestamps (`bpf_ktime_get_ns`) into wall-clock nanoseconds.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    realtime_minus_monotonic: i64,
}

impl Clock {
    /// Measures the current offset between CLOCK_REALTIME and CLOCK_MONOTONIC.
    pub fn now() -> Self {
        let read = |clock| {
            let mut ts = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: valid pointer to a local timespec.
            unsafe { libc::clock_gettime(clock, &mut ts) };
            ts.tv_sec * 1_000_000_000 + ts.tv_nsec
        };
        let mono = read(libc::CLOCK_MONOTONIC);
        let real = read(libc::CLOCK_REALTIME);
        Self {
            realtime_minus_monotonic: real - mono,
        }
    }

    /// A clock whose wall time equals monotonic time plus `offset` (for tests).
    pub fn with_offset(offset: i64) -> Self {
        Self {
            realtime_minus_monotonic: offset,
        }
    }

    /// Wall-clock ns for a kernel monotonic timestamp.
    pub fn wall(&self, monotonic_ns: u64) -> i64 {
        monotonic_ns as i64 + self.realtime_minus_monotonic
    }

    /// Kernel monotonic ns now (the clock of the events' `ts_ns`).
    pub fn monotonic_now() -> u64 {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: valid pointer to a local timespec.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        (ts.tv_sec * 1_000_000_000 + ts.tv_nsec) as u64
    }

    /// Wall-clock ns now.
    pub fn wall_now(&self) -> i64 {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: valid pointer to a local timespec.
        unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut ts) };
        ts.tv_sec * 1_000_000_000 + ts.tv_nsec
    }
}

/// Names of a kernel enum's values by number (from its BTF).
pub type EnumNames = HashMap<u32, String>;

/// Names of the kernel's reason codes, from its BTF.
#[derive(Debug, Clone, Default)]
pub struct ReasonNames {
    /// `enum skb_drop_reason` without the `SKB_DROP_REASON_` prefix.
    pub drop: EnumNames,
    /// `enum sk_rst_reason` without the `SK_RST_REASON_` prefix.
    pub reset: EnumNames,
}

impl ReasonNames {
    /// Name of drop reason `code`, or its number when this kernel does not name it.
    pub fn drop_reason(&self, code: u32) -> String {
        self.drop
            .get(&code)
            .cloned()
            .unwrap_or_else(|| code.to_string())
    }

    /// Name of reset reason `code`, or its number.
    pub fn reset_reason(&self, code: u32) -> String {
        self.reset
            .get(&code)
            .cloned()
            .unwrap_or_else(|| code.to_string())
    }
}

/// Name of a kernel TCP state, without the `TCP_` prefix.
pub fn state_name(state: u8) -> &'static str {
    match state {
        tcp_state::ESTABLISHED => "ESTABLISHED",
        tcp_state::SYN_SENT => "SYN_SENT",
        tcp_state::SYN_RECV => "SYN_RECV",
        tcp_state::FIN_WAIT1 => "FIN_WAIT1",
        tcp_state::FIN_WAIT2 => "FIN_WAIT2",
        tcp_state::TIME_WAIT => "TIME_WAIT",
        tcp_state::CLOSE => "CLOSE",
        tcp_state::CLOSE_WAIT => "CLOSE_WAIT",
        tcp_state::LAST_ACK => "LAST_ACK",
        tcp_state::LISTEN => "LISTEN",
        tcp_state::CLOSING => "CLOSING",
        tcp_state::NEW_SYN_RECV => "NEW_SYN_RECV",
        _ => "UNKNOWN",
    }
}

/// A kernel address (4 or 16 bytes of `raw`, by `family`) as an [`IpAddr`].
pub fn ip(family: u16, raw: &[u8; 16]) -> IpAddr {
    if family == AF_INET6 {
        let v6 = Ipv6Addr::from(*raw);
        // Dual-stack sockets report IPv4 peers as ::ffff:a.b.c.d; show them as IPv4.
        match v6.to_ipv4_mapped() {
            Some(v4) => v4.into(),
            None => v6.into(),
        }
    } else {
        Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3]).into()
    }
}

/// A task's `comm` as text (lossy: the kernel does not promise UTF-8).
pub fn comm(raw: &[u8; 16]) -> String {
    String::from_utf8_lossy(comm_bytes(raw)).into_owned()
}

/// `comm` without its NUL padding.
pub fn comm_bytes(raw: &[u8; 16]) -> &[u8] {
    let end = raw.iter().position(|&b| b == 0).unwrap_or(raw.len());
    &raw[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_rejects_wrong_sizes() {
        assert!(tcp_event(&[0u8; 10]).is_none());
        assert!(tcp_event(&[0u8; size_of::<TcpEvent>() + 1]).is_none());
        let mut raw = [0u8; size_of::<TcpEvent>()];
        raw[0] = 7; // ts_ns little-endian
        assert_eq!(tcp_event(&raw).unwrap().ts_ns, 7);
    }

    /// A data ring record: `ev`'s header with `captured` set, then `payload`.
    fn record(ev: &DataEvent, payload: &[u8]) -> Vec<u8> {
        let mut ev = *ev;
        ev.captured = payload.len() as u16;
        // SAFETY: DataEvent is repr(C) plain data; the header is its first DATA_HEADER_LEN bytes.
        let header = unsafe {
            std::slice::from_raw_parts(std::ptr::from_ref(&ev).cast::<u8>(), DATA_HEADER_LEN)
        };
        [header, payload].concat()
    }

    #[test]
    fn data_batch_keeps_header_and_captured_bytes_and_skips_malformed_records() {
        let mut batch = DataBatch::with_capacity(1);
        let mut ev = DataEvent::zeroed();
        ev.ts_exit_ns = 11;
        ev.skaddr = 0xffff_0000_1234;
        ev.len = 4000;
        ev.pid = 42;
        assert!(
            batch
                .push_record(&record(&ev, b"GET /long/path HTTP/1.1\r\n"))
                .is_some()
        );
        ev.ts_exit_ns = 12;
        let mut short = record(&ev, b"HTTP/1.1 200 OK\r\n");
        assert!(
            batch.push_record(&short[..short.len() - 1]).is_none(),
            "captured says one more"
        );
        assert!(
            batch.push_record(&short[..DATA_HEADER_LEN - 1]).is_none(),
            "no whole header"
        );
        short.push(b'x');
        assert!(
            batch.push_record(&short).is_none(),
            "one byte more than captured"
        );
        ev.tail = 3;
        assert!(
            batch.push_record(&record(&ev, b"ab")).is_none(),
            "a tail longer than the bytes captured"
        );
        ev.tail = 0;
        let events = batch.events();
        assert_eq!(events.len(), 1, "malformed records are not kept");
        assert_eq!(
            (
                events[0].ts_exit_ns,
                events[0].skaddr,
                events[0].len,
                events[0].pid
            ),
            (11, 0xffff_0000_1234, 4000, 42)
        );
        assert_eq!(
            &events[0].payload[..usize::from(events[0].captured)],
            b"GET /long/path HTTP/1.1\r\n"
        );

        // The next round reuses the slot: a shorter record replaces the header and its bytes.
        batch.clear();
        assert!(batch.events().is_empty());
        ev.ts_exit_ns = 13;
        batch.push_record(&record(&ev, b"OK")).unwrap();
        ev.ts_exit_ns = 14;
        batch.push_record(&record(&ev, b"")).unwrap();
        let events = batch.events();
        assert_eq!(events.len(), 2);
        assert_eq!((events[0].ts_exit_ns, events[0].captured), (13, 2));
        assert_eq!(&events[0].payload[..2], b"OK");
        assert_eq!((events[1].ts_exit_ns, events[1].captured), (14, 0));

        // Events after a horizon stay for the next round, first and in their order; the
        // next records follow them.
        for ts in [20, 12, 21] {
            ev.ts_exit_ns = ts;
            batch.push_record(&record(&ev, b"x")).unwrap();
        }
        batch.keep_after(14);
        let kept: Vec<u64> = batch.events().iter().map(|e| e.ts_exit_ns).collect();
        assert_eq!(kept, [20, 21]);
        ev.ts_exit_ns = 22;
        batch.push_record(&record(&ev, b"OK")).unwrap();
        let all: Vec<u64> = batch.events().iter().map(|e| e.ts_exit_ns).collect();
        assert_eq!(all, [20, 21, 22]);
        assert_eq!(&batch.events()[2].payload[..2], b"OK");
        batch.keep_after(u64::MAX);
        assert!(batch.events().is_empty());
    }
}
