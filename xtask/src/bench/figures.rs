//! The measurements, one function per figure. Each starts what it needs in the lab, measures,
//! and stops it (guards kill processes even on error). Nothing here invents a number: a
//! figure that cannot be measured is recorded as skipped with the reason.
use std::{
    net::SocketAddr,
    time::{Duration, Instant},
};

use anyhow::Context;
use reset_tests::lab::Lab;
use serde::Serialize;
use serde_json::Value;

use super::{
    Params,
    load::{self, Kind, Plan},
    procs::{self, Agent, AgentArgs, AgentEnd, Paths, Wrk},
};

pub const HAPROXY_PORT: u16 = 8081;
pub const TOXY_PORT: u16 = 8082;

/// Where the traffic goes and what sits in front of the service.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Setup {
    Direct,
    Agent { mode: &'static str, toxicity: f64 },
    Haproxy,
    Toxy { toxicity: f64 },
}

impl Setup {
    pub fn label(&self) -> String {
        match self {
            Setup::Direct => "direct".into(),
            Setup::Agent { mode, toxicity } => format!("reset-peer {mode} {toxicity}%"),
            Setup::Haproxy => "haproxy (tcp)".into(),
            Setup::Toxy { toxicity } => format!("toxy {toxicity}%"),
        }
    }
    pub fn series(&self) -> String {
        match self {
            Setup::Direct => "direct".into(),
            Setup::Agent { mode, .. } => format!("reset-peer {mode}"),
            Setup::Haproxy => "haproxy".into(),
            Setup::Toxy { .. } => "toxy".into(),
        }
    }
    pub fn toxicity(&self) -> f64 {
        match self {
            Setup::Direct | Setup::Haproxy => 0.0,
            Setup::Agent { toxicity, .. } | Setup::Toxy { toxicity } => *toxicity,
        }
    }
    fn port(&self) -> u16 {
        match self {
            Setup::Direct | Setup::Agent { .. } => 80,
            Setup::Haproxy => HAPROXY_PORT,
            Setup::Toxy { .. } => TOXY_PORT,
        }
    }
}

/// Something running in front of the service for one setup.
enum Running {
    None,
    Agent(Agent),
    Proxy { _guard: procs::Bg },
}

/// Agent start/stop timings gathered from every agent run of the bench.
#[derive(Default, Serialize)]
pub struct Lifecycle {
    pub kernel_install_ms: Vec<f64>,
    pub kernel_remove_ms: Vec<f64>,
    pub userspace_install_ms: Vec<f64>,
    pub userspace_remove_ms: Vec<f64>,
    pub cleanup_verified_all: bool,
    pub runs: u64,
}

impl Lifecycle {
    pub fn record(&mut self, mode: &str, end: &AgentEnd) {
        let (i, r) = if mode == "kernel" {
            (&mut self.kernel_install_ms, &mut self.kernel_remove_ms)
        } else {
            (
                &mut self.userspace_install_ms,
                &mut self.userspace_remove_ms,
            )
        };
        i.push(end.install.as_secs_f64() * 1e3);
        if let Some(d) = end.remove {
            r.push(d.as_secs_f64() * 1e3);
        }
        let verified = end
            .report
            .as_ref()
            .and_then(|r| r["cleanup"]["verified"].as_bool())
            .unwrap_or(false);
        if self.runs == 0 {
            self.cleanup_verified_all = true;
        }
        self.cleanup_verified_all &= verified;
        self.runs += 1;
    }
}

/// The bench's shared state: lab, built binaries, parameters, lifecycle timings.
pub struct Bench<'a> {
    pub lab: &'a Lab,
    pub paths: &'a Paths,
    pub p: &'a Params,
    pub life: Lifecycle,
    pub tag: u32,
}

