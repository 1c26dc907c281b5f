//! Time as the kernel programs see it, and threads that act on it precisely.
//!
//! The programs stamp CLOCK_MONOTONIC (`bpf_ktime_get_ns`), which is also what `Instant` reads
//! on Linux, so a kernel timestamp converts into an `Instant` by its age.
use std::time::{Duration, Instant};

/// The `Instant` of a CLOCK_MONOTONIC timestamp (ns) from the last second; `None` for 0 or an
/// older one.
pub fn instant_of_mono_ns(mono_ns: u64) -> Option<Instant> {
    if mono_ns == 0 {
        return None;
    }
    // Read the raw clock first and Instant second: any delay between the two reads makes the
    // age look smaller, so a deadline computed from the result errs late, never early.
    let now_ns = nix::time::clock_gettime(nix::time::ClockId::CLOCK_MONOTONIC).ok()?;
    let now = Instant::now();
    let now_ns = u64::try_from(now_ns.tv_sec()).ok()? * 1_000_000_000
        + u64::try_from(now_ns.tv_nsec()).ok()?;
    let age = Duration::from_nanos(now_ns.checked_sub(mono_ns)?);
    (age < Duration::from_secs(1))
        .then(|| now.checked_sub(age))
        .flatten()
}

/// Makes the calling thread wake within microseconds of its deadlines (timer slack 1 ns) and
/// ahead of ordinary threads when the CPU is busy (SCHED_FIFO, lowest real-time priority; the
/// thread sleeps except for a close or a netlink call per reset). Both are best effort.
pub fn precise_thread() {
    let _ = nix::sys::prctl::set_timerslack(1);
    if let Err(e) = thread_priority::set_thread_priority_and_policy(
        thread_priority::thread_native_id(),
        thread_priority::ThreadPriority::Min,
        thread_priority::ThreadSchedulePolicy::Realtime(
            thread_priority::RealtimeThreadSchedulePolicy::Fifo,
        ),
    ) {
        tracing::debug!(error = ?e, "a precise thread stays SCHED_OTHER");
    }
}
