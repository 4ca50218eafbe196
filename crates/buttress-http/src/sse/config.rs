use std::time::Duration;

use buttress::backoff::Backoff;
use buttress::budget::BudgetConfig;

/// How an [`EventSource`](super::EventSource) reconnects and what it accepts.
///
/// The first three fields are the knobs of a policy's `reconnect` section
/// (`buttress::reconnect::ReconnectConfig`, which converts into this with the
/// crate's `reconnect` feature); the others are the stream's own.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct SseConfig {
    /// The delay before each reconnection while the stream is down, capped at
    /// `backoff.max`. A server's `retry:` field raises the floor (see
    /// [`retry_cap`](Self::retry_cap)).
    pub backoff: Backoff,
    /// A budget for reconnections: each takes a token; one the budget refuses is
    /// put off by another backoff delay.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub budget: Option<BudgetConfig>,
    /// Silence (no byte at all, heartbeat comments included) longer than this cuts
    /// the stream, and a server that does not answer a connection's request within
    /// it fails the attempt: a half-open connection is noticed and replaced. Set it
    /// above the server's heartbeat interval.
    #[cfg_attr(
        feature = "serde",
        serde(
            with = "buttress::duration::serde::option",
            skip_serializing_if = "Option::is_none"
        )
    )]
    pub idle_timeout: Option<Duration>,
    /// The longest reconnection time a server's `retry:` field (or a `Retry-After`
    /// on a 503) can ask for.
    #[cfg_attr(feature = "serde", serde(with = "buttress::duration::serde"))]
    pub retry_cap: Duration,
    /// How many recent event ids are remembered to drop duplicates (events a server
    /// sends again after a reconnection). 0 keeps none.
    pub dedup_window: usize,
    /// The largest event (or line) accepted, in bytes; a larger one ends the stream
    /// with an error.
    pub max_event_size: usize,
}

impl Default for SseConfig {
    /// Exponential backoff from 100 ms to 10 s with decorrelated jitter, no budget,
    /// no idle timeout, server delays up to 60 s, 1024 ids remembered, events up to
    /// 1 MiB.
    fn default() -> Self {
        Self {
            backoff: Backoff::exponential(Duration::from_millis(100), Duration::from_secs(10)),
            budget: None,
            idle_timeout: None,
            retry_cap: Duration::from_secs(60),
            dedup_window: 1024,
            max_event_size: 1 << 20,
        }
    }
}

impl SseConfig {
    /// Sets the backoff.
    #[must_use]
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Sets a budget for reconnections.
    #[must_use]
    pub fn with_budget(mut self, budget: BudgetConfig) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Sets the idle (heartbeat) timeout.
    #[must_use]
    pub fn with_idle_timeout(mut self, idle_timeout: Duration) -> Self {
        self.idle_timeout = Some(idle_timeout);
        self
    }

    /// Sets the cap on server-requested delays.
    #[must_use]
    pub fn with_retry_cap(mut self, cap: Duration) -> Self {
        self.retry_cap = cap;
        self
    }

    /// Sets how many event ids are remembered for deduplication.
    #[must_use]
    pub fn with_dedup_window(mut self, ids: usize) -> Self {
        self.dedup_window = ids;
        self
    }

    /// Sets the largest event accepted.
    #[must_use]
    pub fn with_max_event_size(mut self, bytes: usize) -> Self {
        self.max_event_size = bytes;
        self
    }
}

#[cfg(feature = "reconnect")]
impl From<buttress::reconnect::ReconnectConfig> for SseConfig {
    /// A policy's `reconnect` section: its backoff, budget and idle timeout
    /// (`fail_fast` has no meaning for a stream, whose consumer just waits).
    fn from(c: buttress::reconnect::ReconnectConfig) -> Self {
        Self {
            backoff: c.backoff,
            budget: c.budget,
            idle_timeout: c.idle_timeout,
            ..Self::default()
        }
    }
}
