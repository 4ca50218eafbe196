//! What a request carries through the stack: its [`Deadline`], its [`Attempt`]
//! number and its [`Priority`].
//!
//! An outer layer (a total timeout, the HTTP server reading `grpc-timeout`) sets a
//! deadline; inner layers read it: a timeout fires at the earlier of its own budget and
//! the deadline, retry and hedge never start an attempt that cannot finish, queues drop
//! a waiter whose deadline has passed. The deadline also carries the instant the call
//! started, so inner layers can reuse that one clock read instead of taking their own.
//!
//! Layers reach this metadata through the [`RequestMeta`] trait. buttress implements it
//! for [`http::Request`] (the values live in its extensions) and for the
//! [`WithDeadline`] wrapper, which gives any other request type somewhere to carry
//! them. A request type of your own can implement it directly; one that has nowhere to
//! keep the values implements it with the defaults (`impl RequestMeta for MyReq {}`):
//! layers then see no deadline and the default priority.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use buttress::{Deadline, RequestMeta, WithDeadline};
//! use tokio::time::Instant;
//!
//! let now = Instant::now();
//! let mut req = WithDeadline::new("GET /");
//! req.set_deadline(Deadline::after(now, Duration::from_millis(300)));
//! let deadline = req.deadline().unwrap();
//! assert_eq!(deadline.remaining(now), Duration::from_millis(300));
//! assert_eq!(deadline.started(), now);
//! ```

use std::time::Duration;

use tokio::time::Instant;

/// When a request must be answered by, and when its call started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Deadline {
    at: Instant,
    started: Instant,
}

impl Deadline {
    /// A deadline at `at` for a call that started at `started`.
    pub fn new(started: Instant, at: Instant) -> Self {
        Self { at, started }
    }

    /// A deadline `budget` after `started`.
    pub fn after(started: Instant, budget: Duration) -> Self {
        Self {
            at: started + budget,
            started,
        }
    }

    /// The instant the answer is due.
    pub fn at(&self) -> Instant {
        self.at
    }

    /// The instant the call started (one clock read, reused by inner layers).
    pub fn started(&self) -> Instant {
        self.started
    }

    /// Time left at `now`, zero once passed.
    pub fn remaining(&self, now: Instant) -> Duration {
        self.at.saturating_duration_since(now)
    }

    /// Whether the deadline has passed at `now`.
    pub fn is_expired(&self, now: Instant) -> bool {
        now >= self.at
    }

    /// The earlier of two deadlines (keeping the earlier start instant).
    #[must_use]
    pub fn min(self, other: Deadline) -> Deadline {
        Deadline {
            at: self.at.min(other.at),
            started: self.started.min(other.started),
        }
    }
}

/// When this attempt started, for layers that time it: the start instant carried with
/// the deadline when this is the call's first attempt (the one clock read made when the
/// call began, reused), else a clock read now. A retry or hedge must read the clock: the
/// deadline's start is the whole call's, not this attempt's.
#[inline]
pub fn attempt_start(deadline: Option<Deadline>, attempt: Option<Attempt>) -> Instant {
    match deadline {
        Some(d) if attempt.is_none_or(|a| a == Attempt::FIRST) => d.started(),
        _ => Instant::now(),
    }
}

/// Which attempt of a call this request is: 1 for the first, 2 for the first retry or
/// hedge, and so on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Attempt(u32);

impl Attempt {
    /// The first attempt.
    pub const FIRST: Attempt = Attempt(1);

    /// Attempt number `n` (at least 1).
    pub const fn new(n: u32) -> Self {
        Attempt(if n == 0 { 1 } else { n })
    }

    /// The attempt number, starting at 1.
    pub const fn get(self) -> u32 {
        self.0
    }

    /// The attempt after this one.
    #[must_use]
    pub const fn next(self) -> Self {
        Attempt(self.0.saturating_add(1))
    }

    /// How many attempts came before this one.
    pub const fn previous(self) -> u32 {
        self.0 - 1
    }
}

impl Default for Attempt {
    fn default() -> Self {
        Attempt::FIRST
    }
}

/// How important a request is to the load shedder: lower priorities are refused
/// first, and critical requests may use headroom the others cannot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum Priority {
    /// Refused first: prefetches, batch work, anything a user does not wait for.
    Sheddable,
    /// Ordinary traffic.
    #[default]
    Default,
    /// Refused last: the requests the service exists to answer.
    Critical,
}

/// Access to the metadata buttress layers read from and write to a request.
///
/// Every method has a default that carries nothing, so a request type with nowhere to
/// keep the values implements the trait with an empty block.
pub trait RequestMeta {
    /// The deadline the request carries, if any.
    fn deadline(&self) -> Option<Deadline> {
        None
    }

    /// Sets the deadline, replacing any earlier one in place.
    fn set_deadline(&mut self, deadline: Deadline) {
        let _ = deadline;
    }

    /// Which attempt this request is, if a retry or hedge layer said so.
    fn attempt(&self) -> Option<Attempt> {
        None
    }

    /// Records which attempt this request is.
    fn set_attempt(&mut self, attempt: Attempt) {
        let _ = attempt;
    }

    /// The request's priority for load shedding.
    fn priority(&self) -> Priority {
        Priority::Default
    }

    /// Sets the request's priority.
    fn set_priority(&mut self, priority: Priority) {
        let _ = priority;
    }
}

fn set_ext<T: Clone + Send + Sync + 'static>(ext: &mut http::Extensions, value: T) {
    // Update in place when present: no second boxed value, no second hash insert.
    match ext.get_mut::<T>() {
        Some(slot) => *slot = value,
        None => {
            ext.insert(value);
        }
    }
}

