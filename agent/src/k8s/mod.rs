//! Kubernetes enrichment: every row's two ends named by pod, namespace, workload and
//! Service (the `src_*`/`dst_*` columns of `kindling_wire::schema::KUBERNETES_COLUMNS`).
//!
//! - [`watch`] follows the API server (a kubeconfig, or the in-cluster config) into an
//!   [`Index`]; without either the agent runs in host mode and these columns stay "".
//! - The local end of a row is found by its process's cgroup id (events carry it) -> the
//!   container named by that cgroup's directory ([`crate::cgroups`]) -> the pod whose
//!   containerStatuses list it; failing that, like the remote end, by address: pod IP at the
//!   row's time, node IP and port for hostNetwork pods, or a Service's ClusterIP.
//! - The capture thread resolves every row as it is built, under a read lock the watchers
//!   take for writing only for the time of one object.

pub mod index;
pub mod watch;

use std::{
    collections::HashSet,
    sync::{
        Arc, Mutex, PoisonError, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

pub use index::{Index, IndexCounts, Kind};

use crate::records::{Endpoints, Ends, Owner, Role};

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
    states: Mutex<Vec<(Kind, WatchState)>>,
    /// The last probe's error, while the API server does not answer.
    unreachable: Mutex<Option<String>>,
    updates: AtomicU64,
}

/// Enrichment counters for `agent_stats`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubernetesStats {
    /// off is never here (host mode has no `Kubernetes`); listing until every watcher listed
    /// its kind once; synced; unreachable: <error> while the API server's probe fails.
    pub status: String,
    /// Index counts.
    pub counts: IndexCounts,
    /// Watch events applied since start.
    pub updates: u64,
}

impl Kubernetes {
    /// An empty view for the agent on `node`.
    pub fn new(node: &str, max_objects: usize) -> Self {
        Self {
            index: RwLock::new(Index::new(max_objects)),
            node: node.to_owned(),
            states: Mutex::new(
                Kind::ALL
                    .iter()
                    .map(|k| (*k, WatchState::Listing))
                    .collect(),
            ),
            unreachable: Mutex::new(None),
            updates: AtomicU64::new(0),
        }
    }

    /// The cgroups of the containers of `namespaces`' pods (as far as the index knows them).
    pub fn cgroups_in_namespaces(&self, namespaces: &HashSet<String>) -> HashSet<u64> {
        self.index
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .cgroups_in_namespaces(namespaces)
    }

    /// Changes applied to the index so far: a new value means the index changed.
    pub fn generation(&self) -> u64 {
        self.updates.load(Ordering::Relaxed)
    }

    /// Names the ends of a row that `owner`'s process made or served as `role`.
    pub fn resolve(&self, owner: &Owner, role: Role, ends: &Endpoints, ts_ns: i64) -> Ends {
        self.index
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .resolve(owner.cgroup_id, role, ends, ts_ns)
    }

    /// Applies a change to the index.
    pub fn update(&self, f: impl FnOnce(&mut Index)) {
        let mut index = self.index.write().unwrap_or_else(PoisonError::into_inner);
        f(&mut index);
        self.updates.fetch_add(1, Ordering::Relaxed);
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
        }
    }

    /// Whether a local pod gained a container no walk of the cgroup tree has found.
    pub fn take_scan_wanted(&self) -> bool {
        self.index
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .take_scan_wanted()
    }

    /// Hands the containers a walk of the cgroup tree found to the index.
    pub fn apply_cgroup_scan(&self, containers: Vec<(String, u64)>) {
        self.update(|ix| ix.apply_cgroup_scan(containers));
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

/// Wall-clock now, ns since the epoch (the rows' time base).
fn now_ns() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i64)
}
