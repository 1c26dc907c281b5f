//! Userspace mode, request unit: every connection is proxied and each HTTP/1.x request on it is
//! a selection. The relay follows request turns the way the kernel program does (a method
//! token from the caller after the service answered, or on the first payload); a selected
//! request is withheld from the service (`upstream`) or its answer is withheld from the caller
//! (`downstream`), and the caller is reset RESET_TIMEOUT after the request's first byte (the
//! reaper thread does the zero-linger close). A connection whose first payload is not HTTP/1
//! is decided once, as a whole. Unselected requests are relayed as they are.
use std::{net::SocketAddr, sync::atomic::Ordering::Relaxed};

use reset_common::request::{Start, classify};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    sync::watch,
    time::{Instant, sleep_until},
};
use tracing::debug;

use super::{Phase, ProxyConfig, Stats, UserspaceSelector, reaper::HANDOFF, reaper::Reaper};
use crate::config::Stream;

/// Relay buffer per direction: a relayed byte stream needs one.
const BUF: usize = 16 * 1024;

/// Where the turn of one connection stands.
#[derive(Debug, Default)]
struct Turns {
    classified: bool,
    opaque: bool,
    open: bool,
}

/// What a chunk from the caller means.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// Part of the open turn, or of an unselected opaque stream: relay it.
    Continue,
    /// A new request (or an opaque stream's first bytes): a selection is due.
    NewRequest { opaque: bool },
}

impl Turns {
    fn caller_sent(&mut self, chunk: &[u8]) -> Step {
        let start = (chunk.len() >= 4).then(|| classify([chunk[0], chunk[1], chunk[2], chunk[3]]));
        let first = !self.classified;
        self.classified = true;
        if self.opaque {
            return Step::Continue;
        }
        if first && start != Some(Start::Method) {
            // The relay sees every connection from its start: this is its protocol.
            self.opaque = true;
            self.open = true;
            return Step::NewRequest { opaque: true };
        }
        if start == Some(Start::Method) && !self.open {
            self.open = true;
            return Step::NewRequest { opaque: false };
        }
        Step::Continue
    }

    fn service_answered(&mut self) {
        if !self.opaque {
            self.open = false;
        }
    }
}

/// Relays one connection, selecting per request, until both sides are done or a selected
/// request's reset is handed to the reaper.
#[allow(clippy::too_many_arguments)]
pub async fn relay(
    mut client: TcpStream,
    peer: SocketAddr,
    orig: SocketAddr,
    cfg: &ProxyConfig,
    sel: &UserspaceSelector,
    stats: &Stats,
    reaper: &Reaper,
    mut phase: watch::Receiver<Phase>,
) {
    let mut up = match TcpStream::connect(orig).await {
        Ok(up) => up,
        Err(e) => {
            debug!(error = %e, %orig, "service unreachable");
            stats.upstream_failures.fetch_add(1, Relaxed);
            let _ = client.set_zero_linger();
            return;
        }
    };
    let _ = client.set_nodelay(true);
    let _ = up.set_nodelay(true);
    let (mut cbuf, mut ubuf) = (vec![0u8; BUF], vec![0u8; BUF]);
    let mut turns = Turns::default();
    // Some(deadline) once a selected request is pending.
    let mut pending: Option<(Instant, Instant)> = None;
    let (mut client_open, mut up_open) = (true, true);
    loop {
        let handoff = pending.map(|(first, deadline)| (first, deadline, deadline - HANDOFF));
        tokio::select! {
            _ = async { sleep_until(handoff.expect("pending").2).await }, if handoff.is_some() => {
                let (first, deadline, _) = handoff.expect("pending");
                hand_to_reaper(client, up, first, deadline, stats, reaper).await;
                return;
            }
            _ = super::reset::wait_abort(&mut phase), if pending.is_some() => {
                let (first, _) = pending.expect("pending");
                let _ = client.set_zero_linger();
                drop(client);
                let _ = up.set_zero_linger();
                stats.resets_issued.fetch_add(1, Relaxed);
                stats.record_delay(first.elapsed());
                return;
            }
            r = client.read(&mut cbuf), if client_open => match r {
                Ok(0) | Err(_) => {
                    client_open = false;
                    if pending.is_none() {
                        let _ = up.shutdown().await;
                    }
                }
                Ok(n) => {
                    if pending.is_none()
                        && let Step::NewRequest { opaque } = turns.caller_sent(&cbuf[..n])
                    {
                        stats.requests_seen.fetch_add(1, Relaxed);
                        if opaque {
                            stats.flows_opaque.fetch_add(1, Relaxed);
                        }
                        if sel.select() {
                            stats.selected.fetch_add(1, Relaxed);
                            let first = Instant::now();
                            pending = Some((first, first + cfg.reset_timeout));
                        }
                    }
                    let withhold = pending.is_some() && cfg.stream == Stream::Upstream;
                    if !withhold && up.write_all(&cbuf[..n]).await.is_err() {
                        up_open = false;
                    }
                }
            },
            r = up.read(&mut ubuf), if up_open => match r {
                Ok(0) | Err(_) => {
                    up_open = false;
                    if pending.is_none() {
                        let _ = client.shutdown().await;
                    }
                }
                Ok(n) => {
                    // A pending request's answer is withheld: read and dropped.
                    if pending.is_none() {
                        turns.service_answered();
                        if client.write_all(&ubuf[..n]).await.is_err() {
                            client_open = false;
                        }
                    }
                }
            },
        }
        if !client_open && !up_open {
            if pending.is_some() {
                // Both sides gone while a reset was pending: nobody is left to reset.
                debug!(%peer, "the caller left before its reset was due");
                stats.caller_gone.fetch_add(1, Relaxed);
            }
            return;
        }
    }
}

async fn hand_to_reaper(
    client: TcpStream,
    up: TcpStream,
    first: Instant,
    deadline: Instant,
    stats: &Stats,
    reaper: &Reaper,
) {
    let up = up.into_std().ok();
    match client.into_std() {
        Ok(c) => {
            let done = reaper.schedule(deadline.into_std(), c, up, first.into_std());
            let _ = done.await;
        }
        Err(_) => {
            stats.caller_gone.fetch_add(1, Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn turns_follow_answers() {
        let mut t = Turns::default();
        assert_eq!(
            t.caller_sent(b"GET / HTTP/1.1\r\n\r\n"),
            Step::NewRequest { opaque: false }
        );
        // Split request and pipelined request before any answer: the same turn.
        assert_eq!(t.caller_sent(b"Host: x\r\n\r\n"), Step::Continue);
        assert_eq!(t.caller_sent(b"GET /b HTTP/1.1\r\n\r\n"), Step::Continue);
        t.service_answered();
        assert_eq!(
            t.caller_sent(b"POST /c HTTP/1.1\r\n"),
            Step::NewRequest { opaque: false }
        );
    }

    #[test]
    fn non_http_first_payload_is_one_opaque_selection() {
        let mut t = Turns::default();
        assert_eq!(
            t.caller_sent(&[0x16, 0x03, 0x01, 0x00, 0x10]),
            Step::NewRequest { opaque: true }
        );
        t.service_answered();
        assert_eq!(t.caller_sent(b"GET / HTTP/1.1"), Step::Continue);
    }
}
