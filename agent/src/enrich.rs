//! Enrichment: who a row's ends are. The local process's cgroup path comes from the cgroup
//! walk ([`crate::cgroups`]), the pod, workload and Service of both ends from the Kubernetes
//! index ([`crate::k8s`]); either may be absent (host mode, no cgroup v2).
//!
//! Rows are named when they are built ([`crate::records::pending`]), with what is known at
//! the row's own time: a pod deleted since keeps its name on its rows.

use std::sync::Arc;

use crate::{
    cgroups::CgroupNames,
    k8s::Kubernetes,
    records::{DnsRecord, Endpoints, Ends, Owner, Role},
};

/// Port of DNS servers (`dns` rows have no port columns).
const DNS_PORT: u16 = 53;

/// What names rows' ends: the cgroup walk and Kubernetes, either of them absent.
#[derive(Debug, Clone, Default)]
pub struct Enricher {
    kubernetes: Option<Arc<Kubernetes>>,
    cgroups: Option<Arc<CgroupNames>>,
}

impl Enricher {
    /// Names ends with `kubernetes` and `cgroups` (None: that part stays "").
    pub fn new(kubernetes: Option<Arc<Kubernetes>>, cgroups: Option<Arc<CgroupNames>>) -> Self {
        Self {
            kubernetes,
            cgroups,
        }
    }

    /// The ends of a row that `owner`'s process made or served as `role`, at `ts_ns` (None:
    /// nothing names them).
    pub fn of(&self, owner: &Owner, role: Role, endpoints: &Endpoints, ts_ns: i64) -> Option<Ends> {
        if self.kubernetes.is_none() && self.cgroups.is_none() {
            return None;
        }
        let mut ends = match &self.kubernetes {
            Some(k) => k.resolve(owner, role, endpoints, ts_ns),
            None => Ends::default(),
        };
        if let Some(name) = self.cgroups.as_ref().and_then(|c| c.name(owner.cgroup_id)) {
            ends.cgroup = name;
        }
        Some(ends)
    }

    /// The ends of a `dns` row: the querying end and the server (None: nothing names them).
    pub fn dns(&self, r: &DnsRecord) -> Option<Ends> {
        let endpoints = Endpoints {
            src_ip: r.client_ip,
            src_port: 0,
            dst_ip: r.server_ip,
            dst_port: DNS_PORT,
        };
        self.of(&r.owner, Role::Client, &endpoints, r.ts_ns)
    }
}
