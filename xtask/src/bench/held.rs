//! Agent memory and CPU with many selected connections held at once.
use std::time::{Duration, Instant};

use anyhow::Context;
use serde::Serialize;
use serde_json::Value;

use super::{
    agent::{self, AgentArgs},
    load::{self, Kind, Plan},
    setup::Bench,
};

/// Issue 14's goal: agent VmHWM with 10k selected connections held.
pub const HELD_GOAL_MIB: f64 = 48.0;

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
            unit: "connection",
            mode,
            toxicity: 100.0,
            reset_timeout_ms: 600_000,
            selection: "random",
        })?;
        let pid = agent.pid().context("agent pid")?;
        let (cpu0, hwm0) = agent::cpu_and_hwm(pid).context("read agent /proc")?;
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
        let sample = agent::cpu_and_hwm(pid);
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
