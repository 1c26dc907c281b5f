//! The fault window as the controller sees it: open when the first agent starts
//! injecting, closed when the last injection has ended (parallel or serial, so a
//! serial run's CHAOS_INTERVAL gaps are inside it). Observers (the probe) watch it.

use tokio::sync::watch;

/// Where the window is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowState {
    /// No injection has started yet.
    Pending,
    /// An injection has started and the schedule is not over.
    Open,
    /// The schedule is over (it may never have opened).
    Closed,
}

/// The side that opens and closes the window; clones share it.
#[derive(Debug, Clone)]
pub struct FaultWindow(watch::Sender<WindowState>);

impl Default for FaultWindow {
    fn default() -> Self {
        Self(watch::Sender::new(WindowState::Pending))
    }
}

impl FaultWindow {
    /// Open the window if it is still pending (the first injection wins).
    pub fn open(&self) {
        self.0.send_if_modified(|s| {
            let pending = *s == WindowState::Pending;
            if pending {
                *s = WindowState::Open;
            }
            pending
        });
    }

    /// Close the window for good.
    pub fn close(&self) {
        self.0.send_replace(WindowState::Closed);
    }

    /// A view for observers.
    pub fn watch(&self) -> WindowWatch {
        WindowWatch(self.0.subscribe())
    }
}

/// An observer's view of the window.
#[derive(Debug, Clone)]
pub struct WindowWatch(watch::Receiver<WindowState>);

impl WindowWatch {
    /// Wait until the window is no longer pending; true if it opened, false if it
    /// closed without opening.
    pub async fn opened(&mut self) -> bool {
        match self.0.wait_for(|s| *s != WindowState::Pending).await {
            Ok(s) => *s == WindowState::Open,
            Err(_) => false,
        }
    }

    /// Wait until the window is closed (or its owner is gone).
    pub async fn closed(&mut self) {
        let _ = self.0.wait_for(|s| *s == WindowState::Closed).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn opens_once_and_closes() {
        let w = FaultWindow::default();
        let mut obs = w.watch();
        w.open();
        w.open();
        assert!(obs.opened().await);
        let mut obs2 = obs.clone();
        let t = tokio::spawn(async move { obs2.closed().await });
        w.close();
        t.await.unwrap();
        w.open();
        assert!(!obs.opened().await, "a closed window stays closed");

        let never = FaultWindow::default();
        let mut obs = never.watch();
        never.close();
        assert!(!obs.opened().await);
    }
}
