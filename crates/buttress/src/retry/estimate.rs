//! A running estimate of the median attempt duration, for the deadline check.
//!
//! A "frugal" streaming median: each sample nudges the estimate a small relative step
//! towards itself (up if the sample is above, down if below), so the estimate settles
//! where half the samples fall on each side. One atomic word, no lock and no history:
//! concurrent updates may lose a step, which only slows convergence a little.
//!
//! Steps are 1/16 of the estimate (at least one microsecond) and never overshoot the
//! sample, so the estimate always lies between the smallest and the largest sample
//! seen, and follows a tenfold shift in about 40 samples.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// No sample yet.
const NONE: u64 = u64::MAX;
/// The smallest step, so an estimate near zero can still move.
const MIN_STEP_NANOS: u64 = 1_000;

/// The median estimate; see the module docs.
#[derive(Debug)]
pub(crate) struct MedianEstimate {
    nanos: AtomicU64,
}

impl Default for MedianEstimate {
    fn default() -> Self {
        Self {
            nanos: AtomicU64::new(NONE),
        }
    }
}

impl MedianEstimate {
    /// Folds one attempt duration into the estimate.
    pub(crate) fn record(&self, sample: Duration) {
        let x = u64::try_from(sample.as_nanos())
            .unwrap_or(NONE - 1)
            .min(NONE - 1);
        let m = self.nanos.load(Ordering::Relaxed);
        let next = if m == NONE {
            x
        } else {
            let step = (m / 16).max(MIN_STEP_NANOS);
            match x.cmp(&m) {
                std::cmp::Ordering::Greater => m.saturating_add(step).min(x),
                std::cmp::Ordering::Less => m.saturating_sub(step).max(x),
                std::cmp::Ordering::Equal => return,
            }
        };
        self.nanos.store(next, Ordering::Relaxed);
    }

    /// The current estimate, if any sample was recorded.
    pub(crate) fn get(&self) -> Option<Duration> {
        match self.nanos.load(Ordering::Relaxed) {
            NONE => None,
            n => Some(Duration::from_nanos(n)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rand::{Random, SplitMix};
    use proptest::prelude::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn empty_until_the_first_sample() {
        let e = MedianEstimate::default();
        assert_eq!(e.get(), None);
        e.record(7 * MS);
        assert_eq!(e.get(), Some(7 * MS));
    }

    #[test]
    fn settles_on_the_median_not_the_mean() {
        // 70% fast answers at 10..12 ms, 30% slow ones at 900..1000 ms: the mean is
        // near 300 ms, the median near 11 ms.
        let rng = SplitMix::seeded(5);
        let e = MedianEstimate::default();
        let mut samples = Vec::new();
        for _ in 0..5_000 {
            let x = if rng.chance(0.7) {
                MS * 10 + MS.mul_f64(2.0 * rng.next_f64())
            } else {
                MS * 900 + (MS * 100).mul_f64(rng.next_f64())
            };
            samples.push(x);
            e.record(x);
        }
        let est = e.get().unwrap();
        // Within a step (1/16) of the fast cluster that holds the median.
        assert!(est >= MS * 9 && est <= MS * 13, "{est:?}");
        let mean = samples.iter().sum::<Duration>() / samples.len() as u32;
        assert!(mean > 200 * MS, "{mean:?}");
    }

    #[test]
    fn follows_a_tenfold_shift_within_about_forty_samples() {
        let e = MedianEstimate::default();
        for _ in 0..100 {
            e.record(10 * MS);
        }
        for _ in 0..40 {
            e.record(100 * MS);
        }
        let est = e.get().unwrap();
        assert!(est >= 90 * MS && est <= 100 * MS, "{est:?}");
        for _ in 0..40 {
            e.record(10 * MS);
        }
        let est = e.get().unwrap();
        assert!(est <= 12 * MS, "{est:?}");
    }

    proptest! {
        /// The estimate never leaves the range of the samples seen.
        #[test]
        fn stays_within_the_samples(samples in prop::collection::vec(0u64..10_000_000_000, 1..300)) {
            let e = MedianEstimate::default();
            for &s in &samples {
                e.record(Duration::from_nanos(s));
            }
            let est = e.get().unwrap().as_nanos() as u64;
            let lo = *samples.iter().min().unwrap();
            let hi = *samples.iter().max().unwrap();
            prop_assert!(lo <= est && est <= hi, "{est} not in {lo}..={hi}");
        }
    }
}
