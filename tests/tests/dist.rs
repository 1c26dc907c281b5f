//! The portable agent (`cargo xtask dist`, <target dir>/dist/reset-agent): one file for any
//! x86_64 guest with glibc >= 2.28 and the libnftnl/libmnl of its nftables or iptables. Checks
//! the ELF (the libraries it needs, the newest glibc symbol version), the size, that the artifact
//! does the whole job in a lab namespace pair exactly as the normal build does (resets selected
//! callers, counts them, leaves nothing behind on SIGTERM or kill -9), that it runs on an older
//! distribution's userland (Debian 11, glibc 2.31, libnftnl 1.1.8), and that the controller
//! uploads it by default and explains an agent that cannot start.
//!
//! `cargo xtask test` builds the artifact before running the tests; when it is missing or older
//! than the agent's sources, the first test here builds it with `cargo xtask dist`.
use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::Mutex,
    time::{Duration, Instant, SystemTime},
};

use reset_tests::{
    bin_dir,
    lab::Lab,
    proc::{Agent, curl},
    require_root,
};

/// Upper bound on the artifact's size. It is 4.0 MiB today (tokio, aya, clap, tracing, serde,
/// the embedded eBPF object; stripped, thin LTO). The file is uploaded to every VM through
/// Guest Operations, so growth should be a decision: 8 MiB leaves room for features but catches
/// an unstripped or debug build (tens of MiB) or a new heavyweight dependency.
const MAX_SIZE: u64 = 8 * 1024 * 1024;

// ELF constants (elf.h).
const EM_X86_64: u16 = 62;
const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const PT_LOAD: u32 = 1;
const DT_NULL: u64 = 0;
const DT_NEEDED: u64 = 1;
const DT_STRTAB: u64 = 5;

/// The shared libraries the portable agent may need: glibc's, and the two every nftables or
/// iptables-nft installation has.
const ALLOWED_NEEDED: &[&str] = &[
    "libnftnl.so.11",
    "libmnl.so.0",
    "libc.so.6",
    "libm.so.6",
    "libpthread.so.0",
    "libdl.so.2",
    "ld-linux-x86-64.so.2",
];

fn workspace_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
}

/// Newest modification time of the files the agent is built from.
fn newest_source() -> SystemTime {
    fn walk(p: &Path, newest: &mut SystemTime) {
        let Ok(meta) = std::fs::metadata(p) else {
            return;
        };
        if meta.is_dir() {
            for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
                walk(&e.path(), newest);
            }
        } else if let Ok(m) = meta.modified() {
            *newest = (*newest).max(m);
        }
    }
    let mut newest = SystemTime::UNIX_EPOCH;
    let root = workspace_root();
    for p in [
        "Cargo.toml",
        "Cargo.lock",
        "reset-agent",
        "reset-ebpf/src",
        "reset-ebpf/Cargo.toml",
        "reset-common",
    ] {
        walk(&root.join(p), &mut newest);
    }
    newest
}

/// The artifact, built (once per test process) when missing or stale.
fn dist_agent() -> PathBuf {
    static BUILD: Mutex<()> = Mutex::new(());
    let _once = BUILD.lock().unwrap_or_else(|e| e.into_inner());
    let target_dir = bin_dir().parent().expect("target dir").to_path_buf();
    let exe = target_dir.join("dist/reset-agent");
    let fresh = std::fs::metadata(&exe)
        .and_then(|m| m.modified())
        .is_ok_and(|built| built >= newest_source());
    if !fresh {
        eprintln!(
            "{} is missing or older than the agent's sources: running `cargo xtask dist`",
            exe.display()
        );
        let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
        let st = Command::new(cargo)
            .args(["xtask", "dist"])
            .current_dir(workspace_root())
            .env("CARGO_TARGET_DIR", &target_dir)
            .stdout(Stdio::null())
            .status()
            .expect("run cargo xtask dist");
        assert!(st.success(), "cargo xtask dist failed ({st})");
    }
    exe
}

