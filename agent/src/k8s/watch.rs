//! The API server side: a client from a kubeconfig or the in-cluster config, and one watcher
//! per kind feeding [`super::Index`].
//!
//! Watchers list, then watch; on any error they back off (kube's default: exponential, up to
//! a few minutes) and relist. Until a relist is complete the index keeps what it had: losing
//! the API server leaves rows enriched with the last-known metadata. After a relist, objects
//! it no longer holds are removed. Only the fields rows need are kept, never whole objects.

use std::{collections::HashSet, net::IpAddr, path::Path, sync::Arc, time::Duration};

use anyhow::Context as _;
use futures::{Stream, StreamExt};
use k8s_openapi::{
    api::{
        apps::v1::ReplicaSet,
        batch::v1::Job,
        core::v1::{Endpoints, Node, Pod, Service},
        discovery::v1::EndpointSlice,
    },
    apimachinery::pkg::apis::meta::v1::ObjectMeta,
};
use kube::{
    Api, Client, Config,
    api::PartialObjectMeta,
    config::{KubeConfigOptions, Kubeconfig},
    runtime::{WatchStreamExt, watcher},
};

use super::{
    Kubernetes,
    index::{EndpointAddress, Index, Key, Kind, PodFacts},
    now_ns,
};

/// A client for the cluster: from `kubeconfig`, else from the in-cluster config when the
/// agent runs in a pod; `None` (host mode) otherwise.
pub async fn client(kubeconfig: Option<&Path>) -> anyhow::Result<Option<Client>> {
    let config = match kubeconfig {
        Some(path) => {
            let file = Kubeconfig::read_from(path)
                .with_context(|| format!("cannot read kubeconfig {}", path.display()))?;
            Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                .await
                .with_context(|| format!("kubeconfig {} is not usable", path.display()))?
        }
        None if std::env::var_os("KUBERNETES_SERVICE_HOST").is_some() => {
            Config::incluster().context("in-cluster Kubernetes config is not usable")?
        }
        None => return Ok(None),
    };
    let cluster = config.cluster_url.to_string();
    let client = Client::try_from(config).context("cannot build a Kubernetes client")?;
    tracing::info!(%cluster, "Kubernetes enrichment on");
    Ok(Some(client))
}

/// Starts every watcher and the cgroup scanner on the current runtime.
pub fn spawn(client: Client, k8s: Arc<Kubernetes>) {
    let c = || client.clone();
    tokio::spawn(follow(
        Api::<Node>::all(c()),
        Arc::clone(&k8s),
        Kind::Node,
        |ix, node: Node, _| {
            if let Some(name) = node.metadata.name {
                ix.apply_node(name, node_ips(node.status.as_ref()));
            }
        },
    ));
    tokio::spawn(follow_metadata::<ReplicaSet>(
        c(),
        Arc::clone(&k8s),
        Kind::ReplicaSet,
    ));
    tokio::spawn(follow_metadata::<Job>(c(), Arc::clone(&k8s), Kind::Job));
    tokio::spawn(follow(
        Api::<Service>::all(c()),
        Arc::clone(&k8s),
        Kind::Service,
        |ix, svc: Service, _| {
            if let Some(key) = key(&svc.metadata) {
                ix.apply_service(key, service_ips(&svc));
            }
        },
    ));
    tokio::spawn(follow_endpoints(c(), Arc::clone(&k8s)));
    let node = k8s.node.clone();
    tokio::spawn(follow(
        Api::<Pod>::all(c()),
        Arc::clone(&k8s),
        Kind::Pod,
        move |ix, pod: Pod, now| {
            let local = pod
                .spec
                .as_ref()
                .and_then(|s| s.node_name.as_deref())
                .is_some_and(|n| n == node);
            if let Some(facts) = pod_facts(&pod) {
                let new_containers = local
                    && facts
                        .container_ids
                        .iter()
                        .any(|id| ix.cgroup_of(id).is_none());
                ix.apply_pod(facts, now);
                if new_containers {
                    ix.want_scan();
                }
            }
        },
    ));
    tokio::spawn(super::probe(client, k8s));
}

/// What a watcher can follow: an API object kube can list, watch and decode.
trait Watched:
    kube::Resource<DynamicType = ()>
    + Clone
    + serde::de::DeserializeOwned
    + std::fmt::Debug
    + Send
    + 'static
{
}

impl<K> Watched for K where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + 'static
{
}

/// The key [`Index::keys`] uses for an object.
fn index_key(kind: Kind, meta: &ObjectMeta) -> Option<String> {
    match kind {
        Kind::Pod => meta.uid.clone(),
        Kind::Node => meta.name.clone(),
        _ => key(meta).map(|(ns, name)| format!("{ns}/{name}")),
    }
}

