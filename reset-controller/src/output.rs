//! The final table on stdout: one row per VM, then a line per probe.

use crate::config::PromMode;
use crate::probe::prom::verdict::PromProbeReport;
use crate::probe::verdict::{ProbeReport, Verdict};
use crate::report::{RunReport, VmReport};

fn num(v: Option<u64>) -> String {
    v.map_or_else(|| "-".into(), |n| n.to_string())
}

fn row(v: &VmReport) -> [String; 9] {
    let a = v.agent();
    let a = a.as_ref();
    let (seen, selected) = a.map_or((None, None), |a| a.seen_selected());
    [
        v.vm.clone(),
        v.status.to_string(),
        a.map_or_else(
            || "-".into(),
            |a| {
                if a.request_unit() {
                    "requests"
                } else {
                    "connections"
                }
                .into()
            },
        ),
        num(seen),
        num(selected),
        num(a.and_then(|a| a.resets_observed)),
        a.and_then(|a| a.achieved_percent())
            .map_or_else(|| "-".into(), |p| format!("{p:.1}%")),
        a.and_then(|a| a.reset_delay_ms.p99)
            .map_or_else(|| "-".into(), |p| format!("{p:.1} ms")),
        match (a.and_then(|a| a.cleanup.verified), v.guest_files_removed) {
            (Some(true), true) => "yes".into(),
            (Some(false), _) => "NO".into(),
            (None, true) if a.is_none() => "files removed".into(),
            (_, false) if v.guest_dir.is_some() => "NO (guest files left)".into(),
            _ => "-".into(),
        },
    ]
}

fn ms(v: Option<f64>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.1} ms"))
}

/// `probe http://...: FAIL (20 attempts: 0 ok, 20 resets, 0 other errors; 100.0% errors > max 5%; latency p50 .. p99 ..)`.
fn probe_line(p: &ProbeReport) -> String {
    let (word, cmp) = match p.verdict {
        Verdict::Pass => ("PASS", "<="),
        Verdict::Fail => ("FAIL", ">"),
        Verdict::Error => ("ERROR", "?"),
    };
    let errors = p.error_percent.map_or_else(
        || "no attempt made".to_string(),
        |e| format!("{e:.1}% errors {cmp} max {}%", p.max_error_percent),
    );
    format!(
        "probe {}: {word} ({} attempts: {} ok, {} resets, {} other errors; {errors}; latency p50 {} p99 {})\n",
        p.url,
        p.attempts,
        p.ok,
        p.resets,
        p.other_errors,
        ms(p.latency_ms.p50),
        ms(p.latency_ms.p99),
    )
}

fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// `prometheus probe Q > 0 during the window (URL): FAIL (8 evaluations: 5 held, 3 did not, 0
/// errors; last value 0; first not held: 0 at +2.1 s)`; an error adds its message.
fn prom_line(p: &PromProbeReport) -> String {
    let word = match p.verdict {
        Verdict::Pass => "PASS",
        Verdict::Fail => "FAIL",
        Verdict::Error => "ERROR",
    };
    let when = match p.mode {
        PromMode::Continuous => "during the window",
        PromMode::End => "at the end of the window",
    };
    let mut detail = format!(
        "{} evaluation{}: {} held, {} did not, {} error{}",
        p.evaluations,
        plural(p.evaluations),
        p.held,
        p.not_held,
        p.errors,
        plural(p.errors)
    );
    if let Some(v) = p.last_value {
        detail.push_str(&format!("; last value {v}"));
    }
    if let Some(s) = &p.first_not_held {
        detail.push_str(&format!(
            "; first not held: {} at +{:.1} s",
            s.value,
            s.at_ms as f64 / 1000.0
        ));
    }
    if let Some(e) = &p.error {
        detail.push_str(&format!("; {}", e.message));
    }
    format!(
        "prometheus probe {} {} {} {when} ({}): {word} ({detail})\n",
        p.query, p.comparator, p.value, p.url
    )
}

