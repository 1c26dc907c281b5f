//! What a selected connection gets: held, then reset RESET_TIMEOUT after its first request byte.
//! Also the pass-through for unselected connections in userspace mode.
//!
//! The reset is a zero-linger close (never shutdown() first: that would send FIN), so the
//! caller's next read fails with ECONNRESET, "Connection reset by peer".
use std::{net::SocketAddr, sync::atomic::Ordering::Relaxed};

use tokio::{
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

/// Relay chunk for the downstream request. It lives on the poll stack, never across an
/// `await`, so a held connection carries no buffer of its own.
const CHUNK: usize = 4 * 1024;

/// What a held connection needs from the proxy.
pub struct Hold<'a> {
    pub cfg: &'a ProxyConfig,
    pub stats: &'a Stats,
    pub reaper: &'a Reaper,
    /// Kernel mode: the flow map, for the kernel's timestamp of the first request byte.
    pub flows: Option<&'a FlowTable>,
}

/// Holds a selected connection and resets it RESET_TIMEOUT after its first request byte.
///
/// Memory: nothing is buffered here. `upstream` leaves the request in the kernel's receive
/// queue (the service never sees it); `downstream` copies it to the service through a stack
/// chunk and leaves the service's answer unread in the kernel (withheld). A zero-linger close
/// discards both queues.
pub async fn hold_and_reset(
    client: TcpStream,
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
    // Wait for the first request byte (or abort). A peek, not `readable()`: tokio may report
    // a fresh socket readable before any byte arrived, and the kernel's first-byte stamp is
    // only there once the byte is.
    let mut probe = [0u8; 1];
    tokio::select! {
        r = client.peek(&mut probe) => if matches!(r, Ok(0) | Err(_)) {
            stats.caller_gone.fetch_add(1, Relaxed);
            return;
        },
        _ = wait_abort(&mut phase) => {
            reset(client, None, stats, None);
            return;
        }
    }
    // The request started when its first byte reached TCP: in kernel mode the socket filter
    // stamped that instant (CLOCK_MONOTONIC, like Instant), so the reset delay is measured from
    // the kernel's receipt, not from when this task got to run.
    let first_at = flows
        .and_then(|f| f.lookup(peer, orig))
        .and_then(|f| wire_instant(f.first_byte_ns))
        .unwrap_or_else(Instant::now);
    let deadline = first_at + cfg.reset_timeout;
    // Hold in tokio until shortly before the deadline; the reaper thread does the exact close.
    let handoff = deadline.checked_sub(HANDOFF).unwrap_or(first_at);
    let mut upstream = match cfg.stream {
        Stream::Downstream => connect_upstream(orig, stats).await,
        Stream::Upstream => None,
    };
    // Downstream: request bytes the service could not take yet (heap only while that lasts).
    let mut pending: Vec<u8> = Vec::new();
    let mut client_open = cfg.stream == Stream::Downstream;
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
            r = client.readable(), if client_open && pending.is_empty() && upstream.is_some() => {
                if r.is_err() {
                    client_open = false;
                    continue;
                }
                match relay_chunk(&client, upstream.as_ref(), &mut pending) {
                    Relay::Open => {}
                    Relay::ClientDone => client_open = false,
                    Relay::UpstreamFailed => {
                        stats.upstream_failures.fetch_add(1, Relaxed);
                        upstream = None;
                    }
                }
            }
            r = writable_or_pending(upstream.as_ref()), if !pending.is_empty() => {
                let up = upstream.as_ref().filter(|_| r.is_ok());
                match up.map(|u| u.try_write(&pending)) {
                    Some(Ok(n)) => { pending.drain(..n); }
                    Some(Err(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    _ => {
                        stats.upstream_failures.fetch_add(1, Relaxed);
                        upstream = None;
                        pending = Vec::new();
                    }
                }
            }
        }
    }
    reset(client, upstream, stats, Some(first_at));
}

async fn connect_upstream(orig: SocketAddr, stats: &Stats) -> Option<TcpStream> {
    match TcpStream::connect(orig).await {
        Ok(up) => {
            let _ = up.set_nodelay(true);
            Some(up)
        }
        Err(e) => {
            debug!(error = %e, %orig, "service unreachable");
            stats.upstream_failures.fetch_add(1, Relaxed);
            None
        }
    }
}

enum Relay {
    Open,
    ClientDone,
    UpstreamFailed,
}

/// Moves what the caller sent to the service, without awaiting: the chunk is a stack array of
/// this call only. What the service cannot take now goes to `pending`.
fn relay_chunk(client: &TcpStream, upstream: Option<&TcpStream>, pending: &mut Vec<u8>) -> Relay {
    let mut chunk = [0u8; CHUNK];
    let n = match client.try_read(&mut chunk) {
        Ok(0) => return Relay::ClientDone, // half-closed: keep it until the reset is due
        Ok(n) => n,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Relay::Open,
        Err(_) => return Relay::ClientDone,
    };
    let Some(up) = upstream else {
        return Relay::Open;
    };
    match up.try_write(&chunk[..n]) {
        Ok(w) => {
            pending.extend_from_slice(&chunk[w..n]);
            Relay::Open
        }
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
            pending.extend_from_slice(&chunk[..n]);
            Relay::Open
        }
        Err(_) => Relay::UpstreamFailed,
    }
}

async fn writable_or_pending(up: Option<&TcpStream>) -> std::io::Result<()> {
    match up {
        Some(s) => s.writable().await,
        None => Err(std::io::ErrorKind::NotConnected.into()),
    }
}

/// A kernel CLOCK_MONOTONIC timestamp as a tokio `Instant`.
fn wire_instant(mono_ns: u64) -> Option<Instant> {
    crate::clock::instant_of_mono_ns(mono_ns).map(Instant::from_std)
}

pub(super) async fn wait_abort(phase: &mut watch::Receiver<Phase>) {
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
