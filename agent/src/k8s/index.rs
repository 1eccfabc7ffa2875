//! What the agent knows of the cluster, and how a row's two ends are named from it.
//!
//! The watchers ([`super::watch`]) turn API objects into the plain facts below and apply them
//! here; the capture thread asks [`Index::resolve`] for every row. Nothing here talks to the
//! API server, so every rule is unit-tested with exact values.
//!
//! Pod IPs are reused: an IP keeps the history of the pods that held it ([`Holding`]: from
//! when, until when), and a row gets the pod that held the address at the row's time, however
//! late the row is built. Histories are pruned [`HISTORY_NS`] after a pod let its IP go.

use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
    sync::Arc,
};

/// The index's maps: looked up for every row, so with a fast hasher (foldhash; the keys are
/// not chosen by an attacker who sees the hashes, and the index is bounded).
type Map<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

use crate::records::{EndMeta, Endpoints, Ends, Role};

/// A name shared by every row that carries it.
pub type Name = Arc<str>;

/// How long an IP remembers a pod that let it go: rows are enriched when they are built, a
/// few seconds after the fact at most, so minutes are plenty.
pub const HISTORY_NS: i64 = 10 * 60 * 1_000_000_000;

/// A pod's creation time has second resolution and comes from the API server's clock: its
/// IP is taken to be held from a second before.
const CREATION_SLACK_NS: i64 = 1_000_000_000;

/// A row up to this far outside every holding of its IP still gets the nearest one (clock
/// skew between the API server and this node).
const GRACE_NS: i64 = 2_000_000_000;

/// Holdings kept per address (the oldest go first).
const HOLDINGS_PER_ADDRESS: usize = 8;

/// The kinds of object the index holds, for relists and counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// core/v1 Pod.
    Pod,
    /// core/v1 Service.
    Service,
    /// core/v1 Endpoints or discovery.k8s.io/v1 EndpointSlice.
    Endpoints,
    /// apps/v1 ReplicaSet (its owner names the Deployment).
    ReplicaSet,
    /// batch/v1 Job (its owner names the CronJob).
    Job,
    /// core/v1 Node.
    Node,
}

impl Kind {
    /// Every kind, in the order the watchers start.
    pub const ALL: [Kind; 6] = [
        Kind::Node,
        Kind::ReplicaSet,
        Kind::Job,
        Kind::Service,
        Kind::Endpoints,
        Kind::Pod,
    ];
}

/// What the index keeps of a Pod.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PodFacts {
    /// metadata.uid: the key (a name is reused by a new pod, a uid never).
    pub uid: String,
    /// metadata.namespace.
    pub namespace: String,
    /// metadata.name.
    pub name: String,
    /// The controller ownerReference: kind and name.
    pub owner: Option<(String, String)>,
    /// The `pod-template-hash` label (names the Deployment when its ReplicaSet is not known).
    pub template_hash: Option<String>,
    /// metadata.creationTimestamp, ns since the epoch (0 when absent).
    pub created_ns: i64,
    /// status.podIPs (or podIP).
    pub ips: Vec<IpAddr>,
    /// spec.hostNetwork: its IPs are the node's, shared with every other such pod.
    pub host_network: bool,
    /// The containers' declared ports: a hostNetwork pod is found by IP and port.
    pub ports: Vec<u16>,
    /// Container ids of status.containerStatuses (and init containers), without the
    /// `runtime://` prefix.
    pub container_ids: Vec<String>,
}

/// A pod as rows name it.
#[derive(Debug, PartialEq, Eq)]
struct PodName {
    namespace: Name,
    name: Name,
    owner: Option<(Name, Name)>,
    template_hash: Option<String>,
    /// Its own IPs (none for hostNetwork pods): a pod found by cgroup gets the Services whose
    /// endpoints hold them, whatever address the row has (a second address, a NAT).
    ips: Vec<IpAddr>,
}

/// A pod holding an address over a time range.
#[derive(Debug, Clone)]
struct Holding {
    uid: Name,
    pod: Arc<PodName>,
    from_ns: i64,
    /// `i64::MAX` while held.
    to_ns: i64,
}

#[derive(Debug)]
struct Pod {
    facts: PodFacts,
    name: Arc<PodName>,
    uid: Name,
}

/// A namespace and a name.
pub type Key = (String, String);

