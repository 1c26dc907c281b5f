//! The vCenter simulator (`vcsim`) as a guard: started in this namespace or inside a lab
//! namespace, serving lab VMs, killed on drop; its guests' temporary directory is removed on
//! drop too. Used by the controller tests and by `cargo xtask demo`.
use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::atomic::{AtomicU32, Ordering},
};

use crate::lab::Netns;

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
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Accepted credentials, `(user, password)`.
pub struct Credentials<'a> {
    pub guest: (&'a str, &'a str),
    pub vcenter: (&'a str, &'a str),
}

pub struct Vcsim {
    child: Option<Child>,
    /// The URL vcsim printed on its first line (`https://127.0.0.1:PORT/sdk`).
    pub url: String,
    /// The guests' temporary directory (`--tmp-dir`); the guests share this filesystem.
    pub guest_tmp: TempDir,
    /// The guests' process table (vcsim's "VMware Tools" state, `--state-dir`), kept
    /// across [`Vcsim::stop`] + [`Vcsim::start_again`].
    _tools: TempDir,
    /// The namespace vcsim runs in, if any.
    inside: Option<String>,
    /// Its arguments except `--listen`.
    args: Vec<String>,
}

impl Vcsim {
    /// Starts vcsim serving `vms` (VM name, the lab namespace backing it). With `inside`, vcsim
    /// itself runs in that namespace (so a controller there can reach it on 127.0.0.1).
    pub fn start(
        inside: Option<&Netns>,
        vms: &[(&str, &Netns)],
        creds: &Credentials<'_>,
        tmp_prefix: &str,
    ) -> std::io::Result<Vcsim> {
        let guest_tmp = TempDir::new(tmp_prefix)?;
        let tools = TempDir::new(&format!("{tmp_prefix}-tools"))?;
        let mut args = vec![
            "--state-dir".to_string(),
            tools.path().display().to_string(),
        ];
        for (name, ns) in vms {
            args.extend(["--vm".to_string(), format!("{name}={}", ns.name())]);
        }
        let (gu, gp) = creds.guest;
        let (vu, vp) = creds.vcenter;
        args.extend([
            "--guest-user".to_string(),
            format!("{gu}:{gp}"),
            "--vc-user".to_string(),
            format!("{vu}:{vp}"),
            "--tmp-dir".to_string(),
            guest_tmp.path().display().to_string(),
        ]);
        let mut sim = Vcsim {
            child: None,
            url: String::new(),
            guest_tmp,
            _tools: tools,
            inside: inside.map(|n| n.name().to_string()),
            args,
        };
        sim.spawn("127.0.0.1:0")?;
        Ok(sim)
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
        let mut child = c.spawn()?;
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("piped stdout")).read_line(&mut line)?;
        let url = line.trim().to_owned();
        if !url.starts_with("https://127.0.0.1:") {
            let _ = child.kill();
            let _ = child.wait();
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
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts vcsim again on the same address, with the same VMs and guest state (a
    /// vCenter restart: sessions are gone, guests and their process tables are not).
    pub fn start_again(&mut self) -> std::io::Result<()> {
        let addr = self
            .url
            .trim_start_matches("https://")
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
}

impl Drop for Vcsim {
    fn drop(&mut self) {
        self.stop();
    }
}
