//! The agent's end-to-end tests live in `tests/`: each starts the real `kindling-agent` binary
//! (its eBPF programs on this kernel, as root), real servers and clients, and reads the result
//! back through the `kindling` CLI and Grafana host emulation (`kindling-testkit`). The
//! binaries come from the workspace build (`cargo test` of the workspace, as scripts/test.sh
//! runs it). This crate has no code of its own.
