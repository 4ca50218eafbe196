//! The breaker's settings, as written in code or in a configuration file.

use std::fmt;
use std::time::Duration;

/// The largest count window accepted (a ring of this many results is about 1 MB).
pub const MAX_WINDOW_CALLS: u32 = 1_000_000;

/// The number of buckets a time window is split into: it slides in steps of
/// `duration / TIME_BUCKETS`, like Polly's sampling.
pub const TIME_BUCKETS: u32 = 10;

/// Which calls the failure and slow-call rates are computed over.
///
/// In a file: `window = { calls = 100 }` or `window = { duration = "30s" }`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum Window {
    /// The last `n` completed calls (a ring). No clock read is needed to keep it.
    Calls(u32),
    /// The calls completed in the last `duration`, kept in [`TIME_BUCKETS`] buckets:
    /// one clock read per call, when it completes.
    Duration(#[cfg_attr(feature = "serde", serde(with = "crate::duration::serde"))] Duration),
}

impl Default for Window {
    /// The last 100 calls (resilience4j's default).
    fn default() -> Self {
        Window::Calls(100)
    }
}

/// Slow-call detection: a call that took at least `after` (success or failure) is
/// slow, and the breaker trips when the slow-call rate reaches `rate`.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct SlowCall {
    /// A call taking at least this long is slow.
    #[cfg_attr(feature = "serde", serde(with = "crate::duration::serde"))]
    pub after: Duration,
    /// The slow-call rate (0 to 1) that trips the breaker.
    pub rate: f64,
}

impl Default for SlowCall {
    /// 60 s and 100%, resilience4j's defaults (set `after` to something meaningful).
    fn default() -> Self {
        Self {
            after: Duration::from_secs(60),
            rate: 1.0,
        }
    }
}

/// What an open breaker does to calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum BreakerMode {
    /// Answer [`CircuitOpen`](crate::rejection::CircuitOpen) in the response future,
    /// without calling the inner service.
    #[default]
    Reject,
    /// Make `poll_ready` pending while the breaker is open (and while every half-open
    /// probe slot is taken), waking the task when it turns half-open: a
    /// `tower::balance` pool then routes around the endpoint (outlier ejection).
    Gate,
    /// Compute and report everything (state, transitions, would-be rejections) but let
    /// every call through.
    Observe,
}

impl From<crate::Mode> for BreakerMode {
    fn from(mode: crate::Mode) -> Self {
        match mode {
            crate::Mode::Enforce => BreakerMode::Reject,
            crate::Mode::Observe => BreakerMode::Observe,
        }
    }
}

/// The jitter factor meant by `jitter = true` in a file.
pub const DEFAULT_JITTER: f64 = 0.2;

/// Circuit breaker settings; see the [module docs](super) for the behaviour and the
/// defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct BreakerConfig {
    /// The calls the rates are computed over.
    pub window: Window,
    /// The failure rate (0 to 1) that trips the breaker.
    pub failure_rate: f64,
    /// Slow-call detection, off when `None`.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub slow_call: Option<SlowCall>,
    /// Trip after this many failures in a row, whatever the window says.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub consecutive_failures: Option<u32>,
    /// No rate trips the breaker before the window holds this many calls (capped at
    /// the size of a count window).
    pub minimum_calls: u32,
    /// How long the breaker stays open after tripping from closed.
    #[cfg_attr(feature = "serde", serde(with = "crate::duration::serde"))]
    pub open_for: Duration,
    /// Each trip straight from half-open doubles the open time, up to this.
    #[cfg_attr(feature = "serde", serde(with = "crate::duration::serde"))]
    pub max_open_for: Duration,
    /// How many probe calls half-open lets through; their results decide together.
    pub half_open_probes: u32,
    /// Open-time jitter factor (0 to 1): each open time is drawn from
    /// `[(1 - jitter) * t, t]`. In a file, `true` means [`DEFAULT_JITTER`] and
    /// `false` means 0 (exact open times).
    #[cfg_attr(feature = "serde", serde(with = "jitter_serde"))]
    pub jitter: f64,
    /// Reject, gate or observe.
    pub mode: BreakerMode,
}

impl Default for BreakerConfig {
    /// The defaults, next to the peers they follow:
    ///
    /// | knob | default | resilience4j | Polly |
    /// |---|---|---|---|
    /// | `window` | `{ calls = 100 }` | count, 100 | time, 30 s |
    /// | `failure_rate` | 0.5 | 50% | 0.1 |
    /// | `slow_call` | off | 60 s, 100% (rarely trips) | none |
    /// | `consecutive_failures` | off | none | none |
    /// | `minimum_calls` | 20 | 100 | 100 |
    /// | `open_for` | 5 s | 60 s | 5 s |
    /// | `max_open_for` | 60 s | fixed | fixed (a generator can grow it) |
    /// | `half_open_probes` | 3 | 10 | 1 |
    /// | `jitter` | 0.2 | none | none |
    /// | `mode` | reject | | |
    fn default() -> Self {
        Self {
            window: Window::default(),
            failure_rate: 0.5,
            slow_call: None,
            consecutive_failures: None,
            minimum_calls: 20,
            open_for: Duration::from_secs(5),
            max_open_for: Duration::from_secs(60),
            half_open_probes: 3,
            jitter: DEFAULT_JITTER,
            mode: BreakerMode::Reject,
        }
    }
}

