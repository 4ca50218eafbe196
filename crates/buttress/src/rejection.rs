//! The errors buttress layers answer with when they refuse or cut short a call.
//!
//! They live here, always compiled, so that every layer, the HTTP crate and user code
//! agree on one set of types whatever features are enabled; each layer's `error`
//! module re-exports the ones it produces.
//!
//! Layers return [`BoxError`], so a rejection may sit anywhere in an error's source
//! chain (a user's error may wrap it). [`Rejection::find`] walks that chain and
//! summarises what it finds: a kind and, where known, how long the caller should wait
//! before trying again.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use buttress::rejection::{CircuitOpen, Rejection, RejectionKind};
//! use buttress::BoxError;
//!
//! let err: BoxError = CircuitOpen::new(Duration::from_secs(3)).into();
//! let rejection = Rejection::find(err.as_ref()).unwrap();
//! assert_eq!(rejection.kind(), RejectionKind::CircuitOpen);
//! assert_eq!(rejection.retry_after(), Some(Duration::from_secs(3)));
//! ```

use std::error::Error;
use std::fmt;
use std::time::Duration;

use crate::BoxError;

/// Which timeout fired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Scope {
    /// One attempt's timeout (below retry).
    Attempt,
    /// The whole call's timeout, across attempts.
    Total,
}

/// Why a timeout fired when it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Cause {
    /// The layer's own budget ran out first.
    Budget,
    /// The deadline carried by the request (set by an outer layer or a caller) came
    /// first.
    Deadline,
}

/// A call did not finish in time.
///
/// Only an attempt timeout of the layer's own budget is retryable: when the carried
/// deadline has passed, no further attempt can finish either.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed {
    scope: Scope,
    cause: Cause,
}

impl Elapsed {
    /// A timeout of `scope`, fired because of `cause`.
    pub const fn new(scope: Scope, cause: Cause) -> Self {
        Self { scope, cause }
    }

    /// Which timeout fired.
    pub const fn scope(&self) -> Scope {
        self.scope
    }

    /// Whether the layer's own budget or the carried deadline ran out.
    pub const fn cause(&self) -> Cause {
        self.cause
    }

    /// Whether another attempt could still succeed.
    pub const fn is_retryable(&self) -> bool {
        matches!((self.scope, self.cause), (Scope::Attempt, Cause::Budget))
    }
}

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scope = match self.scope {
            Scope::Attempt => "attempt",
            Scope::Total => "request",
        };
        match self.cause {
            Cause::Budget => write!(f, "{scope} timed out"),
            Cause::Deadline => write!(f, "{scope} timed out: the request's deadline passed"),
        }
    }
}

impl Error for Elapsed {}

/// A circuit breaker is open and refused the call without sending it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CircuitOpen {
    retry_after: Duration,
}

impl CircuitOpen {
    /// An open circuit that turns half-open in `retry_after`.
    pub const fn new(retry_after: Duration) -> Self {
        Self { retry_after }
    }

    /// Time left until the breaker lets probes through.
    pub const fn retry_after(&self) -> Duration {
        self.retry_after
    }
}

impl fmt::Display for CircuitOpen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "circuit open for another {:?}", self.retry_after)
    }
}

impl Error for CircuitOpen {}

/// A bulkhead had no room: its running and queued calls were full, or the call
/// waited in its queue longer than `max_wait`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BulkheadFull {
    queued: bool,
}

impl BulkheadFull {
    /// No room to run or queue.
    pub const fn full() -> Self {
        Self { queued: false }
    }

    /// The call was queued and gave up after the bulkhead's `max_wait`.
    pub const fn queue_timeout() -> Self {
        Self { queued: true }
    }

    /// Whether the call had waited in the queue before it was refused.
    pub const fn was_queued(&self) -> bool {
        self.queued
    }
}

impl fmt::Display for BulkheadFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.queued {
            f.write_str("bulkhead full: gave up waiting in the queue")
        } else {
            f.write_str("bulkhead full")
        }
    }
}

impl Error for BulkheadFull {}

