//! The portable agent (`cargo xtask dist`, <target dir>/dist/reset-agent): one static file for any
//! x86_64 guest. Checks the ELF (no dynamic loader, no shared library), the size, and that the
//! artifact does the whole job in a lab namespace pair exactly as the normal build does: resets
//! selected callers, counts them, and leaves nothing behind on SIGTERM or kill -9.
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

/// Upper bound on the artifact's size. It is 3.7 MiB today (tokio, aya, clap, tracing, serde,
/// musl, the embedded eBPF object; stripped, thin LTO). The file is uploaded to every VM through
/// Guest Operations, so growth should be a decision: 8 MiB leaves room for features but catches
/// an unstripped or debug build (tens of MiB) or a new heavyweight dependency.
const MAX_SIZE: u64 = 8 * 1024 * 1024;

// ELF constants (elf.h).
const EM_X86_64: u16 = 62;
const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const DT_NULL: u64 = 0;
const DT_NEEDED: u64 = 1;

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
    /// DT_NEEDED entries (string-table offsets; any entry means a shared library is needed).
    needed: usize,
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
    let mut needed = 0;
    for i in 0..usize::from(phnum) {
        let ph = phoff.saturating_add(i.saturating_mul(phentsize));
        let (p_type, p_offset, p_filesz) = (u32_at(ph)?, u64_at(ph + 8)?, u64_at(ph + 32)?);
        let seg = bytes
            .get(p_offset..p_offset.saturating_add(p_filesz))
            .ok_or("segment outside the file")?;
        match p_type {
            PT_INTERP => {
                interpreter = Some(String::from_utf8_lossy(seg).trim_end_matches('\0').into());
            }
            PT_DYNAMIC => {
                for entry in seg.chunks_exact(16) {
                    let tag = u64::from_le_bytes(entry[..8].try_into().expect("8 bytes"));
                    match tag {
                        DT_NULL => break,
                        DT_NEEDED => needed += 1,
                        _ => {}
                    }
                }
            }
            _ => {}
        }
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
    assert!(elf.needed > 0);
    assert!(read_elf(&bytes[..40]).is_err());
    assert!(read_elf(b"#!/bin/sh\n").is_err());
}

#[test]
fn dist_agent_is_static_and_small() {
    let exe = dist_agent();
    let bytes = std::fs::read(&exe).expect("read the dist agent");
    let size = bytes.len() as u64;
    println!(
        "{}: {size} bytes ({:.2} MiB), bound {MAX_SIZE} bytes",
        exe.display(),
        size as f64 / (1024.0 * 1024.0)
    );
    let elf = read_elf(&bytes).expect("the dist agent is an ELF file");
    assert_eq!(elf.machine, EM_X86_64);
    assert_eq!(
        elf.interpreter, None,
        "a static binary names no dynamic loader"
    );
    assert_eq!(elf.needed, 0, "a static binary needs no shared library");
    assert!(
        size <= MAX_SIZE,
        "{} is {size} bytes, over the {MAX_SIZE}-byte bound",
        exe.display()
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
        table.contains("flags owner") && table.contains("redirect to :8080"),
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
