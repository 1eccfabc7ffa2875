//! tracefs: mounted on demand, and the formats of the tracepoints we read checked against the
//! offsets the programs were compiled with.

use std::path::{Path, PathBuf};

use kindling_agent_common::tp;

/// A tracepoint whose format is not what the programs were built for.
#[derive(Debug)]
pub(super) struct FormatMismatch {
    /// category/name
    pub(super) tracepoint: String,
    /// What differs.
    pub(super) detail: String,
}

const TRACEFS: &str = "/sys/kernel/tracing";

/// Returns the tracefs root, mounting it at /sys/kernel/tracing if no tracefs is mounted.
pub(super) fn ensure_mounted() -> std::io::Result<PathBuf> {
    for candidate in [TRACEFS, "/sys/kernel/debug/tracing"] {
        if Path::new(candidate).join("events").is_dir() {
            return Ok(candidate.into());
        }
    }
    let target = std::ffi::CString::new(TRACEFS).expect("no NUL");
    let fstype = std::ffi::CString::new("tracefs").expect("no NUL");
    // SAFETY: valid C strings; no data argument.
    let ret = unsafe {
        libc::mount(
            fstype.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if ret != 0 {
        return Err(std::io::Error::last_os_error());
    }
    tracing::info!(path = TRACEFS, "Mounted tracefs");
    Ok(TRACEFS.into())
}

/// Offset of `field` in a tracepoint format file's text.
pub(super) fn field_offset(format: &str, field: &str) -> Option<usize> {
    format.lines().find_map(|line| {
        let decl = line.trim().strip_prefix("field:")?.split(';').next()?;
        let name = decl.rsplit([' ', '*']).next()?;
        let name = name.split('[').next()?;
        if name != field {
            return None;
        }
        let off = line.split("offset:").nth(1)?.split(';').next()?;
        off.trim().parse().ok()
    })
}

/// Checks the offsets of every tracepoint field the programs read (the network-health ones
/// only when `net_health`).
pub(super) fn check_offsets(root: &Path, net_health: bool) -> Result<(), FormatMismatch> {
    let mut expected: Vec<(String, &str, usize)> = Vec::new();
    if net_health {
        expected.extend(
            tp::NET_HEALTH
                .iter()
                .map(|&(tracepoint, field, off)| (tracepoint.to_owned(), field, off)),
        );
    }
    for (tracepoint, field, want) in expected {
        let path = root.join("events").join(&tracepoint).join("format");
        let format = std::fs::read_to_string(&path).map_err(|e| FormatMismatch {
            tracepoint: tracepoint.clone(),
            detail: format!("cannot read {}: {e}", path.display()),
        })?;
        match field_offset(&format, field) {
            Some(got) if got == want => {}
            got => {
                return Err(FormatMismatch {
                    tracepoint,
                    detail: format!("field {field} is at {got:?}, the programs expect {want}"),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORMAT: &str = "name: inet_sock_set_state\nformat:\n\
        \tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\
        \tfield:const void * skaddr;\toffset:8;\tsize:8;\tsigned:0;\n\
        \tfield:__u8 saddr_v6[16];\toffset:40;\tsize:16;\tsigned:0;\n\
        \tfield:struct sockaddr * uservaddr;\toffset:24;\tsize:8;\tsigned:0;\n";

    #[test]
    fn parses_field_offsets() {
        assert_eq!(field_offset(FORMAT, "skaddr"), Some(8));
        assert_eq!(field_offset(FORMAT, "saddr_v6"), Some(40));
        assert_eq!(field_offset(FORMAT, "uservaddr"), Some(24));
        assert_eq!(field_offset(FORMAT, "common_type"), Some(0));
        assert_eq!(field_offset(FORMAT, "saddr"), None);
    }

    #[test]
    fn running_kernel_matches_the_programs() {
        let root = ensure_mounted().expect("tracefs (run as root)");
        check_offsets(&root, true).expect("offsets of this kernel's tracepoints");
    }
}