/// Render the table, one line per failed VM with its error, then the probes' lines.
pub fn table(r: &RunReport) -> String {
    const HEAD: [&str; 9] = [
        "VM",
        "STATUS",
        "UNIT",
        "SEEN",
        "SELECTED",
        "RESETS OBSERVED",
        "ACHIEVED",
        "RESET P99",
        "CLEANUP VERIFIED",
    ];
    let rows: Vec<[String; 9]> = r.vms.iter().map(row).collect();
    let mut w = HEAD.map(str::len);
    for row in &rows {
        for (i, c) in row.iter().enumerate() {
            w[i] = w[i].max(c.len());
        }
    }
    let fmt = |cells: &[String]| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<width$}", width = w[i]))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_string()
    };
    let mut out = fmt(&HEAD.map(String::from));
    out.push('\n');
    for row in &rows {
        out.push_str(&fmt(row));
        out.push('\n');
    }
    for v in &r.vms {
        if let Some(e) = &v.error {
            out.push_str(&format!("{}: {e}\n", v.vm));
        }
    }
    if let Some(p) = &r.probe {
        out.push_str(&probe_line(p));
    }
    if let Some(p) = &r.prom_probe {
        out.push_str(&prom_line(p));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{FaultSettings, RawSettings, Sequence};
    use crate::probe::verdict::Latency;
    use crate::report::VmStatus;

    #[test]
    fn renders_rows_and_errors() {
        let ok = VmReport {
            vm: "web-01".into(),
            status: VmStatus::Ok,
            guest_dir: Some("/tmp/x".into()),
            guest_files_removed: true,
            agent_report: Some(serde_json::json!({
                "unit": "request", "flows_seen": 20, "flows_selected": 0,
                "requests_seen": 200, "requests_selected": 100, "resets_observed": 100,
                "reset_delay_ms": {"p99": 2001.25}, "cleanup": {"verified": true}
            })),
            ..VmReport::default()
        };
        let bad = VmReport {
            vm: "db-01".into(),
            status: VmStatus::Failed,
            error: Some(
                "guest login failed for user root on VM db-01: check VM_USER_NAME/VM_PASSWORD"
                    .into(),
            ),
            ..VmReport::default()
        };
        let r = RunReport {
            run_id: "20261123t224512-4f2a".into(),
            started_at: String::new(),
            ended_at: String::new(),
            sequence: Sequence::Parallel,
            aborted: false,
            settings: FaultSettings::resolve(&RawSettings {
                toxicity: Some("50".into()),
                ..RawSettings::default()
            })
            .unwrap(),
            ramp_time_s: 0,
            chaos_interval_s: 10,
            vcenter: None,
            prom_probe: None,
            vms: vec![ok, bad],
            probe: Some(ProbeReport {
                url: "http://198.18.0.2/health".into(),
                attempts: 20,
                ok: 0,
                resets: 19,
                other_errors: 1,
                error_percent: Some(100.0),
                max_error_percent: 5.0,
                verdict: Verdict::Fail,
                latency_ms: Latency {
                    p50: Some(2001.4),
                    p99: Some(5000.0),
                },
            }),
        };
        let t = table(&r);
        let lines: Vec<&str> = t.lines().collect();
        assert!(
            lines[0].starts_with("VM      STATUS  UNIT      SEEN  SELECTED"),
            "{t}"
        );
        assert!(
            lines[1].starts_with("web-01  ok      requests  200   100")
                && lines[1].contains("50.0%")
                && lines[1].contains("2001.2 ms")
                && lines[1].ends_with("yes"),
            "{t}"
        );
        assert!(lines[2].starts_with("db-01   failed"), "{t}");
        assert!(lines[3].contains("check VM_USER_NAME/VM_PASSWORD"));
        assert_eq!(
            lines[4],
            "probe http://198.18.0.2/health: FAIL (20 attempts: 0 ok, 19 resets, 1 other errors; 100.0% errors > max 5%; latency p50 2001.4 ms p99 5000.0 ms)"
        );
        assert_eq!(lines.len(), 5);
    }

    #[test]
    fn prometheus_lines_say_what_was_held_and_why_not() {
        use crate::config::{PromProbeInputs, PromProbeSettings};
        use crate::probe::prom::verdict::{EvalError, PromTally};
        use std::time::Duration;
        let s = PromProbeSettings::resolve(&PromProbeInputs {
            url: Some("http://198.18.0.1:9090/".into()),
            query: Some("sum(increase(retries_total[30s]))".into()),
            comparator: Some("gt".into()),
            value: Some(0.0),
            mode: PromMode::Continuous,
            interval_ms: 1000,
            timeout_ms: 1000,
        })
        .unwrap();
        let mut t = PromTally::default();
        for (ms, v) in [(0, 2.0), (1000, 0.0), (2000, 5.0)] {
            t.record(Duration::from_millis(ms), &Ok(v), s.comparator, s.value);
        }
        assert_eq!(
            prom_line(&t.report(&s, "")),
            "prometheus probe sum(increase(retries_total[30s])) > 0 during the window \
             (http://198.18.0.1:9090): FAIL (3 evaluations: 2 held, 1 did not, 0 errors; last \
             value 5; first not held: 0 at +1.0 s)\n"
        );
        let mut t = PromTally::default();
        let gone = EvalError::Unreachable {
            url: s.base.clone(),
            reason: "connection refused".into(),
        };
        t.record(Duration::ZERO, &Err(gone), s.comparator, s.value);
        let line = prom_line(&t.report(&s, ""));
        assert!(
            line.contains(": ERROR (1 evaluation: 0 held, 0 did not, 1 error; Prometheus at http://198.18.0.1:9090 is unreachable: connection refused"),
            "{line}"
        );
    }
}