/// An endpoint address of a Service, with the ports it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointAddress {
    /// The address.
    pub ip: IpAddr,
    /// The ports it serves for the Service.
    pub ports: Vec<u16>,
}

/// Counts for `agent_stats`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IndexCounts {
    /// Objects held, every kind.
    pub objects: u64,
    /// Pods held.
    pub pods: u64,
    /// New objects refused because the index was at its bound.
    pub dropped: u64,
}

/// The cluster's pods, services, endpoints, owners and nodes, bounded by `max_objects`.
#[derive(Debug)]
pub struct Index {
    max_objects: usize,
    dropped: u64,
    pods: Map<String, Pod>,
    /// Pod IPs (not hostNetwork ones) and their holders over time, oldest first.
    ips: Map<IpAddr, Vec<Holding>>,
    /// hostNetwork pods by node IP and declared port.
    host_ports: Map<(IpAddr, u16), Vec<Holding>>,
    /// Container id -> pod uid.
    containers: Map<String, String>,
    /// Container id -> cgroup id, from the last scan of the cgroup tree.
    scanned: Map<String, u64>,
    /// cgroup id -> pod uid, for the containers of known pods.
    cgroups: Map<u64, String>,
    services: Map<Key, Vec<IpAddr>>,
    cluster_ips: Map<IpAddr, (Name, Name)>,
    /// Endpoints or EndpointSlice objects: their Service and addresses.
    endpoints: Map<Key, (Key, Vec<EndpointAddress>)>,
    /// Address -> the Services (namespace, name) whose endpoints hold it, with their ports.
    endpoint_ips: Map<IpAddr, Vec<(Name, Name, Vec<u16>)>>,
    /// ReplicaSets and Jobs -> their controller (kind, name).
    owners: Map<(Kind, Name, Name), Option<(Name, Name)>>,
    nodes: Map<String, Vec<IpAddr>>,
    node_ips: Map<IpAddr, Name>,
    last_prune_ns: i64,
    /// A pod of this node has a container no scan has found yet.
    scan_wanted: bool,
    kinds: Kinds,
}

/// Interned kind names.
#[derive(Debug)]
struct Kinds {
    deployment: Name,
    cron_job: Name,
    pod: Name,
    node: Name,
}

impl Index {
    /// An empty index holding at most `max_objects` objects of all kinds together.
    pub fn new(max_objects: usize) -> Self {
        Self {
            max_objects,
            dropped: 0,
            pods: Map::default(),
            ips: Map::default(),
            host_ports: Map::default(),
            containers: Map::default(),
            scanned: Map::default(),
            cgroups: Map::default(),
            services: Map::default(),
            cluster_ips: Map::default(),
            endpoints: Map::default(),
            endpoint_ips: Map::default(),
            owners: Map::default(),
            nodes: Map::default(),
            node_ips: Map::default(),
            last_prune_ns: 0,
            scan_wanted: false,
            kinds: Kinds {
                deployment: Arc::from("Deployment"),
                cron_job: Arc::from("CronJob"),
                pod: Arc::from("Pod"),
                node: Arc::from("Node"),
            },
        }
    }

    /// Objects held, pods held, objects refused.
    pub fn counts(&self) -> IndexCounts {
        let objects = self.pods.len()
            + self.services.len()
            + self.endpoints.len()
            + self.owners.len()
            + self.nodes.len();
        IndexCounts {
            objects: objects as u64,
            pods: self.pods.len() as u64,
            dropped: self.dropped,
        }
    }

    /// Whether a new object fits; counts it as dropped if not.
    fn admit(&mut self, known: bool) -> bool {
        if known || (self.counts().objects as usize) < self.max_objects {
            true
        } else {
            self.dropped += 1;
            false
        }
    }

    /// Keys of every object of `kind` held (pods: uids; others: `namespace/name`, nodes: name).
    pub fn keys(&self, kind: Kind) -> Vec<String> {
        let joined = |(ns, name): &Key| format!("{ns}/{name}");
        match kind {
            Kind::Pod => self.pods.keys().cloned().collect(),
            Kind::Service => self.services.keys().map(joined).collect(),
            Kind::Endpoints => self.endpoints.keys().map(joined).collect(),
            Kind::ReplicaSet | Kind::Job => self
                .owners
                .keys()
                .filter(|(k, _, _)| *k == kind)
                .map(|(_, ns, name)| format!("{ns}/{name}"))
                .collect(),
            Kind::Node => self.nodes.keys().cloned().collect(),
        }
    }

