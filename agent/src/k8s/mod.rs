//! Kubernetes enrichment: every row's two ends named by pod, namespace, workload and
//! Service (the `src_*`/`dst_*` columns of `kindling_wire::schema::KUBERNETES_COLUMNS`).
//!
//! - [`watch`] follows the API server (a kubeconfig, or the in-cluster config) into an
//!   [`Index`]; without either the agent runs in host mode and these columns stay "".
//! - The local end of a row is found by its process's cgroup id (events carry it) -> the
//!   container named by that cgroup's directory ([`cgroups`]) -> the pod whose
//!   containerStatuses list it; failing that, like the remote end, by address: pod IP at the
//!   row's time, node IP and port for hostNetwork pods, or a Service's ClusterIP.
//! - The capture thread resolves every row as it is built, under a read lock the watchers
//!   take for writing only for the time of one object.

pub mod cgroups;
pub mod index;
pub mod watch;

use std::{
    collections::HashSet,
    path::PathBuf,
    sync::{
        Arc, Mutex, PoisonError, RwLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

pub use index::{Index, IndexCounts, Kind};

use crate::{
    capture::PayloadExclusions,
    records::{DnsRecord, Endpoints, Ends, Owner, Role},
};

/// Most directories one walk of the cgroup tree visits.
const CGROUP_SCAN_MAX_DIRS: usize = 200_000;

/// Shortest time between two walks of the cgroup tree.
const CGROUP_SCAN_EVERY: Duration = Duration::from_millis(500);

/// Port of DNS servers (`dns` rows have no port columns).
const DNS_PORT: u16 = 53;

/// Where the watchers stand, per kind.
#[derive(Debug, Clone, PartialEq, Eq)]
enum WatchState {
    /// Not listed yet.
    Listing,
    /// Not listed yet, and the last attempt failed.
    Failing(String),
    /// Listed (and watching, or about to).
    Synced,
    /// Listed once; the watch broke and is being retried.
    Interrupted,
}

/// The agent's view of the cluster, shared by the watchers, the capture thread and
/// `agent_stats`.
#[derive(Debug)]
pub struct Kubernetes {
    index: RwLock<Index>,
    node: String,
    cgroup_root: PathBuf,
    states: Mutex<Vec<(Kind, WatchState)>>,
    /// The last probe's error, while the API server does not answer.
    unreachable: Mutex<Option<String>>,
    updates: AtomicU64,
    /// Set by the capture thread for a cgroup no scan has seen: a new container, perhaps.
    unknown_cgroup: AtomicBool,
    /// Namespaces whose pods' payload is not captured, and the kernel's map of them.
    payload: Mutex<Option<(HashSet<String>, PayloadExclusions)>>,
    /// The index changed since the payload exclusions were last synced.
    payload_dirty: AtomicBool,
}

/// Enrichment counters for `agent_stats`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubernetesStats {
    /// synced | listing | unreachable: ... (the first failing watcher's error).
    pub status: String,
    /// Index counts.
    pub counts: IndexCounts,
    /// Watch events applied since start.
    pub updates: u64,
    /// Containers whose payload is not captured (`--no-payload-namespace`).
    pub payload_excluded: u64,
}

impl Kubernetes {
    /// An empty view for the agent on `node`, whose cgroup v2 tree is at `cgroup_root`.
    pub fn new(node: &str, cgroup_root: PathBuf, max_objects: usize) -> Self {
        Self {
            index: RwLock::new(Index::new(max_objects)),
            node: node.to_owned(),
            cgroup_root,
            states: Mutex::new(
                Kind::ALL
                    .iter()
                    .map(|k| (*k, WatchState::Listing))
                    .collect(),
            ),
            unreachable: Mutex::new(None),
            updates: AtomicU64::new(0),
            unknown_cgroup: AtomicBool::new(false),
            payload: Mutex::new(None),
            payload_dirty: AtomicBool::new(false),
        }
    }

    /// Keeps the payload of every pod of `namespaces` out of capture: the containers' cgroups
    /// go into the kernel's exclusion map as the pods and their cgroups are found.
    pub fn exclude_payload(&self, namespaces: Vec<String>, exclusions: PayloadExclusions) {
        *self.payload.lock().unwrap_or_else(PoisonError::into_inner) =
            Some((namespaces.into_iter().collect(), exclusions));
        self.payload_dirty.store(true, Ordering::Relaxed);
    }

    /// Brings the kernel's exclusion map up to date with the index.
    fn sync_payload_exclusions(&self) {
        if !self.payload_dirty.swap(false, Ordering::Relaxed) {
            return;
        }
        let mut payload = self.payload.lock().unwrap_or_else(PoisonError::into_inner);
        let Some((namespaces, exclusions)) = payload.as_mut() else {
            return;
        };
        let wanted = self
            .index
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .cgroups_in_namespaces(namespaces);
        let before = exclusions.dynamic();
        let refused = exclusions.sync(&wanted);
        if refused > 0 {
            tracing::error!(
                refused,
                "Payload exclusion map full: some excluded pods' payload is captured"
            );
        }
        if exclusions.dynamic() != before {
            tracing::info!(
                cgroups = exclusions.dynamic(),
                "Containers of the excluded namespaces: payload not captured"
            );
        }
    }

    /// Names the ends of a row that `owner`'s process made or served as `role`.
    pub fn resolve(&self, owner: &Owner, role: Role, ends: &Endpoints, ts_ns: i64) -> Ends {
        let index = self.index.read().unwrap_or_else(PoisonError::into_inner);
        if index.cgroup_unknown(owner.cgroup_id) {
            self.unknown_cgroup.store(true, Ordering::Relaxed);
        }
        index.resolve(owner.cgroup_id, role, ends, ts_ns)
    }

    /// Names the ends of a `dns` row: the querying end and the server.
    pub fn resolve_dns(&self, r: &DnsRecord) -> Ends {
        let ends = Endpoints {
            src_ip: r.client_ip,
            src_port: 0,
            dst_ip: r.server_ip,
            dst_port: DNS_PORT,
        };
        self.resolve(&r.owner, Role::Client, &ends, r.ts_ns)
    }

    /// Applies a change to the index.
    pub fn update(&self, f: impl FnOnce(&mut Index)) {
        let mut index = self.index.write().unwrap_or_else(PoisonError::into_inner);
        f(&mut index);
        self.updates.fetch_add(1, Ordering::Relaxed);
        self.payload_dirty.store(true, Ordering::Relaxed);
    }

    fn set_state(&self, kind: Kind, result: Result<(), String>) {
        let mut states = self.states.lock().unwrap_or_else(PoisonError::into_inner);
        let Some((_, state)) = states.iter_mut().find(|(k, _)| *k == kind) else {
            return;
        };
        let next = match (result, &*state) {
            (Ok(()), _) => WatchState::Synced,
            (Err(e), WatchState::Listing) => WatchState::Failing(e),
            // Listed once: still usable, and the probe reports the API server.
            (Err(e), _) => {
                if *state == WatchState::Synced {
                    tracing::warn!(?kind, error = %e, "Kubernetes watch interrupted; retrying with backoff");
                }
                WatchState::Interrupted
            }
        };
        if *state != next {
            match &next {
                WatchState::Failing(e) => {
                    tracing::warn!(?kind, error = %e, "Kubernetes watch cannot list; retrying with backoff")
                }
                WatchState::Synced => tracing::info!(?kind, "Kubernetes watch synced"),
                _ => {}
            }
            *state = next;
        }
    }

    /// The result of a probe of the API server.
    fn set_reachable(&self, result: Result<(), String>) {
        let mut unreachable = self
            .unreachable
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        match (&*unreachable, &result) {
            (None, Err(e)) => {
                tracing::warn!(error = %e, "Kubernetes API server unreachable; rows keep the last-known metadata")
            }
            (Some(_), Ok(())) => tracing::info!("Kubernetes API server reachable again"),
            _ => {}
        }
        *unreachable = result.err();
    }

    /// Counters and status for `agent_stats`: unreachable while the API server does not
    /// answer, else synced once every watcher has listed its kind.
    pub fn stats(&self) -> KubernetesStats {
        let states = self.states.lock().unwrap_or_else(PoisonError::into_inner);
        let unreachable = self
            .unreachable
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let status = match &*unreachable {
            Some(e) => format!("unreachable: {e}"),
            // Watchers that lost their stream relist after a backoff; what they listed once
            // stays in use meanwhile.
            None if states.iter().all(|(_, s)| *s != WatchState::Listing) => "synced".to_owned(),
            None => "listing".to_owned(),
        };
        KubernetesStats {
            status,
            counts: self
                .index
                .read()
                .unwrap_or_else(PoisonError::into_inner)
                .counts(),
            updates: self.updates.load(Ordering::Relaxed),
            payload_excluded: self
                .payload
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .as_ref()
                .map_or(0, |(_, e)| e.dynamic() as u64),
        }
    }

    /// Walks the cgroup tree and hands the result to the index.
    pub fn rescan_cgroups(&self) -> std::io::Result<()> {
        let scan = cgroups::scan(&self.cgroup_root, CGROUP_SCAN_MAX_DIRS)?;
        if scan.truncated {
            tracing::warn!(
                root = %self.cgroup_root.display(),
                max = CGROUP_SCAN_MAX_DIRS,
                "cgroup tree larger than the walk's bound; some containers are not matched"
            );
        }
        self.update(|ix| ix.apply_cgroup_scan(scan.containers, scan.others));
        Ok(())
    }
}

/// How often the API server is probed (`/version`) for `agent_stats.kubernetes_status`.
const PROBE_EVERY: Duration = Duration::from_secs(3);

/// Probes the API server: watches that broke say nothing until they are back, and a watch
/// that resumed says nothing until an object changes.
async fn probe(client: kube::Client, k8s: Arc<Kubernetes>) {
    loop {
        let result = match tokio::time::timeout(PROBE_EVERY, client.apiserver_version()).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {PROBE_EVERY:?}")),
        };
        k8s.set_reachable(result);
        tokio::time::sleep(PROBE_EVERY).await;
    }
}

/// Walks the cgroup tree at start, and again when a pod of this node gained a container or
/// the capture thread met an unknown cgroup (at most every [`CGROUP_SCAN_EVERY`]); then
/// brings the payload exclusions up to date.
async fn scan_cgroups(k8s: Arc<Kubernetes>) {
    let mut failing = false;
    let mut first = true;
    loop {
        let wanted = k8s.unknown_cgroup.swap(false, Ordering::Relaxed)
            | k8s
                .index
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .take_scan_wanted();
        if wanted || first {
            first = false;
            let k = Arc::clone(&k8s);
            match tokio::task::spawn_blocking(move || k.rescan_cgroups()).await {
                Ok(Ok(())) => failing = false,
                Ok(Err(e)) if !failing => {
                    failing = true;
                    tracing::warn!(root = %k8s.cgroup_root.display(), error = %e, "Cannot walk the cgroup tree (--cgroup-root); local ends are named by address only");
                }
                _ => {}
            }
        }
        k8s.sync_payload_exclusions();
        tokio::time::sleep(CGROUP_SCAN_EVERY).await;
    }
}

/// Wall-clock now, ns since the epoch (the rows' time base).
fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}
