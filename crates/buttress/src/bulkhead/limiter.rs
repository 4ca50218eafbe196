//! One partition of a bulkhead: a count of running calls and a FIFO queue of waiters.
//!
//! Plain logic, no `Service`: the service takes a [`Permit`] or a [`Ticket`] from a
//! [`Limiter`] and keeps it in its response future, so dropping the future releases
//! whatever it held.
//!
//! # How the permit count stays race-free
//!
//! `state` is one word: the number of permits held (running calls, including waiters
//! granted a permit but not yet polled) in the low bits, and a `QUEUED` bit, set while
//! the queue is not empty. The queue and everything else live under `queue`'s mutex.
//!
//! Invariants:
//!
//! 1. `QUEUED` is set exactly when the queue is not empty, as seen by anyone holding
//!    the lock. It is only changed under the lock: set by the enqueue that makes the
//!    queue non-empty, cleared by whoever empties it.
//! 2. The count goes up in two ways only: (a) a compare-and-swap from a value `s`
//!    with `s < max` (so `QUEUED` is clear, since `max <= RUNNING < QUEUED`), on the
//!    fast path or under the lock; (b) under the lock, while `QUEUED` is set, to grant
//!    the head of the queue a permit after checking `running < max`.
//! 3. The count goes down by [`Limiter::release`] (a lock-free `fetch_sub`, taking the
//!    lock afterwards only if the value it replaced had `QUEUED` set) and by
//!    [`Limiter::abandon`] (under the lock).
//!
//! What follows:
//!
//! - **At most `max` run.** (a) checks and increments in one atomic step. (b) checks
//!   under the lock while `QUEUED` is set: no (a) can succeed then (every value carries
//!   the bit, which exceeds any `max`) and every other (b) needs the lock, so between
//!   the check and the increment the count can only go down. A resize that shrinks
//!   `max` below the count lets the calls already running finish; no new permit is
//!   handed out until the count is below the new `max`.
//! - **No overtaking.** While anyone waits, `QUEUED` is set, so every fast-path
//!   attempt fails and the newcomer takes the lock, sees the bit and queues at the
//!   back. A freed permit is handed straight to the head of the queue under the lock;
//!   it is never up for grabs.
//! - **No lost wake-up.** An enqueuer raises `QUEUED` by a compare-and-swap from a
//!   value showing no free permit, while holding the lock, and pushes itself before
//!   unlocking. Every read-modify-write of `state` is totally ordered. A release
//!   ordered before that compare-and-swap changed the value it expected, so the
//!   enqueuer fails, re-reads, and takes the freed permit itself instead of queueing. A
//!   release ordered after it sees `QUEUED` and then takes the lock, which it can only
//!   get once the enqueuer has pushed and unlocked; it then grants the head. When
//!   `QUEUED` was already set, the waiters ahead are in the same position and every
//!   later release grants heads while permits are free. A waiter that leaves never
//!   takes a permit with it: if it had been granted one, it hands it on under the
//!   lock ([`Limiter::abandon`]).
//! - A resize or reconfigure stores the new `max` under the lock and then grants as
//!   many heads as now fit, so growing wakes queued callers at once.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::time::Instant;

use crate::BoxError;
use crate::Deadline;
use crate::rejection::{BulkheadFull, Cause, Elapsed, Scope};
use crate::telemetry::{Counter, Gauge};
use crate::util::lock;

/// Set in `state` while the queue is not empty.
const QUEUED: usize = 1 << (usize::BITS - 1);
/// The permit count's bits in `state`, and the largest `max` a partition accepts.
const RUNNING: usize = !QUEUED;

/// Why a call was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    /// No permit and no queue place.
    Full,
    /// Waited `max_wait` in the queue.
    QueueTimeout,
    /// The request's deadline passed before it got a permit.
    Deadline,
}

