//! The Prometheus probe's vocabulary and arithmetic: why an evaluation could not be made
//! ([`EvalError`], each with the message a user acts on), the tally of evaluations, the
//! verdict, the report section and the observer the probe reports to as it evaluates. Pure:
//! no I/O, no clock. The report and the metrics import only this module of the Prometheus
//! probe.

use std::time::Duration;

use serde::Serialize;

use crate::config::{Comparator, PromMode, PromProbeSettings};
use crate::probe::verdict::Verdict;

/// Why one evaluation gave no value to compare. Each is the verdict `error`, never a skip.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EvalError {
    /// No connection to Prometheus (refused, unresolvable, unroutable, TLS).
    #[error(
        "Prometheus at {url} is unreachable: {reason}: check PROM_PROBE_URL and that Prometheus \
         is up and reachable from the controller"
    )]
    Unreachable {
        /// PROM_PROBE_URL's base.
        url: String,
        /// The transport's reason.
        reason: String,
    },
    /// No answer within PROM_PROBE_TIMEOUT.
    #[error(
        "Prometheus at {url} did not answer within {ms} ms (PROM_PROBE_TIMEOUT): it is \
         overloaded or the query is too heavy"
    )]
    Timeout {
        /// PROM_PROBE_URL's base.
        url: String,
        /// PROM_PROBE_TIMEOUT, ms.
        ms: u64,
    },
    /// An HTTP status without a Prometheus API answer (a wrong path, a proxy in between).
    #[error(
        "Prometheus at {url} answered HTTP {status} ({detail}) instead of a query result: is \
         PROM_PROBE_URL Prometheus' base URL (its API is at <base>/api/v1/query)?"
    )]
    Http {
        /// PROM_PROBE_URL's base.
        url: String,
        /// The HTTP status.
        status: u16,
        /// The start of the body.
        detail: String,
    },
    /// A 2xx answer that is not the API's JSON.
    #[error(
        "the answer from {url} is not a Prometheus query result ({reason}): is PROM_PROBE_URL \
         Prometheus' base URL?"
    )]
    NotPrometheus {
        /// PROM_PROBE_URL's base.
        url: String,
        /// What was wrong with it.
        reason: String,
    },
    /// Prometheus refused the query (`errorType` bad_data: a syntax or type error).
    #[error(
        "Prometheus refused the query {query:?}: {message}: fix PROM_PROBE_QUERY (try it in \
         Prometheus' expression browser)"
    )]
    BadQuery {
        /// PROM_PROBE_QUERY.
        query: String,
        /// Prometheus' `error`.
        message: String,
    },
    /// Prometheus failed otherwise (`errorType` timeout, canceled, execution, unavailable...).
    #[error("Prometheus could not evaluate the query {query:?}: {error_type}: {message}")]
    Failed {
        /// PROM_PROBE_QUERY.
        query: String,
        /// Prometheus' `errorType`.
        error_type: String,
        /// Prometheus' `error`.
        message: String,
    },
    /// An empty instant vector: nothing to compare.
    #[error(
        "the query {query:?} returned an empty vector, so there is no value to compare: check \
         the metric and label names and that its target is scraped (a comparison inside the \
         query, such as `> 0`, also drops every series it does not hold for: put it in \
         PROM_PROBE_COMPARATOR and PROM_PROBE_VALUE instead)"
    )]
    EmptyVector {
        /// PROM_PROBE_QUERY.
        query: String,
    },
    /// More than one series: which one to compare is not the probe's to guess.
    #[error(
        "the query {query:?} returned {count} series ({}), and the probe compares one value: \
         aggregate them (sum(...), max(...)) or select one series with labels",
        series.join(", ")
    )]
    SeveralSeries {
        /// PROM_PROBE_QUERY.
        query: String,
        /// How many series.
        count: usize,
        /// The first few, as `{label="value",...}`.
        series: Vec<String>,
    },
    /// A range vector (`x[5m]`).
    #[error(
        "the query {query:?} returns a range vector, and the probe needs one instant value: \
         apply a function such as increase(...) or rate(...) to the range, or drop the [range]"
    )]
    RangeVector {
        /// PROM_PROBE_QUERY.
        query: String,
    },
    /// A string result.
    #[error("the query {query:?} returns a string, not a number")]
    NotANumber {
        /// PROM_PROBE_QUERY.
        query: String,
    },
    /// The value is NaN (0/0, no samples in a ratio).
    #[error(
        "the query {query:?} evaluated to NaN (e.g. 0/0), which cannot be compared: make the \
         query give a number when it has nothing to divide"
    )]
    NaN {
        /// PROM_PROBE_QUERY.
        query: String,
    },
    /// The probe never evaluated (the window never opened, or the run was aborted first).
    #[error("not evaluated: {why}")]
    NotEvaluated {
        /// Why.
        why: String,
    },
}

