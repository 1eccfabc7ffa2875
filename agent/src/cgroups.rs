//! cgroup ids -> cgroup paths and container ids: a walk of the cgroup v2 tree.
//!
//! The programs give every event its task's cgroup id (`bpf_get_current_cgroup_id`): on
//! cgroup v2 that is the inode number of the cgroup's directory. Rows name the local process's
//! cgroup by its path (the `cgroup` column: `/system.slice/nginx.service`, a container's
//! scope), in host mode as under Kubernetes. Container runtimes name a container's directory
//! after its id, whatever the cgroup driver:
//!
//! - systemd: `.../kubepods-burstable-pod<uid>.slice/cri-containerd-<id>.scope`
//!   (`docker-<id>.scope`, `crio-<id>.scope`);
//! - cgroupfs: `.../kubepods/burstable/pod<uid>/<id>`.
//!
//! So a walk that stats each directory maps ids to paths and containers; the pods'
//! containerStatuses map containers to pods ([`crate::k8s::index::Index::apply_cgroup_scan`]).
//! The walk runs at start and again when rows meet a cgroup it did not see (a new service or
//! container), at most every [`SCAN_EVERY`].

use std::{
    collections::{HashMap, HashSet},
    io,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex, PoisonError, RwLock,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use crate::k8s::Kubernetes;

/// Deepest directory visited below the root (kubelet's trees are 5-6 deep).
const MAX_DEPTH: usize = 12;

/// Most directories one walk visits.
const SCAN_MAX_DIRS: usize = 200_000;

/// Shortest time between two walks.
pub const SCAN_EVERY: Duration = Duration::from_millis(500);

/// Most cgroup ids remembered as not found by a walk (so that they do not ask for another).
const MISSING_MAX: usize = 4096;

/// What a walk found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Scan {
    /// Container id and the cgroup id of its directory.
    pub containers: Vec<(String, u64)>,
    /// Every directory (the root included): cgroup id and path below the root (`/a/b`).
    pub dirs: Vec<(u64, String)>,
    /// The walk stopped at its bound of directories.
    pub truncated: bool,
}

/// The container id a cgroup directory is named after: 64 hex digits, alone or between a
/// runtime prefix (`cri-containerd-`, `docker-`, `crio-`) and `.scope`. conmon's directories
/// (`crio-conmon-<id>.scope`) are not the container's.
pub fn container_id(dir_name: &str) -> Option<&str> {
    let stem = dir_name.strip_suffix(".scope").unwrap_or(dir_name);
    let id = stem.rsplit('-').next()?;
    let hex = id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit());
    (hex && !stem.contains("conmon")).then_some(id)
}

/// Walks the cgroup v2 tree at `root`, visiting at most `max_dirs` directories.
pub fn scan(root: &Path, max_dirs: usize) -> io::Result<Scan> {
    let mut found = Scan::default();
    let mut stack: Vec<(PathBuf, String, usize)> = vec![(root.to_path_buf(), String::new(), 0)];
    let mut visited = 0usize;
    // The root itself must be readable: an error there is the caller's to report.
    std::fs::read_dir(root)?;
    found
        .dirs
        .push((std::fs::metadata(root)?.ino(), "/".to_owned()));
    while let Some((dir, path, depth)) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            // Removed meanwhile (a container ended): not an error.
            continue;
        };
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if !kind.is_dir() {
                continue;
            }
            if visited >= max_dirs {
                found.truncated = true;
                return Ok(found);
            }
            visited += 1;
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if let Some(id) = container_id(&name) {
                found.containers.push((id.to_owned(), meta.ino()));
            }
            let path = format!("{path}/{name}");
            found.dirs.push((meta.ino(), path.clone()));
            if depth + 1 < MAX_DEPTH {
                stack.push((entry.path(), path, depth + 1));
            }
        }
    }
    Ok(found)
}