/// Why a call was refused as overload.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum OverloadReason {
    /// The load shedder's concurrency limit and queue were full.
    Shed,
    /// The service is draining for shutdown and takes no new calls.
    Drain,
    /// Client-side adaptive throttling refused the call locally.
    Throttle,
}

/// The service is overloaded (or draining) and refused the call before doing any
/// work; try again after the suggested delay, preferably elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Overloaded {
    reason: OverloadReason,
    retry_after: Duration,
}

impl Overloaded {
    /// An overload refusal for `reason`, suggesting a retry after `retry_after`.
    pub const fn new(reason: OverloadReason, retry_after: Duration) -> Self {
        Self {
            reason,
            retry_after,
        }
    }

    /// Why the call was refused.
    pub const fn reason(&self) -> OverloadReason {
        self.reason
    }

    /// The suggested delay before trying again.
    pub const fn retry_after(&self) -> Duration {
        self.retry_after
    }
}

impl fmt::Display for Overloaded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self.reason {
            OverloadReason::Shed => "overloaded: request shed",
            OverloadReason::Drain => "draining: not taking new requests",
            OverloadReason::Throttle => "throttled locally: the upstream is rejecting",
        };
        write!(f, "{what}, retry after {:?}", self.retry_after)
    }
}

impl Error for Overloaded {}

/// A retry layer gave up on this call; no layer above should retry it again.
///
/// The original error is the [`source`](Error::source), so the answer the caller sees
/// is the last real one. Classifiers honour the mark (see
/// [`Classification::do_not_retry`](crate::Classification)), so a chain of tiers
/// retries at one tier only.
#[derive(Debug)]
pub struct DoNotRetry {
    inner: BoxError,
}

impl DoNotRetry {
    /// Marks `inner` as given up on.
    pub fn new(inner: impl Into<BoxError>) -> Self {
        Self {
            inner: inner.into(),
        }
    }

    /// The error the last attempt ended with.
    pub fn get_ref(&self) -> &(dyn Error + Send + Sync + 'static) {
        self.inner.as_ref()
    }

    /// Takes the original error back.
    pub fn into_inner(self) -> BoxError {
        self.inner
    }
}

impl fmt::Display for DoNotRetry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "gave up after retries: {}", self.inner)
    }
}

impl Error for DoNotRetry {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(self.inner.as_ref())
    }
}

/// What kind of rejection an error holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RejectionKind {
    /// A timeout ([`Elapsed`]).
    Timeout {
        /// Which timeout fired.
        scope: Scope,
        /// Its own budget or the carried deadline.
        cause: Cause,
    },
    /// An open circuit breaker ([`CircuitOpen`]).
    CircuitOpen,
    /// A full bulkhead ([`BulkheadFull`]).
    BulkheadFull,
    /// Load shedding ([`Overloaded`] with [`OverloadReason::Shed`]).
    Shed,
    /// A draining service ([`Overloaded`] with [`OverloadReason::Drain`]).
    Draining,
    /// Client-side throttling ([`Overloaded`] with [`OverloadReason::Throttle`]).
    Throttled,
}

/// A summary of the buttress rejection found in an error: its kind and, where the
/// rejecting layer knows it, how long to wait before trying again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rejection {
    kind: RejectionKind,
    retry_after: Option<Duration>,
}

impl Rejection {
    /// The kind of rejection.
    pub const fn kind(&self) -> RejectionKind {
        self.kind
    }

    /// The suggested delay before trying again, if the rejecting layer gave one.
    pub const fn retry_after(&self) -> Option<Duration> {
        self.retry_after
    }

