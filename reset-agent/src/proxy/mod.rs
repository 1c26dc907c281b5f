//! The resetting proxy: accepts redirected connections, decides what each one gets, and resets
//! the selected ones. Per-connection failures stay with the connection (debug log); only
//! listener setup fails the run.
//!
//! Kernel mode: every connection here was selected by the tc program; the proxy confirms it in
//! the flow map. Userspace mode: all target traffic arrives; the proxy selects, and forwards
//! unselected connections transparently.
mod reaper;
mod relay;
mod reset;
mod select;

use std::{
    io,
    net::{Ipv6Addr, SocketAddr},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::Duration,
};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::watch,
    task::JoinSet,
};
use tracing::{Instrument, debug, info_span, warn};

pub use select::UserspaceSelector;

use crate::{config::Stream, ebpf::FlowTable};

/// What the lifecycle tells the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Window open (or draining after it): hold and reset on schedule.
    Running,
    /// Abort: reset every held connection now, accept no more.
    Abort,
}

/// How the proxy learns whether a connection was selected.
#[derive(Clone)]
pub enum Verdict {
    /// Kernel mode: the tc program decided; confirm in the flow map.
    Kernel(FlowTable),
    /// Userspace mode: decide here.
    Userspace(Arc<UserspaceSelector>),
}

#[derive(Debug, Clone)]
pub struct ProxyConfig {
    pub target_port: u16,
    pub reset_timeout: Duration,
    pub stream: Stream,
    pub verdict_is_kernel: bool,
    /// Userspace mode, request unit: relay every connection and select per request.
    pub per_request: bool,
}

/// Userspace counters, read by the report and the progress line.
#[derive(Debug, Default)]
pub struct Stats {
    /// Connections accepted from the redirect (kernel mode: selected ones).
    pub accepted: AtomicU64,
    /// Userspace mode: connections (connection unit) or requests (request unit) selected by
    /// the proxy.
    pub selected: AtomicU64,
    /// Userspace mode, request unit: requests the relay saw begin.
    pub requests_seen: AtomicU64,
    /// Userspace mode, request unit: connections whose first payload was not HTTP/1.
    pub flows_opaque: AtomicU64,
    /// Userspace mode: unselected connections forwarded.
    pub forwarded: AtomicU64,
    /// Zero-linger closes towards callers (each one is an RST).
    pub resets_issued: AtomicU64,
    /// Connections now held, waiting for their reset.
    pub held: AtomicU64,
    /// Kernel mode: redirected connections the flow map did not know (lost or evicted).
    pub unconfirmed: AtomicU64,
    /// Connections to the proxy port that were not redirected (refused).
    pub refused_direct: AtomicU64,
    /// Downstream: the service could not be reached or failed mid-request.
    pub upstream_failures: AtomicU64,
    /// The caller went away before its reset was due.
    pub caller_gone: AtomicU64,
    /// Caller-side delay from first byte to reset, microseconds (bounded sample).
    pub delays_us: std::sync::Mutex<Vec<u64>>,
    /// Set when metrics are served: every reset delay is observed there too.
    pub metrics: std::sync::OnceLock<crate::metrics::Metrics>,
}

const MAX_DELAY_SAMPLES: usize = 1_000_000;

impl Stats {
    pub(crate) fn record_delay(&self, d: Duration) {
        if let Some(m) = self.metrics.get() {
            m.observe_delay(d);
        }
        let mut v = self.delays_us.lock().unwrap_or_else(|e| e.into_inner());
        if v.len() < MAX_DELAY_SAMPLES {
            v.push(d.as_micros() as u64);
        }
    }
}

/// Binds the proxy's listeners: 0.0.0.0:port, and [::]:port (v6-only) when IPv6 is enabled.
/// Both are transparent (IP_TRANSPARENT / IPV6_TRANSPARENT): nftables `tproxy` hands only such
/// sockets a connection, which then keeps the destination the caller dialled.
pub fn bind(port: u16) -> io::Result<Vec<std::net::TcpListener>> {
    let mut out = Vec::new();
    let v4 = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    v4.set_reuse_address(true)?;
    v4.set_ip_transparent_v4(true)?;
    v4.bind(&SocketAddr::from(([0, 0, 0, 0], port)).into())?;
    v4.listen(4096)?;
    v4.set_nonblocking(true)?;
    out.push(v4.into());
    match Socket::new(Domain::IPV6, Type::STREAM, Some(Protocol::TCP)) {
        Ok(v6) => {
            v6.set_only_v6(true)?;
            v6.set_reuse_address(true)?;
            v6.set_ip_transparent_v6(true)?;
            v6.bind(&SocketAddr::from((Ipv6Addr::UNSPECIFIED, port)).into())?;
            v6.listen(4096)?;
            v6.set_nonblocking(true)?;
            out.push(v6.into());
        }
        Err(e) if e.raw_os_error() == Some(libc::EAFNOSUPPORT) => {
            warn!("IPv6 is disabled on this host: resetting IPv4 connections only");
        }
        Err(e) => return Err(e),
    }
    Ok(out)
}

