//! Prometheus text-format metrics for one agent run (`--metrics-listen ADDR`, path /metrics).
//!
//! Kernel counters are copied in by the lifecycle every 500 ms and at the end (a scrape sees
//! values at most that old); proxy counters and the reset-delay histograms are live. Labels:
//! `host` (the guest's hostname) and `port` (TARGET_SERVICE_PORT).
use std::{
    net::SocketAddr,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering::Relaxed},
    },
    time::Duration,
};

use prometheus_client::{
    encoding::text::encode,
    metrics::{counter::Counter, gauge::Gauge, histogram::Histogram},
    registry::Registry,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};
use tracing::debug;

/// Counters that follow an absolute value read elsewhere (kernel counters).
#[derive(Default, Clone)]
struct Follow {
    counter: Counter,
    last: Arc<AtomicU64>,
}

impl Follow {
    fn set(&self, value: u64) {
        let last = self.last.swap(value, Relaxed);
        if value > last {
            self.counter.inc_by(value - last);
        }
    }
}

#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    flows_seen: Follow,
    flows_selected: Follow,
    requests_seen: Follow,
    requests_selected: Follow,
    resets_observed: Follow,
    proxy_accepted: Follow,
    resets_issued: Follow,
    held: Gauge,
    window_open: Gauge,
    delay: Histogram,
    delay_error: Histogram,
    reset_timeout_ms: f64,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

/// A snapshot of the counters the lifecycle pushes in.
#[derive(Debug, Default, Clone, Copy)]
pub struct Snapshot {
    pub flows_seen: u64,
    pub flows_selected: u64,
    pub requests_seen: u64,
    pub requests_selected: u64,
    pub resets_observed: u64,
    pub proxy_accepted: u64,
    pub resets_issued: u64,
    pub held: u64,
    pub window_open: bool,
}

impl Metrics {
    pub fn new(host: &str, port: u16, reset_timeout: Duration) -> Metrics {
        let mut root = Registry::with_prefix_and_labels(
            "reset_peer_agent",
            [
                ("host".into(), host.to_owned().into()),
                ("port".into(), port.to_string().into()),
            ]
            .into_iter(),
        );
        let m = Metrics {
            registry: Arc::new(Registry::default()),
            flows_seen: Follow::default(),
            flows_selected: Follow::default(),
            requests_seen: Follow::default(),
            requests_selected: Follow::default(),
            resets_observed: Follow::default(),
            proxy_accepted: Follow::default(),
            resets_issued: Follow::default(),
            held: Gauge::default(),
            window_open: Gauge::default(),
            delay: Histogram::new(prometheus_client::metrics::histogram::exponential_buckets(
                1.0, 2.0, 18,
            )),
            delay_error: Histogram::new([0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 50.0, 100.0, 1000.0]),
            reset_timeout_ms: reset_timeout.as_secs_f64() * 1000.0,
        };
        root.register(
            "flows_seen",
            "New flows to the target port inside the window (kernel)",
            m.flows_seen.counter.clone(),
        );
        root.register(
            "flows_selected",
            "Flows selected for reset (kernel)",
            m.flows_selected.counter.clone(),
        );
        root.register(
            "requests_seen",
            "HTTP/1.x requests to the target port inside the window (request unit; kernel in kernel mode)",
            m.requests_seen.counter.clone(),
        );
        root.register(
            "requests_selected",
            "Requests selected for reset (request unit)",
            m.requests_selected.counter.clone(),
        );
        root.register(
            "resets_observed",
            "First RST per selected flow seen on the wire (kernel)",
            m.resets_observed.counter.clone(),
        );
        root.register(
            "proxy_accepted",
            "Connections the proxy accepted from the redirect",
            m.proxy_accepted.counter.clone(),
        );
        root.register(
            "resets_issued",
            "Zero-linger closes towards callers",
            m.resets_issued.counter.clone(),
        );
        root.register(
            "held_connections",
            "Connections held by the proxy, waiting for their reset",
            m.held.clone(),
        );
        root.register(
            "window_open",
            "1 while the fault window is open",
            m.window_open.clone(),
        );
        root.register(
            "reset_delay_ms",
            "First request byte to reset, milliseconds (proxy clock)",
            m.delay.clone(),
        );
        root.register(
            "reset_delay_error_ms",
            "Reset delay minus RESET_TIMEOUT, milliseconds (proxy clock)",
            m.delay_error.clone(),
        );
        Metrics {
            registry: Arc::new(root),
            ..m
        }
    }

    pub fn update(&self, s: Snapshot) {
        self.flows_seen.set(s.flows_seen);
        self.flows_selected.set(s.flows_selected);
        self.requests_seen.set(s.requests_seen);
        self.requests_selected.set(s.requests_selected);
        self.resets_observed.set(s.resets_observed);
        self.proxy_accepted.set(s.proxy_accepted);
        self.resets_issued.set(s.resets_issued);
        self.held.set(s.held as i64);
        self.window_open.set(i64::from(s.window_open));
    }

    /// Records one reset's delay as the proxy measured it.
    pub fn observe_delay(&self, delay: Duration) {
        let ms = delay.as_secs_f64() * 1000.0;
        self.delay.observe(ms);
        self.delay_error
            .observe((ms - self.reset_timeout_ms).max(0.0));
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = encode(&mut out, &self.registry);
        out
    }
}

/// How long the accept loop waits after a failed accept: doubling from 10 ms to 1 s while
/// accept keeps failing (EMFILE/ENFILE when the held connections use every descriptor,
/// ENOBUFS, ...), back to the start after a success. Without it a persistent error spins a
/// core, and that core is the one the proxy needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Backoff(Duration);

