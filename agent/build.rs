//! With the `capture` feature: builds the eBPF programs (`agent-ebpf`) for the bpfel target and
//! leaves the object in OUT_DIR, where `src/capture/mod.rs` embeds it with
//! `include_bytes_aligned!`. Without it there is nothing to build.

fn main() -> anyhow::Result<()> {
    #[cfg(feature = "capture")]
    build_ebpf()?;
    Ok(())
}

/// Must equal rust-toolchain.toml: its LLVM has to match bpf-linker's.
#[cfg(feature = "capture")]
const EBPF_TOOLCHAIN: &str = "1.98.0";

#[cfg(feature = "capture")]
fn build_ebpf() -> anyhow::Result<()> {
    use anyhow::{Context as _, anyhow};
    use aya_build::Toolchain;

    let metadata = cargo_metadata::MetadataCommand::new()
        .no_deps()
        .exec()
        .context("cargo metadata")?;
    let ebpf = metadata
        .packages
        .into_iter()
        .find(|p| p.name.as_str() == "kindling-agent-ebpf")
        .ok_or_else(|| anyhow!("kindling-agent-ebpf package not found"))?;
    let root_dir = ebpf
        .manifest_path
        .parent()
        .ok_or_else(|| anyhow!("no parent for {}", ebpf.manifest_path))?;
    // The nested build needs `-Z build-std=core` on a stable toolchain; this variable reaches
    // only that child cargo, never the agent's own compilation.
    // SAFETY: build scripts are single-threaded here.
    unsafe { std::env::set_var("RUSTC_BOOTSTRAP", "1") };
    aya_build::build_ebpf(
        [aya_build::Package {
            name: ebpf.name.as_str(),
            root_dir: root_dir.as_str(),
            ..Default::default()
        }],
        Toolchain::Custom(EBPF_TOOLCHAIN),
    )
}
