//! Retry settings and the state every service of one layer shares.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::estimate::MedianEstimate;
use crate::backoff::Backoff;
use crate::budget::{Budget, BudgetConfig, BudgetSnapshot};
use crate::rand::Rng;
use crate::telemetry::Counter;
use crate::util::lock;

/// Retry settings.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct RetryConfig {
    /// Attempts per call, the first included: 3 means at most two retries. 1 (or 0)
    /// sends every request once.
    pub max_attempts: u32,
    /// Delays between attempts.
    pub backoff: Backoff,
    /// The retry budget, shared by every service the layer makes (and by a hedge layer
    /// given [`RetryLayer::budget`](super::RetryLayer::budget)).
    pub budget: BudgetConfig,
    /// A server's delay hint above this means no retry; below it, the retry waits for
    /// the larger of the hint and the backoff.
    #[cfg_attr(feature = "serde", serde(with = "crate::duration::serde"))]
    pub retry_after_cap: Duration,
}

impl Default for RetryConfig {
    /// Three attempts, the default [`Backoff`] (exponential 25 ms to 1 s, decorrelated
    /// jitter) and [`BudgetConfig`] (20% plus 10 per second over 10 s), hints honoured
    /// up to 30 s.
    fn default() -> Self {
        Self {
            max_attempts: 3,
            backoff: Backoff::default(),
            budget: BudgetConfig::default(),
            retry_after_cap: Duration::from_secs(30),
        }
    }
}

impl RetryConfig {
    /// Sets the number of attempts, the first included.
    #[must_use]
    pub fn with_max_attempts(mut self, max_attempts: u32) -> Self {
        self.max_attempts = max_attempts;
        self
    }

    /// Sets the backoff.
    #[must_use]
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Sets the budget.
    #[must_use]
    pub fn with_budget(mut self, budget: BudgetConfig) -> Self {
        self.budget = budget;
        self
    }

    /// Sets the cap on honoured delay hints.
    #[must_use]
    pub fn with_retry_after_cap(mut self, cap: Duration) -> Self {
        self.retry_after_cap = cap;
        self
    }
}

/// Why a retry layer stopped retrying a retryable outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GiveUp {
    Attempts,
    Budget,
    Deadline,
    RetryAfter,
    NotReady,
    NotReplayable,
}

impl GiveUp {
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            GiveUp::Attempts => "attempts",
            GiveUp::Budget => "budget",
            GiveUp::Deadline => "deadline",
            GiveUp::RetryAfter => "retry_after",
            GiveUp::NotReady => "not_ready",
            GiveUp::NotReplayable => "not_replayable",
        }
    }
}

/// Metric handles, registered once per layer.
#[derive(Debug)]
pub(crate) struct Metrics {
    pub(crate) attempts: Counter,
    pub(crate) retries: Counter,
    pub(crate) budget_exhausted: Counter,
    gave_up: [Counter; 5],
}

impl Metrics {
    fn register(name: Option<&str>) -> Self {
        let labels: Vec<(&'static str, String)> =
            name.map(|n| ("retry", n.to_owned())).into_iter().collect();
        let with_reason = |reason: GiveUp| {
            let mut l = labels.clone();
            l.push(("reason", reason.as_str().to_owned()));
            Counter::register("buttress_retry_gave_up_total", &l)
        };
        Self {
            attempts: Counter::register("buttress_retry_attempts_total", &labels),
            retries: Counter::register("buttress_retry_retries_total", &labels),
            budget_exhausted: Counter::register("buttress_retry_budget_exhausted_total", &labels),
            gave_up: [
                with_reason(GiveUp::Attempts),
                with_reason(GiveUp::Deadline),
                with_reason(GiveUp::RetryAfter),
                with_reason(GiveUp::NotReady),
                with_reason(GiveUp::NotReplayable),
            ],
        }
    }
}

pub(crate) struct Settings {
    pub(crate) config: RetryConfig,
    pub(crate) rng: Rng,
}

/// What every service of one [`RetryLayer`](super::RetryLayer) shares.
pub(crate) struct Shared {
    max_attempts: AtomicU32,
    attempt_timeout_nanos: AtomicU64,
    settings: Mutex<Settings>,
    pub(crate) budget: Budget,
    pub(crate) estimate: MedianEstimate,
    pub(crate) metrics: Metrics,
    retries: AtomicU64,
    gave_up: AtomicU64,
    budget_exhausted: AtomicU64,
}

const NO_TIMEOUT: u64 = u64::MAX;

impl Shared {
    pub(crate) fn new(config: RetryConfig, budget: Budget, name: Option<&str>) -> Self {
        Self {
            max_attempts: AtomicU32::new(config.max_attempts),
            attempt_timeout_nanos: AtomicU64::new(NO_TIMEOUT),
            settings: Mutex::new(Settings {
                config,
                rng: Rng::default(),
            }),
            budget,
            estimate: MedianEstimate::default(),
            metrics: Metrics::register(name),
            retries: AtomicU64::new(0),
            gave_up: AtomicU64::new(0),
            budget_exhausted: AtomicU64::new(0),
        }
    }

