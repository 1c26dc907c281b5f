//! `cargo xtask deny`: the dependency policy in xtask/deny.toml, checked with cargo-deny.
//!
//! Licenses, bans and sources need nothing but the lock file and always run. Advisories need
//! the RustSec database, which lives on github.com. Where it cannot be fetched, the offline
//! snapshot `shared/advisory-db` (beside or above the workspace; a plain copy with a
//! SNAPSHOT.md) is committed once into target/advisory-db/ and checked against instead, so the
//! result is "advisories ok" or the findings. `RESET_PEER_ADVISORY_DB=/path` names another copy
//! (a clone or a plain copy) and skips github.com. Only with no database at all does it say
//! "advisories NOT checked", in one line, without failing.
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
    if let Some(db) = std::env::var_os(ADVISORY_DB_ENV).map(PathBuf::from) {
        return check_against(
            root,
            &Local::prepare(&db, "the database named by the environment")?,
        );
    }
    let mut cmd = deny(root);
    cmd.args(["check", "advisories"]);
    let unreachable = match run_bounded(&mut cmd, ADVISORIES_TIMEOUT)? {
        Bounded::Passed => {
            eprintln!("deny: advisories ok (live RustSec database from github.com)");
            return Ok(());
        }
        Bounded::TimedOut => format!(
            "fetching the RustSec database from github.com did not finish in {} s",
            ADVISORIES_TIMEOUT.as_secs()
        ),
        Bounded::Failed(stderr) if fetch_failed(&stderr) => format!(
            "the RustSec database could not be fetched from github.com ({})",
            fetch_reason(&stderr)
        ),
        Bounded::Failed(_) => bail!(FINDINGS),
    };
    match find_snapshot(root) {
        Some(snapshot) => {
            eprintln!("deny: {unreachable}; checking against the offline snapshot instead");
            check_against(root, &Local::prepare(&snapshot, "the offline snapshot")?)
        }
        None => {
            eprintln!(
                "deny: advisories NOT checked: {unreachable}, and no offline snapshot was found \
                 (looked for shared/advisory-db beside and above {}); set \
                 {ADVISORY_DB_ENV}=/path/to/advisory-db to check offline",
                root.display()
            );
            Ok(())
        }
    }
}

const FINDINGS: &str = "cargo deny check advisories failed: see the advisories above; upgrade \
    the crate, or add an `ignore` with a reason to xtask/deny.toml if it cannot apply to us";

fn check_against(root: &Path, db: &Local) -> anyhow::Result<()> {
    let mut cmd = deny(root);
    use_local_db(&mut cmd, &db.git_dir);
    cmd.args(["check", "advisories"]);
    eprintln!(
        "deny: advisories against {} ({}), not github.com",
        db.source.display(),
        db.describe
    );
    match run_bounded(&mut cmd, ADVISORIES_TIMEOUT)? {
        Bounded::Passed => {
            eprintln!("deny: advisories ok (RustSec database {})", db.describe);
            Ok(())
        }
        Bounded::TimedOut => bail!(
            "cargo deny check advisories did not finish in {} s with the local database {}",
            ADVISORIES_TIMEOUT.as_secs(),
            db.source.display()
        ),
        Bounded::Failed(stderr) if fetch_failed(&stderr) => bail!(
            "the advisory database at {} could not be read ({}): it must be a copy of \
             github.com/rustsec/advisory-db (a git clone, or a plain copy with crates/)",
            db.source.display(),
            fetch_reason(&stderr)
        ),
        Bounded::Failed(_) => bail!(FINDINGS),
    }
}

/// The shared offline snapshot (`shared/advisory-db`, a plain copy with a SNAPSHOT.md), looked
/// for beside the workspace and in each directory above it.
fn find_snapshot(root: &Path) -> Option<PathBuf> {
    root.ancestors()
        .skip(1)
        .map(|dir| dir.join("shared/advisory-db"))
        .find(|dir| dir.join("crates").is_dir())
}

/// A local advisory database ready for cargo-deny: a git repository with a `main` branch.
struct Local {
    /// What the user has (a clone or a plain copy).
    source: PathBuf,
    /// A git repository cargo-deny can clone: `source` itself, or a committed copy of it.
    git_dir: PathBuf,
    /// "main as of 2026-08-21" or "snapshot of commit bf5c0d2, 2026-08-21".
    describe: String,
}

