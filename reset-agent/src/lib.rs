//! reset-agent's library half: the parts that need no privilege and no running agent,
//! today only the configuration (`config`: the config file read safely, flag/env/file
//! merging, and validation by the settings contract in reset-common). The binary (main.rs)
//! uses it, and so do the `agent_config` fuzz target in tests/fuzz and the settings contract
//! test (tests/tests/settings_contract.rs), which parses the controller's config with it.
//!
//! Must not: grow into the agent's runtime. nftables, eBPF, the proxy and the lifecycle
//! stay modules of the binary, so nothing outside it can install or remove a fault.
#![forbid(unsafe_code)]

pub mod config;
