//! Why one VM's run failed. Other VMs go on; the row says this.

use crate::vcenter::VcError;

/// A per-VM failure.
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    /// vCenter or the guest refused something.
    #[error(transparent)]
    Vcenter(#[from] VcError),
    /// VM_USER_NAME cannot use `sudo -n`.
    #[error(
        "VM_USER_NAME {user} cannot run sudo without a password on VM {vm} (sudo -n exited {code}): allow NOPASSWD sudo for this user, or use root"
    )]
    SudoRefused {
        /// The guest user.
        user: String,
        /// The VM.
        vm: String,
        /// sudo's exit code.
        code: i32,
    },
    /// VM_USER_NAME is not root and the guest has no sudo.
    #[error(
        "VM_USER_NAME {user} is not root, so the agent must run through sudo, but VM {vm} has no /usr/bin/sudo: install sudo (NOPASSWD for this user), or use root"
    )]
    SudoMissing {
        /// The guest user.
        user: String,
        /// The VM.
        vm: String,
    },
    /// The agent exited with an error.
    #[error(
        "reset-agent on VM {vm} exited with code {code} ({meaning}); its log ends with:\n{log_tail}"
    )]
    AgentFailed {
        /// The VM.
        vm: String,
        /// Exit code.
        code: i32,
        /// What the code means per the agent's contract.
        meaning: &'static str,
        /// Last lines of its stderr/stdout.
        log_tail: String,
    },
    /// The agent did not finish in time.
    #[error(
        "reset-agent on VM {vm} still ran {secs} s after its window should have ended: it was terminated"
    )]
    AgentTimeout {
        /// The VM.
        vm: String,
        /// Seconds waited.
        secs: u64,
    },
    /// The guest lost track of the agent process.
    #[error("reset-agent process {pid} vanished from VM {vm} before it reported an end")]
    AgentVanished {
        /// The VM.
        vm: String,
        /// Its pid.
        pid: i64,
    },
    /// The agent's report was not JSON.
    #[error("reset-agent report from VM {vm} is not valid JSON: {reason}")]
    BadReport {
        /// The VM.
        vm: String,
        /// The parse error.
        reason: String,
    },
    /// vCenter stayed unreachable longer than VC_RECONNECT_TIMEOUT while the agent ran.
    #[error(
        "lost vCenter while the agent ran on VM {vm} ({source}): its report was not collected and the controller could not remove {dir}; the agent stops by its own deadline and removes its nftables table and eBPF programs, and the guest-side janitor deletes {dir} {ttl_s} s after the agent ends"
    )]
    VcenterLost {
        /// The VM.
        vm: String,
        /// The run directory left to the janitor.
        dir: String,
        /// GUEST_FILES_TTL.
        ttl_s: u64,
        /// The last failure.
        source: VcError,
    },
    /// Another reset-peer run is active on the VM.
    #[error(
        "VM {vm} already has a reset-peer run in progress: run {run} (agent pid {pid}, started {started}, guest user {owner}, files in {dir}); nothing was changed on this VM: wait for that run to end (its agent stops by its own deadline) or stop its controller"
    )]
    AlreadyRunning {
        /// The VM.
        vm: String,
        /// The other run's id.
        run: String,
        /// Its agent's pid.
        pid: i64,
        /// When its agent started.
        started: String,
        /// The guest user running it.
        owner: String,
        /// Its guest directory.
        dir: String,
    },
    /// The run was aborted before this VM was injected.
    #[error("aborted before injection")]
    Aborted,
    /// The agent binary could not be read.
    #[error(
        "cannot read the agent binary {path}: {reason}: build reset-agent or pass --agent PATH"
    )]
    AgentBinary {
        /// The path.
        path: String,
        /// Why.
        reason: String,
    },
}

/// What an agent exit code means (the agent's CLI contract).
pub fn exit_meaning(code: i32) -> &'static str {
    match code {
        0 => "window completed",
        1 => "environment error",
        2 => "usage error",
        3 => "aborted by signal",
        4 => "its own deadline passed",
        5 => "selected flows never reached its proxy: lost flows, see its report",
        126 | 127 => {
            crate::agent_binary::start_failure_hint(code).unwrap_or("the agent did not start")
        }
        _ => "unexpected",
    }
}
