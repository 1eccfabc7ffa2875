//! Search-list expansions: which NXDOMAIN answers were only a resolver walking its search list.
//!
//! A resolver with `search a.svc.cluster.local svc.cluster.local` and `ndots:5` (Kubernetes
//! ClusterFirst) looks up `api.example.com` as `api.example.com.a.svc.cluster.local`
//! (NXDOMAIN), `api.example.com.svc.cluster.local` (NXDOMAIN), ..., then `api.example.com`.
//! Those NXDOMAINs are not errors. An NXDOMAIN row is therefore held back for a short window:
//! if the same process (pid and address) then resolves a name that the NXDOMAIN's name extends
//! (`<name>.<suffix>`, same query type), the NXDOMAIN is marked `search_expansion` and the
//! answer that resolved counts them in `search_misses`. Held rows are released when marked or
//! when the window passes; the number held is bounded, and a full buffer releases its oldest
//! row unmarked (nothing is lost).

use std::collections::VecDeque;

use crate::records::DnsRecord;

/// Holds NXDOMAIN rows until they are known to be search-list expansions or not.
#[derive(Debug)]
pub struct DnsSearch {
    window_ns: i64,
    max_held: usize,
    held: VecDeque<DnsRecord>,
}

/// Whether `expanded` is `name` followed by a search suffix (`name.` + something).
fn extends(expanded: &str, name: &str) -> bool {
    let name = name.trim_end_matches('.');
    expanded.len() > name.len() + 1
        && expanded.as_bytes()[name.len()] == b'.'
        && expanded[..name.len()].eq_ignore_ascii_case(name)
}

impl DnsSearch {
    /// Holds NXDOMAINs for `window_ns` (0 disables holding), at most `max_held` at once.
    pub fn new(window_ns: i64, max_held: usize) -> Self {
        Self {
            window_ns,
            max_held,
            held: VecDeque::new(),
        }
    }

    /// Rows held now.
    pub fn held(&self) -> usize {
        self.held.len()
    }

    /// Takes one `dns` row; passes every row that is decided to `out`.
    pub fn on_record(&mut self, mut record: DnsRecord, out: &mut impl FnMut(DnsRecord)) {
        if self.window_ns <= 0 {
            return out(record);
        }
        if record.rcode == "NXDOMAIN" {
            if self.held.len() >= self.max_held
                && let Some(oldest) = self.held.pop_front()
            {
                out(oldest);
            }
            self.held.push_back(record);
            return;
        }
        if record.rcode == "NOERROR" {
            let mut misses = 0;
            let mut i = 0;
            while i < self.held.len() {
                let h = &self.held[i];
                let same_client =
                    h.owner.pid == record.owner.pid && h.client_ip == record.client_ip;
                if same_client
                    && h.qtype == record.qtype
                    && h.ts_ns <= record.ts_ns
                    && extends(&h.domain, &record.domain)
                {
                    let mut h = self.held.remove(i).expect("index in range");
                    h.search_expansion = true;
                    misses += 1;
                    out(h);
                } else {
                    i += 1;
                }
            }
            record.search_misses = misses;
        }
        out(record);
    }