    /// Walks `err` and its source chain and summarises the first buttress rejection
    /// found, outermost first.
    pub fn find(err: &(dyn Error + 'static)) -> Option<Self> {
        let mut next = Some(err);
        while let Some(err) = next {
            if let Some(r) = Self::of(err) {
                return Some(r);
            }
            next = err.source();
        }
        None
    }

    fn of(err: &(dyn Error + 'static)) -> Option<Self> {
        if let Some(e) = err.downcast_ref::<Elapsed>() {
            return Some(Self {
                kind: RejectionKind::Timeout {
                    scope: e.scope,
                    cause: e.cause,
                },
                retry_after: None,
            });
        }
        if let Some(e) = err.downcast_ref::<CircuitOpen>() {
            return Some(Self {
                kind: RejectionKind::CircuitOpen,
                retry_after: Some(e.retry_after),
            });
        }
        if err.is::<BulkheadFull>() {
            return Some(Self {
                kind: RejectionKind::BulkheadFull,
                retry_after: None,
            });
        }
        if let Some(e) = err.downcast_ref::<Overloaded>() {
            let kind = match e.reason {
                OverloadReason::Shed => RejectionKind::Shed,
                OverloadReason::Drain => RejectionKind::Draining,
                OverloadReason::Throttle => RejectionKind::Throttled,
            };
            return Some(Self {
                kind,
                retry_after: Some(e.retry_after),
            });
        }
        None
    }
}

/// Whether `err` or anything in its source chain is a [`DoNotRetry`] mark.
pub fn is_marked_do_not_retry(err: &(dyn Error + 'static)) -> bool {
    let mut next = Some(err);
    while let Some(err) = next {
        if err.is::<DoNotRetry>() {
            return true;
        }
        next = err.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Wrapper(BoxError);
    impl fmt::Display for Wrapper {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("user wrapper")
        }
    }
    impl Error for Wrapper {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(self.0.as_ref())
        }
    }

    #[test]
    fn finds_rejection_deep_in_the_source_chain() {
        let err: BoxError = Wrapper(
            Wrapper(Overloaded::new(OverloadReason::Drain, Duration::from_secs(2)).into()).into(),
        )
        .into();
        let r = Rejection::find(err.as_ref()).unwrap();
        assert_eq!(r.kind(), RejectionKind::Draining);
        assert_eq!(r.retry_after(), Some(Duration::from_secs(2)));
    }

    #[test]
    fn summarises_each_kind() {
        let cases: Vec<(BoxError, RejectionKind, Option<Duration>)> = vec![
            (
                Elapsed::new(Scope::Attempt, Cause::Budget).into(),
                RejectionKind::Timeout {
                    scope: Scope::Attempt,
                    cause: Cause::Budget,
                },
                None,
            ),
            (
                CircuitOpen::new(Duration::from_millis(1500)).into(),
                RejectionKind::CircuitOpen,
                Some(Duration::from_millis(1500)),
            ),
            (
                BulkheadFull::full().into(),
                RejectionKind::BulkheadFull,
                None,
            ),
            (
                Overloaded::new(OverloadReason::Shed, Duration::from_secs(1)).into(),
                RejectionKind::Shed,
                Some(Duration::from_secs(1)),
            ),
            (
                Overloaded::new(OverloadReason::Throttle, Duration::ZERO).into(),
                RejectionKind::Throttled,
                Some(Duration::ZERO),
            ),
        ];
        for (err, kind, delay) in cases {
            let r = Rejection::find(err.as_ref()).unwrap();
            assert_eq!(r.kind(), kind, "{err}");
            assert_eq!(r.retry_after(), delay, "{err}");
        }
    }

    #[test]
    fn plain_errors_are_not_rejections() {
        let err: BoxError = "connection reset".into();
        assert_eq!(Rejection::find(err.as_ref()), None);
        assert!(!is_marked_do_not_retry(err.as_ref()));
    }

    #[test]
    fn only_attempt_budget_timeouts_are_retryable() {
        assert!(Elapsed::new(Scope::Attempt, Cause::Budget).is_retryable());
        assert!(!Elapsed::new(Scope::Attempt, Cause::Deadline).is_retryable());
        assert!(!Elapsed::new(Scope::Total, Cause::Budget).is_retryable());
        assert!(!Elapsed::new(Scope::Total, Cause::Deadline).is_retryable());
    }

    #[test]
    fn do_not_retry_keeps_the_original_as_source() {
        let err: BoxError = DoNotRetry::new(BulkheadFull::full()).into();
        assert!(is_marked_do_not_retry(err.as_ref()));
        let r = Rejection::find(err.as_ref()).unwrap();
        assert_eq!(r.kind(), RejectionKind::BulkheadFull);
        let wrapped: BoxError = Wrapper(err).into();
        assert!(is_marked_do_not_retry(wrapped.as_ref()));
    }
}
