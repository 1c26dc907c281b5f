//! reset-controller's entry point: parse, resolve, run, print, exit code.
#![forbid(unsafe_code)]

mod cli;

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use clap::Parser as _;
use tracing_subscriber::EnvFilter;

use cli::{Cli, Command, Output};
use reset_controller::orchestrate::{self, abort::Abort};
use reset_controller::output;

/// Exit code after an abort by SIGINT/SIGTERM.
const EXIT_ABORTED: u8 = 130;

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
        Command::Run(args) => {
            let cfg = match args.resolve() {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    return Ok(ExitCode::from(2));
                }
            };
            let agent = read_agent(&cfg.targets.agent)?;
            let (handle, abort) = Abort::new();
            tokio::spawn(watch_signals(handle));
            let run = orchestrate::run(&cfg, &agent, &abort, cli.quiet);
            let backstop = async {
                abort.wait().await;
                tokio::time::sleep(
                    orchestrate::abort_budget() + std::time::Duration::from_millis(1500),
                )
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
            match cli.output {
                Output::Text => print!("{}", output::table(&report)),
                Output::Json => println!("{json}"),
            }
            std::io::stdout().flush().ok();
            Ok(if report.aborted {
                ExitCode::from(EXIT_ABORTED)
            } else if report.vms.iter().any(|v| v.failed()) {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            })
        }
        Command::Preflight(args) => {
            let resolved = (|| {
                Ok::<_, anyhow::Error>((
                    args.vc.resolve()?,
                    args.targets.resolve()?,
                    args.fault.resolve()?,
                ))
            })();
            let (vc, targets, fault) = match resolved {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    return Ok(ExitCode::from(2));
                }
            };
            let agent = read_agent(&targets.agent)?;
            let config = reset_controller::agent_config::render(&fault);
            let results = orchestrate::agent_command(
                &vc,
                &targets,
                Some(&config),
                &agent,
                "preflight",
                cli.quiet,
            )
            .await;
            Ok(print_results(&results, cli.output, "preflight"))
        }
        Command::Cleanup(args) => {
            let resolved =
                (|| Ok::<_, anyhow::Error>((args.vc.resolve()?, args.targets.resolve()?)))();
            let (vc, targets) = match resolved {
                Ok(r) => r,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    return Ok(ExitCode::from(2));
                }
            };
            let agent = read_agent(&targets.agent)?;
            let results =
                orchestrate::agent_command(&vc, &targets, None, &agent, "cleanup", cli.quiet).await;
            Ok(print_results(&results, cli.output, "cleanup"))
        }
    }
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
    if results.iter().all(|r| r.report.status == "ok") && !results.is_empty() {
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
            eprintln!(
                "abort requested: stopping agents, cleaning up guests (signal again to exit at once)"
            );
            handle.trigger();
        }
    }
    std::process::exit(i32::from(EXIT_ABORTED));
}
