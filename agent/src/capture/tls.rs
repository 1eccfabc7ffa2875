//! The OpenSSL libraries and Go binaries to probe, and their uprobes (the programs are
//! `agent-ebpf/src/tls.rs`).
//!
//! A uprobe is set on a file (its inode), not on a process: one attachment per file covers every
//! process that maps it, those started before the agent and after. The files are the
//! `libssl.so*` that running processes map (`/proc/PID/maps`, opened through `/proc/PID/root`
//! so that a container's own copy is found in its image), those in the host's library
//! directories, and the processes' executables (`/proc/PID/exe`) that are Go programs with
//! `crypto/tls` in their symbol table; each taken once by device and inode.

use std::{
    collections::HashSet,
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

use aya::{
    Ebpf,
    programs::{ProgramError, UProbe, uprobe::UProbeScope},
};

/// Where the host keeps shared libraries (Debian's multiarch directories first).
pub const HOST_LIBRARY_DIRS: [&str; 7] = [
    "/usr/lib/x86_64-linux-gnu",
    "/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/usr/lib64",
    "/lib64",
    "/usr/lib",
    "/usr/local/lib",
];

/// Most processes whose maps are read in one scan.
const MAX_PROCESSES: usize = 4096;

/// How often running processes are looked at again for libraries not probed yet.
pub const RESCAN_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// The entry programs and the functions they probe: (program, symbol, required). Libraries
/// older than OpenSSL 1.1.1 have no `_ex` forms.
const ENTRIES: [(&str, &str, bool); 4] = [
    ("ssl_write", "SSL_write", true),
    ("ssl_read", "SSL_read", true),
    ("ssl_write_ex", "SSL_write_ex", false),
    ("ssl_read_ex", "SSL_read_ex", false),
];
/// The return program, on every function an entry program probes.
const RETURN: &str = "ssl_return";

/// Where a library's writes and reads are probed when its exported wrappers share an internal
/// function each: (file offset of the write function, of the read function).
///
/// OpenSSL 3's `SSL_write` and `SSL_write_ex` (and `SSL_read`, `SSL_read_ex`) are thin wrappers
/// that `call` one internal function, `(SSL *, void *buf, size_t num, size_t *moved)`, which
/// starts by pushing registers. A probe on an instruction the kernel emulates (a push) costs one
/// trap; on the wrappers' first instruction (`sub $0x18,%rsp` in Debian's build) the kernel
/// also single-steps it out of line, a second trap, and its return probe fires a third
/// (BENCHMARKS.md, TLS). So the internal functions are probed when they can be found, in an
/// x86-64 library: the target of the first `call` of both wrappers of a pair, the same
/// function, in the library's `.text`, whose first instruction is a push. Otherwise the
/// exported functions are.
pub fn internal_sites(file: &Path) -> Option<(u64, u64)> {
    use object::{Object, ObjectSection, ObjectSymbol};
    let data = std::fs::read(file).ok()?;
    let elf = object::File::parse(&*data).ok()?;
    let text = elf.section_by_name(".text")?;
    let (text_addr, code) = (text.address(), text.data().ok()?);
    let (text_offset, _) = text.file_range()?;
    let symbol = |name: &str| {
        elf.dynamic_symbols()
            .find(|s| s.name() == Ok(name))
            .map(|s| (s.address(), s.size()))
    };
    let bytes_at = |addr: u64, len: u64| {
        let start = usize::try_from(addr.checked_sub(text_addr)?).ok()?;
        code.get(start..start.checked_add(usize::try_from(len).ok()?)?)
    };
    // Every `call rel32` (0xe8) target inside .text, in order.
    let calls = |name: &str| -> Option<Vec<u64>> {
        let (addr, size) = symbol(name)?;
        let body = bytes_at(addr, size)?;
        Some(
            (0..body.len().saturating_sub(4))
                .filter(|&i| body[i] == 0xe8)
                .filter_map(|i| {
                    let rel = i32::from_le_bytes(body[i + 1..i + 5].try_into().ok()?);
                    let next = addr.checked_add(i as u64 + 5)?;
                    let target = next.checked_add_signed(i64::from(rel))?;
                    bytes_at(target, 2).map(|_| target)
                })
                .collect(),
        )
    };
    let starts_with_push = |addr: u64| {
        matches!(
            bytes_at(addr, 2),
            Some([0x50..=0x57, _] | [0x41, 0x50..=0x57])
        )
    };
    // The first call of each wrapper (its main path; error paths come later), the same
    // function in both.
    let shared = |a: &str, b: &str| -> Option<u64> {
        let (a, b) = (*calls(a)?.first()?, *calls(b)?.first()?);
        (a == b && starts_with_push(a)).then(|| a - text_addr + text_offset)
    };
    if elf.architecture() != object::Architecture::X86_64 {
        return None;
    }
    Some((
        shared("SSL_write", "SSL_write_ex")?,
        shared("SSL_read", "SSL_read_ex")?,
    ))
}

/// Where a Go binary's TLS reads and writes are probed: file offsets of the first instruction
/// of the body (past the stack check) of `crypto/tls.(*Conn).Write` and of `Read`, and of every
/// `ret` instruction of `Read` (a write's plaintext is taken at its entry).
#[derive(Debug, PartialEq, Eq)]
pub struct GoSites {
    /// `(*Conn).Write`'s body.
    pub write: u64,
    /// `(*Conn).Read`'s body.
    pub read: u64,
    /// Every `ret` of `(*Conn).Read`.
    pub read_returns: Vec<u64>,
}

/// Why an executable is not probed as a Go TLS program.
#[derive(Debug, PartialEq, Eq)]
pub enum NotGoTls {
    /// Not a Go program (or not readable as one): ignored.
    NotGo,
    /// A Go program without `crypto/tls`: ignored.
    NoTls,
    /// A Go program that may use TLS but cannot be probed, and why (counted as failed).
    Unsupported(&'static str),
}

/// The Go version a `.go.buildinfo` section names, for the formats of Go >= 1.18 (the version
/// string inline after the 32-byte header); None for older formats or another section.
fn go_version(buildinfo: &[u8]) -> Option<&str> {
    const MAGIC: &[u8] = b"\xff Go buildinf:";
    if !buildinfo.starts_with(MAGIC) || buildinfo.get(15)? & 2 == 0 {
        return None;
    }
    // A uvarint length; a version string is far shorter than 128 bytes.
    let len = usize::from(*buildinfo.get(32)?);
    std::str::from_utf8(buildinfo.get(33..33 + len)?).ok()
}

/// Whether Go version `v` (`go1.N...`) passes arguments in registers on amd64 (Go >= 1.17; any
/// version [`go_version`] can read is >= 1.18, checked here all the same).
fn register_abi(v: &str) -> bool {
    let minor = v.strip_prefix("go1.").map(|rest| {
        rest.split(|c: char| !c.is_ascii_digit())
            .next()
            .and_then(|n| n.parse::<u32>().ok())
    });
    matches!(minor, Some(Some(m)) if m >= 17)
}

/// Where to probe the Go executable `file` for TLS plaintext ([`GoSites`]), read lazily from the
/// file (only its headers, the build info, the symbol table and the two functions' code).
pub fn go_sites(file: &Path) -> Result<GoSites, NotGoTls> {
    use iced_x86::{Decoder, DecoderOptions, Mnemonic};
    use object::{Object, ObjectSection, ObjectSymbol, read::ReadCache};
    let handle = std::fs::File::open(file).map_err(|_| NotGoTls::NotGo)?;
    let cache = ReadCache::new(handle);
    let elf = object::File::parse(&cache).map_err(|_| NotGoTls::NotGo)?;
    let buildinfo = elf
        .section_by_name(".go.buildinfo")
        .ok_or(NotGoTls::NotGo)?;
    if elf.architecture() != object::Architecture::X86_64 {
        return Err(NotGoTls::Unsupported("not x86-64"));
    }
    if elf.symbol_table().is_none() {
        return Err(NotGoTls::Unsupported("no symbol table (stripped)"));
    }
    let symbol = |name: &str| {
        let s = elf.symbols().find(|s| s.name() == Ok(name))?;
        Some((s.address(), s.size(), s.section_index()?))
    };
    let (Some(write), Some(read)) = (
        symbol("crypto/tls.(*Conn).Write"),
        symbol("crypto/tls.(*Conn).Read"),
    ) else {
        return Err(NotGoTls::NoTls);
    };
    let version = buildinfo.data().ok().and_then(go_version);
    if !version.is_some_and(register_abi) {
        return Err(NotGoTls::Unsupported("Go older than 1.18"));
    }
    // Each function's code, decoded from its start: the file offset of its body's first
    // instruction and of each `ret`. A Go function starts by comparing the stack pointer with
    // the goroutine's stack guard and branching, when the stack must grow, to a call of
    // `runtime.morestack` that starts the function over: the body begins after that branch, so
    // a probe there fires once per call (at the very first instruction it would fire again
    // after each growth). The registers hold the arguments there still.
    let sites = |(address, size, section): (u64, u64, object::SectionIndex)| {
        let section = elf.section_by_index(section).ok()?;
        let (section_offset, _) = section.file_range()?;
        let code = section.data_range(address, size).ok()??;
        let to_offset = |addr: u64| addr - section.address() + section_offset;
        let mut decoder = Decoder::with_ip(64, code, address, DecoderOptions::NONE);
        let (mut body, mut returns) = (None, Vec::new());
        for (i, instruction) in decoder.iter().enumerate() {
            if instruction.is_invalid() {
                return None;
            }
            if i < 4
                && body.is_none()
                && matches!(instruction.mnemonic(), Mnemonic::Jbe | Mnemonic::Jb)
            {
                body = Some(instruction.next_ip());
            }
            if instruction.mnemonic() == Mnemonic::Ret {
                returns.push(to_offset(instruction.ip()));
            }
        }
        let entry = to_offset(body.unwrap_or(address));
        (!returns.is_empty()).then_some((entry, returns))
    };
    let undecodable = || NotGoTls::Unsupported("crypto/tls code not decodable");
    let (write, _) = sites(write).ok_or_else(undecodable)?;
    let (read, read_returns) = sites(read).ok_or_else(undecodable)?;
    Ok(GoSites {
        write,
        read,
        read_returns,
    })
}

/// Whether `name` is an OpenSSL libssl file name (`libssl.so`, `libssl.so.3`, ...).
fn is_libssl(name: &str) -> bool {
    name == "libssl.so" || name.starts_with("libssl.so.")
}

/// Finds libssl files and executables not found before: the libraries mapped by processes not
/// looked at before and those in the host's library directories, and those processes'
/// executables. Each file is listed once, by device and inode, so a library mapped by many
/// processes, or named by a symlink, is probed once.
#[derive(Debug, Default)]
pub struct LibraryScan {
    files: HashSet<(u64, u64)>,
    pids: HashSet<u32>,
}

/// What one [`LibraryScan::scan`] found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Found {
    /// `libssl.so*` files.
    pub libraries: Vec<PathBuf>,
    /// Executables, to be looked at for Go's `crypto/tls` ([`go_sites`]).
    pub executables: Vec<PathBuf>,
}

impl LibraryScan {
    /// The files found since the last scan: first the libssl files mapped by the processes
    /// under `proc_root` (a `/proc`) that the last scan did not see, reached through each
    /// process's root, then those in `host_dirs`; and those processes' executables. At most
    /// [`MAX_PROCESSES`] new processes are read per scan; the rest wait for the next.
    pub fn scan(&mut self, proc_root: &Path, host_dirs: &[&Path]) -> Found {
        let mut found = Found::default();
        let files = &mut self.files;
        let mut take = |path: PathBuf, into: &mut Vec<PathBuf>| {
            if let Ok(meta) = std::fs::metadata(&path)
                && meta.is_file()
                && files.insert((meta.dev(), meta.ino()))
            {
                into.push(path);
            }
        };
        let mut live: Vec<u32> = std::fs::read_dir(proc_root)
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
            .collect();
        live.sort_unstable();
        // Processes gone are forgotten: a pid reused later is a new process to read.
        let alive: HashSet<u32> = live.iter().copied().collect();
        self.pids.retain(|pid| alive.contains(pid));
        let new = live
            .into_iter()
            .filter(|pid| !self.pids.contains(pid))
            .take(MAX_PROCESSES)
            .collect::<Vec<_>>();
        for pid in new {
            self.pids.insert(pid);
            let dir = proc_root.join(pid.to_string());
            // The executable as the process sees it (a link the kernel resolves in the
            // process's own mount namespace); kernel threads have none.
            take(dir.join("exe"), &mut found.executables);
            let Ok(maps) = std::fs::read_to_string(dir.join("maps")) else {
                continue;
            };
            let mapped: HashSet<&str> = maps
                .lines()
                .filter_map(|line| line.split_whitespace().nth(5))
                .filter(|path| {
                    path.starts_with('/')
                        && Path::new(path)
                            .file_name()
                            .and_then(|n| n.to_str())
                            .is_some_and(is_libssl)
                })
                .collect();
            for path in mapped {
                take(
                    dir.join("root").join(path.trim_start_matches('/')),
                    &mut found.libraries,
                );
            }
        }
        for dir in host_dirs {
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            let mut names: Vec<PathBuf> = entries
                .filter_map(|e| {
                    let e = e.ok()?;
                    is_libssl(e.file_name().to_str()?).then(|| e.path())
                })
                .collect();
            names.sort();
            for path in names {
                take(path, &mut found.libraries);
            }
        }
        found
    }
}

/// What attaching to one kind of file did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Probed {
    /// Files found.
    pub found: u64,
    /// Files whose reads and writes are probed.
    pub attached: u64,
    /// Files that could not be probed, with why.
    pub failed: Vec<(PathBuf, String)>,
}

