//! Capture policy: the cgroups whose tasks' payload the kernel never copies.
//!
//! Fixed ones come from `--no-payload-cgroup`; [`NamespaceExclusions`] keeps the containers of
//! the pods of `--no-payload-namespace` in the kernel's map as the Kubernetes index finds them
//! (the index answers which cgroups those are; the policy and the map are capture's).

use std::{
    collections::HashSet,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use aya::maps::{HashMap, MapData};

use crate::k8s::Kubernetes;

/// The kernel's set of cgroups whose tasks' payload is never copied: the fixed ones of
/// `--no-payload-cgroup` and a set that follows the cluster (`--no-payload-namespace`).
pub struct PayloadExclusions {
    pub(super) map: HashMap<MapData, u64, u8>,
    pub(super) fixed: HashSet<u64>,
    pub(super) dynamic: HashSet<u64>,
}

impl std::fmt::Debug for PayloadExclusions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PayloadExclusions")
            .field("fixed", &self.fixed.len())
            .field("dynamic", &self.dynamic.len())
            .finish_non_exhaustive()
    }
}

impl PayloadExclusions {
    /// Makes the changing set `wanted`: adds what is new, removes what went. Returns how many
    /// cgroups did not fit (the map holds [`MAX_NO_PAYLOAD_CGROUPS`]).
    pub fn sync(&mut self, wanted: &HashSet<u64>) -> usize {
        let gone: Vec<u64> = self.dynamic.difference(wanted).copied().collect();
        for id in gone {
            if !self.fixed.contains(&id) {
                let _ = self.map.remove(&id);
            }
            self.dynamic.remove(&id);
        }
        let mut refused = 0;
        for id in wanted {
            if self.dynamic.contains(id) || self.fixed.contains(id) {
                continue;
            }
            match self.map.insert(id, &1, 0) {
                Ok(()) => {
                    self.dynamic.insert(*id);
                }
                Err(_) => refused += 1,
            }
        }
        refused
    }

    /// cgroups in the changing set now.
    pub fn dynamic(&self) -> usize {
        self.dynamic.len()
    }
}

/// The containers of some namespaces' pods, kept in the kernel's exclusion map.
#[derive(Debug)]
pub struct NamespaceExclusions {
    namespaces: HashSet<String>,
    exclusions: PayloadExclusions,
    /// The index generation last synced (None: never).
    synced: Option<u64>,
    /// Containers excluded now, for `agent_stats.kubernetes_payload_excluded`.
    excluded: Arc<AtomicU64>,
}

impl NamespaceExclusions {
    /// Keeps the payload of every pod of `namespaces` out of `exclusions`' map; publishes how
    /// many containers that is in `excluded`.
    pub fn new(
        namespaces: Vec<String>,
        exclusions: PayloadExclusions,
        excluded: Arc<AtomicU64>,
    ) -> Self {
        Self {
            namespaces: namespaces.into_iter().collect(),
            exclusions,
            synced: None,
            excluded,
        }
    }

    /// Brings the kernel's map up to date with `kubernetes`' index, if it changed.
    pub fn sync(&mut self, kubernetes: &Kubernetes) {
        let generation = kubernetes.generation();
        if self.synced == Some(generation) {
            return;
        }
        self.synced = Some(generation);
        let wanted = kubernetes.cgroups_in_namespaces(&self.namespaces);
        let before = self.exclusions.dynamic();
        let refused = self.exclusions.sync(&wanted);
        if refused > 0 {
            tracing::error!(
                refused,
                "Payload exclusion map full: some excluded pods' payload is captured"
            );
        }
        let now = self.exclusions.dynamic();
        self.excluded.store(now as u64, Ordering::Relaxed);
        if now != before {
            tracing::info!(
                cgroups = now,
                "Containers of the excluded namespaces: payload not captured"
            );
        }
    }
}

/// Keeps `policy` in step with `kubernetes`' index, checking every `every` (the period of the
/// cgroup walks that find new containers).
pub async fn follow(mut policy: NamespaceExclusions, kubernetes: Arc<Kubernetes>, every: Duration) {
    loop {
        policy.sync(&kubernetes);
        tokio::time::sleep(every).await;
    }
}
