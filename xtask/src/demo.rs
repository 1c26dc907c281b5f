//! `cargo xtask demo`: the whole fault, end to end, on a built-in default.
//!
//! A local vCenter simulator (vcsim) and one network-namespace VM `web-01` (interface ens160,
//! the sample HTTP service on :80), then `reset-controller run` against it while two callers
//! run in a caller namespace: a naive one (one attempt per request) and a retrying one
//! (bounded retries with backoff). The operator side (vcsim, controller, callers) runs inside
//! the caller namespace, the only place that reaches the VM. Everything started is stopped on
//! success, failure and Ctrl-C; the lab is RAII and removed on drop.
use std::{
    io::{BufRead, BufReader, Write},
    path::PathBuf,
    process::{Child, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use reset_tests::{
    bin,
    guard::Guard,
    lab::{Lab, VM_V4},
    sim::{Credentials, Vcsim},
};
use serde_json::Value;

use crate::demo_report::{self, Outcome};

const VM: &str = "web-01";
const METRICS: &str = "127.0.0.1:9465";

#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Percent of new connections to reset.
    #[arg(long, default_value = "50")]
    pub toxicity: String,
    /// Seconds the fault is active.
    #[arg(long, default_value_t = 20)]
    pub duration: u64,
    /// Leave the lab up afterwards and print how to poke it.
    #[arg(long)]
    pub keep: bool,
    /// Print the outcome as JSON on stdout (progress stays on stderr).
    #[arg(long)]
    pub json: bool,
    /// Do not build (the binaries are already built, e.g. by `cargo xtask test`).
    #[arg(long)]
    pub no_build: bool,
}

/// Relays a child's stderr lines (with a prefix) and keeps the last JSON progress object.
fn relay(child: &mut Child, prefix: &'static str, echo: bool) -> Arc<Mutex<Value>> {
    let last = Arc::new(Mutex::new(Value::Null));
    let l = last.clone();
    let stderr = child.stderr.take().expect("piped stderr");
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            match serde_json::from_str::<Value>(&line) {
                Ok(v) if v.get("progress").is_some() => {
                    *l.lock().unwrap_or_else(|e| e.into_inner()) = v["progress"].clone()
                }
                _ if echo => eprintln!("  {prefix} {line}"),
                _ => {}
            }
        }
    });
    last
}

pub fn run(args: &DemoArgs) -> anyhow::Result<()> {
    if !crate::setup::is_root() {
        bail!(
            "the demo creates network namespaces, nftables rules and eBPF programs: run it as root"
        );
    }
    if !args.no_build {
        crate::sh::run(crate::sh::cargo().current_dir(crate::sh::root()).args([
            "build",
            "--workspace",
            "--bins",
        ]))?;
    }
    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = interrupted.clone();
    ctrlc::set_handler(move || flag.store(true, Ordering::SeqCst))
        .context("installing the Ctrl-C handler")?;

    eprintln!(
        "demo: building the lab: VM {VM} (netns, ens160 {VM_V4}, HTTP service on :80) and a caller namespace"
    );
    let (lab, service) = Lab::with_service();
    let outcome = drive(args, &lab, &interrupted);
    let keep = args.keep && outcome.is_ok();
    if keep {
        print_keep(&lab);
        std::mem::forget(service);
        std::mem::forget(lab);
    }
    let outcome = outcome?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&outcome.json)?);
    } else {
        print!("{}", outcome.text);
    }
    if !outcome.ok {
        bail!("the demo's checks failed (see above)");
    }
    Ok(())
}

