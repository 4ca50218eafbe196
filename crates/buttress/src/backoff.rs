//! Backoff: how long to wait before the next attempt.
//!
//! Shared by retry, hedge, reconnect and the breaker's open-time jitter. A [`Backoff`]
//! is plain configuration; [`Backoff::delays`] starts a [`Delays`] sequence for one
//! call, which draws its jitter from a [`Random`] source passed on each step (so the
//! sequence itself is a few plain numbers and never allocates).
//!
//! - `constant`: `base` every time.
//! - `exponential`: `base * 2^(n-1)` for the n-th retry.
//! - jitter `none`: exactly that; `full`: uniform in `[0, that]` (spreads contenders
//!   best, the AWS "full jitter"); `decorrelated`: each delay depends on the last one
//!   through a smooth curve whose median stays near `base * 2^(n-1)` without the
//!   occasional huge spikes of the classic `random(base, 3 * previous)` formula, and
//!   without overflow however many attempts are made. With `constant`, `decorrelated`
//!   behaves as `full`.
//!
//! Every delay is capped at `max`.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use buttress::backoff::{Backoff, Jitter};
//! use buttress::rand::SplitMix;
//!
//! let backoff = Backoff::exponential(Duration::from_millis(25), Duration::from_secs(1))
//!     .with_jitter(Jitter::None);
//! let rng = SplitMix::seeded(1);
//! let mut delays = backoff.delays();
//! let first: Vec<_> = (0..7).map(|_| delays.next_delay(&rng)).collect();
//! assert_eq!(first.iter().map(|d| d.as_millis()).collect::<Vec<_>>(),
//!            [25, 50, 100, 200, 400, 800, 1000]);
//! ```

use std::time::Duration;

use crate::rand::Random;

/// How delays grow from one attempt to the next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum Kind {
    /// The same delay every time.
    Constant,
    /// Doubling from `base`.
    #[default]
    Exponential,
}

/// How delays are randomised so that callers that failed together do not retry
/// together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum Jitter {
    /// No randomness.
    None,
    /// Uniform between zero and the computed delay.
    Full,
    /// Each delay derived from the previous one, median near the exponential curve.
    #[default]
    Decorrelated,
}

/// Backoff settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct Backoff {
    /// Constant or exponential.
    pub kind: Kind,
    /// The first delay (and the constant one).
    #[cfg_attr(feature = "serde", serde(with = "crate::duration::serde"))]
    pub base: Duration,
    /// No delay is longer than this.
    #[cfg_attr(feature = "serde", serde(with = "crate::duration::serde"))]
    pub max: Duration,
    /// How delays are randomised.
    pub jitter: Jitter,
}

impl Default for Backoff {
    /// Exponential from 25 ms to 1 s with decorrelated jitter.
    fn default() -> Self {
        Self {
            kind: Kind::Exponential,
            base: Duration::from_millis(25),
            max: Duration::from_secs(1),
            jitter: Jitter::Decorrelated,
        }
    }
}

impl Backoff {
    /// `base` every time, no jitter.
    pub fn constant(base: Duration) -> Self {
        Self {
            kind: Kind::Constant,
            base,
            max: base,
            jitter: Jitter::None,
        }
    }

    /// Doubling from `base` up to `max`, decorrelated jitter.
    pub fn exponential(base: Duration, max: Duration) -> Self {
        Self {
            kind: Kind::Exponential,
            base,
            max,
            jitter: Jitter::Decorrelated,
        }
    }

    /// Sets the jitter.
    #[must_use]
    pub fn with_jitter(mut self, jitter: Jitter) -> Self {
        self.jitter = jitter;
        self
    }

    /// Sets the cap.
    #[must_use]
    pub fn with_max(mut self, max: Duration) -> Self {
        self.max = max;
        self
    }

    /// A new sequence of delays, for one call.
    pub fn delays(&self) -> Delays {
        Delays {
            backoff: *self,
            retry: 0,
            prev: 0.0,
        }
    }
}

/// The delays for one call, in order; see [`Backoff`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Delays {
    backoff: Backoff,
    retry: u32,
    // The decorrelated curve's previous value, in units of `base`.
    prev: f64,
}

// Past this many doublings the curve is far above any sensible cap: stop computing
// it (2^1023 is the last finite power of two in an f64).
const MAX_EXPONENT: u32 = 62;

impl Delays {
    /// How many delays have been drawn.
    pub fn retries(&self) -> u32 {
        self.retry
    }

    /// The delay before the next attempt.
    pub fn next_delay(&mut self, rng: &(impl Random + ?Sized)) -> Duration {
        self.retry = self.retry.saturating_add(1);
        let Backoff {
            kind,
            base,
            max,
            jitter,
        } = self.backoff;
        let n = self.retry;
        let nominal = match kind {
            Kind::Constant => base,
            // Past 2^31 any base is beyond a sensible cap.
            Kind::Exponential => 1u32
                .checked_shl(n - 1)
                .and_then(|m| base.checked_mul(m))
                .unwrap_or(max),
        }
        .min(max);
        let delay = match (jitter, kind) {
            (Jitter::None, _) => nominal,
            (Jitter::Full, _) | (Jitter::Decorrelated, Kind::Constant) => {
                nominal.mul_f64(rng.next_f64())
            }
            (Jitter::Decorrelated, Kind::Exponential) => self.decorrelated(rng),
        };
        delay.min(max)
    }