/// What the ELF header and dynamic section say about loading.
#[derive(Debug)]
struct ElfLinkage {
    machine: u16,
    /// PT_INTERP: the dynamic loader a dynamically linked program names.
    interpreter: Option<String>,
    /// DT_NEEDED entries: the shared libraries the loader must find.
    needed: Vec<String>,
}

fn read_elf(bytes: &[u8]) -> Result<ElfLinkage, String> {
    let u16_at = |o: usize| -> Result<u16, String> {
        bytes
            .get(o..o + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
            .ok_or(format!("truncated at {o}"))
    };
    let u32_at = |o: usize| -> Result<u32, String> {
        bytes
            .get(o..o + 4)
            .map(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")))
            .ok_or(format!("truncated at {o}"))
    };
    let u64_at = |o: usize| -> Result<usize, String> {
        bytes
            .get(o..o + 8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")) as usize)
            .ok_or(format!("truncated at {o}"))
    };
    if bytes.get(..6) != Some(&[0x7f, b'E', b'L', b'F', 2, 1][..]) {
        return Err("not a 64-bit little-endian ELF file".into());
    }
    let machine = u16_at(18)?;
    let (phoff, phentsize, phnum) = (u64_at(32)?, usize::from(u16_at(54)?), u16_at(56)?);
    let mut interpreter = None;
    let mut dynamic = Vec::new();
    let mut loads = Vec::new();
    for i in 0..usize::from(phnum) {
        let ph = phoff.saturating_add(i.saturating_mul(phentsize));
        let (p_type, p_offset, p_vaddr, p_filesz) = (
            u32_at(ph)?,
            u64_at(ph + 8)?,
            u64_at(ph + 16)?,
            u64_at(ph + 32)?,
        );
        let seg = bytes
            .get(p_offset..p_offset.saturating_add(p_filesz))
            .ok_or("segment outside the file")?;
        match p_type {
            PT_INTERP => {
                interpreter = Some(String::from_utf8_lossy(seg).trim_end_matches('\0').into());
            }
            PT_LOAD => loads.push((p_vaddr, p_offset, p_filesz)),
            PT_DYNAMIC => {
                for entry in seg.chunks_exact(16) {
                    let tag = u64::from_le_bytes(entry[..8].try_into().expect("8 bytes"));
                    let val = u64::from_le_bytes(entry[8..].try_into().expect("8 bytes"));
                    if tag == DT_NULL {
                        break;
                    }
                    dynamic.push((tag, val as usize));
                }
            }
            _ => {}
        }
    }
    // DT_NEEDED values are offsets into the string table DT_STRTAB names by address.
    let strtab = dynamic
        .iter()
        .find(|(t, _)| *t == DT_STRTAB)
        .and_then(|(_, addr)| {
            loads
                .iter()
                .find(|(va, _, sz)| (*va..va + sz).contains(addr))
                .map(|(va, off, _)| off + (addr - va))
        });
    let mut needed = Vec::new();
    for (_, off) in dynamic.iter().filter(|(t, _)| *t == DT_NEEDED) {
        let at = strtab.ok_or("DT_NEEDED without a string table")? + off;
        let s = bytes.get(at..).ok_or("name outside the file")?;
        let end = s.iter().position(|&b| b == 0).ok_or("unterminated name")?;
        needed.push(String::from_utf8_lossy(&s[..end]).into_owned());
    }
    Ok(ElfLinkage {
        machine,
        interpreter,
        needed,
    })
}

#[test]
fn elf_reader_sees_a_dynamic_program() {
    // A dynamically linked program from this machine: the reader must see what the check needs.
    let bytes = std::fs::read("/usr/bin/curl").expect("curl is installed (cargo xtask setup)");
    let elf = read_elf(&bytes).expect("parse /usr/bin/curl");
    assert!(elf.interpreter.is_some_and(|i| i.contains("ld-linux")));
    assert!(
        elf.needed.iter().any(|n| n == "libcurl.so.4"),
        "{:?}",
        elf.needed
    );
    assert!(read_elf(&bytes[..40]).is_err());
    assert!(read_elf(b"#!/bin/sh\n").is_err());
}

#[test]
fn dist_agent_is_portable_and_small() {
    let exe = dist_agent();
    let bytes = std::fs::read(&exe).expect("read the dist agent");
    let size = bytes.len() as u64;
    let elf = read_elf(&bytes).expect("the dist agent is an ELF file");
    let glibc = reset_controller::agent_binary::glibc_needed(&bytes);
    println!(
        "{}: {size} bytes ({:.2} MiB), bound {MAX_SIZE} bytes; needs {:?}, glibc {glibc:?}",
        exe.display(),
        size as f64 / (1024.0 * 1024.0),
        elf.needed
    );
    assert_eq!(elf.machine, EM_X86_64);
    assert_eq!(
        elf.interpreter.as_deref(),
        Some("/lib64/ld-linux-x86-64.so.2"),
        "the standard x86_64 loader"
    );
    for lib in &elf.needed {
        assert!(
            ALLOWED_NEEDED.contains(&lib.as_str()),
            "{lib} is not on every guest: {:?}",
            elf.needed
        );
    }
    for lib in ["libnftnl.so.11", "libmnl.so.0"] {
        assert!(elf.needed.iter().any(|n| n == lib), "{:?}", elf.needed);
    }
    let glibc = glibc.expect("a dynamic program needs some GLIBC version");
    assert!(
        glibc <= reset_controller::agent_binary::PORTABLE_GLIBC,
        "needs glibc {glibc:?}, newer than 2.28 (RHEL 8)"
    );
    assert!(
        size <= MAX_SIZE,
        "{} is {size} bytes, over the {MAX_SIZE}-byte bound",
        exe.display()
    );
}

/// The agent this workspace builds for the host is not portable, and the check can tell.
#[test]
fn the_host_build_is_told_apart() {
    let host = std::fs::read(bin_dir().join("reset-agent")).expect("read the host agent");
    let glibc = reset_controller::agent_binary::glibc_needed(&host).expect("dynamic");
    assert!(
        glibc > reset_controller::agent_binary::PORTABLE_GLIBC,
        "built against this machine's glibc: {glibc:?}"
    );
}

/// Starts the dist agent (`run ARGS`) in the VM and waits until its fault is active.
fn start_dist(lab: &Lab, args: &[&str]) -> Agent {
    let mut a = Agent::spawn_exe(&lab.vm, &dist_agent(), args);
    a.wait_active();
    a
}

#[test]
fn dist_agent_resets_counts_and_cleans_up() {
    if !require_root() {
        return;
    }
    let (lab, _svc) = Lab::with_service();
    let mut agent = start_dist(
        &lab,
        &[
            "--toxicity",
            "100",
            "--reset-timeout",
            "200",
            "--total-chaos-duration",
            "60",
        ],
    );
    let table = lab
        .vm
        .stdout("nft", &["list", "table", "inet", "reset_peer"]);
    assert!(
        table.contains("flags owner") && table.contains("tproxy to :8080"),
        "{table}"
    );
    let n = 3;
    for v6 in [false, false, true] {
        let c = curl(&lab.caller, &lab.url(v6, 80, "/"));
        assert_eq!(c.exit, 56, "curl should fail with 56: {c:?}");
        assert!(c.stderr.contains("Connection reset by peer"), "{c:?}");
    }
    agent.signal("TERM");
    let run = agent.finish_within(Duration::from_secs(10));
    let report = run.report();
    assert_eq!(run.code(), Some(3), "aborted by SIGTERM: {}", run.stderr);
    assert_eq!(report["aborted"], true, "{report}");
    for f in [
        "flows_seen",
        "flows_selected",
        "proxy_accepted",
        "resets_issued",
        "resets_observed",
    ] {
        assert_eq!(report[f].as_u64(), Some(n), "{f}: {report}");
    }
    assert_eq!(report["counts_kernel_observed"], true, "{report}");
    assert_eq!(report["nft_table_owned"], true, "{report}");
    assert_eq!(report["cleanup"]["verified"], true, "{report}");
    assert_eq!(lab.leftovers(), Vec::<String>::new());
    let c = curl(&lab.caller, &lab.url(false, 80, "/health"));
    assert_eq!((c.exit, c.http_code.as_str()), (0, "200"), "{c:?}");
}

#[test]
fn dist_agent_killed_leaves_nothing_behind() {
    if !require_root() {
        return;
    }
    let (lab, _svc) = Lab::with_service();
    let agent = start_dist(&lab, &["--toxicity", "100", "--total-chaos-duration", "60"]);
    assert!(lab.vm.nft_ruleset().contains("reset_peer"));
    let t0 = Instant::now();
    agent.signal("KILL");
    loop {
        let left = lab.leftovers();
        if left.is_empty() {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(1),
            "still present 1 s after kill -9: {left:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    println!("clean {:?} after kill -9", t0.elapsed());
    drop(agent);
    let c = curl(&lab.caller, &lab.url(false, 80, "/health"));
    assert_eq!((c.exit, c.http_code.as_str()), (0, "200"), "{c:?}");
}

/// The controller uploads the dist artifact into a VM (through the simulator's Guest
/// Operations) and it does the whole job there.
#[test]
fn controller_uploads_and_runs_the_dist_agent() {
    if !require_root() {
        return;
    }
    use reset_tests::ctl::{one_vm, run_args, start_injected};
    let (lab, _svc, sim) = one_vm();
    let exe = dist_agent();
    let child = start_injected(&sim, &lab, &run_args(exe.to_str().unwrap(), "3", &[]));
    assert_eq!(curl(&lab.caller, &lab.url(false, 80, "/")).exit, 56);
    let out = child.finish(Duration::from_secs(60));
    let v = out.report();
    assert_eq!(out.code(), Some(0), "{v}");
    let row = &v["vms"][0];
    assert_eq!(row["agent_report"]["resets_observed"], 1, "{row}");
    assert_eq!(row["agent_report"]["counts_kernel_observed"], true, "{row}");
    assert_eq!(row["guest_files_removed"], true, "{row}");
    assert_eq!(sim.guest_files(), Vec::<PathBuf>::new());
    lab.assert_clean();
}

/// The Debian 11 userland `cargo xtask setup` prepares (debootstrap minbase with libnftnl11 and
/// libmnl0): glibc 2.31, libnftnl 1.1.8. Older than this machine's, as a guest's would be.
fn debian11_rootfs() -> PathBuf {
    let root = std::env::var_os("RESET_PEER_ROOTFS_DEBIAN11")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME"))
                .join(".cache/reset-peer/rootfs-debian11")
        });
    assert!(
        root.join(".reset-peer-complete").exists(),
        "{} is not prepared: run `cargo xtask setup`",
        root.display()
    );
    root
}

/// A copy of the dist agent inside the rootfs, in a 0700 directory removed on drop.
struct InRootfs {
    dir: PathBuf,
}

impl InRootfs {
    fn new(root: &Path, exe: &Path) -> InRootfs {
        use std::os::unix::fs::PermissionsExt;
        let dir = root.join(format!("opt/reset-peer-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir in rootfs");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        std::fs::copy(exe, dir.join("reset-agent")).expect("copy the agent");
        InRootfs { dir }
    }
}

impl Drop for InRootfs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The dist agent on an older distribution's userland: chrooted into Debian 11 (its own glibc
/// 2.31, libnftnl 1.1.8, libmnl 1.0.4) inside the lab VM, it steers with tproxy, resets and
/// counts exactly, and cleans up.
#[test]
fn dist_agent_runs_on_a_debian_11_userland() {
    if !require_root() {
        return;
    }
    let root = debian11_rootfs();
    let staged = InRootfs::new(&root, &dist_agent());
    let (lab, _svc) = Lab::with_service();
    let inside = staged.dir.strip_prefix(&root).expect("inside the rootfs");
    let agent = format!("/{}/reset-agent", inside.display());
    let report = format!("/{}/report.json", inside.display());
    // A private mount namespace: /proc and /sys are mounted into the rootfs for this process
    // only and vanish with it.
    let script = format!(
        "mount --bind /proc {r}/proc && mount --bind /sys {r}/sys && \
         exec chroot {r} {agent} run --toxicity 100 --reset-timeout 200 \
         --total-chaos-duration 3 --report {report}",
        r = root.display()
    );
    let child = lab
        .vm
        .command("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the agent in the rootfs");
    let t0 = Instant::now();
    while !lab.vm.nft_ruleset().contains("tproxy to :8080") {
        assert!(t0.elapsed() < Duration::from_secs(10), "never injected");
        std::thread::sleep(Duration::from_millis(50));
    }
    for v6 in [false, true] {
        let c = curl(&lab.caller, &lab.url(v6, 80, "/"));
        assert_eq!(c.exit, 56, "{c:?}");
    }
    let out = child.wait_with_output().expect("agent exits");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(staged.dir.join("report.json")).expect("report"))
            .expect("json");
    assert_eq!(report["mode"], "kernel", "{report}");
    assert_eq!(report["steering"], "tproxy", "{report}");
    // The default unit (request): each curl is one request on a new connection.
    for f in ["requests_selected", "resets_issued", "resets_observed"] {
        assert_eq!(report[f], 2, "{f}: {report}");
    }
    assert_eq!(report["cleanup"]["verified"], true, "{report}");
    assert_eq!(lab.leftovers(), Vec::<String>::new());
}

/// `reset-controller run` without --agent uploads the portable agent (`cargo xtask dist`'s,
/// found from the controller's own path), and it does the job.
#[test]
fn controller_uploads_the_portable_agent_by_default() {
    if !require_root() {
        return;
    }
    use reset_tests::ctl::{one_vm, start_injected};
    let exe = dist_agent();
    let (lab, _svc, sim) = one_vm();
    let args = [
        "--output",
        "json",
        "run",
        "--vm-name",
        "vm-a",
        "--toxicity",
        "100",
        "--reset-timeout",
        "200",
        "--total-chaos-duration",
        "2",
    ];
    let child = start_injected(&sim, &lab, &args);
    // The agent running in the VM is the dist artifact, byte for byte.
    let uploaded = lab
        .vm
        .pids()
        .into_iter()
        .filter_map(|p| std::fs::read(format!("/proc/{p}/exe")).ok())
        .any(|b| b == std::fs::read(&exe).unwrap());
    assert!(uploaded, "the running agent is not {}", exe.display());
    assert_eq!(curl(&lab.caller, &lab.url(false, 80, "/")).exit, 56);
    let out = child.finish(Duration::from_secs(60));
    let v = out.report();
    assert_eq!(out.code(), Some(0), "{v}");
    assert_eq!(v["vms"][0]["agent_report"]["resets_observed"], 1, "{v}");
    lab.assert_clean();
}

/// An agent that cannot start in the guest (here: the dist agent asking the loader for a
/// libnftnl that does not exist, a real loader failure) fails its VM with a message that says
/// why and how to get the portable agent, not a bare exit code.
#[test]
fn an_agent_that_cannot_start_is_explained() {
    if !require_root() {
        return;
    }
    use reset_tests::ctl::{one_vm, run_args, run_bounded};
    let mut bytes = std::fs::read(dist_agent()).expect("read");
    let at = bytes
        .windows(14)
        .position(|w| w == b"libnftnl.so.11")
        .expect("the agent names libnftnl.so.11");
    bytes[at..at + 14].copy_from_slice(b"libnftnl.so.99");
    let dir = std::env::temp_dir().join(format!("rp-broken-agent-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let broken = dir.join("reset-agent");
    std::fs::write(&broken, &bytes).unwrap();
    let (lab, _svc, sim) = one_vm();
    let out = run_bounded(
        sim.controller(&run_args(broken.to_str().unwrap(), "2", &[])),
        Duration::from_secs(60),
    );
    let _ = std::fs::remove_dir_all(&dir);
    let v = out.report();
    assert_eq!(out.code(), Some(1), "{v}");
    let err = v["vms"][0]["error"].as_str().unwrap_or_default();
    for want in [
        "exited with code 127",
        "could not start in the guest",
        "cargo xtask dist",
        "libnftnl.so.99",
    ] {
        assert!(err.contains(want), "{want:?} missing from: {err}");
    }
    lab.assert_clean();
}
