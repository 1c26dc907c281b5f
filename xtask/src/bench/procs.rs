//! The long-lived processes a bench run starts inside the lab namespaces (target service,
//! HAProxy, toxy; reset-agent in agent.rs). Each long-lived one is a guard that kills its process on drop;
//! readiness is a line the process prints, never a sleep.
use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Stdio},
    sync::{Arc, Mutex, mpsc},
    time::{Duration, Instant},
};

use anyhow::{Context, bail};
use nix::{sys::signal, unistd::Pid};
use reset_tests::lab::Netns;

/// A background process in a namespace, killed on drop.
pub struct Bg {
    name: String,
    child: Option<Child>,
    output: Arc<Mutex<String>>,
    pub spawned_at: Instant,
    pub ready_at: Option<Instant>,
}

impl Bg {
    /// Starts `program args` in `ns` and waits (up to `limit`) for a stdout or stderr line that
    /// contains `ready`.
    pub fn start(
        ns: &Netns,
        program: &Path,
        args: &[String],
        env: &[(&str, &str)],
        ready: &'static str,
        limit: Duration,
    ) -> anyhow::Result<Bg> {
        let name = program
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut cmd = ns.command(program);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let spawned_at = Instant::now();
        let mut child = cmd
            .spawn()
            .with_context(|| format!("cannot start {}", program.display()))?;
        let output = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let (out, tx) = (output.clone(), tx.clone());
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if line.contains(ready) {
                        let _ = tx.send(Instant::now());
                    }
                    let mut g = out.lock().unwrap_or_else(|e| e.into_inner());
                    g.push_str(&line);
                    g.push('\n');
                }
            });
        }
        let mut bg = Bg {
            name,
            child: Some(child),
            output,
            spawned_at,
            ready_at: None,
        };
        match rx.recv_timeout(limit) {
            Ok(at) => bg.ready_at = Some(at),
            Err(_) => {
                let exited = bg.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
                std::thread::sleep(Duration::from_millis(100));
                bail!(
                    "{} did not print {ready:?} within {limit:?} (exit: {exited:?}); output:\n{}",
                    bg.name,
                    bg.output()
                );
            }
        }
        Ok(bg)
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn output(&self) -> String {
        self.output
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Sends SIGTERM and waits up to `limit` for the exit (then kills). Returns when it exited.
    pub fn terminate(&mut self, limit: Duration) -> Option<Instant> {
        let mut child = self.child.take()?;
        let pid = Pid::from_raw(i32::try_from(child.id()).ok()?);
        let _ = signal::kill(pid, signal::Signal::SIGTERM);
        let start = Instant::now();
        loop {
            if let Ok(Some(_)) = child.try_wait() {
                return Some(Instant::now());
            }
            if start.elapsed() > limit {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl Drop for Bg {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Built binaries and scratch space.
pub struct Paths {
    pub bin: PathBuf,
    pub out: PathBuf,
    pub node_modules: Option<PathBuf>,
}

/// The target service on :80; with `pin`, on CPU 0 only (wrk is then on CPU 1).
pub fn service(vm: &Netns, paths: &Paths, pin: bool) -> anyhow::Result<Bg> {
    let exe = paths.bin.join("target-service");
    let port = ["--port".to_owned(), "80".to_owned()];
    if pin {
        let taskset = which("taskset").context("taskset is not installed (util-linux)")?;
        let mut args = vec![
            "-c".to_owned(),
            "0".to_owned(),
            exe.to_string_lossy().into_owned(),
        ];
        args.extend(port);
        return Bg::start(
            vm,
            &taskset,
            &args,
            &[],
            "listening",
            Duration::from_secs(10),
        );
    }
    Bg::start(vm, &exe, &port, &[], "listening", Duration::from_secs(10))
}

/// HAProxy in TCP mode on `port`, forwarding to the service on :80 in the same namespace.
pub fn haproxy(vm: &Netns, paths: &Paths, port: u16) -> anyhow::Result<Bg> {
    let cfg = paths.out.join("tmp/haproxy.cfg");
    std::fs::write(
        &cfg,
        format!(
            "global\n  maxconn 9000\n  nbthread 1\ndefaults\n  mode tcp\n  timeout connect 5s\n  \
             timeout client 60s\n  timeout server 60s\nfrontend fe\n  bind 198.18.0.2:{port}\n  \
             default_backend be\nbackend be\n  server s1 127.0.0.1:80\n"
        ),
    )?;
    let haproxy = which("haproxy").context("haproxy is not installed (Debian package haproxy)")?;
    // -db: stay in the foreground; -V prints the polling mechanism once configured; the port
    // probe below is the readiness signal.
    let bg = Bg::start(
        vm,
        &haproxy,
        &[
            "-db".into(),
            "-V".into(),
            "-f".into(),
            cfg.to_string_lossy().into_owned(),
        ],
        &[],
        "Using epoll",
        Duration::from_secs(10),
    )?;
    wait_port(vm, port)?;
    Ok(bg)
}

/// Waits (up to 10 s) until something accepts TCP connections on 198.18.0.2:`port` in `ns`.
pub fn wait_port(ns: &Netns, port: u16) -> anyhow::Result<()> {
    let addr = std::net::SocketAddr::from(([198, 18, 0, 2], port));
    let path = format!("/run/netns/{}", ns.name());
    std::thread::scope(|s| {
        s.spawn(|| -> anyhow::Result<()> {
            let f = std::fs::File::open(&path).with_context(|| format!("open {path}"))?;
            nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).context("setns")?;
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(10) {
                if std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                    return Ok(());
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            bail!("nothing accepts connections on {addr} after 10 s")
        })
        .join()
        .map_err(|_| anyhow::anyhow!("port probe thread panicked"))?
    })
}

/// toxy (npm) on `port`: an HTTP proxy to the service with an `abort` poison after `delay_ms`,
/// applied with the `probability` rule at `percent` (no poison at 0, no rule at 100).
pub fn toxy(
    vm: &Netns,
    paths: &Paths,
    port: u16,
    percent: f64,
    delay_ms: u64,
) -> anyhow::Result<Bg> {
    let nm = paths
        .node_modules
        .as_ref()
        .context("toxy is not installed (npm install failed, see above)")?;
    let script = paths.out.join(format!("tmp/toxy-{port}.js"));
    // toxy's probability rule treats 0 as 50 (`+n || 50`), so 0 means "no poison".
    let poison = if percent <= 0.0 {
        String::new()
    } else if percent >= 100.0 {
        format!("proxy.poison(toxy.poisons.abort({{ delay: {delay_ms} }}));\n")
    } else {
        format!(
            "proxy.poison(toxy.poisons.abort({{ delay: {delay_ms} }})).withRule(toxy.rules.probability({percent}));\n"
        )
    };
    std::fs::write(
        &script,
        format!(
            "const toxy = require('toxy');\nconst proxy = toxy();\n\
             proxy.forward('http://127.0.0.1:80');\n{poison}proxy.all('/');\nproxy.all('/*');\n\
             proxy.listen({port}, '198.18.0.2');\n\
             proxy.server.on('listening', () => console.log('toxy listening'));\n"
        ),
    )?;
    let node = which("node").context("node is not installed")?;
    let bg = Bg::start(
        vm,
        &node,
        &[script.to_string_lossy().into_owned()],
        &[("NODE_PATH", &nm.to_string_lossy())],
        "toxy listening",
        Duration::from_secs(15),
    )?;
    wait_port(vm, port)?;
    Ok(bg)
}

pub fn which(prog: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(prog))
            .find(|p| p.is_file())
    })
}
