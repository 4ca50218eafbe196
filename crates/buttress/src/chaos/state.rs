//! The state a chaos layer shares with every service it makes and with its handle.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering, fence};
use std::sync::{Arc, Mutex};

use super::config::ChaosConfig;
use super::decide::{Decision, Thresholds};
use crate::rand::Rng;
use crate::telemetry::Counter;
use crate::util::lock;

const TARGET: &str = "buttress::chaos";

/// The thresholds behind a sequence lock: a call reads a whole configuration (never
/// half of an old one and half of a new one) with a few plain loads and no write to
/// shared memory, while `reconfigure` stays atomic. Aligned to cache lines of its
/// own, so the counters written on every call do not evict it from readers' caches.
#[repr(align(128))]
struct Published {
    /// Even while the thresholds are stable, odd while a writer is changing them.
    seq: AtomicU64,
    enabled: AtomicBool,
    error: AtomicU64,
    abort_end: AtomicU64,
    latency: AtomicU64,
    min_nanos: AtomicU64,
    span_nanos: AtomicU64,
}

impl Published {
    fn new(t: Thresholds) -> Self {
        Self {
            seq: AtomicU64::new(0),
            enabled: AtomicBool::new(t.enabled),
            error: AtomicU64::new(t.error),
            abort_end: AtomicU64::new(t.abort_end),
            latency: AtomicU64::new(t.latency),
            min_nanos: AtomicU64::new(t.min_nanos),
            span_nanos: AtomicU64::new(t.span_nanos),
        }
    }

    fn read(&self) -> Thresholds {
        Thresholds {
            enabled: self.enabled.load(Ordering::Relaxed),
            error: self.error.load(Ordering::Relaxed),
            abort_end: self.abort_end.load(Ordering::Relaxed),
            latency: self.latency.load(Ordering::Relaxed),
            min_nanos: self.min_nanos.load(Ordering::Relaxed),
            span_nanos: self.span_nanos.load(Ordering::Relaxed),
        }
    }

    /// The thresholds, unless a writer was at work meanwhile.
    fn try_load(&self) -> Option<Thresholds> {
        let seq = self.seq.load(Ordering::Acquire);
        if seq & 1 == 1 {
            return None;
        }
        let t = self.read();
        // Orders the loads above before the re-check: if any of them saw a writer's
        // store, the re-check sees that writer's odd sequence number (or a later one).
        fence(Ordering::Acquire);
        (self.seq.load(Ordering::Relaxed) == seq).then_some(t)
    }

    /// Publishes `t`. Writers must not overlap (the caller holds the config lock).
    fn store(&self, t: Thresholds) {
        let seq = self.seq.load(Ordering::Relaxed);
        self.seq.store(seq.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::Release);
        self.enabled.store(t.enabled, Ordering::Relaxed);
        self.error.store(t.error, Ordering::Relaxed);
        self.abort_end.store(t.abort_end, Ordering::Relaxed);
        self.latency.store(t.latency, Ordering::Relaxed);
        self.min_nanos.store(t.min_nanos, Ordering::Relaxed);
        self.span_nanos.store(t.span_nanos, Ordering::Relaxed);
        self.seq.store(seq.wrapping_add(2), Ordering::Release);
    }
}

/// One layer's state: the published thresholds, the random stream and the counts.
pub(crate) struct Shared {
    published: Published,
    /// The applied config. Writers hold this lock for the whole update; a reader
    /// that catches one mid-update waits on it instead of spinning.
    config: Mutex<ChaosConfig>,
    rng: Rng,
    calls: AtomicU64,
    delayed: AtomicU64,
    errors: AtomicU64,
    aborts: AtomicU64,
    injected_latency: Counter,
    injected_error: Counter,
    injected_abort: Counter,
}

impl Shared {
    pub(crate) fn new(config: ChaosConfig, rng: Rng) -> Self {
        let config = config.normalized();
        let published = Published::new(Thresholds::new(&config));
        let injected = |kind: &str| {
            Counter::register(
                "buttress_chaos_injected_total",
                &[("kind", kind.to_owned())],
            )
        };
        Self {
            published,
            config: Mutex::new(config),
            rng,
            calls: AtomicU64::new(0),
            delayed: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            aborts: AtomicU64::new(0),
            injected_latency: injected("latency"),
            injected_error: injected("error"),
            injected_abort: injected("abort"),
        }
    }

    /// Decides one call and counts what it injects.
    #[inline]
    pub(crate) fn decide(&self) -> Decision {
        // Switched off: one load, no draw, no count.
        if !self.published.enabled.load(Ordering::Relaxed) {
            return Decision::Pass;
        }
        let t = self.load();
        if !t.enabled {
            return Decision::Pass;
        }
        self.calls.fetch_add(1, Ordering::Relaxed);
        let decision = t.decide(&self.rng);
        match decision {
            Decision::Pass => {}
            Decision::Error => {
                self.errors.fetch_add(1, Ordering::Relaxed);
                self.injected_error.increment(1);
                tracing::debug!(target: TARGET, kind = "error", "injecting a fault");
            }
            Decision::Abort => {
                self.aborts.fetch_add(1, Ordering::Relaxed);
                self.injected_abort.increment(1);
                tracing::debug!(target: TARGET, kind = "abort", "aborting the call mid-request");
            }
            Decision::Delay(delay) => {
                self.delayed.fetch_add(1, Ordering::Relaxed);
                self.injected_latency.increment(1);
                tracing::debug!(target: TARGET, kind = "latency", ?delay, "delaying the call");
            }
        }
        decision
    }

