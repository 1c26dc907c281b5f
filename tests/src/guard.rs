//! The harness's one process guard ([`Guard`]: a child killed and reaped when it drops, also
//! when a test panics) and the pump that reads a child's output on a thread ([`Pumped`]:
//! kept whole, watched for a readiness line, never a sleep).
//!
//! Must not: leave a process running past its guard, or block a child on a full pipe.
use std::{
    io::{BufRead, BufReader, Read},
    ops::{Deref, DerefMut},
    process::{Child, Command, ExitStatus},
    sync::{Arc, Mutex, mpsc},
    time::{Duration, Instant},
};

/// A child process, killed (after an optional gentle stop) and reaped on drop.
pub struct Guard {
    child: Child,
    /// Close stdin and give the process this long to end on its own before the kill.
    gentle: Option<Duration>,
}

impl Guard {
    /// Starts `cmd`; `what` names it in the error.
    pub fn try_spawn(cmd: &mut Command, what: &str) -> std::io::Result<Guard> {
        let child = cmd
            .spawn()
            .map_err(|e| std::io::Error::new(e.kind(), format!("starting {what}: {e}")))?;
        Ok(Guard::of(child))
    }

    /// Starts `cmd`, panicking with `what` when it cannot.
    pub fn spawn(cmd: &mut Command, what: &str) -> Guard {
        Guard::try_spawn(cmd, what).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Guards a child started elsewhere.
    pub fn of(child: Child) -> Guard {
        Guard {
            child,
            gentle: None,
        }
    }

    /// On drop, first close stdin and wait up to `grace` for the process to end on its own
    /// (for one that cleans up when its stdin closes), then kill it.
    pub fn stop_gently(mut self, grace: Duration) -> Guard {
        self.gentle = Some(grace);
        self
    }

    /// Sends `sig` (`TERM`, `INT`, `KILL`, ...) with kill(1), asserting it was delivered.
    pub fn signal(&self, sig: &str) {
        assert!(self.try_signal(sig), "kill -{sig} {}", self.child.id());
    }

    /// Sends `sig` with kill(1); whether it was delivered.
    pub fn try_signal(&self, sig: &str) -> bool {
        Command::new("kill")
            .args([&format!("-{sig}"), &self.child.id().to_string()])
            .status()
            .is_ok_and(|st| st.success())
    }

    /// Waits until the process exits, at most `limit`; `None` if it still runs.
    pub fn wait_within(&mut self, limit: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        loop {
            if let Some(st) = self.child.try_wait().expect("wait for a child") {
                return Some(st);
            }
            if start.elapsed() >= limit {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits up to `limit`, then kills; returns how it ended.
    pub fn wait_or_kill(&mut self, limit: Duration) -> ExitStatus {
        match self.wait_within(limit) {
            Some(st) => st,
            None => {
                let _ = self.child.kill();
                self.child.wait().expect("wait for a killed child")
            }
        }
    }
}

impl Deref for Guard {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.child
    }
}

impl DerefMut for Guard {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.child
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(grace) = self.gentle {
            drop(self.child.stdin.take());
            if self.wait_within(grace).is_some() {
                return;
            }
        }
        // Ok(()) without a signal when it already exited and was reaped.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A child's stdout or stderr, read line by line on a thread into a shared buffer.
pub struct Pumped {
    text: Arc<Mutex<String>>,
    lines: Mutex<mpsc::Receiver<String>>,
}

impl Pumped {
    /// Starts reading `stream` (a child's piped stdout or stderr).
    pub fn new(stream: impl Read + Send + 'static) -> Pumped {
        let text = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = mpsc::channel();
        let t = text.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                {
                    let mut g = t.lock().unwrap_or_else(|e| e.into_inner());
                    g.push_str(&line);
                    g.push('\n');
                }
                let _ = tx.send(line);
            }
        });
        Pumped {
            text,
            lines: Mutex::new(rx),
        }
    }

    /// Everything read so far.
    pub fn text(&self) -> String {
        self.text.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Waits up to `limit` for a line (not yet waited for) that contains `needle`; false
    /// when the time runs out or the stream ends first.
    pub fn wait_for(&self, needle: &str, limit: Duration) -> bool {
        let lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        let end = Instant::now() + limit;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
    }

    /// Waits up to `limit` for the stream to end (the child and everything holding the pipe
    /// exited), so [`Pumped::text`] is complete; returns the text.
    pub fn finish(&self, limit: Duration) -> String {
        let lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        let end = Instant::now() + limit;
        // Ends with Disconnected (the stream closed) or Timeout (the time is up).
        while lines
            .recv_timeout(end.saturating_duration_since(Instant::now()))
            .is_ok()
        {}
        drop(lines);
        self.text()
    }
}