fn key(meta: &ObjectMeta) -> Option<(String, String)> {
    Some((meta.namespace.clone()?, meta.name.clone()?))
}

/// Follows one kind: applies objects as they come, removes deleted ones, and after every
/// (re)list removes what the list no longer holds.
async fn follow<K>(
    api: Api<K>,
    k8s: Arc<Kubernetes>,
    kind: Kind,
    apply: impl Fn(&mut Index, K, i64) + Send + 'static,
) where
    K: Watched,
{
    let events = watcher(api, watcher::Config::default()).default_backoff();
    run(events, k8s, kind, apply).await;
}

/// As [`follow`], for kinds of which only the owner references count (metadata only).
async fn follow_metadata<K>(client: Client, k8s: Arc<Kubernetes>, kind: Kind)
where
    K: Watched,
{
    let api = Api::<PartialObjectMeta<K>>::all(client);
    follow(api, k8s, kind, move |ix, m: PartialObjectMeta<K>, _| {
        if let Some(key) = key(&m.metadata) {
            ix.apply_owner(kind, key, controller(&m.metadata));
        }
    })
    .await;
}

async fn run<T, S>(
    events: S,
    k8s: Arc<Kubernetes>,
    kind: Kind,
    apply: impl Fn(&mut Index, T, i64) + Send + 'static,
) where
    S: Stream<Item = Result<watcher::Event<T>, watcher::Error>> + Send,
    T: kube::Resource + Send,
{
    futures::pin_mut!(events);
    // Keys listed since the last Init: what a relist no longer holds is removed at InitDone.
    let mut listed: Option<HashSet<String>> = None;
    while let Some(event) = events.next().await {
        let now = now_ns();
        match event {
            Ok(watcher::Event::Init) => listed = Some(HashSet::new()),
            Ok(watcher::Event::InitApply(obj)) => {
                if let (Some(seen), Some(key)) = (listed.as_mut(), index_key(kind, obj.meta())) {
                    seen.insert(key);
                }
                k8s.update(|ix| apply(ix, obj, now));
            }
            Ok(watcher::Event::InitDone) => {
                let seen = listed.take().unwrap_or_default();
                k8s.update(|ix| {
                    for key in ix.keys(kind) {
                        if !seen.contains(&key) {
                            ix.remove(kind, &key, now);
                        }
                    }
                });
                k8s.set_state(kind, Ok(()));
            }
            Ok(watcher::Event::Apply(obj)) => {
                k8s.set_state(kind, Ok(()));
                k8s.update(|ix| apply(ix, obj, now));
            }
            Ok(watcher::Event::Delete(obj)) => {
                if let Some(key) = index_key(kind, obj.meta()) {
                    k8s.update(|ix| ix.remove(kind, &key, now));
                }
            }
            Err(e) => k8s.set_state(kind, Err(e.to_string())),
        }
    }
}

/// EndpointSlices (discovery.k8s.io/v1) where the API server serves them, else core/v1
/// Endpoints (API servers before 1.21).
async fn follow_endpoints(client: Client, k8s: Arc<Kubernetes>) {
    let mut wait = Duration::from_secs(1);
    let slices = loop {
        match client.list_api_group_resources("discovery.k8s.io/v1").await {
            Ok(list) => break list.resources.iter().any(|r| r.name == "endpointslices"),
            Err(kube::Error::Api(status)) if status.code == 404 => break false,
            Err(e) => {
                k8s.set_state(Kind::Endpoints, Err(e.to_string()));
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(Duration::from_secs(30));
            }
        }
    };
    tracing::info!(
        source = if slices {
            "discovery.k8s.io/v1 EndpointSlices"
        } else {
            "core/v1 Endpoints"
        },
        "Following Service endpoints"
    );
    if slices {
        follow(
            Api::<EndpointSlice>::all(client),
            k8s,
            Kind::Endpoints,
            |ix, slice: EndpointSlice, _| {
                if let Some((key, service, addresses)) = slice_addresses(&slice) {
                    ix.apply_endpoints(key, service, addresses);
                }
            },
        )
        .await;
    } else {
        follow(
            Api::<Endpoints>::all(client),
            k8s,
            Kind::Endpoints,
            |ix, ep: Endpoints, _| {
                if let Some(key) = key(&ep.metadata) {
                    ix.apply_endpoints(key.clone(), key, endpoints_addresses(&ep));
                }
            },
        )
        .await;
    }
}

