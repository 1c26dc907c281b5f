//! The vCenter simulator (`vcsim`) as the harness's one way to stand up vCenter: started in
//! this namespace or inside a lab namespace, serving lab VMs (or VMs on this host), with one
//! set of accounts ([`Credentials`]), killed on drop; its guests' temporary directory and
//! process table are removed on drop too. [`Vcsim::controller`] is the controller command
//! wired to it; [`VcsimBuilder::request_log`] has it write down every request it answers.
//! Used by every controller test and by `cargo xtask demo`.
use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
};

use crate::guard::Guard;
use crate::lab::{Lab, Netns};

/// A fresh directory under the system temp dir, removed (with its contents) on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(prefix: &str) -> std::io::Result<TempDir> {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("{prefix}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&p)?;
        Ok(TempDir(p))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// The names of the entries in the directory, sorted.
    pub fn entries(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&self.0)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The test accounts' passwords: what leak checks look for.
pub const VC_PASSWORD: &str = "vc-Test-Secret-5d1";
pub const GUEST_PASSWORD: &str = "guest-Test-Secret-8b4";

/// The accounts vcsim accepts and the controller logs in with.
#[derive(Debug, Clone)]
pub struct Credentials {
    pub vc_user: String,
    pub vc_password: String,
    pub guest_user: String,
    pub guest_password: String,
}

impl Credentials {
    /// The fixed test accounts.
    pub fn test() -> Credentials {
        Credentials {
            vc_user: "administrator@vsphere.local".into(),
            vc_password: VC_PASSWORD.into(),
            guest_user: "root".into(),
            guest_password: GUEST_PASSWORD.into(),
        }
    }

    /// The test accounts with fresh random passwords (the demo's; never printed).
    pub fn random() -> Credentials {
        let secret = || {
            let mut buf = [0u8; 12];
            if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
                let _ = std::io::Read::read_exact(&mut f, &mut buf);
            }
            buf.iter().map(|b| format!("{b:02x}")).collect::<String>()
        };
        Credentials {
            vc_password: secret(),
            guest_password: secret(),
            ..Credentials::test()
        }
    }

    /// Whether `text` holds either password.
    pub fn leaked_in(&self, text: &str) -> bool {
        text.contains(&self.vc_password) || text.contains(&self.guest_password)
    }
}

/// What vcsim serves; see [`Vcsim::builder`].
pub struct VcsimBuilder {
    /// (name, namespace of its programs; none: this host).
    vms: Vec<(String, Option<String>)>,
    flags: Vec<String>,
    inside: Option<String>,
    creds: Credentials,
    tmp_prefix: String,
    request_log: bool,
}

impl VcsimBuilder {
    /// A VM named `name` backed by `lab`'s VM namespace.
    pub fn vm(mut self, name: &str, lab: &Lab) -> Self {
        self.vms.push((name.into(), Some(lab.vm.name().into())));
        self
    }

    /// A VM whose guest programs run on this host (no namespace, no root needed).
    pub fn host_vm(mut self, name: &str) -> Self {
        self.vms.push((name.into(), None));
        self
    }

    /// `name` is powered off.
    pub fn powered_off(mut self, name: &str) -> Self {
        self.flags.extend(["--powered-off".into(), name.into()]);
        self
    }

    /// VMware Tools is not running in `name`.
    pub fn tools_not_running(mut self, name: &str) -> Self {
        self.flags
            .extend(["--tools-not-running".into(), name.into()]);
        self
    }

    /// Another guest account, with the guest password.
    pub fn guest_user(mut self, user: &str) -> Self {
        let pw = &self.creds.guest_password;
        self.flags
            .extend(["--guest-user".into(), format!("{user}:{pw}")]);
        self
    }

    /// Any other vcsim argument, as is.
    pub fn arg(mut self, arg: &str) -> Self {
        self.flags.push(arg.into());
        self
    }

    /// Run vcsim (and the controllers it hands out) inside `ns`, e.g. a lab's caller
    /// namespace, the only place that reaches the lab's service.
    pub fn inside(mut self, ns: &Netns) -> Self {
        self.inside = Some(ns.name().into());
        self
    }

    /// Other accounts than [`Credentials::test`].
    pub fn credentials(mut self, creds: Credentials) -> Self {
        self.creds = creds;
        self
    }

    /// Keep a request log (`--request-log`): one JSON line per answered request, at
    /// [`Vcsim::request_log`]. [`Vcsim::start_again`] starts it afresh.
    pub fn request_log(mut self) -> Self {
        self.request_log = true;
        self
    }

    /// The prefix of its temporary directories (the demo's name them).
    pub fn tmp_prefix(mut self, prefix: &str) -> Self {
        self.tmp_prefix = prefix.into();
        self
    }

