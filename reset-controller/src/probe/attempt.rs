//! One probe attempt: a new TCP connection, one HTTP/1.1 GET with
//! `Connection: close`, the whole response read, all within a timeout. The outcome
//! says whether the caller would have seen a response, a reset or another error.

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use super::verdict::Outcome;
use crate::config::ProbeTarget;

/// Largest response head read.
const MAX_HEAD: usize = 64 << 10;
/// Largest body read (the rest is not waited for).
const MAX_BODY: usize = 4 << 20;

/// Why an attempt did not end in a full response (for debug logs).
#[derive(Debug, thiserror::Error)]
pub enum AttemptError {
    /// A socket call failed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The timeout passed first.
    #[error("no full response within {0:?}")]
    Timeout(Duration),
    /// DNS gave nothing.
    #[error("{0} resolves to no address")]
    NoAddress(String),
    /// Not an HTTP/1.x response.
    #[error("malformed HTTP response")]
    Malformed,
    /// A status outside 200-399.
    #[error("HTTP status {0}")]
    Status(u16),
}

impl AttemptError {
    /// The outcome this failure counts as.
    pub fn outcome(&self) -> Outcome {
        match self {
            AttemptError::Io(e) if e.kind() == io::ErrorKind::ConnectionReset => Outcome::Reset,
            _ => Outcome::OtherError,
        }
    }
}

/// Run one attempt; returns the outcome and how long it took.
pub async fn attempt(target: &ProbeTarget, timeout: Duration) -> (Outcome, Duration) {
    let t0 = Instant::now();
    let r = tokio::time::timeout(timeout, exchange(target)).await;
    let took = t0.elapsed();
    let outcome = match r {
        Ok(Ok(_status)) => Outcome::Ok,
        Ok(Err(e)) => {
            tracing::debug!(url = %target, error = %e, "probe attempt failed");
            e.outcome()
        }
        Err(_) => {
            tracing::debug!(url = %target, error = %AttemptError::Timeout(timeout), "probe attempt failed");
            Outcome::OtherError
        }
    };
    (outcome, took)
}

async fn resolve(target: &ProbeTarget) -> Result<SocketAddr, AttemptError> {
    if let Some(ip) = target.ip() {
        return Ok(SocketAddr::new(ip, target.port));
    }
    tokio::net::lookup_host((target.host.as_str(), target.port))
        .await?
        .next()
        .ok_or_else(|| AttemptError::NoAddress(target.host.clone()))
}

/// Connect, send, read the response; returns its status.
async fn exchange(target: &ProbeTarget) -> Result<u16, AttemptError> {
    let addr = resolve(target).await?;
    let mut s = TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    s.write_all(target.request().as_bytes()).await?;
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > MAX_HEAD {
            return Err(AttemptError::Malformed);
        }
        match s.read(&mut chunk).await? {
            0 => return Err(AttemptError::Malformed),
            n => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let (status, length) = parse_head(&buf[..head_end]).ok_or(AttemptError::Malformed)?;
    // Read the body: Content-Length bytes, else until the server closes.
    let mut have = buf.len() - head_end;
    let want = length.unwrap_or(usize::MAX).min(MAX_BODY);
    while have < want {
        match s.read(&mut chunk).await? {
            0 if length.is_none() => break,
            0 => return Err(AttemptError::Malformed),
            n => have += n,
        }
    }
    if (200..400).contains(&status) {
        Ok(status)
    } else {
        Err(AttemptError::Status(status))
    }
}

/// The status code and Content-Length of a response head.
fn parse_head(head: &[u8]) -> Option<(u16, Option<usize>)> {
    let text = std::str::from_utf8(head).ok()?;
    let mut lines = text.split("\r\n");
    let mut status_line = lines.next()?.splitn(3, ' ');
    if !status_line.next()?.starts_with("HTTP/1.") {
        return None;
    }
    let status: u16 = status_line.next()?.parse().ok()?;
    let mut length = None;
    for line in lines {
        if let Some((k, v)) = line.split_once(':')
            && k.trim().eq_ignore_ascii_case("content-length")
        {
            length = Some(v.trim().parse().ok()?);
        }
    }
    Some((status, length))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[test]
    fn heads() {
        assert_eq!(
            parse_head(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n"),
            Some((200, Some(2)))
        );
        assert_eq!(parse_head(b"HTTP/1.0 503 Busy\r\n\r\n"), Some((503, None)));
        assert_eq!(parse_head(b"SSH-2.0-OpenSSH\r\n\r\n"), None);
        assert_eq!(
            parse_head(b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"),
            None
        );
    }

    /// A one-shot server on 127.0.0.1:0 doing `act` with each connection.
    async fn server<F, Fut>(act: F) -> ProbeTarget
    where
        F: Fn(TcpStream) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()> + Send,
    {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                act(s).await;
            }
        });
        ProbeTarget::parse(&format!("http://127.0.0.1:{port}/health")).unwrap()
    }

    async fn read_request(s: &mut TcpStream) -> String {
        let mut b = vec![0u8; 4096];
        let n = s.read(&mut b).await.unwrap();
        String::from_utf8_lossy(&b[..n]).into_owned()
    }

    #[tokio::test]
    async fn ok_reset_status_and_timeout() {
        let t = Duration::from_secs(5);
        let ok = server(|mut s| async move {
            let req = read_request(&mut s).await;
            assert!(req.starts_with("GET /health HTTP/1.1\r\n"));
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .await;
            // Keep the connection open: Content-Length ends the read.
            tokio::time::sleep(Duration::from_secs(2)).await;
        })
        .await;
        let (o, took) = attempt(&ok, t).await;
        assert_eq!(o, Outcome::Ok);
        assert!(took < Duration::from_secs(1), "{took:?}");

        let reset = server(|mut s| async move {
            read_request(&mut s).await;
            s.set_zero_linger().unwrap();
            drop(s);
        })
        .await;
        assert_eq!(attempt(&reset, t).await.0, Outcome::Reset);

        let status = server(|mut s| async move {
            read_request(&mut s).await;
            let _ = s.write_all(b"HTTP/1.1 503 Busy\r\n\r\n").await;
        })
        .await;
        assert_eq!(attempt(&status, t).await.0, Outcome::OtherError);

        let silent = server(|s| async move {
            tokio::time::sleep(Duration::from_secs(3)).await;
            drop(s);
        })
        .await;
        let (o, took) = attempt(&silent, Duration::from_millis(200)).await;
        assert_eq!(o, Outcome::OtherError);
        assert!(took < Duration::from_secs(2), "{took:?}");

        // Nothing listening: refused is an error, not a reset.
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let gone = ProbeTarget::parse(&format!("http://127.0.0.1:{port}/")).unwrap();
        assert_eq!(attempt(&gone, t).await.0, Outcome::OtherError);
    }
}
