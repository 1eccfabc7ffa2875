//! Kindling's per-node agent, read as a pipeline:
//!
//! - [`capture`]: eBPF programs on TCP tracepoints, loaded and attached with aya; events come
//!   up through one ring buffer ([`capture::btf`] finds the kernel struct offsets they need).
//! - [`conntrack`]: joins the kernel's events into connections and emits rows ([`records`]).
//! - [`sockdiag`]: byte counters of live sockets, for periodic rows of long-lived connections.
//! - [`sessions`]: socket payloads into L7 calls (`calls`, `dns`), with `kindling_protocols`.
//! - [`k8s`]: the rows' ends named by pod, workload and Service, from the API server.
//! - [`pipeline`]: the capture thread that moves events through the tracker into the store.
//! - [`store`]: time-partitioned Arrow chunks under a memory budget.
//! - [`query`]: DataFusion over the store, read-only and bounded.
//! - [`serve`]: the Arrow Flight endpoint coordinators query.
//! - [`replay`]: a `kindling dump` directory served instead of capture (`--replay`).
//! - [`spill`]: the store written on shutdown and reloaded on start (`--spill-dir`).
#![deny(missing_docs)]

pub mod capture;
pub mod cgroups;
pub mod conntrack;
pub mod dns_search;
pub mod k8s;
pub mod pipeline;
pub mod query;
pub mod records;
pub mod replay;
pub mod serve;
pub mod sessions;
pub mod sockdiag;
pub mod spill;
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
