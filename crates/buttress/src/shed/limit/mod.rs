//! Concurrency-limit algorithms: plain structs fed with round-trip samples.
//!
//! The shed layer admits a call while fewer than [`Limit::limit`] calls are in flight
//! and feeds every admitted call's outcome back as a [`Sample`]. Four algorithms come
//! with buttress:
//!
//! | algorithm | reacts to | settles where |
//! |---|---|---|
//! | [`Fixed`] | nothing | where you put it |
//! | [`Aimd`] | drops, and round trips above `tolerance` x the baseline | just past the knee: +1 per round trip, x`backoff` on a drop |
//! | [`Gradient`] | the ratio of a long-term baseline to the recent round trip (Gradient2-style) | where the round trip is `tolerance` x the baseline, plus a small queue |
//! | [`Vegas`] | the queue estimated from the baseline and the recent round trip | with `alpha..beta` calls queued at the callee |
//!
//! The adaptive ones update once per *window* of about one round trip's worth of
//! samples (as many samples as the current limit, at least ten), not on every sample:
//! the effect of a change only shows a round trip later, and updating faster
//! overshoots. Gradient and Vegas look only at a summary of each window, so a shed
//! layer built from a config gathers that summary itself, without a lock, and hands
//! them the whole window at once (with one thread, exactly what `on_sample` would
//! have gathered; with several, a sample completing while a window closes may count
//! in either). An algorithm passed to
//! [`ShedLayer::with_limit`](super::ShedLayer::with_limit) is fed every sample.
//!
//! # Guardrails
//!
//! - Only calls the callee answered are round-trip samples. Calls the shed layer
//!   refused never reach the algorithm, and a cancelled call (its future dropped
//!   before the deadline) feeds nothing: both look fast and would fool the limiter.
//! - Timeouts and overload answers are *drops* ([`Sample::dropped`]): they say "too
//!   much", and their round-trip time is not used.
//! - The baseline (the no-load round trip) follows faster samples at once but rises
//!   only slowly, over [`LimitConfig::baseline_window`](super::LimitConfig), and never
//!   above [`LimitConfig::max_healthy_rtt`](super::LimitConfig): a long incident
//!   cannot teach the limiter that slow is normal.
//! - No growth while the service is not using the limit it has (fewer than half of
//!   it in flight): a quiet period does not inflate the limit.

use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;

mod aimd;
mod fixed;
mod gradient;
mod vegas;

pub use aimd::Aimd;
pub use fixed::Fixed;
pub use gradient::Gradient;
pub use vegas::Vegas;

/// One admitted call's outcome, as the shed layer reports it to its [`Limit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// Time from admission to the answer. Not meaningful when `dropped`.
    pub rtt: Duration,
    /// Calls in flight when this one was admitted, itself included.
    pub in_flight: usize,
    /// The call timed out or was answered with an overload signal.
    pub dropped: bool,
    /// When the answer came.
    pub at: Instant,
}

/// A concurrency-limit algorithm.
///
/// Implement it to plug your own algorithm into
/// [`ShedLayer::with_limit`](super::ShedLayer::with_limit). It is called under a short
/// lock once per completed call, so keep `on_sample` cheap and allocation-free.
pub trait Limit: Send + fmt::Debug {
    /// The current limit: how many calls may be in flight.
    fn limit(&self) -> usize;

    /// Feeds one outcome.
    fn on_sample(&mut self, sample: Sample);
}

impl<L: Limit + ?Sized> Limit for Box<L> {
    fn limit(&self) -> usize {
        (**self).limit()
    }

    fn on_sample(&mut self, sample: Sample) {
        (**self).on_sample(sample);
    }
}

/// The smallest window: fewer samples say too little about the round trip.
const MIN_WINDOW: u32 = 10;

