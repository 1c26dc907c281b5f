//! A real HTTP/1.1 caller for the lab: one new TCP connection per attempt, `Connection: close`.
//! Naive (`--retries 0`): one attempt per request. Retrying: bounded retries with exponential
//! backoff, as a well-behaved client does. Prints a JSON summary on stdout; with
//! `--progress-ms` also a JSON progress line on stderr at that interval.
//!
//! An attempt that fails with ECONNRESET ("Connection reset by peer") counts as a reset;
//! anything else that is not a 200 counts as another error. Load is bounded by `--requests`
//! and `--duration-s`. With `--metrics-listen ADDR` it serves its counters as Prometheus text
//! at http://ADDR/metrics while it runs (`reset_peer_caller_*_total`, e.g. `retries_total`:
//! attempts after a request's first), as an instrumented client would.
#![forbid(unsafe_code)]

use std::{
    io::ErrorKind,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

use clap::Parser;
use reset_tests::callers::{parse_url, pct_ms};
use serde_json::json;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::Semaphore,
};

#[derive(Parser, Clone)]
struct Args {
    /// http://ADDR:PORT/PATH (IPv6 as [ADDR])
    #[arg(long)]
    url: String,
    /// Upper bound on requests.
    #[arg(long, default_value_t = 100)]
    requests: u64,
    /// Stop starting requests after this many seconds (0: no time bound besides --requests).
    #[arg(long, default_value_t = 0.0)]
    duration_s: f64,
    #[arg(long, default_value_t = 1)]
    concurrency: usize,
    /// Retries after a failed attempt (0: naive caller).
    #[arg(long, default_value_t = 0)]
    retries: u32,
    /// First backoff; doubled per retry, capped at 2 s.
    #[arg(long, default_value_t = 50)]
    backoff_ms: u64,
    #[arg(long, default_value_t = 10_000)]
    timeout_ms: u64,
    /// Pause between requests of one worker (pacing).
    #[arg(long, default_value_t = 0)]
    interval_ms: u64,
    /// Append /N to the path so every request is distinguishable.
    #[arg(long)]
    unique_paths: bool,
    #[arg(long, default_value_t = 0)]
    progress_ms: u64,
    /// Serve the counters as Prometheus text at http://ADDR/metrics while running.
    #[arg(long)]
    metrics_listen: Option<SocketAddr>,
}

#[derive(Default)]
struct Totals {
    requests: AtomicU64,
    succeeded: AtomicU64,
    failed: AtomicU64,
    attempts: AtomicU64,
    retries: AtomicU64,
    resets: AtomicU64,
    other_errors: AtomicU64,
    latencies_us: Mutex<Vec<u64>>,
    reset_after_us: Mutex<Vec<u64>>,
}

enum Attempt {
    Ok,
    Reset(Duration),
    Other,
}

/// When the latest connect was started and the latest connection established (µs since `t0`),
/// for offered and achieved connection rates.
struct LastConnect {
    t0: Instant,
    issued_us: AtomicU64,
    us: AtomicU64,
}

async fn attempt(
    addr: SocketAddr,
    host: &str,
    path: &str,
    timeout: Duration,
    last: &LastConnect,
) -> Attempt {
    let start = Instant::now();
    let fut = async {
        last.issued_us
            .fetch_max(last.t0.elapsed().as_micros() as u64, Relaxed);
        let mut s = TcpStream::connect(addr).await?;
        last.us
            .fetch_max(last.t0.elapsed().as_micros() as u64, Relaxed);
        s.set_nodelay(true)?;
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: reset-peer-caller\r\nConnection: close\r\n\r\n"
        );
        s.write_all(req.as_bytes()).await?;
        let mut resp = Vec::new();
        s.read_to_end(&mut resp).await?;
        Ok::<_, std::io::Error>(resp)
    };
    match tokio::time::timeout(timeout, fut).await {
        Ok(Ok(resp)) if resp.starts_with(b"HTTP/1.1 200") || resp.starts_with(b"HTTP/1.0 200") => {
            Attempt::Ok
        }
        Ok(Ok(_)) => Attempt::Other,
        Ok(Err(e)) if e.kind() == ErrorKind::ConnectionReset => Attempt::Reset(start.elapsed()),
        Ok(Err(_)) | Err(_) => Attempt::Other,
    }
}

impl Totals {
    /// The counters in the Prometheus text format (version 0.0.4).
    fn exposition(&self) -> String {
        let mut out = String::new();
        for (name, help, v) in [
            ("requests", "Requests started.", &self.requests),
            (
                "attempts",
                "Attempts, first tries and retries.",
                &self.attempts,
            ),
            (
                "retries",
                "Attempts after a request's first one failed.",
                &self.retries,
            ),
            ("succeeded", "Requests that got a 200.", &self.succeeded),
            (
                "failed",
                "Requests that failed every attempt.",
                &self.failed,
            ),
            (
                "resets",
                "Attempts reset by the peer (ECONNRESET).",
                &self.resets,
            ),
            (
                "other_errors",
                "Attempts that failed otherwise.",
                &self.other_errors,
            ),
        ] {
            let full = format!("reset_peer_caller_{name}_total");
            out.push_str(&format!(
                "# HELP {full} {help}\n# TYPE {full} counter\n{full} {}\n",
                v.load(Relaxed)
            ));
        }
        out
    }
}

