//! Empty library target: it lets `agent` name this crate as a build-dependency so that cargo
//! rebuilds the agent when the eBPF programs change (the programs themselves are the binary:
//! `main.rs` and its modules `lifecycle.rs`, `health.rs`, `payload.rs`, `maps.rs`, `events.rs`,
//! `kernel.rs`).
#![no_std]