/// A setting the breaker cannot honour as written; see [`BreakerConfig::validate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidBreakerConfig {
    key: &'static str,
    message: String,
}

impl InvalidBreakerConfig {
    /// The knob's path under the breaker's table, e.g. `window.calls`.
    pub fn key(&self) -> &'static str {
        self.key
    }

    /// What is wrong with it.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for InvalidBreakerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "breaker.{}: {}", self.key, self.message)
    }
}

impl std::error::Error for InvalidBreakerConfig {}

fn rate_ok(x: f64) -> bool {
    x > 0.0 && x <= 1.0
}

impl BreakerConfig {
    /// Sets the window.
    #[must_use]
    pub fn with_window(mut self, window: Window) -> Self {
        self.window = window;
        self
    }

    /// Sets the failure rate that trips the breaker.
    #[must_use]
    pub fn with_failure_rate(mut self, rate: f64) -> Self {
        self.failure_rate = rate;
        self
    }

    /// Turns slow-call detection on.
    #[must_use]
    pub fn with_slow_call(mut self, after: Duration, rate: f64) -> Self {
        self.slow_call = Some(SlowCall { after, rate });
        self
    }

    /// Trips after `n` failures in a row.
    #[must_use]
    pub fn with_consecutive_failures(mut self, n: u32) -> Self {
        self.consecutive_failures = Some(n);
        self
    }

    /// Sets the minimum number of calls before a rate can trip the breaker.
    #[must_use]
    pub fn with_minimum_calls(mut self, n: u32) -> Self {
        self.minimum_calls = n;
        self
    }

    /// Sets the first open time and its maximum.
    #[must_use]
    pub fn with_open_for(mut self, open_for: Duration, max_open_for: Duration) -> Self {
        self.open_for = open_for;
        self.max_open_for = max_open_for;
        self
    }

    /// Sets the number of half-open probes.
    #[must_use]
    pub fn with_half_open_probes(mut self, n: u32) -> Self {
        self.half_open_probes = n;
        self
    }

    /// Sets the open-time jitter factor (0 for exact open times).
    #[must_use]
    pub fn with_jitter(mut self, factor: f64) -> Self {
        self.jitter = factor;
        self
    }

    /// Sets the mode.
    #[must_use]
    pub fn with_mode(mut self, mode: BreakerMode) -> Self {
        self.mode = mode;
        self
    }

    /// Checks every knob. The breaker itself never fails on a bad value: it clamps
    /// it to the nearest meaningful one (a rate into `(0, 1]`, counts to at least 1,
    /// `max_open_for` to at least `open_for`, the count window to
    /// [`MAX_WINDOW_CALLS`]); this reports what it would clamp.
    pub fn validate(&self) -> Result<(), InvalidBreakerConfig> {
        let bad = |key, message: &str| {
            Err(InvalidBreakerConfig {
                key,
                message: message.to_owned(),
            })
        };
        match self.window {
            Window::Calls(0) => return bad("window.calls", "must be at least 1"),
            Window::Calls(n) if n > MAX_WINDOW_CALLS => {
                return bad("window.calls", "must be at most 1000000");
            }
            Window::Duration(d) if d.is_zero() => {
                return bad("window.duration", "must be longer than zero");
            }
            _ => {}
        }
        if !rate_ok(self.failure_rate) {
            return bad("failure_rate", "must be above 0 and at most 1");
        }
        if let Some(slow) = self.slow_call {
            if !rate_ok(slow.rate) {
                return bad("slow_call.rate", "must be above 0 and at most 1");
            }
            if slow.after.is_zero() {
                return bad("slow_call.after", "must be longer than zero");
            }
        }
        if self.consecutive_failures == Some(0) {
            return bad("consecutive_failures", "must be at least 1");
        }
        if self.open_for.is_zero() {
            return bad("open_for", "must be longer than zero");
        }
        if self.max_open_for < self.open_for {
            return bad("max_open_for", "must be at least open_for");
        }
        if self.half_open_probes == 0 {
            return bad("half_open_probes", "must be at least 1");
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return bad("jitter", "must be a boolean or a factor from 0 to 1");
        }
        Ok(())
    }
}

#[cfg(feature = "serde")]
mod jitter_serde {
    use std::fmt;

    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(x: &f64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(*x)
    }