    /// Starts vcsim.
    pub fn try_start(self) -> std::io::Result<Vcsim> {
        let guest_tmp = TempDir::new(&self.tmp_prefix)?;
        let tools = TempDir::new(&format!("{}-tools", self.tmp_prefix))?;
        let cert = tools.path().join("cert.pem");
        // Beside the process table, whose reader takes only `*.proc` files.
        let request_log = self
            .request_log
            .then(|| tools.path().join("requests.jsonl"));
        let c = &self.creds;
        let mut args = vec![
            "--state-dir".to_string(),
            tools.path().display().to_string(),
            "--cert-out".into(),
            cert.display().to_string(),
            "--guest-user".into(),
            format!("{}:{}", c.guest_user, c.guest_password),
            "--vc-user".into(),
            format!("{}:{}", c.vc_user, c.vc_password),
            "--tmp-dir".into(),
            guest_tmp.path().display().to_string(),
        ];
        for (name, ns) in &self.vms {
            let vm = ns
                .as_ref()
                .map_or(name.clone(), |ns| format!("{name}={ns}"));
            args.extend(["--vm".into(), vm]);
        }
        if let Some(log) = &request_log {
            args.extend(["--request-log".into(), log.display().to_string()]);
        }
        args.extend(self.flags);
        let mut sim = Vcsim {
            child: None,
            url: String::new(),
            guest_tmp,
            cert,
            request_log,
            _tools: tools,
            inside: self.inside,
            args,
            creds: self.creds,
        };
        sim.spawn("127.0.0.1:0")?;
        Ok(sim)
    }

    /// Starts vcsim, panicking when it cannot.
    pub fn start(self) -> Vcsim {
        self.try_start().expect("start vcsim")
    }
}

pub struct Vcsim {
    child: Option<Guard>,
    /// The URL vcsim printed on its first line (`https://127.0.0.1:PORT/sdk`; `http://` with
    /// `--plain-http`).
    pub url: String,
    /// The guests' temporary directory (`--tmp-dir`); the guests share this filesystem.
    pub guest_tmp: TempDir,
    /// Its self-signed certificate (PEM), for GOVC_TLS_CA_CERTS.
    pub cert: PathBuf,
    /// Its request log, when built with [`VcsimBuilder::request_log`].
    pub request_log: Option<PathBuf>,
    /// The guests' process table (vcsim's "VMware Tools" state, `--state-dir`), kept
    /// across [`Vcsim::stop`] + [`Vcsim::start_again`].
    _tools: TempDir,
    /// The namespace vcsim runs in, if any.
    inside: Option<String>,
    /// Its arguments except `--listen`.
    args: Vec<String>,
    creds: Credentials,
}

impl Vcsim {
    /// What to serve: add VMs, then [`VcsimBuilder::start`].
    pub fn builder() -> VcsimBuilder {
        VcsimBuilder {
            vms: Vec::new(),
            flags: Vec::new(),
            inside: None,
            creds: Credentials::test(),
            tmp_prefix: "vcsim".into(),
            request_log: false,
        }
    }

    /// vcsim in this namespace serving each lab's VM under its name, with the test accounts.
    pub fn serving(vms: &[(&str, &Lab)]) -> Vcsim {
        vms.iter()
            .fold(Vcsim::builder(), |b, (name, lab)| b.vm(name, lab))
            .start()
    }

    /// The accounts it accepts.
    pub fn credentials(&self) -> &Credentials {
        &self.creds
    }

    fn spawn(&mut self, listen: &str) -> std::io::Result<()> {
        let mut c = match &self.inside {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(crate::bin("vcsim"));
                c
            }
            None => Command::new(crate::bin("vcsim")),
        };
        c.args(["--listen", listen])
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = Guard::try_spawn(&mut c, "vcsim")?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped stdout")).read_line(&mut line)?;
        let url = line.trim().to_owned();
        // http:// with `--plain-http`.
        if !(url.starts_with("https://127.0.0.1:") || url.starts_with("http://127.0.0.1:")) {
            return Err(std::io::Error::other(format!(
                "vcsim's first line should be its URL, got {url:?}"
            )));
        }
        self.url = url;
        self.child = Some(child);
        Ok(())
    }

    /// Kills vcsim (vCenter goes away). Guest programs keep running, as in real guests.
    pub fn stop(&mut self) {
        drop(self.child.take());
    }

    /// Starts vcsim again on the same address, with the same VMs and guest state (a
    /// vCenter restart: sessions are gone, guests and their process tables are not).
    pub fn start_again(&mut self) -> std::io::Result<()> {
        let addr = self
            .url
            .split_once("://")
            .map_or(self.url.as_str(), |(_, rest)| rest)
            .trim_end_matches("/sdk")
            .to_string();
        let old = self.url.clone();
        self.spawn(&addr)?;
        if self.url != old {
            return Err(std::io::Error::other(format!(
                "vcsim came back at {} instead of {old}",
                self.url
            )));
        }
        Ok(())
    }

    /// Entries left in the guests' temporary directory.
    pub fn guest_files(&self) -> Vec<PathBuf> {
        self.guest_tmp
            .entries()
            .into_iter()
            .map(|e| self.guest_tmp.path().join(e))
            .collect()
    }

    /// `reset-controller ARGS` pointed at this vcsim, in the namespace vcsim runs in: see
    /// [`crate::ctl::command`].
    pub fn controller(&self, args: &[&str]) -> Command {
        let mut c = crate::ctl::command(&self.url, &self.creds, self.inside.as_deref());
        c.args(args);
        c
    }
}
