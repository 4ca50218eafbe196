//! Hedge settings and the state every service of one layer shares.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::histogram::Histogram;
use crate::budget::{Budget, BudgetConfig, BudgetSnapshot};
use crate::telemetry::Counter;
use crate::util::lock;

/// Hedge settings.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct HedgeConfig {
    /// How long to wait for an answer before sending another copy.
    pub delay: HedgeDelay,
    /// At most this many extra copies per call (0 turns hedging off).
    pub max_extra: u32,
}

impl Default for HedgeConfig {
    /// One extra copy at the 95th percentile of recent latencies.
    fn default() -> Self {
        Self {
            delay: HedgeDelay::Percentile(PercentileDelay::default()),
            max_extra: 1,
        }
    }
}

impl HedgeConfig {
    /// `max_extra` copies, each `delay` after the previous one.
    pub fn fixed(delay: Duration, max_extra: u32) -> Self {
        Self {
            delay: HedgeDelay::Fixed(delay),
            max_extra,
        }
    }

    /// `max_extra` copies, each after the `percentile` latency of recent calls.
    pub fn percentile(percentile: f64, max_extra: u32) -> Self {
        Self {
            delay: HedgeDelay::Percentile(PercentileDelay {
                percentile,
                ..PercentileDelay::default()
            }),
            max_extra,
        }
    }
}

/// When to send another copy.
///
/// In a config file: a duration (`delay = "50ms"`) or a table
/// (`delay = { percentile = 0.95, min_samples = 100, window = "10s" }`).
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(untagged))]
pub enum HedgeDelay {
    /// A fixed delay.
    Fixed(#[cfg_attr(feature = "serde", serde(with = "crate::duration::serde"))] Duration),
    /// A percentile of the latencies of recent calls.
    Percentile(PercentileDelay),
}

/// A hedge delay at a percentile of a rolling latency histogram.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct PercentileDelay {
    /// The percentile, as a fraction (0.95 = p95). Roughly the share of calls that
    /// get a hedge.
    pub percentile: f64,
    /// Samples the window must hold before the percentile is used.
    pub min_samples: u32,
    /// How long a latency sample counts.
    #[cfg_attr(feature = "serde", serde(with = "crate::duration::serde"))]
    pub window: Duration,
    /// The delay until `min_samples` are in; `None`: no hedging until then.
    #[cfg_attr(
        feature = "serde",
        serde(
            with = "crate::duration::serde::option",
            skip_serializing_if = "Option::is_none"
        )
    )]
    pub fallback: Option<Duration>,
}

impl Default for PercentileDelay {
    /// p95 over 10 s, once 100 samples are in; no hedging before.
    fn default() -> Self {
        Self {
            percentile: 0.95,
            min_samples: 100,
            window: Duration::from_secs(10),
            fallback: None,
        }
    }
}

const NONE: u64 = u64::MAX;
/// Quantiles are recomputed after this many samples (and whenever slots rotate).
const RECOMPUTE_EVERY: u32 = 64;

fn to_nanos(d: Option<Duration>) -> u64 {
    d.map_or(NONE, |d| {
        u64::try_from(d.as_nanos())
            .unwrap_or(NONE - 1)
            .min(NONE - 1)
    })
}

fn from_nanos(n: u64) -> Option<Duration> {
    (n != NONE).then(|| Duration::from_nanos(n))
}

struct Latencies {
    histogram: Histogram,
    since_recompute: u32,
}

#[derive(Debug)]
struct Metrics {
    sent: Counter,
    won: Counter,
    budget_exhausted: Counter,
}

