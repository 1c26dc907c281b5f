//! The programs' aya-log records, drained into tracing (target `ebpf`) and counted.
//!
//! The programs log only rare events (a window change, a failed map insert), so the count is
//! also the check that nothing logs per packet: under load it stays at the number of such
//! events. The level is fixed at load time from the agent's own (RESET_AGENT_LOG).
use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering::Relaxed},
};

use aya::Ebpf;
use aya_log::EbpfLogger;
use tokio::{sync::oneshot, task::JoinHandle};

/// How often the ring buffer is read. Records are rare events, so a short delay in printing
/// them costs nothing, and a timer needs no unsafe fd registration.
const POLL: std::time::Duration = std::time::Duration::from_millis(200);

/// A shareable count of the records drained so far.
type LogRecords = Arc<AtomicU64>;

/// Forwards each record to tracing at its level and counts it.
struct Forward {
    records: LogRecords,
}

impl ::log::Log for Forward {
    fn enabled(&self, _: &::log::Metadata<'_>) -> bool {
        true
    }

    fn log(&self, record: &::log::Record<'_>) {
        self.records.fetch_add(1, Relaxed);
        let msg = record.args();
        match record.level() {
            ::log::Level::Error => tracing::error!(target: "ebpf", "{msg}"),
            ::log::Level::Warn => tracing::warn!(target: "ebpf", "{msg}"),
            ::log::Level::Info => tracing::info!(target: "ebpf", "{msg}"),
            ::log::Level::Debug => tracing::debug!(target: "ebpf", "{msg}"),
            ::log::Level::Trace => tracing::trace!(target: "ebpf", "{msg}"),
        }
    }

    fn flush(&self) {}
}

/// aya-log's level (AYA_LOG_LEVEL) for the agent's current tracing level: records the agent
/// would not print are never written by the kernel.
pub fn level_for_ebpf() -> u8 {
    use tracing::level_filters::LevelFilter;
    match LevelFilter::current() {
        LevelFilter::OFF => 0,
        LevelFilter::ERROR => aya_log::Level::Error as u8,
        LevelFilter::WARN => aya_log::Level::Warn as u8,
        LevelFilter::INFO => aya_log::Level::Info as u8,
        LevelFilter::DEBUG => aya_log::Level::Debug as u8,
        _ => aya_log::Level::Trace as u8,
    }
}

/// The task that drains the ring buffer whenever it has records.
pub struct Drain {
    records: LogRecords,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Drain {
    /// Takes the programs' log ring buffer and starts draining it. `None` (with a warning) when
    /// the object has none: the run goes on without eBPF log lines.
    pub fn start(ebpf: &mut Ebpf) -> Option<Drain> {
        let records = LogRecords::default();
        let forward = Forward {
            records: records.clone(),
        };
        let logger = match EbpfLogger::init_with_logger(ebpf, forward) {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "the eBPF programs' log records cannot be read");
                return None;
            }
        };
        let mut logger = logger;
        let (stop, mut stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            let mut tick = tokio::time::interval(POLL);
            loop {
                tokio::select! {
                    _ = tick.tick() => logger.flush(),
                    _ = &mut stopped => {
                        logger.flush();
                        return;
                    }
                }
            }
        });
        Some(Drain {
            records,
            stop,
            task,
        })
    }

    pub fn records(&self) -> u64 {
        self.records.load(Relaxed)
    }

    /// Drains what is left and ends the task.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}