/// The cgroup v2 tree of this host: `/sys/fs/cgroup/unified` on hybrid hosts, else
/// `/sys/fs/cgroup`.
pub fn default_root() -> PathBuf {
    let unified = Path::new("/sys/fs/cgroup/unified");
    if unified.join("cgroup.procs").exists() {
        unified.to_path_buf()
    } else {
        PathBuf::from("/sys/fs/cgroup")
    }
}

/// cgroup id -> path, from the last walk; shared by the capture thread (which reads it for
/// every row) and the walker.
#[derive(Debug)]
pub struct CgroupNames {
    root: PathBuf,
    /// Read for every row: a fast hasher (foldhash) over kernel-chosen ids.
    names: RwLock<HashMap<u64, Arc<str>, foldhash::fast::RandomState>>,
    /// ids rows met that no walk has looked for yet, and those a walk did not find (not
    /// looked for again: a cgroup removed before the walk).
    asked: Mutex<(HashSet<u64>, HashSet<u64>)>,
    /// A row met an id no walk has looked for yet.
    unknown: AtomicBool,
}

impl CgroupNames {
    /// Names of the cgroup v2 tree at `root`, empty until the first walk.
    pub fn new(root: PathBuf) -> Self {
        Self {
            root,
            names: RwLock::new(HashMap::default()),
            asked: Mutex::new((HashSet::new(), HashSet::new())),
            unknown: AtomicBool::new(false),
        }
    }

    /// The path of cgroup `id`; an id the walks have not seen asks for another walk.
    pub fn name(&self, id: u64) -> Option<Arc<str>> {
        if id == 0 {
            return None;
        }
        let found = self
            .names
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&id)
            .cloned();
        if found.is_none() {
            let mut asked = self.asked.lock().unwrap_or_else(PoisonError::into_inner);
            let (pending, missing) = &mut *asked;
            if !missing.contains(&id) && pending.len() < MISSING_MAX {
                pending.insert(id);
                self.unknown.store(true, Ordering::Relaxed);
            }
        }
        found
    }

    /// Walks the tree and replaces the names; ids asked for before the walk that it did not
    /// find are remembered as missing (a cgroup gone before the walk).
    pub fn rescan(&self) -> io::Result<Scan> {
        let asked_before: Vec<u64> = {
            let mut asked = self.asked.lock().unwrap_or_else(PoisonError::into_inner);
            self.unknown.store(false, Ordering::Relaxed);
            asked.0.drain().collect()
        };
        let scan = scan(&self.root, SCAN_MAX_DIRS)?;
        if scan.truncated {
            tracing::warn!(root = %self.root.display(), max = SCAN_MAX_DIRS, "cgroup tree larger than the walk's bound; some cgroups are not named");
        }
        let names: HashMap<u64, Arc<str>, foldhash::fast::RandomState> = scan
            .dirs
            .iter()
            .map(|(id, path)| (*id, Arc::from(path.as_str())))
            .collect();
        {
            let mut asked = self.asked.lock().unwrap_or_else(PoisonError::into_inner);
            let missing = &mut asked.1;
            if missing.len() >= MISSING_MAX {
                missing.clear();
            }
            missing.extend(
                asked_before
                    .into_iter()
                    .filter(|id| !names.contains_key(id)),
            );
        }
        *self.names.write().unwrap_or_else(PoisonError::into_inner) = names;
        Ok(scan)
    }

    /// The tree's root.
    pub fn root(&self) -> &Path {
        &self.root
    }
}