impl Reason {
    pub(crate) const fn as_str(self) -> &'static str {
        match self {
            Reason::Full => "full",
            Reason::QueueTimeout => "queue_timeout",
            Reason::Deadline => "deadline",
        }
    }

    pub(crate) fn into_error(self) -> BoxError {
        match self {
            Reason::Full => Box::new(BulkheadFull::full()),
            Reason::QueueTimeout => Box::new(BulkheadFull::queue_timeout()),
            Reason::Deadline => Box::new(Elapsed::new(Scope::Total, Cause::Deadline)),
        }
    }
}

/// The limits one partition enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    pub(crate) max_concurrent: usize,
    pub(crate) queue_size: usize,
    pub(crate) max_wait: Duration,
    pub(crate) observe: bool,
}

/// Counts shared by every partition of one layer: what the handle reports and the
/// rejection counters.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    rejected: AtomicU64,
    would_reject: AtomicU64,
    full: Counter,
    queue_timeout: Counter,
    deadline: Counter,
    would_reject_total: Counter,
}

impl Stats {
    /// Counters registered with the `metrics` recorder (no-ops without the feature).
    pub(crate) fn registered() -> Self {
        let reason = |r: Reason| [("reason", r.as_str().to_owned())];
        Self {
            rejected: AtomicU64::new(0),
            would_reject: AtomicU64::new(0),
            full: Counter::register("buttress_bulkhead_rejections_total", &reason(Reason::Full)),
            queue_timeout: Counter::register(
                "buttress_bulkhead_rejections_total",
                &reason(Reason::QueueTimeout),
            ),
            deadline: Counter::register(
                "buttress_bulkhead_rejections_total",
                &reason(Reason::Deadline),
            ),
            would_reject_total: Counter::register(
                "buttress_bulkhead_would_reject_total",
                &reason(Reason::Full),
            ),
        }
    }

    fn reject(&self, reason: Reason) {
        self.rejected.fetch_add(1, Ordering::Relaxed);
        match reason {
            Reason::Full => self.full.increment(1),
            Reason::QueueTimeout => self.queue_timeout.increment(1),
            Reason::Deadline => self.deadline.increment(1),
        }
        tracing::debug!(target: "buttress::bulkhead", reason = reason.as_str(), "bulkhead rejected a call");
    }

    fn would_reject(&self) {
        self.would_reject.fetch_add(1, Ordering::Relaxed);
        self.would_reject_total.increment(1);
        crate::mode::would_reject("bulkhead", Reason::Full.as_str());
    }

    pub(crate) fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }

    pub(crate) fn would_rejected(&self) -> u64 {
        self.would_reject.load(Ordering::Relaxed)
    }
}

/// The gauges a partition adds its running and queued calls to.
#[derive(Debug, Clone, Default)]
pub(crate) struct Gauges {
    running: Gauge,
    queued: Gauge,
}

impl Gauges {
    /// Gauges labelled with the kind of partition (several partitions of one kind add
    /// to the same gauges).
    pub(crate) fn registered(partition: &'static str) -> Self {
        let labels = [("partition", partition.to_owned())];
        Self {
            running: Gauge::register("buttress_bulkhead_running", &labels),
            queued: Gauge::register("buttress_bulkhead_queued", &labels),
        }
    }
}

/// What the slow path decided.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    /// A permit was taken: run now.
    Permit,
    /// Queued as waiter `id`; give up at `at` (if any) for `reason`.
    Queued {
        id: u64,
        at: Option<Instant>,
        reason: Reason,
    },
    /// Observe mode: no permit, but the call stands in for a queue place while it runs.
    Shadow,
    /// Observe mode: would have been refused; runs without counting.
    WouldReject,
    /// Refused.
    Rejected(Reason),
}

#[derive(Debug)]
struct Waiter {
    id: u64,
    waker: Option<Waker>,
}

#[derive(Debug)]
struct Queue {
    /// Waiting callers, oldest first; ids increase from front to back.
    waiters: VecDeque<Waiter>,
    next_id: u64,
    size: usize,
    max_wait: Duration,
    observe: bool,
    /// Observe mode: calls let through over the limit, standing in for queue places.
    shadow: usize,
}