/// Samples gathered over about one round trip.
///
/// Round trips are kept in integer nanoseconds (saturating), which is cheaper per
/// sample than `Duration` arithmetic; the summary converts back.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window {
    samples: u32,
    /// Samples that were not drops.
    answered: u32,
    drops: u32,
    /// Sum of the answered round trips, in nanoseconds.
    rtt_sum: u64,
    /// Fastest answered round trip, in nanoseconds (`u64::MAX` while none).
    min_rtt: u64,
    max_in_flight: usize,
}

impl Default for Window {
    fn default() -> Self {
        Self {
            samples: 0,
            answered: 0,
            drops: 0,
            rtt_sum: 0,
            min_rtt: u64::MAX,
            max_in_flight: 0,
        }
    }
}

/// `d` in nanoseconds, saturating.
#[inline]
pub(crate) fn nanos(d: Duration) -> u64 {
    // Exact up to about 584 years, then saturating.
    d.as_secs()
        .saturating_mul(1_000_000_000)
        .saturating_add(u64::from(d.subsec_nanos()))
}

/// `now - start` in nanoseconds, zero if `start` is later: what
/// `nanos(now.saturating_duration_since(start))` gives, for the price of a few
/// inlined instructions where std's subtraction costs two calls (about 55
/// instructions, on every answered call).
///
/// The two clock readings are taken through `Instant`'s `Hash` implementation, which
/// is inlined here and (on Unix) writes the reading's seconds then nanoseconds. That
/// order is std's private business: if an instant hashes any other way (another
/// platform, another std), this falls back to the subtraction.
#[inline]
pub(crate) fn elapsed_nanos(now: Instant, start: Instant) -> u64 {
    match (Reading::of(&now), Reading::of(&start)) {
        (Some(b), Some(a)) => b.nanos_since(a),
        _ => nanos(now.saturating_duration_since(start)),
    }
}

/// A clock reading as `Instant` hashes it, when it hashes as seconds then
/// nanoseconds.
#[derive(Debug, Clone, Copy, Default)]
struct Reading {
    secs: i64,
    nanos: u32,
    /// Fields written so far.
    written: u8,
    /// Every write was the expected one.
    valid: bool,
}

impl Reading {
    #[inline]
    fn of(at: &Instant) -> Option<Self> {
        use std::hash::Hash;
        let mut r = Reading {
            valid: true,
            ..Reading::default()
        };
        at.hash(&mut r);
        (r.valid && r.written == 2 && r.nanos < 1_000_000_000).then_some(r)
    }

    /// `self - earlier` in nanoseconds, zero if `earlier` is later, saturating as
    /// [`nanos`] does.
    #[inline]
    fn nanos_since(self, earlier: Reading) -> u64 {
        if (self.secs, self.nanos) <= (earlier.secs, earlier.nanos) {
            return 0;
        }
        // `self` is later: the difference of seconds fits a u64.
        let secs = self.secs.wrapping_sub(earlier.secs) as u64;
        let (secs, sub) = if self.nanos >= earlier.nanos {
            (secs, self.nanos - earlier.nanos)
        } else {
            (secs - 1, self.nanos + 1_000_000_000 - earlier.nanos)
        };
        secs.saturating_mul(1_000_000_000)
            .saturating_add(u64::from(sub))
    }
}

impl std::hash::Hasher for Reading {
    fn finish(&self) -> u64 {
        0
    }

    // Anything but the two expected writes (bytes, other integers, by default
    // routed here) disqualifies the reading.
    fn write(&mut self, _: &[u8]) {
        self.valid = false;
    }

    #[inline]
    fn write_i64(&mut self, v: i64) {
        self.valid &= self.written == 0;
        self.secs = v;
        self.written = self.written.saturating_add(1);
    }

    #[inline]
    fn write_u32(&mut self, v: u32) {
        self.valid &= self.written == 1;
        self.nanos = v;
        self.written = self.written.saturating_add(1);
    }

    fn write_i32(&mut self, _: i32) {
        // (By default routed to `write_u32`.)
        self.valid = false;
    }
}

/// What one window saw.
#[derive(Debug, Clone, Copy)]
pub(crate) struct WindowSummary {
    pub(crate) drops: u32,
    /// Mean round trip of the answered samples, if any.
    pub(crate) mean_rtt: Option<Duration>,
    /// Fastest answered sample, if any.
    pub(crate) min_rtt: Option<Duration>,
    pub(crate) max_in_flight: usize,
}