impl Probed {
    /// Counts what probing `file`, a `kind`, did, and logs it.
    fn record(&mut self, kind: &str, file: &Path, result: Result<(), String>) {
        self.found += 1;
        match result {
            Ok(()) => {
                self.attached += 1;
                tracing::info!(file = %file.display(), "{kind} probed for TLS plaintext");
            }
            Err(e) => {
                tracing::warn!(file = %file.display(), error = %e, "{kind} not probed: its TLS stays encrypted");
                self.failed.push((file.to_path_buf(), e));
            }
        }
    }
}

/// What attaching to the OpenSSL libraries and the Go programs did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TlsAttach {
    /// OpenSSL libraries.
    pub libraries: Probed,
    /// Go executables that use `crypto/tls` (those that are not Go, or not TLS users, are not
    /// counted).
    pub go: Probed,
}

/// The Go programs (`agent-ebpf/src/tls.rs`): entries of Write and Read, and Read's returns.
const GO_PROGRAMS: [&str; 3] = ["go_tls_write", "go_tls_read", "go_tls_return"];

/// Loads the TLS programs (before the first [`TlsAttach::attach`]).
pub fn load(ebpf: &mut Ebpf) -> Result<(), ProgramError> {
    for name in ENTRIES
        .iter()
        .map(|e| e.0)
        .chain([RETURN])
        .chain(GO_PROGRAMS)
    {
        program(ebpf, name)?.load()?;
    }
    Ok(())
}

