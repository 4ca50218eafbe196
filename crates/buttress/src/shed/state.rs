//! The state a shed layer shares with every service it makes and with its handle.
//!
//! The admitted path is lock-free: a compare-and-swap on the in-flight count against
//! the threshold of the call's priority. Everything else (the limit algorithm, the
//! queue, drain) sits behind one short lock.
//!
//! How often a completed call takes that lock depends on the algorithm. The
//! window-based built-ins (gradient, Vegas) only look at a summary of each window of
//! about one round trip: completions add to an [`AtomicWindow`] and free their permit
//! without the lock, and only the one that fills the window takes it, to feed the
//! summary. A fixed limit needs no samples at all. Any other algorithm (AIMD, your
//! own) is fed every sample under the lock.
//!
//! A permit freed without the lock must still reach a waiter: the release decrements
//! the in-flight count and then reads the waiter count, and a call joining the queue
//! (under the lock) increments the waiter count and then reads the in-flight count
//! again, all sequentially consistent. One of the two sees the other: either the
//! release finds a waiter and takes the lock to grant, or the newcomer finds the
//! room and grants it there. A newcomer may only take a permit ahead of a waiter in
//! the instant the queue fills, which is harmless.

use std::fmt;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::task::Waker;

use tokio::sync::Notify;
use tokio::time::Instant;

use super::config::{ShedConfig, lane};
use super::limit::{Algo, AtomicWindow, Feed, Limit, Sample, elapsed_nanos, nanos, window_len};
use super::queue::{SlotState, WaitQueue};
use crate::Priority;
use crate::rejection::{OverloadReason, Overloaded};
use crate::telemetry::{Counter, Gauge};
use crate::util::lock;

const TARGET: &str = "buttress::shed";
const PRIORITIES: [&str; 3] = ["sheddable", "default", "critical"];

/// Why a call was refused, for counts and metrics.
#[derive(Debug, Clone, Copy)]
enum Refusal {
    /// No room under the limit nor in the queue (or displaced from it).
    Shed = 0,
    /// Left the queue at `max_wait` or its deadline.
    Expired = 1,
    /// Draining.
    Drain = 2,
}

const REFUSALS: [&str; 3] = ["shed", "expired", "drain"];

struct Inner {
    limit: Algo,
    queue: WaitQueue,
    config: ShedConfig,
}

struct Metrics {
    limit: Gauge,
    in_flight: Gauge,
    queue_depth: Gauge,
    refused: [[Counter; 3]; 3],
    observed: [Counter; 3],
}

impl Metrics {
    fn register() -> Self {
        let by_priority = |name: &'static str| {
            std::array::from_fn(|p| {
                Counter::register(name, &[("priority", PRIORITIES[p].to_owned())])
            })
        };
        Self {
            limit: Gauge::register("buttress_shed_limit", &[]),
            in_flight: Gauge::register("buttress_shed_in_flight", &[]),
            queue_depth: Gauge::register("buttress_shed_queue_depth", &[]),
            refused: std::array::from_fn(|p| {
                std::array::from_fn(|r| {
                    Counter::register(
                        "buttress_shed_rejections_total",
                        &[
                            ("priority", PRIORITIES[p].to_owned()),
                            ("reason", REFUSALS[r].to_owned()),
                        ],
                    )
                })
            }),
            observed: by_priority("buttress_shed_observed_total"),
        }
    }
}

/// Wakers collected under the lock and woken after it is released.
struct Wakers {
    list: [Option<Waker>; 8],
    len: usize,
}

impl Wakers {
    fn new() -> Self {
        Self {
            list: Default::default(),
            len: 0,
        }
    }

    fn push(&mut self, waker: Option<Waker>) {
        let Some(w) = waker else { return };
        if self.len < self.list.len() {
            self.list[self.len] = Some(w);
            self.len += 1;
        } else {
            // More than a handful at once (a big limit increase): waking under the
            // lock only schedules the task.
            w.wake();
        }
    }

    fn wake(self) {
        for w in self.list.into_iter().flatten() {
            w.wake();
        }
    }
}

/// The calls in flight, in the low half of [`Shared::in_flight`].
const IN_FLIGHT: u64 = u32::MAX as u64;
/// One sample in the current window, in the high half of [`Shared::in_flight`].
const SAMPLE: u64 = 1 << 32;