    struct BoolOrFactor;

    impl Visitor<'_> for BoolOrFactor {
        type Value = f64;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a boolean or a factor from 0 to 1")
        }

        fn visit_bool<E: de::Error>(self, v: bool) -> Result<f64, E> {
            Ok(if v { super::DEFAULT_JITTER } else { 0.0 })
        }

        fn visit_f64<E: de::Error>(self, v: f64) -> Result<f64, E> {
            if (0.0..=1.0).contains(&v) {
                Ok(v)
            } else {
                Err(E::invalid_value(de::Unexpected::Float(v), &self))
            }
        }

        fn visit_u64<E: de::Error>(self, v: u64) -> Result<f64, E> {
            match v {
                0 => Ok(0.0),
                1 => Ok(1.0),
                _ => Err(E::invalid_value(de::Unexpected::Unsigned(v), &self)),
            }
        }

        fn visit_i64<E: de::Error>(self, v: i64) -> Result<f64, E> {
            match v {
                0 => Ok(0.0),
                1 => Ok(1.0),
                _ => Err(E::invalid_value(de::Unexpected::Signed(v), &self)),
            }
        }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        d.deserialize_any(BoolOrFactor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid() {
        assert_eq!(BreakerConfig::default().validate(), Ok(()));
    }

    #[test]
    fn validation_names_the_key() {
        let cases = [
            (
                BreakerConfig::default().with_window(Window::Calls(0)),
                "window.calls",
            ),
            (
                BreakerConfig::default().with_window(Window::Duration(Duration::ZERO)),
                "window.duration",
            ),
            (
                BreakerConfig::default().with_failure_rate(0.0),
                "failure_rate",
            ),
            (
                BreakerConfig::default().with_failure_rate(1.5),
                "failure_rate",
            ),
            (
                BreakerConfig::default().with_slow_call(Duration::from_secs(1), 2.0),
                "slow_call.rate",
            ),
            (
                BreakerConfig::default().with_consecutive_failures(0),
                "consecutive_failures",
            ),
            (
                BreakerConfig::default()
                    .with_open_for(Duration::from_secs(5), Duration::from_secs(1)),
                "max_open_for",
            ),
            (
                BreakerConfig::default().with_half_open_probes(0),
                "half_open_probes",
            ),
            (BreakerConfig::default().with_jitter(-0.1), "jitter"),
        ];
        for (cfg, key) in cases {
            assert_eq!(cfg.validate().unwrap_err().key(), key);
        }
    }

    #[test]
    fn generic_mode_maps_onto_breaker_modes() {
        assert_eq!(BreakerMode::from(crate::Mode::Enforce), BreakerMode::Reject);
        assert_eq!(
            BreakerMode::from(crate::Mode::Observe),
            BreakerMode::Observe
        );
    }

    #[cfg(feature = "serde")]
    #[test]
    fn reads_the_design_shape() {
        let cfg: BreakerConfig = serde_json::from_str(
            r#"{
                "window": { "duration": "30s" },
                "failure_rate": 0.25,
                "slow_call": { "after": "2s", "rate": 0.8 },
                "consecutive_failures": 5,
                "minimum_calls": 10,
                "open_for": "200ms",
                "max_open_for": "2m",
                "half_open_probes": 2,
                "jitter": true,
                "mode": "gate"
            }"#,
        )
        .unwrap();
        assert_eq!(cfg.window, Window::Duration(Duration::from_secs(30)));
        assert_eq!(cfg.slow_call.unwrap().after, Duration::from_secs(2));
        assert_eq!(cfg.consecutive_failures, Some(5));
        assert_eq!(cfg.max_open_for, Duration::from_secs(120));
        assert_eq!(cfg.jitter, DEFAULT_JITTER);
        assert_eq!(cfg.mode, BreakerMode::Gate);
        let cfg: BreakerConfig =
            serde_json::from_str(r#"{ "window": { "calls": 10 }, "jitter": false }"#).unwrap();
        assert_eq!(cfg.window, Window::Calls(10));
        assert_eq!(cfg.jitter, 0.0);
        let cfg: BreakerConfig = serde_json::from_str(r#"{ "jitter": 0.5 }"#).unwrap();
        assert_eq!(cfg.jitter, 0.5);
        assert!(serde_json::from_str::<BreakerConfig>(r#"{ "jitter": 3 }"#).is_err());
        assert!(serde_json::from_str::<BreakerConfig>(r#"{ "windw": { "calls": 3 } }"#).is_err());
        assert!(serde_json::from_str::<BreakerConfig>(r#"{ "window": { "count": 3 } }"#).is_err());
        let back: BreakerConfig =
            serde_json::from_str(&serde_json::to_string(&cfg).unwrap()).unwrap();
        assert_eq!(back, cfg);
    }
}
