//! The demo's callers in the caller namespace: a naive one (one attempt per request), a
//! retrying one (bounded retries with backoff, its counters served to Prometheus) and a pooled
//! one (keep-alive connections opened before the fault, reused request after request and
//! reopened only after an error, as high-throughput services are called), all through the
//! fault window, with one live progress line from their JSON progress reports.
use std::{
    io::{BufRead, BufReader, Write},
    process::Stdio,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use reset_tests::{bin, guard::Guard, lab::Lab};
use serde_json::Value;

use super::{CALLER_METRICS, VM_V4};

/// The pooled caller's keep-alive connections.
pub const POOL_CONNECTIONS: u32 = 16;

/// A caller process, its last progress report and, for the pooled caller, its warm-up.
pub struct Caller {
    child: Guard,
    progress: Arc<Mutex<Value>>,
    /// Connections opened and warmed before the fault (`{"warm": N}` on stderr).
    warm: Arc<Mutex<Option<u64>>>,
}

impl Caller {
    fn start(lab: &Lab, program: &str, secs: &str, extra: &[&str]) -> anyhow::Result<Caller> {
        let target = format!("http://{VM_V4}/");
        let mut child = Guard::try_spawn(
            lab.caller
                .command(bin(program))
                .args([
                    "--url",
                    &target,
                    "--requests",
                    "200000",
                    "--duration-s",
                    secs,
                    "--progress-ms",
                    "1000",
                ])
                .args(extra)
                // The pooled caller waits for a line on stdin after its warm-up.
                .stdin(if extra.contains(&"--warmup") {
                    Stdio::piped()
                } else {
                    Stdio::null()
                })
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
            program,
        )?;
        let progress = Arc::new(Mutex::new(Value::Null));
        let warm = Arc::new(Mutex::new(None));
        let (p, w) = (progress.clone(), warm.clone());
        let stderr = child.stderr.take().expect("piped stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let Ok(v) = serde_json::from_str::<Value>(&line) else {
                    continue;
                };
                if v.get("progress").is_some() {
                    *p.lock().unwrap_or_else(|e| e.into_inner()) = v["progress"].clone();
                } else if let Some(n) = v["warm"].as_u64() {
                    *w.lock().unwrap_or_else(|e| e.into_inner()) = Some(n);
                }
            }
        });
        Ok(Caller {
            child,
            progress,
            warm,
        })
    }

    fn progress(&self) -> Value {
        self.progress.lock().map(|v| v.clone()).unwrap_or_default()
    }

    /// Its JSON summary on stdout, once it has ended.
    fn summary(mut self) -> anyhow::Result<Value> {
        let mut s = String::new();
        std::io::Read::read_to_string(self.child.stdout.as_mut().expect("stdout"), &mut s)?;
        serde_json::from_str(&s).with_context(|| format!("caller output: {s}"))
    }
}

/// The callers' summaries, once the window is over.
pub struct Summaries {
    pub naive: Value,
    pub retrying: Value,
    pub pooled: Value,
}

/// How long the callers run: the window, less a margin for the last requests to end in it.
fn caller_secs(window: Duration) -> String {
    format!(
        "{:.1}",
        window
            .saturating_sub(Duration::from_millis(800))
            .as_secs_f64()
    )
}

/// Starts the pooled caller before the fault: it opens its keep-alive connections, makes one
/// request on each, and waits (connections a pool holds when a fault begins).
pub fn start_pooled(lab: &Lab, window: Duration) -> anyhow::Result<Caller> {
    let c = Caller::start(
        lab,
        "pooled-caller",
        &caller_secs(window),
        &[
            "--connections",
            &POOL_CONNECTIONS.to_string(),
            "--interval-ms",
            "50",
            "--warmup",
        ],
    )?;
    let t0 = Instant::now();
    while c.warm.lock().unwrap_or_else(|e| e.into_inner()).is_none() {
        if t0.elapsed() > Duration::from_secs(10) {
            bail!("the pooled caller did not open its connections within 10 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    eprintln!(
        "demo: pooled caller holds {POOL_CONNECTIONS} keep-alive connections to {VM_V4}:80, opened before the fault"
    );
    Ok(c)
}

/// Runs the callers until the window (from `active_at`) is nearly over, printing progress
/// every second; their summaries, or `None` on Ctrl-C. The pooled caller, waiting since before
/// the fault, is let go on its old connections.
pub fn run(
    lab: &Lab,
    window: Duration,
    active_at: Instant,
    mut pooled: Caller,
    interrupted: &AtomicBool,
) -> anyhow::Result<Option<Summaries>> {
    let secs = caller_secs(window);
    pooled
        .child
        .stdin
        .take()
        .context("the pooled caller's stdin")?
        .write_all(b"go\n")?;
    let naive = Caller::start(
        lab,
        "caller",
        &secs,
        &[
            "--retries",
            "0",
            "--concurrency",
            "8",
            "--interval-ms",
            "20",
        ],
    )?;
    let retrying = Caller::start(
        lab,
        "caller",
        &secs,
        &[
            "--retries",
            "6",
            "--backoff-ms",
            "100",
            "--concurrency",
            "4",
            "--interval-ms",
            "20",
            "--metrics-listen",
            CALLER_METRICS,
        ],
    )?;
    let mut callers = [naive, retrying, pooled];
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    loop {
        if interrupted.load(Ordering::SeqCst) {
            return Ok(None);
        }
        let mut done = true;
        for c in &mut callers {
            done &= c.child.try_wait()?.is_some();
        }
        let left = window.saturating_sub(active_at.elapsed()).as_secs();
        let line = progress_line(
            left,
            &callers[0].progress(),
            &callers[1].progress(),
            &callers[2].progress(),
        );
        // One line rewritten in place on a terminal; a line per second in a log.
        if terminal {
            eprint!("\r{line}   ");
        } else {
            eprintln!("{line}");
        }
        let _ = std::io::stderr().flush();
        if done {
            if terminal {
                eprintln!();
            }
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    let [naive, retrying, pooled] = callers;
    Ok(Some(Summaries {
        naive: naive.summary()?,
        retrying: retrying.summary()?,
        pooled: pooled.summary()?,
    }))
}

fn progress_line(left: u64, naive: &Value, retrying: &Value, pooled: &Value) -> String {
    let num = |v: &Value, k: &str| v[k].as_u64().unwrap_or(0);
    format!(
        "  window: {left:>3} s left | naive: {:>5} requests, {:>4} resets | retrying: {:>5} requests, {:>5} ok, {:>4} resets seen | pooled: {:>5} requests, {:>4} resets",
        num(naive, "requests"),
        num(naive, "resets"),
        num(retrying, "requests"),
        num(retrying, "succeeded"),
        num(retrying, "resets"),
        num(pooled, "requests"),
        num(pooled, "resets")
    )
}
