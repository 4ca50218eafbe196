//! The state a throttle layer shares with every service it makes and its handle:
//! one window for unkeyed calls, and a bounded map of windows per key.

use std::any::Any;
use std::fmt;
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::time::Instant;

use super::config::ThrottleConfig;
use super::window::Window;
use crate::keyed::{KeyedConfig, KeyedMap};
use crate::rand::{Random, Rng};
use crate::rejection::{OverloadReason, Overloaded};
use crate::telemetry::Counter;
use crate::util::lock;

const TARGET: &str = "buttress::throttle";

/// One key's window.
pub(crate) struct Partition {
    window: Mutex<Window>,
}

impl Partition {
    fn new(window: Duration) -> Self {
        Self {
            window: Mutex::new(Window::new(window)),
        }
    }

    /// The window, rebuilt empty if the configured span changed.
    fn lock(&self, span: Duration) -> std::sync::MutexGuard<'_, Window> {
        let mut w = lock(&self.window);
        if w.span() != Window::span_for(span) {
            *w = Window::new(span);
        }
        w
    }
}

/// The keyed map with its key type erased: the layer learns the key type at the
/// first keyed call.
trait ErasedMap: Send + Sync {
    fn as_any(&self) -> &dyn Any;
    fn len(&self) -> usize;
}

impl<K: Hash + Eq + Send + Sync + 'static> ErasedMap for KeyedMap<K, Partition> {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn len(&self) -> usize {
        KeyedMap::len(self)
    }
}

pub(crate) struct Shared {
    k: AtomicU64,
    max_rejection: AtomicU64,
    window: AtomicU64,
    retry_after: AtomicU64,
    observe: AtomicBool,
    keys: KeyedConfig,
    global: Arc<Partition>,
    keyed: OnceLock<Box<dyn ErasedMap>>,
    rng: Rng,
    requests: AtomicU64,
    throttled: AtomicU64,
    observed: AtomicU64,
    overloads: AtomicU64,
    m_requests: Counter,
    m_throttled: Counter,
    m_observed: Counter,
    m_overloads: Counter,
}

/// What [`Shared::decide`] said about a call.
pub(crate) enum Decision {
    /// Send it; its request was counted at `epoch`.
    Send { epoch: u64 },
    /// Refuse it locally.
    Refuse(Overloaded),
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Shared {
    pub(crate) fn new(config: ThrottleConfig, rng: Rng) -> Self {
        let c = config.normalized();
        let counter = |name| Counter::register(name, &[]);
        Self {
            k: AtomicU64::new(c.k.to_bits()),
            max_rejection: AtomicU64::new(c.max_rejection.to_bits()),
            window: AtomicU64::new(nanos(c.window)),
            retry_after: AtomicU64::new(nanos(c.retry_after)),
            observe: AtomicBool::new(!c.mode.enforces()),
            keys: c.keys,
            global: Arc::new(Partition::new(c.window)),
            keyed: OnceLock::new(),
            rng,
            requests: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
            observed: AtomicU64::new(0),
            overloads: AtomicU64::new(0),
            m_requests: counter("buttress_throttle_requests_total"),
            m_throttled: counter("buttress_throttle_rejections_total"),
            m_observed: counter("buttress_throttle_observed_total"),
            m_overloads: counter("buttress_throttle_overload_answers_total"),
        }
    }

    fn span(&self) -> Duration {
        Duration::from_nanos(self.window.load(Ordering::Relaxed))
    }

    pub(crate) fn global(&self) -> &Arc<Partition> {
        &self.global
    }

    /// The partition of `key`, made at its first use (the shared overflow partition
    /// once the map is full).
    pub(crate) fn partition<K: Hash + Eq + Clone + Send + Sync + 'static>(
        &self,
        key: &K,
        now: Instant,
    ) -> Arc<Partition> {
        let span = self.span();
        let map = self.keyed.get_or_init(|| {
            Box::new(KeyedMap::<K, Partition>::new(
                self.keys,
                Partition::new(span),
            ))
        });
        match map.as_any().downcast_ref::<KeyedMap<K, Partition>>() {
            Some(map) => map.get_or_insert_with(key, now, || Partition::new(span)),
            // The same layer used with a second key type: those calls share the
            // unkeyed window.
            None => self.global.clone(),
        }
    }

