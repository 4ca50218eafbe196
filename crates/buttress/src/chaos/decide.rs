//! The per-call decision, on integers: probabilities become thresholds on 53-bit
//! draws once, at configuration time, so a call costs a comparison or two.

use std::time::Duration;

use super::config::ChaosConfig;
use crate::rand::Random;

/// One in `SCALE` is the resolution of a probability: an `f64`'s mantissa.
const SCALE: u64 = 1 << 53;

/// What to do with one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Call the inner service untouched.
    Pass,
    /// Answer with the fault; do not call the inner service.
    Error,
    /// Call the inner service, poll its future once, drop it and fail.
    Abort,
    /// Call the inner service and start polling it after the delay.
    Delay(Duration),
}

/// A [`ChaosConfig`] as integer thresholds: a draw `x` in `[0, 2^53)` means an error
/// when `x < error`, an abort when `error <= x < abort_end`; a second draw below
/// `latency` means a delay of `min + uniform(0..=span)` nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Thresholds {
    pub(crate) enabled: bool,
    pub(crate) error: u64,
    pub(crate) abort_end: u64,
    pub(crate) latency: u64,
    pub(crate) min_nanos: u64,
    pub(crate) span_nanos: u64,
}

impl Thresholds {
    /// Thresholds for `config` (normalized here, whatever the caller passed).
    pub(crate) fn new(config: &ChaosConfig) -> Self {
        let c = config.clone().normalized();
        let error = threshold(c.error_rate);
        let abort_end = error.saturating_add(threshold(c.abort_rate)).min(SCALE);
        let (latency, min_nanos, span_nanos) = match c.latency {
            // A zero delay is no delay: no timer, no count.
            Some(l) if !l.max.is_zero() => {
                let min = nanos(l.min);
                (threshold(l.probability), min, nanos(l.max) - min)
            }
            _ => (0, 0, 0),
        };
        Self {
            enabled: c.enabled,
            error,
            abort_end,
            latency,
            min_nanos,
            span_nanos,
        }
    }

    /// Decides one call, drawing only the numbers the config needs: none when
    /// disabled or empty, one for error/abort, one for whether to delay and one for
    /// how long (only when the range is not a single value).
    #[inline]
    pub(crate) fn decide(&self, rng: &impl Random) -> Decision {
        if !self.enabled {
            return Decision::Pass;
        }
        if self.abort_end > 0 {
            let x = draw(rng);
            if x < self.error {
                return Decision::Error;
            }
            if x < self.abort_end {
                return Decision::Abort;
            }
        }
        if self.latency > 0 && draw(rng) < self.latency {
            let extra = if self.span_nanos == 0 {
                0
            } else {
                // Multiply-shift maps 64 random bits onto 0..=span without a division.
                ((u128::from(rng.next_u64()) * (u128::from(self.span_nanos) + 1)) >> 64) as u64
            };
            return Decision::Delay(Duration::from_nanos(self.min_nanos + extra));
        }
        Decision::Pass
    }
}

#[inline]
fn draw(rng: &impl Random) -> u64 {
    rng.next_u64() >> 11
}

