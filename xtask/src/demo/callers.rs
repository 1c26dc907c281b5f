//! The demo's callers in the caller namespace: a naive one (one attempt per request) and a
//! retrying one (bounded retries with backoff, its counters served to Prometheus), both
//! through the fault window, with one live progress line from their JSON progress reports.
use std::{
    io::{BufRead, BufReader, Write},
    process::Stdio,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::Context;
use reset_tests::{bin, guard::Guard, lab::Lab};
use serde_json::Value;

use super::{CALLER_METRICS, VM_V4};

/// A caller process and its last progress report.
struct Caller {
    child: Guard,
    progress: Arc<Mutex<Value>>,
}

impl Caller {
    fn start(lab: &Lab, secs: &str, extra: &[&str]) -> anyhow::Result<Caller> {
        let target = format!("http://{VM_V4}/");
        let mut child = Guard::try_spawn(
            lab.caller
                .command(bin("caller"))
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
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped()),
            "caller",
        )?;
        let progress = Arc::new(Mutex::new(Value::Null));
        let p = progress.clone();
        let stderr = child.stderr.take().expect("piped stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Ok(v) = serde_json::from_str::<Value>(&line)
                    && v.get("progress").is_some()
                {
                    *p.lock().unwrap_or_else(|e| e.into_inner()) = v["progress"].clone();
                }
            }
        });
        Ok(Caller { child, progress })
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

/// Runs both callers until the window (from `active_at`) is nearly over, printing progress
/// every second; their summaries (naive, retrying), or `None` on Ctrl-C.
pub fn run(
    lab: &Lab,
    window: Duration,
    active_at: Instant,
    interrupted: &AtomicBool,
) -> anyhow::Result<Option<(Value, Value)>> {
    let secs = format!(
        "{:.1}",
        window
            .saturating_sub(Duration::from_millis(800))
            .as_secs_f64()
    );
    let naive = Caller::start(
        lab,
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
    let mut callers = [naive, retrying];
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
        let line = progress_line(left, &callers[0].progress(), &callers[1].progress());
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
    let [naive, retrying] = callers;
    Ok(Some((naive.summary()?, retrying.summary()?)))
}

fn progress_line(left: u64, naive: &Value, retrying: &Value) -> String {
    let num = |v: &Value, k: &str| v[k].as_u64().unwrap_or(0);
    format!(
        "  window: {left:>3} s left | naive: {:>5} requests, {:>4} resets | retrying: {:>5} requests, {:>5} ok, {:>4} resets seen",
        num(naive, "requests"),
        num(naive, "resets"),
        num(retrying, "requests"),
        num(retrying, "succeeded"),
        num(retrying, "resets")
    )
}
