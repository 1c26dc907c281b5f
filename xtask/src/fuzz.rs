//! `cargo xtask fuzz`: runs the libFuzzer targets of tests/fuzz (cargo-fuzz) with the pinned
//! nightly, each for a bounded time, and says how many inputs each tried and whether any
//! crashed. A crash fails the command; its input stays in tests/fuzz/artifacts/<target>/ and
//! belongs, once fixed, in the owning crate's fuzz_regressions directory (see `TARGETS`).
use std::{
    io::{BufRead, BufReader, Write},
    path::Path,
    process::{Command, Stdio},
};

use anyhow::{Context, bail};

use crate::{setup, sh};

/// Bounded run time per target when `--seconds` is not given.
pub const DEFAULT_SECONDS: u64 = 60;
/// Largest input tried. Replies and config files are larger in life, but growth
/// (quadratic parsing, allocation per byte) already shows at this size, and small inputs
/// keep the executions per second high.
const MAX_LEN: usize = 16 * 1024;
/// One input taking longer than this is reported as a crash (a hang or a quadratic path).
const INPUT_TIMEOUT_S: u64 = 10;

/// One fuzz target and where its inputs come from (paths relative to the repository root).
struct Target {
    name: &'static str,
    /// Read-only seed directories, merged into the generated corpus at start.
    seeds: &'static [&'static str],
    dict: &'static str,
    /// Where the owning crate keeps fixed crash inputs as regression tests.
    regressions: &'static str,
}

const TARGETS: &[Target] = &[
    Target {
        name: "soap_decode",
        seeds: &[
            "tests/fuzz/seeds/soap_decode",
            "reset-controller/fixtures",
            "reset-controller/src/vcenter/tests/fuzz_regressions",
        ],
        dict: "tests/fuzz/dicts/soap.dict",
        regressions: "reset-controller/src/vcenter/tests/fuzz_regressions",
    },
    Target {
        name: "agent_config",
        seeds: &[
            "tests/fuzz/seeds/agent_config",
            "reset-agent/src/config/fuzz_regressions",
        ],
        dict: "tests/fuzz/dicts/config.dict",
        regressions: "reset-agent/src/config/fuzz_regressions",
    },
];

#[derive(clap::Args)]
pub struct FuzzArgs {
    /// Seconds each target runs.
    #[arg(long, default_value_t = DEFAULT_SECONDS)]
    seconds: u64,
    /// Run only this target (soap_decode, agent_config).
    #[arg(long)]
    target: Option<String>,
}

/// What one bounded run found, from libFuzzer's final statistics.
struct Outcome {
    name: &'static str,
    executions: Option<u64>,
    per_second: Option<u64>,
    /// The crash input libFuzzer wrote, if it crashed.
    crash: Option<String>,
    success: bool,
}

