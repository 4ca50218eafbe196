//! Sliding windows of call outcomes: by count (a ring of the last N results) and by
//! time (a ring of time buckets). Both keep running totals, so recording a call and
//! reading the rates cost O(1) however many calls the window holds.
//!
//! A window that does not really slide is the defect to avoid: a breaker that keeps
//! cumulative counts since its last transition needs 10,000 failures to open after
//! 10,000 successes, whatever its "window" of 10 says. Here the count window forgets
//! the oldest result as each new one arrives, and the time window forgets a whole
//! bucket as time moves past it.

use std::time::Duration;

use tokio::time::Instant;

/// What a completed call counts as. Ignored outcomes never reach a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Outcome {
    /// The classifier's verdict was a failure.
    pub(crate) failure: bool,
    /// The call took at least the slow-call threshold.
    pub(crate) slow: bool,
}

impl Outcome {
    #[cfg(test)]
    pub(crate) const SUCCESS: Outcome = Outcome {
        failure: false,
        slow: false,
    };
    #[cfg(test)]
    pub(crate) const FAILURE: Outcome = Outcome {
        failure: true,
        slow: false,
    };

    fn bits(self) -> u8 {
        u8::from(self.failure) | (u8::from(self.slow) << 1)
    }
}

/// Totals over a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Counts {
    pub(crate) calls: u64,
    pub(crate) failures: u64,
    pub(crate) slow: u64,
}

impl Counts {
    fn add(&mut self, o: Outcome) {
        self.calls += 1;
        self.failures += u64::from(o.failure);
        self.slow += u64::from(o.slow);
    }

    fn subtract(&mut self, other: Counts) {
        self.calls -= other.calls;
        self.failures -= other.failures;
        self.slow -= other.slow;
    }

    /// `failures / calls`, 0 for an empty window.
    pub(crate) fn failure_rate(&self) -> f64 {
        ratio(self.failures, self.calls)
    }

    /// `slow / calls`, 0 for an empty window.
    pub(crate) fn slow_rate(&self) -> f64 {
        ratio(self.slow, self.calls)
    }
}

fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 / whole as f64
    }
}

/// Whether `part` out of `whole` reaches `threshold` (the one comparison every rate
/// check uses, so the reference model in the tests can use it too).
pub(crate) fn reaches(part: u64, whole: u64, threshold: f64) -> bool {
    whole > 0 && part as f64 >= threshold * whole as f64
}

/// The last `size` outcomes, oldest overwritten first.
///
/// Each slot holds a small code (0 for a slot not used yet, else 1 plus bits for
/// failure and slow) and the totals are packed in one word, 21 bits each, so a push
/// is two table look-ups and two additions (`size` is at most
/// [`MAX_WINDOW_CALLS`](super::config::MAX_WINDOW_CALLS), under 2^21).
#[derive(Debug, Clone)]
pub(crate) struct CountWindow {
    ring: Box<[u8]>,
    next: usize,
    packed: u64,
}

const FIELD: u32 = 21;
const MASK: u64 = (1 << FIELD) - 1;

/// The packed totals one slot code stands for.
const PACKED: [u64; 8] = {
    let mut t = [0u64; 8];
    let mut code = 1;
    while code < 8 {
        t[code] =
            1 | (((code as u64 >> 1) & 1) << FIELD) | (((code as u64 >> 2) & 1) << (2 * FIELD));
        code += 1;
    }
    t
};

fn code(o: Outcome) -> u8 {
    1 | (o.bits() << 1)
}

impl CountWindow {
    pub(crate) fn new(size: u32) -> Self {
        let size = usize::try_from(size.clamp(1, super::config::MAX_WINDOW_CALLS)).unwrap_or(1);
        Self {
            ring: vec![0; size].into_boxed_slice(),
            next: 0,
            packed: 0,
        }
    }

    pub(crate) fn size(&self) -> usize {
        self.ring.len()
    }

    /// Adds an outcome, forgetting the oldest once full; returns the number of calls
    /// now held.
    #[inline]
    pub(crate) fn push(&mut self, o: Outcome) -> u64 {
        let c = code(o);
        let slot = &mut self.ring[self.next];
        self.packed = self.packed - PACKED[usize::from(*slot & 7)] + PACKED[usize::from(c)];
        *slot = c;
        self.next += 1;
        if self.next == self.ring.len() {
            self.next = 0;
        }
        self.packed & MASK
    }

    #[inline]
    pub(crate) fn counts(&self) -> Counts {
        Counts {
            calls: self.packed & MASK,
            failures: (self.packed >> FIELD) & MASK,
            slow: (self.packed >> (2 * FIELD)) & MASK,
        }
    }

    pub(crate) fn clear(&mut self) {
        self.ring.fill(0);
        self.next = 0;
        self.packed = 0;
    }
}