/// Runs the proxy until `phase` says Abort (then resets everything held) or the listeners are
/// dropped by the caller cancelling this future after the drain.
pub async fn run(
    listeners: Vec<std::net::TcpListener>,
    cfg: Arc<ProxyConfig>,
    verdict: Verdict,
    stats: Arc<Stats>,
    phase: watch::Receiver<Phase>,
) -> io::Result<()> {
    let reaper = reaper::Reaper::start(stats.clone())?;
    let mut accepts = JoinSet::new();
    for l in listeners {
        let l = TcpListener::from_std(l)?;
        accepts.spawn(accept_loop(
            l,
            cfg.clone(),
            verdict.clone(),
            stats.clone(),
            reaper.clone(),
            phase.clone(),
        ));
    }
    // On abort, connections already handed to the reaper are reset at once too.
    let mut watch_abort = phase.clone();
    let r = reaper.clone();
    let abort_watch = tokio::spawn(async move {
        while watch_abort.changed().await.is_ok() {
            if *watch_abort.borrow() == Phase::Abort {
                break;
            }
        }
        r.abort();
    });
    let mut result = Ok(());
    while let Some(res) = accepts.join_next().await {
        if let Err(e) = res.map_err(io::Error::other).and_then(|r| r) {
            result = Err(e);
        }
    }
    abort_watch.abort();
    reaper.stop();
    result
}

async fn accept_loop(
    listener: TcpListener,
    cfg: Arc<ProxyConfig>,
    verdict: Verdict,
    stats: Arc<Stats>,
    reaper: reaper::Reaper,
    mut phase: watch::Receiver<Phase>,
) -> io::Result<()> {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        // EMFILE/ENFILE and friends: back off instead of spinning.
                        warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let span = info_span!("conn", %peer);
                let fut = handle(stream, peer, cfg.clone(), verdict.clone(), stats.clone(), reaper.clone(), phase.clone());
                conns.spawn(fut.instrument(span));
            }
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            changed = phase.changed() => {
                if changed.is_err() || *phase.borrow() == Phase::Abort {
                    break;
                }
            }
        }
    }
    // Abort: every connection task watches `phase` and resets at once; wait for them.
    while conns.join_next().await.is_some() {}
    Ok(())
}

async fn handle(
    stream: TcpStream,
    peer: SocketAddr,
    cfg: Arc<ProxyConfig>,
    verdict: Verdict,
    stats: Arc<Stats>,
    reaper: reaper::Reaper,
    phase: watch::Receiver<Phase>,
) {
    let Some(orig) = original_dst(&stream, cfg.target_port) else {
        // Not steered by our rule: a direct connection to the proxy port. Refuse it.
        stats.refused_direct.fetch_add(1, Relaxed);
        debug!(local = ?stream.local_addr().ok(), "refusing a connection that was not steered to us");
        let _ = stream.set_zero_linger();
        return;
    };
    stats.accepted.fetch_add(1, Relaxed);
    if let (true, Verdict::Userspace(sel)) = (cfg.per_request, &verdict) {
        relay::relay(stream, peer, orig, &cfg, sel, &stats, &reaper, phase).await;
        return;
    }
    let selected = match &verdict {
        Verdict::Kernel(flows) => {
            match flows.lookup(peer, orig) {
                Some(f) if f.flags & reset_common::FLOW_SELECTED != 0 => {}
                _ => {
                    stats.unconfirmed.fetch_add(1, Relaxed);
                    debug!(%orig, "redirected flow not in the kernel map (evicted?); resetting it anyway");
                }
            }
            true
        }
        Verdict::Userspace(sel) => sel.select(),
    };
    if !selected {
        stats.forwarded.fetch_add(1, Relaxed);
        reset::forward(stream, orig, &stats).await;
        return;
    }
    if !cfg.verdict_is_kernel {
        stats.selected.fetch_add(1, Relaxed);
    }
    stats.held.fetch_add(1, Relaxed);
    let flows = match &verdict {
        Verdict::Kernel(f) => Some(f),
        Verdict::Userspace(_) => None,
    };
    let hold = reset::Hold {
        cfg: &cfg,
        stats: &stats,
        reaper: &reaper,
        flows,
    };
    reset::hold_and_reset(stream, peer, orig, &hold, phase).await;
    stats.held.fetch_sub(1, Relaxed);
}

/// The destination the caller dialled, if it is the target port. With nftables `tproxy` the
/// accepted socket's local address is that destination; with the NAT `redirect` fallback it is
/// conntrack's record (SO_ORIGINAL_DST / IP6T_SO_ORIGINAL_DST). Anything else is a connection
/// made to PROXY_PORT directly.
fn original_dst(stream: &TcpStream, target_port: u16) -> Option<SocketAddr> {
    let local = stream.local_addr().ok()?;
    if local.port() == target_port {
        return Some(local);
    }
    let sock = socket2::SockRef::from(stream);
    let addr = if local.is_ipv4() {
        sock.original_dst_v4()
    } else {
        sock.original_dst_v6()
    };
    addr.ok()?.as_socket().filter(|o| o.port() == target_port)
}
