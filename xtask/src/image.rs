//! `cargo xtask image`: an OCI image of the controller with the portable agent inside, for
//! running the fault from Kubernetes (deploy/kubernetes). No base image and nothing pulled from
//! a registry: the layers are files this build makes, packed by umoci (Debian's package).
//!
//! - The controller is linked statically against musl (`cargo zigbuild --target
//!   x86_64-unknown-linux-musl`): its only C dependency is libc (TLS is rustls with ring), so a
//!   static build runs in an image that has no libc at all.
//! - The agent is `cargo xtask dist`'s: it needs glibc >= 2.28, libnftnl.so.11 and libmnl.so.0
//!   in the GUEST; it never runs in the container, which only carries it to upload. It sits
//!   where the controller looks for it by default (`<controller dir>/../dist/reset-agent`).
//! - Debian's CA bundle, so GOVC_INSECURE=false can verify a vCenter certificate issued by a
//!   public CA (a VMCA certificate needs GOVC_TLS_CA_CERTS, mounted like the secrets).
//!
//! Layers (base files, agent, controller), config (entrypoint, user 65532, no secret) and the
//! outputs: the OCI layout `<target>/image/oci` (tag = the workspace version) and the same as
//! an OCI archive `<target>/image/reset-controller-<version>.oci.tar` (`podman load`, `skopeo
//! copy oci-archive:...`).
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

use crate::sh;

/// The image's name in the manifests of deploy/kubernetes (retag it for your registry).
pub const NAME: &str = "reset-peer/reset-controller";
/// Where the controller is in the image.
pub const CONTROLLER: &str = "/opt/reset-peer/bin/reset-controller";
/// Where the agent is in the image (the controller's default agent path).
pub const AGENT: &str = "/opt/reset-peer/dist/reset-agent";
/// The CA bundle in the image (rustls' native roots look there).
const CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
/// A user without a name or a home: the controller needs no privilege in its container.
const USER: &str = "65532:65532";
const MUSL: &str = "x86_64-unknown-linux-musl";

/// Builds the agent (dist), the static controller and the image; prints what it wrote and
/// returns the archive's path.
pub fn run() -> anyhow::Result<PathBuf> {
    let agent = crate::dist::run()?;
    let controller = static_controller()?;
    let version = env!("CARGO_PKG_VERSION");
    let out = crate::dist::target_dir()?.join("image");
    let layout = out.join("oci");
    let work = out.join("work");
    for d in [&layout, &work] {
        match std::fs::remove_dir_all(d) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("remove {}", d.display())),
        }
    }
    std::fs::create_dir_all(&work).with_context(|| format!("create {}", work.display()))?;
    let image = format!("{}:{version}", layout.display());
    umoci(&["init", "--layout", &layout.display().to_string()])?;
    umoci(&["new", "--image", &image])?;
    let bundle = work.join("bundle");
    umoci(&["unpack", "--image", &image, &bundle.display().to_string()])?;
    let rootfs = bundle.join("rootfs");
    // One layer per part, so a new controller does not re-ship the agent.
    let ca = Path::new(CA_BUNDLE);
    if !ca.is_file() {
        bail!("{CA_BUNDLE} is missing: install Debian's ca-certificates");
    }
    place(&rootfs, ca, CA_BUNDLE, 0o644)?;
    let tmp = rootfs.join("tmp");
    std::fs::create_dir_all(&tmp)?;
    set_mode(&tmp, 0o1777)?;
    repack(&image, &bundle, "base: CA bundle, /tmp")?;
    place(&rootfs, &agent, AGENT, 0o755)?;
    repack(
        &image,
        &bundle,
        "the portable reset-agent (cargo xtask dist), uploaded to guests",
    )?;
    place(&rootfs, &controller, CONTROLLER, 0o755)?;
    repack(&image, &bundle, "reset-controller, static (musl)")?;
    let mut config = vec![
        "config".to_string(),
        "--image".into(),
        image.clone(),
        "--config.entrypoint".into(),
        CONTROLLER.into(),
        "--config.user".into(),
        USER.into(),
        "--config.workingdir".into(),
        "/tmp".into(),
        "--config.env".into(),
        "PATH=/opt/reset-peer/bin".into(),
        "--history.created_by".into(),
        "cargo xtask image: entrypoint and labels".into(),
    ];
    for (k, v) in [
        ("org.opencontainers.image.title", "reset-controller"),
        (
            "org.opencontainers.image.description",
            "reset-peer: the HTTP reset-peer chaos fault for vSphere VMs; the controller, with the agent it uploads",
        ),
        ("org.opencontainers.image.version", version),
        ("org.opencontainers.image.licenses", "MIT OR Apache-2.0"),
        ("org.opencontainers.image.ref.name", version),
    ] {
        config.extend(["--config.label".into(), format!("{k}={v}")]);
    }
    let config: Vec<&str> = config.iter().map(String::as_str).collect();
    umoci(&config)?;
    umoci(&["gc", "--layout", &layout.display().to_string()])?;
    std::fs::remove_dir_all(&work).with_context(|| format!("remove {}", work.display()))?;
    let archive = out.join(format!("reset-controller-{version}.oci.tar"));
    let _ = std::fs::remove_file(&archive);
    sh::run(
        Command::new("tar")
            .arg("-C")
            .arg(&layout)
            .args([
                "--sort=name",
                "--owner=0",
                "--group=0",
                "--numeric-owner",
                "-cf",
            ])
            .arg(&archive)
            .arg("."),
    )?;
    let size = std::fs::metadata(&archive)?.len();
    println!("{}", layout.display());
    println!("{}", archive.display());
    println!(
        "image  {NAME}:{version} (tag {version} in the layout), {:.1} MiB, 3 layers, no base image",
        size as f64 / (1024.0 * 1024.0)
    );
    println!(
        "run    podman run --rm oci-archive:{} --version",
        archive.display()
    );
    Ok(archive)
}

