use tokio::time::Instant;

use super::{Baseline, Limit, Sample, Window, WindowSummary, clamp_limit, log10_step};
use crate::shed::LimitConfig;

/// A delay-based limit in the style of TCP Vegas (and Netflix concurrency-limits'
/// `VegasLimit`).
///
/// Once per window of about one round trip it estimates how many calls are queued at
/// the callee from the baseline (no-load) round trip and the window's mean one:
/// `queue = limit * (1 - baseline / rtt)`. With `step = max(1, log10(limit))`:
///
/// | estimated queue | new limit |
/// |---|---|
/// | at most `step` | `limit + 6 * step` (far from the knee: grow fast) |
/// | below `alpha = 3 * step` | `limit + step` |
/// | above `beta = 6 * step` | `limit - step` |
/// | otherwise | unchanged |
///
/// A window with a drop shrinks it by `step`. The baseline is the fastest round trip
/// of the last one to two [`LimitConfig::baseline_window`]s, never above
/// [`LimitConfig::max_healthy_rtt`]: it is re-learned once per window, like Vegas'
/// periodic probe of the minimum round trip, so it follows a service that really got
/// slower, but no faster than that.
#[derive(Debug, Clone)]
pub struct Vegas {
    limit: f64,
    min: usize,
    max: usize,
    baseline: Baseline,
    window: Window,
}

impl Vegas {
    /// A Vegas limit starting at `config.initial`, within `config.min..=config.max`.
    pub fn from_config(config: &LimitConfig) -> Self {
        let c = config.normalized();
        Self {
            limit: c.initial as f64,
            min: c.min,
            max: c.max,
            baseline: Baseline::new(c.baseline_window, c.max_healthy_rtt),
            window: Window::default(),
        }
    }

    fn update(&mut self, w: WindowSummary, now: Instant) {
        if let Some(fastest) = w.min_rtt {
            self.baseline.observe(fastest, now);
        }
        let l = self.limit;
        let step = log10_step(l);
        let next = if w.drops > 0 {
            l - step
        } else {
            let (Some(rtt), Some(base)) = (w.mean_rtt, self.baseline.get()) else {
                return;
            };
            if (w.max_in_flight as f64) * 2.0 < l {
                return;
            }
            let queue = l * (1.0 - base.as_secs_f64() / rtt.as_secs_f64().max(1e-9));
            if queue <= step {
                l + 6.0 * step
            } else if queue < 3.0 * step {
                l + step
            } else if queue > 6.0 * step {
                l - step
            } else {
                l
            }
        };
        self.limit = next.clamp(self.min as f64, self.max as f64);
    }
}

impl Vegas {
    /// Feeds a whole window, closed at `at` (what [`Limit::on_sample`] does when its
    /// own window fills).
    pub(crate) fn on_window(&mut self, window: WindowSummary, at: Instant) {
        self.update(window, at);
    }
}

impl Limit for Vegas {
    fn limit(&self) -> usize {
        clamp_limit(self.limit, self.min, self.max)
    }

    fn on_sample(&mut self, sample: Sample) {
        if let Some(w) = self.window.add(&sample, self.limit()) {
            self.update(w, sample.at);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::shed::limit::testing::{feed, saturate};

    const T: Duration = Duration::from_millis(10);

    fn cfg(initial: usize) -> LimitConfig {
        LimitConfig {
            initial,
            min: 2,
            max: 1000,
            ..LimitConfig::default()
        }
    }

    #[test]
    fn grows_fast_without_queueing_and_not_when_idle() {
        let mut now = Instant::now();
        let mut l = Vegas::from_config(&cfg(20));
        feed(&mut l, &mut now, 20, T, 20, false);
        // No queue: grows by 6 * log10(20) = 7.8.
        assert_eq!(l.limit(), 27);
        let mut idle = Vegas::from_config(&cfg(20));
        feed(&mut idle, &mut now, 500, T, 2, false);
        assert_eq!(idle.limit(), 20);
    }

    #[test]
    fn shrinks_on_a_long_queue_and_on_drops() {
        let mut now = Instant::now();
        let mut l = Vegas::from_config(&cfg(100));
        feed(&mut l, &mut now, 100, T, 100, false);
        let before = l.limit();
        // Twice the baseline: half the calls are queued.
        feed(&mut l, &mut now, before, T * 2, before, false);
        assert!(l.limit() < before);
        let before = l.limit();
        feed(&mut l, &mut now, before, T, before, true);
        assert!(l.limit() < before);
    }

    #[test]
    fn dropped_samples_do_not_set_the_baseline() {
        let mut now = Instant::now();
        let mut l = Vegas::from_config(&cfg(10));
        feed(&mut l, &mut now, 10, Duration::from_micros(5), 10, true);
        feed(&mut l, &mut now, 10, T, 10, false);
        // The baseline is 10 ms, not 5 us: no queue, fast growth.
        assert!(l.limit() > 10, "{}", l.limit());
    }

    #[test]
    fn settles_near_capacity_and_follows_it() {
        for initial in [12, 200] {
            let mut now = Instant::now();
            let mut l = Vegas::from_config(&cfg(initial));
            feed(&mut l, &mut now, 10, T, initial, false);
            saturate(&mut l, &mut now, 50, T, 400);
            for _ in 0..50 {
                saturate(&mut l, &mut now, 50, T, 1);
                assert!(
                    (45..=75).contains(&l.limit()),
                    "from {initial}: {}",
                    l.limit()
                );
            }
            saturate(&mut l, &mut now, 100, T, 400);
            assert!((90..=150).contains(&l.limit()), "doubled: {}", l.limit());
            saturate(&mut l, &mut now, 25, T, 400);
            assert!((22..=38).contains(&l.limit()), "halved: {}", l.limit());
        }
    }
}