/// The threshold `t` with `x < t` exactly when `x / 2^53 < p`, for `p` in `[0, 1]`.
fn threshold(p: f64) -> u64 {
    // Multiplying by a power of two is exact, and `x < ceil(y)` is `x < y` for an
    // integer `x`.
    (p * SCALE as f64).ceil() as u64
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use proptest::prelude::*;

    use super::*;
    use crate::chaos::LatencyConfig;

    /// A random source that replays a script and counts draws.
    struct Script {
        values: Mutex<VecDeque<u64>>,
        draws: AtomicUsize,
    }

    impl Script {
        fn new(values: &[u64]) -> Self {
            Self {
                values: Mutex::new(values.iter().copied().collect()),
                draws: AtomicUsize::new(0),
            }
        }

        fn draws(&self) -> usize {
            self.draws.load(Ordering::Relaxed)
        }
    }

    impl Random for Script {
        fn next_u64(&self) -> u64 {
            self.draws.fetch_add(1, Ordering::Relaxed);
            self.values
                .lock()
                .unwrap()
                .pop_front()
                .expect("script ran out")
        }
    }

    /// The naive model: floats, in the documented order.
    fn model(c: &ChaosConfig, draws: &[u64]) -> Decision {
        let c = c.clone().normalized();
        if !c.enabled {
            return Decision::Pass;
        }
        let mut i = 0;
        let mut next = || {
            i += 1;
            draws[i - 1]
        };
        let unit = |u: u64| (u >> 11) as f64 / SCALE as f64;
        if c.error_rate + c.abort_rate > 0.0 {
            let x = unit(next());
            if x < c.error_rate {
                return Decision::Error;
            }
            if x < c.error_rate + c.abort_rate {
                return Decision::Abort;
            }
        }
        match c.latency {
            Some(l) if !l.max.is_zero() && l.probability > 0.0 => {
                if unit(next()) < l.probability {
                    let span = (l.max - l.min).as_nanos();
                    let extra = if span == 0 {
                        0
                    } else {
                        (u128::from(next()) * (span + 1)) >> 64
                    };
                    Decision::Delay(l.min + Duration::from_nanos(extra as u64))
                } else {
                    Decision::Pass
                }
            }
            _ => Decision::Pass,
        }
    }

    fn config() -> impl Strategy<Value = ChaosConfig> {
        let rate = prop_oneof![Just(0.0), Just(1.0), 0.0..1.0, Just(f64::NAN), -1.0..2.0];
        let latency = prop::option::of((rate.clone(), 0u64..1_000_000, 0u64..1_000_000).prop_map(
            |(p, a, b)| {
                LatencyConfig::uniform(Duration::from_nanos(a), Duration::from_nanos(b))
                    .with_probability(p)
            },
        ));
        (rate.clone(), rate, latency, any::<bool>()).prop_map(|(e, a, latency, enabled)| {
            ChaosConfig {
                latency,
                error_rate: e,
                abort_rate: a,
                seed: None,
                enabled,
            }
        })
    }

    proptest! {
        #[test]
        fn matches_the_float_model(c in config(), draws in prop::collection::vec(any::<u64>(), 3)) {
            let script = Script::new(&draws);
            prop_assert_eq!(Thresholds::new(&c).decide(&script), model(&c, &draws));
        }
    }

    #[test]
    fn draws_only_what_it_needs() {
        let delay = LatencyConfig::uniform(Duration::from_millis(1), Duration::from_millis(2));
        for (config, script, draws) in [
            (ChaosConfig::default(), vec![], 0),
            (
                ChaosConfig::default()
                    .with_error_rate(1.0)
                    .with_enabled(false),
                vec![],
                0,
            ),
            (ChaosConfig::default().with_error_rate(0.5), vec![0], 1),
            // Not an error: no latency configured, so nothing more is drawn.
            (
                ChaosConfig::default().with_error_rate(0.5),
                vec![u64::MAX],
                1,
            ),
            (
                ChaosConfig::default().with_latency(LatencyConfig::fixed(Duration::from_millis(5))),
                vec![0],
                1,
            ),
            (ChaosConfig::default().with_latency(delay), vec![0, 0], 2),
            (
                ChaosConfig::default().with_latency(delay.with_probability(0.5)),
                vec![u64::MAX],
                1,
            ),
            (
                ChaosConfig::default()
                    .with_abort_rate(0.5)
                    .with_latency(delay),
                vec![u64::MAX, 0, 7],
                3,
            ),
        ] {
            let s = Script::new(&script);
            Thresholds::new(&config).decide(&s);
            assert_eq!(s.draws(), draws, "{config:?}");
        }
    }

    #[test]
    fn extremes_are_exact() {
        let always = Thresholds::new(&ChaosConfig::default().with_error_rate(1.0));
        let never = Thresholds::new(&ChaosConfig::default().with_abort_rate(0.0));
        for u in [0, 1, u64::MAX - 1, u64::MAX] {
            assert_eq!(always.decide(&Script::new(&[u])), Decision::Error);
            assert_eq!(never.decide(&Script::new(&[])), Decision::Pass);
        }
        let aborts = Thresholds::new(&ChaosConfig::default().with_abort_rate(1.0));
        assert_eq!(aborts.decide(&Script::new(&[u64::MAX])), Decision::Abort);
    }

    #[test]
    fn delays_cover_the_whole_range() {
        let (min, max) = (Duration::from_millis(100), Duration::from_millis(300));
        let t =
            Thresholds::new(&ChaosConfig::default().with_latency(LatencyConfig::uniform(min, max)));
        assert_eq!(t.decide(&Script::new(&[0, 0])), Decision::Delay(min));
        assert_eq!(t.decide(&Script::new(&[0, u64::MAX])), Decision::Delay(max));
        let huge = Thresholds::new(
            &ChaosConfig::default()
                .with_latency(LatencyConfig::uniform(Duration::ZERO, Duration::MAX)),
        );
        assert_eq!(
            huge.decide(&Script::new(&[0, u64::MAX])),
            Decision::Delay(Duration::from_nanos(u64::MAX))
        );
    }
}
