//! Builds reset-ebpf for bpfel-unknown-none with the pinned nightly (aya-build) so the agent can
//! embed it. Fails early, naming `cargo xtask setup`, when a prerequisite is missing.
use std::{path::Path, process::Command};

fn main() -> anyhow::Result<()> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let ebpf_dir = root.join("reset-ebpf");
    let toolchain_file = ebpf_dir.join("nightly-toolchain");
    println!("cargo:rerun-if-changed={}", toolchain_file.display());
    let toolchain = std::fs::read_to_string(&toolchain_file)?.trim().to_owned();

    if std::env::var_os("AYA_BUILD_SKIP").is_none() {
        check_prerequisites(&toolchain)?;
    }
    let package = aya_build::Package {
        name: "reset-ebpf",
        root_dir: ebpf_dir.to_str().expect("utf-8 path"),
        ..Default::default()
    };
    aya_build::build_ebpf([package], aya_build::Toolchain::Custom(&toolchain))?;
    if std::env::var_os("AYA_BUILD_SKIP").is_some() {
        // Leave an empty object: the agent then reports that eBPF is unavailable in this build.
        let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?).join("reset-ebpf");
        if !out.exists() {
            std::fs::write(out, [])?;
        }
    }
    Ok(())
}

fn check_prerequisites(toolchain: &str) -> anyhow::Result<()> {
    let fix = "run `cargo xtask setup` (installs the pinned nightly with rust-src, bpf-linker, libnftnl-dev and libmnl-dev)";
    let sysroot = Command::new("rustup")
        .args(["run", toolchain, "rustc", "--print", "sysroot"])
        .env("RUSTUP_AUTO_INSTALL", "0")
        .output();
    let sysroot = match sysroot {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_owned(),
        _ => anyhow::bail!("the eBPF toolchain {toolchain} is not installed: {fix}"),
    };
    if !Path::new(&sysroot)
        .join("lib/rustlib/src/rust/library/core")
        .exists()
    {
        anyhow::bail!("rust-src is missing from {toolchain}: {fix}");
    }
    let linker_ok = Command::new("bpf-linker")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !linker_ok {
        anyhow::bail!("bpf-linker is missing or cannot start: {fix}");
    }
    Ok(())
}
