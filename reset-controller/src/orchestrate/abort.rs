//! The abort signal, passed down as a value: set once by main on SIGINT/SIGTERM.

use std::time::Duration;

use tokio::sync::watch;

/// Time the whole abort path may take before main gives up waiting (exit within 10 s).
pub const ABORT_BUDGET: Duration = Duration::from_secs(8);

/// A cloneable view of the abort flag.
#[derive(Debug, Clone)]
pub struct Abort(Option<watch::Receiver<bool>>);

/// The side that raises the flag.
#[derive(Debug)]
pub struct AbortHandle(watch::Sender<bool>);

impl Abort {
    /// A new flag, not set.
    pub fn new() -> (AbortHandle, Abort) {
        let (tx, rx) = watch::channel(false);
        (AbortHandle(tx), Abort(Some(rx)))
    }

    /// A flag that is never raised (for commands without abort semantics).
    pub fn never() -> Abort {
        Abort(None)
    }

    /// Whether abort was requested.
    pub fn is_set(&self) -> bool {
        self.0.as_ref().is_some_and(|rx| *rx.borrow())
    }

    /// Resolve when abort is requested.
    pub async fn wait(&self) {
        let Some(mut rx) = self.0.clone() else {
            return std::future::pending().await;
        };
        // An error means the sender is gone: treat as never aborting.
        if rx.wait_for(|v| *v).await.is_err() {
            std::future::pending::<()>().await;
        }
    }

    /// Sleep `d`; returns true if interrupted by abort.
    pub async fn sleep(&self, d: Duration) -> bool {
        if self.is_set() {
            return true;
        }
        tokio::select! {
            () = tokio::time::sleep(d) => false,
            () = self.wait() => true,
        }
    }
}

impl AbortHandle {
    /// Raise the flag.
    pub fn trigger(&self) {
        self.0.send_replace(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn sleep_is_cut_by_abort() {
        let (h, a) = Abort::new();
        assert!(!a.sleep(Duration::from_millis(10)).await);
        let a2 = a.clone();
        let t = tokio::spawn(async move { a2.sleep(Duration::from_secs(3600)).await });
        tokio::time::sleep(Duration::from_millis(5)).await;
        h.trigger();
        assert!(t.await.unwrap());
        assert!(a.is_set());
        assert!(a.sleep(Duration::from_secs(1)).await);
    }
}
