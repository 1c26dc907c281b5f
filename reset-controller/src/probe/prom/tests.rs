//! The probe's schedule and verdict against an in-process stand-in for Prometheus' query API
//! (the real Prometheus is in tests/tests/prom_probe.rs).

use std::sync::Mutex;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::mpsc::UnboundedReceiver;

use super::*;
use crate::probe::prom::fake::{self, scalar, server};
use crate::probe::verdict::Verdict;

/// What the probe told its observer: (evaluations, values held, verdict).
#[derive(Default)]
struct Recorder(Mutex<(u64, Vec<bool>, Option<Verdict>)>);

impl PromObserver for Recorder {
    fn prom_started(&self, _query: &str) {
        *self.0.lock().unwrap() = (0, Vec::new(), None);
    }
    fn prom_evaluated(&self, _query: &str, _outcome: &Result<f64, EvalError>, held: bool) {
        let mut r = self.0.lock().unwrap();
        r.0 += 1;
        r.1.push(held);
    }
    fn prom_verdict(&self, _query: &str, verdict: Verdict) {
        self.0.lock().unwrap().2 = Some(verdict);
    }
}

/// A query API that answers its n-th request with the n-th of `values` (the last one after
/// that) as a scalar; returns its base URL and the request heads it saw.
async fn prometheus(values: &'static [&'static str]) -> (String, UnboundedReceiver<String>) {
    server(|n| scalar(values[n.min(values.len() - 1)]), Duration::ZERO).await
}

fn settings(base: &str, mode: PromMode) -> PromProbeSettings {
    fake::settings(base, "sum(retries)", mode, 20, 2000)
}

fn never() -> std::future::Pending<()> {
    std::future::pending()
}

/// A window that closes once the observer heard `n` evaluations (at most 20 s): the test does
/// not depend on how fast a loaded machine schedules the probe.
async fn after_evaluations(obs: &Recorder, n: u64) {
    let t0 = std::time::Instant::now();
    while obs.0.lock().unwrap().0 < n && t0.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn continuous_holds_every_evaluation_to_the_comparator() {
    let (base, _) = prometheus(&["1", "2", "5"]).await;
    let obs = Recorder::default();
    let stop = after_evaluations(&obs, 4);
    let r = run(&settings(&base, PromMode::Continuous), stop, never(), &obs).await;
    assert!(r.evaluations >= 4, "every 20 ms until 4 were heard: {r:?}");
    assert_eq!((r.held, r.verdict), (r.evaluations, Verdict::Pass), "{r:?}");
    assert_eq!(r.last_value, Some(5.0));
    let seen = obs.0.lock().unwrap().clone();
    assert_eq!(
        (seen.0, seen.2),
        (r.evaluations, Some(Verdict::Pass)),
        "the observer heard every evaluation and the verdict"
    );

    // One value that does not hold, mid-window, fails the probe.
    let (base, _) = prometheus(&["1", "1", "0", "3"]).await;
    let stop = after_evaluations(&obs, 4);
    let r = run(&settings(&base, PromMode::Continuous), stop, never(), &obs).await;
    assert_eq!((r.not_held, r.verdict), (1, Verdict::Fail), "{r:?}");
    assert_eq!(r.first_not_held.as_ref().map(|s| s.value), Some(0.0));
}

#[tokio::test]
async fn end_evaluates_once_after_the_window() {
    let (base, mut asked) = prometheus(&["0", "4"]).await;
    let obs = Recorder::default();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let probe = settings(&base, PromMode::End);
    let task = async { run(&probe, async { rx.await.unwrap_or(()) }, never(), &obs).await };
    let closer = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            asked.try_recv().is_err(),
            "nothing asked while the window is open"
        );
        tx.send(()).expect("the probe waits for the window");
    };
    let (r, ()) = tokio::join!(task, closer);
    assert_eq!((r.evaluations, r.last_value), (1, Some(0.0)), "{r:?}");
    assert_eq!(r.verdict, Verdict::Fail, "0 > 0 does not hold");
}

#[tokio::test]
async fn abort_and_a_window_that_never_opened_are_errors_that_say_so() {
    let (base, mut asked) = prometheus(&["1"]).await;
    let obs = Recorder::default();
    let s = settings(&base, PromMode::End);
    let r = run(&s, never(), async {}, &obs).await;
    assert_eq!((r.evaluations, r.verdict), (0, Verdict::Error));
    let e = r.error.unwrap();
    assert!(e.message.contains("aborted"), "{}", e.message);
    assert!(asked.try_recv().is_err(), "nothing asked");

    let r = not_run(&s, &obs);
    assert_eq!(r.verdict, Verdict::Error);
    assert!(r.error.unwrap().message.contains("never opened"));
    assert_eq!(obs.0.lock().unwrap().2, Some(Verdict::Error));
}

#[tokio::test]
async fn an_unreachable_prometheus_is_an_error_at_every_evaluation() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://127.0.0.1:{}", l.local_addr().unwrap().port());
    drop(l);
    let obs = Recorder::default();
    let stop = after_evaluations(&obs, 2);
    let r = run(&settings(&base, PromMode::Continuous), stop, never(), &obs).await;
    assert!(r.errors >= 2 && r.errors == r.evaluations, "{r:?}");
    assert_eq!(r.verdict, Verdict::Error);
    let e = r.error.unwrap();
    assert_eq!((e.kind, e.at_ms.is_some()), ("unreachable", true));
    assert!(e.message.contains(&base), "{}", e.message);
}
