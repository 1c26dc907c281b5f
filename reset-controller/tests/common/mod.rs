//! Shared helpers for the controller's integration tests: an in-process vCenter
//! simulator (reset-vcsim) with VMs on this host, a per-test guest temp dir, and a
//! bounded runner for the controller binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use reset_vcsim::{SelfSigned, Sim, SimConfig, VmSpec};

pub const VC_USER: &str = "administrator@vsphere.local";
pub const VC_PASSWORD: &str = "vc-Secret-7f3a";
pub const GUEST_PASSWORD: &str = "guest-Secret-91c2";

/// A per-test directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "rc-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }

    pub fn entries(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A running simulator; stops when dropped.
pub struct SimHandle {
    pub url: String,
    pub cert_pem: String,
    pub guest_tmp: TempDir,
    _tools: TempDir,
    _rt: tokio::runtime::Runtime,
}

pub fn vm(name: &str) -> VmSpec {
    VmSpec {
        name: name.into(),
        netns: None,
        powered_on: true,
        tools_running: true,
    }
}

/// Start a simulator with these VMs (programs run on this host) over TLS.
pub fn start_sim(vms: Vec<VmSpec>) -> SimHandle {
    let guest_tmp = TempDir::new("guest");
    let tools = TempDir::new("tools");
    let cfg = SimConfig {
        vms,
        guest_users: vec![
            ("root".into(), GUEST_PASSWORD.into()),
            ("nobody".into(), GUEST_PASSWORD.into()),
        ],
        vc_user: Some((VC_USER.into(), VC_PASSWORD.into())),
        tmp_dir: Some(guest_tmp.0.clone()),
        state_dir: Some(tools.0.clone()),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let tls = SelfSigned::generate().unwrap();
    let cert_pem = tls.cert_pem.clone();
    rt.spawn(async move {
        if let Err(e) = reset_vcsim::serve(Sim::new(cfg), listener, Some(tls)).await {
            eprintln!("vcsim stopped: {e}");
        }
    });
    SimHandle {
        url: format!("https://{addr}/sdk"),
        cert_pem,
        guest_tmp,
        _tools: tools,
        _rt: rt,
    }
}

pub fn fake_agent() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fake-agent.sh")
}

/// The controller command with vCenter and guest credentials in its environment.
pub fn controller(url: &str, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_reset-controller"));
    c.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("GOVC_URL", url)
        .env("GOVC_USERNAME", VC_USER)
        .env("GOVC_PASSWORD", VC_PASSWORD)
        .env("VM_USER_NAME", "root")
        .env("VM_PASSWORD", GUEST_PASSWORD)
        .env("RUST_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// Run with a hard time limit (kills on overrun and fails the test).
pub fn run_bounded(mut c: Command, limit: Duration) -> (Output, Duration) {
    let t0 = Instant::now();
    let child = c.spawn().expect("spawn reset-controller");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => (out.unwrap(), t0.elapsed()),
        Err(_) => {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            panic!("reset-controller did not finish within {limit:?}");
        }
    }
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}
