//! reset-agent's library half: the parts that need no privilege and no running agent,
//! today only the configuration (`config`: the config-file schema, flag/env/file merging
//! and validation). The binary (main.rs) uses it, and so does the `agent_config` fuzz
//! target in tests/fuzz.
//!
//! Must not: grow into the agent's runtime. nftables, eBPF, the proxy and the lifecycle
//! stay modules of the binary, so nothing outside it can install or remove a fault.
#![forbid(unsafe_code)]

pub mod config;
