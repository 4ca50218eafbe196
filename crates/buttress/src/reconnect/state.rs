//! The state a reconnect layer shares with every service it makes and with its
//! handle: the settings in force, and what each connection reports.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::config::ReconnectConfig;
use super::link::{LinkStatus, chain};
use crate::budget::{Budget, BudgetSnapshot};
use crate::rand::Rng;
use crate::telemetry::{Counter, Gauge};
use crate::util::lock;

pub(crate) const TARGET: &str = "buttress::reconnect";

/// The settings every service of a layer reads.
pub(crate) struct Settings {
    pub(crate) config: ReconnectConfig,
    /// `false` for the pass-through form: reconnect at once, hand connect errors to
    /// the caller, as tower's `Reconnect` does.
    pub(crate) enabled: bool,
    pub(crate) budget: Option<Budget>,
    /// Whether `budget` was given by the user (shared with other layers) rather than
    /// built from `config.budget`.
    pub(crate) shared_budget: bool,
    pub(crate) rng: Rng,
}

/// What a service reads on every `poll_ready`, refreshed when the generation moves.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cached {
    pub(crate) generation: u64,
    pub(crate) enabled: bool,
    pub(crate) fail_fast: bool,
    pub(crate) idle_timeout: Option<Duration>,
}

/// What happened to a connection, for the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Event {
    Connected,
    AttemptStarted,
    AttemptFailed,
    Lost,
    BudgetDenied,
    Closed,
}

#[derive(Default)]
struct Links {
    slots: Vec<Option<LinkStatus>>,
    free: Vec<usize>,
    connects: u64,
    attempts: u64,
    failed_attempts: u64,
    disconnects: u64,
    budget_denied: u64,
}

struct Metrics {
    connects: Counter,
    failed_attempts: Counter,
    disconnects: Counter,
    budget_denied: Counter,
    connected: Gauge,
}

/// One layer's state.
pub(crate) struct Shared {
    settings: Mutex<Settings>,
    generation: AtomicU64,
    links: Mutex<Links>,
    metrics: Metrics,
}

impl Shared {
    pub(crate) fn new(config: Option<ReconnectConfig>) -> Self {
        let enabled = config.is_some();
        let config = config.unwrap_or_default();
        Self {
            settings: Mutex::new(Settings {
                config,
                enabled,
                budget: config.budget.map(Budget::new),
                shared_budget: false,
                rng: Rng::default(),
            }),
            generation: AtomicU64::new(0),
            links: Mutex::new(Links::default()),
            metrics: Metrics {
                connects: Counter::register("buttress_reconnect_connects_total", &[]),
                failed_attempts: Counter::register("buttress_reconnect_failed_attempts_total", &[]),
                disconnects: Counter::register("buttress_reconnect_disconnects_total", &[]),
                budget_denied: Counter::register("buttress_reconnect_budget_denied_total", &[]),
                connected: Gauge::register("buttress_reconnect_connected", &[]),
            },
        }
    }

    pub(crate) fn set_rng(&self, rng: Rng) {
        lock(&self.settings).rng = rng;
    }

    pub(crate) fn set_budget(&self, budget: Budget) {
        let mut s = lock(&self.settings);
        s.budget = Some(budget);
        s.shared_budget = true;
    }

    /// Runs `f` with the settings (a transition: never per call).
    pub(crate) fn with_settings<R>(&self, f: impl FnOnce(&Settings) -> R) -> R {
        f(&lock(&self.settings))
    }

    /// The settings a service caches, if they changed since `generation`.
    pub(crate) fn refresh(&self, cached: &mut Cached) {
        let generation = self.generation.load(Ordering::Acquire);
        if generation != cached.generation {
            *cached = self.cached();
        }
    }

    pub(crate) fn cached(&self) -> Cached {
        let s = lock(&self.settings);
        Cached {
            generation: self.generation.load(Ordering::Acquire),
            enabled: s.enabled,
            fail_fast: s.config.fail_fast,
            idle_timeout: s.config.idle_timeout,
        }
    }