fn drive(args: &DemoArgs, lab: &Lab, interrupted: &AtomicBool) -> anyhow::Result<Outcome> {
    let vcsim = Vcsim::builder()
        .vm(VM, lab)
        .inside(&lab.caller)
        .credentials(Credentials::random())
        .tmp_prefix("reset-peer-demo")
        .try_start()
        .context("starting vcsim")?;
    let creds = vcsim.credentials().clone();
    let url = vcsim.url.clone();
    eprintln!("demo: vCenter simulator at {url} (inside the caller namespace)");

    let report_path = vcsim.guest_tmp.path().join("controller-report.json");
    let duration = args.duration.to_string();
    let mut ctl = lab.caller.command(bin("reset-controller"));
    ctl.args(["run"])
        .arg("--agent")
        .arg(bin("reset-agent"))
        .arg("--report")
        .arg(&report_path)
        .args([
            "--probe-url",
            &format!("http://{VM_V4}/health"),
            "--probe-interval",
            "250",
            "--probe-max-error-percent",
            "5",
        ])
        .args(["--metrics-listen", METRICS, "--metrics-linger", "30"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("GOVC_URL", &url)
        .env("GOVC_USERNAME", &creds.vc_user)
        .env("GOVC_PASSWORD", &creds.vc_password)
        .env("GOVC_INSECURE", "true")
        .env("VM_NAME", VM)
        .env("VM_USER_NAME", &creds.guest_user)
        .env("VM_PASSWORD", &creds.guest_password)
        .env("TOXICITY", &args.toxicity)
        .env("TOTAL_CHAOS_DURATION", &duration)
        .env("RESET_TIMEOUT", "2000")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    eprintln!(
        "demo: reset-controller run: TOXICITY {}%, RESET_TIMEOUT 2000 ms, TOTAL_CHAOS_DURATION {} s on {VM}",
        args.toxicity, args.duration
    );
    let mut ctl = Guard::try_spawn(&mut ctl, "reset-controller")?;
    let _ctl_log = relay(&mut ctl, "[controller]", true);
    let ctl_stdout = ctl.stdout.take().expect("stdout");
    let ctl_out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(&mut BufReader::new(ctl_stdout), &mut s);
        s
    });

    // Readiness: the agent's table exists in the VM once the fault is active.
    let t0 = Instant::now();
    while !lab.vm.nft_ruleset().contains("reset_peer") {
        if interrupted.load(Ordering::SeqCst) {
            bail!("interrupted before the fault started");
        }
        if let Some(st) = ctl.try_wait()? {
            bail!(
                "reset-controller exited ({st}) before the fault started: {}",
                ctl_out.join().unwrap_or_default()
            );
        }
        if t0.elapsed() > Duration::from_secs(60) {
            bail!("the fault did not start within 60 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // The table comes first, then the window opens in the kernel (CONTROL map, state 1):
    // wait for that too, so every caller connection counts inside the window.
    while !window_open(lab) {
        if t0.elapsed() > Duration::from_secs(60) {
            bail!("the fault window did not open within 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let active_at = Instant::now();
    eprintln!(
        "demo: fault active after {:.1} s; starting callers",
        t0.elapsed().as_secs_f64()
    );

    let window = Duration::from_secs(args.duration);
    let caller_secs = format!(
        "{:.1}",
        window
            .saturating_sub(Duration::from_millis(800))
            .as_secs_f64()
    );
    let target = format!("http://{VM_V4}/");
    let spawn_caller = |extra: &[&str]| -> anyhow::Result<Guard> {
        let mut c = lab.caller.command(bin("caller"));
        c.args([
            "--url",
            &target,
            "--requests",
            "200000",
            "--duration-s",
            &caller_secs,
            "--progress-ms",
            "1000",
        ])
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        Ok(Guard::try_spawn(&mut c, "caller")?)
    };
    let mut naive = spawn_caller(&[
        "--retries",
        "0",
        "--concurrency",
        "8",
        "--interval-ms",
        "20",
    ])?;
    let mut retrying = spawn_caller(&[
        "--retries",
        "6",
        "--backoff-ms",
        "100",
        "--concurrency",
        "4",
        "--interval-ms",
        "20",
    ])?;
    let naive_p = relay(&mut naive, "[naive]", false);
    let retry_p = relay(&mut retrying, "[retrying]", false);

    // Live progress until both callers are done.
    loop {
        if interrupted.load(Ordering::SeqCst) {
            eprintln!(
                "demo: Ctrl-C: aborting the controller (it terminates the agent and cleans the guest)"
            );
            let _ = std::process::Command::new("kill")
                .args(["-INT", &ctl.id().to_string()])
                .status();
            let _ = ctl.wait();
            bail!("interrupted");
        }
        let done = naive.try_wait()?.is_some() && retrying.try_wait()?.is_some();
        let left = window.saturating_sub(active_at.elapsed()).as_secs();
        let (n, r) = (
            naive_p.lock().map(|v| v.clone()).unwrap_or_default(),
            retry_p.lock().map(|v| v.clone()).unwrap_or_default(),
        );
        let num = |v: &Value, k: &str| v[k].as_u64().unwrap_or(0);
        let line = format!(
            "  window: {left:>3} s left | naive: {:>5} requests, {:>4} resets | retrying: {:>5} requests, {:>5} ok, {:>4} resets seen",
            num(&n, "requests"),
            num(&n, "resets"),
            num(&r, "requests"),
            num(&r, "succeeded"),
            num(&r, "resets")
        );
        // One line rewritten in place on a terminal; a line per second in a log.
        if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
            eprint!("\r{line}   ");
        } else {
            eprintln!("{line}");
        }
        let _ = std::io::stderr().flush();
        if done {
            if std::io::IsTerminal::is_terminal(&std::io::stderr()) {
                eprintln!();
            }
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    let naive_out = read_json(naive)?;
    let retry_out = read_json(retrying)?;

    // The controller ends after the window, the agent's drain, the report download and
    // cleanup; it then lingers serving metrics for a scrape.
    eprintln!("demo: callers done; waiting for the controller's report");
    let report = wait_report(&report_path, &mut ctl, interrupted)?;
    let metrics = lab.caller.output(
        "curl",
        &[
            "-sS",
            "--max-time",
            "5",
            &format!("http://{METRICS}/metrics"),
        ],
    );
    let metrics = String::from_utf8_lossy(&metrics.stdout).into_owned();
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &ctl.id().to_string()])
        .status();
    let ctl_status = ctl.wait()?;
    let ctl_stdout = ctl_out.join().unwrap_or_default();
    drop(vcsim);

    let lab_clean = demo_report::lab_clean(lab);
    Ok(demo_report::build(demo_report::Inputs {
        toxicity: &args.toxicity,
        duration: args.duration,
        naive: &naive_out,
        retrying: &retry_out,
        report: &report,
        controller_table: &ctl_stdout,
        controller_exit: ctl_status.code(),
        metrics: &metrics,
        lab_clean,
    }))
}

/// Whether the agent's window is open: its CONTROL map holds state 1 (kernel mode), or, in
/// userspace mode (no map), its table exists.
fn window_open(lab: &Lab) -> bool {
    let out = lab
        .vm
        .output("bpftool", &["-j", "map", "dump", "name", "CONTROL"]);
    let text = String::from_utf8_lossy(&out.stdout);
    match serde_json::from_str::<Value>(&text) {
        Ok(Value::Array(entries)) if !entries.is_empty() => {
            entries[0]["value"][0].as_str() == Some("0x01")
        }
        _ => lab.vm.nft_ruleset().contains("reset_peer"),
    }
}

fn read_json(mut p: Guard) -> anyhow::Result<Value> {
    let mut s = String::new();
    std::io::Read::read_to_string(p.stdout.as_mut().expect("stdout"), &mut s)?;
    serde_json::from_str(&s).with_context(|| format!("caller output: {s}"))
}

/// Waits for the controller's report file (written when the run ends), bounded.
fn wait_report(path: &PathBuf, ctl: &mut Guard, interrupted: &AtomicBool) -> anyhow::Result<Value> {
    let t0 = Instant::now();
    loop {
        if let Ok(text) = std::fs::read_to_string(path)
            && let Ok(v) = serde_json::from_str::<Value>(&text)
        {
            return Ok(v);
        }
        if interrupted.load(Ordering::SeqCst) {
            bail!("interrupted");
        }
        if let Some(st) = ctl.try_wait()? {
            std::thread::sleep(Duration::from_millis(200));
            return std::fs::read_to_string(path)
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok())
                .with_context(|| format!("reset-controller exited ({st}) without a report"));
        }
        if t0.elapsed() > Duration::from_secs(120) {
            bail!("no controller report within 120 s");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn print_keep(lab: &Lab) {
    let (vm, caller) = (lab.vm.name(), lab.caller.name());
    eprintln!(
        "demo: --keep: the lab stays up. Poke it with:\n  \
         ip netns exec {caller} curl -v http://{VM_V4}/\n  \
         ip netns exec {vm} nft list ruleset\n  \
         ip netns exec {vm} bpftool net show dev ens160\n\
         remove it with:\n  ip netns pids {vm} | xargs -r kill; ip netns del {vm}; ip netns del {caller}"
    );
}
