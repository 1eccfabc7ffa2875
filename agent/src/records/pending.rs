//! Rows waiting for the store: what the trackers emit during capture rounds, named
//! ([`crate::enrich`]) and appended to each table's builder, until a flush moves them into
//! the [`Store`]. NXDOMAIN rows are held back a little first, to be recognized as search-list
//! expansions ([`crate::dns_search`]).

use std::time::Duration;

use datafusion::arrow::record_batch::RecordBatch;
use kindling_wire::schema;

use super::{
    CallRecord, DnsRecord, Ends, FlowRecord, TcpEventRecord,
    builders::{CallsBuilder, DnsBuilder, FlowsBuilder, TcpEventsBuilder},
};
use crate::{
    conntrack::RecordSink, dns_search::DnsSearch, enrich::Enricher, sessions::CallSink,
    store::Store,
};

/// Most NXDOMAIN rows held back at once by [`DnsSearch`].
const DNS_HELD_MAX: usize = 4096;

/// The rows of every captured table not flushed yet; the trackers' sink.
#[derive(Debug)]
pub struct PendingRows {
    tcp_events: TcpEventsBuilder,
    flows: FlowsBuilder,
    calls: CallsBuilder,
    dns: DnsBuilder,
    dns_search: DnsSearch,
    enricher: Enricher,
    node: String,
}

impl PendingRows {
    /// Empty builders for `node`; `dns` rows are stored as they come.
    pub fn new(node: &str) -> Self {
        Self::with_dns_search(node, Duration::ZERO)
    }

    /// Empty builders for `node`; NXDOMAIN rows wait up to `window` to be recognized as
    /// search-list expansions (see [`crate::dns_search`]).
    pub fn with_dns_search(node: &str, window: Duration) -> Self {
        Self {
            tcp_events: TcpEventsBuilder::new(node),
            flows: FlowsBuilder::new(node),
            calls: CallsBuilder::new(node),
            dns: DnsBuilder::new(node),
            dns_search: DnsSearch::new(window.as_nanos() as i64, DNS_HELD_MAX),
            enricher: Enricher::default(),
            node: node.to_owned(),
        }
    }

    /// Names every row's ends with `enricher`.
    pub fn with_enricher(mut self, enricher: Enricher) -> Self {
        self.enricher = enricher;
        self
    }

    /// Releases NXDOMAIN rows held since before `now_ns` minus the window (all with `all`).
    pub fn expire_dns(&mut self, now_ns: i64, all: bool) {
        let (dns, enricher) = (&mut self.dns, &self.enricher);
        self.dns_search
            .expire(now_ns, all, &mut |r| append_dns(dns, enricher, &r));
    }

    /// Rows waiting.
    pub fn len(&self) -> usize {
        self.tcp_events.len() + self.flows.len() + self.calls.len() + self.dns.len()
    }

    /// Whether no row is waiting (NXDOMAIN rows held back are not waiting yet).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `open_calls` rows (the `calls` schema), named like every row; None for no row.
    pub fn open_calls(&self, records: &[CallRecord]) -> Option<RecordBatch> {
        if records.is_empty() {
            return None;
        }
        let mut builder = CallsBuilder::new(&self.node);
        for r in records {
            let ends = self.enricher.of(&r.owner, r.role, &r.endpoints, r.ts_ns);
            builder.append_with(r, ends.as_ref().unwrap_or(Ends::none()));
        }
        match builder.finish() {
            Ok(batch) => Some(batch),
            Err(e) => {
                tracing::error!(error = %e, "Cannot build the open_calls rows");
                None
            }
        }
    }

    /// Moves every waiting row into the store; returns rows the store refused.
    pub fn flush(&mut self, store: &Store) -> u64 {
        let mut lost = 0;
        let batches = [
            (
                schema::TCP_EVENTS,
                self.tcp_events.len(),
                self.tcp_events.finish(),
            ),
            (schema::FLOWS, self.flows.len(), self.flows.finish()),
            (schema::CALLS, self.calls.len(), self.calls.finish()),
            (schema::DNS, self.dns.len(), self.dns.finish()),
        ];
        for (table, rows, batch) in batches {
            if rows == 0 {
                continue;
            }
            let result = batch
                .map_err(crate::store::Error::from)
                .and_then(|b| store.append(table, b));
            if let Err(e) = result {
                tracing::error!(table, rows, error = %e, "Rows lost: the store refused a batch");
                lost += rows as u64;
            }
        }
        lost
    }
}

/// Appends a `dns` row named by `enricher`.
fn append_dns(dns: &mut DnsBuilder, enricher: &Enricher, r: &DnsRecord) {
    dns.append_with(r, enricher.dns(r).as_ref().unwrap_or(Ends::none()));
}

impl CallSink for PendingRows {
    fn call(&mut self, r: CallRecord) {
        let ends = self.enricher.of(&r.owner, r.role, &r.endpoints, r.ts_ns);
        self.calls
            .append_with(&r, ends.as_ref().unwrap_or(Ends::none()));
    }

    fn dns(&mut self, record: DnsRecord) {
        let (dns, enricher) = (&mut self.dns, &self.enricher);
        self.dns_search
            .on_record(record, &mut |r| append_dns(dns, enricher, &r));
    }
}

impl RecordSink for PendingRows {
    fn tcp_event(&mut self, r: TcpEventRecord) {
        let ends = self.enricher.of(&r.owner, r.role, &r.endpoints, r.ts_ns);
        self.tcp_events
            .append_with(&r, ends.as_ref().unwrap_or(Ends::none()));
    }

    fn flow(&mut self, r: FlowRecord) {
        // A connection's ends at its start: a pod deleted since keeps its row.
        let ends = self
            .enricher
            .of(&r.owner, r.role, &r.endpoints, r.start_ts_ns);
        self.flows
            .append_with(&r, ends.as_ref().unwrap_or(Ends::none()));
    }
}