/// Serves `totals` at http://ADDR/metrics (any path) until the process ends; says so on stderr.
async fn serve_metrics(addr: SocketAddr, totals: Arc<Totals>) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    eprintln!("metrics: serving http://{}/metrics", listener.local_addr()?);
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let totals = totals.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 8192 {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let body = totals.exposition();
                let reply = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(reply.as_bytes()).await;
            });
        }
    });
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (addr, host, path) = parse_url(&args.url)?;
    let totals = Arc::new(Totals::default());
    let last_connect = Arc::new(LastConnect {
        t0: Instant::now(),
        issued_us: AtomicU64::new(0),
        us: AtomicU64::new(0),
    });
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline =
        (args.duration_s > 0.0).then(|| started + Duration::from_secs_f64(args.duration_s));
    let sem = Arc::new(Semaphore::new(args.concurrency.max(1)));
    if let Some(addr) = args.metrics_listen {
        serve_metrics(addr, totals.clone()).await?;
    }
    let mut workers = Vec::new();
    if args.progress_ms > 0 {
        let t = totals.clone();
        let every = Duration::from_millis(args.progress_ms);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                eprintln!(
                    "{}",
                    json!({"progress": {"elapsed_s": started.elapsed().as_secs_f64(), "requests": t.requests.load(Relaxed),
                        "succeeded": t.succeeded.load(Relaxed), "resets": t.resets.load(Relaxed),
                        "other_errors": t.other_errors.load(Relaxed)}})
                );
            }
        });
    }
    for _ in 0..args.concurrency.max(1) {
        let last_connect = last_connect.clone();
        let (args, totals, next, sem, host, path) = (
            args.clone(),
            totals.clone(),
            next.clone(),
            sem.clone(),
            host.clone(),
            path.clone(),
        );
        workers.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Relaxed);
                if n >= args.requests || deadline.is_some_and(|d| Instant::now() >= d) {
                    return;
                }
                let _permit = sem.acquire().await;
                let p = if args.unique_paths {
                    format!("{}/{n}", path.trim_end_matches('/'))
                } else {
                    path.clone()
                };
                let t0 = Instant::now();
                totals.requests.fetch_add(1, Relaxed);
                let mut ok = false;
                for try_no in 0..=args.retries {
                    totals.attempts.fetch_add(1, Relaxed);
                    if try_no > 0 {
                        totals.retries.fetch_add(1, Relaxed);
                    }
                    match attempt(
                        addr,
                        &host,
                        &p,
                        Duration::from_millis(args.timeout_ms),
                        &last_connect,
                    )
                    .await
                    {
                        Attempt::Ok => {
                            ok = true;
                            break;
                        }
                        Attempt::Reset(after) => {
                            totals.resets.fetch_add(1, Relaxed);
                            totals
                                .reset_after_us
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .push(after.as_micros() as u64);
                        }
                        Attempt::Other => {
                            totals.other_errors.fetch_add(1, Relaxed);
                        }
                    }
                    if try_no < args.retries {
                        let backoff = (args.backoff_ms << try_no.min(10)).min(2000);
                        tokio::time::sleep(Duration::from_millis(backoff)).await;
                    }
                }
                if ok {
                    totals.succeeded.fetch_add(1, Relaxed);
                } else {
                    totals.failed.fetch_add(1, Relaxed);
                }
                totals
                    .latencies_us
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(t0.elapsed().as_micros() as u64);
                if args.interval_ms > 0 {
                    tokio::time::sleep(Duration::from_millis(args.interval_ms)).await;
                }
            }
        }));
    }
    for w in workers {
        w.await?;
    }
    let mut lat = totals
        .latencies_us
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let mut ra = totals
        .reset_after_us
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let requests = totals.requests.load(Relaxed);
    let succeeded = totals.succeeded.load(Relaxed);
    let summary = json!({
        "requests": requests,
        "succeeded": succeeded,
        "failed": totals.failed.load(Relaxed),
        "attempts": totals.attempts.load(Relaxed),
        "retries": totals.retries.load(Relaxed),
        "resets": totals.resets.load(Relaxed),
        "other_errors": totals.other_errors.load(Relaxed),
        "success_percent": if requests > 0 { 100.0 * succeeded as f64 / requests as f64 } else { 0.0 },
        "latency_ms": {"p50": pct_ms(&mut lat, 0.5), "p99": pct_ms(&mut lat, 0.99), "max": pct_ms(&mut lat, 1.0)},
        "reset_after_ms": {"min": if ra.is_empty() { 0.0 } else { pct_ms(&mut ra, 0.0) }, "p50": pct_ms(&mut ra, 0.5), "max": pct_ms(&mut ra, 1.0)},
        "elapsed_s": started.elapsed().as_secs_f64(),
        // Start -> the last connection established: with --concurrency >= --requests, the
        // time the whole burst of connections took to open.
        "connect_span_s": last_connect.us.load(Relaxed) as f64 / 1e6,
        // Start -> the last connect() started: the offered burst.
        "connect_issue_span_s": last_connect.issued_us.load(Relaxed) as f64 / 1e6,
    });
    println!("{summary}");
    Ok(())
}
