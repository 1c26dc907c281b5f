//! `cargo xtask setup`: makes a fresh Debian machine able to build, test and demo reset-peer.
//! Every step checks first and does nothing when already satisfied, so it is cheap to run
//! before every `test` and `demo`.
use std::{
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, bail};

use crate::sh;

mod fresh;
mod llvm;
mod python;

use python::{kubernetes_validate, pyvmomi, zig};

pub use fresh::prove_fresh;

/// Debian packages: the agent's build (libnftnl and libmnl for the nftnl and mnl crates, found
/// through pkg-config), lab (iproute2, nftables, bpftool, conntrack: tests inspect with them;
/// iptables for the iptables-nft guest firewall test), callers and peers (curl, wrk, haproxy),
/// the govmomi simulator (golang), pyvmomi (python3-pip), the Prometheus the Prometheus probe's
/// tests and the demo start (prometheus; its service is never used: each test and the demo run
/// their own with their own config and data dir), the controller's OCI image (umoci builds it;
/// podman with runc runs it in tests/tests/image.rs; ca-certificates is the image's CA bundle).
pub const APT_PACKAGES: &[&str] = &[
    "libnftnl-dev",
    "libmnl-dev",
    "pkg-config",
    "nftables",
    "iptables",
    "conntrack",
    "iproute2",
    "bpftool",
    "curl",
    "wrk",
    "haproxy",
    "util-linux",
    "debootstrap",
    "golang-go",
    "golang-github-vmware-govmomi-dev",
    "python3",
    "prometheus",
    "umoci",
    "podman",
    "runc",
    "ca-certificates",
    // bench plots
    "fonts-dejavu-core",
];

pub const BPF_LINKER_VERSION: &str = "0.13.0";

/// The nightly that builds reset-ebpf (its LLVM must match bpf-linker's: LLVM 23).
pub fn nightly() -> anyhow::Result<String> {
    let path = sh::root().join("reset-ebpf/nightly-toolchain");
    Ok(std::fs::read_to_string(&path)
        .with_context(|| format!("read {}", path.display()))?
        .trim()
        .to_owned())
}

pub fn run() -> anyhow::Result<()> {
    step("Debian packages", "cargo xtask setup", apt)?;
    step(
        "rustup components",
        "rustup component add clippy rustfmt",
        rust_components,
    )?;
    step(
        "zig (links the portable agent against glibc 2.28)",
        "python3 -m pip install ziglang",
        zig,
    )?;
    step(
        "cargo-zigbuild",
        "cargo install cargo-zigbuild --locked",
        cargo_zigbuild,
    )?;
    let nightly = nightly()?;
    step(
        "eBPF nightly toolchain",
        &format!("rustup toolchain install {nightly} --profile minimal --component rust-src"),
        || nightly_toolchain(&nightly),
    )?;
    step("bpf-linker", "cargo xtask setup", || bpf_linker(&nightly))?;
    step(
        "cargo-deny",
        "cargo install cargo-deny --locked",
        cargo_deny,
    )?;
    step("pyvmomi", "python3 -m pip install pyvmomi", pyvmomi)?;
    step(
        "kubernetes-validate (the manifests' schemas: latest, and 1.21)",
        "cargo xtask setup",
        kubernetes_validate,
    )?;
    step(
        "Rust's x86_64-unknown-linux-musl target (the static controller of the image)",
        "rustup target add x86_64-unknown-linux-musl",
        musl_target,
    )?;
    step(
        "Debian 11 userland for the portable-agent test",
        "cargo xtask setup",
        debian11_rootfs,
    )?;
    eprintln!("setup: everything is in place");
    Ok(())
}

/// Runs one setup step; a failure names the step, says why, and how to retry it.
pub fn step<T>(
    name: &str,
    retry: &str,
    f: impl FnOnce() -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    sh::step(&format!("setup step `{name}`"), retry, f)
}

fn apt() -> anyhow::Result<()> {
    let missing: Vec<&str> = APT_PACKAGES
        .iter()
        .copied()
        .filter(|p| {
            sh::output(Command::new("dpkg-query").args(["-W", "-f=${Status}", p]))
                .is_none_or(|s| !s.contains("install ok installed"))
        })
        .collect();
    if missing.is_empty() {
        eprintln!("setup: Debian packages present");
        return Ok(());
    }
    eprintln!("setup: installing Debian packages: {}", missing.join(" "));
    let sudo: &[&str] = if is_root() { &[] } else { &["sudo", "-n"] };
    let apt = |args: &[&str]| {
        let mut c = Command::new(sudo.first().copied().unwrap_or("apt-get"));
        if !sudo.is_empty() {
            c.args(&sudo[1..]).arg("apt-get");
        }
        c.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        c
    };
    sh::run(&mut apt(&["update", "-qq"]))?;
    let mut install = apt(&["install", "-y", "-qq", "--no-install-recommends"]);
    install.args(&missing);
    sh::run(&mut install)
}