    /// Removes the object of `kind` with `key` (as [`Index::keys`] names it).
    pub fn remove(&mut self, kind: Kind, key: &str, now_ns: i64) {
        let split = || {
            let (ns, name) = key.split_once('/').unwrap_or(("", key));
            (ns.to_owned(), name.to_owned())
        };
        match kind {
            Kind::Pod => self.delete_pod(key, now_ns),
            Kind::Service => self.delete_service(&split()),
            Kind::Endpoints => self.delete_endpoints(&split()),
            Kind::ReplicaSet | Kind::Job => {
                let (ns, name) = split();
                self.owners.remove(&(kind, Arc::from(ns), Arc::from(name)));
            }
            Kind::Node => self.delete_node(key),
        }
    }

    /// A pod was created or changed.
    pub fn apply_pod(&mut self, facts: PodFacts, now_ns: i64) {
        self.prune(now_ns);
        if !self.admit(self.pods.contains_key(&facts.uid)) {
            return;
        }
        let name = Arc::new(PodName {
            namespace: Arc::from(facts.namespace.as_str()),
            name: Arc::from(facts.name.as_str()),
            owner: facts
                .owner
                .as_ref()
                .map(|(k, n)| (Arc::from(k.as_str()), Arc::from(n.as_str()))),
            template_hash: facts.template_hash.clone(),
            ips: if facts.host_network {
                Vec::new()
            } else {
                facts.ips.clone()
            },
        });
        let old = self.pods.remove(&facts.uid);
        let uid: Name = old
            .as_ref()
            .map_or_else(|| Arc::from(facts.uid.as_str()), |p| Arc::clone(&p.uid));
        let name = match &old {
            Some(p) if p.name == name => Arc::clone(&p.name),
            _ => name,
        };
        let (old_ips, old_ports) = old
            .as_ref()
            .map(|p| addresses(&p.facts))
            .unwrap_or_default();
        let (new_ips, new_ports) = addresses(&facts);
        for ip in old_ips.iter().filter(|ip| !new_ips.contains(ip)) {
            release(&mut self.ips, *ip, &uid, now_ns);
        }
        for hp in old_ports.iter().filter(|hp| !new_ports.contains(hp)) {
            release(&mut self.host_ports, *hp, &uid, now_ns);
        }
        let from = if facts.created_ns > 0 {
            (facts.created_ns - CREATION_SLACK_NS).min(now_ns)
        } else {
            now_ns
        };
        for ip in &new_ips {
            hold(&mut self.ips, *ip, &uid, &name, from, now_ns);
        }
        for hp in &new_ports {
            hold(&mut self.host_ports, *hp, &uid, &name, from, now_ns);
        }
        if let Some(old) = &old {
            for id in &old.facts.container_ids {
                if !facts.container_ids.contains(id) {
                    self.forget_container(id);
                }
            }
        }
        for id in &facts.container_ids {
            self.containers.insert(id.clone(), facts.uid.clone());
            if let Some(&cgroup) = self.scanned.get(id) {
                self.cgroups.insert(cgroup, facts.uid.clone());
            }
        }
        self.pods
            .insert(facts.uid.clone(), Pod { facts, name, uid });
    }

    /// A pod was deleted: its addresses are released at `now_ns`.
    pub fn delete_pod(&mut self, uid: &str, now_ns: i64) {
        let Some(pod) = self.pods.remove(uid) else {
            return;
        };
        let (ips, ports) = addresses(&pod.facts);
        for ip in ips {
            release(&mut self.ips, ip, &pod.uid, now_ns);
        }
        for hp in ports {
            release(&mut self.host_ports, hp, &pod.uid, now_ns);
        }
        for id in &pod.facts.container_ids {
            self.forget_container(id);
        }
    }

    fn forget_container(&mut self, id: &str) {
        self.containers.remove(id);
        if let Some(cgroup) = self.scanned.get(id) {
            self.cgroups.remove(cgroup);
        }
    }

    /// Container ids of known pods that no scan has found a cgroup for yet.
    pub fn containers_without_cgroup(&self) -> usize {
        self.containers
            .keys()
            .filter(|id| !self.scanned.contains_key(*id))
            .count()
    }

    /// The cgroup id the last scan found for a container.
    pub fn cgroup_of(&self, container_id: &str) -> Option<u64> {
        self.scanned.get(container_id).copied()
    }

