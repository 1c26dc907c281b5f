//! wrk, the closed-loop HTTP load generator, run in the caller namespace (optionally pinned to
//! one CPU), and the parser of its output.
use std::process::Stdio;

use anyhow::{Context, bail};
use reset_tests::lab::Netns;

/// One wrk run's result.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Wrk {
    /// Successful (2xx/3xx) responses per second.
    pub ok_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub socket_errors: u64,
}

/// wrk from the caller namespace: 1 thread, `conns` connections, `secs` seconds; with `pin`,
/// on CPU 1 only (the service is then on CPU 0).
pub fn wrk(
    caller: &Netns,
    url: &str,
    conns: u32,
    secs: f64,
    close: bool,
    pin: bool,
) -> anyhow::Result<Wrk> {
    let mut cmd = if pin {
        let mut c = caller.command("taskset");
        c.args(["-c", "1", "wrk"]);
        c
    } else {
        caller.command("wrk")
    };
    cmd.args([
        "-t1",
        &format!("-c{conns}"),
        &format!("-d{secs}s"),
        "--timeout",
        "5s",
        "--latency",
    ]);
    if close {
        cmd.args(["-H", "Connection: close"]);
    }
    let out = cmd
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .context("run wrk")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "wrk failed: {}{}",
            text,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    parse_wrk(&text).with_context(|| format!("cannot parse wrk output:\n{text}"))
}

fn wrk_ms(v: &str) -> Option<f64> {
    let (num, unit) = v.split_at(v.find(|c: char| c.is_ascii_alphabetic())?);
    let n: f64 = num.parse().ok()?;
    Some(match unit {
        "us" => n / 1000.0,
        "ms" => n,
        "s" => n * 1000.0,
        "m" => n * 60_000.0,
        _ => return None,
    })
}

pub fn parse_wrk(text: &str) -> Option<Wrk> {
    let (mut requests, mut secs, mut non2xx, mut errors) = (None, None, 0u64, 0u64);
    let (mut p50, mut p99) = (f64::NAN, f64::NAN);
    for line in text.lines() {
        let t = line.trim();
        let w: Vec<&str> = t.split_whitespace().collect();
        if t.contains(" requests in ") {
            requests = w.first().and_then(|n| n.parse::<u64>().ok());
            secs = w
                .get(3)
                .map(|s| s.trim_end_matches(','))
                .and_then(wrk_ms)
                .map(|ms| ms / 1000.0);
        } else if t.starts_with("50%") {
            p50 = w.get(1).and_then(|v| wrk_ms(v)).unwrap_or(f64::NAN);
        } else if t.starts_with("99%") {
            p99 = w.get(1).and_then(|v| wrk_ms(v)).unwrap_or(f64::NAN);
        } else if let Some(rest) = t.strip_prefix("Non-2xx or 3xx responses:") {
            non2xx = rest.trim().parse().unwrap_or(0);
        } else if let Some(rest) = t.strip_prefix("Socket errors:") {
            errors = rest
                .split(',')
                .filter_map(|p| p.split_whitespace().last()?.parse::<u64>().ok())
                .sum();
        }
    }
    let (requests, secs) = (requests?, secs?);
    Some(Wrk {
        ok_per_s: requests.saturating_sub(non2xx) as f64 / secs,
        p50_ms: p50,
        p99_ms: p99,
        socket_errors: errors,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_wrk() {
        let out = "Running 1s test @ http://198.18.0.2:80/\n  1 threads and 32 connections\n  \
                   Latency Distribution\n     50%  452.00us\n     75%  1.02ms\n     99%    3.10ms\n  \
                   12000 requests in 1.00s, 1.2MB read\n  Socket errors: connect 0, read 3, write 0, timeout 1\n  \
                   Non-2xx or 3xx responses: 1000\nRequests/sec:  12000.00\n";
        let w = parse_wrk(out).expect("parsed");
        assert!((w.ok_per_s - 11000.0).abs() < 1e-6);
        assert!((w.p50_ms - 0.452).abs() < 1e-9);
        assert!((w.p99_ms - 3.1).abs() < 1e-9);
        assert_eq!(w.socket_errors, 4);
    }
}
