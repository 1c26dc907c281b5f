//! Userspace selection (fallback mode only; kernel mode selects in the tc program). Uses the same
//! rules as the kernel (reset-common), so both modes agree on what `exact` means.
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::config::Selection;

pub struct UserspaceSelector {
    selection: Selection,
    ppm: u64,
    sequence: AtomicU64,
    rng: AtomicU64,
}

impl UserspaceSelector {
    pub fn new(selection: Selection, ppm: u32, seed: u64) -> Self {
        Self {
            selection,
            ppm: u64::from(ppm),
            sequence: AtomicU64::new(0),
            rng: AtomicU64::new(seed | 1),
        }
    }

    pub fn select(&self) -> bool {
        match self.selection {
            Selection::Exact => {
                reset_common::exact_selects(self.sequence.fetch_add(1, Relaxed), self.ppm)
            }
            Selection::Random => reset_common::random_selects(self.next_u32(), self.ppm),
        }
    }

    /// splitmix64 over an atomic counter: uniform, lock-free, good enough for sampling.
    fn next_u32(&self) -> u32 {
        let mut z = self
            .rng
            .fetch_add(0x9E37_79B9_7F4A_7C15, Relaxed)
            .wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 32) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_selects_exactly_floor_np() {
        let s = UserspaceSelector::new(Selection::Exact, 300_000, 1);
        let n = (0..1000).filter(|_| s.select()).count();
        assert_eq!(n, 300);
    }

    #[test]
    fn random_is_within_binomial_bounds() {
        let s = UserspaceSelector::new(Selection::Random, 300_000, 42);
        let n = (0..100_000).filter(|_| s.select()).count() as f64;
        // mean 30000, sd ~145; 5 sd
        assert!((n - 30_000.0).abs() < 725.0, "{n}");
    }
}