impl Local {
    /// A git clone is used as it is; a plain copy (like the shared snapshot) is copied once
    /// into the target directory and committed there, since cargo-deny reads databases by git.
    fn prepare(source: &Path, what: &str) -> anyhow::Result<Local> {
        let source = source
            .canonicalize()
            .with_context(|| format!("{what} at {} does not exist", source.display()))?;
        if let Some(date) = main_date(&source) {
            return Ok(Local {
                git_dir: source.clone(),
                source,
                describe: format!("main as of {date}"),
            });
        }
        if !source.join("crates").is_dir() {
            bail!(
                "{what} at {} is neither a git clone of the advisory database nor a copy of it \
                 (no crates/ directory)",
                source.display()
            );
        }
        let describe = snapshot_description(&source);
        let key = describe
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect::<String>();
        let git_dir = sh::root().join("target/advisory-db").join(key);
        if main_date(&git_dir).is_none() {
            let _ = std::fs::remove_dir_all(&git_dir);
            std::fs::create_dir_all(&git_dir)
                .with_context(|| format!("create {}", git_dir.display()))?;
            let mut copy = Command::new("cp");
            copy.arg("-a")
                .arg(source.join("."))
                .arg(&git_dir)
                .stdout(Stdio::null());
            sh::run(&mut copy)?;
            let git = |args: &[&str]| {
                let mut c = Command::new("git");
                c.arg("-C")
                    .arg(&git_dir)
                    .args([
                        "-c",
                        "user.name=reset-peer",
                        "-c",
                        "user.email=xtask@localhost",
                    ])
                    .args(["-c", "commit.gpgsign=false"])
                    .args(args)
                    .stdout(Stdio::null());
                c
            };
            sh::run(&mut git(&["init", "--quiet", "--initial-branch=main"]))?;
            sh::run(&mut git(&["add", "--all"]))?;
            sh::run(&mut git(&["commit", "--quiet", "--message", &describe]))?;
        }
        Ok(Local {
            source,
            git_dir,
            describe,
        })
    }
}

/// The date of `main` in a git clone, if `dir` is one.
fn main_date(dir: &Path) -> Option<String> {
    if !dir.join(".git").exists() && !dir.join("HEAD").exists() {
        return None;
    }
    sh::output(
        Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(["log", "-1", "--format=%cs", "main"]),
    )
    .map(|s| s.trim().to_string())
    .filter(|s| !s.is_empty())
}

/// "snapshot of commit bf5c0d2, 2026-08-21", read from the snapshot's SNAPSHOT.md.
fn snapshot_description(dir: &Path) -> String {
    let text = std::fs::read_to_string(dir.join("SNAPSHOT.md")).unwrap_or_default();
    let commit = text
        .split(|c: char| !c.is_ascii_hexdigit())
        .find(|w| w.len() == 40)
        .map(|c| c[..7].to_owned());
    let date = text.split_whitespace().find_map(|w| {
        let w = w.trim_matches(|c: char| !c.is_ascii_digit());
        (w.len() == 10 && w.as_bytes()[4] == b'-' && w.as_bytes()[7] == b'-').then(|| w.to_owned())
    });
    match (commit, date) {
        (Some(c), Some(d)) => format!("snapshot of commit {c}, {d}"),
        (Some(c), None) => format!("snapshot of commit {c}"),
        _ => "snapshot of unknown date".to_owned(),
    }
}

/// Point cargo-deny's fetch of the default database at a local git copy: git rewrites the
/// github.com URL to the local path (url.<base>.insteadOf, passed through the environment),
/// so cargo-deny clones or updates its cache from the copy and never touches the network.
fn use_local_db(cmd: &mut Command, git_dir: &Path) {
    let n: usize = std::env::var("GIT_CONFIG_COUNT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    cmd.env("GIT_CONFIG_COUNT", (n + 1).to_string())
        .env(
            format!("GIT_CONFIG_KEY_{n}"),
            format!("url.file://{}.insteadOf", git_dir.display()),
        )
        .env(format!("GIT_CONFIG_VALUE_{n}"), DEFAULT_DB_URL);
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

#[cfg(test)]
mod snapshot_tests {
    use super::*;

    #[test]
    fn describes_the_snapshot_from_its_notes() {
        let dir = std::env::temp_dir().join(format!("reset-peer-snapshot-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(
            dir.join("SNAPSHOT.md"),
            "A plain copy of the repository at commit\nbf5c0d245a92671908518d7e765914d437954ed6 (2026-08-21), for ...\n",
        )
        .expect("write");
        assert_eq!(
            snapshot_description(&dir),
            "snapshot of commit bf5c0d2, 2026-08-21"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