/// Walks the cgroup tree at start and whenever rows met an unknown cgroup or a local pod
/// gained a container (at most every [`SCAN_EVERY`]); hands the containers to `kubernetes`.
pub async fn follow(names: Arc<CgroupNames>, kubernetes: Option<Arc<Kubernetes>>) {
    let mut failing = false;
    let mut first = true;
    loop {
        let asked = names.unknown.load(Ordering::Relaxed);
        let wanted = kubernetes.as_ref().is_some_and(|k| k.take_scan_wanted());
        if first || asked || wanted {
            first = false;
            let n = Arc::clone(&names);
            match tokio::task::spawn_blocking(move || n.rescan()).await {
                Ok(Ok(scan)) => {
                    failing = false;
                    if let Some(k) = &kubernetes {
                        k.apply_cgroup_scan(scan.containers);
                    }
                }
                Ok(Err(e)) if !failing => {
                    failing = true;
                    tracing::warn!(root = %names.root.display(), error = %e, "Cannot walk the cgroup tree (--cgroup-root): rows name no cgroup, and local ends are named by address only");
                }
                _ => {}
            }
        }
        tokio::time::sleep(SCAN_EVERY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "4f1c9e0b8a7d6c5b4a3928171615141312111009080706050403020100ffeedd";

    #[test]
    fn container_ids_from_every_driver_and_runtime() {
        assert_eq!(
            container_id(&format!("cri-containerd-{ID}.scope")),
            Some(ID)
        );
        assert_eq!(container_id(&format!("docker-{ID}.scope")), Some(ID));
        assert_eq!(container_id(&format!("crio-{ID}.scope")), Some(ID));
        assert_eq!(container_id(ID), Some(ID));
        assert_eq!(container_id(&format!("crio-conmon-{ID}.scope")), None);
        assert_eq!(container_id("kubepods-burstable-pod1234.slice"), None);
        assert_eq!(container_id(&ID[1..]), None);
        assert_eq!(container_id(&format!("{}g", &ID[1..])), None);
        assert_eq!(container_id("system.slice"), None);
    }

    #[test]
    fn a_walk_of_a_real_cgroup_tree() {
        // Any directory tree walks the same way; the e2e test walks a real cgroup v2 one.
        let root = std::env::temp_dir().join(format!("kindling-cgscan-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let pod = root.join("kubepods").join("podabc");
        std::fs::create_dir_all(pod.join(format!("cri-containerd-{ID}.scope"))).unwrap();
        std::fs::create_dir_all(pod.join("other")).unwrap();
        std::fs::write(pod.join("cgroup.procs"), "").unwrap();
        let ino = |p: &Path| std::fs::metadata(p).unwrap().ino();
        let scope = pod.join(format!("cri-containerd-{ID}.scope"));
        let scan_all = scan(&root, 100).unwrap();
        assert_eq!(scan_all.containers, vec![(ID.to_owned(), ino(&scope))]);
        let mut dirs = scan_all.dirs.clone();
        dirs.sort();
        let mut expected = vec![
            (ino(&root), "/".to_owned()),
            (ino(&root.join("kubepods")), "/kubepods".to_owned()),
            (ino(&pod), "/kubepods/podabc".to_owned()),
            (ino(&pod.join("other")), "/kubepods/podabc/other".to_owned()),
            (
                ino(&scope),
                format!("/kubepods/podabc/cri-containerd-{ID}.scope"),
            ),
        ];
        expected.sort();
        assert_eq!(dirs, expected);
        assert!(!scan_all.truncated);
        let bounded = scan(&root, 2).unwrap();
        assert!(bounded.truncated);
        // The root and two below it.
        assert_eq!(bounded.dirs.len(), 3);
        // Names: known after a walk; an unknown id asks for a walk until one did not find it.
        let names = CgroupNames::new(root.clone());
        assert_eq!(names.name(ino(&pod)), None);
        assert!(names.unknown.load(Ordering::Relaxed));
        names.rescan().unwrap();
        assert!(!names.unknown.load(Ordering::Relaxed));
        assert_eq!(names.name(ino(&pod)).as_deref(), Some("/kubepods/podabc"));
        assert_eq!(names.name(ino(&root)).as_deref(), Some("/"));
        assert_eq!(names.name(0), None);
        assert_eq!(names.name(999_999_999), None);
        assert!(names.unknown.load(Ordering::Relaxed));
        names.rescan().unwrap();
        // Not found by the walk it asked for: it asks no more.
        assert_eq!(names.name(999_999_999), None);
        assert!(!names.unknown.load(Ordering::Relaxed));
        assert!(scan(&root.join("missing"), 10).is_err());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