    /// Releases rows held since before `now_ns - window`, or all of them with `all`.
    pub fn expire(&mut self, now_ns: i64, all: bool, out: &mut impl FnMut(DnsRecord)) {
        let cutoff = now_ns - self.window_ns;
        while let Some(front) = self.held.front() {
            if !all && front.ts_ns > cutoff {
                break;
            }
            out(self.held.pop_front().expect("front exists"));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;
    use crate::records::Owner;

    fn row(ts: i64, pid: u32, domain: &str, qtype: &str, rcode: &str) -> DnsRecord {
        DnsRecord {
            ts_ns: ts,
            domain: domain.into(),
            qtype: qtype.into(),
            rcode: rcode.into(),
            latency_ns: Some(1000),
            answers: String::new(),
            server_ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 53)),
            transport: "udp",
            owner: Owner {
                pid,
                tid: pid,
                comm: "app".into(),
                cgroup_id: 0,
            },
            client_ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 7)),
            search_expansion: false,
            search_misses: 0,
        }
    }

    fn run(search: &mut DnsSearch, rows: Vec<DnsRecord>) -> Vec<DnsRecord> {
        let mut out = Vec::new();
        for r in rows {
            search.on_record(r, &mut |r| out.push(r));
        }
        out
    }

    fn summary(rows: &[DnsRecord]) -> Vec<(String, String, bool, u32)> {
        rows.iter()
            .map(|r| {
                (
                    r.domain.clone(),
                    r.rcode.clone(),
                    r.search_expansion,
                    r.search_misses,
                )
            })
            .collect()
    }

    #[test]
    fn cluster_first_expansions_before_an_answer_are_marked() {
        let mut s = DnsSearch::new(2_000_000_000, 100);
        let out = run(
            &mut s,
            vec![
                row(
                    1,
                    7,
                    "api.example.com.ns1.svc.cluster.local",
                    "A",
                    "NXDOMAIN",
                ),
                row(2, 7, "api.example.com.svc.cluster.local", "A", "NXDOMAIN"),
                // Another process's NXDOMAIN and another type's stay held.
                row(3, 8, "api.example.com.cluster.local", "A", "NXDOMAIN"),
                row(3, 7, "api.example.com.cluster.local", "AAAA", "NXDOMAIN"),
                row(4, 7, "API.example.com", "A", "NOERROR"),
            ],
        );
        assert_eq!(
            summary(&out),
            vec![
                (
                    "api.example.com.ns1.svc.cluster.local".into(),
                    "NXDOMAIN".into(),
                    true,
                    0
                ),
                (
                    "api.example.com.svc.cluster.local".into(),
                    "NXDOMAIN".into(),
                    true,
                    0
                ),
                ("API.example.com".into(), "NOERROR".into(), false, 2),
            ]
        );
        assert_eq!(s.held(), 2);
        let mut rest = Vec::new();
        s.expire(3 + 2_000_000_000, false, &mut |r| rest.push(r));
        assert_eq!(rest.len(), 2);
        assert!(rest.iter().all(|r| !r.search_expansion));
    }

    #[test]
    fn a_name_that_never_resolves_keeps_its_errors() {
        let mut s = DnsSearch::new(1000, 100);
        let mut out = run(
            &mut s,
            vec![
                row(10, 7, "nothere.test.ns1.svc.cluster.local", "A", "NXDOMAIN"),
                row(11, 7, "nothere.test", "A", "NXDOMAIN"),
                // A longer name that merely shares a prefix is no expansion of it.
                row(12, 7, "nothere.testing", "A", "NOERROR"),
            ],
        );
        assert_eq!(
            summary(&out),
            vec![("nothere.testing".into(), "NOERROR".into(), false, 0)]
        );
        s.expire(1010, false, &mut |r| out.push(r));
        assert_eq!(out.len(), 2, "only the row held since ts 10 is due at 1010");
        s.expire(0, true, &mut |r| out.push(r));
        assert_eq!(out.len(), 3);
        assert!(out.iter().all(|r| !r.search_expansion));
    }

    #[test]
    fn full_buffer_releases_the_oldest_and_zero_window_holds_nothing() {
        let mut s = DnsSearch::new(1000, 2);
        let out = run(
            &mut s,
            (0..5)
                .map(|i| row(i, 7, &format!("n{i}.x"), "A", "NXDOMAIN"))
                .collect(),
        );
        assert_eq!(out.len(), 3);
        assert_eq!(s.held(), 2);
        let mut off = DnsSearch::new(0, 2);
        let out = run(&mut off, vec![row(1, 7, "a.b.c", "A", "NXDOMAIN")]);
        assert_eq!(out.len(), 1);
    }
}
