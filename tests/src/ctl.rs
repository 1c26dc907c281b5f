//! The controller side of the lab: vcsim serving lab VMs with fixed test credentials, the
//! controller command wired to it (secrets only in its environment), and checks on what a
//! run left in a guest. Shared by the controller and fault-tolerance e2e tests.
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{bin, lab::Lab};

pub const VC_PASSWORD: &str = "vc-E2e-Secret-5d1";
pub const GUEST_PASSWORD: &str = "guest-E2e-Secret-8b4";

/// The simulator serving the labs' VMs, with this file's credentials.
pub struct Vcsim(pub crate::sim::Vcsim);

impl Vcsim {
    pub fn start(vms: &[(&str, &Lab)]) -> Vcsim {
        let vms: Vec<(&str, &crate::lab::Netns)> = vms.iter().map(|(n, l)| (*n, &l.vm)).collect();
        let creds = crate::sim::Credentials {
            guest: ("root", GUEST_PASSWORD),
            vcenter: ("admin", VC_PASSWORD),
        };
        Vcsim(crate::sim::Vcsim::start(None, &vms, &creds, "ctl-e2e").expect("start vcsim"))
    }

    /// The guests' temporary directory (where run directories are created).
    pub fn guest_tmp(&self) -> &std::path::Path {
        self.0.guest_tmp.path()
    }

    /// Entries left in the guests' temporary directory.
    pub fn guest_files(&self) -> Vec<std::path::PathBuf> {
        std::fs::read_dir(self.guest_tmp())
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default()
    }

    pub fn controller(&self, args: &[&str]) -> Command {
        let mut c = Command::new(bin("reset-controller"));
        c.args(["--output", "json"])
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("GOVC_URL", &self.0.url)
            .env("GOVC_USERNAME", "admin")
            .env("GOVC_PASSWORD", VC_PASSWORD)
            .env("VM_USER_NAME", "root")
            .env("VM_PASSWORD", GUEST_PASSWORD)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }
}

pub fn wait_bounded(child: Child, limit: Duration) -> Output {
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(o) => o.unwrap(),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("reset-controller did not finish within {limit:?}");
        }
    }
}

pub fn injected(lab: &Lab) -> bool {
    lab.vm.nft_ruleset().contains("reset_peer")
}

/// Wait until the agent's redirect is in place in `lab` (readiness, not a sleep).
pub fn wait_injected(lab: &Lab, limit: Duration) {
    let t = Instant::now();
    while !injected(lab) {
        assert!(
            t.elapsed() < limit,
            "agent never injected in {}",
            lab.vm.name()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// See [`Lab::assert_clean`].
pub fn assert_guest_clean(lab: &Lab) {
    lab.assert_clean();
}

/// The common one-VM scene: a lab whose VM runs the sample service on port 80, served by vcsim
/// as `vm-a`. Bind it as `let (lab, _svc, sim) = one_vm();` so it is torn down in reverse.
pub fn one_vm() -> (Lab, crate::proc::Service, Vcsim) {
    let lab = Lab::new();
    let svc = crate::proc::Service::start(&lab.vm, 80, None);
    let sim = Vcsim::start(&[("vm-a", &lab)]);
    (lab, svc, sim)
}

/// `run` on vm-a with `agent`: TOXICITY 100, RESET_TIMEOUT 200 ms, a `window`-second fault,
/// plus `extra` flags.
pub fn run_args<'a>(agent: &'a str, window: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![
        "run",
        "--vm-name",
        "vm-a",
        "--agent",
        agent,
        "--toxicity",
        "100",
        "--reset-timeout",
        "200",
        "--total-chaos-duration",
        window,
    ];
    v.extend_from_slice(extra);
    v
}

/// Starts the controller with `args` and waits until its agent's redirect is in `lab`.
pub fn start_injected(sim: &Vcsim, lab: &Lab, args: &[&str]) -> Child {
    let child = sim
        .controller(args)
        .spawn()
        .expect("spawn reset-controller");
    wait_injected(lab, Duration::from_secs(20));
    child
}

/// No process in the guest has a secret in its command line or environment.
pub fn assert_no_secret_in_guest(lab: &Lab) {
    for pid in lab.vm.pids() {
        for f in ["cmdline", "environ"] {
            let data = std::fs::read(format!("/proc/{pid}/{f}")).unwrap_or_default();
            let s = String::from_utf8_lossy(&data);
            assert!(
                !s.contains(VC_PASSWORD) && !s.contains(GUEST_PASSWORD),
                "secret in /proc/{pid}/{f}"
            );
        }
    }
}

pub fn phase_ms(row: &Value, prefix: &str) -> u64 {
    row["timings"]["phases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p[0].as_str().unwrap_or("").starts_with(prefix))
        .and_then(|p| p[1].as_u64())
        .unwrap_or_else(|| panic!("no phase {prefix} in {row}"))
}

pub fn report(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}
