//! Decoding answers as Prometheus 2.42 writes them, and the transport's failures against
//! in-process servers on 127.0.0.1:0.

use std::time::Duration;

use tokio::net::TcpListener;

use super::*;
use crate::config::PromMode;
use crate::probe::prom::fake::{self, scalar, server};

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
    fake::settings(
        base,
        "sum(up{job=\"a b\"})",
        PromMode::End,
        1000,
        timeout_ms,
    )
}

#[tokio::test]
async fn asks_the_query_endpoint_and_reads_the_value() {
    let (base, mut seen) = server(|_| scalar("7"), Duration::ZERO).await;
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

/// Why one evaluation against `base` gives no value.
async fn failure(base: &str, timeout_ms: u64) -> EvalError {
    Client::new(&settings(base, timeout_ms))
        .unwrap()
        .evaluate()
        .await
        .unwrap_err()
}

#[tokio::test]
async fn unreachable_and_silent_servers() {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    drop(l);
    let gone = format!("http://127.0.0.1:{port}");
    let e = failure(&gone, 2000).await;
    assert_eq!(e.kind(), "unreachable", "{e}");
    let m = e.to_string();
    assert!(m.contains(&gone) && m.contains("refused"), "{m}");

    let (silent, _seen) = server(|_| String::new(), Duration::from_secs(10)).await;
    let t0 = std::time::Instant::now();
    let e = failure(&silent, 300).await;
    assert_eq!(e.kind(), "timeout", "{e}");
    assert!(e.to_string().contains("300 ms (PROM_PROBE_TIMEOUT)"), "{e}");
    assert!(t0.elapsed() < Duration::from_secs(3));
}
