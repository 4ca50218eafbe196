use std::time::Duration;

/// What a [`ChaosLayer`](super::ChaosLayer) injects, and how often.
///
/// Each call first draws one number that decides between an error (with
/// probability `error_rate`), an abort (`abort_rate`) or neither; a call that is
/// neither is then delayed with [`LatencyConfig::probability`]. So `error_rate` and
/// `abort_rate` are fractions of all calls, and the latency probability is a fraction
/// of the calls that reach the inner service.
///
/// The default injects nothing but is `enabled`, so a config that sets a rate takes
/// effect. Rates outside `[0, 1]` are clamped (NaN counts as 0), an `abort_rate`
/// larger than what `error_rate` leaves is cut down to it, and a latency range given
/// backwards is swapped: see [`normalized`](Self::normalized).
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct ChaosConfig {
    /// Delay calls before they reach the inner service.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub latency: Option<LatencyConfig>,
    /// Fraction of calls answered with the layer's [`Fault`](super::Fault) without
    /// calling the inner service (nothing is sent).
    pub error_rate: f64,
    /// Fraction of calls sent to the inner service and then cut off: its future is
    /// polled once and dropped, and the caller gets
    /// [`Aborted`](super::error::Aborted).
    pub abort_rate: f64,
    /// Seed of the layer's random source: the same seed and the same order of calls
    /// give the same decisions. `None` seeds from entropy. Read when the layer is
    /// built; [`ChaosHandle::reconfigure`](super::ChaosHandle::reconfigure) keeps the
    /// random stream going.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub seed: Option<u64>,
    /// Whether faults are injected at all; switch at run time with the
    /// [`ChaosHandle`](super::ChaosHandle).
    pub enabled: bool,
}

impl Default for ChaosConfig {
    fn default() -> Self {
        Self {
            latency: None,
            error_rate: 0.0,
            abort_rate: 0.0,
            seed: None,
            enabled: true,
        }
    }
}

impl ChaosConfig {
    /// Sets the injected latency.
    #[must_use]
    pub fn with_latency(mut self, latency: LatencyConfig) -> Self {
        self.latency = Some(latency);
        self
    }

    /// Sets the fraction of calls answered with the fault.
    #[must_use]
    pub fn with_error_rate(mut self, rate: f64) -> Self {
        self.error_rate = rate;
        self
    }

    /// Sets the fraction of calls aborted mid-request.
    #[must_use]
    pub fn with_abort_rate(mut self, rate: f64) -> Self {
        self.abort_rate = rate;
        self
    }

    /// Seeds the random source, for reproducible runs.
    #[must_use]
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Sets whether faults are injected.
    #[must_use]
    pub fn with_enabled(mut self, enabled: bool) -> Self {
        self.enabled = enabled;
        self
    }

    /// The config the layer really applies: probabilities clamped to `[0, 1]` (NaN
    /// is 0), `abort_rate` at most `1 - error_rate` (errors are decided first), and
    /// a latency range with `min <= max` (swapped if given backwards).
    #[must_use]
    pub fn normalized(self) -> Self {
        let error_rate = probability(self.error_rate);
        Self {
            latency: self.latency.map(LatencyConfig::normalized),
            error_rate,
            abort_rate: probability(self.abort_rate).min(1.0 - error_rate),
            seed: self.seed,
            enabled: self.enabled,
        }
    }
}

/// Injected latency: with `probability`, a delay drawn uniformly from `min..=max`.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct LatencyConfig {
    /// Fraction of the calls reaching the inner service that are delayed. Defaults
    /// to 1: a latency section without a probability delays every call.
    pub probability: f64,
    /// Shortest delay.
    #[cfg_attr(feature = "serde", serde(with = "crate::duration::serde"))]
    pub min: Duration,
    /// Longest delay.
    #[cfg_attr(feature = "serde", serde(with = "crate::duration::serde"))]
    pub max: Duration,
}

impl Default for LatencyConfig {
    fn default() -> Self {
        Self {
            probability: 1.0,
            min: Duration::ZERO,
            max: Duration::ZERO,
        }
    }
}

impl LatencyConfig {
    /// Delays every call by exactly `delay`.
    pub const fn fixed(delay: Duration) -> Self {
        Self::uniform(delay, delay)
    }

    /// Delays every call by a duration drawn uniformly from `min..=max`.
    pub const fn uniform(min: Duration, max: Duration) -> Self {
        Self {
            probability: 1.0,
            min,
            max,
        }
    }

    /// Delays only this fraction of calls.
    #[must_use]
    pub const fn with_probability(mut self, probability: f64) -> Self {
        self.probability = probability;
        self
    }

    /// The probability clamped to `[0, 1]` (NaN is 0) and `min <= max`.
    #[must_use]
    pub fn normalized(self) -> Self {
        Self {
            probability: probability(self.probability),
            min: self.min.min(self.max),
            max: self.max.max(self.min),
        }
    }
}

fn probability(p: f64) -> f64 {
    if p.is_nan() { 0.0 } else { p.clamp(0.0, 1.0) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_injects_nothing_but_is_enabled() {
        let c = ChaosConfig::default();
        assert!(c.enabled);
        assert_eq!(
            (c.error_rate, c.abort_rate, c.latency, c.seed),
            (0.0, 0.0, None, None)
        );
    }

    #[test]
    fn normalization_clamps_and_orders() {
        let c = ChaosConfig::default()
            .with_error_rate(f64::NAN)
            .with_abort_rate(7.0)
            .with_latency(
                LatencyConfig::uniform(Duration::from_millis(300), Duration::from_millis(100))
                    .with_probability(-1.0),
            )
            .normalized();
        assert_eq!(c.error_rate, 0.0);
        assert_eq!(c.abort_rate, 1.0);
        let l = c.latency.unwrap();
        assert_eq!(l.probability, 0.0);
        assert_eq!(
            (l.min, l.max),
            (Duration::from_millis(100), Duration::from_millis(300))
        );

        let c = ChaosConfig::default()
            .with_error_rate(0.75)
            .with_abort_rate(0.5)
            .normalized();
        assert_eq!((c.error_rate, c.abort_rate), (0.75, 0.25));
        let c = ChaosConfig::default()
            .with_error_rate(f64::INFINITY)
            .with_abort_rate(0.5)
            .normalized();
        assert_eq!((c.error_rate, c.abort_rate), (1.0, 0.0));
    }

    #[cfg(feature = "serde")]
    #[test]
    fn deserializes_with_defaults_and_readable_durations() {
        let c: ChaosConfig = serde_json::from_str(
            r#"{"error_rate": 0.1, "latency": {"min": "100ms", "max": "1s"}, "seed": 7}"#,
        )
        .unwrap();
        assert!(c.enabled);
        assert_eq!(c.error_rate, 0.1);
        assert_eq!(c.seed, Some(7));
        assert_eq!(
            c.latency,
            Some(LatencyConfig::uniform(
                Duration::from_millis(100),
                Duration::from_secs(1)
            ))
        );
        assert!(serde_json::from_str::<ChaosConfig>(r#"{"error": 0.1}"#).is_err());
        let round: ChaosConfig = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(round, c);
    }
}