/// The in-flight count of a [`Shared::in_flight`] word.
#[inline]
fn in_flight_of(word: u64) -> usize {
    (word & IN_FLIGHT) as usize
}

/// The window's sample count of a [`Shared::in_flight`] word.
#[inline]
fn samples_of(word: u64) -> u32 {
    (word >> 32) as u32
}

pub(crate) struct Shared {
    /// Calls in flight (low 32 bits) and, above them, the samples added to `window`
    /// so far: a completion frees its permit and counts its sample in one addition.
    in_flight: AtomicU64,
    /// Waiters in the queue (not yet granted or refused).
    queued: AtomicUsize,
    /// In-flight thresholds per lane; all zero while draining, so that every call
    /// takes the slow path and is refused there.
    caps: [AtomicUsize; 3],
    limit: AtomicUsize,
    draining: AtomicBool,
    /// How the algorithm takes samples ([`Feed`] as a number), for the lock-free path.
    feed: AtomicU8,
    /// The window being filled, when the algorithm takes windows.
    window: AtomicWindow,
    inner: Mutex<Inner>,
    drained: Notify,
    refused: [[AtomicU64; 3]; 3],
    observed: [AtomicU64; 3],
    metrics: Metrics,
}

/// What the slow path decided.
pub(crate) enum Admission {
    Admitted { in_flight: usize, now: Instant },
    Queued { key: usize, until: Instant },
    Refused(Overloaded),
}

/// What a queued call found when it looked.
pub(crate) enum Wait {
    Waiting,
    Granted { in_flight: usize },
    Refused(Overloaded),
}

/// How an admitted call ended, for the limit algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Answered: a round-trip sample.
    Answered,
    /// Timed out or answered with an overload signal.
    Dropped,
    /// Says nothing about the callee (cancelled, refused by a layer below).
    Ignored,
}

impl Shared {
    pub(crate) fn new(config: ShedConfig, limit: Algo) -> Self {
        let config = config.into_normalized();
        let l = limit.limit();
        let caps = config.priority.caps(l);
        let metrics = Metrics::register();
        metrics.limit.set(l as f64);
        Self {
            in_flight: AtomicU64::new(0),
            queued: AtomicUsize::new(0),
            caps: caps.map(AtomicUsize::new),
            limit: AtomicUsize::new(l),
            draining: AtomicBool::new(false),
            feed: AtomicU8::new(limit.feed() as u8),
            window: AtomicWindow::default(),
            inner: Mutex::new(Inner {
                limit,
                queue: WaitQueue::new(
                    config.queue.size,
                    config.queue.target,
                    config.queue.interval,
                ),
                config,
            }),
            drained: Notify::new(),
            refused: Default::default(),
            observed: Default::default(),
            metrics,
        }
    }

    /// The lock-free admission: a permit if nobody waits and the call's priority has
    /// room. Returns the in-flight count including this call.
    #[inline]
    pub(crate) fn try_admit(&self, priority: Priority) -> Option<usize> {
        if self.queued.load(Ordering::Relaxed) != 0 {
            return None;
        }
        self.take_permit(lane(priority))
    }

    #[inline]
    fn take_permit(&self, lane: usize) -> Option<usize> {
        let cap = self.caps[lane].load(Ordering::Relaxed);
        let mut current = self.in_flight.load(Ordering::Relaxed);
        loop {
            let n = in_flight_of(current);
            if n >= cap {
                return None;
            }
            match self.in_flight.compare_exchange_weak(
                current,
                current + 1,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Some(n + 1),
                Err(actual) => current = actual,
            }
        }
    }

