//! `cargo xtask setup --prove-fresh`: the "install from nothing" path of bpf-linker, run on every
//! CI run even when the machine already has bpf-linker.
//!
//! A machine that already has a tool never runs the branch that installs it, so that branch can
//! rot unseen (it did: the LLVM pick once depended on directory order). This builds bpf-linker
//! into a scratch `CARGO_INSTALL_ROOT` against a scratch LLVM prefix, starts it, and links the
//! eBPF object with it, then removes the scratch directory. The user's ~/.cargo and
//! ~/.cache/reset-peer are neither read nor written.
use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::{Context, bail};

use crate::sh;

/// ELF e_machine of eBPF objects.
const EM_BPF: u16 = 247;

/// A scratch directory removed on drop, whatever happened.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn prove_fresh() -> anyhow::Result<()> {
    let nightly = super::nightly()?;
    let scratch = Scratch(std::env::temp_dir().join(format!(
        "reset-peer-fresh-bpf-linker-{}",
        std::process::id()
    )));
    let _ = std::fs::remove_dir_all(&scratch.0);
    std::fs::create_dir_all(&scratch.0)
        .with_context(|| format!("create {}", scratch.0.display()))?;
    let root = scratch.0.join("cargo-root");
    let prefix = scratch.0.join("llvm-prefix");
    eprintln!(
        "setup: proving the fresh path: bpf-linker from nothing into {}",
        root.display()
    );
    let started = Instant::now();
    let linker = super::step(
        "bpf-linker from nothing (scratch prefix)",
        "cargo xtask setup --prove-fresh",
        || super::install_bpf_linker(&nightly, &prefix, Some(&root)),
    )?;
    let built_in = started.elapsed();
    let object = super::step(
        "link the eBPF object with the fresh bpf-linker",
        "cargo xtask setup --prove-fresh",
        || link_ebpf(&nightly, &linker, &scratch.0.join("target")),
    )?;
    let size = std::fs::metadata(&object)?.len();
    eprintln!(
        "setup: fresh path proven: bpf-linker built from nothing in {:.0} s, started, and linked \
         the eBPF object ({size} bytes, EM_BPF) in {:.0} s in all",
        built_in.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Builds reset-ebpf for bpfel-unknown-none the way aya-build does, with `linker` named
/// explicitly (not found on PATH), into `target_dir`. Returns the object's path.
fn link_ebpf(nightly: &str, linker: &Path, target_dir: &Path) -> anyhow::Result<PathBuf> {
    let rustflags = [
        "--cfg=bpf_target_arch=\"x86_64\"".to_owned(),
        "-Cdebuginfo=2".to_owned(),
        "-Clink-arg=--btf".to_owned(),
        format!("-Clinker={}", linker.display()),
    ]
    .join("\x1f");
    let mut cmd = Command::new("rustup");
    cmd.current_dir(sh::root())
        .args(["run", nightly, "cargo", "build", "--package", "reset-ebpf"])
        .args(["--bins", "--release", "--target", "bpfel-unknown-none"])
        .args(["-Z", "build-std=core", "--target-dir"])
        .arg(target_dir)
        .env("CARGO_ENCODED_RUSTFLAGS", rustflags)
        .env("RUSTUP_AUTO_INSTALL", "0")
        .env_remove("RUSTC")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("RUSTFLAGS");
    sh::run(&mut cmd)?;
    let object = target_dir.join("bpfel-unknown-none/release/reset-ebpf");
    let bytes = std::fs::read(&object).with_context(|| format!("read {}", object.display()))?;
    check_object(&bytes).with_context(|| format!("{} is not our eBPF object", object.display()))?;
    Ok(object)
}

/// An ELF whose machine is eBPF and which holds both tc programs.
fn check_object(bytes: &[u8]) -> anyhow::Result<()> {
    if !bytes.starts_with(b"\x7fELF") || bytes.len() < 20 {
        bail!("not an ELF file");
    }
    let machine = u16::from_le_bytes([bytes[18], bytes[19]]);
    if machine != EM_BPF {
        bail!("ELF machine {machine}, expected {EM_BPF} (eBPF)");
    }
    for program in [reset_common::PROG_INGRESS, reset_common::PROG_EGRESS] {
        if !bytes
            .windows(program.len())
            .any(|w| w == program.as_bytes())
        {
            bail!("program {program} is missing");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_object_must_be_bpf_and_hold_both_programs() {
        let mut obj = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x01\0".to_vec();
        obj.extend_from_slice(&EM_BPF.to_le_bytes());
        obj.extend_from_slice(b"..reset_ingress..reset_egress..");
        check_object(&obj).expect("valid");
        let mut x86 = obj.clone();
        x86[18] = 62;
        assert!(check_object(&x86).is_err());
        let truncated = &obj[..obj.len() - 16];
        assert!(check_object(truncated).is_err());
        assert!(check_object(b"INPUT(x)").is_err());
    }
}
