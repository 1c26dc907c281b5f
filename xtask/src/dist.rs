//! `cargo xtask dist`: the agent as one portable file for any x86_64 Linux guest.
//!
//! A release build for x86_64-unknown-linux-musl is fully static (musl's libc linked in, no
//! dynamic loader, no shared library: the nftables code is pure Rust, the eBPF object is embedded
//! by reset-agent/build.rs), stripped by rustc, and copied to `<target dir>/dist/reset-agent`.
//! Needs only the musl target (`cargo xtask setup` adds it): Rust ships musl's C runtime and
//! links with the system `cc`, so no musl-gcc.
use std::path::PathBuf;

use anyhow::{Context, bail};

use crate::sh;

pub const TARGET: &str = "x86_64-unknown-linux-musl";

/// Builds the artifact and prints its path, size and sha256; returns its path.
pub fn run() -> anyhow::Result<PathBuf> {
    let root = sh::root();
    // The strip setting goes on the command line, not in the environment: reset-agent's build
    // script runs a nested cargo for the eBPF object, which must keep its symbols.
    sh::run(sh::cargo().current_dir(&root).args([
        "build",
        "--release",
        "--package",
        "reset-agent",
        "--bin",
        "reset-agent",
        "--target",
        TARGET,
        "--config",
        "profile.release.strip=\"symbols\"",
    ]))?;
    let target_dir = target_dir()?;
    let built = target_dir.join(TARGET).join("release/reset-agent");
    let dist = target_dir.join("dist");
    std::fs::create_dir_all(&dist).with_context(|| format!("create {}", dist.display()))?;
    let out = dist.join("reset-agent");
    // Copy through a temporary name so a running copy of the old file is never half-written.
    let tmp = dist.join(".reset-agent.tmp");
    std::fs::copy(&built, &tmp)
        .with_context(|| format!("copy {} to {}", built.display(), tmp.display()))?;
    std::fs::rename(&tmp, &out).with_context(|| format!("rename to {}", out.display()))?;
    let size = std::fs::metadata(&out)?.len();
    let sha = sh::output(std::process::Command::new("sha256sum").arg(&out))
        .and_then(|s| s.split_whitespace().next().map(str::to_owned))
        .context("sha256sum failed")?;
    println!("{}", out.display());
    println!(
        "size   {size} bytes ({:.1} MiB)",
        size as f64 / (1024.0 * 1024.0)
    );
    println!("sha256 {sha}");
    Ok(out)
}

/// Cargo's target directory (CARGO_TARGET_DIR or build.target-dir respected), from
/// `cargo metadata`.
fn target_dir() -> anyhow::Result<PathBuf> {
    let out = sh::output(sh::cargo().current_dir(sh::root()).args([
        "metadata",
        "--format-version",
        "1",
        "--no-deps",
    ]))
    .context("cargo metadata failed")?;
    let meta: serde_json::Value = serde_json::from_str(&out).context("cargo metadata output")?;
    let Some(dir) = meta["target_directory"].as_str() else {
        bail!("cargo metadata has no target_directory");
    };
    Ok(PathBuf::from(dir))
}