    /// Admission when the lock-free path failed: drain, observe-only, queue or refuse.
    pub(crate) fn admit(&self, priority: Priority, deadline: Option<Instant>) -> Admission {
        let lane = lane(priority);
        let mut inner = lock(&self.inner);
        let now = Instant::now();
        let retry_after = inner.config.retry_after;
        if self.draining.load(Ordering::Relaxed) {
            self.count_refusal(lane, Refusal::Drain);
            return Admission::Refused(Overloaded::new(OverloadReason::Drain, retry_after));
        }
        if !inner.queue.has_waiters_from(lane) {
            if let Some(in_flight) = self.take_permit(lane) {
                return Admission::Admitted { in_flight, now };
            }
        }
        if !inner.config.mode.enforces() {
            self.observed[lane].fetch_add(1, Ordering::Relaxed);
            self.metrics.observed[lane].increment(1);
            crate::mode::would_reject("shed", "limit");
            let in_flight = in_flight_of(self.in_flight.fetch_add(1, Ordering::AcqRel)) + 1;
            return Admission::Admitted { in_flight, now };
        }
        let refuse = |this: &Self| {
            this.count_refusal(lane, Refusal::Shed);
            tracing::trace!(target: TARGET, priority = PRIORITIES[lane], "shed");
            Admission::Refused(Overloaded::new(OverloadReason::Shed, retry_after))
        };
        let q = inner.config.queue;
        let until = now
            .checked_add(q.max_wait)
            .map_or(deadline, |u| Some(deadline.map_or(u, |d| d.min(u))));
        let Some(until) = until.filter(|&u| u > now && q.size > 0) else {
            return refuse(self);
        };
        let Some((key, displaced)) = inner.queue.push(lane, now) else {
            return refuse(self);
        };
        if let Some(d) = displaced {
            self.count_refusal(d.lane, Refusal::Shed);
            tracing::trace!(target: TARGET, priority = PRIORITIES[d.lane], "displaced from the queue");
            if let Some(w) = d.waker {
                w.wake();
            }
        } else {
            self.queued.fetch_add(1, Ordering::SeqCst);
        }
        self.metrics.queue_depth.set(inner.queue.len() as f64);
        // A permit freed without the lock since `take_permit` failed may have missed
        // the waiter count: look again (see the module docs).
        let in_flight = self.count(Ordering::SeqCst);
        let room = (0..3).any(|l| {
            in_flight < self.caps[l].load(Ordering::Relaxed) && inner.queue.has_waiters_from(l)
        });
        if room {
            self.grant_and_wake(inner, Some(now));
        }
        Admission::Queued { key, until }
    }

    /// Checks on a queued call, registering `waker` while it waits.
    pub(crate) fn poll_wait(&self, key: usize, waker: &Waker) -> Wait {
        let mut inner = lock(&self.inner);
        match inner.queue.poll(key, waker) {
            Some(SlotState::Waiting) => Wait::Waiting,
            Some(SlotState::Granted { in_flight }) => {
                inner.queue.remove(key);
                Wait::Granted { in_flight }
            }
            Some(SlotState::Refused(reason)) => {
                inner.queue.remove(key);
                Wait::Refused(Overloaded::new(reason, inner.config.retry_after))
            }
            // Already removed: cannot happen while the future owns its key.
            None => Wait::Refused(Overloaded::new(
                OverloadReason::Shed,
                inner.config.retry_after,
            )),
        }
    }

    /// A queued call's time ran out (`max_wait` or its deadline).
    pub(crate) fn expire(&self, key: usize, priority: Priority) -> Wait {
        let mut inner = lock(&self.inner);
        let retry_after = inner.config.retry_after;
        match inner.queue.remove(key) {
            Some(SlotState::Waiting) => {
                self.leave_queue(&inner);
                let lane = lane(priority);
                self.count_refusal(lane, Refusal::Expired);
                tracing::trace!(target: TARGET, priority = PRIORITIES[lane], "left the queue unserved");
                Wait::Refused(Overloaded::new(OverloadReason::Shed, retry_after))
            }
            Some(SlotState::Granted { in_flight }) => Wait::Granted { in_flight },
            Some(SlotState::Refused(reason)) => Wait::Refused(Overloaded::new(reason, retry_after)),
            None => Wait::Refused(Overloaded::new(OverloadReason::Shed, retry_after)),
        }
    }

    /// A queued call was dropped before it was served.
    pub(crate) fn abandon(&self, key: usize) {
        let mut inner = lock(&self.inner);
        match inner.queue.remove(key) {
            Some(SlotState::Waiting) => {
                self.leave_queue(&inner);
            }
            Some(SlotState::Granted { .. }) => {
                // Its permit was never used: hand it on.
                drop(inner);
                self.release(None, None);
            }
            _ => {}
        }
    }

