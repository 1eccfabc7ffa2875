//! The data ring's reader: the kernel's BPF ring buffer read through its mapped pages, a whole
//! round of records at a time.
//!
//! The layout is the kernel's (`kernel/bpf/ringbuf.c`): a page holding the consumer position,
//! which the reader writes; a page holding the producer position; then the data pages, mapped
//! twice in a row so that a record that wraps around the end is still contiguous. Each record
//! is an 8-byte header (its length, with a busy bit while the producer writes it and a discard
//! bit) and its bytes, padded to 8.
//!
//! Written here instead of reading through aya's `RingBuf` for one measured reason: aya
//! publishes the consumer position after every record, and every program that reserves space
//! in the ring (or asks how full it is) reads that cache line, so each record the agent took
//! cost the next producer, running inside an application's syscall on the other CPU, a cache
//! miss. [`DataRing::drain`] reads a round's records in place and publishes the position once,
//! when the round has copied them all out.

use std::{
    os::fd::{AsFd, AsRawFd},
    ptr::NonNull,
    sync::atomic::{AtomicU32, AtomicUsize, Ordering},
};

use aya::maps::{Map, MapData};

/// Set in a record's header while its producer is still writing it.
const BUSY_BIT: u32 = 1 << 31;
/// Set in a record's header when its producer discarded it.
const DISCARD_BIT: u32 = 1 << 30;
/// A record's header: its length and flags, then the kernel's page offset.
const HEADER_LEN: usize = 8;

/// A shared mapping of the ring's pages, unmapped on drop.
#[derive(Debug)]
struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

impl Mapping {
    fn new(map: &MapData, len: usize, writable: bool, offset: usize) -> std::io::Result<Self> {
        let prot = if writable {
            libc::PROT_READ | libc::PROT_WRITE
        } else {
            libc::PROT_READ
        };
        // SAFETY: a new shared mapping of the map's fd; the kernel checks length, offset and
        // protection (the data pages can only be mapped read-only).
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                libc::MAP_SHARED,
                map.fd().as_fd().as_raw_fd(),
                offset as libc::off_t,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Self {
            ptr: NonNull::new(ptr.cast()).ok_or_else(std::io::Error::last_os_error)?,
            len,
        })
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, unmapped once.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

// SAFETY: the mapping is plain shared memory; access to it goes through atomics or through
// `&mut DataRing`.
unsafe impl Send for Mapping {}

/// The reader of one BPF ring buffer map.
#[derive(Debug)]
pub(crate) struct DataRing {
    /// Keeps the map (and its fd, which `poll` waits on) alive.
    map: MapData,
    /// The page with the consumer position.
    consumer: Mapping,
    /// The producer position's page, then the data pages twice.
    producer: Mapping,
    /// The data size minus one (a power of two).
    mask: usize,
    /// The consumer position as read so far (published by [`DataRing::drain`]).
    pos: usize,
}

impl DataRing {
    /// Maps the pages of `map`, a `BPF_MAP_TYPE_RINGBUF`.
    pub(crate) fn new(map: Map) -> std::io::Result<Self> {
        let Map::RingBuf(map) = map else {
            return Err(std::io::Error::other("not a ring buffer map"));
        };
        let size = map.info().map_err(std::io::Error::other)?.max_entries() as usize;
        // SAFETY: plain libc call.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        if !size.is_power_of_two() || !size.is_multiple_of(page) {
            return Err(std::io::Error::other(format!(
                "ring buffer size {size} is not a power-of-two multiple of the page size"
            )));
        }
        let consumer = Mapping::new(&map, page, true, 0)?;
        let producer = Mapping::new(&map, page + 2 * size, false, page)?;
        let mut ring = Self {
            map,
            consumer,
            producer,
            mask: size - 1,
            pos: 0,
        };
        ring.pos = ring.consumer_pos().load(Ordering::Acquire);
        Ok(ring)
    }

    fn consumer_pos(&self) -> &AtomicUsize {
        // SAFETY: the consumer page starts with the kernel's `unsigned long consumer_pos`,
        // aligned, shared with the kernel only through atomic accesses.
        unsafe { self.consumer.ptr.cast::<AtomicUsize>().as_ref() }
    }

    fn producer_pos(&self) -> &AtomicUsize {
        // SAFETY: as above, for the producer page's `producer_pos`.
        unsafe { self.producer.ptr.cast::<AtomicUsize>().as_ref() }
    }

    /// Hands the bytes of at most `max` committed records, in ring order, to `on_record`
    /// (records still being written end the round: they come with the next one), then frees
    /// their space in the ring at once; returns the records handed.
    pub(crate) fn drain(&mut self, max: usize, mut on_record: impl FnMut(&[u8])) -> usize {
        let page = self.producer.len - 2 * (self.mask + 1);
        let producer = self.producer_pos().load(Ordering::Acquire);
        let start = self.pos;
        let mut handed = 0;
        while self.pos != producer && handed < max {
            let offset = self.pos & self.mask;
            // SAFETY: `offset` is inside the first copy of the data pages and the header is
            // 8-aligned; the kernel commits a record by clearing its busy bit with a fully
            // ordered exchange, paired with this Acquire load.
            let header = unsafe {
                self.producer
                    .ptr
                    .add(page + offset)
                    .cast::<AtomicU32>()
                    .as_ref()
                    .load(Ordering::Acquire)
            };
            if header & BUSY_BIT != 0 {
                break;
            }
            let len = (header & !(BUSY_BIT | DISCARD_BIT)) as usize;
            if len > self.mask + 1 - HEADER_LEN {
                // Not a record the kernel could have written: stop rather than read past it.
                tracing::error!(
                    len,
                    "Data ring record longer than the ring; ring left as is"
                );
                break;
            }
            if header & DISCARD_BIT == 0 {
                // SAFETY: the record's bytes follow its header; with the data pages mapped
                // twice they are contiguous even where they wrap, and within the mapping.
                let bytes = unsafe {
                    std::slice::from_raw_parts(
                        self.producer.ptr.add(page + offset + HEADER_LEN).as_ptr(),
                        len,
                    )
                };
                on_record(bytes);
                handed += 1;
            }
            self.pos = self
                .pos
                .wrapping_add((HEADER_LEN + len).next_multiple_of(8));
        }
        if self.pos != start {
            // The kernel pairs this with an Acquire load before it reuses the space.
            self.consumer_pos().store(self.pos, Ordering::Release);
        }
        handed
    }
}

impl AsFd for DataRing {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.map.fd().as_fd()
    }
}
