//! Progress on stderr: one line per VM each time it changes phase, with the time
//! since the run started. stdout is reserved for results.

use std::time::Instant;

/// Writes progress lines.
#[derive(Debug, Clone)]
pub struct Progress {
    t0: Instant,
    width: usize,
    quiet: bool,
}

impl Progress {
    /// Progress for these VM names, timed from `t0`.
    pub fn new(t0: Instant, names: &[String], quiet: bool) -> Self {
        Self {
            t0,
            width: names.iter().map(String::len).max().unwrap_or(2).max(2),
            quiet,
        }
    }

    /// The run's start.
    pub fn t0(&self) -> Instant {
        self.t0
    }

    /// Print `VM  [  12.3s] phase`.
    pub fn line(&self, vm: &str, phase: &str) {
        if !self.quiet {
            let secs = self.t0.elapsed().as_secs_f64();
            eprintln!("{vm:<w$} [{secs:>7.1}s] {phase}", w = self.width);
        }
    }
}