    fn leave_queue(&self, inner: &Inner) {
        self.queued.fetch_sub(1, Ordering::AcqRel);
        self.metrics.queue_depth.set(inner.queue.len() as f64);
    }

    /// Frees one permit, feeding `sample` to the limit algorithm first, and hands
    /// permits to waiters while their priority has room.
    #[inline]
    pub(crate) fn release(&self, sample: Option<Sample>, now: Option<Instant>) {
        let feed = self.feed.load(Ordering::Relaxed);
        if feed == Feed::Samples as u8 {
            return self.release_locked(sample, now);
        }
        match sample {
            // (Not from a permit, which feeds windows without a `Sample`.)
            Some(s) if feed == Feed::Windows as u8 => self.release_sample(s, now),
            _ => {
                let before = self.in_flight.fetch_sub(1, Ordering::SeqCst);
                self.released(before, false, sample.map(|s| s.at), now);
            }
        }
    }

    #[inline(never)]
    fn release_sample(&self, s: Sample, now: Option<Instant>) {
        let rtt = (!s.dropped).then(|| nanos(s.rtt));
        self.release_windowed(rtt, s.in_flight, s.at, now);
    }

    /// [`release`](Self::release) with a sample for an algorithm fed by windows,
    /// given as [`AtomicWindow::add_parts`] takes it; `at` is when the answer came.
    #[inline]
    fn release_windowed(
        &self,
        rtt: Option<u64>,
        in_flight: usize,
        at: Instant,
        now: Option<Instant>,
    ) {
        self.window.add_parts(rtt, in_flight);
        // Frees the permit and counts the sample at once.
        let before = self.in_flight.fetch_add(SAMPLE - 1, Ordering::SeqCst);
        let len = window_len(self.limit.load(Ordering::Relaxed));
        let full = samples_of(before).saturating_add(1) >= len;
        self.released(before, full, Some(at), now);
    }

    /// The end of a lock-free release: `before` is the in-flight word before it,
    /// `full` whether the sample filled the window.
    #[inline]
    fn released(&self, before: u64, full: bool, at: Option<Instant>, now: Option<Instant>) {
        if in_flight_of(before) == 1 && self.draining.load(Ordering::SeqCst) {
            self.announce_drained();
        }
        if full || self.queued.load(Ordering::SeqCst) != 0 {
            self.settle(at, now);
        }
    }

    /// Feeds `sample` to the limit algorithm without freeing the permit: for a permit
    /// held past the response head, whose round trip is taken at the head. The permit
    /// is freed later by [`release`](Self::release) with no sample.
    pub(crate) fn record(&self, sample: Sample, now: Instant) {
        let feed = self.feed.load(Ordering::Relaxed);
        if feed == Feed::Samples as u8 {
            let mut inner = lock(&self.inner);
            inner.limit.on_sample(sample);
            self.apply_limit(&inner);
            if self.queued.load(Ordering::SeqCst) != 0 {
                // A higher limit may have room for waiters.
                self.grant_and_wake(inner, Some(now));
            }
        } else if feed == Feed::Windows as u8 {
            self.window.add(&sample);
            let before = self.in_flight.fetch_add(SAMPLE, Ordering::SeqCst);
            let len = window_len(self.limit.load(Ordering::Relaxed));
            if samples_of(before).saturating_add(1) >= len {
                self.settle(Some(sample.at), Some(now));
            }
        }
    }

    /// After a lock-free release: feeds the window if it is full, and hands permits
    /// to waiters.
    #[cold]
    #[inline(never)]
    fn settle(&self, at: Option<Instant>, now: Option<Instant>) {
        let mut inner = lock(&self.inner);
        if let Some(at) = at {
            // Whoever took the lock first closed it; the others find it refilling.
            let samples = samples_of(self.in_flight.load(Ordering::SeqCst));
            if samples >= window_len(self.limit.load(Ordering::Relaxed)) {
                let w = self.take_window(samples);
                inner.limit.on_window(w, at);
                self.apply_limit(&inner);
            }
        }
        if self.queued.load(Ordering::SeqCst) != 0 {
            self.grant_and_wake(inner, now);
        }
    }

