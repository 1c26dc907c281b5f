//! The pooled keep-alive caller (tests/src/bin/pooled-caller.rs) in the caller namespace: the
//! request unit's load, persistent connections reused request after request and reopened only
//! after an error.
use std::process::Stdio;

use anyhow::Context;
use serde_json::Value;

use super::setup::Bench;

/// Runs the caller to its end with `args` (after `--url`) and returns its JSON summary.
pub fn run(b: &Bench, url: &str, args: &[String]) -> anyhow::Result<Value> {
    let out = b
        .lab
        .caller
        .command(b.paths.bin.join("pooled-caller"))
        .args(["--url", url])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("run pooled-caller")?;
    anyhow::ensure!(
        out.status.success(),
        "pooled-caller failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).context("pooled-caller's summary")
}