impl EvalError {
    /// A short name for the report and the metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            EvalError::Unreachable { .. } => "unreachable",
            EvalError::Timeout { .. } => "timeout",
            EvalError::Http { .. } => "http_status",
            EvalError::NotPrometheus { .. } => "not_prometheus",
            EvalError::BadQuery { .. } => "bad_query",
            EvalError::Failed { .. } => "prometheus_error",
            EvalError::EmptyVector { .. } => "empty_vector",
            EvalError::SeveralSeries { .. } => "several_series",
            EvalError::RangeVector { .. } => "range_vector",
            EvalError::NotANumber { .. } => "not_a_number",
            EvalError::NaN { .. } => "nan",
            EvalError::NotEvaluated { .. } => "not_evaluated",
        }
    }
}

/// Who hears of the Prometheus probe as it runs (the run's metrics). Recording never fails
/// and does no I/O.
pub trait PromObserver {
    /// The probe of `query` starts.
    fn prom_started(&self, query: &str);
    /// One evaluation ended: its value and whether it held, or why there is none.
    fn prom_evaluated(&self, query: &str, outcome: &Result<f64, EvalError>, held: bool);
    /// The probe's verdict.
    fn prom_verdict(&self, query: &str, verdict: Verdict);
}

/// A value and when it was seen, ms after the probe started.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sample {
    /// The query's value.
    pub value: f64,
    /// Milliseconds after the probe started (the window opened).
    pub at_ms: u64,
}

/// The first evaluation that could not be made.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ErrorSeen {
    /// [`EvalError::kind`].
    pub kind: &'static str,
    /// The message, with what to do.
    pub message: String,
    /// Milliseconds after the probe started; null when it never evaluated.
    pub at_ms: Option<u64>,
}

/// The Prometheus probe's section of the controller's report (`prom_probe`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PromProbeReport {
    /// Prometheus' base URL.
    pub url: String,
    /// PROM_PROBE_QUERY.
    pub query: String,
    /// PROM_PROBE_COMPARATOR.
    pub comparator: Comparator,
    /// PROM_PROBE_VALUE.
    pub value: f64,
    /// PROM_PROBE_MODE.
    pub mode: PromMode,
    /// Evaluations made (each held, did not hold, or failed).
    pub evaluations: u64,
    /// Evaluations whose value held.
    pub held: u64,
    /// Evaluations whose value did not hold.
    pub not_held: u64,
    /// Evaluations that gave no value.
    pub errors: u64,
    /// The last value seen.
    pub last_value: Option<f64>,
    /// The first value that did not hold.
    pub first_not_held: Option<Sample>,
    /// The first evaluation that gave no value, and why.
    pub error: Option<ErrorSeen>,
    /// fail if a value did not hold, else error if an evaluation gave no value (or none was
    /// made), else pass.
    pub verdict: Verdict,
}

