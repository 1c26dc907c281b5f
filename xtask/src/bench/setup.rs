//! What sits in front of the service in one measurement (`Setup`), starting and stopping it,
//! and the agent lifecycle timings every measurement contributes to.
use std::net::SocketAddr;

use anyhow::Context;
use reset_tests::lab::Lab;
use serde::Serialize;
use serde_json::Value;

use super::{
    Params,
    agent::{Agent, AgentArgs, AgentEnd},
    procs::{self, Paths},
};

pub const HAPROXY_PORT: u16 = 8081;
pub const TOXY_PORT: u16 = 8082;

/// Where the traffic goes and what sits in front of the service.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Setup {
    /// `unit`: what TOXICITY counts, "request" or "connection".
    Agent {
        mode: &'static str,
        unit: &'static str,
        toxicity: f64,
    },
    Haproxy,
    Toxy {
        toxicity: f64,
    },
}

impl Setup {
    pub fn label(&self) -> String {
        match self {
            Setup::Agent {
                mode,
                unit,
                toxicity,
            } => format!("reset-peer {mode} {unit} {toxicity}%"),
            Setup::Haproxy => "haproxy (tcp)".into(),
            Setup::Toxy { toxicity } => format!("toxy {toxicity}%"),
        }
    }
    pub fn series(&self) -> String {
        match self {
            Setup::Agent { mode, unit, .. } => format!("reset-peer {mode} {unit}"),
            Setup::Haproxy => "haproxy".into(),
            Setup::Toxy { .. } => "toxy".into(),
        }
    }
    pub fn toxicity(&self) -> f64 {
        match self {
            Setup::Haproxy => 0.0,
            Setup::Agent { toxicity, .. } | Setup::Toxy { toxicity } => *toxicity,
        }
    }
    pub fn port(&self) -> u16 {
        match self {
            Setup::Agent { .. } => 80,
            Setup::Haproxy => HAPROXY_PORT,
            Setup::Toxy { .. } => TOXY_PORT,
        }
    }
}

/// Something running in front of the service for one setup.
pub enum Running {
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
    pub fn agent(&mut self, a: &AgentArgs) -> anyhow::Result<Agent> {
        self.tag += 1;
        Agent::start(&self.lab.vm, self.paths, a, &self.tag.to_string())
    }

    pub fn stop_agent(&mut self, agent: Agent, mode: &str) -> anyhow::Result<Value> {
        let end = agent.stop();
        self.life.record(mode, &end);
        end.report
            .with_context(|| format!("the agent wrote no report; its output:\n{}", end.output))
    }

    pub fn start(&mut self, s: &Setup, reset_ms: u64) -> anyhow::Result<Running> {
        Ok(match s {
            Setup::Agent {
                mode,
                unit,
                toxicity,
            } => Running::Agent(self.agent(&AgentArgs {
                mode,
                unit,
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

    pub fn stop(&mut self, r: Running, s: &Setup) -> anyhow::Result<Option<Value>> {
        match (r, s) {
            (Running::Agent(a), Setup::Agent { mode, .. }) => self.stop_agent(a, mode).map(Some),
            _ => Ok(None),
        }
    }

    pub fn addr(port: u16) -> SocketAddr {
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