fn program<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut UProbe, ProgramError> {
    ebpf.program_mut(name)
        .ok_or(ProgramError::NotLoaded)?
        .try_into()
}

impl TlsAttach {
    /// Attaches the loaded programs to every library and Go executable in `found`, counting
    /// each, and logs those that failed. Executables that are not Go TLS programs are skipped.
    pub fn attach(&mut self, ebpf: &mut Ebpf, found: &Found) {
        for file in &found.libraries {
            let result = attach_library(ebpf, file).map_err(|e| e.to_string());
            self.libraries.record("OpenSSL library", file, result);
        }
        for file in &found.executables {
            let result = match go_sites(file) {
                Ok(sites) => attach_go(ebpf, file, &sites).map_err(|e| e.to_string()),
                Err(NotGoTls::NotGo | NotGoTls::NoTls) => continue,
                Err(NotGoTls::Unsupported(why)) => Err(why.to_string()),
            };
            self.go.record("Go program", file, result);
        }
    }
}

/// Probes one Go executable at `sites`.
fn attach_go(ebpf: &mut Ebpf, file: &Path, sites: &GoSites) -> Result<(), String> {
    let [write, read, ret] = GO_PROGRAMS;
    let attach = |ebpf: &mut Ebpf, name: &str, offsets: &[u64]| {
        program(ebpf, name)?
            .attach(offsets, file, UProbeScope::AllProcesses)
            .map(drop)
    };
    attach(ebpf, write, &[sites.write])
        .and_then(|()| attach(ebpf, read, &[sites.read]))
        .and_then(|()| attach(ebpf, ret, &sites.read_returns))
        .map_err(|e| e.to_string())?;
    tracing::debug!(file = %file.display(), returns = sites.read_returns.len(), "Probed at crypto/tls");
    Ok(())
}

