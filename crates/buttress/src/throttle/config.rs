use std::time::Duration;

use crate::Mode;
use crate::keyed::KeyedConfig;

/// A throttle's settings.
///
/// The defaults: `k` = 2, a 60-second window, at most 90% of calls refused locally,
/// enforcing, a one-second retry delay, and the [`KeyedConfig`] defaults for a keyed
/// throttle.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct ThrottleConfig {
    /// How many requests per accepted one the client may send before it starts
    /// refusing locally (the SRE book's K; default 2, at least 1). Lower is more
    /// aggressive.
    pub k: f64,
    /// How far back requests and accepts count (default 60 s), in ten buckets.
    #[cfg_attr(feature = "serde", serde(with = "crate::duration::serde"))]
    pub window: Duration,
    /// The highest probability of refusing a call locally (default 0.9), so that
    /// some calls still probe an upstream that answers nothing but overload.
    pub max_rejection: f64,
    /// Enforce, or only count what would be refused.
    pub mode: Mode,
    /// The delay suggested with a local refusal
    /// ([`Overloaded::retry_after`](crate::rejection::Overloaded::retry_after)).
    #[cfg_attr(feature = "serde", serde(with = "crate::duration::serde"))]
    pub retry_after: Duration,
    /// Bounds of the map of partitions, for a keyed throttle.
    pub keys: KeyedConfig,
    /// Seed of the random draws (default: from entropy).
    pub seed: Option<u64>,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        Self {
            k: 2.0,
            window: Duration::from_secs(60),
            max_rejection: 0.9,
            mode: Mode::Enforce,
            retry_after: Duration::from_secs(1),
            keys: KeyedConfig::default(),
            seed: None,
        }
    }
}

impl ThrottleConfig {
    /// The default settings with `k`.
    pub fn new(k: f64) -> Self {
        Self {
            k,
            ..Self::default()
        }
    }

    /// Sets the window.
    #[must_use]
    pub fn with_window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// Sets the mode.
    #[must_use]
    pub fn with_mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// Sets the seed of the random draws.
    #[must_use]
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// The same settings made usable: `k >= 1`, `max_rejection` within `0..=1`, a
    /// window of at least ten milliseconds. A non-number becomes the default.
    pub fn normalized(&self) -> Self {
        let d = Self::default();
        Self {
            k: if self.k.is_finite() {
                self.k.max(1.0)
            } else {
                d.k
            },
            max_rejection: if self.max_rejection.is_finite() {
                self.max_rejection.clamp(0.0, 1.0)
            } else {
                d.max_rejection
            },
            window: self.window.max(Duration::from_millis(10)),
            ..*self
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nonsense_is_made_usable() {
        let c = ThrottleConfig {
            k: f64::NAN,
            max_rejection: 3.0,
            window: Duration::ZERO,
            ..ThrottleConfig::default()
        }
        .normalized();
        assert_eq!(
            (c.k, c.max_rejection, c.window),
            (2.0, 1.0, Duration::from_millis(10))
        );
        assert_eq!(ThrottleConfig::new(0.5).normalized().k, 1.0);
    }

    #[cfg(feature = "serde")]
    #[test]
    fn reads_the_design_shape() {
        let c: ThrottleConfig = serde_json::from_str(r#"{"k": 1.5, "window": "2m"}"#).unwrap();
        assert_eq!((c.k, c.window), (1.5, Duration::from_secs(120)));
        assert!(serde_json::from_str::<ThrottleConfig>(r#"{"K": 2}"#).is_err());
    }
}