    /// Counts the call in `part`'s window and decides whether to send it.
    pub(crate) fn decide(&self, part: &Partition, now: Instant) -> Decision {
        let k = f64::from_bits(self.k.load(Ordering::Relaxed));
        let max = f64::from_bits(self.max_rejection.load(Ordering::Relaxed));
        let (epoch, p) = {
            let mut w = part.lock(self.span());
            let epoch = w.advance(now);
            let p = w.rejection_probability(k, max);
            w.request(epoch);
            (epoch, p)
        };
        self.requests.fetch_add(1, Ordering::Relaxed);
        self.m_requests.increment(1);
        if p <= 0.0 || !self.rng.chance(p) {
            return Decision::Send { epoch };
        }
        if self.observe.load(Ordering::Relaxed) {
            self.observed.fetch_add(1, Ordering::Relaxed);
            self.m_observed.increment(1);
            crate::mode::would_reject("throttle", "probability");
            return Decision::Send { epoch };
        }
        self.throttled.fetch_add(1, Ordering::Relaxed);
        self.m_throttled.increment(1);
        tracing::trace!(target: TARGET, probability = p, "throttled locally");
        let retry_after = Duration::from_nanos(self.retry_after.load(Ordering::Relaxed));
        Decision::Refuse(Overloaded::new(OverloadReason::Throttle, retry_after))
    }

    /// The upstream accepted the call made at `epoch`.
    pub(crate) fn accepted(&self, part: &Partition, epoch: u64) {
        part.lock(self.span()).accept(epoch);
    }

    /// The upstream answered the call made at `epoch` with an overload signal.
    pub(crate) fn overloaded(&self) {
        self.overloads.fetch_add(1, Ordering::Relaxed);
        self.m_overloads.increment(1);
    }

    /// The call made at `epoch` says nothing about the upstream (cancelled, or refused
    /// by a layer below for its own reasons): it is not counted.
    pub(crate) fn forget(&self, part: &Partition, epoch: u64) {
        part.lock(self.span()).forget(epoch);
    }

    pub(crate) fn reconfigure(&self, config: ThrottleConfig) {
        let c = config.normalized();
        self.k.store(c.k.to_bits(), Ordering::Relaxed);
        self.max_rejection
            .store(c.max_rejection.to_bits(), Ordering::Relaxed);
        self.window.store(nanos(c.window), Ordering::Relaxed);
        self.retry_after
            .store(nanos(c.retry_after), Ordering::Relaxed);
        self.observe.store(!c.mode.enforces(), Ordering::Relaxed);
        tracing::info!(target: TARGET, k = c.k, window = ?c.window, "reconfigured");
    }

    pub(crate) fn snapshot(&self) -> super::ThrottleSnapshot {
        let k = f64::from_bits(self.k.load(Ordering::Relaxed));
        let max = f64::from_bits(self.max_rejection.load(Ordering::Relaxed));
        let (window_requests, window_accepts, probability) = {
            let mut w = self.global.lock(self.span());
            w.advance(Instant::now());
            (w.requests(), w.accepts(), w.rejection_probability(k, max))
        };
        super::ThrottleSnapshot {
            requests: self.requests.load(Ordering::Relaxed),
            throttled: self.throttled.load(Ordering::Relaxed),
            observed: self.observed.load(Ordering::Relaxed),
            overload_answers: self.overloads.load(Ordering::Relaxed),
            keys: self.keyed.get().map_or(0, |m| m.len()),
            window_requests,
            window_accepts,
            rejection_probability: probability,
        }
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("k", &f64::from_bits(self.k.load(Ordering::Relaxed)))
            .field("window", &self.span())
            .field("requests", &self.requests.load(Ordering::Relaxed))
            .field("throttled", &self.throttled.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for Partition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Partition").finish_non_exhaustive()
    }
}

/// A sent call's place in its window. Dropped before the answer (the caller went
/// away), the request is forgotten.
pub(crate) struct Record {
    shared: Arc<Shared>,
    part: Arc<Partition>,
    epoch: u64,
    armed: bool,
}

/// How a sent call ended, for the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Accepted,
    Overloaded,
    Forgotten,
}

impl Record {
    pub(crate) fn new(shared: Arc<Shared>, part: Arc<Partition>, epoch: u64) -> Self {
        Self {
            shared,
            part,
            epoch,
            armed: true,
        }
    }

    pub(crate) fn finish(mut self, outcome: Outcome) {
        self.armed = false;
        match outcome {
            Outcome::Accepted => self.shared.accepted(&self.part, self.epoch),
            Outcome::Overloaded => self.shared.overloaded(),
            Outcome::Forgotten => self.shared.forget(&self.part, self.epoch),
        }
    }
}

impl Drop for Record {
    fn drop(&mut self) {
        if self.armed {
            self.shared.forget(&self.part, self.epoch);
        }
    }
}

impl fmt::Debug for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Record")
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}
