//! The `vcsim` binary with its product and transfer flags, keeping a request log, and the
//! controller pointed at it with a stand-in agent (reset-controller/tests/fixtures/fake-agent.sh,
//! the agent's CLI contract without root). The VMs run programs on this host: no namespace,
//! no root. Everything is removed on drop.
#![allow(dead_code)]

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const VC_USER: &str = "administrator@vsphere.local";
pub const VC_PASSWORD: &str = "vc-Compat-Secret-3e1";
pub const GUEST_PASSWORD: &str = "guest-Compat-Secret-77a";
pub const VM: &str = "web-01";

/// A vcsim process with its own directory (guest tmp, tools state, certificate, request log).
pub struct Sim {
    child: Child,
    /// vcsim's stdout, kept open while it runs.
    _stdout: BufReader<std::process::ChildStdout>,
    /// The SDK URL it printed.
    pub url: String,
    /// Its working directory.
    pub dir: PathBuf,
}

impl Sim {
    /// Start vcsim serving VM `web-01` with `extra` flags (e.g. `--product vcenter-6.7`).
    pub fn start(tag: &str, extra: &[&str]) -> Sim {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "vcenter-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(dir.join("guest")).unwrap();
        let mut child = Command::new(reset_tests::bin("vcsim"))
            .args(["--listen", "127.0.0.1:0", "--vm", VM])
            .args(["--guest-user", &format!("root:{GUEST_PASSWORD}")])
            .args(["--vc-user", &format!("{VC_USER}:{VC_PASSWORD}")])
            .arg("--tmp-dir")
            .arg(dir.join("guest"))
            .arg("--state-dir")
            .arg(dir.join("tools"))
            .arg("--cert-out")
            .arg(dir.join("vcenter.pem"))
            .arg("--request-log")
            .arg(dir.join("requests.jsonl"))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start vcsim");
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let url = line.trim().to_string();
        assert!(url.contains("://127.0.0.1:"), "vcsim printed {url:?}");
        Sim {
            child,
            _stdout: stdout,
            url,
            dir,
        }
    }

    /// vCenter's certificate (PEM): give it as GOVC_TLS_CA_CERTS.
    pub fn ca(&self) -> PathBuf {
        self.dir.join("vcenter.pem")
    }

    /// The request log so far.
    pub fn requests(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.join("requests.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The request log's path.
    pub fn log(&self) -> PathBuf {
        self.dir.join("requests.jsonl")
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

    /// The controller with vCenter and guest credentials in its environment only,
    /// GOVC_INSECURE=false and vCenter's certificate as GOVC_TLS_CA_CERTS.
    pub fn controller<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Command {
        let mut c = Command::new(reset_tests::bin("reset-controller"));
        c.args(["--output", "json"])
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("GOVC_URL", &self.url)
            .env("GOVC_USERNAME", VC_USER)
            .env("GOVC_PASSWORD", VC_PASSWORD)
            .env("VM_USER_NAME", "root")
            .env("VM_PASSWORD", GUEST_PASSWORD)
            .env("GOVC_INSECURE", "false")
            .env("GOVC_TLS_CA_CERTS", self.ca())
            .env("RUST_LOG", "info,reset_controller::vcenter=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    /// Files the guests' programs left in the guest tmp dir, probe files of the fake agent
    /// aside.
    pub fn guest_leftovers(&self) -> Vec<String> {
        std::fs::read_dir(self.dir.join("guest"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with("reset-peer-"))
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The stand-in agent.
pub fn fake_agent() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../reset-controller/tests/fixtures/fake-agent.sh")
}

/// `run` on web-01 with the fake agent for a 1-second window.
pub fn run_args(extra: &[&'static str]) -> Vec<String> {
    let mut v: Vec<String> = [
        "run",
        "--vm-name",
        VM,
        "--total-chaos-duration",
        "1",
        "--agent",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    v.push(fake_agent().display().to_string());
    v.extend(extra.iter().map(|s| s.to_string()));
    v
}

/// Run to the end, at most `limit`.
pub fn run_bounded(mut c: Command, limit: Duration) -> Output {
    let child = c.spawn().expect("spawn reset-controller");
    wait_bounded(child, limit)
}

/// Wait for a started controller, at most `limit` (killed and failed on overrun).
pub fn wait_bounded(child: Child, limit: Duration) -> Output {
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("reset-controller did not finish within {limit:?}");
        }
    }
}

/// The JSON report on stdout.
pub fn report(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{e}: {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}