    /// Empties the window of its `samples` (counted in `in_flight`) and summarises it.
    fn take_window(&self, samples: u32) -> super::limit::WindowSummary {
        self.in_flight
            .fetch_sub(u64::from(samples) << 32, Ordering::SeqCst);
        self.window.take(samples)
    }

    /// Whether the algorithm looks at samples at all (a fixed limit does not).
    #[inline]
    fn takes_samples(&self) -> bool {
        self.feed.load(Ordering::Relaxed) != Feed::Nothing as u8
    }

    /// The calls in flight.
    #[inline]
    fn count(&self, order: Ordering) -> usize {
        in_flight_of(self.in_flight.load(order))
    }

    /// [`release`](Self::release) for an algorithm fed every sample: under the lock.
    fn release_locked(&self, sample: Option<Sample>, now: Option<Instant>) {
        let mut inner = lock(&self.inner);
        if let Some(s) = sample {
            inner.limit.on_sample(s);
            self.apply_limit(&inner);
        }
        let before = self.in_flight.fetch_sub(1, Ordering::SeqCst);
        if in_flight_of(before) == 1 && self.draining.load(Ordering::SeqCst) {
            self.announce_drained();
        }
        if self.queued.load(Ordering::SeqCst) == 0 {
            return;
        }
        self.grant_and_wake(inner, now);
    }

    /// Hands freed permits to waiters, then wakes them once the lock is released.
    #[cold]
    #[inline(never)]
    fn grant_and_wake(&self, mut inner: std::sync::MutexGuard<'_, Inner>, now: Option<Instant>) {
        let mut wakers = Wakers::new();
        let now = now.unwrap_or_else(Instant::now);
        self.grant(&mut inner, now, &mut wakers);
        drop(inner);
        wakers.wake();
    }

    #[cold]
    fn announce_drained(&self) {
        tracing::info!(target: TARGET, "drained: nothing left in flight");
        self.drained.notify_waiters();
    }

    fn grant(&self, inner: &mut Inner, now: Instant, wakers: &mut Wakers) {
        loop {
            let in_flight = self.count(Ordering::SeqCst);
            let caps = &self.caps;
            let Some((key, _)) = inner
                .queue
                .pop_next(now, |lane| in_flight < caps[lane].load(Ordering::Relaxed))
            else {
                break;
            };
            let in_flight = in_flight_of(self.in_flight.fetch_add(1, Ordering::AcqRel)) + 1;
            self.queued.fetch_sub(1, Ordering::AcqRel);
            wakers.push(inner.queue.granted(key, in_flight));
        }
        self.metrics.queue_depth.set(inner.queue.len() as f64);
        self.metrics
            .in_flight
            .set(self.count(Ordering::Relaxed) as f64);
    }

    /// Publishes the algorithm's limit (and the thresholds derived from it).
    #[inline]
    fn apply_limit(&self, inner: &Inner) {
        let l = inner.limit.limit();
        if l != self.limit.load(Ordering::Relaxed) {
            self.limit_changed(inner, l);
        }
    }

    #[cold]
    #[inline(never)]
    fn limit_changed(&self, inner: &Inner, l: usize) {
        self.limit.store(l, Ordering::Relaxed);
        self.store_caps(inner);
        self.metrics.limit.set(l as f64);
        self.metrics
            .in_flight
            .set(self.count(Ordering::Relaxed) as f64);
        tracing::trace!(target: TARGET, limit = l, "limit changed");
    }

    fn store_caps(&self, inner: &Inner) {
        let caps = if self.draining.load(Ordering::Relaxed) {
            [0; 3]
        } else {
            inner
                .config
                .priority
                .caps(self.limit.load(Ordering::Relaxed))
        };
        for (a, c) in self.caps.iter().zip(caps) {
            a.store(c, Ordering::Relaxed);
        }
    }

    fn count_refusal(&self, lane: usize, why: Refusal) {
        self.refused[lane][why as usize].fetch_add(1, Ordering::Relaxed);
        self.metrics.refused[lane][why as usize].increment(1);
    }

