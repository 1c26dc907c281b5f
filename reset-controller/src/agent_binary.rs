//! Which reset-agent file the controller uploads, and whether it will start in a guest.
//!
//! The default is the portable agent `cargo xtask dist` writes (target/dist/reset-agent, found
//! from the controller's own path), which needs only glibc >= 2.28 and the guest's
//! libnftnl.so.11 and libmnl.so.0. A plain `cargo build` agent beside the controller links the
//! build machine's glibc (2.34 or newer) and would not start on RHEL 8 or Ubuntu 20.04, so it is
//! the default only when its ELF says it is portable. Reading the ELF is all this module does;
//! it never runs the file.
use std::path::{Path, PathBuf};

/// The oldest glibc the portable agent supports (what `cargo xtask dist` targets).
pub const PORTABLE_GLIBC: (u32, u32) = (2, 28);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AgentBinaryError {
    #[error(
        "no portable reset-agent found (looked for {looked}): build it with `cargo xtask dist` \
         (writes target/dist/reset-agent, which the controller then uploads by default) or pass \
         --agent PATH"
    )]
    NotFound { looked: String },
    #[error(
        "the reset-agent beside the controller ({path}) needs glibc {major}.{minor}, newer than many \
         guests have (RHEL 8: 2.28, Ubuntu 20.04: 2.31): build the portable agent with `cargo \
         xtask dist` (used by default once built), or pass --agent PATH to upload this one anyway"
    )]
    NotPortable {
        path: String,
        major: u32,
        minor: u32,
    },
}

/// The default agent for a controller running from `exe`: `<exe dir>/../dist/reset-agent` (a
/// build tree), else `<exe dir>/reset-agent` if its ELF is portable.
pub fn default_agent(exe: &Path) -> Result<PathBuf, AgentBinaryError> {
    let dir = exe.parent().unwrap_or(Path::new("."));
    let dist = dir.join("../dist/reset-agent");
    if dist.is_file() {
        return Ok(dist);
    }
    let beside = dir.join("reset-agent");
    let Ok(bytes) = std::fs::read(&beside) else {
        return Err(AgentBinaryError::NotFound {
            looked: format!("{} and {}", dist.display(), beside.display()),
        });
    };
    match glibc_needed(&bytes) {
        Some(v) if v > PORTABLE_GLIBC => Err(AgentBinaryError::NotPortable {
            path: beside.display().to_string(),
            major: v.0,
            minor: v.1,
        }),
        _ => Ok(beside),
    }
}

/// The newest `GLIBC_x.y` symbol version an ELF file needs (from .gnu.version_r), `None` for a
/// static file or anything that is not a 64-bit little-endian ELF.
pub fn glibc_needed(bytes: &[u8]) -> Option<(u32, u32)> {
    let elf = Elf { b: bytes };
    if bytes.get(..6)? != [0x7f, b'E', b'L', b'F', 2, 1] {
        return None;
    }
    let shoff = elf.u64(0x28)?;
    let (shentsize, shnum) = (elf.u16(0x3a)? as usize, elf.u16(0x3c)? as usize);
    let section = |i: usize| -> Option<(u32, usize, usize, u32)> {
        let at = shoff.checked_add(i.checked_mul(shentsize)?)?;
        // sh_type, sh_offset, sh_size, sh_link
        Some((
            elf.u32(at + 4)?,
            elf.u64(at + 0x18)?,
            elf.u64(at + 0x20)?,
            elf.u32(at + 0x28)?,
        ))
    };
    const SHT_GNU_VERNEED: u32 = 0x6fff_fffe;
    let mut best = None;
    for i in 0..shnum.min(4096) {
        let (ty, off, size, link) = section(i)?;
        if ty != SHT_GNU_VERNEED {
            continue;
        }
        let (_, stroff, strsize, _) = section(link as usize)?;
        let strtab = bytes.get(stroff..stroff.checked_add(strsize)?)?;
        let name = |o: u32| -> Option<&str> {
            let s = strtab.get(o as usize..)?;
            std::str::from_utf8(&s[..s.iter().position(|&c| c == 0)?]).ok()
        };
        // Elf64_Verneed { vn_version u16, vn_cnt u16, vn_file u32, vn_aux u32, vn_next u32 }
        // Elf64_Vernaux { vna_hash u32, vna_flags u16, vna_other u16, vna_name u32, vna_next u32 }
        let mut need = off;
        for _ in 0..1024 {
            let cnt = elf.u16(need + 2)? as usize;
            let mut aux = need.checked_add(elf.u32(need + 8)? as usize)?;
            for _ in 0..cnt.min(1024) {
                if let Some(v) = name(elf.u32(aux + 8)?).and_then(parse_glibc) {
                    best = best.max(Some(v));
                }
                let next = elf.u32(aux + 12)? as usize;
                if next == 0 {
                    break;
                }
                aux = aux.checked_add(next)?;
            }
            let next = elf.u32(need + 12)? as usize;
            if next == 0 || need.checked_add(next)? >= off.checked_add(size)? {
                break;
            }
            need += next;
        }
    }
    best
}

