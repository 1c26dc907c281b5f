//! Test support: an HTTP server on 127.0.0.1:0 standing in for Prometheus' query API, for the
//! probe's unit tests (the real Prometheus is in tests/tests/prom_probe.rs).

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;
use tokio::sync::mpsc::UnboundedReceiver;

use crate::config::{PromMode, PromProbeInputs, PromProbeSettings};

/// The probe of `query > 0` against `base`.
pub fn settings(
    base: &str,
    query: &str,
    mode: PromMode,
    interval_ms: u64,
    timeout_ms: u64,
) -> PromProbeSettings {
    PromProbeSettings::resolve(&PromProbeInputs {
        url: Some(base.into()),
        query: Some(query.into()),
        comparator: Some(">".into()),
        value: Some(0.0),
        mode,
        interval_ms,
        timeout_ms,
    })
    .unwrap()
}

/// Serves one answer per connection: the n-th (from 0) gets `reply(n)` after `delay`. Returns
/// the base URL (`http://127.0.0.1:PORT/prom`) and the request heads as they arrive.
pub async fn server(
    reply: impl Fn(usize) -> String + Send + Sync + 'static,
    delay: Duration,
) -> (String, UnboundedReceiver<String>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let reply = Arc::new(reply);
    tokio::spawn(async move {
        let mut n = 0;
        while let Ok((mut s, _)) = l.accept().await {
            let (tx, reply, i) = (tx.clone(), reply.clone(), n);
            n += 1;
            tokio::spawn(async move {
                let mut b = vec![0u8; 4096];
                let got = s.read(&mut b).await.unwrap_or(0);
                let _ = tx.send(String::from_utf8_lossy(&b[..got]).into_owned());
                tokio::time::sleep(delay).await;
                let _ = s.write_all(reply(i).as_bytes()).await;
            });
        }
    });
    (format!("http://127.0.0.1:{port}/prom"), rx)
}

/// An HTTP 200 answer whose JSON body is `body`.
pub fn ok(body: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// The query API's answer with the scalar `v` (as Prometheus writes it: a string).
pub fn scalar(v: &str) -> String {
    ok(&format!(
        r#"{{"status":"success","data":{{"resultType":"scalar","result":[1,"{v}"]}}}}"#
    ))
}
