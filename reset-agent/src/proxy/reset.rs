//! What a selected connection gets: held, then reset RESET_TIMEOUT after its first request byte.
//!
//! The reset is a zero-linger close (never shutdown() first: that would send FIN), so the
//! caller's next read fails with ECONNRESET, "Connection reset by peer".
use std::{net::SocketAddr, sync::atomic::Ordering::Relaxed};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::watch,
    time::{Instant, sleep_until},
};
use tracing::debug;

use super::{
    Phase, ProxyConfig, Stats,
    reaper::{HANDOFF, Reaper},
};
use crate::{config::Stream, ebpf::FlowTable};

/// Per-connection buffer. Requests are held, not streamed: small buffers keep 10k held
/// connections cheap.
const BUF: usize = 4 * 1024;

/// What a held connection needs from the proxy.
pub struct Hold<'a> {
    pub cfg: &'a ProxyConfig,
    pub stats: &'a Stats,
    pub reaper: &'a Reaper,
    /// Kernel mode: the flow map, for the wire timestamp of the first request byte.
    pub flows: Option<&'a FlowTable>,
}

pub async fn hold_and_reset(
    mut client: TcpStream,
    peer: SocketAddr,
    orig: SocketAddr,
    hold: &Hold<'_>,
    mut phase: watch::Receiver<Phase>,
) {
    let Hold {
        cfg,
        stats,
        reaper,
        flows,
    } = *hold;
    let mut buf = vec![0u8; BUF];
    // Wait for the first request byte (or abort).
    let n = tokio::select! {
        r = client.read(&mut buf) => r,
        _ = wait_abort(&mut phase) => {
            reset(client, None, stats, None);
            return;
        }
    };
    // The request started when its first byte crossed the interface: in kernel mode the tc
    // program stamped that instant (CLOCK_MONOTONIC, like Instant), so the reset delay is
    // measured from the wire, not from when this task got to run.
    let first_at = flows
        .and_then(|f| f.lookup(peer, orig))
        .and_then(|f| wire_instant(f.first_byte_ns))
        .unwrap_or_else(Instant::now);
    let n = match n {
        Ok(0) | Err(_) => {
            stats.caller_gone.fetch_add(1, Relaxed);
            return;
        }
        Ok(n) => n,
    };
    let deadline = first_at + cfg.reset_timeout;
    // Hold in tokio until shortly before the deadline; the reaper thread does the exact close.
    let handoff = deadline.checked_sub(HANDOFF).unwrap_or(first_at);
    let mut upstream = None;
    if cfg.stream == Stream::Downstream {
        match TcpStream::connect(orig).await {
            Ok(mut up) => {
                let _ = up.set_nodelay(true);
                if up.write_all(&buf[..n]).await.is_ok() {
                    upstream = Some(up);
                } else {
                    stats.upstream_failures.fetch_add(1, Relaxed);
                }
            }
            Err(e) => {
                debug!(error = %e, %orig, "service unreachable");
                stats.upstream_failures.fetch_add(1, Relaxed);
            }
        }
    }
    // Downstream only: the service's response is read into this and withheld.
    let mut discard = if upstream.is_some() {
        vec![0u8; BUF]
    } else {
        Vec::new()
    };
    let mut client_open = true;
    loop {
        tokio::select! {
            _ = sleep_until(handoff) => {
                let upstream = upstream.and_then(|u| u.into_std().ok());
                match client.into_std() {
                    Ok(c) => {
                        let done = reaper.schedule(deadline.into_std(), c, upstream, first_at.into_std());
                        let _ = done.await;
                    }
                    Err(_) => {
                        stats.caller_gone.fetch_add(1, Relaxed);
                    }
                }
                return;
            }
            _ = wait_abort(&mut phase) => break,
            r = client.read(&mut buf), if client_open => match r {
                Ok(0) => client_open = false, // half-closed: keep it until the reset is due
                Ok(n) => {
                    if let Some(up) = upstream.as_mut()
                        && up.write_all(&buf[..n]).await.is_err()
                    {
                        stats.upstream_failures.fetch_add(1, Relaxed);
                        upstream = None;
                    }
                }
                Err(_) => {
                    stats.caller_gone.fetch_add(1, Relaxed);
                    return;
                }
            },
            // Downstream: the response is read and withheld.
            r = read_or_pending(&mut upstream, &mut discard) => {
                if matches!(r, Ok(0) | Err(_)) {
                    upstream = None;
                }
            }
        }
    }
    reset(client, upstream, stats, Some(first_at));
}

/// Converts a CLOCK_MONOTONIC timestamp (ns) into an Instant, if it is recent.
fn wire_instant(mono_ns: u64) -> Option<Instant> {
    if mono_ns == 0 {
        return None;
    }
    let now = Instant::now();
    let now_ns = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).ok()?;
    let now_ns = u64::try_from(now_ns.tv_sec()).ok()? * 1_000_000_000
        + u64::try_from(now_ns.tv_nsec()).ok()?;
    let age = std::time::Duration::from_nanos(now_ns.checked_sub(mono_ns)?);
    (age < std::time::Duration::from_secs(1))
        .then(|| now.checked_sub(age))
        .flatten()
}

async fn read_or_pending(up: &mut Option<TcpStream>, buf: &mut [u8]) -> std::io::Result<usize> {
    match up {
        Some(s) => s.read(buf).await,
        None => std::future::pending().await,
    }
}

async fn wait_abort(phase: &mut watch::Receiver<Phase>) {
    loop {
        if *phase.borrow_and_update() == Phase::Abort {
            return;
        }
        if phase.changed().await.is_err() {
            // The lifecycle is gone: treat as abort, never hold a connection forever.
            return;
        }
    }
}

fn reset(client: TcpStream, upstream: Option<TcpStream>, stats: &Stats, first_at: Option<Instant>) {
    match client.set_zero_linger() {
        Ok(()) => {
            drop(client);
            stats.resets_issued.fetch_add(1, Relaxed);
            if let Some(t) = first_at {
                stats.record_delay(t.elapsed());
            }
        }
        Err(e) => {
            debug!(error = %e, "could not set zero linger; the caller already left");
            stats.caller_gone.fetch_add(1, Relaxed);
        }
    }
    if let Some(up) = upstream {
        let _ = up.set_zero_linger();
    }
}

/// Userspace mode, unselected: a transparent pass-through to the service.
pub async fn forward(mut client: TcpStream, orig: SocketAddr, stats: &Stats) {
    match TcpStream::connect(orig).await {
        Ok(mut up) => {
            // A transparent relay must not add Nagle/delayed-ACK stalls (~40 ms per exchange).
            let _ = client.set_nodelay(true);
            let _ = up.set_nodelay(true);
            let _ = tokio::io::copy_bidirectional(&mut client, &mut up).await;
        }
        Err(e) => {
            debug!(error = %e, %orig, "service unreachable");
            stats.upstream_failures.fetch_add(1, Relaxed);
            let _ = client.set_zero_linger();
        }
    }
}
