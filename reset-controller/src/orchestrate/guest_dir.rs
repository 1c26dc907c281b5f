//! The files of one run in a guest: the run directory's name (`<guest tmp>/reset-peer-<run
//! id>-<random>`) and layout, and how another run's live agent is recognised in a guest's
//! process list by that name. Pure: no guest calls here.

use crate::vcenter::ProcessInfo;

/// Guest directories are `<guest tmp>/reset-peer-<run id>-<random>`.
pub const DIR_PREFIX: &str = "reset-peer-";

/// The files of one run in the guest.
#[derive(Debug, Clone)]
pub struct GuestDir {
    /// The directory (0700).
    pub dir: String,
    /// The agent binary (0755).
    pub agent: String,
    /// The agent config (0600).
    pub config: String,
    /// Where the agent writes its report.
    pub report: String,
    /// The agent's stdout+stderr.
    pub log: String,
}

impl GuestDir {
    /// The layout of the run directory `dir`.
    pub fn new(dir: String) -> Self {
        let file = |n: &str| format!("{}/{n}", dir.trim_end_matches('/'));
        Self {
            agent: file("reset-agent"),
            config: file("agent.toml"),
            report: file("report.json"),
            log: file("agent.log"),
            dir,
        }
    }
}

/// Another run's agent found in the guest's process list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtherRun {
    /// Its run id (from its directory name).
    pub run: String,
    /// Its agent's pid.
    pub pid: i64,
    /// Its directory.
    pub dir: String,
    /// Who runs it.
    pub owner: String,
    /// When it started.
    pub started: String,
}

/// The first live `reset-agent run` of a reset-peer run directory in `procs`.
pub fn other_run(procs: &[ProcessInfo]) -> Option<OtherRun> {
    procs.iter().filter(|p| p.exited().is_none()).find_map(|p| {
        let words: Vec<&str> = p
            .cmd_line
            .split_whitespace()
            .map(|w| w.trim_matches(|c| c == '"' || c == '\''))
            .collect();
        let agent = words.iter().position(|w| {
            w.strip_suffix("/reset-agent")
                .and_then(|dir| dir.rsplit('/').next())
                .is_some_and(|name| name.starts_with(DIR_PREFIX))
        })?;
        if words.get(agent + 1) != Some(&"run") {
            return None;
        }
        let dir = words[agent].trim_end_matches("/reset-agent");
        let name = dir.rsplit('/').next()?.strip_prefix(DIR_PREFIX)?;
        let run = name.rsplit_once('-').map_or(name, |(id, _random)| id);
        Some(OtherRun {
            run: run.to_string(),
            pid: p.pid,
            dir: dir.to_string(),
            owner: if p.owner.is_empty() {
                "?".into()
            } else {
                p.owner.clone()
            },
            started: p.start_time.clone().unwrap_or_else(|| "?".into()),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proc(pid: i64, cmd: &str, ended: bool) -> ProcessInfo {
        ProcessInfo {
            pid,
            cmd_line: cmd.into(),
            owner: "root".into(),
            start_time: Some("2026-11-23T22:45:12Z".into()),
            end_time: ended.then(|| "2026-11-23T22:46:12Z".into()),
            exit_code: None,
        }
    }

    #[test]
    fn finds_a_live_agent_run_and_its_run_id() {
        let procs = [
            proc(1, "/sbin/init", false),
            // An earlier run that ended, and a cleanup that is not a run.
            proc(
                7,
                "\"/bin/sh\" -c 'exec ...' /tmp/reset-peer-20261123t214500-0001-abc/reset-agent run --config x",
                true,
            ),
            proc(
                8,
                "\"/tmp/reset-peer-20261123t220000-0002-def/reset-agent\" cleanup",
                false,
            ),
            proc(
                42,
                "\"/bin/sh\" -c 'exec \"$0\" \"$@\" >/tmp/reset-peer-20261123t224512-4f2a-x1y2z3/agent.log 2>&1 </dev/null' /tmp/reset-peer-20261123t224512-4f2a-x1y2z3/reset-agent run --config /tmp/reset-peer-20261123t224512-4f2a-x1y2z3/agent.toml",
                false,
            ),
        ];
        let o = other_run(&procs).unwrap();
        assert_eq!(o.run, "20261123t224512-4f2a");
        assert_eq!(o.pid, 42);
        assert_eq!(o.dir, "/tmp/reset-peer-20261123t224512-4f2a-x1y2z3");
        assert_eq!(o.started, "2026-11-23T22:45:12Z");
        assert!(other_run(&procs[..3]).is_none());
        // A user's own program that merely mentions the name is not a run.
        assert!(other_run(&[proc(9, "vim /tmp/notes/reset-agent run", false)]).is_none());
    }

    #[test]
    fn run_ids_name_directories_and_parse_back() {
        let id = super::super::new_run_id();
        assert_eq!(id.len(), "20261123t224512-4f2a".len(), "{id}");
        assert!(id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
        let cmd = format!("/tmp/{DIR_PREFIX}{id}-Q9x/reset-agent run");
        assert_eq!(other_run(&[proc(3, &cmd, false)]).unwrap().run, id);
    }

    #[test]
    fn the_layout_of_a_run_directory() {
        let d = GuestDir::new("/tmp/reset-peer-x-1/".into());
        assert_eq!(d.agent, "/tmp/reset-peer-x-1/reset-agent");
        assert_eq!(d.config, "/tmp/reset-peer-x-1/agent.toml");
        assert_eq!(d.report, "/tmp/reset-peer-x-1/report.json");
        assert_eq!(d.log, "/tmp/reset-peer-x-1/agent.log");
    }
}