impl Window {
    /// Adds `sample`; returns the summary and starts a new window once it holds as
    /// many samples as `limit` (at least ten).
    #[inline]
    pub(crate) fn add(&mut self, sample: &Sample, limit: usize) -> Option<WindowSummary> {
        self.samples += 1;
        self.max_in_flight = self.max_in_flight.max(sample.in_flight);
        if sample.dropped {
            self.drops += 1;
        } else {
            self.answered += 1;
            let rtt = nanos(sample.rtt);
            self.rtt_sum = self.rtt_sum.saturating_add(rtt);
            self.min_rtt = self.min_rtt.min(rtt);
        }
        if self.samples < window_len(limit) {
            return None;
        }
        Some(self.close())
    }

    #[cold]
    fn close(&mut self) -> WindowSummary {
        std::mem::take(self).summary()
    }

    fn summary(&self) -> WindowSummary {
        // (A window filled concurrently may count an answer whose round trip went to
        // the next one: no round trip then.)
        let answered = self.answered > 0 && self.min_rtt != u64::MAX;
        WindowSummary {
            drops: self.drops,
            mean_rtt: answered.then(|| Duration::from_nanos(self.rtt_sum) / self.answered),
            min_rtt: answered.then(|| Duration::from_nanos(self.min_rtt)),
            max_in_flight: self.max_in_flight,
        }
    }
}

/// A [`Window`] filled without a lock, by every completing call at once; whoever
/// fills it takes the shed layer's lock and hands the summary to the algorithm.
///
/// Under concurrency a sample added while the window is being taken may land in
/// either window (its count in one, its round trip in the other); with one thread it
/// sums exactly what [`Window`] does.
#[derive(Debug)]
pub(crate) struct AtomicWindow {
    drops: AtomicU32,
    rtt_sum: AtomicU64,
    min_rtt: AtomicU64,
    max_in_flight: AtomicUsize,
}

impl Default for AtomicWindow {
    fn default() -> Self {
        Self {
            drops: AtomicU32::new(0),
            rtt_sum: AtomicU64::new(0),
            min_rtt: AtomicU64::new(u64::MAX),
            max_in_flight: AtomicUsize::new(0),
        }
    }
}

/// How many samples close a window at `limit` (as [`Window::add`] counts).
#[inline]
pub(crate) fn window_len(limit: usize) -> u32 {
    u32::try_from(limit).unwrap_or(u32::MAX).max(MIN_WINDOW)
}

impl AtomicWindow {
    /// Adds `sample`. The caller counts it (the shed layer counts samples in the word
    /// that also holds its in-flight count, to free a permit and count its sample in
    /// one atomic addition) and closes the window with [`take`](Self::take) once it
    /// holds [`window_len`] samples.
    #[inline]
    pub(crate) fn add(&self, sample: &Sample) {
        let rtt = (!sample.dropped).then(|| nanos(sample.rtt));
        self.add_parts(rtt, sample.in_flight);
    }

    /// [`add`](Self::add) without building a [`Sample`]: the round trip in
    /// nanoseconds (`None` for a drop) and the calls in flight at admission.
    #[inline]
    pub(crate) fn add_parts(&self, rtt: Option<u64>, in_flight: usize) {
        // The minimum and maximum move rarely once a window is under way: a load
        // first spares most calls the read-modify-write.
        if in_flight > self.max_in_flight.load(Ordering::Relaxed) {
            self.max_in_flight.fetch_max(in_flight, Ordering::Relaxed);
        }
        match rtt {
            None => {
                self.drops.fetch_add(1, Ordering::Relaxed);
            }
            Some(rtt) => {
                // Wrapping: at 584 years a window, unreachable.
                self.rtt_sum.fetch_add(rtt, Ordering::Relaxed);
                if rtt < self.min_rtt.load(Ordering::Relaxed) {
                    self.min_rtt.fetch_min(rtt, Ordering::Relaxed);
                }
            }
        }
    }