    pub(crate) fn drain(&self) {
        let mut wakers = Vec::new();
        let mut inner = lock(&self.inner);
        if self.draining.swap(true, Ordering::SeqCst) {
            return;
        }
        self.store_caps(&inner);
        let mut refused = [0u64; 3];
        inner.queue.refuse_all(OverloadReason::Drain, |lane, w| {
            refused[lane] += 1;
            wakers.extend(w);
        });
        for (lane, n) in refused.into_iter().enumerate() {
            if n > 0 {
                self.refused[lane][Refusal::Drain as usize].fetch_add(n, Ordering::Relaxed);
                self.metrics.refused[lane][Refusal::Drain as usize].increment(n);
            }
        }
        self.queued.store(0, Ordering::Release);
        self.metrics.queue_depth.set(0.0);
        let in_flight = self.count(Ordering::SeqCst);
        tracing::info!(target: TARGET, in_flight, "draining: refusing new calls");
        if in_flight == 0 {
            self.drained.notify_waiters();
        }
        drop(inner);
        for w in wakers {
            w.wake();
        }
    }

    pub(crate) fn resume(&self) {
        let inner = lock(&self.inner);
        if self.draining.swap(false, Ordering::AcqRel) {
            self.store_caps(&inner);
            tracing::info!(target: TARGET, "resumed: taking new calls");
        }
    }

    pub(crate) fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }

    pub(crate) async fn drained(&self) {
        loop {
            let notified = self.drained.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.draining.load(Ordering::SeqCst) && self.count(Ordering::SeqCst) == 0 {
                return;
            }
            notified.await;
        }
    }

    pub(crate) fn reconfigure(&self, config: ShedConfig, limit: Option<Box<dyn Limit>>) {
        let config = config.into_normalized();
        let mut wakers = Wakers::new();
        let mut inner = lock(&self.inner);
        let rebuilt = match limit {
            Some(l) => Some(Algo::Sampled(l)),
            None if config.limit != inner.config.limit => {
                // Keep what the old algorithm learned about the limit (a fixed limit
                // is what the config says).
                let mut lc = config.limit;
                if lc.algorithm != super::Algorithm::Fixed {
                    lc.initial = self.limit.load(Ordering::Relaxed).clamp(lc.min, lc.max);
                }
                Some(Algo::from_config(&lc))
            }
            None => None,
        };
        if let Some(l) = rebuilt {
            // A new algorithm starts with an empty window.
            self.take_window(samples_of(self.in_flight.load(Ordering::SeqCst)));
            self.feed.store(l.feed() as u8, Ordering::Relaxed);
            inner.limit = l;
        }
        let q = config.queue;
        inner.queue.set_limits(q.size, q.target, q.interval);
        inner.config = config;
        let l = inner.limit.limit();
        self.limit.store(l, Ordering::Relaxed);
        self.metrics.limit.set(l as f64);
        self.store_caps(&inner);
        if self.queued.load(Ordering::Acquire) > 0 {
            self.grant(&mut inner, Instant::now(), &mut wakers);
        }
        drop(inner);
        wakers.wake();
        tracing::info!(target: TARGET, limit = l, "reconfigured");
    }

    pub(crate) fn snapshot(&self) -> super::ShedSnapshot {
        let inner = lock(&self.inner);
        let by = |f: &dyn Fn(usize) -> u64| super::ByPriority {
            sheddable: f(0),
            default: f(1),
            critical: f(2),
        };
        super::ShedSnapshot {
            limit: self.limit.load(Ordering::Relaxed),
            in_flight: self.count(Ordering::Relaxed),
            queue_depth: inner.queue.len(),
            lifo: inner.queue.is_lifo(),
            draining: self.is_draining(),
            shed: by(&|l| self.refused[l][Refusal::Shed as usize].load(Ordering::Relaxed)),
            expired: by(&|l| self.refused[l][Refusal::Expired as usize].load(Ordering::Relaxed)),
            drain_refused: by(&|l| {
                self.refused[l][Refusal::Drain as usize].load(Ordering::Relaxed)
            }),
            observed: by(&|l| self.observed[l].load(Ordering::Relaxed)),
        }
    }

    pub(crate) fn limit(&self) -> usize {
        self.limit.load(Ordering::Relaxed)
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.count(Ordering::Relaxed)
    }

    pub(crate) fn queue_depth(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("limit", &self.limit())
            .field("in_flight", &self.in_flight())
            .field("queued", &self.queue_depth())
            .field("draining", &self.is_draining())
            .finish_non_exhaustive()
    }
}

