//! Library target of reset-ebpf: empty. It exists so reset-agent can name this crate as a
//! build dependency (cargo then rebuilds the agent when the programs' dependencies change).
//! The programs are the binary target, `src/main.rs`.
#![no_std]
