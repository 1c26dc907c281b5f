//! Running programs in the guest: the agent and short helper commands, through
//! `sudo -n` when the guest user is not root. Linux Tools runs
//! `programPath arguments` through a shell, so every word is quoted and output is
//! redirected to a log file in the run's guest directory. The environment is
//! replaced by [`GUEST_PATH`] only: no secret is ever in arguments or environment.

use std::time::{Duration, Instant};

use super::abort::Abort;
use crate::vcenter::guest_ops::shell_quote;
use crate::vcenter::{Guest, ProgramSpec, VcError};

/// The whole environment programs get.
pub const GUEST_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const SUDO: &str = "/usr/bin/sudo";
const KILL: &str = "/bin/kill";
const SH: &str = "/bin/sh";
/// Most polls of one process before giving up (bounds every wait loop).
const MAX_POLLS: u32 = 100_000;

/// How a wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WaitOutcome {
    /// The process ended with this code.
    Exited(i32),
    /// Abort was requested first.
    Aborted,
    /// The deadline passed first.
    TimedOut,
    /// The guest no longer lists the pid.
    Vanished,
}

/// The spec for `program args...` (through `sudo -n` if `sudo`), with stdout and
/// stderr to `log` and stdin from /dev/null.
///
/// Tools runs `"programPath" arguments` through a shell; a shell forks for a
/// command with redirections, so the pid Tools reports would be the shell's and a
/// signal to it would miss the program. With a log, the program is therefore run
/// as `/bin/sh -c 'exec "$0" "$@" >LOG 2>&1 </dev/null' PROGRAM ARGS...`: every
/// layer execs, and the reported pid is the program's (or sudo's, which relays
/// signals).
pub fn program_spec(sudo: bool, program: &str, args: &[&str], log: Option<&str>) -> ProgramSpec {
    let mut words: Vec<String> = Vec::new();
    if let Some(log) = log {
        let script = format!(r#"exec "$0" "$@" >{} 2>&1 </dev/null"#, shell_quote(log));
        words.extend([SH.to_string(), "-c".to_string(), shell_quote(&script)]);
    }
    words.push(shell_quote(program));
    words.extend(args.iter().map(|a| shell_quote(a)));
    let program = if sudo {
        words.splice(0..0, ["-n".to_string(), "--".to_string()]);
        SUDO.to_string()
    } else {
        // The first word becomes programPath (unquoted: Tools quotes it).
        let first = words.remove(0);
        if log.is_some() {
            first
        } else {
            program.to_string()
        }
    };
    ProgramSpec {
        program,
        arguments: words.join(" "),
        working_dir: None,
        env: vec![GUEST_PATH.to_string()],
    }
}

/// Starts and watches programs in one guest.
#[derive(Debug, Clone)]
pub struct Launcher {
    guest: Guest,
    sudo: bool,
}

impl Launcher {
    /// A launcher; `sudo` when the guest user is not root.
    pub fn new(guest: Guest) -> Self {
        let sudo = guest.user() != "root";
        Self { guest, sudo }
    }

    /// The guest handle.
    pub fn guest(&self) -> &Guest {
        &self.guest
    }

    /// Whether commands go through `sudo -n`.
    pub fn uses_sudo(&self) -> bool {
        self.sudo
    }

    /// Build the spec for `program args...`, output to `log` if given; `elevate`
    /// runs it through `sudo -n` when the guest user is not root.
    pub fn spec(
        &self,
        program: &str,
        args: &[&str],
        log: Option<&str>,
        elevate: bool,
    ) -> ProgramSpec {
        program_spec(self.sudo && elevate, program, args, log)
    }

    /// Start a program; returns its pid.
    pub async fn start(&self, spec: &ProgramSpec) -> Result<i64, VcError> {
        self.guest.start_program(spec).await
    }

    /// Poll until the process ends, abort is requested, or `timeout` passes.
    pub async fn wait(
        &self,
        pid: i64,
        timeout: Duration,
        poll: Duration,
        abort: &Abort,
    ) -> Result<WaitOutcome, VcError> {
        let deadline = Instant::now() + timeout;
        for _ in 0..MAX_POLLS {
            match self.guest.process(pid).await? {
                None => return Ok(WaitOutcome::Vanished),
                Some(p) => {
                    if let Some(code) = p.exited() {
                        return Ok(WaitOutcome::Exited(code));
                    }
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(WaitOutcome::TimedOut);
            }
            if abort.sleep(poll.min(left)).await {
                return Ok(WaitOutcome::Aborted);
            }
        }
        Ok(WaitOutcome::TimedOut)
    }

    /// Start a short command and wait for it (no abort); `TimedOut` after `timeout`.
    pub async fn run(&self, spec: &ProgramSpec, timeout: Duration) -> Result<WaitOutcome, VcError> {
        let pid = self.start(spec).await?;
        let out = self
            .wait(pid, timeout, Duration::from_millis(200), &Abort::never())
            .await?;
        if out == WaitOutcome::TimedOut {
            let _ = self.guest.terminate(pid).await;
        }
        Ok(out)
    }

    /// Whether `sudo -n` works for the guest user (always true for root).
    pub async fn sudo_works(&self) -> Result<Option<i32>, VcError> {
        if !self.sudo {
            return Ok(None);
        }
        let spec = self.spec("/bin/true", &[], None, true);
        match self.run(&spec, Duration::from_secs(15)).await? {
            WaitOutcome::Exited(0) => Ok(None),
            WaitOutcome::Exited(code) => Ok(Some(code)),
            _ => Ok(Some(-1)),
        }
    }

    /// Ask a process to stop: SIGTERM (through sudo if needed), wait up to `grace`,
    /// then TerminateProcessInGuest. Returns the exit code if it was seen.
    pub async fn stop(&self, pid: i64, grace: Duration) -> Result<Option<i32>, VcError> {
        let pid_s = pid.to_string();
        let spec = self.spec(KILL, &["-TERM", &pid_s], None, true);
        if let Err(e) = self.start(&spec).await {
            tracing::debug!(error = %e, "kill -TERM could not be started");
        }
        match self
            .wait(pid, grace, Duration::from_millis(200), &Abort::never())
            .await?
        {
            WaitOutcome::Exited(code) => Ok(Some(code)),
            WaitOutcome::Vanished => Ok(None),
            _ => {
                match self.guest.terminate(pid).await {
                    Ok(()) | Err(VcError::GuestProcessNotFound { .. }) => {}
                    Err(e) => return Err(e),
                }
                Ok(None)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_execs_the_program_with_its_log() {
        let s = program_spec(
            false,
            "/tmp/d x/reset-agent",
            &["run", "--config", "/tmp/d x/agent.toml"],
            Some("/tmp/d x/agent.log"),
        );
        assert_eq!(s.program, "/bin/sh");
        assert_eq!(
            s.arguments,
            r#"-c 'exec "$0" "$@" >'\''/tmp/d x/agent.log'\'' 2>&1 </dev/null' '/tmp/d x/reset-agent' run --config '/tmp/d x/agent.toml'"#
        );
        assert_eq!(s.env, [GUEST_PATH]);
        let s = program_spec(false, "/bin/kill", &["-TERM", "42"], None);
        assert_eq!(
            (s.program.as_str(), s.arguments.as_str()),
            ("/bin/kill", "-TERM 42")
        );
    }

    #[test]
    fn other_users_go_through_sudo_n() {
        let s = program_spec(true, "/tmp/d/reset-agent", &["cleanup"], None);
        assert_eq!(s.program, "/usr/bin/sudo");
        assert_eq!(s.arguments, "-n -- /tmp/d/reset-agent cleanup");
        let s = program_spec(
            true,
            "/tmp/d/reset-agent",
            &["cleanup"],
            Some("/tmp/d/c.log"),
        );
        assert_eq!(
            s.arguments,
            r#"-n -- /bin/sh -c 'exec "$0" "$@" >/tmp/d/c.log 2>&1 </dev/null' /tmp/d/reset-agent cleanup"#
        );
    }

    #[test]
    fn the_wrapper_really_execs_and_logs() {
        // Run the spec the way Tools does (bash -c '"path" args') and check that the
        // pid bash reports is the program's own.
        let dir = std::env::temp_dir().join(format!("reset-ctl-spec-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join("out log");
        let s = program_spec(
            false,
            "/bin/sh",
            &["-c", "echo pid=$$; echo err >&2"],
            Some(log.to_str().unwrap()),
        );
        let line = format!("'{}' {}", s.program, s.arguments);
        let out = std::process::Command::new("bash")
            .args(["-c", &line])
            .env_clear()
            .env("PATH", "/usr/bin:/bin")
            .spawn()
            .unwrap();
        let pid = out.id();
        let st = {
            let mut out = out;
            out.wait().unwrap()
        };
        assert!(st.success());
        let text = std::fs::read_to_string(&log).unwrap();
        assert!(text.contains(&format!("pid={pid}")), "{text} vs {pid}");
        assert!(text.contains("err"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