/// What every service of one [`HedgeLayer`](super::HedgeLayer) shares.
pub(crate) struct Shared {
    max_extra: AtomicU32,
    percentile_mode: AtomicBool,
    /// The current hedge delay; NONE: do not hedge.
    delay_nanos: AtomicU64,
    /// The median latency, for the deadline check; NONE: unknown.
    median_nanos: AtomicU64,
    config: Mutex<HedgeConfig>,
    latencies: Mutex<Latencies>,
    pub(crate) budget: Budget,
    /// Whether this layer deposits for each call (its own budget) or only withdraws
    /// (a budget a retry layer above fills).
    pub(crate) deposits: bool,
    pub(crate) name: Option<String>,
    metrics: Metrics,
    sent: AtomicU64,
    won: AtomicU64,
    budget_exhausted: AtomicU64,
}

impl Shared {
    pub(crate) fn new(
        config: HedgeConfig,
        budget: Budget,
        deposits: bool,
        name: Option<String>,
    ) -> Self {
        let labels: Vec<(&'static str, String)> =
            name.iter().map(|n| ("hedge", n.clone())).collect();
        let window = match config.delay {
            HedgeDelay::Percentile(p) => p.window,
            HedgeDelay::Fixed(_) => PercentileDelay::default().window,
        };
        let shared = Self {
            max_extra: AtomicU32::new(config.max_extra),
            percentile_mode: AtomicBool::new(false),
            delay_nanos: AtomicU64::new(NONE),
            median_nanos: AtomicU64::new(NONE),
            config: Mutex::new(config),
            latencies: Mutex::new(Latencies {
                histogram: Histogram::new(window, Instant::now()),
                since_recompute: 0,
            }),
            budget,
            deposits,
            name,
            metrics: Metrics {
                sent: Counter::register("buttress_hedge_sent_total", &labels),
                won: Counter::register("buttress_hedge_won_total", &labels),
                budget_exhausted: Counter::register(
                    "buttress_hedge_budget_exhausted_total",
                    &labels,
                ),
            },
            sent: AtomicU64::new(0),
            won: AtomicU64::new(0),
            budget_exhausted: AtomicU64::new(0),
        };
        shared.apply(config);
        shared
    }

    pub(crate) fn config(&self) -> HedgeConfig {
        *lock(&self.config)
    }

    fn apply(&self, config: HedgeConfig) {
        self.max_extra.store(config.max_extra, Ordering::Relaxed);
        match config.delay {
            HedgeDelay::Fixed(d) => {
                self.percentile_mode.store(false, Ordering::Relaxed);
                self.delay_nanos.store(to_nanos(Some(d)), Ordering::Relaxed);
            }
            HedgeDelay::Percentile(_) => {
                self.percentile_mode.store(true, Ordering::Relaxed);
                let l = lock(&self.latencies);
                self.recompute(&l.histogram, config);
            }
        }
    }

    pub(crate) fn reconfigure(&self, config: HedgeConfig) {
        let old = std::mem::replace(&mut *lock(&self.config), config);
        if let HedgeDelay::Percentile(p) = config.delay {
            let old_window = match old.delay {
                HedgeDelay::Percentile(o) => o.window,
                HedgeDelay::Fixed(_) => PercentileDelay::default().window,
            };
            if p.window != old_window {
                lock(&self.latencies).histogram = Histogram::new(p.window, Instant::now());
            }
        }
        self.apply(config);
    }

    #[inline]
    pub(crate) fn max_extra(&self) -> u32 {
        self.max_extra.load(Ordering::Relaxed)
    }

    #[inline]
    pub(crate) fn percentile_mode(&self) -> bool {
        self.percentile_mode.load(Ordering::Relaxed)
    }

    /// The delay before the first extra copy; `None`: do not hedge now.
    #[inline]
    pub(crate) fn delay(&self) -> Option<Duration> {
        from_nanos(self.delay_nanos.load(Ordering::Relaxed))
    }

    /// How long a copy is expected to take (the median latency), zero if unknown.
    pub(crate) fn expected(&self) -> Duration {
        from_nanos(self.median_nanos.load(Ordering::Relaxed)).unwrap_or(Duration::ZERO)
    }

    /// Counts latencies observed at `now`, recomputing the cached quantiles now and
    /// then.
    pub(crate) fn record(&self, now: Instant, samples: &[Duration]) {
        if samples.is_empty() {
            return;
        }
        let config = self.config();
        let mut l = lock(&self.latencies);
        let mut rotated = false;
        let before = l.histogram.len();
        for &s in samples {
            rotated |= l.histogram.record(now, s);
        }
        l.since_recompute = l.since_recompute.saturating_add(samples.len() as u32);
        let crossed = match config.delay {
            HedgeDelay::Percentile(p) => {
                before < u64::from(p.min_samples) && l.histogram.len() >= u64::from(p.min_samples)
            }
            HedgeDelay::Fixed(_) => false,
        };
        if rotated || crossed || before == 0 || l.since_recompute >= RECOMPUTE_EVERY {
            l.since_recompute = 0;
            self.recompute(&l.histogram, config);
        }
    }

    fn recompute(&self, histogram: &Histogram, config: HedgeConfig) {
        self.median_nanos
            .store(to_nanos(histogram.quantile(0.5)), Ordering::Relaxed);
        if let HedgeDelay::Percentile(p) = config.delay {
            let delay = if histogram.len() >= u64::from(p.min_samples.max(1)) {
                histogram.quantile(p.percentile)
            } else {
                p.fallback
            };
            self.delay_nanos.store(to_nanos(delay), Ordering::Relaxed);
        }
    }

    pub(crate) fn record_sent(&self) {
        self.metrics.sent.increment(1);
        self.sent.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record_won(&self) {
        self.metrics.won.increment(1);
        self.won.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn record_budget_exhausted(&self) {
        self.metrics.budget_exhausted.increment(1);
        self.budget_exhausted.fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> HedgeSnapshot {
        let now = Instant::now();
        let samples = {
            let mut l = lock(&self.latencies);
            l.histogram.advance(now);
            l.histogram.len()
        };
        HedgeSnapshot {
            config: self.config(),
            delay: self.delay(),
            median: from_nanos(self.median_nanos.load(Ordering::Relaxed)),
            samples,
            budget: self.budget.snapshot(now),
            sent: self.sent.load(Ordering::Relaxed),
            won: self.won.load(Ordering::Relaxed),
            budget_exhausted: self.budget_exhausted.load(Ordering::Relaxed),
        }
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("max_extra", &self.max_extra())
            .field("delay", &self.delay())
            .field("deposits", &self.deposits)
            .finish_non_exhaustive()
    }
}

/// A handle to a hedge layer's state: snapshots and run-time changes.
#[derive(Debug, Clone)]
pub struct HedgeHandle {
    pub(crate) shared: Arc<Shared>,
}

impl HedgeHandle {
    /// What the layer holds now.
    pub fn snapshot(&self) -> HedgeSnapshot {
        self.shared.snapshot()
    }

    /// Changes the settings; the latency histogram is kept unless the percentile
    /// window changes.
    pub fn reconfigure(&self, config: HedgeConfig) {
        self.shared.reconfigure(config);
    }

    /// The budget the layer draws on.
    pub fn budget(&self) -> Budget {
        self.shared.budget.clone()
    }
}

/// What a hedge layer holds at one instant.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct HedgeSnapshot {
    /// The settings in force.
    pub config: HedgeConfig,
    /// The delay before an extra copy now; `None` while a percentile delay waits for
    /// samples (without a fallback).
    pub delay: Option<Duration>,
    /// The median latency of recent calls, if known.
    pub median: Option<Duration>,
    /// Latency samples in the window.
    pub samples: u64,
    /// The budget the layer draws on.
    pub budget: BudgetSnapshot,
    /// Extra copies sent since the layer was built.
    pub sent: u64,
    /// Calls answered by an extra copy.
    pub won: u64,
    /// Extra copies the budget refused.
    pub budget_exhausted: u64,
}

/// The budget a hedge layer makes for itself when it shares none.
pub(crate) fn own_budget() -> Budget {
    Budget::new(BudgetConfig::default())
}