/// The outcomes of the last `duration`, in `buckets` buckets of `duration / buckets`.
///
/// A call is filed under the bucket its completion instant falls in; the window
/// holds the newest bucket (the one the latest instant seen falls in) and the
/// `buckets - 1` before it, so it slides one bucket at a time. An instant older than
/// the window (a completion that read the clock just before a later one was filed) is
/// dropped; one within it lands in its own bucket.
#[derive(Debug, Clone)]
pub(crate) struct TimeWindow {
    origin: Instant,
    /// Bucket width in nanoseconds.
    width: u64,
    buckets: Box<[Counts]>,
    /// Index of the newest bucket (counted from `origin`), its slot in `buckets`, and
    /// where it starts (nanoseconds from `origin`): a call landing in it, the common
    /// case, needs no division.
    head: u64,
    head_slot: usize,
    head_start: u64,
    /// The newest bucket's span as instants, for the common case's two comparisons.
    head_from: Instant,
    head_until: Instant,
    counts: Counts,
    /// Set whenever the window slides (successes leaving can raise a rate); cleared by
    /// whoever next checks the rates.
    slid: bool,
}

impl TimeWindow {
    pub(crate) fn new(duration: Duration, buckets: u32, origin: Instant) -> Self {
        let n = u64::from(buckets.max(1));
        let nanos = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
        Self {
            origin,
            width: (nanos / n).max(1),
            buckets: vec![Counts::default(); usize::try_from(n).unwrap_or(1)].into_boxed_slice(),
            head: 0,
            head_slot: 0,
            head_start: 0,
            head_from: origin,
            head_until: after(origin, (nanos / n).max(1)),
            counts: Counts::default(),
            slid: false,
        }
    }

    /// The span one bucket covers.
    #[cfg(test)]
    pub(crate) fn bucket_width(&self) -> Duration {
        Duration::from_nanos(self.width)
    }

    #[inline]
    fn nanos(&self, at: Instant) -> u64 {
        let d = at.saturating_duration_since(self.origin);
        d.as_secs()
            .saturating_mul(1_000_000_000)
            .saturating_add(u64::from(d.subsec_nanos()))
    }

    fn slot(&self, index: u64) -> usize {
        // The modulus is below `buckets.len()`, which is a usize.
        (index % self.buckets.len() as u64) as usize
    }

    /// Moves the window so that its newest bucket is the one `now` falls in, forgetting
    /// the buckets it slides past. At most `buckets` buckets are cleared, however long
    /// the window sat idle.
    pub(crate) fn advance(&mut self, now: Instant) {
        if now >= self.head_until {
            self.slide_to(self.nanos(now) / self.width);
        }
    }

    #[cold]
    fn slide_to(&mut self, index: u64) {
        if index <= self.head {
            return;
        }
        let n = self.buckets.len() as u64;
        if index - self.head >= n {
            self.buckets.iter_mut().for_each(|b| *b = Counts::default());
            self.counts = Counts::default();
        } else {
            for i in self.head + 1..=index {
                let slot = self.slot(i);
                let gone = std::mem::take(&mut self.buckets[slot]);
                self.counts.subtract(gone);
            }
        }
        self.slid = true;
        self.head = index;
        self.head_slot = self.slot(index);
        self.head_start = index.saturating_mul(self.width);
        self.head_from = after(self.origin, self.head_start);
        self.head_until = after(self.origin, self.head_start.saturating_add(self.width));
    }

    #[inline]
    pub(crate) fn record(&mut self, at: Instant, o: Outcome) {
        let slot = if at >= self.head_from && at < self.head_until {
            self.head_slot
        } else {
            let index = self.nanos(at) / self.width;
            if index > self.head {
                self.slide_to(index);
                self.head_slot
            } else if index + self.buckets.len() as u64 <= self.head {
                // Older than the window.
                return;
            } else {
                self.slot(index)
            }
        };
        self.buckets[slot].add(o);
        self.counts.add(o);
    }

    /// Whether the window has slid since the last call of this method.
    #[inline]
    pub(crate) fn take_slid(&mut self) -> bool {
        std::mem::take(&mut self.slid)
    }

    /// The totals as of the latest instant seen.
    pub(crate) fn counts(&self) -> Counts {
        self.counts
    }

    pub(crate) fn clear(&mut self) {
        self.buckets.iter_mut().for_each(|b| *b = Counts::default());
        self.counts = Counts::default();
    }
}

/// `origin` plus `nanos`; `origin` itself if that is past what an instant can hold
/// (every call then takes the slower, still correct, path through the division).
fn after(origin: Instant, nanos: u64) -> Instant {
    origin
        .checked_add(Duration::from_nanos(nanos))
        .unwrap_or(origin)
}

/// A count window or a time window.
#[derive(Debug, Clone)]
pub(crate) enum Window {
    Count(CountWindow),
    Time(TimeWindow),
}

impl Window {
    /// The totals, first sliding a time window to `now` if given.
    #[inline]
    pub(crate) fn counts(&mut self, now: Option<Instant>) -> Counts {
        match self {
            Window::Count(w) => w.counts(),
            Window::Time(w) => {
                if let Some(now) = now {
                    w.advance(now);
                }
                w.counts()
            }
        }
    }

    /// The most calls a rate can be computed over (`u64::MAX` for a time window).
    pub(crate) fn capacity(&self) -> u64 {
        match self {
            Window::Count(w) => w.size() as u64,
            Window::Time(_) => u64::MAX,
        }
    }