impl Bench<'_> {
    fn agent(&mut self, a: &AgentArgs) -> anyhow::Result<Agent> {
        self.tag += 1;
        Agent::start(&self.lab.vm, self.paths, a, &self.tag.to_string())
    }

    fn stop_agent(&mut self, agent: Agent, mode: &str) -> anyhow::Result<Value> {
        let end = agent.stop();
        self.life.record(mode, &end);
        end.report
            .with_context(|| format!("the agent wrote no report; its output:\n{}", end.output))
    }

    fn start(&mut self, s: &Setup, reset_ms: u64) -> anyhow::Result<Running> {
        Ok(match s {
            Setup::Direct => Running::None,
            Setup::Agent { mode, toxicity } => Running::Agent(self.agent(&AgentArgs {
                mode,
                toxicity: *toxicity,
                reset_timeout_ms: reset_ms,
                selection: "random",
            })?),
            Setup::Haproxy => Running::Proxy {
                _guard: procs::haproxy(&self.lab.vm, self.paths, HAPROXY_PORT)?,
            },
            Setup::Toxy { toxicity } => Running::Proxy {
                _guard: procs::toxy(&self.lab.vm, self.paths, TOXY_PORT, *toxicity, reset_ms)?,
            },
        })
    }

    fn stop(&mut self, r: Running, s: &Setup) -> anyhow::Result<Option<Value>> {
        match (r, s) {
            (Running::Agent(a), Setup::Agent { mode, .. }) => self.stop_agent(a, mode).map(Some),
            _ => Ok(None),
        }
    }

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([198, 18, 0, 2], port))
    }
}

/// Median of repeated runs, with the runs.
#[derive(Clone, Debug, Serialize)]
pub struct Median {
    pub median: f64,
    pub runs: Vec<f64>,
}

pub fn median(mut v: Vec<f64>) -> Median {
    let runs = v.clone();
    v.retain(|x| x.is_finite());
    v.sort_by(f64::total_cmp);
    let median = match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    };
    Median { median, runs }
}

#[derive(Serialize)]
pub struct ThroughputRow {
    pub setup: Setup,
    pub label: String,
    /// "close" (one connection per request) or "keepalive".
    pub load: &'static str,
    pub ok_per_s: Median,
    pub p50_ms: Median,
    pub p99_ms: Median,
    pub socket_errors_per_run: Median,
    /// ok_per_s / direct's ok_per_s (same load).
    pub ratio: f64,
    /// Selected share the agent reported (flows_selected / flows_seen), kernel or userspace.
    pub achieved_percent: Option<f64>,
    /// ok_per_s / ((1 - selected share) x direct): throughput per unselected-flow share.
    pub ratio_per_unselected_share: Option<f64>,
}

