//! `cargo xtask deny`: the dependency policy in xtask/deny.toml, checked with cargo-deny.
//!
//! Licenses, bans and sources need nothing but the lock file and always run. Advisories need
//! the RustSec database, which lives on github.com: when it cannot be fetched the command says
//! so in one line ("advisories NOT checked") and does not fail; with
//! `RESET_PEER_ADVISORY_DB=/path/to/advisory-db` (a checkout or a clone of
//! github.com/rustsec/advisory-db) it checks against that copy without the network.
use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};

use crate::{setup, sh};

/// Names a local copy of the RustSec advisory database.
pub const ADVISORY_DB_ENV: &str = "RESET_PEER_ADVISORY_DB";
/// The database cargo-deny fetches when deny.toml names none (spelled as cargo-deny does).
const DEFAULT_DB_URL: &str = "https://github.com/RustSec/advisory-db";
/// A fetch that has not finished by then is not going to.
const ADVISORIES_TIMEOUT: Duration = Duration::from_secs(60);

pub fn run() -> anyhow::Result<()> {
    setup::cargo_deny()?;
    let root = sh::root();
    sh::run(deny(&root).args(["check", "licenses", "bans", "sources"]))?;
    advisories(&root)
}

/// `cargo deny` on the workspace with our policy file.
fn deny(root: &Path) -> Command {
    let mut cmd = sh::cargo();
    cmd.current_dir(root)
        .arg("deny")
        .arg("--manifest-path")
        .arg(root.join("Cargo.toml"))
        .arg("--config")
        .arg(root.join("xtask/deny.toml"));
    cmd
}

fn advisories(root: &Path) -> anyhow::Result<()> {
    let mut cmd = deny(root);
    let local = std::env::var_os(ADVISORY_DB_ENV).map(PathBuf::from);
    if let Some(db) = &local {
        use_local_db(&mut cmd, db)?;
    }
    cmd.args(["check", "advisories"]);
    let run = run_bounded(&mut cmd, ADVISORIES_TIMEOUT)?;
    match (run, &local) {
        (Bounded::Passed, _) => Ok(()),
        (Bounded::TimedOut, None) => {
            eprintln!(
                "deny: advisories NOT checked: fetching the RustSec database from github.com did \
                 not finish in {} s; set {ADVISORY_DB_ENV}=/path/to/advisory-db to check offline",
                ADVISORIES_TIMEOUT.as_secs()
            );
            Ok(())
        }
        (Bounded::Failed(stderr), None) if fetch_failed(&stderr) => {
            eprintln!(
                "deny: advisories NOT checked: the RustSec database could not be fetched from \
                 github.com ({}); set {ADVISORY_DB_ENV}=/path/to/advisory-db to check offline",
                fetch_reason(&stderr)
            );
            Ok(())
        }
        (Bounded::TimedOut, Some(db)) => bail!(
            "cargo deny check advisories did not finish in {} s with the local database {}",
            ADVISORIES_TIMEOUT.as_secs(),
            db.display()
        ),
        (Bounded::Failed(stderr), Some(db)) if fetch_failed(&stderr) => bail!(
            "the advisory database at {} could not be read ({}): {ADVISORY_DB_ENV} must name a \
             git clone of github.com/rustsec/advisory-db with its main branch",
            db.display(),
            fetch_reason(&stderr)
        ),
        (Bounded::Failed(_), _) => bail!(
            "cargo deny check advisories failed: see the advisories above; upgrade the crate, or \
             add an `ignore` with a reason to xtask/deny.toml if it cannot apply to us"
        ),
    }
}

/// Point cargo-deny's fetch of the default database at a local git copy: git rewrites the
/// github.com URL to the local path (url.<base>.insteadOf, passed through the environment),
/// so cargo-deny clones or updates its cache from the copy and never touches the network.
fn use_local_db(cmd: &mut Command, db: &Path) -> anyhow::Result<()> {
    let db = db
        .canonicalize()
        .with_context(|| format!("{ADVISORY_DB_ENV}={} does not exist", db.display()))?;
    let date = sh::output(Command::new("git").arg("-C").arg(&db).args([
        "log",
        "-1",
        "--format=%cs",
        "main",
    ]))
    .map(|s| s.trim().to_string())
    .filter(|s| !s.is_empty())
    .with_context(|| {
        format!(
            "{ADVISORY_DB_ENV}={} is not a git clone of the advisory database with a main branch",
            db.display()
        )
    })?;
    eprintln!(
        "deny: advisories against the local database {} (main as of {date}), not github.com",
        db.display()
    );
    let n: usize = std::env::var("GIT_CONFIG_COUNT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    cmd.env("GIT_CONFIG_COUNT", (n + 1).to_string())
        .env(
            format!("GIT_CONFIG_KEY_{n}"),
            format!("url.file://{}.insteadOf", db.display()),
        )
        .env(format!("GIT_CONFIG_VALUE_{n}"), DEFAULT_DB_URL);
    Ok(())
}

enum Bounded {
    Passed,
    /// Exited non-zero; its stderr.
    Failed(String),
    TimedOut,
}

/// Run with stderr shown and kept; kill the command and what it started (git) at `limit`.
fn run_bounded(cmd: &mut Command, limit: Duration) -> anyhow::Result<Bounded> {
    use std::os::unix::process::CommandExt;

    eprintln!("$ {}", sh::show(cmd));
    let mut child = cmd
        .process_group(0)
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {}", sh::show(cmd)))?;
    let stderr = child.stderr.take().context("no stderr pipe")?;
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("{line}");
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if Instant::now() >= deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let Some(status) = status else {
        let group = nix::unistd::Pid::from_raw(i32::try_from(child.id())?);
        let _ = nix::sys::signal::killpg(group, nix::sys::signal::Signal::SIGKILL);
        let _ = child.wait();
        let _ = reader.join();
        return Ok(Bounded::TimedOut);
    };
    let stderr = reader.join().unwrap_or_default();
    Ok(if status.success() {
        Bounded::Passed
    } else {
        Bounded::Failed(stderr)
    })
}

/// cargo-deny could not get the database (as opposed to finding advisories in it).
fn fetch_failed(stderr: &str) -> bool {
    stderr.contains("failed to fetch advisory database")
        || stderr.contains("failed to load advisory database")
}

/// The most telling line of a failed fetch: git's own `fatal:` line when there is one.
fn fetch_reason(stderr: &str) -> String {
    let line = stderr
        .lines()
        .find_map(|l| l.trim().strip_prefix("fatal: "))
        .or_else(|| stderr.lines().find(|l| l.contains("advisory database")))
        .unwrap_or("no reason given");
    line.trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_an_unreachable_database_from_findings() {
        let offline = "2026-11-23 23:16:52 [ERROR] failed to fetch advisory database https://github.com/RustSec/advisory-db with cli: failed to clone\n\
            Cloning into '/root/.cargo/advisory-dbs/advisory-db-3157b0e258782691'...\n\
            fatal: unable to access 'https://github.com/RustSec/advisory-db/': Could not resolve host: github.com\n";
        assert!(fetch_failed(offline));
        assert_eq!(
            fetch_reason(offline),
            "unable to access 'https://github.com/RustSec/advisory-db/': Could not resolve host: github.com"
        );
        let found = "error[vulnerability]: Quadratic run time\nadvisories FAILED\n";
        assert!(!fetch_failed(found));
    }
}
