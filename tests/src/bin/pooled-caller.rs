//! A pooled HTTP/1.1 caller, as high-throughput services are called: `--connections` persistent
//! keep-alive connections, each reused for request after request and reopened only after an
//! error (a reset, a close, a timeout). Bounded by `--requests` and `--duration-s`.
//!
//! With `--warmup`, every connection first makes one request, then the caller prints
//! `{"warm": N}` on stderr and waits for a line on stdin before the rest: the connections of a
//! pool that predates the fault. Prints a JSON summary on stdout; `--progress-ms` adds progress
//! lines on stderr.
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
};

#[derive(Parser, Clone)]
struct Args {
    /// http://ADDR:PORT/PATH (IPv6 as [ADDR])
    #[arg(long)]
    url: String,
    #[arg(long, default_value_t = 100)]
    requests: u64,
    #[arg(long, default_value_t = 1)]
    connections: usize,
    /// Stop starting requests after this many seconds (0: only --requests bounds the run).
    #[arg(long, default_value_t = 0.0)]
    duration_s: f64,
    #[arg(long, default_value_t = 10_000)]
    timeout_ms: u64,
    /// Pause between requests of one connection.
    #[arg(long, default_value_t = 0)]
    interval_ms: u64,
    /// Append /N to the path so every request is distinguishable in the service's log.
    #[arg(long)]
    unique_paths: bool,
    /// One request per connection first, then wait for a line on stdin.
    #[arg(long)]
    warmup: bool,
    #[arg(long, default_value_t = 0)]
    progress_ms: u64,
}

#[derive(Default)]
struct Totals {
    requests: AtomicU64,
    ok: AtomicU64,
    resets: AtomicU64,
    closed: AtomicU64,
    other: AtomicU64,
    reconnects: AtomicU64,
    /// Resets on connections opened during the warm-up (before the fault).
    warm_resets: AtomicU64,
    /// Response bytes received by requests that ended in a reset (should stay 0).
    bytes_before_reset: AtomicU64,
    reset_after_us: Mutex<Vec<u64>>,
    /// First request byte -> whole answer, of the answered requests (bounded sample).
    ok_after_us: Mutex<Vec<u64>>,
}

/// The most latency samples kept per outcome.
const MAX_SAMPLES: usize = 1_000_000;

enum Outcome {
    Ok { after: Duration },
    Reset { after: Duration, bytes: u64 },
    Closed,
    Other,
}

/// One request on `s`: the response head and its Content-Length body.
async fn request(s: &mut TcpStream, host: &str, path: &str, timeout: Duration) -> Outcome {
    let start = Instant::now();
    let mut got = 0u64;
    let fut = async {
        let req =
            format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: reset-peer-pooled\r\n\r\n");
        s.write_all(req.as_bytes()).await?;
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if s.read(&mut byte).await? == 0 {
                return Ok(None);
            }
            got += 1;
            head.push(byte[0]);
            if head.len() > 16 * 1024 {
                return Err(std::io::Error::other("response head too large"));
            }
        }
        let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
        let len: usize = text
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        let mut body = vec![0u8; len];
        s.read_exact(&mut body).await?;
        got += len as u64;
        Ok(Some(text.starts_with("http/1.1 200")))
    };
    match tokio::time::timeout(timeout, fut).await {
        Ok(Ok(Some(true))) => Outcome::Ok {
            after: start.elapsed(),
        },
        Ok(Ok(None)) => Outcome::Closed,
        Ok(Err(e)) if e.kind() == ErrorKind::ConnectionReset => Outcome::Reset {
            after: start.elapsed(),
            bytes: got,
        },
        Ok(Err(e)) if e.kind() == ErrorKind::UnexpectedEof => Outcome::Closed,
        _ => Outcome::Other,
    }
}