/// Throughput and latency (wrk) for every setup, closed-loop, successes only.
pub fn throughput(b: &mut Bench, setups: &[Setup]) -> anyhow::Result<Vec<ThroughputRow>> {
    // Direct is measured first and again last (drift on a shared 2-CPU box is real); its
    // reference is the median over both.
    let mut order: Vec<&Setup> = setups.iter().collect();
    if let Some(d) = setups.iter().find(|s| matches!(s, Setup::Direct)) {
        order.push(d);
    }
    // (setup label, load) -> runs; achieved share per setup label.
    let mut raw: Vec<(Setup, &'static str, Vec<Wrk>)> = Vec::new();
    let mut achieved: Vec<(String, Option<f64>)> = Vec::new();
    for s in order {
        eprintln!("bench: throughput: {}", s.label());
        // A 1 ms RESET_TIMEOUT (toxy: abort delay) so selected connections do not hold wrk's
        // connection slots: wrk then reports the successful (unselected) responses only.
        let running = b.start(s, 1)?;
        let url = format!("http://198.18.0.2:{}/", s.port());
        // Warm-up (discarded): first connections after a start pay for ARP, JIT, page faults.
        let _ = procs::wrk(&b.lab.caller, &url, b.p.wrk_conns, 1.0, true);
        for (load, close) in [("close", true), ("keepalive", false)] {
            let mut runs: Vec<Wrk> = Vec::new();
            for _ in 0..b.p.reps {
                runs.push(procs::wrk(
                    &b.lab.caller,
                    &url,
                    b.p.wrk_conns,
                    b.p.wrk_secs,
                    close,
                )?);
            }
            match raw
                .iter_mut()
                .find(|(rs, rl, _)| rs.label() == s.label() && *rl == load)
            {
                Some((_, _, prev)) => prev.extend(runs),
                None => raw.push((s.clone(), load, runs)),
            }
        }
        let report = b.stop(running, s)?;
        achieved.push((
            s.label(),
            report.as_ref().and_then(|r| r["achieved_percent"].as_f64()),
        ));
    }
    let direct = |load: &str| {
        raw.iter()
            .find(|(s, l, _)| matches!(s, Setup::Direct) && *l == load)
            .map_or(f64::NAN, |(_, _, runs)| {
                median(runs.iter().map(|w| w.ok_per_s).collect()).median
            })
    };
    let mut rows = Vec::new();
    for (s, load, runs) in &raw {
        let ok = median(runs.iter().map(|w| w.ok_per_s).collect());
        let d = direct(load);
        let got = achieved
            .iter()
            .find(|(l, _)| *l == s.label())
            .and_then(|(_, a)| *a);
        let share = match s {
            Setup::Direct | Setup::Haproxy => Some(0.0),
            Setup::Agent { .. } => got,
            Setup::Toxy { toxicity } => Some(*toxicity),
        };
        rows.push(ThroughputRow {
            setup: s.clone(),
            label: s.label(),
            load,
            ratio: ok.median / d,
            achieved_percent: got,
            // Only meaningful per connection: keep-alive requests are not flows.
            ratio_per_unselected_share: share
                .filter(|p| *p < 100.0 && *load == "close")
                .map(|p| ok.median / ((1.0 - p / 100.0) * d)),
            ok_per_s: ok,
            p50_ms: median(runs.iter().map(|w| w.p50_ms).collect()),
            p99_ms: median(runs.iter().map(|w| w.p99_ms).collect()),
            socket_errors_per_run: median(runs.iter().map(|w| w.socket_errors as f64).collect()),
        });
    }
    Ok(rows)
}

/// Error percentiles (observed - RESET_TIMEOUT), ms.
#[derive(Clone, Debug, Serialize)]
pub struct ErrPct {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
    pub samples: u64,
}

#[derive(Serialize)]
pub struct DelayRow {
    pub setup: String,
    pub target_rate: f64,
    pub achieved_rate: f64,
    pub reset_timeout_ms: u64,
    pub resets_seen_by_caller: u64,
    pub other_outcomes: u64,
    /// From the agent's report: kernel (tc egress timestamps) in kernel mode, the proxy's
    /// clock in userspace mode. None for toxy.
    pub agent_measured: Option<ErrPct>,
    pub agent_measured_by: &'static str,
    pub caller_clock: Option<ErrPct>,
    /// Connections closed with no response (FIN, not RST), and that delay's error.
    pub closed_without_response: u64,
    pub caller_clock_closed: Option<ErrPct>,
    /// Caller-clock errors (ms), sorted, for the CDF plot.
    #[serde(skip)]
    pub caller_errors_ms: Vec<f64>,
}

/// Reset delay error at paced selected-connection rates (TOXICITY 100).
pub fn reset_delay(b: &mut Bench, setups: &[Setup]) -> anyhow::Result<Vec<DelayRow>> {
    let mut rows = Vec::new();
    let t = b.p.reset_timeout_ms;
    for s in setups {
        for &rate in &b.p.delay_rates {
            eprintln!("bench: reset delay: {} at {rate}/s", s.label());
            let running = b.start(s, t)?;
            let count = (rate * b.p.delay_secs).round() as u64;
            let out = load::run(
                b.lab.caller.name(),
                Plan {
                    addr: Bench::addr(s.port()),
                    kind: Kind::Request,
                    rate,
                    count,
                    max_duration: Duration::from_secs_f64(b.p.delay_secs * 1.5 + 1.0),
                    max_inflight: 20_000,
                    timeout: Duration::from_millis(t + 5000),
                },
            );
            let report = b.stop(running, s)?;
            let out = out?;
            // The CDF shows resets; a peer that closes instead (FIN) is plotted from its closes.
            let samples = if out.reset_after_us.is_empty() {
                &out.closed_after_us
            } else {
                &out.reset_after_us
            };
            let mut errs: Vec<f64> = samples
                .iter()
                .map(|us| *us as f64 / 1000.0 - t as f64)
                .collect();
            errs.sort_by(f64::total_cmp);
            let caller_clock = err_pct(&out.reset_after_us, t);
            let caller_clock_closed = err_pct(&out.closed_after_us, t);
            let (agent_measured, by) = match &report {
                Some(r) => {
                    let d = &r["reset_delay_ms"];
                    let kernel = r["counts_kernel_observed"].as_bool().unwrap_or(false);
                    let samples = d["samples"].as_u64().unwrap_or(0);
                    (
                        (samples > 0).then(|| ErrPct {
                            p50: d["p50"].as_f64().unwrap_or(f64::NAN) - t as f64,
                            p99: d["p99"].as_f64().unwrap_or(f64::NAN) - t as f64,
                            max: d["max"].as_f64().unwrap_or(f64::NAN) - t as f64,
                            samples,
                        }),
                        if kernel {
                            "kernel (tc egress, on the wire)"
                        } else {
                            "proxy clock (userspace mode)"
                        },
                    )
                }
                None => (None, "n/a (not reset-peer)"),
            };
            rows.push(DelayRow {
                setup: s.series(),
                target_rate: rate,
                achieved_rate: out.attempted as f64 / out.elapsed.as_secs_f64().max(1e-9),
                reset_timeout_ms: t,
                resets_seen_by_caller: out.resets,
                other_outcomes: out.other - out.closed_after_us.len() as u64
                    + out.ok
                    + out.connect_failed,
                closed_without_response: out.closed_after_us.len() as u64,
                caller_clock_closed,
                agent_measured,
                agent_measured_by: by,
                caller_clock,
                caller_errors_ms: errs,
            });
        }
    }
    Ok(rows)
}

/// Percentiles of `us` (microseconds) minus `t` ms, in ms.
fn err_pct(us: &[u64], t: u64) -> Option<ErrPct> {
    let mut sorted = us.to_vec();
    sorted.sort_unstable();
    let e = |p| load::pct(&sorted, p).map(|v| v as f64 / 1000.0 - t as f64);
    Some(ErrPct {
        p50: e(0.5)?,
        p99: e(0.99)?,
        max: e(1.0)?,
        samples: sorted.len() as u64,
    })
}

#[derive(Serialize)]
pub struct PrecisionRow {
    pub mode: &'static str,
    pub selection: &'static str,
    pub toxicity: f64,
    pub flows_sent: u64,
    pub flows_seen: u64,
    pub flows_selected: u64,
    pub proxy_accepted: u64,
    pub achieved_percent: f64,
    /// |achieved - TOXICITY| in percentage points.
    pub abs_error_pp: f64,
    /// 1/N in percentage points (the exact-selection bound).
    pub bound_pp: f64,
    /// |flows_selected (kernel) - proxy_accepted (userspace)|.
    pub kernel_userspace_mismatch: u64,
    pub counts_kernel_observed: bool,
}

/// Selection precision over N flows (connect-only, so only the SYN matters).
pub fn precision(b: &mut Bench) -> anyhow::Result<Vec<PrecisionRow>> {
    let mut rows = Vec::new();
    let tox = b.p.precision_toxicity;
    for selection in ["random", "exact"] {
        for &n in &b.p.precision_flows {
            eprintln!("bench: precision: {selection} over {n} flows");
            let agent = b.agent(&AgentArgs {
                mode: "kernel",
                toxicity: tox,
                reset_timeout_ms: 1,
                selection,
            })?;
            let out = load::run(
                b.lab.caller.name(),
                Plan {
                    addr: Bench::addr(80),
                    kind: Kind::ConnectOnly,
                    rate: b.p.precision_rate,
                    count: n,
                    max_duration: Duration::from_secs_f64(
                        n as f64 / b.p.precision_rate * 3.0 + 5.0,
                    ),
                    max_inflight: 1024,
                    timeout: Duration::from_secs(5),
                },
            );
            // Let the proxy accept what is still queued before the window is closed.
            std::thread::sleep(Duration::from_millis(300));
            let r = b.stop_agent(agent, "kernel")?;
            let out = out?;
            let u = |k: &str| r[k].as_u64().unwrap_or(0);
            let achieved = r["achieved_percent"].as_f64().unwrap_or(f64::NAN);
            rows.push(PrecisionRow {
                mode: "kernel",
                selection,
                toxicity: tox,
                flows_sent: out.attempted,
                flows_seen: u("flows_seen"),
                flows_selected: u("flows_selected"),
                proxy_accepted: u("proxy_accepted"),
                achieved_percent: achieved,
                abs_error_pp: (achieved - tox).abs(),
                bound_pp: 100.0 / n as f64,
                kernel_userspace_mismatch: u("flows_selected").abs_diff(u("proxy_accepted")),
                counts_kernel_observed: r["counts_kernel_observed"].as_bool().unwrap_or(false),
            });
        }
    }
    Ok(rows)
}

#[derive(Serialize)]
pub struct RateRow {
    pub target_rate: f64,
    pub achieved_rate: f64,
    pub flows_sent: u64,
    pub connect_failed: u64,
    pub flows_seen: u64,
    pub syn_retransmits: u64,
    pub flows_selected: u64,
    pub proxy_accepted: u64,
    /// flows_seen == flows_sent and flows_selected == proxy_accepted.
    pub no_flow_lost: bool,
}

/// Ascending new-connection rates (kernel mode, exact 50%): where does accounting lose a flow?
pub fn max_rate(b: &mut Bench) -> anyhow::Result<Vec<RateRow>> {
    let mut rows = Vec::new();
    let mut failures = 0;
    for &rate in &b.p.rate_steps {
        eprintln!("bench: accounting at {rate} new connections/s");
        let agent = b.agent(&AgentArgs {
            mode: "kernel",
            toxicity: 50.0,
            reset_timeout_ms: 1,
            selection: "exact",
        })?;
        let out = load::run(
            b.lab.caller.name(),
            Plan {
                addr: Bench::addr(80),
                kind: Kind::ConnectOnly,
                rate,
                count: (rate * b.p.rate_secs) as u64,
                max_duration: Duration::from_secs_f64(b.p.rate_secs * 2.0),
                max_inflight: 4096,
                timeout: Duration::from_secs(5),
            },
        );
        std::thread::sleep(Duration::from_millis(300));
        let r = b.stop_agent(agent, "kernel")?;
        let out = out?;
        let u = |k: &str| r[k].as_u64().unwrap_or(0);
        let ok = u("flows_seen") == out.attempted && u("flows_selected") == u("proxy_accepted");
        rows.push(RateRow {
            target_rate: rate,
            achieved_rate: out.attempted as f64 / out.elapsed.as_secs_f64().max(1e-9),
            flows_sent: out.attempted,
            connect_failed: out.connect_failed,
            flows_seen: u("flows_seen"),
            syn_retransmits: u("syn_retransmits"),
            flows_selected: u("flows_selected"),
            proxy_accepted: u("proxy_accepted"),
            no_flow_lost: ok,
        });
        failures = if ok { 0 } else { failures + 1 };
        if failures >= 2 {
            break;
        }
    }
    Ok(rows)
}

#[derive(Serialize)]
pub struct HeldRow {
    pub mode: &'static str,
    pub target_held: u64,
    pub held_by_caller: u64,
    pub proxy_accepted: u64,
    pub agent_vmhwm_kib: u64,
    pub agent_vmhwm_before_kib: u64,
    /// utime+stime of the agent while the connections were opened and held.
    pub agent_cpu_s_during: f64,
    pub agent_cpu_s_total: f64,
    pub open_secs: f64,
    pub resets_observed_on_abort: u64,
    pub abort_ms: Option<f64>,
}

/// Agent memory and CPU with `held` selected connections held at once (TOXICITY 100).
pub fn held(b: &mut Bench) -> anyhow::Result<Vec<HeldRow>> {
    let mut rows = Vec::new();
    let n = b.p.held;
    for mode in ["kernel", "userspace"] {
        eprintln!("bench: {n} held connections, {mode} mode");
        let agent = b.agent(&AgentArgs {
            mode,
            toxicity: 100.0,
            reset_timeout_ms: 600_000,
            selection: "random",
        })?;
        let pid = agent.pid().context("agent pid")?;
        let (cpu0, hwm0) = procs::cpu_and_hwm(pid).context("read agent /proc")?;
        let t0 = Instant::now();
        let out = load::run(
            b.lab.caller.name(),
            Plan {
                addr: Bench::addr(80),
                kind: Kind::Hold,
                rate: b.p.held_rate,
                count: n,
                max_duration: Duration::from_secs_f64(n as f64 / b.p.held_rate * 3.0 + 5.0),
                max_inflight: 4096,
                timeout: Duration::from_secs(10),
            },
        );
        // Give the proxy time to accept and register everything, then sample.
        std::thread::sleep(Duration::from_millis(1000));
        let open_secs = t0.elapsed().as_secs_f64();
        let sample = procs::cpu_and_hwm(pid);
        let sent = Instant::now();
        let end = agent.stop();
        let abort_ms = end.remove.map(|_| sent.elapsed().as_secs_f64() * 1e3);
        b.life.record(mode, &end);
        let out = out?;
        let (cpu1, hwm1) = sample.context("agent exited while connections were held")?;
        let r = end.report.unwrap_or(Value::Null);
        rows.push(HeldRow {
            mode,
            target_held: n,
            held_by_caller: out.held.len() as u64,
            proxy_accepted: r["proxy_accepted"].as_u64().unwrap_or(0),
            agent_vmhwm_kib: hwm1,
            agent_vmhwm_before_kib: hwm0,
            agent_cpu_s_during: cpu1 - cpu0,
            agent_cpu_s_total: cpu1,
            open_secs,
            resets_observed_on_abort: r["resets_observed"].as_u64().unwrap_or(0),
            abort_ms,
        });
        drop(out.held);
    }
    Ok(rows)
}
