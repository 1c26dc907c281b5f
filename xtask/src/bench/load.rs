//! A paced (open-loop) TCP/HTTP load generator that runs inside the caller namespace: a
//! dedicated thread joins the namespace (setns) and drives a single-threaded tokio runtime, so
//! every socket it opens lives there. Bounded by a connection count, a duration and an
//! in-flight cap.
use std::{
    io::ErrorKind,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::Context;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::Semaphore,
};

/// What each connection does.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Kind {
    /// Connect, then close (FIN). Only the SYN matters (selection accounting).
    ConnectOnly,
    /// `GET /` with `Connection: close`, read to the end or to a reset.
    Request,
    /// Send the request and keep the connection open (returned in `Outcome::held`).
    Hold,
}

#[derive(Clone, Debug)]
pub struct Plan {
    pub addr: SocketAddr,
    pub kind: Kind,
    /// New connections per second.
    pub rate: f64,
    pub count: u64,
    pub max_duration: Duration,
    pub max_inflight: usize,
    pub timeout: Duration,
}

#[derive(Default, Debug)]
pub struct Outcome {
    /// Connections started (each sent a SYN).
    pub attempted: u64,
    pub connect_failed: u64,
    pub ok: u64,
    pub resets: u64,
    pub other: u64,
    /// `Request`: connect -> complete 200 response, for each answered request.
    pub ok_us: Vec<u64>,
    /// First request byte -> ECONNRESET, as the caller's clock sees it.
    pub reset_after_us: Vec<u64>,
    /// First request byte -> orderly close (FIN) with no response.
    pub closed_after_us: Vec<u64>,
    /// Time spent starting connections (the achieved rate is attempted / elapsed).
    pub elapsed: Duration,
    pub held: Vec<std::net::TcpStream>,
}

#[derive(Default)]
struct Shared {
    connect_failed: u64,
    ok: u64,
    resets: u64,
    other: u64,
    ok_us: Vec<u64>,
    reset_after_us: Vec<u64>,
    closed_after_us: Vec<u64>,
    held: Vec<std::net::TcpStream>,
}

/// Runs `plan` from inside network namespace `netns` (a name under /run/netns).
pub fn run(netns: &str, plan: Plan) -> anyhow::Result<Outcome> {
    let path = format!("/run/netns/{netns}");
    std::thread::scope(|s| {
        s.spawn(|| -> anyhow::Result<Outcome> {
            let f = std::fs::File::open(&path).with_context(|| format!("open {path}"))?;
            nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET)
                .with_context(|| format!("setns into {netns}"))?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            Ok(rt.block_on(drive(plan)))
        })
        .join()
        .map_err(|_| anyhow::anyhow!("load generator thread panicked"))?
    })
}

async fn drive(plan: Plan) -> Outcome {
    let shared = Arc::new(Mutex::new(Shared::default()));
    let sem = Arc::new(Semaphore::new(plan.max_inflight.max(1)));
    let start = Instant::now();
    let tick = Duration::from_secs_f64(1.0 / plan.rate.max(1e-3));
    let mut attempted = 0u64;
    let mut tasks = tokio::task::JoinSet::new();
    while attempted < plan.count {
        let due = start + tick.mul_f64(attempted as f64);
        if due.duration_since(start) >= plan.max_duration || start.elapsed() >= plan.max_duration {
            break;
        }
        tokio::time::sleep_until(due.into()).await;
        let Ok(permit) = sem.clone().acquire_owned().await else {
            break;
        };
        attempted += 1;
        let (shared, plan2) = (shared.clone(), plan.clone());
        tasks.spawn(async move {
            one(&plan2, &shared).await;
            drop(permit);
        });
        // Reap finished tasks so the set stays small.
        while tasks.try_join_next().is_some() {}
    }
    let elapsed = start.elapsed();
    let _ = tokio::time::timeout(plan.timeout + Duration::from_secs(2), async {
        while tasks.join_next().await.is_some() {}
    })
    .await;
    tasks.abort_all();
    let mut g = shared.lock().unwrap_or_else(|e| e.into_inner());
    let s = std::mem::take(&mut *g);
    Outcome {
        attempted,
        connect_failed: s.connect_failed,
        ok: s.ok,
        resets: s.resets,
        other: s.other,
        ok_us: s.ok_us,
        reset_after_us: s.reset_after_us,
        closed_after_us: s.closed_after_us,
        elapsed,
        held: s.held,
    }
}

const REQUEST: &[u8] = b"GET / HTTP/1.1\r\nHost: 198.18.0.2\r\nUser-Agent: reset-peer-bench\r\nConnection: close\r\n\r\n";

async fn one(plan: &Plan, shared: &Mutex<Shared>) {
    let began = Instant::now();
    let stream = match tokio::time::timeout(plan.timeout, TcpStream::connect(plan.addr)).await {
        Ok(Ok(s)) => s,
        _ => {
            shared
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .connect_failed += 1;
            return;
        }
    };
    let _ = stream.set_nodelay(true);
    match plan.kind {
        Kind::ConnectOnly => {
            drop(stream);
            shared.lock().unwrap_or_else(|e| e.into_inner()).ok += 1;
        }
        Kind::Hold => {
            let mut stream = stream;
            let ok = stream.write_all(REQUEST).await.is_ok();
            let mut g = shared.lock().unwrap_or_else(|e| e.into_inner());
            match stream.into_std() {
                Ok(s) if ok => {
                    g.ok += 1;
                    g.held.push(s);
                }
                _ => g.other += 1,
            }
        }
        Kind::Request => {
            let mut stream = stream;
            let sent = Instant::now();
            let fut = async {
                stream.write_all(REQUEST).await?;
                let mut buf = Vec::with_capacity(512);
                stream.read_to_end(&mut buf).await?;
                Ok::<_, std::io::Error>(buf)
            };
            let res = tokio::time::timeout(plan.timeout, fut).await;
            let mut g = shared.lock().unwrap_or_else(|e| e.into_inner());
            match res {
                Ok(Ok(buf)) if buf.starts_with(b"HTTP/1.1 200") => {
                    g.ok += 1;
                    g.ok_us.push(began.elapsed().as_micros() as u64);
                }
                Ok(Ok(buf)) if buf.is_empty() => {
                    g.other += 1;
                    g.closed_after_us.push(sent.elapsed().as_micros() as u64);
                }
                Ok(Err(e)) if e.kind() == ErrorKind::ConnectionReset => {
                    g.resets += 1;
                    g.reset_after_us.push(sent.elapsed().as_micros() as u64);
                }
                _ => g.other += 1,
            }
        }
    }
}

/// Nearest-rank percentile (the agent's definition), in the values' unit.
pub fn pct(sorted: &[u64], p: f64) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    Some(sorted[i])
}

/// Sets RLIMIT_NOFILE as high as allowed (held connections need one fd each).
pub fn raise_nofile(want: u64) -> u64 {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    if setrlimit(Resource::RLIMIT_NOFILE, want, want).is_err()
        && let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE)
    {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
    getrlimit(Resource::RLIMIT_NOFILE).map_or(0, |(soft, _)| soft)
}

#[cfg(test)]
mod tests {
    use super::pct;

    #[test]
    fn nearest_rank() {
        let v: Vec<u64> = (1..=100).collect();
        assert_eq!(pct(&v, 0.5), Some(50));
        assert_eq!(pct(&v, 0.99), Some(99));
        assert_eq!(pct(&v, 1.0), Some(100));
        assert_eq!(pct(&[], 0.5), None);
    }
}
