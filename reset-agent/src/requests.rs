//! The request unit's userspace half: one thread reads the kernel's events (EVENTS ring) and
//! resets each selected request RESET_TIMEOUT after its first byte by destroying the service's
//! socket (sock_diag), at the exact instant (timer slack 1 ns, SCHED_FIFO, ppoll with a
//! nanosecond timeout), and collects the delays the kernel measured (first byte at ingress ->
//! RST at egress). No request's bytes pass through the agent.
use std::{
    cmp::Reverse,
    collections::BinaryHeap,
    net::{IpAddr, Ipv6Addr, SocketAddr},
    os::fd::AsFd,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

use aya::maps::{MapData, RingBuf};
use nix::poll::{PollFd, PollFlags};
use reset_common::{
    FlowKey,
    request::{EVENT_RESET, EVENT_SELECTED, Event},
};
use tracing::debug;

use crate::sockdiag::{DestroyError, SockDiag};

/// Counters of the request unit's userspace half.
#[derive(Debug, Default)]
pub struct RequestStats {
    /// Selections the kernel reported.
    pub selected: AtomicU64,
    /// Sockets destroyed (each one an RST to the caller).
    pub resets_issued: AtomicU64,
    /// Connections already closed when their reset was due (by the service or the caller).
    pub closed_first: AtomicU64,
    /// Destroys that failed otherwise.
    pub reset_failures: AtomicU64,
    /// Selected requests waiting for their reset.
    pub pending: AtomicU64,
    /// Kernel-measured first byte -> RST, nanoseconds (bounded sample).
    pub delays_ns: Mutex<Vec<u64>>,
}

const MAX_DELAY_SAMPLES: usize = 1_000_000;
/// Longest sleep between looks at the ring (events wake the thread sooner).
const POLL_CAP: Duration = Duration::from_millis(20);

struct Due {
    at: Instant,
    key: FlowKey,
}

impl PartialEq for Due {
    fn eq(&self, o: &Self) -> bool {
        self.at == o.at
    }
}
impl Eq for Due {}
impl PartialOrd for Due {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Due {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.at.cmp(&o.at)
    }
}

/// The running thread; `abort` resets everything pending at once, `finish` waits for the
/// pending resets and stops.
pub struct Requests {
    abort: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    pub stats: Arc<RequestStats>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Requests {
    pub fn start(events: RingBuf<MapData>, reset_timeout: Duration) -> std::io::Result<Requests> {
        let diag = SockDiag::open()?;
        let stats = Arc::new(RequestStats::default());
        let (abort, stop) = (
            Arc::new(AtomicBool::new(false)),
            Arc::new(AtomicBool::new(false)),
        );
        let worker = Worker {
            events,
            diag,
            reset_timeout,
            due: BinaryHeap::new(),
            stats: stats.clone(),
            abort: abort.clone(),
            stop: stop.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("requests".into())
            .spawn(move || worker.run())?;
        Ok(Requests {
            abort,
            stop,
            stats,
            thread: Some(thread),
        })
    }

    /// Reset every pending request now (SIGINT/SIGTERM).
    pub fn abort(&self) {
        self.abort.store(true, Relaxed);
    }

    /// Waits until no reset is pending (or `limit`), then stops the thread.
    pub fn finish(mut self, limit: Duration) {
        let end = Instant::now() + limit;
        while self.stats.pending.load(Relaxed) > 0 && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(5));
        }
        if self.stats.pending.load(Relaxed) > 0 {
            self.abort();
        }
        self.stop.store(true, Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Requests {
    fn drop(&mut self) {
        self.abort();
        self.stop.store(true, Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Worker {
    events: RingBuf<MapData>,
    diag: SockDiag,
    reset_timeout: Duration,
    due: BinaryHeap<Reverse<Due>>,
    stats: Arc<RequestStats>,
    abort: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl Worker {
    fn run(mut self) {
        crate::clock::precise_thread();
        loop {
            self.read_events();
            let aborting = self.abort.load(Relaxed);
            while let Some(Reverse(d)) = self.due.peek() {
                if !aborting && d.at > Instant::now() {
                    break;
                }
                let Reverse(d) = self.due.pop().expect("peeked");
                self.reset(&d.key);
            }
            if self.stop.load(Relaxed) && self.due.is_empty() {
                // Last events (the final RSTs) for the delay sample.
                self.read_events();
                return;
            }
            let wait = self
                .due
                .peek()
                .map_or(POLL_CAP, |Reverse(d)| {
                    d.at.saturating_duration_since(Instant::now())
                })
                .min(POLL_CAP);
            let mut fds = [PollFd::new(self.events.as_fd(), PollFlags::POLLIN)];
            let ts = nix::sys::time::TimeSpec::from_duration(wait);
            let _ = nix::poll::ppoll(&mut fds, Some(ts), None);
        }
    }

    fn read_events(&mut self) {
        while let Some(item) = self.events.next() {
            let Some(ev) = read_event(&item) else {
                continue;
            };
            match ev.kind {
                EVENT_SELECTED => {
                    self.stats.selected.fetch_add(1, Relaxed);
                    self.stats.pending.fetch_add(1, Relaxed);
                    let first = crate::clock::instant_of_mono_ns(ev.first_byte_ns)
                        .unwrap_or_else(Instant::now);
                    self.due.push(Reverse(Due {
                        at: first + self.reset_timeout,
                        key: ev.key,
                    }));
                }
                EVENT_RESET => {
                    let mut v = self
                        .stats
                        .delays_ns
                        .lock()
                        .unwrap_or_else(|e| e.into_inner());
                    if v.len() < MAX_DELAY_SAMPLES {
                        v.push(ev.rst_ns.saturating_sub(ev.first_byte_ns));
                    }
                }
                _ => {}
            }
        }
    }

    fn reset(&mut self, key: &FlowKey) {
        let (service, caller) = endpoints(key);
        match self.diag.destroy(service, caller) {
            Ok(()) => {
                self.stats.resets_issued.fetch_add(1, Relaxed);
            }
            Err(DestroyError::Gone) => {
                debug!(%caller, "the connection closed before its reset was due");
                self.stats.closed_first.fetch_add(1, Relaxed);
            }
            Err(e) => {
                debug!(%caller, error = %e, "destroying the service's socket failed");
                self.stats.reset_failures.fetch_add(1, Relaxed);
            }
        }
        self.stats.pending.fetch_sub(1, Relaxed);
    }
}

fn read_event(bytes: &[u8]) -> Option<Event> {
    if bytes.len() < std::mem::size_of::<Event>() {
        return None;
    }
    let u32_at = |o: usize| u32::from_ne_bytes(bytes[o..o + 4].try_into().expect("4"));
    let u64_at = |o: usize| u64::from_ne_bytes(bytes[o..o + 8].try_into().expect("8"));
    let u16_at = |o: usize| u16::from_ne_bytes(bytes[o..o + 2].try_into().expect("2"));
    let mut key = FlowKey::default();
    key.client_addr.copy_from_slice(&bytes[8..24]);
    key.server_addr.copy_from_slice(&bytes[24..40]);
    key.client_port = u16_at(40);
    key.server_port = u16_at(42);
    Some(Event {
        kind: u32_at(0),
        key,
        first_byte_ns: u64_at(48),
        rst_ns: u64_at(56),
        ..Event::default()
    })
}

/// (service, caller) socket addresses of a flow key (IPv4 as IPv4, not mapped).
pub fn endpoints(key: &FlowKey) -> (SocketAddr, SocketAddr) {
    let ip = |b: [u8; 16]| {
        let v6 = Ipv6Addr::from(b);
        v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
    };
    (
        SocketAddr::new(ip(key.server_addr), key.server_port),
        SocketAddr::new(ip(key.client_addr), key.client_port),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_decode_as_laid_out() {
        let mut ev = Event {
            kind: EVENT_RESET,
            first_byte_ns: 11,
            rst_ns: 22,
            ..Event::default()
        };
        ev.key.client_addr = FlowKey::mapped_v4([198, 18, 0, 1]);
        ev.key.server_addr = FlowKey::mapped_v4([198, 18, 0, 2]);
        ev.key.client_port = 40000;
        ev.key.server_port = 80;
        // The bytes as the kernel writes them (repr(C), native endian).
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&ev.kind.to_ne_bytes());
        bytes.extend_from_slice(&0u32.to_ne_bytes());
        bytes.extend_from_slice(&ev.key.client_addr);
        bytes.extend_from_slice(&ev.key.server_addr);
        bytes.extend_from_slice(&ev.key.client_port.to_ne_bytes());
        bytes.extend_from_slice(&ev.key.server_port.to_ne_bytes());
        bytes.extend_from_slice(&0u32.to_ne_bytes());
        bytes.extend_from_slice(&11u64.to_ne_bytes());
        bytes.extend_from_slice(&22u64.to_ne_bytes());
        assert_eq!(read_event(&bytes), Some(ev));
        let (s, c) = endpoints(&ev.key);
        assert_eq!(s, "198.18.0.2:80".parse().unwrap());
        assert_eq!(c, "198.18.0.1:40000".parse().unwrap());
        assert_eq!(read_event(&bytes[..40]), None);
    }
}
