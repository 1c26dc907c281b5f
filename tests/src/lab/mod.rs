//! Test hosts as network namespaces. A `Lab` is one VM (interface `ens160`, 198.18.0.2/24 and
//! 2001:db8::2/64) and one caller (198.18.0.1, 2001:db8::1) joined by a veth pair. Each lab's
//! namespaces are private, so labs in parallel tests may reuse the same addresses.
//! [`Lab::with_service`] is the common scene (the sample service on port 80 in the VM), and
//! [`Lab::assert_clean`] the one check that a run left nothing in the VM.
mod netns;

pub use netns::Netns;

use std::process::Command;

use crate::proc::Service;

pub const VM_V4: &str = "198.18.0.2";
pub const CALLER_V4: &str = "198.18.0.1";
pub const VM_V6: &str = "2001:db8::2";
pub const CALLER_V6: &str = "2001:db8::1";

pub struct Lab {
    pub caller: Netns,
    pub vm: Netns,
}

impl Lab {
    pub fn new() -> Lab {
        let vm = Netns::new("rpvm");
        let caller = Netns::new("rpcl");
        run_ip(&[
            "link",
            "add",
            "ens160",
            "netns",
            vm.name(),
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            caller.name(),
        ]);
        vm.ip(&["addr", "add", &format!("{VM_V4}/24"), "dev", "ens160"]);
        vm.ip(&[
            "addr",
            "add",
            &format!("{VM_V6}/64"),
            "dev",
            "ens160",
            "nodad",
        ]);
        caller.ip(&["addr", "add", &format!("{CALLER_V4}/24"), "dev", "eth0"]);
        caller.ip(&[
            "addr",
            "add",
            &format!("{CALLER_V6}/64"),
            "dev",
            "eth0",
            "nodad",
        ]);
        vm.ip(&["link", "set", "ens160", "up"]);
        caller.ip(&["link", "set", "eth0", "up"]);
        Lab { caller, vm }
    }

    /// A lab whose VM runs the sample service on port 80. Bind it as
    /// `let (lab, _svc) = Lab::with_service();`, so the service stops before the lab goes.
    pub fn with_service() -> (Lab, Service) {
        let lab = Lab::new();
        let svc = Service::start(&lab.vm, 80, None);
        (lab, svc)
    }

    /// What a run left in the VM, one entry each: a `reset_peer` table, a tc program of ours
    /// or any tc filter on ens160 (the lab installs none), a reset-agent process.
    pub fn leftovers(&self) -> Vec<String> {
        let mut left = Vec::new();
        let rules = self.vm.nft_ruleset();
        if rules.contains("reset_peer") {
            left.push(format!("nftables table left behind:\n{rules}"));
        }
        let att = self.vm.bpf_attachments("ens160");
        if att.contains("reset_") {
            left.push(format!("tc programs left behind:\n{att}"));
        }
        for dir in ["ingress", "egress"] {
            let out = self
                .vm
                .output("tc", &["filter", "show", "dev", "ens160", dir]);
            let filters = String::from_utf8_lossy(&out.stdout);
            if !filters.trim().is_empty() {
                left.push(format!("tc {dir} filters left behind:\n{filters}"));
            }
        }
        for pid in self.vm.pids() {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // `PID (COMM) STATE ...`; a zombie (killed, not yet reaped) holds nothing.
            let running = stat
                .rsplit_once(") ")
                .is_some_and(|(_, rest)| !rest.starts_with('Z'));
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            if running && comm.trim() == "reset-agent" {
                left.push(format!("reset-agent still running in the VM (pid {pid})"));
            }
        }
        left
    }

    /// Nothing of a run is left in the VM ([`Lab::leftovers`]), and a new connection to the
    /// service on port 80 gets its 200.
    pub fn assert_clean(&self) {
        assert_eq!(self.leftovers(), Vec::<String>::new(), "the VM is clean");
        let c = crate::proc::curl(&self.caller, &self.url(false, 80, "/health"));
        assert_eq!(
            (c.exit, c.http_code.as_str()),
            (0, "200"),
            "a new connection works after cleanup: {c:?}"
        );
    }

    /// `http://198.18.0.2:PORT/PATH` or the IPv6 form.
    pub fn url(&self, v6: bool, port: u16, path: &str) -> String {
        if v6 {
            format!("http://[{VM_V6}]:{port}{path}")
        } else {
            format!("http://{VM_V4}:{port}{path}")
        }
    }
}

impl Default for Lab {
    fn default() -> Self {
        Self::new()
    }
}

pub(crate) fn run_ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}
