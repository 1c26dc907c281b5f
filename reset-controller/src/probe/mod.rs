//! The HTTP probe with an SLO verdict (`--probe-url`): during the fault window the
//! controller sends a plain HTTP/1.1 GET on a new connection every PROBE_INTERVAL,
//! each bounded by PROBE_TIMEOUT, and counts responses, resets (ECONNRESET) and
//! other errors. The verdict passes when the error percentage stays within
//! PROBE_MAX_ERROR_PERCENT.
//!
//! Attempts start on a fixed schedule and may overlap (a held connection does not
//! delay the next attempt), so the attempt count is window / interval whatever the
//! fault does to latency.

pub mod attempt;
pub mod target;
pub mod verdict;

use std::future::Future;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;

use crate::metrics::Metrics;
pub use target::{ProbeTarget, TargetError};
pub use verdict::{Outcome, ProbeReport, Tally, Verdict};

/// The probe as configured.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeSettings {
    /// PROBE_URL.
    pub target: ProbeTarget,
    /// PROBE_INTERVAL: time between attempt starts.
    pub interval: Duration,
    /// PROBE_TIMEOUT: bound of one attempt.
    pub timeout: Duration,
    /// PROBE_MAX_ERROR_PERCENT.
    pub max_error_percent: f64,
}

/// The report of a probe that never ran (the window never opened).
pub fn not_run(settings: &ProbeSettings, metrics: &Metrics) -> ProbeReport {
    let r = Tally::default().report(&settings.target.url, settings.max_error_percent);
    metrics.probe_verdict(&settings.target.url, r.verdict);
    r
}

/// Probe until `stop` resolves, then let the attempts in flight finish (each is
/// bounded by the timeout) and count them; `cancel` (abort) ends at once and drops
/// the attempts in flight uncounted. Returns the report with its verdict; counts
/// go to `metrics` as each attempt ends.
pub async fn run(
    settings: &ProbeSettings,
    stop: impl Future<Output = ()>,
    cancel: impl Future<Output = ()>,
    metrics: &Metrics,
) -> ProbeReport {
    let url = settings.target.url.as_str();
    metrics.probe_started(url);
    let mut tally = Tally::default();
    let mut tick = tokio::time::interval(settings.interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut in_flight: JoinSet<(Outcome, Duration)> = JoinSet::new();
    let mut stopping = false;
    tokio::pin!(stop, cancel);
    loop {
        if stopping && in_flight.is_empty() {
            break;
        }
        tokio::select! {
            biased;
            () = &mut cancel => {
                in_flight.abort_all();
                break;
            }
            () = &mut stop, if !stopping => stopping = true,
            Some(done) = in_flight.join_next(), if !in_flight.is_empty() => {
                if let Ok((outcome, took)) = done {
                    tally.record(outcome, took);
                    metrics.probe_attempt(url, outcome, took);
                }
            }
            _ = tick.tick(), if !stopping => {
                let (target, timeout) = (settings.target.clone(), settings.timeout);
                in_flight.spawn(async move { attempt::attempt(&target, timeout).await });
            }
        }
    }
    let report = tally.report(url, settings.max_error_percent);
    metrics.probe_verdict(url, report.verdict);
    tracing::info!(
        url,
        attempts = report.attempts,
        ok = report.ok,
        resets = report.resets,
        other_errors = report.other_errors,
        verdict = ?report.verdict,
        "probe finished"
    );
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpListener;

    /// Every second connection is reset, the others get a 200.
    async fn half_resetting_server() -> ProbeTarget {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            let mut n = 0u32;
            while let Ok((mut s, _)) = l.accept().await {
                n += 1;
                let mut b = [0u8; 2048];
                let _ = s.read(&mut b).await;
                if n.is_multiple_of(2) {
                    s.set_zero_linger().unwrap();
                } else {
                    let _ = s
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                        .await;
                }
            }
        });
        ProbeTarget::parse(&format!("http://127.0.0.1:{port}/")).unwrap()
    }

    #[tokio::test]
    async fn probes_until_stopped_and_judges() {
        let settings = ProbeSettings {
            target: half_resetting_server().await,
            interval: Duration::from_millis(20),
            timeout: Duration::from_secs(2),
            max_error_percent: 5.0,
        };
        let m = Metrics::new();
        let never = std::future::pending::<()>;
        let stop = tokio::time::sleep(Duration::from_millis(390));
        let r = run(&settings, stop, never(), &m).await;
        assert!(r.attempts >= 10, "{r:?}");
        assert_eq!(r.ok + r.resets + r.other_errors, r.attempts, "{r:?}");
        assert_eq!(r.other_errors, 0, "{r:?}");
        assert!(r.ok.abs_diff(r.resets) <= 1, "{r:?}");
        assert_eq!(r.verdict, Verdict::Fail);
        assert!(m.render().contains(&format!(
            "reset_peer_probe_attempts_total{{url=\"{}\"}} {}",
            settings.target.url, r.attempts
        )));

        let lenient = ProbeSettings {
            max_error_percent: 60.0,
            ..settings.clone()
        };
        let soon = tokio::time::sleep(Duration::from_millis(5));
        let r = run(&lenient, soon, never(), &m).await;
        assert_eq!(r.attempts, 1, "the first attempt starts at once: {r:?}");
        assert_eq!(r.verdict, Verdict::Pass);

        let r = run(&settings, never(), async {}, &m).await;
        assert_eq!((r.attempts, r.verdict), (0, Verdict::Fail));
        assert_eq!(not_run(&settings, &m).verdict, Verdict::Fail);
    }
}
