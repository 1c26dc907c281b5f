//! `cargo xtask bench [--quick]`: reset-peer's speed and precision measured in one run, side by
//! side with what users would pick instead (HAProxy as a plain TCP proxy, toxy as an HTTP
//! fault-injection proxy), on one netns lab with one target service and the same load
//! generators. Writes target/bench/report.json, report.md and PNG plots.
//!
//! Must not: generate load outside the lab namespaces (198.18.0.0/15, loopback), run unbounded
//! loops, leave a namespace or process behind, or write a number it did not measure in this
//! run (a figure that cannot be measured is reported as skipped, with the reason).
mod agent;
mod delay;
mod held;
mod load;
mod plot;
mod pooled;
mod precision;
mod procs;
mod report;
mod setup;
mod stats;
mod throughput;
mod wrk;

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Instant,
};

use anyhow::Context;
use reset_tests::lab::Lab;

use procs::Paths;
use setup::{Bench, Setup};

/// Sizes of one bench run (quick or full).
pub struct Params {
    pub quick: bool,
    /// Interleaved (direct, setup) pairs per throughput and open-loop figure.
    pub pairs: u32,
    /// Pin wrk to CPU 1 and the service to CPU 0.
    pub pin: bool,
    pub open_loop_secs: f64,
    pub wrk_secs: f64,
    pub wrk_conns: u32,
    pub reset_timeout_ms: u64,
    pub delay_rates: Vec<f64>,
    pub delay_secs: f64,
    pub precision_toxicity: f64,
    pub precision_flows: Vec<u64>,
    pub precision_rate: f64,
    pub rate_steps: Vec<f64>,
    pub rate_secs: f64,
    pub held: u64,
    pub held_rate: f64,
}

impl Params {
    fn new(quick: bool, pin: bool) -> Params {
        Params {
            quick,
            pairs: 7,
            pin,
            open_loop_secs: if quick { 1.5 } else { 3.0 },
            wrk_secs: if quick { 1.0 } else { 2.0 },
            wrk_conns: 32,
            reset_timeout_ms: 100,
            delay_rates: vec![100.0, 500.0, 2000.0],
            delay_secs: if quick { 1.5 } else { 5.0 },
            precision_toxicity: 50.0,
            precision_flows: if quick {
                vec![1_000, 10_000]
            } else {
                vec![1_000, 10_000, 100_000]
            },
            precision_rate: 8_000.0,
            rate_steps: if quick {
                vec![2_000.0, 5_000.0, 10_000.0, 20_000.0]
            } else {
                vec![
                    2_000.0, 5_000.0, 10_000.0, 15_000.0, 20_000.0, 30_000.0, 40_000.0,
                ]
            },
            rate_secs: if quick { 1.0 } else { 3.0 },
            held: 10_000,
            held_rate: 5_000.0,
        }
    }
}