/// The controller ownerReference: kind and name.
pub fn controller(meta: &ObjectMeta) -> Option<(String, String)> {
    meta.owner_references
        .as_ref()?
        .iter()
        .find(|o| o.controller == Some(true))
        .map(|o| (o.kind.clone(), o.name.clone()))
}

/// What the index keeps of a Pod; None without uid, namespace or name.
pub fn pod_facts(pod: &Pod) -> Option<PodFacts> {
    let meta = &pod.metadata;
    let spec = pod.spec.as_ref();
    let status = pod.status.as_ref();
    let mut ips: Vec<IpAddr> = status
        .and_then(|s| s.pod_ips.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|p| p.ip.parse().ok())
        .collect();
    if ips.is_empty()
        && let Some(ip) = status
            .and_then(|s| s.pod_ip.as_deref())
            .and_then(|s| s.parse().ok())
    {
        ips.push(ip);
    }
    let container_ids = status
        .into_iter()
        .flat_map(|s| {
            [
                &s.container_statuses,
                &s.init_container_statuses,
                &s.ephemeral_container_statuses,
            ]
        })
        .flatten()
        .flatten()
        .filter_map(|c| c.container_id.as_deref())
        .map(|id| id.rsplit("://").next().unwrap_or(id).to_owned())
        .collect();
    let ports = spec
        .into_iter()
        .flat_map(|s| &s.containers)
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| u16::try_from(p.container_port).ok())
        .collect();
    Some(PodFacts {
        uid: meta.uid.clone()?,
        namespace: meta.namespace.clone()?,
        name: meta.name.clone()?,
        owner: controller(meta),
        template_hash: meta
            .labels
            .as_ref()
            .and_then(|l| l.get("pod-template-hash"))
            .cloned(),
        created_ns: meta
            .creation_timestamp
            .as_ref()
            .map_or(0, |t| t.0.as_nanosecond() as i64),
        ips,
        host_network: spec.and_then(|s| s.host_network).unwrap_or(false),
        ports,
        container_ids,
    })
}

/// A Service's ClusterIPs (none for a headless one).
pub fn service_ips(svc: &Service) -> Vec<IpAddr> {
    let Some(spec) = &svc.spec else {
        return Vec::new();
    };
    let mut ips: Vec<IpAddr> = spec
        .cluster_ips
        .iter()
        .flatten()
        .chain(spec.cluster_ip.as_ref())
        .filter_map(|ip| ip.parse().ok())
        .collect();
    ips.sort();
    ips.dedup();
    ips
}

/// The ready addresses of an Endpoints object, with their subset's ports.
pub fn endpoints_addresses(ep: &Endpoints) -> Vec<EndpointAddress> {
    ep.subsets
        .iter()
        .flatten()
        .flat_map(|subset| {
            let ports: Vec<u16> = subset
                .ports
                .iter()
                .flatten()
                .filter_map(|p| u16::try_from(p.port).ok())
                .collect();
            subset.addresses.iter().flatten().filter_map(move |a| {
                Some(EndpointAddress {
                    ip: a.ip.parse().ok()?,
                    ports: ports.clone(),
                })
            })
        })
        .collect()
}

/// An EndpointSlice's key, its Service (label `kubernetes.io/service-name`) and its ready
/// addresses.
pub fn slice_addresses(slice: &EndpointSlice) -> Option<(Key, Key, Vec<EndpointAddress>)> {
    let key = key(&slice.metadata)?;
    let service = slice
        .metadata
        .labels
        .as_ref()?
        .get("kubernetes.io/service-name")?
        .clone();
    let ports: Vec<u16> = slice
        .ports
        .iter()
        .flatten()
        .filter_map(|p| p.port.and_then(|p| u16::try_from(p).ok()))
        .collect();
    let addresses = slice
        .endpoints
        .iter()
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) != Some(false))
        .flat_map(|e| &e.addresses)
        .filter_map(|a| {
            Some(EndpointAddress {
                ip: a.parse().ok()?,
                ports: ports.clone(),
            })
        })
        .collect();
    let namespace = key.0.clone();
    Some((key, (namespace, service), addresses))
}

