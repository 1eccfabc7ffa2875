//! Row builders: typed rows in, Arrow batches of exactly the schemas of
//! `kindling_wire::schema` out.
//!
//! Each table's builder is declared once by [`row_builder!`]: one line per column, its name and
//! the value a row gives it. The batch takes its column order from the wire schema, by name
//! ([`assemble`]), so the two cannot drift apart: a column the builder lacks, one it has too
//! many, or one of the wrong type or nullability is an error at the first flush, and each
//! table's test below builds a batch and compares it with the schema.

use std::net::IpAddr;

use datafusion::arrow::{
    array::{
        ArrayBuilder, ArrayRef, BooleanBuilder, Int32Builder, StringBuilder,
        TimestampNanosecondBuilder, UInt16Builder, UInt32Builder, UInt64Builder,
    },
    datatypes::SchemaRef,
    error::ArrowError,
    record_batch::RecordBatch,
};
use kindling_wire::schema;

use super::{CallRecord, DnsRecord, Endpoints, Ends, FlowRecord, TcpEventRecord};

/// A column builder as the tables need it (timestamps in UTC, as the schemas say).
trait Column: ArrayBuilder + Sized {
    fn create() -> Self;
}

impl Column for StringBuilder {
    fn create() -> Self {
        Self::new()
    }
}

impl Column for BooleanBuilder {
    fn create() -> Self {
        Self::new()
    }
}

impl Column for TimestampNanosecondBuilder {
    fn create() -> Self {
        Self::new().with_timezone("UTC")
    }
}

/// Appends one value of type `T` to a column.
trait Push<T> {
    fn push(&mut self, value: T);
}

impl Push<&str> for StringBuilder {
    fn push(&mut self, value: &str) {
        self.append_value(value);
    }
}

impl Push<String> for StringBuilder {
    fn push(&mut self, value: String) {
        self.append_value(value);
    }
}

impl Push<Option<&str>> for StringBuilder {
    fn push(&mut self, value: Option<&str>) {
        self.append_option(value);
    }
}

impl Push<bool> for BooleanBuilder {
    fn push(&mut self, value: bool) {
        self.append_value(value);
    }
}

/// [`Column`] and [`Push`] (of the native value and of an optional one) for primitive builders.
macro_rules! primitive_columns {
    ($($builder:ty: $native:ty),* $(,)?) => {$(
        impl Column for $builder {
            fn create() -> Self {
                Self::new()
            }
        }

        impl Push<$native> for $builder {
            fn push(&mut self, value: $native) {
                self.append_value(value);
            }
        }

        impl Push<Option<$native>> for $builder {
            fn push(&mut self, value: Option<$native>) {
                self.append_option(value);
            }
        }
    )*};
}

primitive_columns!(UInt16Builder: u16, UInt32Builder: u32, UInt64Builder: u64, Int32Builder: i32);

impl Push<i64> for TimestampNanosecondBuilder {
    fn push(&mut self, value: i64) {
        self.append_value(value);
    }
}

