//! Empty library target: it lets `agent` name this crate as a build-dependency so that cargo
//! rebuilds the agent when the eBPF programs change (the programs themselves are `main.rs`).
#![no_std]
