//! A rolling latency histogram with log-scale buckets.
//!
//! Latencies are counted in microseconds into buckets exact below 16 µs and, above,
//! eight per power of two (each at most 12.5% wide), up to about nine and a half
//! hours (longer latencies share the last bucket). The window is split into
//! [`SLOTS`] slots: a sample counts until its slot has aged out of the window, so the
//! histogram covers between `(SLOTS - 1) / SLOTS` of the window and the whole of it.
//! A quantile is the midpoint of the bucket holding the sample of that rank, so it is
//! within half a bucket (6.25%) of the exact sample quantile.
//!
//! Plain data, no locking: the hedge layer keeps it behind a short mutex and caches the
//! quantiles it needs in atomics, recomputing them every few dozen samples.

use std::time::Duration;

use tokio::time::Instant;

/// Exact buckets below this many microseconds.
const LINEAR: u64 = 16;
/// Buckets per power of two above that.
const SUB: u64 = 8;
/// The highest power of two with buckets of its own (2^34 µs, about 4.8 hours; the
/// bucket above holds everything longer).
const MAX_EXP: u64 = 34;
/// Number of buckets.
pub(crate) const BUCKETS: usize = (LINEAR + (MAX_EXP - 3) * SUB) as usize;
/// Slots the window is split into.
pub(crate) const SLOTS: usize = 4;

/// The bucket for a latency of `micros`.
pub(crate) fn bucket(micros: u64) -> usize {
    if micros < LINEAR {
        return micros as usize;
    }
    let exp = u64::from(63 - micros.leading_zeros());
    if exp > MAX_EXP {
        return BUCKETS - 1;
    }
    let sub = (micros >> (exp - 3)) & (SUB - 1);
    (LINEAR + (exp - 4) * SUB + sub) as usize
}

/// The lowest latency (µs) in `bucket`, and the bucket's width.
fn bounds(bucket: usize) -> (u64, u64) {
    let b = bucket as u64;
    if b < LINEAR {
        return (b, 1);
    }
    let exp = 4 + (b - LINEAR) / SUB;
    let sub = (b - LINEAR) % SUB;
    ((SUB + sub) << (exp - 3), 1 << (exp - 3))
}

/// The value reported for `bucket`: its midpoint.
pub(crate) fn bucket_value(bucket: usize) -> Duration {
    let (low, width) = bounds(bucket);
    Duration::from_nanos(low * 1_000 + width * 500)
}

/// The rolling histogram; see the module docs.
pub(crate) struct Histogram {
    slots: Box<[[u32; BUCKETS]]>,
    counts: [u64; SLOTS],
    origin: Instant,
    slot_nanos: u128,
    epoch: u64,
}

impl Histogram {
    /// An empty histogram over `window`, its clock starting at `origin`.
    pub(crate) fn new(window: Duration, origin: Instant) -> Self {
        let slot = (window / SLOTS as u32).max(Duration::from_millis(1));
        Self {
            slots: vec![[0u32; BUCKETS]; SLOTS].into_boxed_slice(),
            counts: [0; SLOTS],
            origin,
            slot_nanos: slot.as_nanos(),
            epoch: 0,
        }
    }

    /// Ages out the slots that left the window by `now`; `true` if any did.
    pub(crate) fn advance(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.origin).as_nanos();
        let epoch = u64::try_from(elapsed / self.slot_nanos).unwrap_or(u64::MAX);
        if epoch <= self.epoch {
            return false;
        }
        let stale = (epoch - self.epoch).min(SLOTS as u64);
        for e in 1..=stale {
            let i = ((self.epoch + e) % SLOTS as u64) as usize;
            self.slots[i] = [0; BUCKETS];
            self.counts[i] = 0;
        }
        self.epoch = epoch;
        true
    }

    /// Counts one latency observed at `now`; `true` if slots rotated first.
    pub(crate) fn record(&mut self, now: Instant, latency: Duration) -> bool {
        let rotated = self.advance(now);
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        let i = (self.epoch % SLOTS as u64) as usize;
        let slot = &mut self.slots[i];
        let b = bucket(micros);
        slot[b] = slot[b].saturating_add(1);
        self.counts[i] += 1;
        rotated
    }

    /// Samples in the window.
    pub(crate) fn len(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// The `q` quantile (0..=1) of the samples in the window, `None` when empty.
    pub(crate) fn quantile(&self, q: f64) -> Option<Duration> {
        let n = self.len();
        if n == 0 {
            return None;
        }
        let q = if q.is_nan() { 1.0 } else { q.clamp(0.0, 1.0) };
        let rank = ((q * n as f64).ceil() as u64).clamp(1, n);
        let mut seen = 0u64;
        for b in 0..BUCKETS {
            seen += self.slots.iter().map(|s| u64::from(s[b])).sum::<u64>();
            if seen >= rank {
                return Some(bucket_value(b));
            }
        }
        Some(bucket_value(BUCKETS - 1))
    }
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram")
            .field("samples", &self.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn buckets_are_contiguous_and_narrow() {
        let mut prev = 0;
        for micros in 0..200_000u64 {
            let b = bucket(micros);
            assert!(b == prev || b == prev + 1, "{micros}: {prev} -> {b}");
            let (low, width) = bounds(b);
            assert!(
                low <= micros && micros < low + width,
                "{micros} outside bucket {b}"
            );
            assert!(width == 1 || width * 8 <= low, "bucket {b} too wide");
            prev = b;
        }
        assert_eq!(bucket(u64::MAX), BUCKETS - 1);
        assert_eq!(bucket((1 << (MAX_EXP + 1)) - 1), BUCKETS - 1);
        assert_eq!(bucket(1 << MAX_EXP), BUCKETS - SUB as usize);
    }

    #[test]
    fn samples_age_out_of_the_window() {
        let t0 = Instant::now();
        let mut h = Histogram::new(Duration::from_secs(4), t0);
        for _ in 0..10 {
            h.record(t0, 5 * MS);
        }
        assert_eq!(h.len(), 10);
        // Still inside the window three slots later...
        h.advance(t0 + Duration::from_millis(3_999));
        assert_eq!(h.len(), 10);
        // ...gone once their slot is a whole window old.
        assert!(h.advance(t0 + Duration::from_secs(4)));
        assert_eq!(h.len(), 0);
        assert_eq!(h.quantile(0.5), None);
        h.record(t0 + Duration::from_secs(60), 7 * MS);
        assert_eq!(h.len(), 1);
    }

    proptest! {
        /// The quantile lies in the same bucket as the exact sample quantile of the
        /// same rank.
        #[test]
        fn quantiles_match_a_sorted_reference(
            samples in prop::collection::vec(0u64..5_000_000, 1..500),
            q in 0.0f64..=1.0,
        ) {
            let t0 = Instant::now();
            let mut h = Histogram::new(Duration::from_secs(10), t0);
            for &s in &samples {
                h.record(t0, Duration::from_micros(s));
            }
            let mut sorted = samples;
            sorted.sort_unstable();
            let n = sorted.len() as u64;
            let rank = ((q * n as f64).ceil() as u64).clamp(1, n);
            let exact = sorted[(rank - 1) as usize];
            let got = h.quantile(q).unwrap();
            prop_assert_eq!(got, bucket_value(bucket(exact)));
            // Within half a bucket of the exact value.
            let err = (got.as_secs_f64() * 1e6 - exact as f64).abs();
            prop_assert!(err <= (exact as f64 / 16.0).max(1.0), "{} vs {}", got.as_micros(), exact);
        }
    }
}