    /// Asks for a walk of the cgroup tree (a local pod has a new container).
    pub fn want_scan(&mut self) {
        self.scan_wanted = true;
    }

    /// Whether a walk was asked for since the last call.
    pub fn take_scan_wanted(&mut self) -> bool {
        std::mem::take(&mut self.scan_wanted)
    }

    /// cgroup ids of the containers of the pods in `namespaces`.
    pub fn cgroups_in_namespaces(&self, namespaces: &HashSet<String>) -> HashSet<u64> {
        self.cgroups
            .iter()
            .filter(|(_, uid)| {
                self.pods
                    .get(*uid)
                    .is_some_and(|p| namespaces.contains(&p.facts.namespace))
            })
            .map(|(cgroup, _)| *cgroup)
            .collect()
    }

    /// The result of a walk of the cgroup tree: container ids with their cgroup ids.
    pub fn apply_cgroup_scan(&mut self, containers: Vec<(String, u64)>) {
        self.scanned = containers.into_iter().collect();
        self.cgroups = self
            .scanned
            .iter()
            .filter_map(|(id, cgroup)| Some((*cgroup, self.containers.get(id)?.clone())))
            .collect();
    }

    /// A Service was created or changed; `cluster_ips` are its ClusterIPs (none when
    /// headless).
    pub fn apply_service(&mut self, key: Key, cluster_ips: Vec<IpAddr>) {
        if !self.admit(self.services.contains_key(&key)) {
            return;
        }
        self.delete_service(&key);
        let name = (Arc::from(key.0.as_str()), Arc::from(key.1.as_str()));
        for ip in &cluster_ips {
            self.cluster_ips.insert(*ip, name.clone());
        }
        self.services.insert(key, cluster_ips);
    }

    /// A Service was deleted.
    pub fn delete_service(&mut self, key: &Key) {
        if let Some(ips) = self.services.remove(key) {
            for ip in ips {
                self.cluster_ips.remove(&ip);
            }
        }
    }

    /// An Endpoints object, or an EndpointSlice (`key` the slice, `service` its Service),
    /// was created or changed.
    pub fn apply_endpoints(&mut self, key: Key, service: Key, addresses: Vec<EndpointAddress>) {
        if !self.admit(self.endpoints.contains_key(&key)) {
            return;
        }
        self.delete_endpoints(&key);
        let (ns, name): (Name, Name) =
            (Arc::from(service.0.as_str()), Arc::from(service.1.as_str()));
        for a in &addresses {
            let services = self.endpoint_ips.entry(a.ip).or_default();
            services.push((Arc::clone(&ns), Arc::clone(&name), a.ports.clone()));
            services.sort();
        }
        self.endpoints.insert(key, (service, addresses));
    }

    /// An Endpoints object or EndpointSlice was deleted.
    pub fn delete_endpoints(&mut self, key: &Key) {
        let Some(((ns, name), addresses)) = self.endpoints.remove(key) else {
            return;
        };
        for a in addresses {
            if let Some(services) = self.endpoint_ips.get_mut(&a.ip) {
                if let Some(i) = services
                    .iter()
                    .position(|(n, s, p)| **n == *ns && **s == *name && *p == a.ports)
                {
                    services.remove(i);
                }
                if services.is_empty() {
                    self.endpoint_ips.remove(&a.ip);
                }
            }
        }
    }

    /// A ReplicaSet or Job (`kind`) was created or changed; `controller` is its controller
    /// ownerReference (kind, name).
    pub fn apply_owner(&mut self, kind: Kind, key: Key, controller: Option<(String, String)>) {
        let k: (Kind, Name, Name) = (kind, Arc::from(key.0), Arc::from(key.1));
        if !self.admit(self.owners.contains_key(&k)) {
            return;
        }
        let controller = controller.map(|(kind, name)| {
            let kind = match kind.as_str() {
                "Deployment" => Arc::clone(&self.kinds.deployment),
                "CronJob" => Arc::clone(&self.kinds.cron_job),
                _ => Arc::from(kind.as_str()),
            };
            (kind, Arc::from(name.as_str()))
        });
        self.owners.insert(k, controller);
    }

    /// A Node was created or changed; `ips` are its addresses.
    pub fn apply_node(&mut self, name: String, ips: Vec<IpAddr>) {
        if !self.admit(self.nodes.contains_key(&name)) {
            return;
        }
        self.delete_node(&name);
        let shared: Name = Arc::from(name.as_str());
        for ip in &ips {
            self.node_ips.insert(*ip, Arc::clone(&shared));
        }
        self.nodes.insert(name, ips);
    }

