//! Guest programs: run like Linux Tools does, `bash -c '"<path>" <arguments>'`,
//! inside the VM's network namespace (`ip netns exec NETNS ...`), with exactly the
//! requested environment, stdio to /dev/null.
//!
//! Like the Tools daemon inside a real guest, the process table outlives vCenter:
//! each program runs under a small bash supervisor in its own process group that
//! records the exit code in the tools directory, and each start is recorded there
//! too, so a restarted simulator still lists the programs, sees them end and reports
//! their exit codes (ListProcessesInGuest).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::AsyncBufReadExt as _;
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

/// The supervisor: starts `"$@"` in the background, prints its pid, waits, writes
/// the exit code (128+signal when killed, as bash reports it) to `$1`.
const SUPERVISOR: &str = r#"exitfile=$1; shift; "$@" </dev/null >/dev/null 2>&1 & pid=$!; echo "$pid"; exec >/dev/null; wait "$pid"; echo "$?" >"$exitfile""#;

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn record(dir: &Path, vm: usize, pid: i64) -> PathBuf {
    dir.join(format!("vm{vm}-{pid}.proc"))
}

/// An absolute path for `prog` from the simulator's PATH (the program's own
/// environment may have no PATH at all).
fn which(prog: &str) -> PathBuf {
    std::env::var_os("PATH")
        .iter()
        .flat_map(std::env::split_paths)
        .map(|d| d.join(prog))
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from(prog))
}

/// Start `prog` in VM `vm` as `owner`; returns its pid.
pub async fn start(sim: &Sim, vm: usize, owner: &str, prog: &Program) -> Result<i64, Fault> {
    if !prog.path.starts_with('/') {
        return Err(faults::invalid_argument("programPath"));
    }
    if !std::path::Path::new(&prog.path).exists() {
        return Err(faults::file_not_found(&prog.path));
    }
    let system = |e: &dyn std::fmt::Display| {
        faults::system_error(&format!("cannot start {}: {e}", prog.path))
    };
    let dir = sim.cfg.tools_dir();
    std::fs::create_dir_all(&dir).map_err(|e| system(&e))?;
    let line = format!("{} {}", quote(&prog.path), prog.arguments);
    let bash = which("bash");
    let mut inner: Vec<std::ffi::OsString> = Vec::new();
    if let Some(ns) = &sim.cfg.vms[vm].netns {
        inner.extend([which("ip").into(), "netns".into(), "exec".into(), ns.into()]);
    }
    inner.extend([bash.clone().into(), "-c".into(), line.into()]);
    // The pid is only known once it runs, so the exit file has a per-start name,
    // kept in the start's record.
    let pending = dir.join(format!("start-{}.exit", crate::model::token()));
    let mut cmd = Command::new(&bash);
    cmd.arg("-c")
        .arg(SUPERVISOR)
        .arg("vcsim-tools")
        .arg(&pending)
        .args(&inner);
    cmd.env_clear();
    // The program sees only what was asked for.
    for e in &prog.env {
        if let Some((k, v)) = e.split_once('=') {
            cmd.env(k, v);
        }
    }
    if let Some(wd) = &prog.working_dir {
        cmd.current_dir(wd);
    }
    // Its own process group: stopping the simulator does not stop guest programs.
    cmd.process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    let mut child = cmd.spawn().map_err(|e| system(&e))?;
    let mut first = String::new();
    let stdout = child.stdout.take().ok_or_else(|| system(&"no stdout"))?;
    tokio::time::timeout(
        Duration::from_secs(10),
        tokio::io::BufReader::new(stdout).read_line(&mut first),
    )
    .await
    .map_err(|_| system(&"the supervisor did not report a pid"))?
    .map_err(|e| system(&e))?;
    let pid: i64 = first
        .trim()
        .parse()
        .map_err(|_| system(&format!("supervisor said {first:?}")))?;
    // Reap the supervisor when it ends (it is our child until we stop).
    tokio::spawn(async move {
        let _ = child.wait().await;
    });
    let name = prog
        .path
        .rsplit('/')
        .next()
        .unwrap_or(&prog.path)
        .to_string();
    let p = Proc {
        pid,
        name,
        cmd_line: format!("\"{}\" {}", prog.path, prog.arguments),
        owner: owner.to_string(),
        start: SystemTime::now(),
        end: None,
        exit: None,
    };
    save(&dir, vm, &p, &pending).map_err(|e| system(&e))?;
    sim.add_proc(vm, p);
    Ok(pid)
}

/// Persist a start: `vm<I>-<PID>.proc` holds the pending exit-file name, start time,
/// owner, name and command line, one per line (the command line last).
fn save(dir: &Path, vm: usize, p: &Proc, pending: &Path) -> std::io::Result<()> {
    let start = p
        .start
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    let text = format!(
        "{}\n{start}\n{}\n{}\n{}",
        pending.display(),
        p.owner,
        p.name,
        p.cmd_line
    );
    // A pid reused by a later start replaces the older record.
    std::fs::write(record(dir, vm, p.pid), text)
}

/// The exit (time, code) of a recorded start, once its supervisor wrote it.
pub fn exit_of(dir: &Path, vm: usize, pid: i64) -> Option<(SystemTime, i32)> {
    let rec = std::fs::read_to_string(record(dir, vm, pid)).ok()?;
    let exit = PathBuf::from(rec.lines().next()?);
    let code = std::fs::read_to_string(&exit)
        .ok()?
        .trim()
        .parse::<i32>()
        .ok()?;
    let end = std::fs::metadata(&exit)
        .and_then(|m| m.modified())
        .unwrap_or_else(|_| SystemTime::now());
    Some((end, code))
}

/// The process table recorded in `dir` (by this or an earlier simulator).
pub fn load(dir: &Path) -> HashMap<(usize, i64), Proc> {
    let mut out = HashMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(key) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".proc"))
            .and_then(|n| n.strip_prefix("vm"))
            .and_then(|n| n.split_once('-'))
            .and_then(|(vm, pid)| Some((vm.parse::<usize>().ok()?, pid.parse::<i64>().ok()?)))
        else {
            continue;
        };
        let Ok(text) = std::fs::read_to_string(e.path()) else {
            continue;
        };
        let mut lines = text.splitn(5, '\n');
        let (_exit_file, start, owner, pname, cmd) = (
            lines.next(),
            lines.next().and_then(|s| s.parse::<u64>().ok()),
            lines.next().unwrap_or(""),
            lines.next().unwrap_or(""),
            lines.next().unwrap_or(""),
        );
        let mut p = Proc {
            pid: key.1,
            name: pname.to_string(),
            cmd_line: cmd.to_string(),
            owner: owner.to_string(),
            start: UNIX_EPOCH + Duration::from_millis(start.unwrap_or(0)),
            end: None,
            exit: None,
        };
        if let Some((end, code)) = exit_of(dir, key.0, key.1) {
            p.end = Some(end);
            p.exit = Some(code);
        }
        out.insert(key, p);
    }
    out
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
