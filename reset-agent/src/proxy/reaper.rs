//! Precise resets. Tokio's timer wheel has 1 ms granularity and rounds deadlines up, which
//! alone costs ~1 ms of reset-delay error. A connection due for its reset is handed to this
//! thread shortly before its deadline; the thread (timer slack 1 ns) sleeps until the exact
//! instant and performs the zero-linger close itself.
use std::{
    cmp::Reverse,
    collections::BinaryHeap,
    net::TcpStream,
    sync::{Arc, Condvar, Mutex, atomic::Ordering::Relaxed},
    time::{Duration, Instant},
};

use tokio::sync::oneshot;

use super::Stats;

/// How long before its deadline a connection is handed over.
pub const HANDOFF: Duration = Duration::from_millis(5);

struct Due {
    at: Instant,
    seq: u64,
    client: TcpStream,
    upstream: Option<TcpStream>,
    first_at: Instant,
    done: oneshot::Sender<()>,
}

impl PartialEq for Due {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.seq) == (o.at, o.seq)
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
        (self.at, self.seq).cmp(&(o.at, o.seq))
    }
}

#[derive(Default)]
struct State {
    queue: BinaryHeap<Reverse<Due>>,
    seq: u64,
    abort: bool,
    stop: bool,
}

#[derive(Clone)]
pub struct Reaper {
    shared: Arc<(Mutex<State>, Condvar)>,
}

impl Reaper {
    pub fn start(stats: Arc<Stats>) -> std::io::Result<Reaper> {
        let shared: Arc<(Mutex<State>, Condvar)> = Arc::default();
        let s = shared.clone();
        std::thread::Builder::new()
            .name("reaper".into())
            .spawn(move || run(&s, &stats))?;
        Ok(Reaper { shared })
    }

    /// Queues a reset at `at`; the receiver completes once it was done.
    pub fn schedule(
        &self,
        at: Instant,
        client: TcpStream,
        upstream: Option<TcpStream>,
        first_at: Instant,
    ) -> oneshot::Receiver<()> {
        let (done, rx) = oneshot::channel();
        let (lock, cv) = &*self.shared;
        let mut st = lock.lock().unwrap_or_else(|e| e.into_inner());
        st.seq += 1;
        let seq = st.seq;
        st.queue.push(Reverse(Due {
            at,
            seq,
            client,
            upstream,
            first_at,
            done,
        }));
        cv.notify_one();
        rx
    }

    /// Resets everything queued now, and anything queued later at once.
    pub fn abort(&self) {
        let (lock, cv) = &*self.shared;
        lock.lock().unwrap_or_else(|e| e.into_inner()).abort = true;
        cv.notify_one();
    }

    /// Ends the thread once the queue is empty.
    pub fn stop(&self) {
        let (lock, cv) = &*self.shared;
        lock.lock().unwrap_or_else(|e| e.into_inner()).stop = true;
        cv.notify_one();
    }
}

fn run(shared: &(Mutex<State>, Condvar), stats: &Stats) {
    crate::clock::precise_thread();
    let (lock, cv) = shared;
    let mut st = lock.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let now = Instant::now();
        let next = st.queue.peek().map(|Reverse(d)| d.at);
        match next {
            Some(at) if st.abort || at <= now => {
                let Reverse(due) = st.queue.pop().expect("peeked");
                drop(st);
                reset(due, stats);
                st = lock.lock().unwrap_or_else(|e| e.into_inner());
            }
            Some(at) => {
                st = cv
                    .wait_timeout(st, at - now)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            None if st.stop => return,
            None => st = cv.wait(st).unwrap_or_else(|e| e.into_inner()),
        }
    }
}

fn reset(due: Due, stats: &Stats) {
    let socket = socket2::SockRef::from(&due.client);
    match socket.set_linger(Some(Duration::ZERO)) {
        Ok(()) => {
            drop(due.client);
            stats.resets_issued.fetch_add(1, Relaxed);
            stats.record_delay(due.first_at.elapsed());
        }
        Err(_) => {
            stats.caller_gone.fetch_add(1, Relaxed);
        }
    }
    if let Some(up) = due.upstream {
        let _ = socket2::SockRef::from(&up).set_linger(Some(Duration::ZERO));
    }
    let _ = due.done.send(());
}
