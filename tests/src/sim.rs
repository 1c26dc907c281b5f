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
    child: Child,
    /// The URL vcsim printed on its first line (`https://127.0.0.1:PORT/sdk`).
    pub url: String,
    /// The guests' temporary directory (`--tmp-dir`); the guests share this filesystem.
    pub guest_tmp: TempDir,
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
        let mut c = match inside {
            Some(ns) => ns.command(crate::bin("vcsim")),
            None => Command::new(crate::bin("vcsim")),
        };
        c.args(["--listen", "127.0.0.1:0"]);
        for (name, ns) in vms {
            c.arg("--vm").arg(format!("{name}={}", ns.name()));
        }
        let (gu, gp) = creds.guest;
        let (vu, vp) = creds.vcenter;
        c.args([
            "--guest-user",
            &format!("{gu}:{gp}"),
            "--vc-user",
            &format!("{vu}:{vp}"),
        ])
        .arg("--tmp-dir")
        .arg(guest_tmp.path())
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
        Ok(Vcsim {
            child,
            url,
            guest_tmp,
        })
    }
}

impl Drop for Vcsim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
