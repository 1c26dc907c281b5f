//! `cargo xtask demo`: the whole fault, end to end, on a built-in default.
//!
//! A local vCenter simulator (vcsim) and one network-namespace VM `web-01` (interface ens160,
//! the sample HTTP service on :80), then `reset-controller run` against it while two callers
//! run in a caller namespace: a naive one (one attempt per request) and a retrying one
//! (bounded retries with backoff). The operator side (vcsim, controller, callers) runs inside
//! the caller namespace, the only place that reaches the VM. Everything started is stopped on
//! success, failure and Ctrl-C; the lab is RAII and removed on drop.
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
    sim::{Credentials, Vcsim},
};

use report::Outcome;

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
    let report_path = vcsim.guest_tmp.path().join("controller-report.json");
    let mut ctl = controller::Run::start(&vcsim, args, &report_path)?;
    let active_at = ctl.wait_active(lab, interrupted)?;
    let window = Duration::from_secs(args.duration);
    let Some((naive, retrying)) = callers::run(lab, window, active_at, interrupted)? else {
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
    let (controller_exit, controller_table) = ctl.stop()?;
    drop(vcsim);
    let left = lab.leftovers();
    Ok(report::build(report::Inputs {
        toxicity: &args.toxicity,
        duration: args.duration,
        naive: &naive,
        retrying: &retrying,
        report: &report,
        controller_table: &controller_table,
        controller_exit,
        metrics: &metrics,
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
