//! Decoding answers as Prometheus 2.42 writes them, and the transport's failures against
//! in-process servers on 127.0.0.1:0.

use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpListener;

use super::*;
use crate::config::{PromMode, PromProbeInputs};

const BASE: &str = "http://prom:9090";

fn ok(body: &str) -> Result<f64, EvalError> {
    decode(200, body.as_bytes(), "q", BASE)
}

#[test]
fn one_series_or_a_scalar_is_a_value() {
    let v = ok(
        r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1767225600.123,"12.5"]}]}}"#,
    );
    assert_eq!(v, Ok(12.5));
    let v =
        ok(r#"{"status":"success","data":{"resultType":"scalar","result":[1767225600.123,"-3"]}}"#);
    assert_eq!(v, Ok(-3.0));
    let v = ok(
        r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"job":"a"},"value":[1,"+Inf"]}]}}"#,
    );
    assert_eq!(v, Ok(f64::INFINITY));
}

#[test]
fn what_gives_no_single_value_is_an_error_that_says_why() {
    let kind = |body: &str| ok(body).unwrap_err().kind();
    assert_eq!(
        kind(r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#),
        "empty_vector"
    );
    let several = ok(
        r#"{"status":"success","data":{"resultType":"vector","result":[
        {"metric":{"__name__":"up","instance":"a:1","job":"x"},"value":[1,"1"]},
        {"metric":{"__name__":"up","instance":"b:2","job":"x"},"value":[1,"0"]}]}}"#,
    )
    .unwrap_err();
    assert_eq!(
        several,
        EvalError::SeveralSeries {
            query: "q".into(),
            count: 2,
            series: vec![
                r#"{__name__="up",instance="a:1",job="x"}"#.into(),
                r#"{__name__="up",instance="b:2",job="x"}"#.into()
            ],
        }
    );
    assert_eq!(
        kind(r#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#),
        "range_vector"
    );
    assert_eq!(
        kind(r#"{"status":"success","data":{"resultType":"string","result":[1,"x"]}}"#),
        "not_a_number"
    );
    assert_eq!(
        kind(r#"{"status":"success","data":{"resultType":"scalar","result":[1,"NaN"]}}"#),
        "nan"
    );
    assert_eq!(kind("<html>hi</html>"), "not_prometheus");
    assert_eq!(kind(r#"{"data":{}}"#), "not_prometheus");
}

#[test]
fn prometheus_errors_keep_its_message() {
    let bad = decode(
        400,
        br#"{"status":"error","errorType":"bad_data","error":"1:6: parse error: unclosed left parenthesis"}"#,
        "rate(",
        BASE,
    )
    .unwrap_err();
    assert_eq!(bad.kind(), "bad_query");
    let m = bad.to_string();
    assert!(
        m.contains("\"rate(\"")
            && m.contains("unclosed left parenthesis")
            && m.contains("PROM_PROBE_QUERY"),
        "{m}"
    );
    let busy = decode(
        503,
        br#"{"status":"error","errorType":"unavailable","error":"too many queries"}"#,
        "q",
        BASE,
    )
    .unwrap_err();
    assert_eq!(busy.kind(), "prometheus_error");
    let wrong_path = decode(404, b"404 page not found\n", "q", BASE).unwrap_err();
    assert_eq!(
        wrong_path,
        EvalError::Http {
            url: BASE.into(),
            status: 404,
            detail: "404 page not found".into()
        }
    );
}

fn settings(base: &str, timeout_ms: u64) -> PromProbeSettings {
    PromProbeSettings::resolve(&PromProbeInputs {
        url: Some(base.into()),
        query: Some("sum(up{job=\"a b\"})".into()),
        comparator: Some(">".into()),
        value: Some(0.0),
        mode: PromMode::End,
        interval_ms: 1000,
        timeout_ms,
    })
    .unwrap()
}

/// A server that answers each connection with `reply` after `delay`; returns its base URL and
/// a receiver of the request heads it saw.
async fn server(
    reply: &'static str,
    delay: Duration,
) -> (String, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut b = vec![0u8; 4096];
                let n = s.read(&mut b).await.unwrap_or(0);
                let _ = tx.send(String::from_utf8_lossy(&b[..n]).into_owned());
                tokio::time::sleep(delay).await;
                let _ = s.write_all(reply.as_bytes()).await;
            });
        }
    });
    (format!("http://127.0.0.1:{port}/prom"), rx)
}

#[tokio::test]
async fn asks_the_query_endpoint_and_reads_the_value() {
    let (base, mut seen) = server(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n{\"status\":\"success\",\"data\":{\"resultType\":\"scalar\",\"result\":[1,\"7\"]}}",
        Duration::ZERO,
    )
    .await;
    let c = Client::new(&settings(&base, 2000)).unwrap();
    assert_eq!(c.evaluate().await, Ok(7.0));
    let head = seen.recv().await.unwrap();
    assert!(
        head.starts_with(
            "GET /prom/api/v1/query?query=sum%28up%7Bjob%3D%22a+b%22%7D%29 HTTP/1.1\r\n"
        ),
        "{head}"
    );
}

#[tokio::test]
async fn unreachable_and_silent_servers() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    let gone = format!("http://127.0.0.1:{port}");
    let e = Client::new(&settings(&gone, 2000))
        .unwrap()
        .evaluate()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), "unreachable", "{e}");
    let m = e.to_string();
    assert!(m.contains(&gone) && m.contains("refused"), "{m}");

    let (silent, _seen) = server("", Duration::from_secs(10)).await;
    let t0 = std::time::Instant::now();
    let e = Client::new(&settings(&silent, 300))
        .unwrap()
        .evaluate()
        .await
        .unwrap_err();
    assert_eq!(e.kind(), "timeout", "{e}");
    assert!(e.to_string().contains("300 ms (PROM_PROBE_TIMEOUT)"), "{e}");
    assert!(t0.elapsed() < Duration::from_secs(3));
}
