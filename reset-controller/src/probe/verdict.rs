//! The HTTP probe's vocabulary and arithmetic: how an attempt ended, the tally of attempts,
//! latency percentiles, the SLO verdict (the [`Verdict`] both probes give), and the observer
//! the probe reports them to as they happen. Pure: no I/O, no clock. The report and the
//! metrics import only this module of the HTTP probe (and `prom::verdict` of the other).

use std::time::Duration;

use serde::Serialize;

/// How one probe attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// An HTTP response with status 200-399 arrived in full.
    Ok,
    /// The connection was reset (ECONNRESET) at connect, send or receive.
    Reset,
    /// Anything else: refused, timed out, unreachable, malformed response, or a
    /// status outside 200-399.
    OtherError,
}

/// A probe's verdict: pass, fail, or error (it could not be evaluated).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// HTTP: error_percent <= max_error_percent, with at least one attempt. Prometheus: every
    /// evaluation held.
    Pass,
    /// HTTP: error_percent > max_error_percent, or no attempt was made. Prometheus: an
    /// evaluation did not hold.
    Fail,
    /// The probe could not be evaluated (Prometheus unreachable, a bad query, no single value);
    /// the HTTP probe never ends so, every attempt has an outcome.
    Error,
}

impl Verdict {
    /// `pass` or `fail`, as in the report.
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Fail => "fail",
            Verdict::Error => "error",
        }
    }
}

/// Who hears of the probe as it runs (the run's metrics). Recording never fails and does
/// no I/O.
pub trait ProbeObserver {
    /// The probe of `url` starts (before its first attempt).
    fn started(&self, url: &str);
    /// One attempt finished.
    fn attempt(&self, url: &str, outcome: Outcome, took: Duration);
    /// The probe's verdict (also for a probe that never ran).
    fn verdict(&self, url: &str, verdict: Verdict);
}

/// Latency percentiles, milliseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Latency {
    /// Median (nearest rank).
    pub p50: Option<f64>,
    /// 99th percentile (nearest rank).
    pub p99: Option<f64>,
}

/// The probe's section of the controller's report (`probe`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProbeReport {
    /// PROBE_URL.
    pub url: String,
    /// Attempts started inside the fault window (each one finished).
    pub attempts: u64,
    /// Full responses with status 200-399.
    pub ok: u64,
    /// Connections reset (ECONNRESET).
    pub resets: u64,
    /// Every other failure.
    pub other_errors: u64,
    /// (resets + other_errors) / attempts, percent; null with no attempt.
    pub error_percent: Option<f64>,
    /// PROBE_MAX_ERROR_PERCENT.
    pub max_error_percent: f64,
    /// pass when error_percent <= max_error_percent.
    pub verdict: Verdict,
    /// Time from starting the connection to the attempt's outcome, over all
    /// attempts (a reset counts with the time it took to arrive).
    pub latency_ms: Latency,
}

/// Running counts of one probe.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Tally {
    /// Attempts recorded.
    pub attempts: u64,
    /// Outcome::Ok.
    pub ok: u64,
    /// Outcome::Reset.
    pub resets: u64,
    /// Outcome::OtherError.
    pub other_errors: u64,
    latencies_ms: Vec<f64>,
}

impl Tally {
    /// Count one finished attempt.
    pub fn record(&mut self, outcome: Outcome, took: Duration) {
        self.attempts += 1;
        match outcome {
            Outcome::Ok => self.ok += 1,
            Outcome::Reset => self.resets += 1,
            Outcome::OtherError => self.other_errors += 1,
        }
        self.latencies_ms.push(took.as_secs_f64() * 1000.0);
    }

    /// The report and verdict against `max_error_percent`.
    pub fn report(&self, url: &str, max_error_percent: f64) -> ProbeReport {
        let errors = self.resets + self.other_errors;
        let error_percent = error_percent(errors, self.attempts);
        ProbeReport {
            url: url.to_string(),
            attempts: self.attempts,
            ok: self.ok,
            resets: self.resets,
            other_errors: self.other_errors,
            error_percent: error_percent.map(round2),
            max_error_percent,
            verdict: verdict(errors, self.attempts, max_error_percent),
            latency_ms: Latency {
                p50: percentile(&self.latencies_ms, 50.0).map(round2),
                p99: percentile(&self.latencies_ms, 99.0).map(round2),
            },
        }
    }
}