    /// Empties the window, which held `samples` samples, and summarises it.
    pub(crate) fn take(&self, samples: u32) -> WindowSummary {
        let drops = self.drops.swap(0, Ordering::AcqRel);
        let w = Window {
            samples,
            answered: samples.saturating_sub(drops),
            drops,
            rtt_sum: self.rtt_sum.swap(0, Ordering::AcqRel),
            min_rtt: self.min_rtt.swap(u64::MAX, Ordering::AcqRel),
            max_in_flight: self.max_in_flight.swap(0, Ordering::AcqRel),
        };
        w.summary()
    }
}

/// The algorithm a shed layer runs: the window-based built-ins by value, so that
/// the layer can fill their windows without its lock; anything else boxed, fed
/// every sample under the lock.
#[derive(Debug)]
pub(crate) enum Algo {
    /// Needs no samples at all.
    Fixed(Fixed),
    Gradient(Gradient),
    Vegas(Vegas),
    /// Fed one sample at a time.
    Sampled(Box<dyn Limit>),
}

/// How an [`Algo`] wants its samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Feed {
    /// None: a fixed limit.
    Nothing = 0,
    /// One summary per window, gathered in an [`AtomicWindow`].
    Windows = 1,
    /// Every sample, under the lock.
    Samples = 2,
}

impl Algo {
    pub(crate) fn from_config(config: &super::LimitConfig) -> Self {
        match config.algorithm {
            super::Algorithm::Fixed => Algo::Fixed(Fixed::from_config(config)),
            super::Algorithm::Gradient => Algo::Gradient(Gradient::from_config(config)),
            super::Algorithm::Vegas => Algo::Vegas(Vegas::from_config(config)),
            super::Algorithm::Aimd => Algo::Sampled(Box::new(Aimd::from_config(config))),
        }
    }

    pub(crate) fn feed(&self) -> Feed {
        match self {
            Algo::Fixed(_) => Feed::Nothing,
            Algo::Gradient(_) | Algo::Vegas(_) => Feed::Windows,
            Algo::Sampled(_) => Feed::Samples,
        }
    }

    #[inline]
    pub(crate) fn limit(&self) -> usize {
        match self {
            Algo::Fixed(l) => l.limit(),
            Algo::Gradient(l) => l.limit(),
            Algo::Vegas(l) => l.limit(),
            Algo::Sampled(l) => l.as_ref().limit(),
        }
    }

    #[inline]
    pub(crate) fn on_sample(&mut self, sample: Sample) {
        match self {
            Algo::Fixed(l) => l.on_sample(sample),
            Algo::Gradient(l) => l.on_sample(sample),
            Algo::Vegas(l) => l.on_sample(sample),
            Algo::Sampled(l) => l.as_mut().on_sample(sample),
        }
    }

    /// Feeds a window closed at `at`; ignored unless the algorithm takes windows.
    pub(crate) fn on_window(&mut self, window: WindowSummary, at: Instant) {
        match self {
            Algo::Gradient(l) => l.on_window(window, at),
            Algo::Vegas(l) => l.on_window(window, at),
            Algo::Fixed(_) | Algo::Sampled(_) => {}
        }
    }
}

/// The no-load round trip: the minimum seen over the last one to two
/// `window`s, never above `max_healthy`.
///
/// Faster samples lower it at once; it rises only when a whole window passes without
/// them, so a standing queue lifts it at most once per window.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Baseline {
    current: Option<Duration>,
    previous: Option<Duration>,
    window: Duration,
    rotated_at: Option<Instant>,
    max_healthy: Option<Duration>,
}

impl Baseline {
    pub(crate) fn new(window: Duration, max_healthy: Option<Duration>) -> Self {
        Self {
            current: None,
            previous: None,
            window,
            rotated_at: None,
            max_healthy,
        }
    }

