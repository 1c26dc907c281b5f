//! Facts about this host that decide whether a run can start: kernel version, BTF,
//! capabilities, the interface, the proxy port. Read-only; used by `preflight` and `run`.
use std::{fs, io, net::SocketAddr, path::Path};

/// Capability bits (linux/capability.h).
pub const CAP_NET_ADMIN: u32 = 12;
pub const CAP_SYS_ADMIN: u32 = 21;
pub const CAP_BPF: u32 = 39;

pub fn kernel_release() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_else(|_| "unknown".into())
}

/// What the agent knows about this host before it changes anything: the kernel whose
/// features it uses, its capabilities, and whether it may destroy sockets. Read once by main
/// (with the hidden `--assume-*` overrides applied) and handed to the lifecycle and preflight,
/// so no module reads the environment or the kernel version on its own.
#[derive(Debug, Clone)]
pub struct HostFacts {
    /// `uname -r`.
    pub release: String,
    /// (major, minor) of the kernel whose feature set the agent uses: the running one, or an
    /// older one named by `--assume-kernel X.Y` (RESET_AGENT_ASSUME_KERNEL), which makes the
    /// agent take that kernel's fallback paths (netlink tc filters below 6.6, a plain table
    /// below 5.12, the NAT redirect below 4.19) to exercise them on a newer kernel. A value
    /// above the running kernel is ignored.
    pub kernel: Option<(u32, u32)>,
    /// The effective capability set.
    pub caps: u64,
    /// Why sockets may not be destroyed, when `--assume-no-sock-destroy` says so; otherwise
    /// `sock_destroy` asks the kernel.
    pub no_sock_destroy: Option<String>,
}

impl HostFacts {
    pub fn read(assume_kernel: Option<&str>, assume_no_sock_destroy: bool) -> HostFacts {
        let release = kernel_release();
        let real = parse_release(&release);
        let assumed = assume_kernel.and_then(parse_release);
        let kernel = match (real, assumed) {
            (Some(r), Some(a)) if a < r => Some(a),
            _ => real,
        };
        HostFacts {
            release,
            kernel,
            caps: effective_caps(),
            no_sock_destroy: assume_no_sock_destroy.then(|| {
                "--assume-no-sock-destroy (RESET_AGENT_ASSUME_NO_SOCK_DESTROY) says this kernel cannot destroy sockets".into()
            }),
        }
    }

    /// Kernel >= `v` (an unknown kernel is assumed new).
    pub fn kernel_at_least(&self, v: (u32, u32)) -> bool {
        self.kernel.is_none_or(|k| k >= v)
    }

    /// TCX links (6.6): the tc programs die with the process.
    pub fn tcx(&self) -> bool {
        self.kernel_at_least((6, 6))
    }

    /// Whether the request unit's kernel path can reset connections (sock_diag SOCK_DESTROY,
    /// CONFIG_INET_DIAG_DESTROY); the probe destroys a loopback connection made for it.
    pub fn sock_destroy(&self) -> Result<(), String> {
        match &self.no_sock_destroy {
            Some(why) => Err(why.clone()),
            None => crate::sockdiag::supported().map_err(|e| e.to_string()),
        }
    }
}

pub fn parse_release(release: &str) -> Option<(u32, u32)> {
    let mut it = release.split(|c: char| !c.is_ascii_digit());
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

pub fn has_btf() -> bool {
    Path::new("/sys/kernel/btf/vmlinux").exists()
}

/// The effective capability set of this process.
pub fn effective_caps() -> u64 {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(0)
}

pub fn has_cap(caps: u64, cap: u32) -> bool {
    caps & (1u64 << cap) != 0
}

/// Whether eBPF tc programs may be loaded: CAP_BPF + CAP_NET_ADMIN (or CAP_SYS_ADMIN).
pub fn can_load_bpf(caps: u64) -> bool {
    has_cap(caps, CAP_SYS_ADMIN) || (has_cap(caps, CAP_BPF) && has_cap(caps, CAP_NET_ADMIN))
}

pub fn interface_exists(name: &str) -> bool {
    nix::net::if_::if_nametoindex(name).is_ok()
}

/// Interfaces present, for the "missing interface" message.
pub fn interfaces() -> Vec<String> {
    let mut v: Vec<String> = nix::net::if_::if_nameindex()
        .map(|l| {
            l.iter()
                .map(|i| i.name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Who holds a TCP port in LISTEN in this network namespace: "pid 42, nginx", if visible.
pub fn port_owner(port: u16) -> Option<String> {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 10 || f[3] != "0A" {
                continue;
            }
            let lport = f[1]
                .rsplit(':')
                .next()
                .and_then(|p| u16::from_str_radix(p, 16).ok());
            if lport == Some(port) {
                inodes.push(format!("socket:[{}]", f[9]));
            }
        }
    }
    if inodes.is_empty() {
        return None;
    }
    for entry in fs::read_dir("/proc").ok()?.flatten() {
        let pid = entry.file_name().to_string_lossy().into_owned();
        if !pid.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(fds) = fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(target) = fs::read_link(fd.path())
                && inodes.iter().any(|i| Path::new(i) == target)
            {
                let comm = fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
                return Some(format!("pid {pid}, {}", comm.trim()));
            }
        }
    }
    Some("owner not visible".into())
}

/// Tries to bind the proxy port on both families without keeping it.
pub fn port_free(port: u16) -> io::Result<()> {
    for addr in [
        SocketAddr::from(([0, 0, 0, 0], port)),
        SocketAddr::from(([0u16; 8], port)),
    ] {
        match std::net::TcpListener::bind(addr) {
            Ok(_) => {}
            Err(e)
                if e.raw_os_error() == Some(libc::EAFNOSUPPORT)
                    || e.raw_os_error() == Some(libc::EADDRNOTAVAIL) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kernel_releases() {
        assert_eq!(parse_release("6.18.44-fc-v669"), Some((6, 18)));
        assert_eq!(parse_release("4.18.0-553.el8_10.x86_64"), Some((4, 18)));
        assert_eq!(parse_release("garbage"), None);
    }
}