    /// A Node was deleted.
    pub fn delete_node(&mut self, name: &str) {
        if let Some(ips) = self.nodes.remove(name) {
            for ip in ips {
                self.node_ips.remove(&ip);
            }
        }
    }

    /// Drops holdings released more than [`HISTORY_NS`] ago (at most once a minute).
    fn prune(&mut self, now_ns: i64) {
        if now_ns - self.last_prune_ns < 60_000_000_000 {
            return;
        }
        self.last_prune_ns = now_ns;
        let keep = |h: &Holding| h.to_ns > now_ns - HISTORY_NS;
        self.ips.retain(|_, hs| {
            hs.retain(keep);
            !hs.is_empty()
        });
        self.host_ports.retain(|_, hs| {
            hs.retain(keep);
            !hs.is_empty()
        });
    }

    /// The Kubernetes identity of a row's ends. The local end (the client for `role`
    /// client) is found by its process's cgroup first, then, like the remote end, by
    /// address at `ts_ns`.
    pub fn resolve(&self, cgroup_id: u64, role: Role, ends: &Endpoints, ts_ns: i64) -> Ends {
        let local_by_cgroup = self
            .cgroups
            .get(&cgroup_id)
            .and_then(|uid| self.pods.get(uid))
            .map(|p| &p.name);
        let (src_cgroup, dst_cgroup) = match role {
            Role::Client => (local_by_cgroup, None),
            Role::Server => (None, local_by_cgroup),
        };
        Ends {
            cgroup: Arc::clone(&Ends::none().cgroup),
            src: self.end(src_cgroup, ends.src_ip, ends.src_port, None, ts_ns),
            dst: self.end(
                dst_cgroup,
                ends.dst_ip,
                ends.dst_port,
                Some(ends.dst_port),
                ts_ns,
            ),
        }
    }

    /// One end: a pod (by cgroup, else by address), a dialled Service, or a node.
    fn end(
        &self,
        by_cgroup: Option<&Arc<PodName>>,
        ip: IpAddr,
        port: u16,
        service_port: Option<u16>,
        ts_ns: i64,
    ) -> EndMeta {
        let mut meta = EndMeta::default();
        let by_ip = find(self.ips.get(&ip), ts_ns);
        let pod = by_cgroup
            .or(by_ip)
            .or_else(|| find(self.host_ports.get(&(ip, port)), ts_ns));
        if let Some(pod) = pod {
            let (workload, kind) = self.workload(pod);
            meta.pod = Arc::clone(&pod.name);
            meta.namespace = Arc::clone(&pod.namespace);
            meta.workload = workload;
            meta.workload_kind = kind;
        } else if let Some(node) = self.node_ips.get(&ip) {
            meta.workload = Arc::clone(node);
            meta.workload_kind = Arc::clone(&self.kinds.node);
        }
        // The Service dialled (only the server end dials one), else one whose endpoints
        // hold the address (serving that port, when the port is known).
        if let Some((ns, name)) = service_port.and_then(|_| self.cluster_ips.get(&ip)) {
            meta.service = Arc::clone(name);
            if meta.pod.is_empty() {
                meta.namespace = Arc::clone(ns);
            }
        } else if let Some(services) = self
            .endpoint_ips
            .get(&by_cgroup.and_then(|p| p.ips.first().copied()).unwrap_or(ip))
        {
            let serving = |ports: &Vec<u16>| {
                service_port.is_none_or(|p| ports.is_empty() || ports.contains(&p))
            };
            // A pod's own address belongs to its Services whatever the port; a node's
            // address (hostNetwork endpoints) only for the ports they serve.
            let own_address = by_ip.is_some() || by_cgroup.is_some_and(|p| !p.ips.is_empty());
            let chosen = services
                .iter()
                .find(|(_, _, ports)| serving(ports))
                .or_else(|| own_address.then(|| services.first()).flatten());
            if let Some((ns, name, _)) = chosen
                && (meta.namespace.is_empty() || **ns == *meta.namespace)
            {
                meta.service = Arc::clone(name);
                if meta.namespace.is_empty() {
                    meta.namespace = Arc::clone(ns);
                }
            }
        }
        meta
    }