    fn decorrelated(&mut self, rng: &(impl Random + ?Sized)) -> Duration {
        // t runs over [n-1, n): the curve 2^t * tanh(sqrt(4t)) grows like 2^t and tanh
        // smooths its first steps. The step between successive points has a median
        // near 0.7 * 2^(n-1) and never exceeds about 1.5 times that, so dividing by 0.7
        // puts the median on the un-jittered exponential curve.
        let n = self.retry;
        if n > MAX_EXPONENT {
            return self.backoff.max;
        }
        let t = f64::from(n - 1) + rng.next_f64();
        let next = t.exp2() * (4.0 * t).sqrt().tanh();
        let step = (next - self.prev) / 0.7;
        self.prev = next;
        let secs = self.backoff.base.as_secs_f64() * step;
        if !secs.is_finite() || secs >= self.backoff.max.as_secs_f64() {
            self.backoff.max
        } else if secs <= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(secs)
        }
    }

    /// An iterator over the delays, drawing jitter from `rng`.
    pub fn iter<'a, R: Random + ?Sized>(
        &'a mut self,
        rng: &'a R,
    ) -> impl Iterator<Item = Duration> + 'a {
        std::iter::repeat_with(move || self.next_delay(rng))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rand::SplitMix;
    use proptest::prelude::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn constant_is_constant() {
        let rng = SplitMix::seeded(3);
        let mut d = Backoff::constant(10 * MS).delays();
        assert!(d.iter(&rng).take(50).all(|x| x == 10 * MS));
    }

    #[test]
    fn exponential_doubles_to_the_cap_without_overflow() {
        let rng = SplitMix::seeded(3);
        let mut d = Backoff::exponential(MS, Duration::from_secs(3600))
            .with_jitter(Jitter::None)
            .delays();
        let xs: Vec<_> = d.iter(&rng).take(200).collect();
        assert_eq!(xs[0], MS);
        assert_eq!(xs[10], 1024 * MS);
        assert_eq!(*xs.last().unwrap(), Duration::from_secs(3600));
    }

    #[test]
    fn decorrelated_median_tracks_the_exponential_curve() {
        let base = 10 * MS;
        let backoff = Backoff::exponential(base, Duration::from_secs(1000));
        let rng = SplitMix::seeded(11);
        let runs = 4001;
        let attempts = 8;
        let mut samples: Vec<Vec<Duration>> =
            (0..attempts).map(|_| Vec::with_capacity(runs)).collect();
        for _ in 0..runs {
            let mut d = backoff.delays();
            for s in samples.iter_mut() {
                s.push(d.next_delay(&rng));
            }
        }
        for (i, s) in samples.iter_mut().enumerate().skip(1) {
            s.sort();
            let median = s[runs / 2].as_secs_f64();
            let nominal = base.as_secs_f64() * f64::from(1u32 << i);
            let ratio = median / nominal;
            assert!(
                (0.6..1.6).contains(&ratio),
                "retry {}: median {median} vs {nominal}",
                i + 1
            );
            // No spikes: the largest delay stays within a small factor of nominal.
            let top = s[runs - 1].as_secs_f64() / nominal;
            assert!(top < 4.0, "retry {}: max {top}x nominal", i + 1);
        }
    }

    proptest! {
        #[test]
        fn every_delay_is_capped(
            base_ms in 0u64..5_000,
            max_ms in 0u64..60_000,
            seed in any::<u64>(),
            kind in prop_oneof![Just(Kind::Constant), Just(Kind::Exponential)],
            jitter in prop_oneof![Just(Jitter::None), Just(Jitter::Full), Just(Jitter::Decorrelated)],
        ) {
            let b = Backoff { kind, base: MS * base_ms as u32, max: MS * max_ms as u32, jitter };
            let rng = SplitMix::seeded(seed);
            let mut d = b.delays();
            for x in d.iter(&rng).take(300) {
                prop_assert!(x <= b.max);
            }
        }

        #[test]
        fn full_jitter_stays_under_the_nominal_delay(seed in any::<u64>(), n in 1usize..40) {
            let b = Backoff::exponential(5 * MS, Duration::from_secs(10)).with_jitter(Jitter::Full);
            let rng = SplitMix::seeded(seed);
            let mut d = b.delays();
            let xs: Vec<_> = d.iter(&rng).take(n).collect();
            for (i, x) in xs.iter().enumerate() {
                let nominal = (5 * MS).saturating_mul(1u32 << (i as u32).min(20)).min(b.max);
                prop_assert!(*x <= nominal);
            }
        }
    }
}
