use std::time::Duration;

use tokio::time::Instant;

use super::{Limit, Sample, Window, WindowSummary, clamp_limit};
use crate::shed::LimitConfig;

/// A gradient limit in the style of Netflix concurrency-limits' Gradient2.
///
/// Once per window of about one round trip it compares a *long-term* round trip
/// (the baseline) with the window's mean round trip (the *short-term* one):
///
/// ```text
/// gradient  = clamp(tolerance * long / short, 0.5, 1.0)     (0.5 if the window had a drop)
/// new_limit = limit * gradient + queue
/// limit     = limit * (1 - smoothing) + new_limit * smoothing
/// ```
///
/// With the defaults (`tolerance` 1.25, `queue` 4, `smoothing` 0.2) the limit grows
/// by 0.8 per round trip while round trips stay within 25% of the baseline, and
/// settles where they are about 25% above it, plus a few calls of queue.
///
/// The long-term round trip starts at the fastest sample of the first window, drops
/// at once to any faster window mean, and otherwise rises toward the window means
/// with a time constant of [`LimitConfig::baseline_window`], never above
/// [`LimitConfig::max_healthy_rtt`]. Netflix's version averages it over 600 windows
/// and decays it only when it is twice the short one; a steady overload then slowly
/// teaches it that slow is normal, which is the drift these guards stop.
#[derive(Debug, Clone)]
pub struct Gradient {
    limit: f64,
    /// `limit` clamped and rounded, as [`Limit::limit`] reports it (read per sample).
    current: usize,
    min: usize,
    max: usize,
    tolerance: f64,
    smoothing: f64,
    queue: f64,
    long: Option<Duration>,
    long_window: Duration,
    updated_at: Option<Instant>,
    max_healthy: Option<Duration>,
    window: Window,
}

impl Gradient {
    /// A gradient limit starting at `config.initial`, within `config.min..=config.max`.
    pub fn from_config(config: &LimitConfig) -> Self {
        let c = config.normalized();
        Self {
            limit: c.initial as f64,
            current: clamp_limit(c.initial as f64, c.min, c.max),
            min: c.min,
            max: c.max,
            tolerance: 1.25,
            smoothing: 0.2,
            queue: 4.0,
            long: None,
            long_window: c.baseline_window,
            updated_at: None,
            max_healthy: c.max_healthy_rtt,
            window: Window::default(),
        }
    }

    /// Sets how much slower than the baseline a round trip may be before the limit
    /// shrinks (default 1.25; at least 1.0).
    #[must_use]
    pub fn with_tolerance(mut self, tolerance: f64) -> Self {
        self.tolerance = if tolerance.is_finite() {
            tolerance.max(1.0)
        } else {
            1.25
        };
        self
    }

    /// Sets the weight of each new estimate (default 0.2; within `0.01..=1`).
    #[must_use]
    pub fn with_smoothing(mut self, smoothing: f64) -> Self {
        self.smoothing = if smoothing.is_finite() {
            smoothing.clamp(0.01, 1.0)
        } else {
            0.2
        };
        self
    }

    /// Sets the queue allowance added to each estimate (default 4 calls).
    #[must_use]
    pub fn with_queue(mut self, queue: f64) -> Self {
        self.queue = if queue.is_finite() {
            queue.max(0.0)
        } else {
            4.0
        };
        self
    }

    /// The long-term round trip, once known.
    pub fn baseline(&self) -> Option<Duration> {
        self.long
    }

    fn update_long(&mut self, w: &WindowSummary, now: Instant) {
        let (Some(short), Some(fastest)) = (w.mean_rtt, w.min_rtt) else {
            return;
        };
        let long = match self.long {
            // The first window may have met an empty callee for only its first
            // calls: its fastest sample is the best guess at the no-load round trip.
            None => fastest,
            Some(long) if short < long => short,
            Some(long) => {
                let dt = self
                    .updated_at
                    .map_or(Duration::ZERO, |t| now.saturating_duration_since(t));
                let weight = if self.long_window.is_zero() {
                    1.0
                } else {
                    (dt.as_secs_f64() / self.long_window.as_secs_f64()).min(1.0)
                };
                long + (short - long).mul_f64(weight)
            }
        };
        self.long = Some(self.max_healthy.map_or(long, |cap| long.min(cap)));
        self.updated_at = Some(now);
    }