pub fn run(quick: bool, pin: bool) -> anyhow::Result<()> {
    let started = Instant::now();
    let p = Params::new(quick, pin);
    let target = target_dir()?;
    let out = target.join("bench");
    std::fs::create_dir_all(out.join("tmp"))?;
    crate::sh::run(crate::sh::cargo().current_dir(crate::sh::root()).args([
        "build",
        "--release",
        "-p",
        "reset-agent",
        "-p",
        "reset-tests",
    ]))?;
    let mut skipped: Vec<String> = Vec::new();
    let node_modules = match install_toxy(&out) {
        Ok(nm) => Some(nm),
        Err(e) => {
            skipped.push(format!("toxy: cannot be installed: {e:#}"));
            None
        }
    };
    let paths = Paths {
        bin: target.join("release"),
        out: out.clone(),
        node_modules,
    };
    let nofile = load::raise_nofile(65_536);
    eprintln!("bench: RLIMIT_NOFILE {nofile} (inherited by the agent and the proxies)");

    let lab = Lab::new();
    eprintln!(
        "bench: lab namespaces {} (VM) and {} (caller)",
        lab.vm.name(),
        lab.caller.name()
    );
    // The caller opens up to 100k short connections: use the whole port range and reuse
    // TIME_WAIT ports (both sysctls are per namespace).
    for kv in [
        "net.ipv4.ip_local_port_range=1024 65535",
        "net.ipv4.tcp_tw_reuse=1",
    ] {
        let o = lab.caller.output("sysctl", &["-q", "-w", kv]);
        if !o.status.success() {
            skipped.push(format!(
                "caller sysctl {kv} failed: {}",
                String::from_utf8_lossy(&o.stderr)
            ));
        }
    }
    let _service = procs::service(&lab.vm, &paths, p.pin)?;
    let mut b = Bench {
        lab: &lab,
        paths: &paths,
        p: &p,
        life: setup::Lifecycle::default(),
        tag: 0,
    };

    // Every setup is measured against direct in interleaved pairs (throughput.rs).
    // Both units in kernel mode at TOXICITY 0 and 50; userspace mode (every connection through
    // the proxy, what a proxy-based peer pays) in both units.
    let mut setups = agents(&[
        ("kernel", "request", 0.0),
        ("kernel", "request", 50.0),
        ("kernel", "connection", 0.0),
        ("kernel", "connection", 50.0),
        ("userspace", "request", 0.0),
        ("userspace", "connection", 0.0),
        ("userspace", "connection", 50.0),
    ]);
    setups.push(Setup::Haproxy);
    let toxy_ok = paths.node_modules.is_some()
        && usable(&mut b, &Setup::Toxy { toxicity: 0.0 }, &mut skipped);
    if toxy_ok {
        setups.push(Setup::Toxy { toxicity: 0.0 });
    }
    let haproxy_ok = usable(&mut b, &Setup::Haproxy, &mut skipped);
    if !haproxy_ok {
        setups.retain(|s| !matches!(s, Setup::Haproxy));
    }

    let mut rep = report::Report::new(&p);
    rep.throughput = keep(
        throughput::throughput(&mut b, &setups),
        "throughput",
        &mut skipped,
    );
    // Open loop at a quarter of direct's closed-loop maximum (one connection per request): well
    // below saturation, where a latency difference is the fault's own cost.
    let direct_max = rep
        .throughput
        .iter()
        .filter(|t| t.load == "close")
        .map(|t| t.direct_ok_per_s.median)
        .filter(|v| v.is_finite())
        .fold(f64::NAN, f64::max);
    if direct_max.is_finite() {
        let mut open = agents(&[
            ("kernel", "request", 50.0),
            ("kernel", "connection", 0.0),
            ("kernel", "connection", 50.0),
            ("userspace", "connection", 50.0),
        ]);
        if haproxy_ok {
            open.push(Setup::Haproxy);
        }
        rep.open_loop = keep(
            throughput::open_loop(&mut b, &open, (direct_max / 4.0).round()),
            "open-loop latency",
            &mut skipped,
        );
    } else {
        skipped.push("open-loop latency: no direct maximum was measured".into());
    }
    let mut keepalive = agents(&[
        ("kernel", "request", 0.0),
        ("kernel", "request", 50.0),
        ("userspace", "request", 0.0),
    ]);
    if haproxy_ok {
        keepalive.push(Setup::Haproxy);
    }
    rep.keepalive = keep(
        throughput::keepalive_open_loop(&mut b, &keepalive),
        "keep-alive latency",
        &mut skipped,
    );
    let mut delay_setups = agents(&[
        ("kernel", "connection", 100.0),
        ("userspace", "connection", 100.0),
    ]);
    if toxy_ok {
        delay_setups.push(Setup::Toxy { toxicity: 100.0 });
    }
    rep.reset_delay = keep(
        delay::reset_delay(&mut b, &delay_setups),
        "reset delay",
        &mut skipped,
    );
    rep.reset_delay.extend(keep(
        delay::request_delay(&mut b),
        "request-unit reset delay",
        &mut skipped,
    ));
    rep.precision = keep(
        precision::precision(&mut b),
        "selection precision",
        &mut skipped,
    );
    rep.request_precision = keep(
        precision::request_precision(&mut b),
        "request-unit selection precision",
        &mut skipped,
    );
    rep.max_rate = keep(
        precision::max_rate(&mut b),
        "highest accounted rate",
        &mut skipped,
    );
    rep.held = keep(held::held(&mut b), "held connections", &mut skipped);
    rep.lifecycle = Some(std::mem::take(&mut b.life));
    drop(b);
    drop(_service);
    drop(lab);

    rep.skipped = skipped;
    rep.duration_s = started.elapsed().as_secs_f64();
    let plots = plot::draw(&rep, &out);
    rep.plots = match plots {
        Ok(files) => files,
        Err(e) => {
            rep.skipped.push(format!("plots: {e:#}"));
            Vec::new()
        }
    };
    std::fs::write(out.join("report.json"), serde_json::to_string_pretty(&rep)?)?;
    let md = report::markdown(&rep);
    std::fs::write(out.join("report.md"), &md)?;
    let _ = std::fs::remove_dir_all(out.join("tmp"));
    println!("{md}");
    eprintln!(
        "bench: done in {:.0} s; wrote {}",
        rep.duration_s,
        out.display()
    );
    Ok(())
}