    fn reconfigure(&self, config: ReconnectConfig) {
        let mut s = lock(&self.settings);
        if !s.shared_budget {
            match (s.budget.as_ref(), config.budget) {
                (Some(b), Some(c)) => b.reconfigure(c),
                (_, c) => {
                    s.budget = c.map(Budget::new);
                }
            }
        }
        s.config = config;
        s.enabled = true;
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Registers a new connection; returns its slot.
    pub(crate) fn register(&self) -> usize {
        let mut links = lock(&self.links);
        match links.free.pop() {
            Some(i) => {
                links.slots[i] = Some(LinkStatus::default());
                i
            }
            None => {
                links.slots.push(Some(LinkStatus::default()));
                links.slots.len() - 1
            }
        }
    }

    pub(crate) fn unregister(&self, slot: usize) {
        let mut links = lock(&self.links);
        if let Some(status) = links.slots.get_mut(slot).and_then(Option::take) {
            if status.connected {
                self.metrics.connected.decrement(1.0);
            }
            links.free.push(slot);
        }
    }

    /// Records `event` and the connection's new status.
    pub(crate) fn publish(&self, slot: usize, event: Event, status: &LinkStatus) {
        let mut links = lock(&self.links);
        match event {
            Event::Connected => {
                links.connects += 1;
                self.metrics.connects.increment(1);
            }
            Event::AttemptStarted => links.attempts += 1,
            Event::AttemptFailed => {
                links.failed_attempts += 1;
                self.metrics.failed_attempts.increment(1);
            }
            Event::Lost => {
                links.disconnects += 1;
                self.metrics.disconnects.increment(1);
            }
            Event::BudgetDenied => {
                links.budget_denied += 1;
                self.metrics.budget_denied.increment(1);
            }
            Event::Closed => {}
        }
        if let Some(Some(old)) = links.slots.get_mut(slot) {
            match (old.connected, status.connected) {
                (false, true) => self.metrics.connected.increment(1.0),
                (true, false) => self.metrics.connected.decrement(1.0),
                _ => {}
            }
            *old = status.clone();
        }
    }

    fn snapshot(&self) -> ReconnectSnapshot {
        let (config, enabled, budget) = {
            let s = lock(&self.settings);
            (s.config, s.enabled, s.budget.clone())
        };
        let links = lock(&self.links);
        let live = || links.slots.iter().flatten();
        let connections = live().count();
        let connected = live().filter(|l| l.connected).count();
        // The connection down longest speaks for the layer.
        let worst = live()
            .filter(|l| l.down_since.is_some())
            .min_by_key(|l| l.down_since);
        let snapshot = ReconnectSnapshot {
            connected: connections > 0 && connected == connections,
            connections,
            connected_count: connected,
            reconnecting_since: worst.and_then(|l| l.down_since),
            attempts: live().map(|l| l.attempts).max().unwrap_or(0),
            next_attempt_at: worst.and_then(|l| l.next_attempt_at),
            last_error: worst
                .and_then(|l| l.last_error.as_deref())
                .map(|e| chain(e)),
            connects: links.connects,
            total_attempts: links.attempts,
            failed_attempts: links.failed_attempts,
            disconnects: links.disconnects,
            budget_denied: links.budget_denied,
            budget: None,
            enabled,
            config,
        };
        drop(links);
        ReconnectSnapshot {
            budget: budget.map(|b| b.snapshot(Instant::now())),
            ..snapshot
        }
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = lock(&self.settings);
        f.debug_struct("Shared")
            .field("config", &s.config)
            .field("enabled", &s.enabled)
            .finish_non_exhaustive()
    }
}

/// A connection's place in the layer's registry, given back when the service is
/// dropped.
#[derive(Debug)]
pub(crate) struct Slot {
    pub(crate) shared: Arc<Shared>,
    pub(crate) index: usize,
}

impl Slot {
    pub(crate) fn new(shared: Arc<Shared>) -> Self {
        let index = shared.register();
        Self { shared, index }
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.shared.unregister(self.index);
    }
}

/// Watches and reconfigures a reconnect layer and every service it made.
///
/// Cheap to clone. See [`ReconnectSnapshot`] for what it reports.
#[derive(Debug, Clone)]
pub struct ReconnectHandle {
    pub(crate) shared: Arc<Shared>,
}

impl ReconnectHandle {
    /// The state of the layer's connections now.
    pub fn snapshot(&self) -> ReconnectSnapshot {
        self.shared.snapshot()
    }

    /// Applies `config` from the next transition of each connection on (an outage
    /// under way keeps its backoff sequence until it ends). Turns on a pass-through
    /// layer. A budget given with
    /// [`ReconnectLayer::with_budget`](super::ReconnectLayer::with_budget) is kept
    /// (its owner configures it); otherwise the layer's own budget is reconfigured,
    /// keeping its counts, or made or removed as `config.budget` says.
    pub fn reconfigure(&self, config: ReconnectConfig) {
        self.shared.reconfigure(config);
    }
}

/// The state of a reconnect layer's connections at one instant.
///
/// A layer usually makes one service, one connection; when it made several, the
/// summary fields speak for all of them: `connected` only when every one is, and
/// the outage fields for the connection down longest.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ReconnectSnapshot {
    /// Every connection is established (and there is at least one).
    pub connected: bool,
    /// Live services made by the layer.
    pub connections: usize,
    /// How many of them are connected.
    pub connected_count: usize,
    /// When the current outage began: the connection was lost, or the first attempt
    /// failed. `None` when no connection is in an outage.
    pub reconnecting_since: Option<Instant>,
    /// Failed attempts in the current outage (the most of any connection).
    pub attempts: u32,
    /// When the next attempt is due, while waiting for it.
    pub next_attempt_at: Option<Instant>,
    /// The last error of the current outage.
    pub last_error: Option<String>,
    /// Connections established since the layer was built.
    pub connects: u64,
    /// Attempts to connect since the layer was built.
    pub total_attempts: u64,
    /// Attempts that failed since the layer was built.
    pub failed_attempts: u64,
    /// Established connections that failed since the layer was built.
    pub disconnects: u64,
    /// Attempts put off because the budget refused them.
    pub budget_denied: u64,
    /// The budget, if any.
    pub budget: Option<BudgetSnapshot>,
    /// `false` for a pass-through layer (reconnects at once, no backoff).
    pub enabled: bool,
    /// The settings in force.
    pub config: ReconnectConfig,
}
