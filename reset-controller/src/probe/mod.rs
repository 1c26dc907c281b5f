//! The probes: the HTTP probe here, the Prometheus probe in [`prom`].
//!
//! The HTTP probe with an SLO verdict (`--probe-url`): during the fault window the
//! controller sends a plain HTTP/1.1 GET on a new connection every PROBE_INTERVAL,
//! each bounded by PROBE_TIMEOUT, and counts responses, resets (ECONNRESET) and
//! other errors. The verdict passes when the error percentage stays within
//! PROBE_MAX_ERROR_PERCENT.
//!
//! Attempts start on a fixed schedule and may overlap (a held connection does not
//! delay the next attempt), so the attempt count is window / interval whatever the
//! fault does to latency. Counts go to a [`ProbeObserver`] as they happen (the run's
//! metrics implement it); the probe knows nothing of who listens.

pub mod attempt;
pub mod prom;
pub mod verdict;

use std::future::Future;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::MissedTickBehavior;

use crate::config::ProbeSettings;
pub use verdict::{Outcome, ProbeObserver, ProbeReport, Tally, Verdict};

/// The report of a probe that never ran (the window never opened).
pub fn not_run(settings: &ProbeSettings, observer: &impl ProbeObserver) -> ProbeReport {
    let r = Tally::default().report(&settings.target.url, settings.max_error_percent);
    observer.verdict(&settings.target.url, r.verdict);
    r
}

/// Probe until `stop` resolves, then let the attempts in flight finish (each is
/// bounded by the timeout) and count them; `cancel` (abort) ends at once and drops
/// the attempts in flight uncounted. Returns the report with its verdict; counts
/// go to `observer` as each attempt ends.
pub async fn run(
    settings: &ProbeSettings,
    stop: impl Future<Output = ()>,
    cancel: impl Future<Output = ()>,
    observer: &impl ProbeObserver,
) -> ProbeReport {
    let url = settings.target.url.as_str();
    observer.started(url);
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
                    observer.attempt(url, outcome, took);
                }
            }
            _ = tick.tick(), if !stopping => {
                let (target, timeout) = (settings.target.clone(), settings.timeout);
                in_flight.spawn(async move { attempt::attempt(&target, timeout).await });
            }
        }
    }
    let report = tally.report(url, settings.max_error_percent);
    observer.verdict(url, report.verdict);
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
    use std::sync::Mutex;

    use super::*;
    use crate::config::ProbeTarget;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    use tokio::net::TcpListener;

    /// What the probe told its observer: (url, attempts, outcomes, verdict).
    #[derive(Default)]
    struct Recorder(Mutex<(String, u64, Vec<Outcome>, Option<Verdict>)>);

    impl ProbeObserver for Recorder {
        fn started(&self, url: &str) {
            let mut r = self.0.lock().unwrap();
            *r = (url.to_string(), 0, Vec::new(), None);
        }
        fn attempt(&self, url: &str, outcome: Outcome, _took: Duration) {
            let mut r = self.0.lock().unwrap();
            assert_eq!(r.0, url, "attempts come after started()");
            r.1 += 1;
            r.2.push(outcome);
        }
        fn verdict(&self, _url: &str, verdict: Verdict) {
            self.0.lock().unwrap().3 = Some(verdict);
        }
    }

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
        let m = Recorder::default();
        let never = std::future::pending::<()>;
        let stop = tokio::time::sleep(Duration::from_millis(390));
        let r = run(&settings, stop, never(), &m).await;
        assert!(r.attempts >= 10, "{r:?}");
        assert_eq!(r.ok + r.resets + r.other_errors, r.attempts, "{r:?}");
        assert_eq!(r.other_errors, 0, "{r:?}");
        assert!(r.ok.abs_diff(r.resets) <= 1, "{r:?}");
        assert_eq!(r.verdict, Verdict::Fail);
        {
            let seen = m.0.lock().unwrap();
            assert_eq!(
                (seen.0.as_str(), seen.1, seen.3),
                (
                    settings.target.url.as_str(),
                    r.attempts,
                    Some(Verdict::Fail)
                ),
                "every attempt and the verdict reached the observer"
            );
            let resets = seen.2.iter().filter(|o| **o == Outcome::Reset).count();
            assert_eq!(resets as u64, r.resets);
        }

        // A fresh server, so its first connection is answered whatever the parity of the
        // attempts above (sharing one made this flaky on a loaded machine).
        let lenient = ProbeSettings {
            target: half_resetting_server().await,
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
        assert_eq!(m.0.lock().unwrap().3, Some(Verdict::Fail));
    }
}