/// The controller linked statically against musl (zig as the C compiler and linker, as for the
/// portable agent); fails when the result still wants a dynamic loader.
fn static_controller() -> anyhow::Result<PathBuf> {
    sh::run(
        sh::cargo()
            .current_dir(sh::root())
            .args(["zigbuild", "--release", "--package", "reset-controller"])
            .args(["--bin", "reset-controller", "--target", MUSL])
            .args(["--config", "profile.release.strip=\"symbols\""]),
    )?;
    let exe = crate::dist::target_dir()?
        .join(MUSL)
        .join("release/reset-controller");
    let bytes = std::fs::read(&exe).with_context(|| format!("read {}", exe.display()))?;
    if !is_static(&bytes) {
        bail!(
            "{} asks for a dynamic loader: it would not start in an image without libc",
            exe.display()
        );
    }
    Ok(exe)
}

/// Whether a 64-bit little-endian ELF file has no PT_INTERP (needs no dynamic loader).
pub fn is_static(elf: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    let u16_at = |o: usize| elf.get(o..o + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
    let u32_at = |o: usize| {
        elf.get(o..o + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let u64_at = |o: usize| {
        elf.get(o..o + 8).map(|b| {
            let mut a = [0u8; 8];
            a.copy_from_slice(b);
            u64::from_le_bytes(a)
        })
    };
    if elf.get(..6) != Some(b"\x7fELF\x02\x01".as_slice()) {
        return false;
    }
    let (Some(phoff), Some(size), Some(count)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38)) else {
        return false;
    };
    let Ok(phoff) = usize::try_from(phoff) else {
        return false;
    };
    (0..usize::from(count))
        .all(|i| u32_at(phoff + i * usize::from(size)).is_some_and(|t| t != PT_INTERP))
}

fn umoci(args: &[&str]) -> anyhow::Result<()> {
    sh::run(Command::new("umoci").args(args))
        .context("umoci (Debian's umoci package; `cargo xtask setup` installs it)")
}

/// Copy `from` to `rootfs` + `to` with `mode`, owned by root.
fn place(rootfs: &Path, from: &Path, to: &str, mode: u32) -> anyhow::Result<()> {
    let dest = rootfs.join(to.trim_start_matches('/'));
    if let Some(dir) = dest.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
    }
    std::fs::copy(from, &dest)
        .with_context(|| format!("copy {} to {}", from.display(), dest.display()))?;
    set_mode(&dest, mode)
}

fn set_mode(path: &Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {mode:o} {}", path.display()))
}

/// A new layer of what changed in the bundle's rootfs since the last repack (the bundle is
/// refreshed, so the next layer holds only what is added after this one).
fn repack(image: &str, bundle: &Path, what: &str) -> anyhow::Result<()> {
    umoci(&[
        "repack",
        "--refresh-bundle",
        "--image",
        image,
        "--history.created_by",
        &format!("cargo xtask image: {what}"),
        &bundle.display().to_string(),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn static_means_no_dynamic_loader() {
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert!(!is_static(&me), "a test binary links glibc dynamically");
        assert!(!is_static(b"#!/bin/sh\n"));
        assert!(!is_static(&[]));
    }
}