    pub(crate) fn observe(&mut self, rtt: Duration, at: Instant) {
        let rotated_at = *self.rotated_at.get_or_insert(at);
        if at.saturating_duration_since(rotated_at) >= self.window {
            self.previous = self.current.take();
            self.rotated_at = Some(at);
        }
        self.current = Some(self.current.map_or(rtt, |c| c.min(rtt)));
    }

    pub(crate) fn get(&self) -> Option<Duration> {
        let min = match (self.current, self.previous) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        match (min, self.max_healthy) {
            (Some(m), Some(cap)) => Some(m.min(cap)),
            (m, _) => m,
        }
    }
}

/// Clamps a computed limit into `min..=max`, rounding down, with `min >= 1`.
pub(crate) fn clamp_limit(value: f64, min: usize, max: usize) -> usize {
    let min = min.max(1);
    let max = max.max(min);
    if value.is_nan() || value <= min as f64 {
        return min;
    }
    if value >= max as f64 {
        return max;
    }
    (value as usize).clamp(min, max)
}

/// `max(1, log10(limit))`, the step Vegas grows and shrinks by.
pub(crate) fn log10_step(limit: f64) -> f64 {
    limit.max(1.0).log10().max(1.0)
}

#[cfg(test)]
pub(crate) mod testing {
    use super::*;

    /// Feeds `n` samples of `rtt` at `in_flight`, one every `every`, starting at `*now`.
    pub(crate) fn feed(
        limit: &mut dyn Limit,
        now: &mut Instant,
        n: usize,
        rtt: Duration,
        in_flight: usize,
        dropped: bool,
    ) {
        for _ in 0..n {
            *now += Duration::from_micros(100);
            limit.on_sample(Sample {
                rtt,
                in_flight,
                dropped,
                at: *now,
            });
        }
    }

