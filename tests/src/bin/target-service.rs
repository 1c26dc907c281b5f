//! The sample HTTP service the lab puts behind the fault: HTTP/1.1 with keep-alive, `/health`
//! answers "ok", every other path answers 200 with a short body. With `--log PATH` it appends
//! each request path to PATH (so tests can tell which requests reached it). Prints
//! "listening on PORT" on stdout once it accepts connections.
#![forbid(unsafe_code)]

use std::{io::Write, path::PathBuf, sync::Arc};

use clap::Parser;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::Mutex,
};

#[derive(Parser)]
struct Args {
    #[arg(long, default_value_t = 80)]
    port: u16,
    #[arg(long)]
    log: Option<PathBuf>,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // [::] accepts IPv4 too (bindv6only=0 in the lab namespaces).
    let listener = TcpListener::bind(("::", args.port)).await?;
    let log = match &args.log {
        Some(p) => Some(Arc::new(Mutex::new(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)?,
        ))),
        None => None,
    };
    println!("listening on {}", args.port);
    std::io::stdout().flush()?;
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(serve(stream, log.clone()));
    }
}

async fn serve(mut s: TcpStream, log: Option<Arc<Mutex<std::fs::File>>>) {
    let _ = s.set_nodelay(true);
    let mut buf = Vec::with_capacity(4096);
    let mut chunk = [0u8; 4096];
    loop {
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
            if buf.len() > 64 * 1024 {
                return;
            }
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        buf.drain(..head_end);
        let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
        if let Some(l) = &log {
            let mut f = l.lock().await;
            let _ = writeln!(f, "{path}");
        }
        let close = head.to_ascii_lowercase().contains("connection: close");
        let body: &[u8] = if path == "/health" {
            b"ok\n"
        } else {
            b"hello from the target service\n"
        };
        let resp = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{}\r\n",
            body.len(),
            if close { "Connection: close\r\n" } else { "" }
        );
        if s.write_all(resp.as_bytes()).await.is_err() || s.write_all(body).await.is_err() {
            return;
        }
        if close {
            let _ = s.shutdown().await;
            return;
        }
    }
}
