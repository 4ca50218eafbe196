//! Requests and accepts over a sliding window: a ring of ten time buckets, and the
//! SRE book's rejection probability.

use std::time::Duration;

use tokio::time::Instant;

/// Buckets in a window.
pub(crate) const BUCKETS: usize = 10;

#[derive(Debug, Clone, Copy, Default)]
struct Bucket {
    epoch: u64,
    requests: u64,
    accepts: u64,
}

/// Counts over the last `window`, in [`BUCKETS`] buckets: a bucket leaves the window
/// whole once it is older than the window.
#[derive(Debug, Clone)]
pub(crate) struct Window {
    buckets: [Bucket; BUCKETS],
    width: Duration,
    origin: Option<Instant>,
    head: u64,
    requests: u64,
    accepts: u64,
}

impl Window {
    fn width_for(window: Duration) -> Duration {
        (window / BUCKETS as u32).max(Duration::from_millis(1))
    }

    /// The span a window made for `window` covers (whole buckets).
    pub(crate) fn span_for(window: Duration) -> Duration {
        Self::width_for(window) * BUCKETS as u32
    }

    pub(crate) fn new(window: Duration) -> Self {
        let width = Self::width_for(window);
        Self {
            buckets: [Bucket::default(); BUCKETS],
            width,
            origin: None,
            head: 0,
            requests: 0,
            accepts: 0,
        }
    }

    /// The window this was made for.
    pub(crate) fn span(&self) -> Duration {
        self.width * BUCKETS as u32
    }

    /// Moves the window to `now` and returns the epoch (bucket number) of `now`.
    pub(crate) fn advance(&mut self, now: Instant) -> u64 {
        let origin = *self.origin.get_or_insert(now);
        let e = (now.saturating_duration_since(origin).as_nanos() / self.width.as_nanos()) as u64;
        if e > self.head {
            let gone = (e - self.head).min(BUCKETS as u64);
            for step in 0..gone {
                let epoch = e - step;
                let b = &mut self.buckets[(epoch % BUCKETS as u64) as usize];
                self.requests -= b.requests;
                self.accepts -= b.accepts;
                *b = Bucket {
                    epoch,
                    requests: 0,
                    accepts: 0,
                };
            }
            self.head = e;
        }
        e
    }

    fn bucket(&mut self, epoch: u64) -> Option<&mut Bucket> {
        if epoch > self.head || self.head - epoch >= BUCKETS as u64 {
            return None;
        }
        let b = &mut self.buckets[(epoch % BUCKETS as u64) as usize];
        (b.epoch == epoch).then_some(b)
    }

    /// Counts a request at `epoch` (from [`advance`](Self::advance)).
    pub(crate) fn request(&mut self, epoch: u64) {
        if let Some(b) = self.bucket(epoch) {
            b.requests += 1;
            self.requests += 1;
        }
    }

    /// Counts the request made at `epoch` as accepted, if its bucket is still in the
    /// window.
    pub(crate) fn accept(&mut self, epoch: u64) {
        if let Some(b) = self.bucket(epoch) {
            if b.accepts < b.requests {
                b.accepts += 1;
                self.accepts += 1;
            }
        }
    }

    /// Forgets the request made at `epoch` (it says nothing about the upstream).
    pub(crate) fn forget(&mut self, epoch: u64) {
        if let Some(b) = self.bucket(epoch) {
            if b.requests > b.accepts {
                b.requests -= 1;
                self.requests -= 1;
            }
        }
    }

    pub(crate) fn requests(&self) -> u64 {
        self.requests
    }

    pub(crate) fn accepts(&self) -> u64 {
        self.accepts
    }

    /// max(0, (requests - k * accepts) / (requests + 1)), capped at `max`.
    pub(crate) fn rejection_probability(&self, k: f64, max: f64) -> f64 {
        let requests = self.requests as f64;
        let p = (requests - k * self.accepts as f64) / (requests + 1.0);
        p.clamp(0.0, max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn the_sre_formula() {
        let t0 = Instant::now();
        let mut w = Window::new(10 * S);
        let e = w.advance(t0);
        for i in 0..100 {
            w.request(e);
            if i < 20 {
                w.accept(e);
            }
        }
        // (100 - 2 * 20) / 101
        assert!((w.rejection_probability(2.0, 1.0) - 60.0 / 101.0).abs() < 1e-12);
        assert_eq!(w.rejection_probability(2.0, 0.5), 0.5);
        assert_eq!(w.rejection_probability(5.0, 1.0), 0.0);
    }

    #[test]
    fn buckets_leave_the_window_whole() {
        let t0 = Instant::now();
        let mut w = Window::new(10 * S);
        let e0 = w.advance(t0);
        w.request(e0);
        let e5 = w.advance(t0 + 5 * S);
        w.request(e5);
        w.accept(e5);
        assert_eq!((w.requests(), w.accepts()), (2, 1));
        w.advance(t0 + 9 * S);
        assert_eq!(w.requests(), 2);
        w.advance(t0 + 10 * S);
        assert_eq!((w.requests(), w.accepts()), (1, 1), "the first bucket left");
        w.advance(t0 + 100 * S);
        assert_eq!((w.requests(), w.accepts()), (0, 0));
        // An answer to a request from a bucket that left is not counted.
        w.accept(e5);
        assert_eq!(w.accepts(), 0);
    }

    #[test]
    fn forgotten_requests_do_not_count() {
        let t0 = Instant::now();
        let mut w = Window::new(10 * S);
        let e = w.advance(t0);
        w.request(e);
        w.request(e);
        w.forget(e);
        assert_eq!(w.requests(), 1);
    }

    proptest! {
        /// Against a naive model that keeps every event with its time: the totals
        /// equal the events whose bucket is still within the window.
        #[test]
        fn matches_a_naive_model(events in proptest::collection::vec((0u64..3000, 0u8..3), 1..300)) {
            let t0 = Instant::now();
            let width = Duration::from_millis(100);
            let mut w = Window::new(width * BUCKETS as u32);
            let mut log: Vec<(u64, bool)> = vec![]; // (epoch, accepted)
            let mut now_ms = 0u64;
            for (dt, kind) in events {
                now_ms += dt / 10;
                let e = w.advance(t0 + Duration::from_millis(now_ms));
                match kind {
                    0 => { w.request(e); log.push((e, false)); }
                    _ => {
                        w.request(e);
                        w.accept(e);
                        log.push((e, true));
                    }
                }
                let live: Vec<&(u64, bool)> = log.iter().filter(|(ep, _)| e - ep < BUCKETS as u64).collect();
                prop_assert_eq!(w.requests(), live.len() as u64);
                prop_assert_eq!(w.accepts(), live.iter().filter(|(_, a)| *a).count() as u64);
            }
        }
    }
}