impl<B> RequestMeta for http::Request<B> {
    fn deadline(&self) -> Option<Deadline> {
        self.extensions().get::<Deadline>().copied()
    }

    fn set_deadline(&mut self, deadline: Deadline) {
        set_ext(self.extensions_mut(), deadline);
    }

    fn attempt(&self) -> Option<Attempt> {
        self.extensions().get::<Attempt>().copied()
    }

    fn set_attempt(&mut self, attempt: Attempt) {
        set_ext(self.extensions_mut(), attempt);
    }

    fn priority(&self) -> Priority {
        self.extensions()
            .get::<Priority>()
            .copied()
            .unwrap_or_default()
    }

    fn set_priority(&mut self, priority: Priority) {
        set_ext(self.extensions_mut(), priority);
    }
}

/// Any request type, with room for the metadata buttress layers carry.
///
/// Use it for request types that are neither [`http::Request`] nor your own (for a
/// type of your own, implementing [`RequestMeta`] is lighter).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WithDeadline<R> {
    /// The wrapped request.
    pub request: R,
    deadline: Option<Deadline>,
    attempt: Option<Attempt>,
    priority: Priority,
}

impl<R> WithDeadline<R> {
    /// Wraps `request` with no deadline, no attempt number and the default priority.
    pub fn new(request: R) -> Self {
        Self {
            request,
            deadline: None,
            attempt: None,
            priority: Priority::Default,
        }
    }

    /// Wraps `request` with a deadline.
    #[allow(clippy::self_named_constructors)] // reads as what it builds
    pub fn with_deadline(request: R, deadline: Deadline) -> Self {
        Self {
            deadline: Some(deadline),
            ..Self::new(request)
        }
    }

    /// Unwraps the request.
    pub fn into_inner(self) -> R {
        self.request
    }
}

impl<R> RequestMeta for WithDeadline<R> {
    fn deadline(&self) -> Option<Deadline> {
        self.deadline
    }

    fn set_deadline(&mut self, deadline: Deadline) {
        self.deadline = Some(deadline);
    }

    fn attempt(&self) -> Option<Attempt> {
        self.attempt
    }

    fn set_attempt(&mut self, attempt: Attempt) {
        self.attempt = Some(attempt);
    }

    fn priority(&self) -> Priority {
        self.priority
    }

    fn set_priority(&mut self, priority: Priority) {
        self.priority = priority;
    }
}

macro_rules! carries_nothing {
    ($($t:ty),* $(,)?) => {
        $(
            /// Carries no metadata: layers see no deadline and the default priority.
            impl RequestMeta for $t {}
        )*
    };
}

// Plain values used as requests in tests, benchmarks and simple in-process services.
carries_nothing!(
    (),
    bool,
    u8,
    u16,
    u32,
    u64,
    u128,
    usize,
    i8,
    i16,
    i32,
    i64,
    i128,
    isize,
    String,
    &'static str,
    Vec<u8>,
);

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn http_request_updates_deadline_in_place() {
        let now = Instant::now();
        let mut req = http::Request::new(());
        assert_eq!(req.deadline(), None);
        req.set_deadline(Deadline::after(now, Duration::from_secs(5)));
        req.set_deadline(Deadline::after(now, Duration::from_secs(1)));
        assert_eq!(req.extensions().len(), 1);
        assert_eq!(req.deadline().unwrap().at(), now + Duration::from_secs(1));
        req.set_attempt(Attempt::new(3));
        req.set_priority(Priority::Critical);
        assert_eq!(req.attempt(), Some(Attempt::new(3)));
        assert_eq!(req.priority(), Priority::Critical);
        assert_eq!(req.extensions().len(), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn deadline_arithmetic() {
        let now = Instant::now();
        let d = Deadline::after(now, Duration::from_millis(100));
        assert!(!d.is_expired(now));
        assert!(d.is_expired(now + Duration::from_millis(100)));
        assert_eq!(d.remaining(now + Duration::from_secs(1)), Duration::ZERO);
        let e = Deadline::after(now + Duration::from_millis(10), Duration::from_millis(50));
        let m = d.min(e);
        assert_eq!(m.at(), now + Duration::from_millis(60));
        assert_eq!(m.started(), now);
    }

    #[tokio::test(start_paused = true)]
    async fn only_a_first_attempt_reuses_the_carried_start() {
        let start = Instant::now();
        let d = Deadline::after(start, Duration::from_secs(1));
        tokio::time::advance(Duration::from_millis(5)).await;
        assert_eq!(attempt_start(Some(d), None), start);
        assert_eq!(attempt_start(Some(d), Some(Attempt::FIRST)), start);
        assert_eq!(
            attempt_start(Some(d), Some(Attempt::new(2))),
            Instant::now()
        );
        assert_eq!(attempt_start(None, None), Instant::now());
    }

    #[test]
    fn attempts_count_from_one() {
        assert_eq!(Attempt::new(0), Attempt::FIRST);
        assert_eq!(Attempt::FIRST.next().get(), 2);
        assert_eq!(Attempt::new(3).previous(), 2);
        assert!(Priority::Critical > Priority::Default && Priority::Default > Priority::Sheddable);
    }

    #[test]
    fn wrapper_carries_everything() {
        let mut req = WithDeadline::new(7u8);
        req.set_attempt(Attempt::new(2));
        req.set_priority(Priority::Sheddable);
        assert_eq!(req.attempt(), Some(Attempt::new(2)));
        assert_eq!(req.priority(), Priority::Sheddable);
        assert_eq!(req.into_inner(), 7);
    }
}
