//! The end-to-end harness, one copy of each piece: network-namespace "VMs" and callers
//! (`lab`), the process guard and output pump (`guard`), the agent, service and callers run
//! inside them (`proc`), the vCenter simulator (`sim`) and the controller run against it
//! (`ctl`), the Prometheus text parser (`metrics`), a real Prometheus server (`prom`), clap's
//! `--help` read back (`help`), the module-graph reader of the tidy tests (`tidy`), and the
//! controller's stand-in agent (`fake_agent`).
//!
//! Must not: touch anything outside the namespaces it creates, use addresses other than
//! loopback, 198.18.0.0/15 and 2001:db8::/32, or leave a namespace or process behind (every
//! resource is an RAII guard that cleans up on drop, including when a test panics).
#![forbid(unsafe_code)]

pub mod callers;
pub mod ctl;
pub mod guard;
pub mod help;
pub mod lab;
pub mod metrics;
pub mod proc;
pub mod prom;
pub mod sim;
pub mod tidy;

use std::path::PathBuf;

/// Directory holding the workspace's built binaries (target/debug or target/release), found
/// from the running test executable (target/<profile>/deps/<test>).
pub fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let deps = exe.parent().expect("deps dir");
    if deps.ends_with("deps") {
        deps.parent().expect("profile dir").to_path_buf()
    } else {
        deps.to_path_buf()
    }
}

/// Path of a workspace binary; panics with the command to build it when it is missing.
pub fn bin(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.exists(),
        "{} is not built: run `cargo build --workspace --bins` (cargo xtask test does)",
        p.display()
    );
    p
}

/// A stand-in for reset-agent with its CLI contract, for controller tests that need no root
/// (reset-controller/tests/fixtures/fake-agent.sh).
pub fn fake_agent() -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../reset-controller/tests/fixtures/fake-agent.sh")
}

/// Whether this process may create network namespaces. The e2e tests need root; they fail
/// (not skip) without it, unless RESET_PEER_SKIP_PRIVILEGED=1 is set, and then say so loudly.
pub fn require_root() -> bool {
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false);
    if root {
        return true;
    }
    if std::env::var_os("RESET_PEER_SKIP_PRIVILEGED").is_some() {
        eprintln!(
            "SKIPPED: this end-to-end test needs root (network namespaces, nftables, eBPF); RESET_PEER_SKIP_PRIVILEGED is set"
        );
        return false;
    }
    panic!(
        "this end-to-end test needs root (network namespaces, nftables, eBPF): run `sudo cargo xtask test`, or set RESET_PEER_SKIP_PRIVILEGED=1 to skip it"
    );
}