pub fn is_root() -> bool {
    sh::output(Command::new("id").arg("-u")).is_some_and(|s| s.trim() == "0")
}

fn rust_components() -> anyhow::Result<()> {
    let installed = sh::output(Command::new("rustup").args(["component", "list", "--installed"]))
        .unwrap_or_default();
    for comp in ["clippy", "rustfmt"] {
        if !installed.lines().any(|l| l.starts_with(comp)) {
            sh::run(Command::new("rustup").args(["component", "add", comp]))?;
        }
    }
    Ok(())
}

fn cargo_zigbuild() -> anyhow::Result<()> {
    if sh::ok(Command::new("cargo-zigbuild").arg("--version")) {
        eprintln!("setup: cargo-zigbuild present");
        return Ok(());
    }
    sh::run(sh::cargo().args(["install", "cargo-zigbuild", "--locked"]))?;
    if !sh::ok(Command::new("cargo-zigbuild").arg("--version")) {
        bail!(
            "cargo-zigbuild was installed but `cargo-zigbuild --version` does not run; is ~/.cargo/bin on PATH?"
        );
    }
    Ok(())
}

fn sysroot(toolchain: &str) -> Option<PathBuf> {
    sh::output(
        Command::new("rustup")
            .args(["run", toolchain, "rustc", "--print", "sysroot"])
            .env("RUSTUP_AUTO_INSTALL", "0"),
    )
    .map(|s| PathBuf::from(s.trim()))
}

fn nightly_toolchain(nightly: &str) -> anyhow::Result<()> {
    let has_src =
        sysroot(nightly).is_some_and(|s| s.join("lib/rustlib/src/rust/library/core").exists());
    if has_src {
        eprintln!("setup: {nightly} with rust-src present");
        return Ok(());
    }
    sh::run(Command::new("rustup").args([
        "toolchain",
        "install",
        nightly,
        "--profile",
        "minimal",
        "--component",
        "rust-src",
    ]))
}

/// bpf-linker links the nightly's libLLVM dynamically: build it against that library (an
/// LLVM_PREFIX whose lib/libLLVM.so points at it) with an rpath, so it runs without
/// LD_LIBRARY_PATH.
fn bpf_linker(nightly: &str) -> anyhow::Result<()> {
    let works = sh::output(Command::new("bpf-linker").arg("--version"))
        .is_some_and(|v| v.contains(BPF_LINKER_VERSION));
    if works {
        eprintln!("setup: bpf-linker {BPF_LINKER_VERSION} present");
        return Ok(());
    }
    let prefix = cache_dir().join(format!("llvm-{nightly}"));
    let installed = install_bpf_linker(nightly, &prefix, None)?;
    if !sh::ok(Command::new("bpf-linker").arg("--version")) {
        bail!(
            "bpf-linker was installed at {} but `bpf-linker` does not start from PATH; put ~/.cargo/bin on PATH",
            installed.display()
        );
    }
    Ok(())
}

/// ~/.cache/reset-peer: what setup builds for itself (the LLVM prefix for bpf-linker).
pub fn cache_dir() -> PathBuf {
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".cache/reset-peer")
}

