//! The final table on stdout: one row per VM.

use crate::probe::verdict::{ProbeReport, Verdict};
use crate::report::{RunReport, VmReport};

fn num(v: Option<u64>) -> String {
    v.map_or_else(|| "-".into(), |n| n.to_string())
}

fn row(v: &VmReport) -> [String; 8] {
    let a = v.agent();
    let a = a.as_ref();
    [
        v.vm.clone(),
        v.status.to_string(),
        num(a.and_then(|a| a.flows_seen)),
        num(a.and_then(|a| a.flows_selected)),
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

/// Render the table, one line per failed VM with its error, then the probe line.
pub fn table(r: &RunReport) -> String {
    const HEAD: [&str; 8] = [
        "VM",
        "STATUS",
        "FLOWS SEEN",
        "SELECTED",
        "RESETS OBSERVED",
        "ACHIEVED",
        "RESET P99",
        "CLEANUP VERIFIED",
    ];
    let rows: Vec<[String; 8]> = r.vms.iter().map(row).collect();
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
                "flows_seen": 200, "flows_selected": 100, "resets_observed": 100,
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
        assert!(lines[0].starts_with("VM      STATUS  FLOWS SEEN"), "{t}");
        assert!(
            lines[1].contains("200")
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
}