/// Probes one library: its internal write and read functions when [`internal_sites`] finds
/// them, else each exported function; entry and return. A required function missing is an
/// error; the links made until then stay (they are harmless without the rest).
fn attach_library(ebpf: &mut Ebpf, file: &Path) -> Result<(), ProgramError> {
    if let Some((write, read)) = internal_sites(file) {
        // The internal functions take `size_t *moved` as their fourth argument, as the `_ex`
        // forms do.
        for (entry, offset) in [("ssl_write_ex", write), ("ssl_read_ex", read)] {
            for name in [entry, RETURN] {
                program(ebpf, name)?.attach([offset], file, UProbeScope::AllProcesses)?;
            }
        }
        tracing::debug!(file = %file.display(), write, read, "Probed at OpenSSL's internal read and write");
        return Ok(());
    }
    for (entry, symbol, required) in ENTRIES {
        let result = [entry, RETURN].into_iter().try_for_each(|name| {
            program(ebpf, name)?
                .attach([symbol], file, UProbeScope::AllProcesses)
                .map(drop)
        });
        match result {
            Ok(()) => {}
            Err(e) if required => return Err(e),
            Err(e) => tracing::debug!(file = %file.display(), symbol, error = %e, "Not probed"),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Debian's libssl 3 (what scripts/setup.sh installs, and curl, nginx and Python link):
    /// both pairs of wrappers lead to an internal function starting with a push, which is not
    /// an exported function's start.
    #[test]
    fn the_internal_read_and_write_of_the_hosts_libssl_are_found() {
        use object::{Object, ObjectSymbol};
        let lib = HOST_LIBRARY_DIRS
            .iter()
            .map(|d| Path::new(d).join("libssl.so.3"))
            .find(|p| p.exists())
            .expect("libssl.so.3 in the host's library directories (Debian's libssl3)");
        let (write, read) = internal_sites(&lib).expect("internal sites of the host's libssl");
        assert_ne!(write, read);
        let data = std::fs::read(&lib).unwrap();
        for offset in [write, read] {
            let at = &data[offset as usize..offset as usize + 2];
            assert!(
                matches!(at, [0x50..=0x57, _] | [0x41, 0x50..=0x57]),
                "{offset:#x}: {at:02x?}"
            );
        }
        let elf = object::File::parse(&*data).unwrap();
        let exported: Vec<u64> = elf.dynamic_symbols().map(|s| s.address()).collect();
        assert!(!exported.contains(&write) && !exported.contains(&read));
        // Not a library: nothing found, and no panic.
        assert_eq!(internal_sites(Path::new("/proc/self/status")), None);
    }

    /// The Go version in a build info section of Go >= 1.18, and which versions pass arguments
    /// in registers.
    #[test]
    fn go_build_info_names_its_version() {
        let mut section = b"\xff Go buildinf:\x08\x02".to_vec();
        section.resize(32, 0);
        section.push(9);
        section.extend_from_slice(b"go1.23.5\n");
        assert_eq!(go_version(&section), Some("go1.23.5\n"));
        section[41] = b'x';
        section[32] = 8;
        assert_eq!(go_version(&section), Some("go1.23.5"));
        // Go <= 1.17 keeps pointers to the strings, not the strings: not read.
        section[15] = 0;
        assert_eq!(go_version(&section), None);
        assert_eq!(go_version(b"\xff Go buildinf:"), None);
        assert_eq!(go_version(b""), None);
        for (v, yes) in [
            ("go1.23.5", true),
            ("go1.17", true),
            ("go1.18beta1", true),
            ("go1.16.15", false),
            ("go1.9", false),
            ("devel", false),
        ] {
            assert_eq!(register_abi(v), yes, "{v}");
        }
        // Not Go: this test's own executable (Rust), a text file, nothing.
        let exe = std::env::current_exe().unwrap();
        assert_eq!(go_sites(&exe), Err(NotGoTls::NotGo));
        assert_eq!(
            go_sites(Path::new("/proc/self/status")),
            Err(NotGoTls::NotGo)
        );
        assert_eq!(go_sites(Path::new("/nonexistent")), Err(NotGoTls::NotGo));
    }

    /// A fake `/proc` with two processes mapping one library (one through a symlink in its
    /// root), a process in a container with its own copy, and a host directory holding the
    /// first library again and an unrelated one.
    #[test]
    fn each_library_file_is_found_once_through_process_roots_and_host_dirs() {
        let dir = std::env::temp_dir().join(format!("kindling-tls-scan-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let proc_root = dir.join("proc");
        let host = dir.join("host");
        let lib = host.join("usr/lib/libssl.so.3");
        std::fs::create_dir_all(lib.parent().unwrap()).unwrap();
        std::fs::write(&lib, b"\x7fELF host").unwrap();
        std::fs::write(host.join("usr/lib/libcrypto.so.3"), b"\x7fELF").unwrap();
        std::fs::write(host.join("usr/lib/libssl3.txt"), b"not a library").unwrap();
        let maps = |path: &str| {
            format!(
                "7f00-7f10 r--p 00000000 08:01 42 {path}\n\
                 7f10-7f20 r-xp 00010000 08:01 42 {path}\n\
                 7f20-7f30 r-xp 00000000 08:01 43 /usr/lib/libcrypto.so.3\n\
                 7f30-7f40 rw-p 00000000 00:00 0 [heap]\n"
            )
        };
        // Processes 10 and 11 share the host's root; 11 maps the library by a symlink.
        for (pid, path) in [(10, "/usr/lib/libssl.so.3"), (11, "/usr/lib/libssl.so")] {
            let p = proc_root.join(pid.to_string());
            std::fs::create_dir_all(&p).unwrap();
            std::fs::write(p.join("maps"), maps(path)).unwrap();
            std::os::unix::fs::symlink(&host, p.join("root")).unwrap();
        }
        std::os::unix::fs::symlink("libssl.so.3", host.join("usr/lib/libssl.so")).unwrap();
        // Process 12 runs in a container whose image has its own libssl.
        let image = dir.join("image");
        let own = image.join("lib/libssl.so.3");
        std::fs::create_dir_all(own.parent().unwrap()).unwrap();
        std::fs::write(&own, b"\x7fELF image").unwrap();
        let p = proc_root.join("12");
        std::fs::create_dir_all(&p).unwrap();
        std::fs::write(p.join("maps"), maps("/lib/libssl.so.3")).unwrap();
        std::os::unix::fs::symlink(&image, p.join("root")).unwrap();
        // Not a process.
        std::fs::create_dir_all(proc_root.join("sys")).unwrap();

        // Processes 10 and 11 run one executable; 12 its own.
        let app = host.join("usr/bin/app");
        std::fs::create_dir_all(app.parent().unwrap()).unwrap();
        std::fs::write(&app, b"\x7fELF app").unwrap();
        let own_app = image.join("app");
        std::fs::write(&own_app, b"\x7fELF own app").unwrap();
        for (pid, exe) in [(10, &app), (11, &app), (12, &own_app)] {
            std::os::unix::fs::symlink(exe, proc_root.join(format!("{pid}/exe"))).unwrap();
        }

        let mut scan = LibraryScan::default();
        let found = scan.scan(&proc_root, &[&host.join("usr/lib")]);
        let inode = |p: &Path| std::fs::metadata(p).unwrap().ino();
        let got: Vec<u64> = found.libraries.iter().map(|f| inode(f)).collect();
        assert_eq!(got, [inode(&lib), inode(&own)], "{found:?}");
        assert!(
            found.libraries[0].starts_with(proc_root.join("10")),
            "{found:?}"
        );
        assert!(
            found.libraries[1].starts_with(proc_root.join("12")),
            "{found:?}"
        );
        assert_eq!(
            found.executables,
            [proc_root.join("10/exe"), proc_root.join("12/exe")]
        );
        // Found once: a second scan finds nothing new.
        assert_eq!(
            scan.scan(&proc_root, &[&host.join("usr/lib")]),
            Found::default()
        );
        // A new process with a library of its own (and the executable of process 10): only the
        // library is new.
        let later = dir.join("later");
        let third = later.join("opt/libssl.so.1.1");
        std::fs::create_dir_all(third.parent().unwrap()).unwrap();
        std::fs::write(&third, b"\x7fELF later").unwrap();
        let p = proc_root.join("13");
        std::fs::create_dir_all(&p).unwrap();
        std::fs::write(p.join("maps"), maps("/opt/libssl.so.1.1")).unwrap();
        std::os::unix::fs::symlink(&later, p.join("root")).unwrap();
        std::os::unix::fs::symlink(&app, p.join("exe")).unwrap();
        assert_eq!(
            scan.scan(&proc_root, &[&host.join("usr/lib")]),
            Found {
                libraries: vec![p.join("root/opt/libssl.so.1.1")],
                executables: vec![],
            }
        );
        // Without processes, the host directory alone.
        let empty = dir.join("empty");
        std::fs::create_dir_all(&empty).unwrap();
        assert_eq!(
            LibraryScan::default()
                .scan(&empty, &[&host.join("usr/lib")])
                .libraries,
            [host.join("usr/lib/libssl.so")]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