    fn update(&mut self, w: WindowSummary, now: Instant) {
        self.update_long(&w, now);
        let gradient = if w.drops > 0 {
            0.5
        } else {
            let (Some(short), Some(long)) = (w.mean_rtt, self.long) else {
                return;
            };
            if (w.max_in_flight as f64) * 2.0 < self.limit {
                // Not using what it has: no evidence either way.
                return;
            }
            let ratio = self.tolerance * long.as_secs_f64() / short.as_secs_f64().max(1e-9);
            ratio.clamp(0.5, 1.0)
        };
        let estimate = self.limit * gradient + self.queue;
        let next = self.limit * (1.0 - self.smoothing) + estimate * self.smoothing;
        self.limit = next.clamp(self.min as f64, self.max as f64);
        self.current = clamp_limit(self.limit, self.min, self.max);
    }
}

impl Gradient {
    /// Feeds a whole window, closed at `at` (what [`Limit::on_sample`] does when its
    /// own window fills).
    pub(crate) fn on_window(&mut self, window: WindowSummary, at: Instant) {
        self.update(window, at);
    }
}

impl Limit for Gradient {
    #[inline]
    fn limit(&self) -> usize {
        self.current
    }

    #[inline]
    fn on_sample(&mut self, sample: Sample) {
        if let Some(w) = self.window.add(&sample, self.current) {
            self.update(w, sample.at);
        }
    }
}

#[cfg(test)]
mod tests {
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
    fn grows_while_round_trips_stay_flat() {
        let mut now = Instant::now();
        let mut l = Gradient::from_config(&cfg(20));
        for _ in 0..10 {
            let x = l.limit();
            feed(&mut l, &mut now, x, T, x, false);
        }
        assert!(l.limit() >= 26, "{}", l.limit());
        assert_eq!(l.baseline(), Some(T));
    }

    #[test]
    fn app_limited_windows_do_not_grow_it() {
        let mut now = Instant::now();
        let mut l = Gradient::from_config(&cfg(40));
        feed(&mut l, &mut now, 4000, T, 3, false);
        assert_eq!(l.limit(), 40);
    }

    #[test]
    fn shrinks_when_round_trips_rise_and_on_drops() {
        let mut now = Instant::now();
        let mut l = Gradient::from_config(&cfg(100));
        feed(&mut l, &mut now, 100, T, 100, false);
        let grown = l.limit();
        feed(&mut l, &mut now, grown, T * 3, grown, false);
        let shrunk = l.limit();
        assert!(shrunk < grown, "{grown} -> {shrunk}");
        // Timeouts: drops shrink it even though no round trip looked slow.
        feed(&mut l, &mut now, shrunk, T, shrunk, true);
        assert!(l.limit() < shrunk);
    }

    #[test]
    fn baseline_does_not_drift_up_during_a_long_incident() {
        let mut now = Instant::now();
        let cfg = LimitConfig {
            max_healthy_rtt: Some(Duration::from_millis(15)),
            baseline_window: Duration::from_secs(1),
            ..cfg(50)
        };
        let mut l = Gradient::from_config(&cfg);
        feed(&mut l, &mut now, 50, T, 50, false);
        // Ten minutes of 200 ms round trips: without the cap the baseline would follow.
        for _ in 0..6000 {
            let x = l.limit();
            now += Duration::from_millis(100);
            feed(&mut l, &mut now, x, T * 20, x, false);
        }
        assert_eq!(l.baseline(), Some(Duration::from_millis(15)));
        // Held where the lowest gradient balances the queue allowance: 0.5 L + 4 = L.
        assert_eq!(l.limit(), 8);
    }

    #[test]
    fn settles_near_capacity_and_follows_it() {
        for initial in [12, 200] {
            let mut now = Instant::now();
            let mut l = Gradient::from_config(&cfg(initial));
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
