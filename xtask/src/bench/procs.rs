//! The processes a bench run starts inside the lab namespaces (target service, reset-agent,
//! HAProxy, toxy, wrk). Each long-lived one is a guard that kills its process on drop;
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
use serde_json::Value;

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

pub fn service(vm: &Netns, paths: &Paths) -> anyhow::Result<Bg> {
    Bg::start(
        vm,
        &paths.bin.join("target-service"),
        &["--port".into(), "80".into()],
        &[],
        "listening",
        Duration::from_secs(10),
    )
}

/// reset-agent settings for one run.
#[derive(Clone, Debug)]
pub struct AgentArgs {
    pub mode: &'static str,
    pub toxicity: f64,
    pub reset_timeout_ms: u64,
    pub selection: &'static str,
}

/// A reset-agent run with its timings and report.
pub struct Agent {
    bg: Bg,
    report_path: PathBuf,
}

/// What one agent run measured about itself.
pub struct AgentEnd {
    pub report: Option<Value>,
    /// spawn -> "fault active".
    pub install: Duration,
    /// SIGTERM -> exit.
    pub remove: Option<Duration>,
    pub output: String,
}

impl Agent {
    pub fn start(vm: &Netns, paths: &Paths, a: &AgentArgs, tag: &str) -> anyhow::Result<Agent> {
        let report_path = paths.out.join(format!("tmp/agent-{tag}.json"));
        let _ = std::fs::remove_file(&report_path);
        let args: Vec<String> = [
            "run",
            "--toxicity",
            &a.toxicity.to_string(),
            "--reset-timeout",
            &a.reset_timeout_ms.to_string(),
            "--total-chaos-duration",
            "900",
            "--selection",
            a.selection,
            "--mode",
            a.mode,
            "--stream",
            "downstream",
            "--proxy-port",
            "8080",
            "--target-service-port",
            "80",
            "--network-interface",
            "ens160",
            "--report",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .chain([report_path.to_string_lossy().into_owned()])
        .collect();
        let bg = Bg::start(
            vm,
            &paths.bin.join("reset-agent"),
            &args,
            &[("RESET_AGENT_LOG", "info")],
            "fault active",
            Duration::from_secs(30),
        )?;
        Ok(Agent { bg, report_path })
    }

    pub fn pid(&self) -> Option<u32> {
        self.bg.pid()
    }

    /// Aborts the window (SIGTERM: held connections are reset at once) and reads the report.
    pub fn stop(mut self) -> AgentEnd {
        let install = self
            .bg
            .ready_at
            .map(|r| r - self.bg.spawned_at)
            .unwrap_or_default();
        let sent = Instant::now();
        let remove = self.bg.terminate(Duration::from_secs(30)).map(|t| t - sent);
        std::thread::sleep(Duration::from_millis(30));
        let report = std::fs::read_to_string(&self.report_path)
            .ok()
            .and_then(|s| serde_json::from_str(&s).ok());
        let _ = std::fs::remove_file(&self.report_path);
        AgentEnd {
            report,
            install,
            remove,
            output: self.bg.output(),
        }
    }
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

/// One wrk run's result.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Wrk {
    /// Successful (2xx/3xx) responses per second.
    pub ok_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub socket_errors: u64,
}

/// wrk from the caller namespace: 1 thread, `conns` connections, `secs` seconds.
pub fn wrk(caller: &Netns, url: &str, conns: u32, secs: f64, close: bool) -> anyhow::Result<Wrk> {
    let mut cmd = caller.command("wrk");
    cmd.args([
        "-t1",
        &format!("-c{conns}"),
        &format!("-d{secs}s"),
        "--timeout",
        "5s",
        "--latency",
    ]);
    if close {
        cmd.args(["-H", "Connection: close"]);
    }
    let out = cmd
        .arg(url)
        .stdin(Stdio::null())
        .output()
        .context("run wrk")?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "wrk failed: {}{}",
            text,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    parse_wrk(&text).with_context(|| format!("cannot parse wrk output:\n{text}"))
}

fn wrk_ms(v: &str) -> Option<f64> {
    let (num, unit) = v.split_at(v.find(|c: char| c.is_ascii_alphabetic())?);
    let n: f64 = num.parse().ok()?;
    Some(match unit {
        "us" => n / 1000.0,
        "ms" => n,
        "s" => n * 1000.0,
        "m" => n * 60_000.0,
        _ => return None,
    })
}

pub fn parse_wrk(text: &str) -> Option<Wrk> {
    let (mut requests, mut secs, mut non2xx, mut errors) = (None, None, 0u64, 0u64);
    let (mut p50, mut p99) = (f64::NAN, f64::NAN);
    for line in text.lines() {
        let t = line.trim();
        let w: Vec<&str> = t.split_whitespace().collect();
        if t.contains(" requests in ") {
            requests = w.first().and_then(|n| n.parse::<u64>().ok());
            secs = w
                .get(3)
                .map(|s| s.trim_end_matches(','))
                .and_then(wrk_ms)
                .map(|ms| ms / 1000.0);
        } else if t.starts_with("50%") {
            p50 = w.get(1).and_then(|v| wrk_ms(v)).unwrap_or(f64::NAN);
        } else if t.starts_with("99%") {
            p99 = w.get(1).and_then(|v| wrk_ms(v)).unwrap_or(f64::NAN);
        } else if let Some(rest) = t.strip_prefix("Non-2xx or 3xx responses:") {
            non2xx = rest.trim().parse().unwrap_or(0);
        } else if let Some(rest) = t.strip_prefix("Socket errors:") {
            errors = rest
                .split(',')
                .filter_map(|p| p.split_whitespace().last()?.parse::<u64>().ok())
                .sum();
        }
    }
    let (requests, secs) = (requests?, secs?);
    Some(Wrk {
        ok_per_s: requests.saturating_sub(non2xx) as f64 / secs,
        p50_ms: p50,
        p99_ms: p99,
        socket_errors: errors,
    })
}

/// utime+stime (seconds) and VmHWM (KiB) of a process.
pub fn cpu_and_hwm(pid: u32) -> Option<(f64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    // Fields after the command: state is index 0, utime 11, stime 12 (man 5 proc: 14, 15).
    let ticks = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    let hz = crate::sh::output(std::process::Command::new("getconf").arg("CLK_TCK"))
        .and_then(|s| s.trim().parse::<f64>().ok())
        .unwrap_or(100.0);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let hwm = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some((ticks as f64 / hz, hwm))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_wrk() {
        let out = "Running 1s test @ http://198.18.0.2:80/\n  1 threads and 32 connections\n  \
                   Latency Distribution\n     50%  452.00us\n     75%  1.02ms\n     99%    3.10ms\n  \
                   12000 requests in 1.00s, 1.2MB read\n  Socket errors: connect 0, read 3, write 0, timeout 1\n  \
                   Non-2xx or 3xx responses: 1000\nRequests/sec:  12000.00\n";
        let w = parse_wrk(out).expect("parsed");
        assert!((w.ok_per_s - 11000.0).abs() < 1e-6);
        assert!((w.p50_ms - 0.452).abs() < 1e-9);
        assert!((w.p99_ms - 3.1).abs() < 1e-9);
        assert_eq!(w.socket_errors, 4);
    }
}