/// `cargo install bpf-linker` against the pinned nightly's libLLVM, from nothing: `prefix`
/// becomes an LLVM prefix whose lib/libLLVM.so links to the nightly's real shared object, and
/// `root` (None: cargo's default, ~/.cargo) receives the binary. Returns the binary's path.
pub fn install_bpf_linker(
    nightly: &str,
    prefix: &Path,
    root: Option<&Path>,
) -> anyhow::Result<PathBuf> {
    let sysroot = sysroot(nightly).with_context(|| {
        format!(
            "the pinned nightly {nightly} is not installed (rustup toolchain install {nightly})"
        )
    })?;
    let lib = sysroot.join("lib");
    let llvm = llvm::libllvm_in(&lib)?;
    let prefix_lib = prefix.join("lib");
    std::fs::create_dir_all(&prefix_lib)
        .with_context(|| format!("create {}", prefix_lib.display()))?;
    let link = prefix_lib.join("libLLVM.so");
    match std::fs::remove_file(&link) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("remove {}", link.display())),
    }
    std::os::unix::fs::symlink(&llvm, &link)
        .with_context(|| format!("link {} to {}", link.display(), llvm.display()))?;
    eprintln!(
        "setup: building bpf-linker {BPF_LINKER_VERSION} against {}",
        llvm.display()
    );
    let mut cmd = sh::cargo();
    cmd.args([
        "install",
        "bpf-linker",
        "--version",
        BPF_LINKER_VERSION,
        "--locked",
        "--force",
    ])
    .env("LLVM_PREFIX", prefix)
    .env(
        "RUSTFLAGS",
        format!("-C link-arg=-Wl,-rpath,{}", lib.display()),
    );
    if let Some(root) = root {
        cmd.arg("--root").arg(root);
    }
    sh::run(&mut cmd)?;
    let bin = match root {
        Some(r) => r.join("bin/bpf-linker"),
        None => cargo_home().join("bin/bpf-linker"),
    };
    let version = sh::output(Command::new(&bin).arg("--version"))
        .with_context(|| format!("{} was built but does not start", bin.display()))?;
    if !version.contains(BPF_LINKER_VERSION) {
        bail!(
            "{} reports {:?}, not {BPF_LINKER_VERSION}",
            bin.display(),
            version.trim()
        );
    }
    Ok(bin)
}

fn cargo_home() -> PathBuf {
    match std::env::var_os("CARGO_HOME") {
        Some(h) => PathBuf::from(h),
        None => {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".cargo")
        }
    }
}

/// cargo-deny, for the dependency policy (`cargo xtask deny`, part of `cargo xtask test`).
pub fn cargo_deny() -> anyhow::Result<()> {
    if sh::ok(sh::cargo().args(["deny", "--version"])) {
        eprintln!("setup: cargo-deny present");
        return Ok(());
    }
    sh::run(sh::cargo().args(["install", "cargo-deny", "--locked"]))?;
    if !sh::ok(sh::cargo().args(["deny", "--version"])) {
        bail!("cargo-deny was installed but `cargo deny` does not run; is ~/.cargo/bin on PATH?");
    }
    Ok(())
}

/// A Debian 11 userland (glibc 2.31, libnftnl 1.1.8): tests/tests/dist.rs runs the portable
/// agent chrooted into it, as on a guest older than this machine. The marker file is written
/// last, so an interrupted debootstrap is redone.
fn debian11_rootfs() -> anyhow::Result<()> {
    let dir = cache_dir().join("rootfs-debian11");
    let marker = dir.join(".reset-peer-complete");
    if marker.exists() {
        eprintln!("setup: Debian 11 rootfs present ({})", dir.display());
        return Ok(());
    }
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    sh::run(
        Command::new("debootstrap")
            .args([
                "--variant=minbase",
                "--include=libnftnl11,libmnl0",
                "bullseye",
            ])
            .arg(&dir)
            .arg("http://deb.debian.org/debian")
            .stdout(std::process::Stdio::null()),
    )?;
    std::fs::write(
        &marker,
        "debootstrap bullseye minbase + libnftnl11 libmnl0\n",
    )
    .with_context(|| format!("write {}", marker.display()))
}

/// The musl target, for `cargo xtask image`'s static controller (linked by zig).
fn musl_target() -> anyhow::Result<()> {
    let installed = sh::output(Command::new("rustup").args(["target", "list", "--installed"]))
        .unwrap_or_default();
    if installed
        .lines()
        .any(|l| l.trim() == "x86_64-unknown-linux-musl")
    {
        eprintln!("setup: x86_64-unknown-linux-musl target present");
        return Ok(());
    }
    sh::run(Command::new("rustup").args(["target", "add", "x86_64-unknown-linux-musl"]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_step_names_itself_and_the_retry() {
        let err = step(
            "bpf-linker",
            "cargo xtask setup",
            || -> anyhow::Result<()> { bail!("link failed") },
        )
        .expect_err("fails");
        let msg = format!("{err:#}");
        assert!(msg.contains("`bpf-linker` failed: link failed"), "{msg}");
        assert!(msg.contains("retry it with: cargo xtask setup"), "{msg}");
    }
}