impl Backoff {
    const FIRST: Duration = Duration::from_millis(10);
    const MAX: Duration = Duration::from_secs(1);

    fn new() -> Backoff {
        Backoff(Duration::ZERO)
    }

    /// The wait after one more failure.
    fn failed(&mut self) -> Duration {
        self.0 = (self.0 * 2).clamp(Self::FIRST, Self::MAX);
        self.0
    }

    fn succeeded(&mut self) {
        self.0 = Duration::ZERO;
    }
}

/// Serves GET /metrics until the task is aborted.
pub async fn serve(listener: TcpListener, metrics: Metrics) {
    let mut backoff = Backoff::new();
    loop {
        let mut s = match listener.accept().await {
            Ok((s, _)) => {
                backoff.succeeded();
                s
            }
            Err(e) => {
                let wait = backoff.failed();
                debug!(error = %e, ?wait, "metrics accept failed; retrying");
                tokio::time::sleep(wait).await;
                continue;
            }
        };
        let m = metrics.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 1024];
            let n = match tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await {
                Ok(Ok(n)) => n,
                _ => return,
            };
            let req = String::from_utf8_lossy(&buf[..n]);
            let (status, body) = if req.starts_with("GET /metrics") {
                ("200 OK", m.render())
            } else {
                ("404 Not Found", "try /metrics\n".to_owned())
            };
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Type: application/openmetrics-text; version=1.0.0; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            if let Err(e) = async {
                s.write_all(head.as_bytes()).await?;
                s.write_all(body.as_bytes()).await?;
                s.shutdown().await
            }
            .await
            {
                debug!(error = %e, "metrics scrape failed");
            }
        });
    }
}

/// Binds the metrics listener (before anything is installed, so a busy address is a clean error).
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Binds `addr` and serves this host's metrics there until the returned task is aborted.
pub async fn start(
    addr: SocketAddr,
    port: u16,
    reset_timeout: Duration,
) -> std::io::Result<(Metrics, tokio::task::JoinHandle<()>)> {
    let listener = bind(addr).await?;
    let host = nix::sys::utsname::uname()
        .map(|u| u.nodename().to_string_lossy().into_owned())
        .unwrap_or_default();
    let m = Metrics::new(&host, port, reset_timeout);
    let server = tokio::spawn(serve(listener, m.clone()));
    Ok((m, server))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_parseable_text_with_labels() {
        let m = Metrics::new("vm1", 80, Duration::from_millis(100));
        m.update(Snapshot {
            flows_seen: 10,
            flows_selected: 3,
            requests_seen: 20,
            requests_selected: 7,
            resets_observed: 3,
            proxy_accepted: 3,
            resets_issued: 3,
            held: 1,
            window_open: true,
        });
        m.update(Snapshot {
            flows_seen: 12,
            flows_selected: 4,
            requests_seen: 25,
            requests_selected: 9,
            resets_observed: 4,
            proxy_accepted: 4,
            resets_issued: 4,
            held: 0,
            window_open: false,
        });
        m.observe_delay(Duration::from_micros(100_300));
        let text = m.render();
        let e = reset_tests::metrics::parse(&text).unwrap_or_else(|e| panic!("{e}:\n{text}"));
        assert!(e.eof, "{text}");
        let labels = [("host", "vm1"), ("port", "80")];
        let value = |name: &str| {
            e.value(name, &labels)
                .unwrap_or_else(|| panic!("{name} missing in\n{text}"))
        };
        assert_eq!(value("reset_peer_agent_flows_seen_total"), 12.0);
        assert_eq!(value("reset_peer_agent_flows_selected_total"), 4.0);
        assert_eq!(value("reset_peer_agent_held_connections"), 0.0);
        assert_eq!(value("reset_peer_agent_reset_delay_error_ms_count"), 1.0);
    }

    #[test]
    fn accept_failures_back_off_then_reset() {
        let mut b = Backoff::new();
        let waits: Vec<u64> = (0..9).map(|_| b.failed().as_millis() as u64).collect();
        assert_eq!(waits, [10, 20, 40, 80, 160, 320, 640, 1000, 1000]);
        b.succeeded();
        assert_eq!(b.failed(), Backoff::FIRST);
    }

    /// A listener whose accept fails at once and for ever (a socket that never listened;
    /// accept then says EINVAL, as it says EMFILE while every descriptor is in use).
    fn failing_listener() -> TcpListener {
        use socket2::{Domain, Socket, Type};
        let sock = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        sock.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
            .unwrap();
        sock.set_nonblocking(true).unwrap();
        TcpListener::from_std(std::net::TcpListener::from(sock)).unwrap()
    }

    /// Ten seconds of serving on a failing accept, in paused (auto-advancing) time: they pass
    /// only if the loop sleeps between tries. A loop that spins never yields, its runtime
    /// never gets to the end, and the test fails after 10 s of real time.
    #[test]
    fn a_failing_accept_does_not_spin() {
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .start_paused(true)
                .build()
                .unwrap();
            rt.block_on(async {
                let listener = failing_listener();
                assert!(listener.accept().await.is_err(), "accept must fail here");
                let m = Metrics::new("vm1", 80, Duration::from_millis(100));
                let served = tokio::spawn(serve(listener, m));
                tokio::time::sleep(Duration::from_secs(10)).await;
                assert!(!served.is_finished());
                served.abort();
            });
            let _ = done.send(());
        });
        assert!(
            finished.recv_timeout(Duration::from_secs(10)).is_ok(),
            "the metrics accept loop spins on a failing accept"
        );
    }
}
