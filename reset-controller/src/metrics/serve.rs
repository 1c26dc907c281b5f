//! A minimal HTTP/1.1 responder for `/metrics`: one request per connection, GET or
//! HEAD, answered and closed. Pass it a bound listener and a shutdown future; it
//! returns when the future resolves.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

use super::{CONTENT_TYPE, Metrics};

/// Largest request head read.
const MAX_HEAD: usize = 8 << 10;
/// Time a client gets to send its request and read the answer.
const CONN_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the metrics endpoint could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// bind() failed.
    #[error(
        "cannot listen on METRICS_LISTEN {addr}: {source}: choose a free address and port (e.g. 127.0.0.1:9464, or port 0 for any)"
    )]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// Bind the metrics listener.
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })
}

/// Serve `metrics` on `listener` until `shutdown` resolves.
pub async fn serve(listener: TcpListener, metrics: Metrics, shutdown: impl Future<Output = ()>) {
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            r = listener.accept() => match r {
                Ok((stream, peer)) => {
                    let m = metrics.clone();
                    tokio::spawn(async move {
                        match tokio::time::timeout(CONN_TIMEOUT, answer(stream, &m)).await {
                            Ok(Ok(())) => {}
                            Ok(Err(e)) => tracing::debug!(%peer, error = %e, "metrics connection failed"),
                            Err(_) => tracing::debug!(%peer, "metrics connection timed out"),
                        }
                    });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "metrics accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        }
    }
}

/// What a request line asks for.
#[derive(Debug, PartialEq, Eq)]
enum Route {
    Metrics { head: bool },
    NotFound,
    BadMethod,
}

fn route(request_line: &str) -> Route {
    let mut parts = request_line.split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let head = match method {
        "GET" => false,
        "HEAD" => true,
        _ => return Route::BadMethod,
    };
    if path == "/metrics" || path == "/" {
        Route::Metrics { head }
    } else {
        Route::NotFound
    }
}

async fn answer(mut s: TcpStream, metrics: &Metrics) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() <= MAX_HEAD {
        match s.read(&mut chunk).await? {
            0 => break,
            n => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let text = String::from_utf8_lossy(&buf);
    let line = text.lines().next().unwrap_or("");
    let (status, ctype, body, head) = match route(line) {
        Route::Metrics { head } => ("200 OK", CONTENT_TYPE, metrics.render(), head),
        Route::NotFound => (
            "404 Not Found",
            "text/plain",
            "not found: metrics are at /metrics\n".into(),
            false,
        ),
        Route::BadMethod => (
            "405 Method Not Allowed",
            "text/plain",
            "use GET\n".into(),
            false,
        ),
    };
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    if !head {
        out.push_str(&body);
    }
    s.write_all(out.as_bytes()).await?;
    s.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(
            route("GET /metrics HTTP/1.1"),
            Route::Metrics { head: false }
        );
        assert_eq!(
            route("HEAD /metrics?x HTTP/1.1"),
            Route::Metrics { head: true }
        );
        assert_eq!(route("GET / HTTP/1.0"), Route::Metrics { head: false });
        assert_eq!(route("GET /other HTTP/1.1"), Route::NotFound);
        assert_eq!(route("POST /metrics HTTP/1.1"), Route::BadMethod);
        assert_eq!(route(""), Route::BadMethod);
    }

    #[tokio::test]
    async fn serves_until_shutdown() {
        let m = Metrics::new();
        m.phase("web-01", super::super::Phase::Injecting);
        let l = bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
        let addr = l.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(serve(l, m, async {
            let _ = rx.await;
        }));
        let get = |path: &'static str| async move {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
                .await
                .unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).await.unwrap();
            out
        };
        let ok = get("/metrics").await;
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(ok.contains(CONTENT_TYPE));
        assert!(
            ok.contains("reset_peer_vm_phase{vm=\"web-01\",phase=\"injecting\"} 1"),
            "{ok}"
        );
        assert!(get("/nope").await.starts_with("HTTP/1.1 404"));
        let busy = bind(addr).await.unwrap_err();
        assert!(busy.to_string().contains("METRICS_LISTEN"), "{busy}");
        tx.send(()).unwrap();
        server.await.unwrap();
    }
}
