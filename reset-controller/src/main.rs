//! reset-controller's entry point: parse, resolve, run, print, exit code.
#![forbid(unsafe_code)]

mod cli;

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use clap::Parser as _;
use tracing_subscriber::EnvFilter;

use cli::{CleanupArgs, Cli, Command, Output, PreflightArgs, RunArgs};
use reset_controller::config::{
    ConfigError, FaultSettings, MetricsSettings, RunConfig, Targets, VcenterSettings,
    network_interface,
};
use reset_controller::metrics::{Metrics, serve};
use reset_controller::orchestrate::{self, abort::Abort};
use reset_controller::output;
use reset_controller::report::{RunReport, VmStatus};

/// Exit code after an abort by SIGINT/SIGTERM.
const EXIT_ABORTED: u8 = 130;
/// Exit code when every VM is fine but a probe's verdict is fail.
const EXIT_PROBE_FAILED: u8 = 3;
/// Exit code when every VM is fine, no probe failed, but a probe could not be evaluated.
const EXIT_PROBE_ERROR: u8 = 4;

/// `run`'s exit code: 130 aborted, 1 a VM failed, 3 a probe's verdict is fail, 4 a probe's
/// verdict is error, else 0.
fn run_exit_code(report: &RunReport) -> ExitCode {
    if report.aborted {
        ExitCode::from(EXIT_ABORTED)
    } else if !report.vms_ok() {
        ExitCode::FAILURE
    } else if report.probe_failed() {
        ExitCode::from(EXIT_PROBE_FAILED)
    } else if report.probe_error() {
        ExitCode::from(EXIT_PROBE_ERROR)
    } else {
        ExitCode::SUCCESS
    }
}