    /// The current thresholds, all from one configuration.
    fn load(&self) -> Thresholds {
        self.published.try_load().unwrap_or_else(|| {
            // A writer is (or was just) at work: once it lets go of the lock, its
            // stores are all visible.
            let _writer_done = lock(&self.config);
            self.published.read()
        })
    }

    /// Applies `update` to the config and publishes the new thresholds.
    fn update(&self, update: impl FnOnce(&mut ChaosConfig)) -> ChaosConfig {
        let mut config = lock(&self.config);
        update(&mut config);
        *config = config.clone().normalized();
        self.published.store(Thresholds::new(&config));
        config.clone()
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("config", &*lock(&self.config))
            .field("calls", &self.calls.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// Switches fault injection on and off, changes its rates at run time and reports
/// what it injected. Cheap to clone; every clone controls the same layer.
#[derive(Clone)]
pub struct ChaosHandle {
    shared: Arc<Shared>,
}

impl ChaosHandle {
    pub(crate) const fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// Starts injecting faults (from the next call on).
    pub fn enable(&self) {
        self.set_enabled(true);
    }

    /// Stops injecting faults: every following call passes through untouched.
    pub fn disable(&self) {
        self.set_enabled(false);
    }

    /// Switches fault injection on or off.
    pub fn set_enabled(&self, enabled: bool) {
        self.shared.update(|c| c.enabled = enabled);
        tracing::info!(target: TARGET, enabled, "fault injection switched");
    }

    /// Replaces the rates, latency and on/off switch at once: every call after this
    /// returns sees the whole new config, no call sees a mix of old and new. The
    /// random stream (and so the `seed`) is the layer's own and is kept.
    pub fn reconfigure(&self, config: ChaosConfig) {
        let applied = self.shared.update(|c| {
            let seed = c.seed;
            *c = config;
            c.seed = seed;
        });
        tracing::info!(target: TARGET, config = ?applied, "fault injection reconfigured");
    }

    /// The config in force, as applied (see [`ChaosConfig::normalized`]).
    pub fn config(&self) -> ChaosConfig {
        lock(&self.shared.config).clone()
    }

    /// Counts of what the layer has injected so far.
    pub fn snapshot(&self) -> ChaosSnapshot {
        let s = &self.shared;
        ChaosSnapshot {
            calls: s.calls.load(Ordering::Relaxed),
            delayed: s.delayed.load(Ordering::Relaxed),
            errors: s.errors.load(Ordering::Relaxed),
            aborts: s.aborts.load(Ordering::Relaxed),
            enabled: s.published.enabled.load(Ordering::Relaxed),
        }
    }
}

impl fmt::Debug for ChaosHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ChaosHandle")
            .field("snapshot", &self.snapshot())
            .finish()
    }
}

/// What a chaos layer has done since it was built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct ChaosSnapshot {
    /// Calls made while fault injection was on (calls made while it is off are not
    /// looked at, so not counted).
    pub calls: u64,
    /// Calls delayed.
    pub delayed: u64,
    /// Calls answered with the fault, without calling the inner service.
    pub errors: u64,
    /// Calls cut off mid-request.
    pub aborts: u64,
    /// Whether fault injection is on.
    pub enabled: bool,
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;
    use std::time::Duration;

    use super::*;
    use crate::chaos::LatencyConfig;

    #[test]
    fn reconfigure_is_never_seen_half_done() {
        // Every call under either config is injected; a torn read (the error
        // threshold of the second, the latency of the first) would pass one through.
        let errors = ChaosConfig::default().with_error_rate(1.0);
        let delays =
            ChaosConfig::default().with_latency(LatencyConfig::fixed(Duration::from_millis(1)));
        let shared = Arc::new(Shared::new(errors.clone(), Rng::seeded(1)));
        let handle = ChaosHandle::new(shared.clone());
        let stop = Arc::new(AtomicBool::new(false));
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let (shared, stop) = (shared.clone(), stop.clone());
                std::thread::spawn(move || {
                    let mut seen = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        assert_ne!(shared.decide(), Decision::Pass, "torn read");
                        seen += 1;
                    }
                    seen
                })
            })
            .collect();
        // Flip until the readers have seen plenty of both (the threads may start late).
        let mut flips = 0u64;
        while {
            let s = handle.snapshot();
            s.errors < 10_000 || s.delayed < 10_000
        } {
            handle.reconfigure(if flips % 2 == 0 {
                delays.clone()
            } else {
                errors.clone()
            });
            flips += 1;
            assert!(flips < 50_000_000, "readers made no progress");
            if readers.iter().any(|r| r.is_finished()) {
                break; // a reader failed: its panic is raised by `join` below
            }
        }
        stop.store(true, Ordering::Relaxed);
        for r in readers {
            assert!(r.join().unwrap() > 0);
        }
        let s = handle.snapshot();
        assert_eq!(s.calls, s.errors + s.delayed);
    }

    #[test]
    fn switching_keeps_the_rates_and_the_seed() {
        let config = ChaosConfig::default().with_abort_rate(0.5).with_seed(9);
        let handle = ChaosHandle::new(Arc::new(Shared::new(config.clone(), Rng::seeded(9))));
        handle.disable();
        assert_eq!(handle.shared.decide(), Decision::Pass);
        assert_eq!(handle.snapshot(), ChaosSnapshot::default());
        assert_eq!(handle.config(), config.clone().with_enabled(false));
        handle.enable();
        assert_eq!(handle.config(), config);
        assert!(handle.snapshot().enabled);
        handle.reconfigure(ChaosConfig::default().with_error_rate(2.0).with_seed(1));
        assert_eq!(
            handle.config(),
            ChaosConfig::default().with_error_rate(1.0).with_seed(9)
        );
        assert_eq!(handle.shared.decide(), Decision::Error);
    }
}