async fn connect(addr: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    Ok(s)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let (addr, host, path) = parse_url(&args.url)?;
    let timeout = Duration::from_millis(args.timeout_ms);
    let totals = Arc::new(Totals::default());
    // The pool, opened (and warmed) up front.
    let mut pool = Vec::new();
    for _ in 0..args.connections.max(1) {
        let mut s = connect(addr).await?;
        if args.warmup
            && !matches!(
                request(&mut s, &host, &path, timeout).await,
                Outcome::Ok { .. }
            )
        {
            anyhow::bail!("a warm-up request failed");
        }
        pool.push(s);
    }
    if args.warmup {
        eprintln!("{}", json!({"warm": pool.len()}));
        tokio::task::spawn_blocking(|| {
            let mut line = String::new();
            std::io::stdin().read_line(&mut line)
        })
        .await??;
    }
    let started = Instant::now();
    let deadline =
        (args.duration_s > 0.0).then(|| started + Duration::from_secs_f64(args.duration_s));
    if args.progress_ms > 0 {
        let t = totals.clone();
        let every = Duration::from_millis(args.progress_ms);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                eprintln!(
                    "{}",
                    json!({"progress": {"elapsed_s": started.elapsed().as_secs_f64(),
                        "requests": t.requests.load(Relaxed), "succeeded": t.ok.load(Relaxed),
                        "resets": t.resets.load(Relaxed), "other_errors": t.other.load(Relaxed) + t.closed.load(Relaxed)}})
                );
            }
        });
    }
    let next = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for s in pool {
        let (args, totals, next, host, path) = (
            args.clone(),
            totals.clone(),
            next.clone(),
            host.clone(),
            path.clone(),
        );
        workers.push(tokio::spawn(async move {
            let mut conn = Some(s);
            let mut warm = args.warmup;
            loop {
                let n = next.fetch_add(1, Relaxed);
                if n >= args.requests || deadline.is_some_and(|d| Instant::now() >= d) {
                    return;
                }
                let mut s = match conn.take() {
                    Some(s) => s,
                    None => match connect(addr).await {
                        Ok(s) => {
                            totals.reconnects.fetch_add(1, Relaxed);
                            warm = false;
                            s
                        }
                        Err(_) => {
                            totals.requests.fetch_add(1, Relaxed);
                            totals.other.fetch_add(1, Relaxed);
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        }
                    },
                };
                let p = if args.unique_paths {
                    format!("{}/{n}", path.trim_end_matches('/'))
                } else {
                    path.clone()
                };
                totals.requests.fetch_add(1, Relaxed);
                match request(&mut s, &host, &p, timeout).await {
                    Outcome::Ok { after } => {
                        totals.ok.fetch_add(1, Relaxed);
                        let mut v = totals.ok_after_us.lock().unwrap_or_else(|e| e.into_inner());
                        if v.len() < MAX_SAMPLES {
                            v.push(after.as_micros() as u64);
                        }
                        drop(v);
                        conn = Some(s);
                    }
                    Outcome::Reset { after, bytes } => {
                        totals.resets.fetch_add(1, Relaxed);
                        totals.bytes_before_reset.fetch_add(bytes, Relaxed);
                        if warm {
                            totals.warm_resets.fetch_add(1, Relaxed);
                        }
                        totals
                            .reset_after_us
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(after.as_micros() as u64);
                    }
                    Outcome::Closed => {
                        totals.closed.fetch_add(1, Relaxed);
                    }
                    Outcome::Other => {
                        totals.other.fetch_add(1, Relaxed);
                    }
                }
                if args.interval_ms > 0 {
                    tokio::time::sleep(Duration::from_millis(args.interval_ms)).await;
                }
            }
        }));
    }
    for w in workers {
        w.await?;
    }
    let mut ra = totals
        .reset_after_us
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let mut oa = totals
        .ok_after_us
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let requests = totals.requests.load(Relaxed);
    let ok = totals.ok.load(Relaxed);
    println!(
        "{}",
        json!({
            "requests": requests,
            "succeeded": ok,
            "resets": totals.resets.load(Relaxed),
            "closed": totals.closed.load(Relaxed),
            "other_errors": totals.other.load(Relaxed),
            "reconnects": totals.reconnects.load(Relaxed),
            "warm_resets": totals.warm_resets.load(Relaxed),
            "bytes_before_reset": totals.bytes_before_reset.load(Relaxed),
            "success_percent": if requests > 0 { 100.0 * ok as f64 / requests as f64 } else { 0.0 },
            "reset_after_ms": {"p50": pct_ms(&mut ra, 0.5), "p99": pct_ms(&mut ra, 0.99), "max": pct_ms(&mut ra, 1.0)},
            "ok_ms": {"p50": pct_ms(&mut oa, 0.5), "p99": pct_ms(&mut oa, 0.99), "max": pct_ms(&mut oa, 1.0)},
            "elapsed_s": started.elapsed().as_secs_f64(),
        })
    );
    Ok(())
}