fn parse_glibc(s: &str) -> Option<(u32, u32)> {
    let v = s.strip_prefix("GLIBC_")?;
    let mut it = v.split('.');
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

struct Elf<'a> {
    b: &'a [u8],
}

impl Elf<'_> {
    fn u16(&self, o: usize) -> Option<u16> {
        Some(u16::from_le_bytes(self.b.get(o..o + 2)?.try_into().ok()?))
    }
    fn u32(&self, o: usize) -> Option<u32> {
        Some(u32::from_le_bytes(self.b.get(o..o + 4)?.try_into().ok()?))
    }
    fn u64(&self, o: usize) -> Option<usize> {
        usize::try_from(u64::from_le_bytes(self.b.get(o..o + 8)?.try_into().ok()?)).ok()
    }
}

/// What to tell the user when the agent did not start in the guest (exit codes of the shell
/// that runs it: 126 not executable, 127 not found or a loader error).
pub fn start_failure_hint(code: i32) -> Option<&'static str> {
    match code {
        126 | 127 => Some(
            "the agent could not start in the guest: a library it needs is missing there \
             (libnftnl.so.11, libmnl.so.0: install nftables or iptables in the guest) or the \
             guest's glibc is older than the agent was built for; upload the portable agent \
             from `cargo xtask dist` (glibc >= 2.28), the controller's default once it is built",
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_glibc_needs_from_real_programs() {
        // A program of this machine (glibc 2.36): it needs some GLIBC_2.x version.
        let curl = std::fs::read("/usr/bin/curl").expect("read /usr/bin/curl");
        let v = glibc_needed(&curl).expect("curl is dynamic");
        assert!(((2, 2)..=(2, 99)).contains(&v), "{v:?}");
        // The controller test binary itself was linked here too.
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        assert!(glibc_needed(&me).is_some());
        assert_eq!(glibc_needed(b"#!/bin/sh\n"), None);
        assert_eq!(glibc_needed(&curl[..64]), None);
    }

    #[test]
    fn version_names() {
        assert_eq!(parse_glibc("GLIBC_2.28"), Some((2, 28)));
        assert_eq!(parse_glibc("GLIBC_2.2.5"), Some((2, 2)));
        assert_eq!(parse_glibc("LIBNFTNL_11"), None);
    }

    #[test]
    fn the_dist_build_wins_and_a_missing_one_names_the_fix() {
        let dir = std::env::temp_dir().join(format!("rp-agent-bin-{}", std::process::id()));
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let exe = bin.join("reset-controller");
        let err = default_agent(&exe).unwrap_err();
        assert!(err.to_string().contains("cargo xtask dist"), "{err}");
        // A non-portable file beside: refused, naming the glibc it needs.
        std::fs::copy("/usr/bin/curl", bin.join("reset-agent")).unwrap();
        let curl_glibc = glibc_needed(&std::fs::read("/usr/bin/curl").unwrap()).unwrap();
        if curl_glibc > PORTABLE_GLIBC {
            assert!(matches!(
                default_agent(&exe),
                Err(AgentBinaryError::NotPortable { .. })
            ));
        }
        // The dist artifact next to the build tree wins.
        std::fs::create_dir_all(dir.join("dist")).unwrap();
        std::fs::write(dir.join("dist/reset-agent"), b"x").unwrap();
        assert_eq!(
            default_agent(&exe).unwrap(),
            bin.join("../dist/reset-agent")
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
