//! Guest programs: run like Linux Tools does, `bash -c '"<path>" <arguments>'`,
//! inside the VM's network namespace (`ip netns exec NETNS ...`), with exactly the
//! requested environment, stdio to /dev/null; exits are recorded for
//! ListProcessesInGuest.

use std::process::Stdio;
use std::time::SystemTime;

use tokio::process::Command;

use crate::model::{Proc, Sim};
use crate::soap::{Fault, faults};

/// What StartProgramInGuest asked for.
#[derive(Debug, Clone, Default)]
pub struct Program {
    /// programPath.
    pub path: String,
    /// arguments (a shell string).
    pub arguments: String,
    /// workingDirectory.
    pub working_dir: Option<String>,
    /// envVariables, `NAME=value`.
    pub env: Vec<String>,
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Start `prog` in VM `vm` as `owner`; returns its pid.
pub fn start(sim: &Sim, vm: usize, owner: &str, prog: &Program) -> Result<i64, Fault> {
    if !prog.path.starts_with('/') {
        return Err(faults::invalid_argument("programPath"));
    }
    if !std::path::Path::new(&prog.path).exists() {
        return Err(faults::file_not_found(&prog.path));
    }
    let line = format!("{} {}", quote(&prog.path), prog.arguments);
    let mut cmd = match &sim.cfg.vms[vm].netns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, "bash", "-c", &line]);
            c
        }
        None => {
            let mut c = Command::new("bash");
            c.args(["-c", &line]);
            c
        }
    };
    cmd.env_clear();
    // `ip` and `bash` are found through the simulator's own PATH; the program sees
    // only what was asked for.
    for e in &prog.env {
        if let Some((k, v)) = e.split_once('=') {
            cmd.env(k, v);
        }
    }
    if let Some(wd) = &prog.working_dir {
        cmd.current_dir(wd);
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut child = cmd
        .spawn()
        .map_err(|e| faults::system_error(&format!("cannot start {}: {e}", prog.path)))?;
    let pid = i64::from(child.id().unwrap_or(0));
    let name = prog
        .path
        .rsplit('/')
        .next()
        .unwrap_or(&prog.path)
        .to_string();
    sim.add_proc(
        vm,
        Proc {
            pid,
            name,
            cmd_line: format!("\"{}\" {}", prog.path, prog.arguments),
            owner: owner.to_string(),
            start: SystemTime::now(),
            end: None,
            exit: None,
        },
    );
    let sim = sim.clone();
    tokio::spawn(async move {
        let code = match child.wait().await {
            Ok(st) => st.code().unwrap_or_else(|| {
                use std::os::unix::process::ExitStatusExt as _;
                128 + st.signal().unwrap_or(0)
            }),
            Err(_) => -1,
        };
        sim.end_proc(vm, pid, code);
    });
    Ok(pid)
}

/// TerminateProcessInGuest: SIGKILL, as Tools does on Linux.
pub async fn terminate(sim: &Sim, vm: usize, pid: i64) -> Result<(), Fault> {
    match sim.proc(vm, pid) {
        Some(p) if p.end.is_none() => {
            let st = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .await
                .map_err(|e| faults::system_error(&e.to_string()))?;
            if st.success() {
                Ok(())
            } else {
                Err(faults::guest_process_not_found(pid))
            }
        }
        _ => Err(faults::guest_process_not_found(pid)),
    }
}