    pub(crate) fn clear(&mut self) {
        match self {
            Window::Count(w) => w.clear(),
            Window::Time(w) => w.clear(),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The naive reference: every result with its instant, rescanned on each query.
    #[derive(Debug, Default)]
    pub(crate) struct Model {
        pub(crate) results: Vec<(Instant, Outcome)>,
    }

    impl Model {
        pub(crate) fn push(&mut self, at: Instant, o: Outcome) {
            self.results.push((at, o));
        }

        fn tally<'a>(it: impl Iterator<Item = &'a (Instant, Outcome)>) -> Counts {
            let mut c = Counts::default();
            for (_, o) in it {
                c.add(*o);
            }
            c
        }

        /// The last `n` results.
        pub(crate) fn last(&self, n: usize) -> Counts {
            let skip = self.results.len().saturating_sub(n);
            Self::tally(self.results.iter().skip(skip))
        }

        /// The results whose bucket is among the `buckets` newest, the newest being
        /// the one the latest instant seen (`latest`) falls in.
        pub(crate) fn within(
            &self,
            origin: Instant,
            width: Duration,
            buckets: u64,
            latest: Instant,
        ) -> Counts {
            let idx = |t: Instant| {
                (t.saturating_duration_since(origin).as_nanos() / width.as_nanos()) as u64
            };
            let head = idx(latest);
            Self::tally(
                self.results
                    .iter()
                    .filter(|(t, _)| idx(*t) + buckets > head),
            )
        }
    }

    fn outcome() -> impl Strategy<Value = Outcome> {
        (any::<bool>(), prop::bool::weighted(0.2))
            .prop_map(|(failure, slow)| Outcome { failure, slow })
    }

    #[test]
    fn count_window_slides_after_a_long_run_of_successes() {
        let mut w = CountWindow::new(10);
        for _ in 0..10_000 {
            w.push(Outcome::SUCCESS);
        }
        for _ in 0..5 {
            w.push(Outcome::FAILURE);
        }
        assert_eq!(
            w.counts(),
            Counts {
                calls: 10,
                failures: 5,
                slow: 0
            }
        );
        assert!(reaches(w.counts().failures, w.counts().calls, 0.5));
    }

    #[test]
    fn time_window_forgets_whole_buckets_and_idle_periods() {
        let t0 = Instant::now();
        let mut w = TimeWindow::new(Duration::from_secs(10), 10, t0);
        assert_eq!(w.bucket_width(), Duration::from_secs(1));
        w.record(t0, Outcome::FAILURE);
        w.record(t0 + Duration::from_millis(5_500), Outcome::SUCCESS);
        assert_eq!(w.counts().calls, 2);
        // Bucket 0 leaves when bucket 10 becomes the newest.
        w.advance(t0 + Duration::from_millis(9_999));
        assert_eq!(w.counts().calls, 2);
        w.advance(t0 + Duration::from_secs(10));
        assert_eq!(
            w.counts(),
            Counts {
                calls: 1,
                failures: 0,
                slow: 0
            }
        );
        // A long idle period clears everything at once.
        w.advance(t0 + Duration::from_secs(3600));
        assert_eq!(w.counts(), Counts::default());
        // A late completion older than the window is dropped, one inside is kept.
        w.record(t0 + Duration::from_secs(3590), Outcome::FAILURE);
        assert_eq!(w.counts().calls, 0);
        w.record(t0 + Duration::from_secs(3595), Outcome::FAILURE);
        assert_eq!(w.counts().failures, 1);
    }

    proptest! {
        #[test]
        fn count_window_matches_the_model(size in 1u32..40, outcomes in prop::collection::vec(outcome(), 0..400)) {
            let mut w = CountWindow::new(size);
            let mut m = Model::default();
            let t = Instant::now();
            for o in outcomes {
                w.push(o);
                m.push(t, o);
                prop_assert_eq!(w.counts(), m.last(size as usize));
            }
            w.clear();
            prop_assert_eq!(w.counts(), Counts::default());
        }

        #[test]
        fn time_window_matches_the_model(
            buckets in 1u32..12,
            width_ms in 1u64..50,
            // Steps forward in time, occasionally back a little (late completions).
            steps in prop::collection::vec((-30i64..120, outcome(), any::<bool>()), 0..300),
        ) {
            let origin = Instant::now();
            let duration = Duration::from_millis(width_ms * u64::from(buckets));
            let mut w = TimeWindow::new(duration, buckets, origin);
            let width = w.bucket_width();
            let mut m = Model::default();
            let mut clock: i64 = 0;
            let mut latest = origin;
            for (dt, o, query_only) in steps {
                clock = (clock + dt).max(0);
                let at = origin + Duration::from_millis(clock as u64);
                latest = latest.max(at);
                if query_only {
                    w.advance(at);
                } else {
                    w.record(at, o);
                    m.push(at, o);
                }
                let want = m.within(origin, width, u64::from(buckets), latest);
                prop_assert_eq!(w.counts(), want);
            }
        }
    }
}
