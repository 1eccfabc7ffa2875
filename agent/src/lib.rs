//! Kindling's per-node agent, read in data-flow order:
//!
//! - `capture` (feature `capture`, on by default): the eBPF programs of `agent-ebpf`, loaded
//!   and attached with aya; their events come up through two ring buffers, TCP lifecycle and
//!   socket data (`capture::btf` finds the kernel struct offsets the programs need).
//! - [`decode`]: ring-buffer records into events, and the kernel's raw values in them
//!   (addresses, task names, TCP states, timestamps, reason codes) into what rows hold.
//! - [`conntrack`]: joins TCP events into connections: `tcp_events` and `flows` rows;
//!   [`sockdiag`] adds byte counters and RTT of live sockets for periodic rows.
//! - [`sessions`]: socket payloads into L7 calls (`calls`, `dns`), with `kindling_protocols`;
//!   [`dns_search`] recognizes NXDOMAINs of search-list expansions.
//! - [`enrich`]: who the rows' ends are: the local cgroup ([`cgroups`]) and pod, workload and
//!   Service from the API server ([`k8s`]).
//! - [`records`]: the rows and their vocabulary; [`records::builders`] turns them into Arrow
//!   batches, [`records::pending`] holds them until a flush.
//! - [`round`]: one capture round over the tracker, the sessionizer and the pending rows;
//!   `pipeline` (feature `capture`) runs rounds on the capture thread with its timers; [`counters`] counts what
//!   came in and what was dropped, by cause.
//! - [`store`]: time-partitioned Arrow chunks under a memory budget, and the index of their
//!   history files; [`history`] writes sealed chunks to Parquet files under a disk budget
//!   (`--history-dir`); [`replay`] serves a `kindling dump` directory instead of capture
//!   (`--replay`).
//! - [`query`]: DataFusion over the store, read-only and bounded; [`serve`]: the Arrow Flight
//!   endpoint coordinators query.
#![deny(missing_docs)]

#[cfg(feature = "capture")]
pub mod capture;
pub mod cgroups;
pub mod conntrack;
pub mod counters;
pub mod decode;
pub mod dns_search;
pub mod enrich;
pub mod history;
pub mod k8s;
#[cfg(feature = "capture")]
pub mod pipeline;
pub mod query;
pub mod records;
pub mod replay;
pub mod round;
pub mod serve;
pub mod sessions;
pub mod sockdiag;
pub mod store;

/// Parses a byte size such as `256MiB`, `1GiB`, `64KiB` or `1048576`.
pub fn parse_bytes(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{text}` is not a size (examples: 256MiB, 1GiB, 65536)"))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" | "K" | "k" => 1 << 10,
        "MiB" | "M" => 1 << 20,
        "GiB" | "G" => 1 << 30,
        other => {
            return Err(format!(
                "unknown size unit `{other}` in `{text}` (use KiB, MiB, GiB)"
            ));
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("`{text}` is too large"))
}

#[cfg(test)]
mod tests {
    use super::parse_bytes;

    #[test]
    fn byte_sizes() {
        assert_eq!(parse_bytes("256MiB"), Ok(256 << 20));
        assert_eq!(parse_bytes("1GiB"), Ok(1 << 30));
        assert_eq!(parse_bytes("65536"), Ok(65536));
        assert_eq!(parse_bytes("64 KiB"), Ok(64 << 10));
        assert!(parse_bytes("lots").unwrap_err().contains("not a size"));
        assert!(
            parse_bytes("3TB")
                .unwrap_err()
                .contains("unknown size unit `TB`")
        );
        assert!(parse_bytes("99999999999999999999GiB").is_err());
    }
}