pub fn run(args: &FuzzArgs) -> anyhow::Result<()> {
    let targets: Vec<&Target> = match &args.target {
        None => TARGETS.iter().collect(),
        Some(t) => match TARGETS.iter().find(|x| x.name == t) {
            Some(x) => vec![x],
            None => bail!(
                "no fuzz target {t:?}: choose one of {}",
                TARGETS
                    .iter()
                    .map(|x| x.name)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        },
    };
    ensure_cargo_fuzz()?;
    let nightly = setup::nightly()?;
    let root = sh::root();
    let mut outcomes = Vec::new();
    for t in targets {
        outcomes.push(run_one(&root, &nightly, t, args.seconds)?);
    }
    eprintln!();
    eprintln!("fuzz summary ({} s per target):", args.seconds);
    for o in &outcomes {
        let n = |v: Option<u64>| v.map_or("?".to_string(), |v| v.to_string());
        let verdict = match (&o.crash, o.success) {
            (Some(path), _) => format!("CRASH, input {path}"),
            (None, true) => "no crash".to_string(),
            (None, false) => "FAILED (see the output above)".to_string(),
        };
        eprintln!(
            "  {:<13} {:>12} executions  {:>7} exec/s  {verdict}",
            o.name,
            n(o.executions),
            n(o.per_second)
        );
    }
    let failed: Vec<&Outcome> = outcomes.iter().filter(|o| !o.success).collect();
    if failed.is_empty() {
        return Ok(());
    }
    for o in &failed {
        if let (Some(path), Some(t)) = (&o.crash, TARGETS.iter().find(|t| t.name == o.name)) {
            eprintln!(
                "{}: reproduce with `cargo +{nightly} fuzz run --fuzz-dir tests/fuzz {} {path}`; \
                 once fixed, copy the input into {} (its regression test feeds every file there)",
                o.name, o.name, t.regressions
            );
        }
    }
    bail!(
        "fuzzing failed: {}",
        failed.iter().map(|o| o.name).collect::<Vec<_>>().join(", ")
    )
}

/// cargo-fuzz is a cargo subcommand installed once per machine.
fn ensure_cargo_fuzz() -> anyhow::Result<()> {
    if sh::ok(sh::cargo().args(["fuzz", "--version"])) {
        return Ok(());
    }
    eprintln!("fuzz: installing cargo-fuzz");
    sh::run(sh::cargo().args(["install", "cargo-fuzz", "--locked"]))?;
    if !sh::ok(sh::cargo().args(["fuzz", "--version"])) {
        bail!("cargo-fuzz was installed but `cargo fuzz` does not run; is ~/.cargo/bin on PATH?");
    }
    Ok(())
}

fn run_one(root: &Path, nightly: &str, t: &Target, seconds: u64) -> anyhow::Result<Outcome> {
    let fuzz_dir = root.join("tests/fuzz");
    let corpus = fuzz_dir.join("corpus").join(t.name);
    std::fs::create_dir_all(&corpus).with_context(|| format!("create {}", corpus.display()))?;
    let log_path = fuzz_dir.join("artifacts").join(format!("{}.log", t.name));
    std::fs::create_dir_all(fuzz_dir.join("artifacts"))?;
    let mut log = std::fs::File::create(&log_path)
        .with_context(|| format!("create {}", log_path.display()))?;

    // `rustup run` selects the nightly for cargo-fuzz and for the cargo it starts; the
    // variables cargo set for this xtask would otherwise point them back at stable.
    let mut cmd = Command::new("rustup");
    cmd.current_dir(root)
        .args(["run", nightly, "cargo", "fuzz", "run", "--fuzz-dir"])
        .arg(&fuzz_dir);
    if std::env::var_os("CARGO_TARGET_DIR").is_none() {
        cmd.arg("--target-dir").arg(root.join("target/fuzz"));
    }
    cmd.arg(t.name).arg(&corpus);
    for s in t.seeds {
        let dir = root.join(s);
        if dir.is_dir() {
            cmd.arg(dir);
        }
    }
    cmd.arg("--")
        .arg(format!("-max_total_time={seconds}"))
        .arg(format!("-max_len={MAX_LEN}"))
        .arg(format!("-timeout={INPUT_TIMEOUT_S}"))
        .arg(format!("-dict={}", root.join(t.dict).display()))
        .arg("-print_final_stats=1")
        // The agent's build script would build the eBPF object; the fuzz targets only use
        // its config parser.
        .env("AYA_BUILD_SKIP", "1")
        .env_remove("CARGO")
        .env_remove("RUSTUP_TOOLCHAIN")
        .env_remove("RUSTC")
        .env_remove("RUSTDOC")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    eprintln!(
        "fuzz: {} for {seconds} s (full log: {})",
        t.name,
        log_path.display()
    );
    eprintln!("$ {}", sh::show(&cmd));
    let mut child = cmd
        .spawn()
        .context("cannot start `rustup run ... cargo fuzz`")?;
    // cargo-fuzz prints its crash advice on stdout, libFuzzer everything else on stderr:
    // both go to the log, stdout read on a thread so neither pipe fills up.
    let stdout = child.stdout.take().context("no stdout pipe")?;
    let out_thread = std::thread::spawn(move || {
        BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
            .collect::<Vec<String>>()
    });
    let stderr = child.stderr.take().context("no stderr pipe")?;
    let mut outcome = Outcome {
        name: t.name,
        executions: None,
        per_second: None,
        crash: None,
        success: false,
    };
    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
        writeln!(log, "{line}")?;
        if let Some(v) = stat(&line, "stat::number_of_executed_units:") {
            outcome.executions = Some(v);
        } else if let Some(v) = stat(&line, "stat::average_exec_per_sec:") {
            outcome.per_second = Some(v);
        } else if let Some(path) = line.split("Test unit written to ").nth(1) {
            outcome.crash = Some(path.trim().to_string());
        }
        if shown(&line) {
            eprintln!("  {line}");
        }
    }
    for line in out_thread.join().unwrap_or_default() {
        writeln!(log, "{line}")?;
    }
    let status = child.wait()?;
    outcome.success = status.success() && outcome.crash.is_none();
    if !status.success() && outcome.executions.is_none() {
        eprintln!(
            "fuzz: {} did not run ({status}): the build or start failed",
            t.name
        );
    }
    Ok(outcome)
}

/// A libFuzzer final statistic: `stat::name:   123`.
fn stat(line: &str, key: &str) -> Option<u64> {
    line.strip_prefix(key)?.trim().parse().ok()
}

/// The lines worth showing live: build errors, progress pulses, crashes and the end.
fn shown(line: &str) -> bool {
    const KEYS: &[&str] = &[
        "error",
        "pulse",
        "INITED",
        "DONE",
        "Done ",
        "panicked",
        "==ERROR",
        "SUMMARY",
        "Test unit written",
        "stat::",
        "Finished",
    ];
    KEYS.iter().any(|k| line.contains(k))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_libfuzzer_stats() {
        assert_eq!(
            stat(
                "stat::number_of_executed_units: 295747",
                "stat::number_of_executed_units:"
            ),
            Some(295_747)
        );
        assert_eq!(
            stat(
                "stat::average_exec_per_sec:     9540",
                "stat::average_exec_per_sec:"
            ),
            Some(9540)
        );
        assert_eq!(stat("#1 INITED", "stat::average_exec_per_sec:"), None);
    }

    #[test]
    fn every_target_has_its_inputs_in_the_repo() {
        let root = sh::root();
        for t in TARGETS {
            assert!(root.join(t.dict).is_file(), "{}", t.dict);
            assert!(root.join(t.regressions).is_dir(), "{}", t.regressions);
            assert!(
                t.seeds.iter().all(|s| root.join(s).is_dir()),
                "{:?}",
                t.seeds
            );
        }
    }
}