impl Queue {
    fn position(&self, id: u64) -> Option<usize> {
        self.waiters.binary_search_by_key(&id, |w| w.id).ok()
    }

    /// Whether calls may wait at all: a queue of size zero, or one where nobody may
    /// wait any time, refuses at once.
    fn enabled(&self) -> bool {
        self.size > 0 && !self.max_wait.is_zero()
    }
}

/// Wakers collected under the lock and woken after it is released, so a waker that
/// polls in place cannot deadlock on the lock.
struct WakeBatch {
    wakers: [Option<Waker>; WakeBatch::CAPACITY],
    len: usize,
}

impl WakeBatch {
    const CAPACITY: usize = 16;

    fn new() -> Self {
        Self {
            wakers: [const { None }; Self::CAPACITY],
            len: 0,
        }
    }

    fn is_full(&self) -> bool {
        self.len == Self::CAPACITY
    }

    fn push(&mut self, waker: Waker) {
        self.wakers[self.len] = Some(waker);
        self.len += 1;
    }

    fn wake_all(&mut self) {
        for w in &mut self.wakers[..self.len] {
            if let Some(w) = w.take() {
                w.wake();
            }
        }
        self.len = 0;
    }
}

/// One partition's permits and queue; see the [module docs](self).
pub(crate) struct Limiter {
    /// Permits held, plus the `QUEUED` bit.
    state: AtomicUsize,
    max: AtomicUsize,
    /// The queue's length, for snapshots without the lock.
    queued: AtomicUsize,
    queue: Mutex<Queue>,
    stats: Arc<Stats>,
    gauges: Gauges,
}

impl Limiter {
    pub(crate) fn new(limits: &Limits, stats: Arc<Stats>, gauges: Gauges) -> Self {
        Self {
            state: AtomicUsize::new(0),
            max: AtomicUsize::new(limits.max_concurrent.min(RUNNING)),
            queued: AtomicUsize::new(0),
            queue: Mutex::new(Queue {
                waiters: VecDeque::new(),
                next_id: 0,
                size: limits.queue_size,
                max_wait: limits.max_wait,
                observe: limits.observe,
                shadow: 0,
            }),
            stats,
            gauges,
        }
    }

    /// Takes a permit if one is free and nobody is queued: one compare-and-swap, no
    /// lock, no clock.
    #[inline]
    pub(crate) fn try_acquire(&self) -> bool {
        let max = self.max.load(Ordering::Relaxed);
        let mut s = self.state.load(Ordering::Relaxed);
        // With `QUEUED` set, `s` exceeds any `max`: one comparison refuses both a full
        // partition and one whose queue must not be overtaken.
        while s < max {
            match self
                .state
                .compare_exchange_weak(s, s + 1, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => {
                    self.gauges.running.increment(1.0);
                    return true;
                }
                Err(actual) => s = actual,
            }
        }
        false
    }

