//! `cargo xtask dist`: the agent as one file for any x86_64 Linux guest with glibc >= 2.28 (RHEL
//! 8, Ubuntu 20.04, Debian 10 and everything newer) and the libnftnl/libmnl that every nftables
//! or iptables-nft installation has (`libnftnl.so.11`, `libmnl.so.0`).
//!
//! Why not static: the agent speaks nftables through nftnl and mnl, which link the C libraries
//! libnftnl (GPL-2.0-or-later) and libmnl (LGPL-2.1-or-later). A static build would need their
//! sources, which this build cannot fetch (only Debian's binary packages are reachable, and
//! Debian ships no static libmnl), and would put GPL code inside the shipped file. Linking the
//! guest's own copies keeps the agent MIT OR Apache-2.0 and the guest's libraries patched by the
//! guest's vendor.
//!
//! How: cargo-zigbuild links with zig against glibc 2.28's symbol versions, whatever glibc the
//! build machine has; a link directory holding only libnftnl.so and libmnl.so keeps the
//! machine's own libc out of the link. The eBPF object is embedded by reset-agent's build script.
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

use crate::sh;

/// The oldest glibc the artifact runs on (symbol versions it may need).
pub const GLIBC: &str = "2.28";
const TARGET: &str = "x86_64-unknown-linux-gnu";

/// Builds the artifact and prints its path, size, needs and sha256; returns its path.
pub fn run() -> anyhow::Result<PathBuf> {
    let root = sh::root();
    let target_dir = target_dir()?;
    let link_dir = link_dir(&target_dir.join("dist-link"))?;
    // The strip setting goes on the command line, not in the environment: reset-agent's build
    // script runs a nested cargo for the eBPF object, which must keep its symbols.
    sh::run(
        sh::cargo()
            .current_dir(&root)
            .args(["zigbuild", "--release", "--package", "reset-agent"])
            .args(["--bin", "reset-agent", "--target"])
            .arg(format!("{TARGET}.{GLIBC}"))
            .args(["--config", "profile.release.strip=\"symbols\""])
            .env("LIBNFTNL_LIB_DIR", &link_dir)
            .env("LIBMNL_LIB_DIR", &link_dir),
    )?;
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
    println!("needs  glibc >= {GLIBC}, libnftnl.so.11, libmnl.so.0");
    println!("sha256 {sha}");
    Ok(out)
}

/// A directory with only `libnftnl.so` and `libmnl.so`, linking to the build machine's copies
/// (found through pkg-config, like the crates' own build scripts do).
fn link_dir(dir: &Path) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    for lib in ["libnftnl", "libmnl"] {
        let libdir =
            sh::output(std::process::Command::new("pkg-config").args(["--variable=libdir", lib]))
                .map(|s| PathBuf::from(s.trim()))
                .with_context(|| {
                    format!(
                        "pkg-config does not know {lib}: install {lib}-dev (cargo xtask setup does)"
                    )
                })?;
        let so = libdir.join(format!("{lib}.so"));
        if !so.exists() {
            bail!("{} is missing: install {lib}-dev", so.display());
        }
        let link = dir.join(format!("{lib}.so"));
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(&so, &link)
            .with_context(|| format!("link {} to {}", link.display(), so.display()))?;
    }
    Ok(dir.to_path_buf())
}

/// Cargo's target directory (CARGO_TARGET_DIR or build.target-dir respected), from
/// `cargo metadata`.
pub fn target_dir() -> anyhow::Result<PathBuf> {
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
