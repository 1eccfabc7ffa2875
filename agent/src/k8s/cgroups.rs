//! cgroup id -> container id: a walk of the cgroup v2 tree.
//!
//! The programs give every event its task's cgroup id (`bpf_get_current_cgroup_id`): on
//! cgroup v2 that is the inode number of the cgroup's directory. Container runtimes name a
//! container's directory after its id, whatever the cgroup driver:
//!
//! - systemd: `.../kubepods-burstable-pod<uid>.slice/cri-containerd-<id>.scope`
//!   (`docker-<id>.scope`, `crio-<id>.scope`);
//! - cgroupfs: `.../kubepods/burstable/pod<uid>/<id>`.
//!
//! So a walk that stats each directory maps ids to containers; the pods' containerStatuses map
//! containers to pods ([`super::index::Index::apply_cgroup_scan`]).

use std::{
    io,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

/// Deepest directory visited below the root (kubelet's trees are 5-6 deep).
const MAX_DEPTH: usize = 12;

/// What a walk found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Scan {
    /// Container id and the cgroup id of its directory.
    pub containers: Vec<(String, u64)>,
    /// cgroup ids of the other directories.
    pub others: Vec<u64>,
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
    let mut stack: Vec<(PathBuf, usize)> = vec![(root.to_path_buf(), 0)];
    let mut visited = 0usize;
    // The root itself must be readable: an error there is the caller's to report.
    std::fs::read_dir(root)?;
    while let Some((dir, depth)) = stack.pop() {
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
            match name.to_str().and_then(container_id) {
                Some(id) => found.containers.push((id.to_owned(), meta.ino())),
                None => found.others.push(meta.ino()),
            }
            if depth + 1 < MAX_DEPTH {
                stack.push((entry.path(), depth + 1));
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
        let scan_all = scan(&root, 100).unwrap();
        assert_eq!(
            scan_all.containers,
            vec![(
                ID.to_owned(),
                ino(&pod.join(format!("cri-containerd-{ID}.scope")))
            )]
        );
        let mut others = scan_all.others.clone();
        others.sort();
        let mut expected = vec![
            ino(&root.join("kubepods")),
            ino(&pod),
            ino(&pod.join("other")),
        ];
        expected.sort();
        assert_eq!(others, expected);
        assert!(!scan_all.truncated);
        let bounded = scan(&root, 2).unwrap();
        assert!(bounded.truncated);
        assert_eq!(bounded.containers.len() + bounded.others.len(), 2);
        assert!(scan(&root.join("missing"), 10).is_err());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