/// One admitted call's permit. Dropping it without [`finish`](Self::finish) (the
/// response future was dropped) frees it as a cancellation, or as a drop if the
/// request's deadline had passed: the caller timed out.
pub(crate) struct Permit {
    shared: Arc<Shared>,
    start: Instant,
    in_flight: usize,
    deadline: Option<Instant>,
    armed: bool,
}

impl Permit {
    pub(crate) fn new(
        shared: Arc<Shared>,
        start: Instant,
        in_flight: usize,
        deadline: Option<Instant>,
    ) -> Self {
        Self {
            shared,
            start,
            in_flight,
            deadline,
            armed: true,
        }
    }

    /// Ends the call: one clock read for the round trip.
    #[inline]
    pub(crate) fn finish(mut self, outcome: Outcome) {
        self.armed = false;
        let now = Instant::now();
        self.free(outcome, now);
    }

    /// Ends the call's round trip but keeps its place in flight: the sample is
    /// recorded now, and the returned guard frees the permit when it is dropped.
    pub(crate) fn finish_held(mut self, outcome: Outcome) -> InFlight {
        self.armed = false;
        let now = Instant::now();
        if let Some(sample) = self.sample(outcome, now) {
            self.shared.record(sample, now);
        }
        InFlight {
            shared: self.shared.clone(),
        }
    }

    #[inline]
    fn sample(&self, outcome: Outcome, now: Instant) -> Option<Sample> {
        let sample = |dropped| Sample {
            rtt: now.saturating_duration_since(self.start),
            in_flight: self.in_flight,
            dropped,
            at: now,
        };
        // A fixed limit takes no samples: spare it the round trip's arithmetic.
        match outcome {
            _ if !self.shared.takes_samples() => None,
            Outcome::Answered => Some(sample(false)),
            Outcome::Dropped => Some(sample(true)),
            Outcome::Ignored => None,
        }
    }

    #[inline]
    fn free(&self, outcome: Outcome, now: Instant) {
        let shared = &*self.shared;
        if shared.feed.load(Ordering::Relaxed) == Feed::Windows as u8 {
            // The common case, spared the `Sample`: the window only wants the round
            // trip in nanoseconds.
            let rtt = match outcome {
                Outcome::Answered => Some(elapsed_nanos(now, self.start)),
                Outcome::Dropped => None,
                Outcome::Ignored => return shared.release(None, Some(now)),
            };
            return shared.release_windowed(rtt, self.in_flight, now, Some(now));
        }
        shared.release(self.sample(outcome, now), Some(now));
    }
}

/// An answered call's place in flight, held past the response head (a streamed body):
/// its round trip is already recorded; dropping it frees the permit, once, and
/// announces the drain's end if it was the last.
pub(crate) struct InFlight {
    shared: Arc<Shared>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.shared.release(None, None);
    }
}

impl fmt::Debug for InFlight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InFlight").finish_non_exhaustive()
    }
}

impl Drop for Permit {
    #[inline]
    fn drop(&mut self) {
        if self.armed {
            self.cancel();
        }
    }
}

impl Permit {
    /// Dropped unfinished: a cancellation, or a drop once the deadline has passed.
    #[cold]
    #[inline(never)]
    fn cancel(&self) {
        let Some(deadline) = self.deadline else {
            self.shared.release(None, None);
            return;
        };
        let now = Instant::now();
        let outcome = if now >= deadline {
            Outcome::Dropped
        } else {
            Outcome::Ignored
        };
        self.free(outcome, now);
    }
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit")
            .field("in_flight", &self.in_flight)
            .finish_non_exhaustive()
    }
}

/// A queued call's place. Dropping it leaves the queue (or hands on a permit granted
/// but never used).
pub(crate) struct Place {
    pub(crate) shared: Arc<Shared>,
    pub(crate) key: usize,
    armed: bool,
}

impl Place {
    pub(crate) fn new(shared: Arc<Shared>, key: usize) -> Self {
        Self {
            shared,
            key,
            armed: true,
        }
    }

    /// The place was given up through [`Shared::poll_wait`] or [`Shared::expire`].
    pub(crate) fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for Place {
    fn drop(&mut self) {
        if self.armed {
            self.shared.abandon(self.key);
        }
    }
}

impl fmt::Debug for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Place")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}