/// errors / attempts in percent; `None` when nothing was attempted.
pub fn error_percent(errors: u64, attempts: u64) -> Option<f64> {
    (attempts > 0).then(|| errors as f64 * 100.0 / attempts as f64)
}

/// Pass when errors * 100 <= max * attempts (compared without rounding the
/// percentage first); no attempt at all is a fail: nothing was verified.
pub fn verdict(errors: u64, attempts: u64, max_error_percent: f64) -> Verdict {
    if attempts == 0 {
        return Verdict::Fail;
    }
    let lhs = errors as f64 * 100.0;
    let rhs = max_error_percent * attempts as f64;
    // A relative tolerance absorbs the binary representation of decimal limits
    // (0.1 % of 1000 attempts is exactly 1 error).
    if lhs <= rhs + rhs.abs() * 1e-12 {
        Verdict::Pass
    } else {
        Verdict::Fail
    }
}

/// Nearest-rank percentile of unsorted samples.
pub fn percentile(samples: &[f64], p: f64) -> Option<f64> {
    if samples.is_empty() {
        return None;
    }
    let mut v = samples.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    Some(v[rank.clamp(1, v.len()) - 1])
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdict_is_pass_up_to_and_including_the_limit() {
        assert_eq!(verdict(0, 10, 0.0), Verdict::Pass);
        assert_eq!(verdict(1, 10, 0.0), Verdict::Fail);
        assert_eq!(verdict(5, 100, 5.0), Verdict::Pass);
        assert_eq!(verdict(6, 100, 5.0), Verdict::Fail);
        assert_eq!(verdict(1, 20, 5.0), Verdict::Pass);
        assert_eq!(verdict(2, 20, 5.0), Verdict::Fail);
        assert_eq!(verdict(1, 1000, 0.1), Verdict::Pass);
        assert_eq!(verdict(2, 1000, 0.1), Verdict::Fail);
        assert_eq!(verdict(1, 3, 33.3333), Verdict::Fail);
        assert_eq!(verdict(1, 3, 33.334), Verdict::Pass);
        assert_eq!(verdict(10, 10, 100.0), Verdict::Pass);
        assert_eq!(
            verdict(0, 0, 100.0),
            Verdict::Fail,
            "no attempt verifies nothing"
        );
    }

    #[test]
    fn tally_counts_resets_apart_from_other_errors() {
        let mut t = Tally::default();
        let ms = Duration::from_millis;
        for _ in 0..17 {
            t.record(Outcome::Ok, ms(2));
        }
        t.record(Outcome::Reset, ms(200));
        t.record(Outcome::Reset, ms(201));
        t.record(Outcome::OtherError, ms(5000));
        let r = t.report("http://x/", 5.0);
        assert_eq!((r.attempts, r.ok, r.resets, r.other_errors), (20, 17, 2, 1));
        assert_eq!(r.error_percent, Some(15.0));
        assert_eq!(r.verdict, Verdict::Fail);
        assert_eq!(r.latency_ms.p50, Some(2.0));
        assert_eq!(r.latency_ms.p99, Some(5000.0));
        assert_eq!(t.report("http://x/", 15.0).verdict, Verdict::Pass);
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["verdict"], "fail");
        assert_eq!(json["latency_ms"]["p50"], 2.0);
        let none = Tally::default().report("http://x/", 5.0);
        assert_eq!((none.error_percent, none.verdict), (None, Verdict::Fail));
        assert_eq!(none.latency_ms, Latency::default());
    }

    #[test]
    fn nearest_rank_percentiles() {
        let v: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(50.0));
        assert_eq!(percentile(&v, 99.0), Some(99.0));
        assert_eq!(percentile(&v, 100.0), Some(100.0));
        assert_eq!(percentile(&[7.0], 99.0), Some(7.0));
        assert_eq!(percentile(&[], 50.0), None);
    }
}