/// Columns that several tables share, appended from one value and finished by name.
trait ColumnGroup<T>: Default {
    fn append(&mut self, value: T);
    fn finish(&mut self, out: &mut Vec<(&'static str, ArrayRef)>);
}

/// `src_ip`, `src_port`, `dst_ip`, `dst_port`.
#[derive(Debug, Default)]
struct EndpointColumns {
    src_ip: StringBuilder,
    src_port: UInt16Builder,
    dst_ip: StringBuilder,
    dst_port: UInt16Builder,
}

/// Appends `ip` as text. An IPv4 address is written by hand into a stack buffer: through
/// `to_string()` the `fmt` machinery and an allocation per address were about 6% of the
/// capture thread at saturation (two addresses per row). IPv6 goes through `Display`.
fn append_ip(builder: &mut StringBuilder, ip: &IpAddr) {
    match ip {
        IpAddr::V4(v4) => {
            let mut buf = [0u8; 15];
            let n = ipv4_text(v4.octets(), &mut buf);
            builder.append_value(std::str::from_utf8(&buf[..n]).expect("digits and dots"));
        }
        IpAddr::V6(_) => builder.append_value(ip.to_string()),
    }
}

/// Writes `octets` in dotted decimal (as `Ipv4Addr`'s `Display` does) into `buf`; returns the
/// length.
fn ipv4_text(octets: [u8; 4], buf: &mut [u8; 15]) -> usize {
    let mut n = 0;
    for (i, o) in octets.into_iter().enumerate() {
        if i > 0 {
            buf[n] = b'.';
            n += 1;
        }
        if o >= 100 {
            buf[n] = b'0' + o / 100;
            n += 1;
        }
        if o >= 10 {
            buf[n] = b'0' + o / 10 % 10;
            n += 1;
        }
        buf[n] = b'0' + o % 10;
        n += 1;
    }
    n
}

impl ColumnGroup<&Endpoints> for EndpointColumns {
    fn append(&mut self, e: &Endpoints) {
        append_ip(&mut self.src_ip, &e.src_ip);
        self.src_port.append_value(e.src_port);
        append_ip(&mut self.dst_ip, &e.dst_ip);
        self.dst_port.append_value(e.dst_port);
    }

    fn finish(&mut self, out: &mut Vec<(&'static str, ArrayRef)>) {
        out.extend([
            ("src_ip", ArrayBuilder::finish(&mut self.src_ip)),
            ("src_port", ArrayBuilder::finish(&mut self.src_port)),
            ("dst_ip", ArrayBuilder::finish(&mut self.dst_ip)),
            ("dst_port", ArrayBuilder::finish(&mut self.dst_port)),
        ]);
    }
}

/// `cgroup` and [`schema::KUBERNETES_COLUMNS`], in that order.
#[derive(Debug, Default)]
struct IdentityColumns {
    columns: [StringBuilder; 1 + schema::KUBERNETES_COLUMNS.len()],
}

impl ColumnGroup<&Ends> for IdentityColumns {
    fn append(&mut self, e: &Ends) {
        let values = [
            &e.cgroup,
            &e.src.pod,
            &e.src.namespace,
            &e.src.workload,
            &e.src.workload_kind,
            &e.src.service,
            &e.dst.pod,
            &e.dst.namespace,
            &e.dst.workload,
            &e.dst.workload_kind,
            &e.dst.service,
        ];
        for (b, v) in self.columns.iter_mut().zip(values) {
            b.append_value(&**v);
        }
    }

    fn finish(&mut self, out: &mut Vec<(&'static str, ArrayRef)>) {
        let names = std::iter::once("cgroup").chain(schema::KUBERNETES_COLUMNS);
        out.extend(names.zip(self.columns.iter_mut().map(ArrayBuilder::finish)));
    }
}

/// The batch of `schema` from named columns: each of the schema's fields, in its order, takes
/// the column of its name; a missing or left-over column is an error, and so is a column whose
/// type or nullability differs from its field's ([`RecordBatch::try_new`]).
fn assemble(
    schema: SchemaRef,
    mut named: Vec<(&'static str, ArrayRef)>,
) -> Result<RecordBatch, ArrowError> {
    let mut columns = Vec::with_capacity(schema.fields().len());
    for field in schema.fields() {
        let at = named
            .iter()
            .position(|(name, _)| name == field.name())
            .ok_or_else(|| {
                ArrowError::SchemaError(format!("the row builder has no column `{}`", field.name()))
            })?;
        columns.push(named.swap_remove(at).1);
    }
    if let Some((name, _)) = named.first() {
        return Err(ArrowError::SchemaError(format!(
            "the row builder's column `{name}` is not in the schema"
        )));
    }
    RecordBatch::try_new(schema, columns)
}

/// Declares the builder of one table.
///
/// ```text
/// row_builder! {
///     /// doc
///     Name(RecordType) => schema_fn, |row, ends, node| {
///         column: BuilderType = value,         (one per column, named as in the schema)
///         ...
///     } groups {
///         field: GroupType = value,            (shared columns: endpoints, identity)
///     }
/// }
/// ```
///
/// `row` is the record, `ends` its [`Ends`], `node` the node name.
macro_rules! row_builder {
    (
        $(#[$meta:meta])*
        $name:ident($record:ty) => $schema:path, |$r:ident, $ends:ident, $node:ident| {
            $($col:ident: $kind:ty = $value:expr,)*
        } groups {
            $($group:ident: $gkind:ty = $gvalue:expr,)*
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug)]
        pub struct $name {
            node_name: String,
            rows: usize,
            $($col: $kind,)*
            $($group: $gkind,)*
        }

        impl $name {
            /// An empty builder; `node` fills the `node` column.
            pub fn new(node: &str) -> Self {
                Self {
                    node_name: node.to_owned(),
                    rows: 0,
                    $($col: Column::create(),)*
                    $($group: Default::default(),)*
                }
            }

            /// Rows appended since the last finish.
            pub fn len(&self) -> usize {
                self.rows
            }

            /// Whether no row is waiting.
            pub fn is_empty(&self) -> bool {
                self.rows == 0
            }

            /// Appends one row without identities of its ends.
            pub fn append(&mut self, r: &$record) {
                self.append_with(r, Ends::none());
            }

            /// Appends one row with the identities of its ends.
            pub fn append_with(&mut self, $r: &$record, $ends: &Ends) {
                let $node = self.node_name.as_str();
                $(Push::push(&mut self.$col, $value);)*
                $(ColumnGroup::append(&mut self.$group, $gvalue);)*
                self.rows += 1;
            }

            /// The rows so far as a batch; the builder starts empty again.
            pub fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
                self.rows = 0;
                let mut named: Vec<(&'static str, ArrayRef)> =
                    vec![$((stringify!($col), ArrayBuilder::finish(&mut self.$col)),)*];
                $(ColumnGroup::finish(&mut self.$group, &mut named);)*
                assemble($schema(), named)
            }
        }
    };
}

row_builder! {
    /// Builds `tcp_events` batches.
    TcpEventsBuilder(TcpEventRecord) => schema::tcp_events, |r, ends, node| {
        ts: TimestampNanosecondBuilder = r.ts_ns,
        event: StringBuilder = r.event.as_str(),
        conn_id: UInt64Builder = r.conn_id,
        role: StringBuilder = r.role.as_str(),
        pid: UInt32Builder = r.owner.pid,
        tid: UInt32Builder = r.owner.tid,
        comm: StringBuilder = &*r.owner.comm,
        old_state: StringBuilder = r.old_state,
        new_state: StringBuilder = r.new_state,
        syscall_ret: Int32Builder = r.syscall_ret,
        node: StringBuilder = node,
        reason: StringBuilder = r.reason.as_deref(),
        srtt_us: UInt32Builder = r.srtt_us,
        transport: StringBuilder = r.transport,
    } groups {
        endpoints: EndpointColumns = &r.endpoints,
        identity: IdentityColumns = ends,
    }
}

row_builder! {
    /// Builds `flows` batches.
    FlowsBuilder(FlowRecord) => schema::flows, |r, ends, node| {
        start_ts: TimestampNanosecondBuilder = r.start_ts_ns,
        end_ts: TimestampNanosecondBuilder = r.end_ts_ns,
        duration_ns: UInt64Builder = r.end_ts_ns.saturating_sub(r.start_ts_ns).max(0) as u64,
        conn_id: UInt64Builder = r.conn_id,
        pid: UInt32Builder = r.owner.pid,
        comm: StringBuilder = &*r.owner.comm,
        role: StringBuilder = r.role.as_str(),
        bytes_sent: UInt64Builder = r.bytes_sent,
        bytes_received: UInt64Builder = r.bytes_received,
        status: StringBuilder = if r.open { "open" } else { "closed" },
        node: StringBuilder = node,
        srtt_us: UInt32Builder = r.health.srtt_us,
        srtt_min_us: UInt32Builder = r.health.srtt_min_us,
        srtt_max_us: UInt32Builder = r.health.srtt_max_us,
        retransmits: UInt32Builder = r.health.retransmits,
        resets: UInt32Builder = r.health.resets,
        connect_latency_ns: UInt64Builder = r.health.connect_latency_ns,
        close_reason: StringBuilder = r.health.close_reason,
        tls_sni: StringBuilder = r.tls.sni.as_deref(),
        tls_version: StringBuilder = r.tls.version,
        tls_handshake_ns: UInt64Builder = r.tls.handshake_ns,
        tls: StringBuilder = r.tls.kind(),
    } groups {
        endpoints: EndpointColumns = &r.endpoints,
        identity: IdentityColumns = ends,
    }
}

row_builder! {
    /// Builds `calls` batches.
    CallsBuilder(CallRecord) => schema::calls, |r, ends, node| {
        ts: TimestampNanosecondBuilder = r.ts_ns,
        protocol: StringBuilder = r.protocol,
        role: StringBuilder = r.role.as_str(),
        method: StringBuilder = &*r.method,
        resource: StringBuilder = r.resource.as_str(),
        status: StringBuilder = &*r.status,
        is_error: BooleanBuilder = r.is_error,
        error_message: StringBuilder = r.error_message.as_deref(),
        duration_ns: UInt64Builder = r.request_sent_ns + r.waiting_ttfb_ns + r.content_download_ns,
        request_sent_ns: UInt64Builder = r.request_sent_ns,
        waiting_ttfb_ns: UInt64Builder = r.waiting_ttfb_ns,
        content_download_ns: UInt64Builder = r.content_download_ns,
        request_bytes: UInt64Builder = r.request_bytes,
        response_bytes: UInt64Builder = r.response_bytes,
        pid: UInt32Builder = r.owner.pid,
        tid: UInt32Builder = r.owner.tid,
        comm: StringBuilder = &*r.owner.comm,
        conn_id: UInt64Builder = r.conn_id,
        node: StringBuilder = node,
        tls: StringBuilder = r.tls,
        trace_id: StringBuilder = r.trace_id.as_deref(),
        request_payload: StringBuilder = r.request_payload.as_deref(),
        response_payload: StringBuilder = r.response_payload.as_deref(),
    } groups {
        endpoints: EndpointColumns = &r.endpoints,
        identity: IdentityColumns = ends,
    }
}

row_builder! {
    /// Builds `dns` batches.
    DnsBuilder(DnsRecord) => schema::dns, |r, ends, node| {
        ts: TimestampNanosecondBuilder = r.ts_ns,
        domain: StringBuilder = r.domain.as_str(),
        qtype: StringBuilder = r.qtype.as_str(),
        rcode: StringBuilder = r.rcode.as_str(),
        latency_ns: UInt64Builder = r.latency_ns,
        answers: StringBuilder = r.answers.as_str(),
        server_ip: StringBuilder = r.server_ip.to_string(),
        transport: StringBuilder = r.transport,
        pid: UInt32Builder = r.owner.pid,
        comm: StringBuilder = &*r.owner.comm,
        node: StringBuilder = node,
        client_ip: StringBuilder = r.client_ip.to_string(),
        search_expansion: BooleanBuilder = r.search_expansion,
        search_misses: UInt32Builder = r.search_misses,
    } groups {
        identity: IdentityColumns = ends,
    }
}

#[cfg(test)]
mod tests {
    use std::{net::Ipv4Addr, sync::Arc};

    use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};

    use super::*;
    use crate::records::{EndMeta, FlowHealth, Owner, Role, TcpEventType, TlsInfo};

    #[test]
    fn ipv4_text_is_what_display_writes() {
        // Every octet value in every position, the others fixed at boundary values.
        for fill in [0u8, 9, 10, 99, 100, 255] {
            for pos in 0..4 {
                for v in 0..=255u8 {
                    let mut octets = [fill; 4];
                    octets[pos] = v;
                    let mut buf = [0u8; 15];
                    let n = ipv4_text(octets, &mut buf);
                    assert_eq!(&buf[..n], Ipv4Addr::from(octets).to_string().as_bytes());
                }
            }
        }
    }

    fn endpoints() -> Endpoints {
        Endpoints {
            src_ip: Ipv4Addr::new(127, 0, 0, 1).into(),
            src_port: 40000,
            dst_ip: "::1".parse().unwrap(),
            dst_port: 8080,
        }
    }

    fn owner() -> Owner {
        Owner {
            pid: 42,
            tid: 43,
            comm: "curl".into(),
            cgroup_id: 0,
        }
    }

    /// Distinct names in every identity column.
    fn identities() -> Ends {
        let end = |p: &str| EndMeta {
            pod: Arc::from(format!("{p}pod")),
            namespace: Arc::from(format!("{p}ns")),
            workload: Arc::from(format!("{p}wl")),
            workload_kind: Arc::from(format!("{p}kind")),
            service: Arc::from(format!("{p}svc")),
        };
        Ends {
            cgroup: Arc::from("/cg"),
            src: end("s"),
            dst: end("d"),
        }
    }

    const IDENTITY: [(&str, &str); 11] = [
        ("cgroup", "/cg"),
        ("src_pod", "spod"),
        ("src_namespace", "sns"),
        ("src_workload", "swl"),
        ("src_workload_kind", "skind"),
        ("src_service", "ssvc"),
        ("dst_pod", "dpod"),
        ("dst_namespace", "dns"),
        ("dst_workload", "dwl"),
        ("dst_workload_kind", "dkind"),
        ("dst_service", "dsvc"),
    ];

    /// A one-row batch as (column, value) pairs in the batch's order, after checking that its
    /// schema is exactly `schema`.
    fn row(batch: RecordBatch, schema: SchemaRef) -> Vec<(String, String)> {
        assert_eq!(batch.schema(), schema);
        assert_eq!(batch.num_rows(), 1);
        let options = FormatOptions::default().with_null("NULL");
        batch
            .schema()
            .fields()
            .iter()
            .zip(batch.columns())
            .map(|(f, c)| {
                let formatter = ArrayFormatter::try_new(c, &options).unwrap();
                (f.name().clone(), formatter.value(0).to_string())
            })
            .collect()
    }

    /// `columns` then the identity columns, as [`row`] returns them.
    fn expected(columns: &[(&str, &str)]) -> Vec<(String, String)> {
        columns
            .iter()
            .chain(&IDENTITY)
            .map(|(c, v)| ((*c).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn tcp_events_row() {
        let mut b = TcpEventsBuilder::new("node-a");
        b.append_with(
            &TcpEventRecord {
                old_state: "SYN_SENT",
                new_state: "ESTABLISHED",
                syscall_ret: Some(-111),
                reason: Some("refused".into()),
                srtt_us: Some(77),
                ..TcpEventRecord::new(
                    1_700_000_000_000_000_000,
                    TcpEventType::Connect,
                    7,
                    Role::Client,
                    owner(),
                    endpoints(),
                )
            },
            &identities(),
        );
        assert_eq!(b.len(), 1);
        let batch = b.finish().unwrap();
        assert!(b.is_empty());
        #[rustfmt::skip]
        let want = expected(&[
            ("ts", "2023-11-14T22:13:20Z"), ("event", "connect"), ("conn_id", "7"),
            ("role", "client"), ("pid", "42"), ("tid", "43"), ("comm", "curl"),
            ("src_ip", "127.0.0.1"), ("src_port", "40000"), ("dst_ip", "::1"),
            ("dst_port", "8080"), ("old_state", "SYN_SENT"), ("new_state", "ESTABLISHED"),
            ("syscall_ret", "-111"), ("node", "node-a"), ("reason", "refused"),
            ("srtt_us", "77"), ("transport", "tcp"),
        ]);
        assert_eq!(row(batch, schema::tcp_events()), want);
    }

    #[test]
    fn flows_row() {
        let mut b = FlowsBuilder::new("node-a");
        b.append_with(
            &FlowRecord {
                start_ts_ns: 1_000,
                end_ts_ns: 4_500,
                conn_id: 1,
                owner: owner(),
                role: Role::Server,
                endpoints: endpoints(),
                bytes_sent: 10,
                bytes_received: 20,
                open: false,
                health: FlowHealth {
                    srtt_us: Some(50),
                    srtt_min_us: Some(40),
                    srtt_max_us: Some(70),
                    retransmits: 2,
                    resets: 1,
                    connect_latency_ns: Some(900),
                    close_reason: "rst",
                },
                tls: TlsInfo {
                    sni: Some("api.svc".into()),
                    version: Some("TLS 1.3"),
                    handshake_ns: Some(1500),
                    library: None,
                },
            },
            &identities(),
        );
        #[rustfmt::skip]
        let want = expected(&[
            ("start_ts", "1970-01-01T00:00:00.000001Z"), ("end_ts", "1970-01-01T00:00:00.000004500Z"),
            ("duration_ns", "3500"), ("conn_id", "1"), ("pid", "42"), ("comm", "curl"),
            ("role", "server"), ("src_ip", "127.0.0.1"), ("src_port", "40000"),
            ("dst_ip", "::1"), ("dst_port", "8080"), ("bytes_sent", "10"),
            ("bytes_received", "20"), ("status", "closed"), ("node", "node-a"),
            ("srtt_us", "50"), ("srtt_min_us", "40"), ("srtt_max_us", "70"),
            ("retransmits", "2"), ("resets", "1"), ("connect_latency_ns", "900"),
            ("close_reason", "rst"), ("tls_sni", "api.svc"), ("tls_version", "TLS 1.3"),
            ("tls_handshake_ns", "1500"), ("tls", "sni-only"),
        ]);
        assert_eq!(row(b.finish().unwrap(), schema::flows()), want);
    }

    #[test]
    fn calls_row() {
        let mut b = CallsBuilder::new("node-a");
        b.append_with(
            &CallRecord {
                ts_ns: 1_700_000_000_000_000_000,
                protocol: "http",
                role: Role::Client,
                method: "GET".into(),
                resource: "/a".into(),
                status: "500".into(),
                is_error: true,
                error_message: Some("boom".into()),
                request_sent_ns: 1,
                waiting_ttfb_ns: 20,
                content_download_ns: 300,
                request_bytes: 4000,
                response_bytes: 50000,
                endpoints: endpoints(),
                owner: owner(),
                conn_id: 9,
                tls: "openssl",
                trace_id: Some("t1".into()),
                request_payload: Some("req".into()),
                response_payload: Some("resp".into()),
            },
            &identities(),
        );
        #[rustfmt::skip]
        let want = expected(&[
            ("ts", "2023-11-14T22:13:20Z"), ("protocol", "http"), ("role", "client"),
            ("method", "GET"), ("resource", "/a"), ("status", "500"), ("is_error", "true"),
            ("error_message", "boom"), ("duration_ns", "321"), ("request_sent_ns", "1"),
            ("waiting_ttfb_ns", "20"), ("content_download_ns", "300"),
            ("request_bytes", "4000"), ("response_bytes", "50000"), ("src_ip", "127.0.0.1"),
            ("src_port", "40000"), ("dst_ip", "::1"), ("dst_port", "8080"), ("pid", "42"),
            ("tid", "43"), ("comm", "curl"), ("conn_id", "9"), ("node", "node-a"),
            ("tls", "openssl"), ("trace_id", "t1"), ("request_payload", "req"), ("response_payload", "resp"),
        ]);
        assert_eq!(row(b.finish().unwrap(), schema::calls()), want);
    }

    #[test]
    fn dns_row() {
        let mut b = DnsBuilder::new("node-a");
        b.append_with(
            &DnsRecord {
                ts_ns: 1_700_000_000_000_000_000,
                domain: "example.com".into(),
                qtype: "A".into(),
                rcode: "NOERROR".into(),
                latency_ns: Some(1234),
                answers: "10.0.0.1".into(),
                server_ip: Ipv4Addr::new(10, 0, 0, 53).into(),
                transport: "udp",
                owner: owner(),
                client_ip: Ipv4Addr::new(10, 0, 0, 7).into(),
                search_expansion: true,
                search_misses: 3,
            },
            &identities(),
        );
        #[rustfmt::skip]
        let want = expected(&[
            ("ts", "2023-11-14T22:13:20Z"), ("domain", "example.com"), ("qtype", "A"),
            ("rcode", "NOERROR"), ("latency_ns", "1234"), ("answers", "10.0.0.1"),
            ("server_ip", "10.0.0.53"), ("transport", "udp"), ("pid", "42"),
            ("comm", "curl"), ("node", "node-a"), ("client_ip", "10.0.0.7"),
            ("search_expansion", "true"), ("search_misses", "3"),
        ]);
        assert_eq!(row(b.finish().unwrap(), schema::dns()), want);
    }

    #[test]
    fn nulls_where_the_schema_allows_them() {
        let mut b = TcpEventsBuilder::new("n");
        b.append(&TcpEventRecord::new(
            0,
            TcpEventType::Rtt,
            1,
            Role::Server,
            owner(),
            endpoints(),
        ));
        let batch = b.finish().unwrap();
        let got = row(batch, schema::tcp_events());
        let value = |c: &str| got.iter().find(|(n, _)| n == c).unwrap().1.clone();
        assert_eq!(value("syscall_ret"), "NULL");
        assert_eq!(value("reason"), "NULL");
        assert_eq!(value("cgroup"), "");
    }

    #[test]
    fn a_column_missing_or_left_over_is_an_error() {
        let schema = schema::dns();
        let mut b = DnsBuilder::new("n");
        let mut named: Vec<(&'static str, ArrayRef)> = vec![];
        b.identity.finish(&mut named);
        let err = assemble(Arc::clone(&schema), named).unwrap_err();
        assert!(err.to_string().contains("no column `ts`"), "{err}");
        let full = b.finish().unwrap();
        let mut named: Vec<(&'static str, ArrayRef)> = schema
            .fields()
            .iter()
            .zip(full.columns())
            .map(|(f, c)| (&*f.name().clone().leak(), Arc::clone(c)))
            .collect();
        named.push(("extra", Arc::clone(full.column(0))));
        let err = assemble(schema, named).unwrap_err();
        assert!(
            err.to_string().contains("`extra` is not in the schema"),
            "{err}"
        );
    }
}
