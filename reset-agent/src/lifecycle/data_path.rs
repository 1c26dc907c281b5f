//! The real data path of a window: the proxy (every connection in userspace mode, selected ones
//! in kernel mode's connection unit) and, in kernel mode's request unit, the requests thread
//! that resets pending requests from the kernel's events.
use std::sync::{Arc, atomic::Ordering::Relaxed};

use tokio::{sync::watch, task::JoinHandle};

use super::parts::{BoxFuture, DataPath, DataStats};
use crate::{
    proxy::{Phase, Stats},
    requests::{RequestStats, Requests},
};

pub struct RealDataPath {
    pub proxy: JoinHandle<std::io::Result<()>>,
    pub phase: watch::Sender<Phase>,
    pub stats: Arc<Stats>,
    pub requests: Option<Requests>,
}

fn snapshot(stats: &Stats, req: Option<&RequestStats>, with_samples: bool) -> DataStats {
    let mut s = DataStats {
        accepted: stats.accepted.load(Relaxed),
        selected: stats.selected.load(Relaxed),
        requests_seen: stats.requests_seen.load(Relaxed),
        flows_opaque: stats.flows_opaque.load(Relaxed),
        resets_issued: stats.resets_issued.load(Relaxed),
        held: stats.held.load(Relaxed),
        unconfirmed: stats.unconfirmed.load(Relaxed),
        refused_direct: stats.refused_direct.load(Relaxed),
        upstream_failures: stats.upstream_failures.load(Relaxed),
        callers_gone: stats.caller_gone.load(Relaxed),
        ..DataStats::default()
    };
    if let Some(r) = req {
        s.resets_issued += r.resets_issued.load(Relaxed);
        s.held += r.pending.load(Relaxed);
        s.closed_first = r.closed_first.load(Relaxed);
        s.reset_failures = r.reset_failures.load(Relaxed);
        if with_samples {
            s.request_delays_ns = r
                .delays_ns
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
        }
    }
    if with_samples {
        s.proxy_delays_us = stats
            .delays_us
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
    }
    s
}

impl DataPath for RealDataPath {
    fn held(&self) -> u64 {
        self.stats.held.load(Relaxed)
            + self
                .requests
                .as_ref()
                .map_or(0, |r| r.stats.pending.load(Relaxed))
    }

    fn stats(&self) -> DataStats {
        snapshot(
            &self.stats,
            self.requests.as_ref().map(|r| &*r.stats),
            false,
        )
    }

    fn abort(&self) {
        let _ = self.phase.send(Phase::Abort);
        if let Some(r) = &self.requests {
            r.abort();
        }
    }

    fn finish(self: Box<Self>) -> BoxFuture<(DataStats, Option<String>)> {
        Box::pin(async move {
            let RealDataPath {
                proxy,
                phase,
                stats,
                requests,
            } = *self;
            // Nothing is held any more (drained or aborted): this ends the accept loops.
            let _ = phase.send(Phase::Abort);
            let mut error =
                match tokio::time::timeout(std::time::Duration::from_secs(5), proxy).await {
                    Ok(Ok(Ok(()))) => None,
                    Ok(Ok(Err(e))) => Some(format!("proxy listener failed: {e}")),
                    Ok(Err(e)) => Some(format!("proxy task failed: {e}")),
                    Err(_) => Some("proxy did not stop within 5 s".to_owned()),
                };
            let req_stats = match requests {
                Some(r) => {
                    let st = r.stats.clone();
                    let joined = tokio::task::spawn_blocking(move || {
                        r.finish(std::time::Duration::from_secs(5))
                    })
                    .await;
                    if let Err(e) = joined {
                        error.get_or_insert(format!("requests thread failed: {e}"));
                    }
                    Some(st)
                }
                None => None,
            };
            (snapshot(&stats, req_stats.as_deref(), true), error)
        })
    }
}