    /// The slow path, after [`try_acquire`](Self::try_acquire) failed: under the lock,
    /// takes a permit freed meanwhile, or queues, or refuses (observe mode lets the
    /// call through instead).
    pub(crate) fn acquire_slow(&self, deadline: Option<Deadline>) -> Admission {
        let mut q = lock(&self.queue);
        let max = self.max.load(Ordering::Relaxed);
        let mut s = self.state.load(Ordering::Relaxed);
        while s < max {
            // A permit was freed since the fast path looked, and nobody is queued.
            match self
                .state
                .compare_exchange(s, s + 1, Ordering::Acquire, Ordering::Relaxed)
            {
                Ok(_) => {
                    self.gauges.running.increment(1.0);
                    return Admission::Permit;
                }
                Err(actual) => s = actual,
            }
        }
        if q.observe {
            // Never queue in observe mode: calls over the limit run at once, and stand
            // in for the queue places they would have taken, so a would-reject is
            // counted when the queue would have been full too.
            if q.enabled() && q.shadow < q.size {
                q.shadow += 1;
                return Admission::Shadow;
            }
            drop(q);
            self.stats.would_reject();
            return Admission::WouldReject;
        }
        if !q.enabled() || q.waiters.len() >= q.size {
            drop(q);
            self.stats.reject(Reason::Full);
            return Admission::Rejected(Reason::Full);
        }
        // Only the queued path reads the clock.
        let now = Instant::now();
        let own = now.checked_add(q.max_wait);
        let (at, reason) = match (own, deadline) {
            (_, Some(d)) if d.is_expired(now) => {
                drop(q);
                self.stats.reject(Reason::Deadline);
                return Admission::Rejected(Reason::Deadline);
            }
            (Some(own), Some(d)) if d.at() < own => (Some(d.at()), Reason::Deadline),
            (Some(own), _) => (Some(own), Reason::QueueTimeout),
            (None, Some(d)) => (Some(d.at()), Reason::Deadline),
            (None, None) => (None, Reason::QueueTimeout),
        };
        // Raise `QUEUED` by a compare-and-swap from a value with no free permit, so
        // that a release racing with us either makes it fail (and we take the permit
        // it freed) or sees the bit and comes to the lock after we have pushed.
        while s & QUEUED == 0 {
            let (next, admitted) = if s < max {
                (s + 1, true)
            } else {
                (s | QUEUED, false)
            };
            match self
                .state
                .compare_exchange(s, next, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) if admitted => {
                    self.gauges.running.increment(1.0);
                    return Admission::Permit;
                }
                Ok(_) => break,
                Err(actual) => s = actual,
            }
        }
        let id = q.next_id;
        q.next_id += 1;
        q.waiters.push_back(Waiter { id, waker: None });
        self.queued.fetch_add(1, Ordering::Relaxed);
        self.gauges.queued.increment(1.0);
        Admission::Queued { id, at, reason }
    }

    /// Returns a permit; hands it to the head of the queue if anyone waits.
    #[inline]
    pub(crate) fn release(&self) {
        self.gauges.running.decrement(1.0);
        let prev = self.state.fetch_sub(1, Ordering::Release);
        if prev & QUEUED != 0 {
            self.grant(lock(&self.queue));
        }
    }

    /// Returns an observe-mode stand-in for a queue place.
    pub(crate) fn release_shadow(&self) {
        let mut q = lock(&self.queue);
        q.shadow = q.shadow.saturating_sub(1);
    }

    /// Whether waiter `id` holds a permit yet; records the waker if not.
    pub(crate) fn poll_granted(&self, id: u64, cx: &mut Context<'_>) -> Poll<()> {
        let mut q = lock(&self.queue);
        let Some(i) = q.position(id) else {
            // Only a grant takes a waiter out of the queue without its ticket's say.
            return Poll::Ready(());
        };
        let waiter = &mut q.waiters[i];
        match &waiter.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => waiter.waker = Some(cx.waker().clone()),
        }
        Poll::Pending
    }

    /// Waiter `id` gives up (its timer fired). Returns `true` if it had been granted
    /// a permit meanwhile (it then holds it), `false` if it left the queue, in which
    /// case the refusal is counted for `reason`.
    pub(crate) fn leave(&self, id: u64, reason: Reason) -> bool {
        let mut q = lock(&self.queue);
        if self.remove(&mut q, id) {
            drop(q);
            self.stats.reject(reason);
            false
        } else {
            true
        }
    }

    /// Waiter `id` is dropped: leaves the queue, or hands on the permit it was granted
    /// but never used.
    pub(crate) fn abandon(&self, id: u64) {
        let mut q = lock(&self.queue);
        if !self.remove(&mut q, id) {
            self.gauges.running.decrement(1.0);
            // Under the lock and, if anyone waits, with `QUEUED` set: nobody can take
            // this permit before `grant` gives it to the head.
            self.state.fetch_sub(1, Ordering::Release);
            self.grant(q);
        }
    }

    /// Removes waiter `id` if still queued.
    fn remove(&self, q: &mut Queue, id: u64) -> bool {
        let Some(i) = q.position(id) else {
            return false;
        };
        q.waiters.remove(i);
        self.queued.fetch_sub(1, Ordering::Relaxed);
        self.gauges.queued.decrement(1.0);
        if q.waiters.is_empty() {
            self.state.fetch_and(!QUEUED, Ordering::Release);
        }
        true
    }

    /// Grants permits to the heads of the queue while permits are free, waking them
    /// outside the lock.
    fn grant<'a>(&'a self, mut q: MutexGuard<'a, Queue>) {
        loop {
            let mut batch = WakeBatch::new();
            let more = self.grant_locked(&mut q, &mut batch);
            drop(q);
            batch.wake_all();
            if !more {
                return;
            }
            q = lock(&self.queue);
        }
    }

    /// Returns `true` if the batch filled up with more heads to grant.
    fn grant_locked(&self, q: &mut Queue, batch: &mut WakeBatch) -> bool {
        let max = self.max.load(Ordering::Relaxed);
        while !q.waiters.is_empty() {
            if self.state.load(Ordering::Acquire) & RUNNING >= max {
                return false;
            }
            if batch.is_full() {
                return true;
            }
            // `QUEUED` is set (the queue is not empty) and we hold the lock: only
            // releases change the count meanwhile, so the free permit seen stays free.
            self.state.fetch_add(1, Ordering::Acquire);
            self.gauges.running.increment(1.0);
            if let Some(w) = q.waiters.pop_front() {
                self.queued.fetch_sub(1, Ordering::Relaxed);
                self.gauges.queued.decrement(1.0);
                if let Some(waker) = w.waker {
                    batch.push(waker);
                }
            }
        }
        self.state.fetch_and(!QUEUED, Ordering::Release);
        false
    }

    /// Applies new limits. Calls running keep their permits; waiters keep their
    /// place and their timers; growth grants queued callers at once.
    pub(crate) fn set_limits(&self, limits: &Limits) {
        let mut q = lock(&self.queue);
        q.size = limits.queue_size;
        q.max_wait = limits.max_wait;
        q.observe = limits.observe;
        self.max
            .store(limits.max_concurrent.min(RUNNING), Ordering::Relaxed);
        self.grant(q);
    }

    /// Changes the maximum of concurrent calls only.
    pub(crate) fn resize(&self, max_concurrent: usize) {
        let q = lock(&self.queue);
        self.max
            .store(max_concurrent.min(RUNNING), Ordering::Relaxed);
        self.grant(q);
    }

    /// Permits held (running calls, and waiters granted but not yet polled).
    pub(crate) fn running(&self) -> usize {
        self.state.load(Ordering::Relaxed) & RUNNING
    }

    /// Callers waiting in the queue.
    pub(crate) fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// No permit held and nobody queued: the keyed map may evict this partition.
    pub(crate) fn is_idle(&self) -> bool {
        self.state.load(Ordering::Relaxed) == 0
    }

    #[cfg(test)]
    pub(crate) fn stats(&self) -> &Stats {
        &self.stats
    }
}

