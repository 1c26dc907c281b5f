//! A real Prometheus (Debian's `prometheus` package) for the tests and the demo: its own
//! configuration and data directory in a temporary folder, scraping the targets it is given
//! every second, listening on 127.0.0.1:9090 inside a lab namespace (or wherever it is told),
//! killed and its folder removed on drop. [`Prometheus::query`] asks its HTTP API as a user
//! would with curl.
//!
//! Must not: touch a Prometheus of the machine (it shares no file, port or namespace with
//! one), or outlive its guard.
use std::{
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::Value;

use crate::guard::{Guard, Pumped};
use crate::lab::Netns;
use crate::sim::TempDir;

/// Where Debian installs it.
pub const BINARY: &str = "/usr/bin/prometheus";
/// The address it listens on unless told otherwise (inside its namespace).
pub const LISTEN: &str = "127.0.0.1:9090";

/// What a Prometheus scrapes and where it runs; see [`Prometheus::builder`].
pub struct PrometheusBuilder {
    jobs: Vec<(String, Vec<String>)>,
    inside: Option<String>,
    listen: String,
    tmp_prefix: String,
}

impl PrometheusBuilder {
    /// Scrape `targets` (`HOST:PORT`, path /metrics) every second as job `job`.
    pub fn scrape(mut self, job: &str, targets: &[&str]) -> Self {
        self.jobs.push((
            job.to_string(),
            targets.iter().map(|t| t.to_string()).collect(),
        ));
        self
    }

    /// Run inside `ns` (e.g. a lab's caller namespace, where the lab's targets are reached).
    pub fn inside(mut self, ns: &Netns) -> Self {
        self.inside = Some(ns.name().into());
        self
    }

    /// Listen on `addr` instead of [`LISTEN`].
    pub fn listen(mut self, addr: &str) -> Self {
        self.listen = addr.into();
        self
    }

    /// The prefix of its temporary folder (the demo names its own).
    pub fn tmp_prefix(mut self, prefix: &str) -> Self {
        self.tmp_prefix = prefix.into();
        self
    }

    /// The configuration file it is given.
    pub fn config(&self) -> String {
        let mut c = String::from(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\nscrape_configs:\n",
        );
        for (job, targets) in &self.jobs {
            let list: Vec<String> = targets.iter().map(|t| format!("\"{t}\"")).collect();
            c.push_str(&format!(
                "  - job_name: \"{job}\"\n    static_configs:\n      - targets: [{}]\n",
                list.join(", ")
            ));
        }
        c
    }

    /// Starts it and waits (at most 30 s) until it says it is ready.
    pub fn try_start(self) -> std::io::Result<Prometheus> {
        let dir = TempDir::new(&self.tmp_prefix)?;
        let config = dir.path().join("prometheus.yml");
        std::fs::write(&config, self.config())?;
        let mut cmd = match &self.inside {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, BINARY]);
                c
            }
            None => Command::new(BINARY),
        };
        cmd.arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={}", self.listen))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = Guard::try_spawn(&mut cmd, "prometheus")?;
        let log = Pumped::new(child.stderr.take().expect("piped stderr"));
        let mut p = Prometheus {
            url: format!("http://{}", self.listen),
            inside: self.inside,
            log,
            child,
            _dir: dir,
        };
        let t0 = Instant::now();
        while p.get("/-/ready").is_err() {
            if let Ok(Some(st)) = p.child.try_wait() {
                return Err(std::io::Error::other(format!(
                    "prometheus exited ({st}) before it was ready:\n{}",
                    p.log.text()
                )));
            }
            if t0.elapsed() > Duration::from_secs(30) {
                return Err(std::io::Error::other(format!(
                    "prometheus was not ready within 30 s:\n{}",
                    p.log.text()
                )));
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(p)
    }

    /// Starts it, panicking with its log when it cannot.
    pub fn start(self) -> Prometheus {
        self.try_start()
            .unwrap_or_else(|e| panic!("start prometheus: {e}"))
    }
}

/// A running Prometheus.
pub struct Prometheus {
    /// `http://127.0.0.1:9090`: its base URL, as PROM_PROBE_URL takes it (from its namespace).
    pub url: String,
    inside: Option<String>,
    log: Pumped,
    child: Guard,
    _dir: TempDir,
}

impl Prometheus {
    /// What to scrape: add jobs, then [`PrometheusBuilder::start`].
    pub fn builder() -> PrometheusBuilder {
        PrometheusBuilder {
            jobs: Vec::new(),
            inside: None,
            listen: LISTEN.into(),
            tmp_prefix: "reset-peer-prometheus".into(),
        }
    }

    /// Whether Debian's package is installed (`cargo xtask setup` installs it).
    pub fn installed() -> bool {
        std::path::Path::new(BINARY).exists()
    }

    /// curl in its namespace: `-sS --max-time 5` plus `args`; the body, or curl's error.
    fn curl(&self, args: &[&str]) -> Result<String, String> {
        let mut c = match &self.inside {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "curl"]);
                c
            }
            None => Command::new("curl"),
        };
        let out = c
            .args(["-sS", "--max-time", "5"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("curl: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }

    /// GET `path` (`/-/ready`), failing on an HTTP error.
    pub fn get(&self, path: &str) -> Result<String, String> {
        self.curl(&["--fail", &format!("{}{path}", self.url)])
    }

    /// An instant query through `/api/v1/query`: the answer's `data`, or its error.
    pub fn query(&self, promql: &str) -> Result<Value, String> {
        let url = format!("{}/api/v1/query", self.url);
        let body = self.curl(&["-G", "--data-urlencode", &format!("query={promql}"), &url])?;
        let v: Value = serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
        if v["status"] == "success" {
            Ok(v["data"].clone())
        } else {
            Err(body)
        }
    }

    /// The value of a query that gives one series or a scalar.
    pub fn value(&self, promql: &str) -> Option<f64> {
        let data = self.query(promql).ok()?;
        let raw = match data["resultType"].as_str()? {
            "scalar" => &data["result"][1],
            _ => &data["result"][0]["value"][1],
        };
        raw.as_str()?.parse().ok()
    }

    /// Waits until job `job` has been scraped successfully (`up == 1`), at most `limit`.
    pub fn wait_scraped(&self, job: &str, limit: Duration) -> Result<(), String> {
        self.wait_value(&format!("up{{job=\"{job}\"}}"), limit, |v| v == 1.0)
    }

    /// Waits until `promql` gives one value that `ok` accepts, at most `limit` (e.g. until a
    /// counter has the two samples `increase()` needs).
    pub fn wait_value(
        &self,
        promql: &str,
        limit: Duration,
        ok: impl Fn(f64) -> bool,
    ) -> Result<(), String> {
        let t0 = Instant::now();
        while !self.value(promql).is_some_and(&ok) {
            if t0.elapsed() > limit {
                return Err(format!(
                    "prometheus gave no accepted value for {promql} within {limit:?}: {:?}\n{}",
                    self.query(promql),
                    self.log.text()
                ));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(())
    }

    /// What it logged (warnings and errors).
    pub fn log(&self) -> String {
        self.log.text()
    }
}