    /// A pod's workload: its controller, followed one level up for ReplicaSets (to their
    /// Deployment) and Jobs (to their CronJob); the pod itself when it has no controller.
    fn workload(&self, pod: &PodName) -> (Name, Name) {
        let Some((kind, name)) = &pod.owner else {
            return (Arc::clone(&pod.name), Arc::clone(&self.kinds.pod));
        };
        let owner_kind = match &**kind {
            "ReplicaSet" => Some(Kind::ReplicaSet),
            "Job" => Some(Kind::Job),
            _ => None,
        };
        if let Some(k) = owner_kind {
            // Shared names as the key: no allocation per row.
            let key = (k, Arc::clone(&pod.namespace), Arc::clone(name));
            match self.owners.get(&key) {
                Some(Some((top_kind, top))) => return (Arc::clone(top), Arc::clone(top_kind)),
                Some(None) => {}
                // A ReplicaSet not seen yet: Deployments name theirs NAME-HASH, and label
                // their pods with the HASH.
                None if k == Kind::ReplicaSet => {
                    if let Some(deployment) = pod
                        .template_hash
                        .as_deref()
                        .and_then(|h| name.strip_suffix(h)?.strip_suffix('-'))
                    {
                        return (Arc::from(deployment), Arc::clone(&self.kinds.deployment));
                    }
                }
                None => {}
            }
        }
        (Arc::clone(name), Arc::clone(kind))
    }
}

/// The addresses a pod holds: pod IPs, or for hostNetwork pods node IP and port pairs.
fn addresses(facts: &PodFacts) -> (Vec<IpAddr>, Vec<(IpAddr, u16)>) {
    if facts.host_network {
        let pairs = facts
            .ips
            .iter()
            .flat_map(|ip| facts.ports.iter().map(move |p| (*ip, *p)))
            .collect();
        (Vec::new(), pairs)
    } else {
        (facts.ips.clone(), Vec::new())
    }
}

/// `uid` holds `key` from `from_ns`: after the previous holder let it go, and from now if
/// that holder still has it (its deletion has not arrived yet: it ends now).
fn hold<K: std::hash::Hash + Eq>(
    map: &mut Map<K, Vec<Holding>>,
    key: K,
    uid: &Name,
    pod: &Arc<PodName>,
    from_ns: i64,
    now_ns: i64,
) {
    let holdings = map.entry(key).or_default();
    let mut from_ns = from_ns;
    if let Some(last) = holdings.last_mut() {
        if last.uid == *uid && last.to_ns == i64::MAX {
            last.pod = Arc::clone(pod);
            return;
        }
        if last.to_ns == i64::MAX {
            last.to_ns = now_ns.max(last.from_ns);
        }
        from_ns = from_ns.max(last.to_ns);
    }
    holdings.push(Holding {
        uid: Arc::clone(uid),
        pod: Arc::clone(pod),
        from_ns,
        to_ns: i64::MAX,
    });
    if holdings.len() > HOLDINGS_PER_ADDRESS {
        holdings.remove(0);
    }
}

/// `uid` let `key` go at `now_ns`.
fn release<K: std::hash::Hash + Eq>(
    map: &mut Map<K, Vec<Holding>>,
    key: K,
    uid: &Name,
    now_ns: i64,
) {
    if let Some(h) = map.get_mut(&key).and_then(|hs| {
        hs.iter_mut()
            .rev()
            .find(|h| h.uid == *uid && h.to_ns == i64::MAX)
    }) {
        h.to_ns = now_ns.max(h.from_ns);
    }
}

/// The pod that held an address at `ts_ns`, or the nearest within [`GRACE_NS`].
fn find(holdings: Option<&Vec<Holding>>, ts_ns: i64) -> Option<&Arc<PodName>> {
    let holdings = holdings?;
    if let Some(h) = holdings
        .iter()
        .rev()
        .find(|h| h.from_ns <= ts_ns && ts_ns < h.to_ns)
    {
        return Some(&h.pod);
    }
    holdings
        .iter()
        .map(|h| {
            let distance = if ts_ns < h.from_ns {
                h.from_ns - ts_ns
            } else {
                ts_ns - h.to_ns + 1
            };
            (distance, h)
        })
        .filter(|(d, _)| *d <= GRACE_NS)
        .min_by_key(|(d, _)| *d)
        .map(|(_, h)| &h.pod)
}

#[cfg(test)]
mod tests;