/// Running counts of one Prometheus probe.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PromTally {
    held: u64,
    not_held: u64,
    errors: u64,
    last_value: Option<f64>,
    first_not_held: Option<Sample>,
    first_error: Option<ErrorSeen>,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl PromTally {
    /// Count one evaluation made `at` after the start; returns whether its value held.
    pub fn record(
        &mut self,
        at: Duration,
        outcome: &Result<f64, EvalError>,
        comparator: Comparator,
        threshold: f64,
    ) -> bool {
        match outcome {
            Ok(v) => {
                self.last_value = Some(*v);
                let held = comparator.holds(*v, threshold);
                if held {
                    self.held += 1;
                } else {
                    self.not_held += 1;
                    self.first_not_held.get_or_insert(Sample {
                        value: *v,
                        at_ms: millis(at),
                    });
                }
                held
            }
            Err(e) => {
                self.errors += 1;
                self.first_error.get_or_insert_with(|| ErrorSeen {
                    kind: e.kind(),
                    message: e.to_string(),
                    at_ms: Some(millis(at)),
                });
                false
            }
        }
    }

    /// Evaluations made.
    pub fn evaluations(&self) -> u64 {
        self.held + self.not_held + self.errors
    }

    /// fail when a value did not hold, else error when an evaluation gave no value or none was
    /// made, else pass.
    pub fn verdict(&self) -> Verdict {
        if self.not_held > 0 {
            Verdict::Fail
        } else if self.errors > 0 || self.held == 0 {
            Verdict::Error
        } else {
            Verdict::Pass
        }
    }

    /// The report; `unevaluated` says why, when no evaluation was made.
    pub fn report(&self, s: &PromProbeSettings, unevaluated: &str) -> PromProbeReport {
        let error = self.first_error.clone().or_else(|| {
            (self.evaluations() == 0).then(|| {
                let e = EvalError::NotEvaluated {
                    why: unevaluated.to_string(),
                };
                ErrorSeen {
                    kind: e.kind(),
                    message: e.to_string(),
                    at_ms: None,
                }
            })
        });
        PromProbeReport {
            url: s.base.clone(),
            query: s.query.clone(),
            comparator: s.comparator,
            value: s.value,
            mode: s.mode,
            evaluations: self.evaluations(),
            held: self.held,
            not_held: self.not_held,
            errors: self.errors,
            last_value: self.last_value,
            first_not_held: self.first_not_held.clone(),
            error,
            verdict: self.verdict(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{PromProbeInputs, PromProbeSettings};

    fn settings(comparator: &str) -> PromProbeSettings {
        PromProbeSettings::resolve(&PromProbeInputs {
            url: Some("http://127.0.0.1:9090".into()),
            query: Some("sum(x)".into()),
            comparator: Some(comparator.into()),
            value: Some(0.0),
            mode: PromMode::Continuous,
            interval_ms: 1000,
            timeout_ms: 1000,
        })
        .unwrap()
    }

    fn run(comparator: &str, outcomes: &[Result<f64, EvalError>]) -> PromProbeReport {
        let s = settings(comparator);
        let mut t = PromTally::default();
        for (i, o) in outcomes.iter().enumerate() {
            t.record(
                Duration::from_millis(i as u64 * 100),
                o,
                s.comparator,
                s.value,
            );
        }
        t.report(&s, "the window never opened")
    }

    fn empty() -> EvalError {
        EvalError::EmptyVector {
            query: "sum(x)".into(),
        }
    }

    #[test]
    fn every_evaluation_must_hold() {
        let r = run(">", &[Ok(1.0), Ok(3.0)]);
        assert_eq!((r.evaluations, r.held, r.verdict), (2, 2, Verdict::Pass));
        assert_eq!((r.last_value, r.error.as_ref()), (Some(3.0), None));

        let r = run(">", &[Ok(1.0), Ok(0.0), Ok(2.0), Ok(-1.0)]);
        assert_eq!((r.held, r.not_held, r.verdict), (2, 2, Verdict::Fail));
        assert_eq!(
            r.first_not_held,
            Some(Sample {
                value: 0.0,
                at_ms: 100
            })
        );
    }

    #[test]
    fn a_failed_evaluation_is_an_error_unless_one_did_not_hold() {
        let r = run(">", &[Ok(1.0), Err(empty()), Ok(1.0)]);
        assert_eq!((r.errors, r.verdict), (1, Verdict::Error));
        let e = r.error.unwrap();
        assert_eq!((e.kind, e.at_ms), ("empty_vector", Some(100)));
        assert!(e.message.contains("empty vector"), "{}", e.message);

        let r = run("==", &[Err(empty()), Ok(1.0)]);
        assert_eq!(
            r.verdict,
            Verdict::Fail,
            "a value that did not hold is a finding"
        );
        assert_eq!(
            r.error.unwrap().kind,
            "empty_vector",
            "and the error is kept"
        );
    }

    #[test]
    fn no_evaluation_is_an_error_that_says_why() {
        let r = run(">", &[]);
        assert_eq!((r.evaluations, r.verdict), (0, Verdict::Error));
        let e = r.error.unwrap();
        assert_eq!((e.kind, e.at_ms), ("not_evaluated", None));
        assert_eq!(e.message, "not evaluated: the window never opened");
        let json = serde_json::to_value(run(">=", &[Ok(2.0)])).unwrap();
        assert_eq!(json["comparator"], ">=");
        assert_eq!(json["mode"], "continuous");
        assert_eq!(json["verdict"], "pass");
    }

    #[test]
    fn several_series_are_named() {
        let e = EvalError::SeveralSeries {
            query: "up".into(),
            count: 3,
            series: vec!["{job=\"a\"}".into(), "{job=\"b\"}".into()],
        };
        let m = e.to_string();
        assert!(
            m.contains("returned 3 series ({job=\"a\"}, {job=\"b\"})"),
            "{m}"
        );
        assert!(m.contains("sum(...)"), "{m}");
    }
}