/// A Node's internal and external addresses.
pub fn node_ips(status: Option<&k8s_openapi::api::core::v1::NodeStatus>) -> Vec<IpAddr> {
    status
        .and_then(|s| s.addresses.as_ref())
        .into_iter()
        .flatten()
        .filter(|a| a.type_ == "InternalIP" || a.type_ == "ExternalIP")
        .filter_map(|a| a.address.parse().ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_json<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn pod_objects_become_facts() {
        let pod: Pod = from_json(serde_json::json!({
            "metadata": {
                "uid": "u-1", "namespace": "shop", "name": "web-5d8f-abc",
                "creationTimestamp": "2026-01-01T00:00:10Z",
                "labels": {"pod-template-hash": "5d8f"},
                "ownerReferences": [
                    {"apiVersion": "v1", "kind": "Node", "name": "x", "uid": "n"},
                    {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-5d8f",
                     "uid": "r", "controller": true}
                ]
            },
            "spec": {"nodeName": "node-a", "containers": [
                {"name": "web", "ports": [{"containerPort": 8080}, {"containerPort": 9090}]},
                {"name": "side"}
            ]},
            "status": {
                "podIP": "10.244.0.9",
                "podIPs": [{"ip": "10.244.0.9"}, {"ip": "fd00::9"}],
                "containerStatuses": [
                    {"name": "web", "containerID": "containerd://aaa", "image": "i", "imageID": "",
                     "ready": true, "restartCount": 0},
                    {"name": "side", "image": "i", "imageID": "", "ready": false, "restartCount": 0}
                ],
                "initContainerStatuses": [
                    {"name": "init", "containerID": "cri-o://bbb", "image": "i", "imageID": "",
                     "ready": true, "restartCount": 0}
                ]
            }
        }));
        let facts = pod_facts(&pod).unwrap();
        assert_eq!(
            facts,
            PodFacts {
                uid: "u-1".into(),
                namespace: "shop".into(),
                name: "web-5d8f-abc".into(),
                owner: Some(("ReplicaSet".into(), "web-5d8f".into())),
                template_hash: Some("5d8f".into()),
                created_ns: 1_767_225_610_000_000_000,
                ips: vec!["10.244.0.9".parse().unwrap(), "fd00::9".parse().unwrap()],
                host_network: false,
                ports: vec![8080, 9090],
                container_ids: vec!["aaa".into(), "bbb".into()],
            }
        );
        let bare: Pod = from_json(serde_json::json!({"metadata": {"name": "x"}}));
        assert_eq!(pod_facts(&bare), None);
    }

    #[test]
    fn services_endpoints_slices_and_nodes() {
        let svc: Service = from_json(serde_json::json!({
            "metadata": {"namespace": "shop", "name": "db"},
            "spec": {"clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10", "fd00::a"]}
        }));
        assert_eq!(
            service_ips(&svc),
            vec![
                "10.96.0.10".parse::<IpAddr>().unwrap(),
                "fd00::a".parse().unwrap()
            ]
        );
        let headless: Service = from_json(serde_json::json!({
            "metadata": {"namespace": "shop", "name": "h"}, "spec": {"clusterIP": "None"}
        }));
        assert_eq!(service_ips(&headless), Vec::<IpAddr>::new());
        let ep: Endpoints = from_json(serde_json::json!({
            "metadata": {"namespace": "shop", "name": "db"},
            "subsets": [{
                "addresses": [{"ip": "10.244.0.2"}],
                "notReadyAddresses": [{"ip": "10.244.0.3"}],
                "ports": [{"port": 5432}]
            }]
        }));
        assert_eq!(
            endpoints_addresses(&ep),
            vec![EndpointAddress {
                ip: "10.244.0.2".parse().unwrap(),
                ports: vec![5432]
            }]
        );
        let slice: EndpointSlice = from_json(serde_json::json!({
            "metadata": {"namespace": "shop", "name": "db-x1",
                         "labels": {"kubernetes.io/service-name": "db"}},
            "addressType": "IPv4",
            "endpoints": [
                {"addresses": ["10.244.0.2"], "conditions": {"ready": true}},
                {"addresses": ["10.244.0.3"], "conditions": {"ready": false}}
            ],
            "ports": [{"port": 5432}]
        }));
        assert_eq!(
            slice_addresses(&slice),
            Some((
                ("shop".into(), "db-x1".into()),
                ("shop".into(), "db".into()),
                vec![EndpointAddress {
                    ip: "10.244.0.2".parse().unwrap(),
                    ports: vec![5432]
                }]
            ))
        );
        let node: Node = from_json(serde_json::json!({
            "metadata": {"name": "node-a"},
            "status": {"addresses": [
                {"type": "InternalIP", "address": "192.168.0.5"},
                {"type": "Hostname", "address": "node-a"},
                {"type": "ExternalIP", "address": "203.0.113.5"}
            ]}
        }));
        assert_eq!(
            node_ips(node.status.as_ref()),
            vec![
                "192.168.0.5".parse::<IpAddr>().unwrap(),
                "203.0.113.5".parse().unwrap()
            ]
        );
    }
}
