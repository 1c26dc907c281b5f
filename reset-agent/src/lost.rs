//! Lost flows, live: flows the kernel selected (and steered) that the proxy never accepted. A
//! flow needs a round trip or two to reach the proxy's accept queue, longer when SYNs are
//! retransmitted under load, so a flow counts as lost only once it was selected more than
//! `GRACE` ago. Pure bookkeeping over counter samples; the lifecycle feeds it and logs.
use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

/// How long a selected flow may take to be accepted before it is called lost.
pub const GRACE: Duration = Duration::from_secs(3);

#[derive(Debug, Default)]
pub struct LostFlows {
    /// (when, kernel flows_selected then), oldest first, covering the last GRACE.
    samples: VecDeque<(Instant, u64)>,
    /// The highest count already warned about.
    warned: u64,
}

impl LostFlows {
    /// Records a sample; returns `Some(lost)` when more flows are lost than last warned about.
    pub fn observe(&mut self, now: Instant, selected: u64, accepted: u64) -> Option<u64> {
        self.samples.push_back((now, selected));
        // The newest sample at least GRACE old is the baseline; older ones are not needed.
        let mut baseline = None;
        while let Some(&(t, s)) = self.samples.front() {
            if now.duration_since(t) < GRACE {
                break;
            }
            baseline = Some(s);
            self.samples.pop_front();
        }
        if let Some(s) = baseline {
            self.samples.push_front((now - GRACE, s));
        }
        let lost = baseline?.saturating_sub(accepted);
        (lost > self.warned).then(|| {
            self.warned = lost;
            lost
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flows_in_their_grace_are_not_lost() {
        let t0 = Instant::now();
        let mut l = LostFlows::default();
        assert_eq!(l.observe(t0, 10, 0), None);
        assert_eq!(l.observe(t0 + Duration::from_secs(1), 20, 5), None);
        // 3 s later the 10 selected at t0 are due; 8 accepted: 2 lost.
        assert_eq!(l.observe(t0 + Duration::from_secs(3), 30, 8), Some(2));
        // Same loss again: no new warning; more loss: a new one.
        assert_eq!(l.observe(t0 + Duration::from_millis(3500), 30, 8), None);
        assert_eq!(l.observe(t0 + Duration::from_secs(5), 30, 15), Some(5));
    }

    #[test]
    fn nothing_lost_when_the_proxy_keeps_up() {
        let t0 = Instant::now();
        let mut l = LostFlows::default();
        for i in 0..100u64 {
            let t = t0 + Duration::from_millis(500 * i);
            assert_eq!(l.observe(t, i * 10, i * 10), None);
        }
    }
}