    #[inline]
    pub(crate) fn max_attempts(&self) -> u32 {
        self.max_attempts.load(Ordering::Relaxed)
    }

    pub(crate) fn settings(&self) -> std::sync::MutexGuard<'_, Settings> {
        lock(&self.settings)
    }

    pub(crate) fn set_rng(&self, rng: Rng) {
        self.settings().rng = rng;
    }

    pub(crate) fn set_attempt_timeout(&self, timeout: Option<Duration>) {
        let nanos = timeout.map_or(NO_TIMEOUT, |t| {
            u64::try_from(t.as_nanos())
                .unwrap_or(NO_TIMEOUT - 1)
                .min(NO_TIMEOUT - 1)
        });
        self.attempt_timeout_nanos.store(nanos, Ordering::Relaxed);
    }

    fn attempt_timeout(&self) -> Option<Duration> {
        match self.attempt_timeout_nanos.load(Ordering::Relaxed) {
            NO_TIMEOUT => None,
            n => Some(Duration::from_nanos(n)),
        }
    }

    /// How long the next attempt is expected to take: the observed median, capped by
    /// the attempt timeout; zero before any observation.
    pub(crate) fn expected_attempt(&self) -> Duration {
        let median = self.estimate.get().unwrap_or(Duration::ZERO);
        match self.attempt_timeout() {
            Some(t) => median.min(t),
            None => median,
        }
    }

    pub(crate) fn reconfigure(&self, config: RetryConfig) {
        let mut s = self.settings();
        s.config = config;
        self.max_attempts
            .store(config.max_attempts, Ordering::Relaxed);
        self.budget.reconfigure(config.budget);
    }

    pub(crate) fn record_retry(&self) {
        self.metrics.retries.increment(1);
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record_gave_up(&self, reason: GiveUp) {
        if reason == GiveUp::Budget {
            self.metrics.budget_exhausted.increment(1);
            self.budget_exhausted.fetch_add(1, Ordering::Relaxed);
        } else {
            let i = match reason {
                GiveUp::Attempts => 0,
                GiveUp::Deadline => 1,
                GiveUp::RetryAfter => 2,
                GiveUp::NotReady => 3,
                GiveUp::NotReplayable | GiveUp::Budget => 4,
            };
            self.metrics.gave_up[i].increment(1);
        }
        self.gave_up.fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> RetrySnapshot {
        let config = self.settings().config;
        RetrySnapshot {
            config,
            budget: self.budget.snapshot(Instant::now()),
            expected_attempt: self.estimate.get(),
            attempt_timeout: self.attempt_timeout(),
            retries: self.retries.load(Ordering::Relaxed),
            gave_up: self.gave_up.load(Ordering::Relaxed),
            budget_exhausted: self.budget_exhausted.load(Ordering::Relaxed),
        }
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("max_attempts", &self.max_attempts())
            .field("budget", &self.budget)
            .field("expected_attempt", &self.estimate.get())
            .finish_non_exhaustive()
    }
}

/// A handle to a retry layer's state: snapshots and run-time changes.
///
/// Every service the layer made sees a change at its next call (a call in progress
/// keeps the number of attempts it started with).
#[derive(Debug, Clone)]
pub struct RetryHandle {
    pub(crate) shared: Arc<Shared>,
}

impl RetryHandle {
    /// What the layer holds now.
    pub fn snapshot(&self) -> RetrySnapshot {
        self.shared.snapshot()
    }

    /// Changes the settings. The budget keeps what was deposited and withdrawn (see
    /// [`Budget::reconfigure`]).
    pub fn reconfigure(&self, config: RetryConfig) {
        self.shared.reconfigure(config);
    }

    /// Sets the attempt timeout that caps the expected attempt time.
    pub fn set_attempt_timeout(&self, timeout: Option<Duration>) {
        self.shared.set_attempt_timeout(timeout);
    }

    /// The layer's budget (shared with any hedge layer given it).
    pub fn budget(&self) -> Budget {
        self.shared.budget.clone()
    }
}

/// What a retry layer holds at one instant.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct RetrySnapshot {
    /// The settings in force.
    pub config: RetryConfig,
    /// The budget.
    pub budget: BudgetSnapshot,
    /// The running median of attempt durations (observed on requests that carry a
    /// deadline), if any.
    pub expected_attempt: Option<Duration>,
    /// The attempt timeout that caps the expectation, if known.
    pub attempt_timeout: Option<Duration>,
    /// Retries sent since the layer was built.
    pub retries: u64,
    /// Calls on which the layer stopped retrying a retryable outcome (attempts,
    /// budget, deadline, a delay hint above the cap, inner service not ready).
    pub gave_up: u64,
    /// Of those, the calls the budget stopped.
    pub budget_exhausted: u64,
}

/// The budget a layer builds from its config.
pub(crate) fn budget_for(config: &RetryConfig) -> Budget {
    Budget::new(config.budget)
}
