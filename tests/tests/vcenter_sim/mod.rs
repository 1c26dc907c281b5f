//! What the vCenter-detail tests (vcenter_compat.rs, vcenter_conformance.rs) add to the shared
//! harness ([`reset_tests::sim`], [`reset_tests::ctl`]): vcsim serving `web-01` on this host
//! with its request log, read back here; the controller trusting vCenter only through its
//! certificate (GOVC_INSECURE=false, GOVC_TLS_CA_CERTS), logging the client at debug level and
//! reporting in JSON; a short `run` with the stand-in agent ([`reset_tests::fake_agent`]). No
//! namespace, no root; everything is removed on drop.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command;

use reset_tests::fake_agent;
use reset_tests::sim::Vcsim;
use serde_json::Value;

pub const VM: &str = "web-01";

/// vcsim serving VM `web-01`, keeping a request log.
pub struct Sim {
    pub vcsim: Vcsim,
}

impl Sim {
    /// Start vcsim with `extra` flags (e.g. `--product vcenter-6.7`); `tag` names its
    /// directories.
    pub fn start(tag: &str, extra: &[&str]) -> Sim {
        let b = Vcsim::builder()
            .host_vm(VM)
            .request_log()
            .tmp_prefix(&format!("vcenter-{tag}"));
        Sim {
            vcsim: extra.iter().fold(b, |b, flag| b.arg(flag)).start(),
        }
    }

    /// The request log's path.
    pub fn log(&self) -> &Path {
        self.vcsim.request_log.as_deref().expect("a request log")
    }

    /// The request log so far.
    pub fn requests(&self) -> Vec<Value> {
        std::fs::read_to_string(self.log())
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// SOAP calls (method, SOAPAction) in order.
    pub fn calls(&self) -> Vec<(String, String)> {
        self.requests()
            .iter()
            .filter(|r| r["http"] == "POST /sdk")
            .map(|r| {
                (
                    r["method"].as_str().unwrap_or("").to_string(),
                    r["soap_action"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect()
    }

    /// `reset-controller --output json ARGS` (see [`Vcsim::controller`]) with GOVC_INSECURE=false,
    /// vCenter's certificate as GOVC_TLS_CA_CERTS and the SOAP client's debug log.
    pub fn controller(&self, args: &[String]) -> Command {
        let args: Vec<&str> = ["--output", "json"]
            .into_iter()
            .chain(args.iter().map(String::as_str))
            .collect();
        let mut c = self.vcsim.controller(&args);
        c.env("GOVC_INSECURE", "false")
            .env("GOVC_TLS_CA_CERTS", &self.vcsim.cert)
            .env("RUST_LOG", "info,reset_controller::vcenter=debug");
        c
    }

    /// Files the guests' programs left in the guest tmp dir, probe files of the fake agent
    /// aside.
    pub fn guest_leftovers(&self) -> Vec<String> {
        self.vcsim
            .guest_tmp
            .entries()
            .into_iter()
            .filter(|n| n.starts_with("reset-peer-"))
            .collect()
    }
}

/// `run` on web-01 with the fake agent for a 1-second window.
pub fn run_args(extra: &[&str]) -> Vec<String> {
    let agent = fake_agent().display().to_string();
    [
        "run",
        "--vm-name",
        VM,
        "--total-chaos-duration",
        "1",
        "--agent",
        &agent,
    ]
    .iter()
    .chain(extra)
    .map(|s| s.to_string())
    .collect()
}
