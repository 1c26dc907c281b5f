//! Statistics for paired measurements. A figure like "fault throughput / direct throughput" is
//! measured as pairs taken back to back (direct, fault or fault, direct, the order drawn at
//! random), so slow drift of a shared machine cancels within a pair. The figure is the median
//! of the per-pair ratios, with its interquartile range and a bootstrap 95% interval of the
//! median; a goal is met only when the whole interval clears it.
use serde::Serialize;

/// A small deterministic generator (xorshift64*): reproducible pair orders and bootstraps.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn coin(&mut self) -> bool {
        self.next_u64() >> 63 == 1
    }
    fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() >> 32) as usize * n) >> 32
    }
}

/// Median of `v` (NaN when empty); non-finite values are dropped.
pub fn median_of(v: &[f64]) -> f64 {
    quantile(v, 0.5)
}

/// Linear-interpolated quantile of the finite values of `v`.
pub fn quantile(v: &[f64], q: f64) -> f64 {
    let mut s: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    if s.is_empty() {
        return f64::NAN;
    }
    s.sort_by(f64::total_cmp);
    let pos = q.clamp(0.0, 1.0) * (s.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    s[lo] + (s[hi] - s[lo]) * (pos - lo as f64)
}

/// Which way a figure must go to meet its goal.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Goal {
    /// The figure must be at least this (a throughput ratio).
    AtLeast(f64),
    /// The figure must be at most this (a latency ratio).
    AtMost(f64),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Met,
    Missed,
    /// The 95% interval straddles the goal: this run cannot tell.
    Inconclusive,
    NoGoal,
}

/// The summary of paired ratios.
#[derive(Clone, Debug, Serialize)]
pub struct Paired {
    pub ratios: Vec<f64>,
    pub median: f64,
    pub q1: f64,
    pub q3: f64,
    /// Bootstrap 95% interval of the median (2000 resamples).
    pub ci95: (f64, f64),
    pub goal: Option<Goal>,
    pub verdict: Verdict,
}

pub fn paired(ratios: Vec<f64>, goal: Option<Goal>, rng: &mut Rng) -> Paired {
    let finite: Vec<f64> = ratios.iter().copied().filter(|x| x.is_finite()).collect();
    let mut medians = Vec::with_capacity(2000);
    if !finite.is_empty() {
        for _ in 0..2000 {
            let sample: Vec<f64> = (0..finite.len())
                .map(|_| finite[rng.below(finite.len())])
                .collect();
            medians.push(median_of(&sample));
        }
    }
    let ci95 = (quantile(&medians, 0.025), quantile(&medians, 0.975));
    let verdict = match goal {
        None => Verdict::NoGoal,
        Some(_) if !ci95.0.is_finite() => Verdict::Inconclusive,
        Some(Goal::AtLeast(g)) if ci95.0 >= g => Verdict::Met,
        Some(Goal::AtLeast(g)) if ci95.1 < g => Verdict::Missed,
        Some(Goal::AtMost(g)) if ci95.1 <= g => Verdict::Met,
        Some(Goal::AtMost(g)) if ci95.0 > g => Verdict::Missed,
        Some(_) => Verdict::Inconclusive,
    };
    Paired {
        median: median_of(&finite),
        q1: quantile(&finite, 0.25),
        q3: quantile(&finite, 0.75),
        ci95,
        goal,
        verdict,
        ratios,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate() {
        let v = [4.0, 1.0, 3.0, 2.0];
        assert_eq!(median_of(&v), 2.5);
        assert_eq!(quantile(&v, 0.0), 1.0);
        assert_eq!(quantile(&v, 1.0), 4.0);
        assert!(median_of(&[]).is_nan());
    }

    #[test]
    fn verdicts_follow_the_interval() {
        let mut rng = Rng::new(7);
        let tight = vec![0.98, 0.985, 0.99, 0.975, 0.98, 0.99, 0.985];
        assert_eq!(
            paired(tight.clone(), Some(Goal::AtLeast(0.95)), &mut rng).verdict,
            Verdict::Met
        );
        assert_eq!(
            paired(tight, Some(Goal::AtLeast(0.995)), &mut rng).verdict,
            Verdict::Missed
        );
        let wide = vec![0.86, 1.02, 0.93, 0.99, 0.90, 1.01, 0.96];
        assert_eq!(
            paired(wide, Some(Goal::AtLeast(0.95)), &mut rng).verdict,
            Verdict::Inconclusive
        );
        let lat = vec![1.02, 1.05, 1.01, 1.04, 1.03, 1.02, 1.06];
        assert_eq!(
            paired(lat, Some(Goal::AtMost(1.1)), &mut rng).verdict,
            Verdict::Met
        );
    }

    #[test]
    fn coin_is_fair_enough() {
        let mut rng = Rng::new(1);
        let heads = (0..10_000).filter(|_| rng.coin()).count();
        assert!((4_700..5_300).contains(&heads), "{heads}");
    }
}
