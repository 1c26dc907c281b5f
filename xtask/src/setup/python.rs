//! What setup installs from PyPI: zig (the portable agent's linker), pyvmomi (the simulator's
//! conformance checks) and kubernetes-validate (the Kubernetes manifests' schemas).
use std::process::Command;

use anyhow::{Context, bail};

use super::cache_dir;
use crate::sh;

/// zig, from PyPI's `ziglang` wheel: `cargo xtask dist` links with it against glibc 2.28's
/// symbol versions (cargo-zigbuild finds it as `python3 -m ziglang`).
pub fn zig() -> anyhow::Result<()> {
    if sh::ok(Command::new("python3").args(["-m", "ziglang", "version"])) {
        eprintln!("setup: zig (python3 -m ziglang) present");
        return Ok(());
    }
    pip_install("ziglang")?;
    if !sh::ok(Command::new("python3").args(["-m", "ziglang", "version"])) {
        bail!("ziglang was installed but `python3 -m ziglang version` does not run");
    }
    Ok(())
}

/// `pip install`, with Debian's PEP 668 escape hatch when the system python needs it.
fn pip_install(package: &str) -> anyhow::Result<()> {
    let base = [
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        package,
    ];
    if sh::ok(Command::new("python3").args(base)) {
        return Ok(());
    }
    sh::run(
        Command::new("python3")
            .args(base)
            .arg("--break-system-packages"),
    )
}

/// The last kubernetes-validate release that ships the Kubernetes 1.21 schemas (newer ones start
/// at 1.25); installed apart from the newest, which has the latest schemas.
pub const KUBERNETES_VALIDATE_121: &str = "1.28.3";

/// kubernetes-validate from PyPI, twice: the newest (on PATH) and, in the cache, the last
/// release with the 1.21 schemas (tests/tests/kubernetes.rs runs it with PYTHONPATH).
pub fn kubernetes_validate() -> anyhow::Result<()> {
    if sh::ok(Command::new("kubernetes-validate").arg("--version")) {
        eprintln!("setup: kubernetes-validate present");
    } else {
        pip_install("kubernetes-validate")?;
    }
    let dir = cache_dir().join(format!("kubernetes-validate-{KUBERNETES_VALIDATE_121}"));
    let marker = dir.join(".reset-peer-complete");
    if marker.exists() {
        eprintln!(
            "setup: kubernetes-validate {KUBERNETES_VALIDATE_121} (1.21 schemas) present ({})",
            dir.display()
        );
        return Ok(());
    }
    let _ = std::fs::remove_dir_all(&dir);
    // Its dependencies are the newest release's, installed above.
    sh::run(
        Command::new("python3")
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--no-deps",
                "--target",
            ])
            .arg(&dir)
            .arg(format!("kubernetes-validate=={KUBERNETES_VALIDATE_121}")),
    )?;
    if !dir
        .join("kubernetes_validate/kubernetes-json-schema/v1.21.0-local-strict")
        .is_dir()
    {
        bail!(
            "kubernetes-validate {KUBERNETES_VALIDATE_121} in {} has no 1.21 schemas",
            dir.display()
        );
    }
    std::fs::write(&marker, "pip install --target\n")
        .with_context(|| format!("write {}", marker.display()))
}

pub fn pyvmomi() -> anyhow::Result<()> {
    if sh::ok(Command::new("python3").args(["-c", "import pyVmomi"])) {
        eprintln!("setup: pyvmomi present");
        return Ok(());
    }
    pip_install("pyvmomi")
}
