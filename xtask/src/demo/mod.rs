//! `cargo xtask demo`: the whole fault, end to end, on a built-in default.
//!
//! A local vCenter simulator (vcsim) and one network-namespace VM `web-01` (interface ens160,
//! the sample HTTP service on :80), then `reset-controller run` against it while three callers
//! run in a caller namespace: a naive one (one attempt per request), a retrying one (bounded
//! retries with backoff, exporting its retries counter) and a pooled one (keep-alive
//! connections opened before the fault, reopened only after an error). A real Prometheus (Debian's
//! package, its own config and data dir in a temporary folder) scrapes the agent, the
//! controller and the retrying caller; the controller's Prometheus probe asserts that the
//! callers retried during the window, beside its HTTP probe. The operator side (vcsim,
//! Prometheus, controller, callers) runs inside the caller namespace, the only place that
//! reaches the VM. Everything started is stopped on success, failure and Ctrl-C; the lab is
//! RAII and removed on drop.
//!
//! This file runs the steps in order; `controller` starts and watches the controller,
//! `callers` drives the callers with live progress, `report` judges the outcome. It must not
//! hold product logic: it only starts the repo's programs and reads what they report.
mod callers;
mod controller;
mod report;

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use anyhow::{Context, bail};
use reset_tests::{
    lab::{Lab, VM_V4},
    proc::fetch,
    prom::Prometheus,
    sim::{Credentials, Vcsim},
};

use report::Outcome;

const VM: &str = "web-01";
const METRICS: &str = "127.0.0.1:9465";
/// Where each agent serves its metrics in its VM (AGENT_METRICS_LISTEN), and where
/// Prometheus finds web-01's.
const AGENT_METRICS_LISTEN: &str = "0.0.0.0:9464";
const AGENT_METRICS: &str = "198.18.0.2:9464";
/// The retrying caller's metrics (its retries counter), in the caller namespace.
const CALLER_METRICS: &str = "127.0.0.1:9466";
/// What Prometheus scrapes: (job, target).
const SCRAPED: [(&str, &str); 3] = [
    ("agent", AGENT_METRICS),
    ("controller", METRICS),
    ("retrying-caller", CALLER_METRICS),
];

#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Percent of requests to reset.
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

/// vcsim, the controller, the callers through the window, then the report, a metrics
/// scrape during the controller's linger, and a look at the VM.
fn drive(args: &DemoArgs, lab: &Lab, interrupted: &AtomicBool) -> anyhow::Result<Outcome> {
    let vcsim = Vcsim::builder()
        .vm(VM, lab)
        .inside(&lab.caller)
        .credentials(Credentials::random())
        .tmp_prefix("reset-peer-demo")
        .try_start()
        .context("starting vcsim")?;
    eprintln!(
        "demo: vCenter simulator at {} (inside the caller namespace)",
        vcsim.url
    );
    let prometheus = SCRAPED
        .iter()
        .fold(Prometheus::builder(), |b, (job, target)| {
            b.scrape(job, &[target])
        })
        .inside(&lab.caller)
        .tmp_prefix("reset-peer-demo")
        .try_start()
        .context(
            "starting Prometheus (Debian's prometheus package; `cargo xtask setup` installs it)",
        )?;
    eprintln!(
        "demo: Prometheus at {} (inside the caller namespace) scraping the agent ({AGENT_METRICS}), the controller ({METRICS}) and the retrying caller ({CALLER_METRICS}) every second",
        prometheus.url
    );
    let report_path = vcsim.guest_tmp.path().join("controller-report.json");
    let window = Duration::from_secs(args.duration);
    let pool = callers::start_pooled(lab, window)?;
    let mut ctl = controller::Run::start(&vcsim, &prometheus, args, &report_path)?;
    let active_at = ctl.wait_active(lab, interrupted)?;
    let Some(seen) = callers::run(lab, window, active_at, pool, interrupted)? else {
        eprintln!(
            "demo: Ctrl-C: aborting the controller (it terminates the agent and cleans the guest)"
        );
        ctl.abort();
        bail!("interrupted");
    };
    // The controller ends after the window, the agent's drain, the report download and
    // cleanup; it then lingers serving metrics for a scrape.
    eprintln!("demo: callers done; waiting for the controller's report");
    let report = ctl.wait_report(&report_path, interrupted)?;
    // As a scraper in the caller namespace sees it; a failed scrape fails the metrics check.
    let metrics = fetch(&lab.caller, &format!("http://{METRICS}/metrics")).unwrap_or_default();
    // Whether Prometheus scraped each target at least once during the run.
    let scraped: Vec<(String, bool)> = SCRAPED
        .iter()
        .map(|(job, _)| {
            let q = format!("max_over_time(up{{job=\"{job}\"}}[10m])");
            (job.to_string(), prometheus.value(&q) == Some(1.0))
        })
        .collect();
    let (controller_exit, controller_table) = ctl.stop()?;
    drop(prometheus);
    drop(vcsim);
    let left = lab.leftovers();
    Ok(report::build(report::Inputs {
        toxicity: &args.toxicity,
        duration: args.duration,
        naive: &seen.naive,
        retrying: &seen.retrying,
        pooled: &seen.pooled,
        report: &report,
        controller_table: &controller_table,
        controller_exit,
        metrics: &metrics,
        scraped: &scraped,
        lab_clean: if left.is_empty() {
            Ok(())
        } else {
            Err(left.join("; "))
        },
    }))
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