    /// A fluid model of a callee with `capacity` slots and service time `service`,
    /// always offered more than `limit`: `limit` calls in flight, each taking
    /// `service * max(1, limit / capacity)`. Runs `windows` round trips.
    pub(crate) fn saturate(
        limit: &mut dyn Limit,
        now: &mut Instant,
        capacity: usize,
        service: Duration,
        rounds: usize,
    ) {
        for _ in 0..rounds {
            let l = limit.limit();
            let rtt = service.mul_f64((l as f64 / capacity as f64).max(1.0));
            for _ in 0..l {
                *now += rtt / l as u32;
                limit.on_sample(Sample {
                    rtt,
                    in_flight: l,
                    dropped: false,
                    at: *now,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn window_closes_after_limit_samples_and_ignores_dropped_rtts() {
        let mut w = Window::default();
        let at = Instant::now();
        for i in 0..19 {
            let s = Sample {
                rtt: Duration::from_millis(10),
                in_flight: i,
                dropped: false,
                at,
            };
            assert!(w.add(&s, 20).is_none());
        }
        let dropped = Sample {
            rtt: Duration::from_micros(1),
            in_flight: 3,
            dropped: true,
            at,
        };
        let s = w.add(&dropped, 20).unwrap();
        assert_eq!(s.drops, 1);
        assert_eq!(s.mean_rtt, Some(Duration::from_millis(10)));
        assert_eq!(
            s.min_rtt,
            Some(Duration::from_millis(10)),
            "a drop's tiny RTT is not a sample"
        );
        assert_eq!(s.max_in_flight, 18);
        // Small limits still wait for ten samples.
        for _ in 0..9 {
            assert!(w.add(&dropped, 2).is_none());
        }
        assert!(w.add(&dropped, 2).unwrap().mean_rtt.is_none());
    }

    #[test]
    fn baseline_falls_at_once_and_rises_only_after_a_window() {
        let t0 = Instant::now();
        let mut b = Baseline::new(Duration::from_secs(10), None);
        b.observe(Duration::from_millis(10), t0);
        b.observe(Duration::from_millis(30), t0 + Duration::from_secs(1));
        assert_eq!(b.get(), Some(Duration::from_millis(10)));
        // One window later the old minimum still counts (previous bucket)...
        b.observe(Duration::from_millis(30), t0 + Duration::from_secs(11));
        assert_eq!(b.get(), Some(Duration::from_millis(10)));
        // ...and only after a second one does the baseline rise.
        b.observe(Duration::from_millis(30), t0 + Duration::from_secs(22));
        assert_eq!(b.get(), Some(Duration::from_millis(30)));
        b.observe(Duration::from_millis(5), t0 + Duration::from_secs(23));
        assert_eq!(b.get(), Some(Duration::from_millis(5)));
    }

    #[test]
    fn max_healthy_rtt_caps_the_baseline() {
        let t0 = Instant::now();
        let mut b = Baseline::new(Duration::from_secs(1), Some(Duration::from_millis(50)));
        for s in 0..100 {
            b.observe(Duration::from_millis(400), t0 + Duration::from_secs(s));
        }
        assert_eq!(b.get(), Some(Duration::from_millis(50)));
    }

    #[test]
    fn clamp_limit_handles_nonsense() {
        assert_eq!(clamp_limit(f64::NAN, 5, 10), 5);
        assert_eq!(clamp_limit(f64::INFINITY, 5, 10), 10);
        assert_eq!(clamp_limit(7.9, 5, 10), 7);
        assert_eq!(clamp_limit(3.0, 0, 0), 1);
        assert_eq!(clamp_limit(30.0, 8, 4), 8, "max below min is raised to min");
    }

    #[cfg(unix)]
    #[test]
    fn instants_hash_as_a_reading_on_unix() {
        // Not a correctness matter (`elapsed_nanos` falls back to the subtraction),
        // but the shed layer's per-call cost counts on it.
        assert!(Reading::of(&Instant::now()).is_some());
    }

    proptest! {
        /// `elapsed_nanos` is the saturating subtraction, whichever is later and
        /// across second boundaries.
        #[test]
        fn elapsed_nanos_is_the_saturating_subtraction(
            a in (0u64..5_000, 0u32..1_000_000_000),
            b in (0u64..5_000, 0u32..1_000_000_000),
            a_before in any::<bool>(),
            b_before in any::<bool>(),
        ) {
            let base = Instant::now();
            let at = |(secs, ns): (u64, u32), before: bool| {
                let d = Duration::new(secs, ns);
                if before { base.checked_sub(d).unwrap_or(base) } else { base + d }
            };
            let (x, y) = (at(a, a_before), at(b, b_before));
            prop_assert_eq!(elapsed_nanos(x, y), nanos(x.saturating_duration_since(y)));
            prop_assert_eq!(elapsed_nanos(y, x), nanos(y.saturating_duration_since(x)));
            prop_assert_eq!(elapsed_nanos(x, x), 0);
        }
    }

    fn any_sample() -> impl Strategy<Value = (u64, usize, bool)> {
        (0u64..500_000, 0usize..5000, any::<bool>())
    }

    proptest! {
        /// Whatever the samples, every algorithm stays within `min..=max`.
        #[test]
        fn every_algorithm_stays_within_bounds(
            min in 1usize..50,
            span in 0usize..500,
            initial in 0usize..2000,
            samples in proptest::collection::vec(any_sample(), 0..600),
        ) {
            let max = min + span;
            let cfg = super::super::LimitConfig { initial, min, max, ..Default::default() };
            let mut algos: Vec<Box<dyn Limit>> = vec![
                Box::new(Fixed::new(initial.clamp(min, max))),
                Box::new(Aimd::from_config(&cfg)),
                Box::new(Gradient::from_config(&cfg)),
                Box::new(Vegas::from_config(&cfg)),
            ];
            let mut at = Instant::now();
            for (micros, in_flight, dropped) in samples {
                at += Duration::from_micros(micros / 10);
                for a in algos.iter_mut() {
                    a.on_sample(Sample { rtt: Duration::from_micros(micros), in_flight, dropped, at });
                    let l = a.limit();
                    prop_assert!((min..=max).contains(&l), "{a:?} gave {l} outside {min}..={max}");
                }
            }
        }
    }
}
