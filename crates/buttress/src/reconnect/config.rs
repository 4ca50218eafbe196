use std::time::Duration;

use crate::backoff::Backoff;
use crate::budget::BudgetConfig;

/// How a [`Reconnect`](super::Reconnect) (and a stream client reading a policy's
/// `reconnect` section) re-establishes a lost connection.
///
/// The default reconnects with exponential backoff from 100 ms to 10 s with
/// decorrelated jitter, with no budget and no idle timeout, and holds callers until a
/// connection is back (`fail_fast = false`).
///
/// In a configuration file (behind the `serde` feature):
///
/// ```toml
/// [policies.feed.reconnect]
/// backoff = { kind = "exponential", base = "100ms", max = "10s", jitter = "decorrelated" }
/// budget = { ratio = 0.0, min_per_second = 1, ttl = "10s" }
/// idle_timeout = "30s"
/// fail_fast = true
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct ReconnectConfig {
    /// The delay before each reconnection attempt of one outage; every delay is
    /// capped at `backoff.max`. The first attempt after a lost connection also waits
    /// (with jitter), so clients that lost one server together do not return together.
    pub backoff: Backoff,
    /// A budget for reconnection attempts: each attempt takes one token, and an
    /// attempt the budget refuses is put off by another backoff delay. Reconnecting
    /// deposits nothing, so on its own a budget allows `min_per_second x ttl`
    /// attempts per `ttl`; shared with a retry layer
    /// ([`ReconnectLayer::with_budget`](super::ReconnectLayer::with_budget)),
    /// reconnections and retries draw on one bucket filled by requests.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub budget: Option<BudgetConfig>,
    /// A connection left unused for longer than this is assumed stale (a NAT or a
    /// load balancer may have dropped it without a word) and replaced before the next
    /// call. For streams: a stream silent for longer than this is treated as cut.
    #[cfg_attr(
        feature = "serde",
        serde(
            with = "crate::duration::serde::option",
            skip_serializing_if = "Option::is_none"
        )
    )]
    pub idle_timeout: Option<Duration>,
    /// While reconnecting, answer calls at once with
    /// [`Reconnecting`](super::error::Reconnecting) instead of holding them until
    /// the connection is back.
    pub fail_fast: bool,
}

impl Default for ReconnectConfig {
    fn default() -> Self {
        Self {
            backoff: Backoff::exponential(Duration::from_millis(100), Duration::from_secs(10)),
            budget: None,
            idle_timeout: None,
            fail_fast: false,
        }
    }
}

impl ReconnectConfig {
    /// Sets the backoff between attempts.
    #[must_use]
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Sets a budget for reconnection attempts.
    #[must_use]
    pub fn with_budget(mut self, budget: BudgetConfig) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Sets the idle timeout.
    #[must_use]
    pub fn with_idle_timeout(mut self, idle_timeout: Duration) -> Self {
        self.idle_timeout = Some(idle_timeout);
        self
    }

    /// Sets whether calls fail fast while reconnecting.
    #[must_use]
    pub fn with_fail_fast(mut self, fail_fast: bool) -> Self {
        self.fail_fast = fail_fast;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_backs_off_and_holds_callers() {
        let c = ReconnectConfig::default();
        assert_eq!(c.backoff.base, Duration::from_millis(100));
        assert_eq!(c.backoff.max, Duration::from_secs(10));
        assert!(!c.fail_fast);
        assert_eq!((c.budget, c.idle_timeout), (None, None));
    }

    #[cfg(feature = "serde")]
    #[test]
    fn deserializes_the_design_knobs() {
        let c: ReconnectConfig = serde_json::from_str(
            r#"{"backoff": {"base": "50ms", "max": "2s", "jitter": "full"},
                "budget": {"min_per_second": 2},
                "idle_timeout": "30s", "fail_fast": true}"#,
        )
        .unwrap();
        assert_eq!(c.backoff.base, Duration::from_millis(50));
        assert_eq!(c.backoff.max, Duration::from_secs(2));
        assert_eq!(c.backoff.jitter, crate::backoff::Jitter::Full);
        assert_eq!(c.budget.unwrap().min_per_second, 2);
        assert_eq!(c.idle_timeout, Some(Duration::from_secs(30)));
        assert!(c.fail_fast);
        assert!(serde_json::from_str::<ReconnectConfig>(r#"{"failfast": true}"#).is_err());
        let round: ReconnectConfig =
            serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(round, c);
        let empty: ReconnectConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(empty, ReconnectConfig::default());
    }
}