/// reset-peer setups: (mode, unit, TOXICITY).
fn agents(list: &[(&'static str, &'static str, f64)]) -> Vec<Setup> {
    list.iter()
        .map(|&(mode, unit, toxicity)| Setup::Agent {
            mode,
            unit,
            toxicity,
        })
        .collect()
}

/// Starts a peer once (toxy without a poison) and checks that it answers plain requests, so a
/// peer that cannot run is reported instead of measured as if it were slow.
fn usable(b: &mut Bench, s: &Setup, skipped: &mut Vec<String>) -> bool {
    let check = || -> anyhow::Result<()> {
        let (bg, port) = match s {
            Setup::Haproxy => (
                procs::haproxy(&b.lab.vm, b.paths, setup::HAPROXY_PORT)?,
                setup::HAPROXY_PORT,
            ),
            Setup::Toxy { .. } => (
                procs::toxy(&b.lab.vm, b.paths, setup::TOXY_PORT, 0.0, 1)?,
                setup::TOXY_PORT,
            ),
            _ => return Ok(()),
        };
        let out = load::run(
            b.lab.caller.name(),
            load::Plan {
                addr: std::net::SocketAddr::from(([198, 18, 0, 2], port)),
                kind: load::Kind::Request,
                rate: 100.0,
                count: 5,
                max_duration: std::time::Duration::from_secs(5),
                max_inflight: 5,
                timeout: std::time::Duration::from_secs(3),
            },
        )?;
        anyhow::ensure!(
            out.ok == out.attempted && out.attempted > 0,
            "with no fault configured it answered {} of {} plain GET / requests \
             ({} closed with no response, {} reset, {} failed to connect); its output: {}",
            out.ok,
            out.attempted,
            out.closed_after_us.len(),
            out.resets,
            out.connect_failed,
            bg.output().replace('\n', " ")
        );
        Ok(())
    };
    match check() {
        Ok(()) => true,
        Err(e) => {
            skipped.push(format!("{}: cannot run: {e:#}", s.series()));
            false
        }
    }
}

fn keep<T>(r: anyhow::Result<Vec<T>>, what: &str, skipped: &mut Vec<String>) -> Vec<T> {
    r.unwrap_or_else(|e| {
        eprintln!("bench: {what} failed: {e:#}");
        skipped.push(format!("{what}: failed: {e:#}"));
        Vec::new()
    })
}

/// The cargo target directory (CARGO_TARGET_DIR, else `cargo metadata`).
fn target_dir() -> anyhow::Result<PathBuf> {
    if let Some(d) = std::env::var_os("CARGO_TARGET_DIR") {
        let d = PathBuf::from(d);
        return Ok(if d.is_absolute() {
            d
        } else {
            crate::sh::root().join(d)
        });
    }
    let meta = crate::sh::output(crate::sh::cargo().current_dir(crate::sh::root()).args([
        "metadata",
        "--format-version",
        "1",
        "--no-deps",
    ]))
    .context("cargo metadata failed")?;
    let v: serde_json::Value = serde_json::from_str(&meta)?;
    Ok(PathBuf::from(
        v["target_directory"]
            .as_str()
            .context("no target_directory in cargo metadata")?,
    ))
}

/// `npm install toxy` into target/bench (once); returns its node_modules.
fn install_toxy(out: &Path) -> anyhow::Result<PathBuf> {
    let nm = out.join("node_modules");
    if nm.join("toxy/package.json").exists() {
        return Ok(nm);
    }
    crate::sh::run(
        Command::new("npm")
            .args([
                "install",
                "--no-audit",
                "--no-fund",
                "--no-save",
                "--prefix",
            ])
            .arg(out)
            .arg("toxy@0.3"),
    )
    .context("npm install toxy@0.3")?;
    anyhow::ensure!(
        nm.join("toxy/package.json").exists(),
        "npm installed no toxy"
    );
    Ok(nm)
}