impl fmt::Debug for Limiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Limiter")
            .field("running", &self.running())
            .field("queued", &self.queued())
            .field("max_concurrent", &self.max.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// What a response future holds while its call runs: a permit, an observe-mode stand
/// in for a queue place, or nothing (a disabled layer, an observe-mode would-reject).
/// Released when the call answers or the future is dropped.
#[derive(Debug)]
pub(crate) struct Permit {
    limiter: Option<Arc<Limiter>>,
    shadow: bool,
}

impl Permit {
    /// A permit already taken from `limiter`.
    pub(crate) fn new(limiter: Arc<Limiter>) -> Self {
        Self {
            limiter: Some(limiter),
            shadow: false,
        }
    }

    /// An observe-mode stand-in for a queue place, already counted in `limiter`.
    pub(crate) fn shadow(limiter: Arc<Limiter>) -> Self {
        Self {
            limiter: Some(limiter),
            shadow: true,
        }
    }

    /// Holds nothing.
    pub(crate) const fn none() -> Self {
        Self {
            limiter: None,
            shadow: false,
        }
    }

    /// Whether it holds anything to release (not a disabled layer's stand-in).
    #[inline]
    pub(crate) fn is_held(&self) -> bool {
        self.limiter.is_some()
    }

    /// Releases what is held, once.
    #[inline]
    pub(crate) fn release(&mut self) {
        if let Some(limiter) = self.limiter.take() {
            if self.shadow {
                limiter.release_shadow();
            } else {
                limiter.release();
            }
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.release();
    }
}

/// A queue place. Becomes a [`Permit`] when granted; dropping it leaves the queue or
/// hands on a permit granted but never used.
#[derive(Debug)]
pub(crate) struct Ticket {
    limiter: Option<Arc<Limiter>>,
    id: u64,
}

impl Ticket {
    /// Waiter `id`, just queued in `limiter`.
    pub(crate) fn new(limiter: Arc<Limiter>, id: u64) -> Self {
        Self {
            limiter: Some(limiter),
            id,
        }
    }

    /// The permit, once granted.
    pub(crate) fn poll_granted(&mut self, cx: &mut Context<'_>) -> Poll<Permit> {
        let Some(limiter) = &self.limiter else {
            return Poll::Pending;
        };
        match limiter.poll_granted(self.id, cx) {
            Poll::Ready(()) => Poll::Ready(self.take_permit()),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Gives up waiting for `reason`. `Some` permit if it was granted meanwhile (the
    /// call should then run), `None` once the ticket has left the queue.
    pub(crate) fn give_up(&mut self, reason: Reason) -> Option<Permit> {
        let limiter = self.limiter.as_ref()?;
        if limiter.leave(self.id, reason) {
            Some(self.take_permit())
        } else {
            self.limiter = None;
            None
        }
    }

    fn take_permit(&mut self) -> Permit {
        match self.limiter.take() {
            Some(l) => Permit::new(l),
            None => Permit::none(),
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if let Some(limiter) = self.limiter.take() {
            limiter.abandon(self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;
    use std::task::Waker;

    fn limiter(max: usize, size: usize) -> Arc<Limiter> {
        Arc::new(Limiter::new(
            &Limits {
                max_concurrent: max,
                queue_size: size,
                max_wait: Duration::from_secs(1),
                observe: false,
            },
            Arc::new(Stats::default()),
            Gauges::default(),
        ))
    }

    fn acquire(l: &Limiter) -> Admission {
        if l.try_acquire() {
            Admission::Permit
        } else {
            l.acquire_slow(None)
        }
    }

    fn granted(l: &Limiter, id: u64) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        l.poll_granted(id, &mut cx).is_ready()
    }

    fn queued_id(a: Admission) -> u64 {
        match a {
            Admission::Queued { id, .. } => id,
            other => panic!("expected to queue, got {other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn fast_path_then_queue_then_full() {
        let l = limiter(2, 1);
        assert!(l.try_acquire());
        assert!(l.try_acquire());
        assert!(!l.try_acquire());
        let id = queued_id(l.acquire_slow(None));
        assert_eq!(l.acquire_slow(None), Admission::Rejected(Reason::Full));
        assert_eq!((l.running(), l.queued()), (2, 1));
        // While someone waits, the fast path is closed even with a permit free.
        l.release();
        assert!(granted(&l, id));
        assert_eq!((l.running(), l.queued()), (2, 0));
        l.release();
        l.release();
        assert!(l.is_idle());
        assert_eq!(l.stats().rejected(), 1);
    }

    #[test]
    fn a_permit_freed_while_someone_waits_is_never_up_for_grabs() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .start_paused(true)
            .build()
            .unwrap();
        let _guard = rt.enter();
        let l = limiter(1, 1);
        assert!(l.try_acquire());
        let waiter = queued_id(l.acquire_slow(None));
        // Hold the queue's lock so a release stops between freeing its permit and
        // handing it to the waiter: the window a newcomer could slip through.
        let held = lock(&l.queue);
        let releaser = std::thread::spawn({
            let l = l.clone();
            move || l.release()
        });
        while l.running() != 0 {
            std::hint::spin_loop();
        }
        assert!(!l.try_acquire(), "a newcomer overtook a queued caller");
        drop(held);
        releaser.join().unwrap();
        assert!(granted(&l, waiter));
        assert_eq!(l.running(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn queue_wait_is_the_earlier_of_max_wait_and_deadline() {
        let l = limiter(0, 4);
        let now = Instant::now();
        let Admission::Queued { at, reason, .. } = l.acquire_slow(None) else {
            panic!()
        };
        assert_eq!(
            (at, reason),
            (Some(now + Duration::from_secs(1)), Reason::QueueTimeout)
        );
        let d = Deadline::after(now, Duration::from_millis(10));
        let Admission::Queued { at, reason, .. } = l.acquire_slow(Some(d)) else {
            panic!()
        };
        assert_eq!((at, reason), (Some(d.at()), Reason::Deadline));
        let late = Deadline::after(now, Duration::from_secs(5));
        let Admission::Queued { reason, .. } = l.acquire_slow(Some(late)) else {
            panic!()
        };
        assert_eq!(reason, Reason::QueueTimeout);
        let passed = Deadline::new(now, now);
        assert_eq!(
            l.acquire_slow(Some(passed)),
            Admission::Rejected(Reason::Deadline)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn abandoning_a_granted_place_hands_the_permit_on() {
        let l = limiter(1, 2);
        assert!(l.try_acquire());
        let a = queued_id(l.acquire_slow(None));
        let b = queued_id(l.acquire_slow(None));
        l.release();
        // `a` holds the permit now; it goes away without using it.
        l.abandon(a);
        assert!(granted(&l, b));
        assert_eq!(l.running(), 1);
        l.release();
        assert!(l.is_idle());
        assert!(
            l.try_acquire(),
            "fast path open again once the queue is empty"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn leaving_after_a_grant_keeps_the_permit() {
        let l = limiter(1, 1);
        assert!(l.try_acquire());
        let a = queued_id(l.acquire_slow(None));
        l.release();
        assert!(
            l.leave(a, Reason::QueueTimeout),
            "granted just as the timer fired"
        );
        assert_eq!(l.running(), 1);
        assert_eq!(l.stats().rejected(), 0);
        let b = queued_id(l.acquire_slow(None));
        assert!(!l.leave(b, Reason::QueueTimeout));
        assert_eq!(l.stats().rejected(), 1);
        assert_eq!(l.queued(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn growing_grants_many_waiters_in_order() {
        // More waiters than one wake batch holds.
        let n = WakeBatch::CAPACITY as u64 * 2 + 3;
        let l = limiter(0, n as usize);
        let ids: Vec<u64> = (0..n).map(|_| queued_id(l.acquire_slow(None))).collect();
        l.resize(n as usize - 1);
        for &id in &ids[..ids.len() - 1] {
            assert!(granted(&l, id));
        }
        assert!(!granted(&l, ids[ids.len() - 1]));
        l.resize(0);
        l.release();
        assert!(
            !granted(&l, ids[ids.len() - 1]),
            "shrunk: no grant until below the new max"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn observe_mode_stands_in_for_the_queue() {
        let l = limiter(1, 1);
        l.set_limits(&Limits {
            max_concurrent: 1,
            queue_size: 1,
            max_wait: Duration::from_secs(1),
            observe: true,
        });
        assert!(l.try_acquire());
        assert_eq!(l.acquire_slow(None), Admission::Shadow);
        assert_eq!(l.acquire_slow(None), Admission::WouldReject);
        assert_eq!(l.stats().would_rejected(), 1);
        l.release_shadow();
        assert_eq!(l.acquire_slow(None), Admission::Shadow);
        assert_eq!((l.running(), l.queued(), l.stats().rejected()), (1, 0, 0));
    }

    #[derive(Debug, Clone)]
    enum Op {
        Call,
        Finish(usize),
        Drop(usize),
        TimeOut(usize),
        Resize(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => Just(Op::Call),
            3 => any::<usize>().prop_map(Op::Finish),
            1 => any::<usize>().prop_map(Op::Drop),
            1 => any::<usize>().prop_map(Op::TimeOut),
            1 => (0usize..5).prop_map(Op::Resize),
        ]
    }

    /// The naive model: a count, a limit and a FIFO list.
    #[derive(Debug, Default)]
    struct Model {
        max: usize,
        size: usize,
        running: usize,
        queue: VecDeque<u64>,
        granted: BTreeSet<u64>,
    }

    impl Model {
        fn grant(&mut self) {
            while self.running < self.max {
                let Some(id) = self.queue.pop_front() else {
                    break;
                };
                self.running += 1;
                self.granted.insert(id);
            }
        }
    }

    proptest! {
        #[test]
        fn matches_the_naive_model(max in 0usize..4, size in 0usize..4, ops in proptest::collection::vec(op(), 1..80)) {
            let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
            let _guard = rt.enter();
            let l = limiter(max, size);
            let mut m = Model { max, size, ..Model::default() };
            // What the real limiter handed out: permits held, and queue places.
            let mut permits = 0usize;
            let mut waiting: Vec<u64> = Vec::new();
            for op in ops {
                match op {
                    Op::Call => match acquire(&l) {
                        Admission::Permit => {
                            prop_assert!(m.queue.is_empty() && m.running < m.max);
                            m.running += 1;
                            permits += 1;
                        }
                        Admission::Queued { id, .. } => {
                            prop_assert!(m.running >= m.max || !m.queue.is_empty());
                            prop_assert!(m.queue.len() < m.size);
                            m.queue.push_back(id);
                            waiting.push(id);
                        }
                        Admission::Rejected(Reason::Full) => {
                            prop_assert!(m.running >= m.max || !m.queue.is_empty());
                            prop_assert!(m.queue.len() >= m.size);
                        }
                        other => prop_assert!(false, "unexpected {:?}", other),
                    },
                    Op::Finish(i) => {
                        // A granted waiter that polls becomes a plain permit.
                        let ready: Vec<u64> = waiting.iter().copied().filter(|&id| granted(&l, id)).collect();
                        for id in ready {
                            prop_assert!(m.granted.remove(&id));
                            waiting.retain(|&w| w != id);
                            permits += 1;
                        }
                        if permits > 0 && i % 2 == 0 {
                            l.release();
                            permits -= 1;
                            m.running -= 1;
                            m.grant();
                        }
                    }
                    Op::Drop(i) | Op::TimeOut(i) if !waiting.is_empty() => {
                        let id = waiting.remove(i % waiting.len());
                        let was_granted = m.granted.remove(&id);
                        if matches!(op, Op::Drop(_)) {
                            l.abandon(id);
                            if was_granted { m.running -= 1; } else { m.queue.retain(|&w| w != id); }
                            m.grant();
                        } else {
                            let kept = l.leave(id, Reason::QueueTimeout);
                            prop_assert_eq!(kept, was_granted);
                            if kept { permits += 1; } else { m.queue.retain(|&w| w != id); }
                        }
                    }
                    Op::Drop(_) | Op::TimeOut(_) => {}
                    Op::Resize(n) => {
                        l.resize(n);
                        m.max = n;
                        m.grant();
                    }
                }
                prop_assert_eq!(l.running(), m.running);
                prop_assert_eq!(l.queued(), m.queue.len());
                for id in &m.granted {
                    prop_assert!(granted(&l, *id));
                }
                for id in &m.queue {
                    prop_assert!(!granted(&l, *id));
                }
            }
        }
    }
}
