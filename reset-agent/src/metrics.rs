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

/// Serves GET /metrics until the task is aborted.
pub async fn serve(listener: TcpListener, metrics: Metrics) {
    loop {
        let Ok((mut s, _)) = listener.accept().await else {
            continue;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_parseable_text_with_labels() {
        let m = Metrics::new("vm1", 80, Duration::from_millis(100));
        m.update(Snapshot {
            flows_seen: 10,
            flows_selected: 3,
            resets_observed: 3,
            proxy_accepted: 3,
            resets_issued: 3,
            held: 1,
            window_open: true,
        });
        m.update(Snapshot {
            flows_seen: 12,
            flows_selected: 4,
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
}