/// The running metrics endpoint.
struct MetricsEndpoint {
    settings: MetricsSettings,
    addr: std::net::SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl MetricsEndpoint {
    async fn start(settings: MetricsSettings, metrics: &Metrics) -> Result<Self> {
        let listener = serve::bind(settings.listen).await?;
        let addr = listener
            .local_addr()
            .context("reading the metrics address")?;
        let (stop, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(serve::serve(listener, metrics.clone(), async {
            let _ = rx.await;
        }));
        eprintln!("metrics: serving http://{addr}/metrics");
        Ok(Self {
            settings,
            addr,
            stop,
            task,
        })
    }

    /// Keep serving for the linger time (cut short by an abort), then stop.
    async fn finish(self, abort: &Abort) {
        let linger = self.settings.linger;
        if !linger.is_zero() && !abort.is_set() {
            eprintln!(
                "metrics: run finished; serving final values on http://{}/metrics for {} s",
                self.addr,
                linger.as_secs()
            );
            abort.sleep(linger).await;
        }
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn")),
        )
        .init();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(real_main(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn real_main(cli: Cli) -> Result<ExitCode> {
    match &cli.command {
        Command::Run(args) => run(args, cli.output, cli.quiet).await,
        Command::Preflight(args) => preflight(args, cli.output, cli.quiet).await,
        Command::Cleanup(args) => cleanup(args, cli.output, cli.quiet).await,
    }
}

/// A usage error: the message, and exit code 2.
fn usage_error(e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("error: {e:#}");
    ExitCode::from(2)
}

/// `run`: the fault on every VM, the report, the exit code.
async fn run(args: &RunArgs, format: Output, quiet: bool) -> Result<ExitCode> {
    let cfg = match RunConfig::resolve(&args.inputs()) {
        Ok(c) => c,
        Err(e) => return Ok(usage_error(&e)),
    };
    let agent = read_agent(&cfg.targets.agent)?;
    let metrics = Metrics::new();
    let endpoint = match cfg.metrics {
        Some(m) => Some(MetricsEndpoint::start(m, &metrics).await?),
        None => None,
    };
    let (handle, abort) = Abort::new();
    tokio::spawn(watch_signals(handle));
    let run = orchestrate::run(&cfg, &agent, &abort, quiet, &metrics);
    let backstop = async {
        abort.wait().await;
        tokio::time::sleep(orchestrate::abort_budget() + std::time::Duration::from_millis(1500))
            .await;
    };
    let report = tokio::select! {
        r = run => r,
        () = backstop => {
            eprintln!("error: abort did not finish in time; guests may need `reset-controller cleanup`");
            return Ok(ExitCode::from(EXIT_ABORTED));
        }
    };
    let json = serde_json::to_string_pretty(&report).context("encoding the report")?;
    if let Some(path) = &args.report {
        write_private(path, json.as_bytes())
            .with_context(|| format!("writing the report to {}", path.display()))?;
    }
    match format {
        Output::Text => print!("{}", output::table(&report)),
        Output::Json => println!("{json}"),
    }
    std::io::stdout().flush().ok();
    RUN_FINISHED.store(true, std::sync::atomic::Ordering::SeqCst);
    if let Some(e) = endpoint {
        e.finish(&abort).await;
    }
    Ok(run_exit_code(&report))
}

/// `preflight`: the agent's own preflight in every VM, with the fault's config.
async fn preflight(args: &PreflightArgs, format: Output, quiet: bool) -> Result<ExitCode> {
    let resolved = (|| {
        Ok::<_, ConfigError>((
            VcenterSettings::resolve(&args.vc.inputs())?,
            Targets::resolve(&args.targets.inputs())?,
            FaultSettings::resolve(&args.fault.raw())?,
        ))
    })();
    let (vc, targets, fault) = match resolved {
        Ok(r) => r,
        Err(e) => return Ok(usage_error(&e)),
    };
    let agent = read_agent(&targets.agent)?;
    let config = reset_controller::agent_config::render(&fault);
    let results = orchestrate::agent_command(
        &vc,
        &targets,
        Some(&config),
        &[],
        &agent,
        "preflight",
        quiet,
    )
    .await;
    Ok(print_results(&results, format, "preflight"))
}

/// `cleanup`: `reset-agent cleanup` in every VM.
async fn cleanup(args: &CleanupArgs, format: Output, quiet: bool) -> Result<ExitCode> {
    let resolved = (|| {
        Ok::<_, ConfigError>((
            VcenterSettings::resolve(&args.vc.inputs())?,
            Targets::resolve(&args.targets.inputs())?,
        ))
    })();
    let (vc, targets) = match resolved {
        Ok(r) => r,
        Err(e) => return Ok(usage_error(&e)),
    };
    let agent = read_agent(&targets.agent)?;
    let iface = match network_interface(&args.network_interface) {
        Ok(i) => i,
        Err(e) => return Ok(usage_error(&e)),
    };
    let extra = ["--network-interface".to_string(), iface];
    let results =
        orchestrate::agent_command(&vc, &targets, None, &extra, &agent, "cleanup", quiet).await;
    Ok(print_results(&results, format, "cleanup"))
}

fn read_agent(path: &std::path::Path) -> Result<bytes::Bytes> {
    std::fs::read(path)
        .map(bytes::Bytes::from)
        .with_context(|| {
            format!(
                "reading the agent binary {}: build reset-agent or pass --agent PATH",
                path.display()
            )
        })
}

fn print_results(results: &[orchestrate::CommandResult], output: Output, what: &str) -> ExitCode {
    match output {
        Output::Json => match serde_json::to_string_pretty(results) {
            Ok(j) => println!("{j}"),
            Err(e) => eprintln!("error: encoding results: {e}"),
        },
        Output::Text => {
            for r in results {
                println!("== {} {what}: {}", r.report.vm, r.report.status);
                for (phase, ms) in &r.report.timings.phases {
                    if !phase.starts_with("failed") {
                        println!("   [{:>6.1}s] {phase}", *ms as f64 / 1000.0);
                    }
                }
                if let Some(e) = &r.report.error {
                    println!("   FAILED: {e}");
                }
                if !r.output.is_empty() {
                    println!("   reset-agent {what} output:");
                }
                for line in r.output.lines() {
                    println!("     {line}");
                }
            }
        }
    }
    if results.iter().all(|r| r.report.status == VmStatus::Ok) && !results.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Write a file only the owner can read (reports name hosts and VMs).
fn write_private(path: &std::path::Path, data: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(data)
}

/// Set once the run's report is out; a signal after that only ends the metrics linger.
static RUN_FINISHED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// First SIGINT/SIGTERM: raise the abort flag. Second: exit at once.
async fn watch_signals(handle: orchestrate::abort::AbortHandle) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    for n in 0..2 {
        tokio::select! {
            _ = int.recv() => {}
            _ = term.recv() => {}
        }
        if n == 0 {
            if RUN_FINISHED.load(std::sync::atomic::Ordering::SeqCst) {
                eprintln!("signal received after the run: no longer serving metrics");
            } else {
                eprintln!(
                    "abort requested: stopping agents, cleaning up guests (signal again to exit at once)"
                );
            }
            handle.trigger();
        }
    }
    std::process::exit(i32::from(EXIT_ABORTED));
}
