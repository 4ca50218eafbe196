use std::time::Duration;

use super::{Baseline, Limit, Sample, Window, clamp_limit};
use crate::shed::LimitConfig;

/// Additive increase, multiplicative decrease, as TCP Reno does with its window.
///
/// A *drop* is a sample marked dropped (a timeout, an overload answer) or one whose
/// round trip exceeds `tolerance` (default 1.2) times the baseline (the fastest
/// recent round trip, see the [module docs](super)). On a drop the limit is
/// multiplied by `backoff` (default 0.9); the calls already in flight were admitted
/// under the old limit, so their drops do not cut it again (one cut per round trip).
/// After a window of about one round trip with no drop, while at least half the
/// limit was in use, the limit grows by one.
#[derive(Debug, Clone)]
pub struct Aimd {
    limit: usize,
    min: usize,
    max: usize,
    backoff: f64,
    tolerance: f64,
    baseline: Baseline,
    window: Window,
    /// Samples still to come from calls admitted before the last cut.
    recovery: usize,
}

impl Aimd {
    /// An AIMD limit starting at `config.initial`, within `config.min..=config.max`.
    pub fn from_config(config: &LimitConfig) -> Self {
        let c = config.normalized();
        Self {
            limit: c.initial,
            min: c.min,
            max: c.max,
            backoff: 0.9,
            tolerance: 1.2,
            baseline: Baseline::new(c.baseline_window, c.max_healthy_rtt),
            window: Window::default(),
            recovery: 0,
        }
    }

    /// Sets the factor applied on a drop (default 0.9; kept within `0.1..=0.99`).
    #[must_use]
    pub fn with_backoff(mut self, backoff: f64) -> Self {
        self.backoff = if backoff.is_finite() {
            backoff.clamp(0.1, 0.99)
        } else {
            0.9
        };
        self
    }

    /// Sets how far above the baseline a round trip may be before it counts as a
    /// drop (default 1.2; at least 1.0).
    #[must_use]
    pub fn with_tolerance(mut self, tolerance: f64) -> Self {
        self.tolerance = if tolerance.is_finite() {
            tolerance.max(1.0)
        } else {
            1.2
        };
        self
    }

    fn is_slow(&self, rtt: Duration) -> bool {
        self.baseline
            .get()
            .is_some_and(|base| rtt.as_secs_f64() > base.as_secs_f64() * self.tolerance)
    }
}

impl Limit for Aimd {
    fn limit(&self) -> usize {
        self.limit
    }

    fn on_sample(&mut self, sample: Sample) {
        let mut dropped = sample.dropped;
        if !dropped {
            self.baseline.observe(sample.rtt, sample.at);
            dropped = self.is_slow(sample.rtt);
        }
        if self.recovery > 0 {
            self.recovery -= 1;
        } else if dropped {
            let old = self.limit;
            let mut cut = clamp_limit(old as f64 * self.backoff, self.min, self.max);
            if cut == old && old > self.min {
                cut = old - 1;
            }
            self.limit = cut;
            // The other calls in flight at the cut were admitted under the old limit.
            self.recovery = old.saturating_sub(1);
        }
        let counted = Sample { dropped, ..sample };
        if let Some(w) = self.window.add(&counted, self.limit) {
            if w.drops == 0 && w.max_in_flight.saturating_mul(2) >= self.limit {
                self.limit = (self.limit + 1).min(self.max);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shed::limit::testing::{feed, saturate};
    use tokio::time::Instant;

    fn cfg(initial: usize) -> LimitConfig {
        LimitConfig {
            initial,
            min: 2,
            max: 500,
            ..LimitConfig::default()
        }
    }

    const T: Duration = Duration::from_millis(10);

    #[test]
    fn grows_by_one_per_busy_window_and_not_when_idle() {
        let mut now = Instant::now();
        let mut l = Aimd::from_config(&cfg(20));
        feed(&mut l, &mut now, 20, T, 20, false);
        assert_eq!(l.limit(), 21);
        feed(&mut l, &mut now, 21, T, 21, false);
        assert_eq!(l.limit(), 22);
        // Only 5 of 22 in use: app-limited, no growth.
        feed(&mut l, &mut now, 200, T, 5, false);
        assert_eq!(l.limit(), 22);
    }

    #[test]
    fn one_cut_per_round_trip() {
        let mut now = Instant::now();
        let mut l = Aimd::from_config(&cfg(100));
        feed(&mut l, &mut now, 1, T, 100, true);
        assert_eq!(l.limit(), 90);
        // The other 99 calls admitted under the old limit time out too: no further cut.
        feed(&mut l, &mut now, 99, T, 100, true);
        assert_eq!(l.limit(), 90);
        feed(&mut l, &mut now, 1, T, 90, true);
        assert_eq!(l.limit(), 81);
    }

    #[test]
    fn a_slow_round_trip_is_a_drop_and_a_dropped_rtt_is_not_a_baseline() {
        let mut now = Instant::now();
        let mut l = Aimd::from_config(&cfg(50));
        // A drop answered in a microsecond must not become the baseline.
        feed(&mut l, &mut now, 1, Duration::from_micros(1), 50, true);
        assert_eq!(l.limit(), 45);
        feed(&mut l, &mut now, 60, T, 45, false);
        let before = l.limit();
        assert!(before >= 45, "{before}");
        // 12 ms is within 1.2 x 10 ms...
        feed(&mut l, &mut now, 1, Duration::from_millis(12), 45, false);
        assert_eq!(l.limit(), before);
        // ...13 ms is not.
        feed(&mut l, &mut now, 1, Duration::from_millis(13), 45, false);
        assert_eq!(l.limit(), (before as f64 * 0.9) as usize);
    }

    #[test]
    fn settles_near_capacity_from_below_and_above() {
        for initial in [12, 200] {
            let mut now = Instant::now();
            let mut l = Aimd::from_config(&cfg(initial));
            // The first round trips meet an empty callee: the baseline is the service time.
            feed(&mut l, &mut now, 10, T, 1, false);
            saturate(&mut l, &mut now, 50, T, 300);
            for _ in 0..50 {
                saturate(&mut l, &mut now, 50, T, 1);
                let x = l.limit();
                assert!((45..=75).contains(&x), "from {initial}: {x}");
            }
        }
    }
}
