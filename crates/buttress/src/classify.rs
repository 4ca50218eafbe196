//! Classification: what an outcome means to each layer.
//!
//! One answer serves every layer: a breaker counts [`Verdict::Failure`]s, retry looks at
//! [`RetryClass`] and the delay hint, shedding and throttling look at
//! [`Classification::overload`]. Keeping them apart is what lets a 429 be retryable
//! (after its `Retry-After`) without counting as a breaker failure, and a local
//! [`BulkheadFull`](crate::rejection::BulkheadFull) be ignored by the breaker while the
//! load shedder counts it as a drop.
//!
//! A classifier is made per request ([`Classify::classify_request`]), as in tower-http,
//! so it can look at the method, an idempotency key or a priority, and then classifies
//! that request's result ([`Classifier::classify`]). [`DefaultClassify`] is the generic
//! classifier: any response is a success, errors are failures unless they are buttress
//! rejections from an inner layer. The HTTP crate classifies by status, `grpc-status`
//! and transport error; [`classify_fn`] builds one from closures.
//!
//! # Example: a 429-like answer is retryable but no breaker failure
//!
//! ```
//! use std::time::Duration;
//! use buttress::classify::{classify_fn, Classification, Classifier, Classify, RetryClass, Verdict};
//!
//! struct Reply { status: u16 }
//!
//! let classify = classify_fn(|result: Result<&Reply, &buttress::BoxError>| match result {
//!     Ok(r) if r.status == 429 => Classification::success()
//!         .with_verdict(Verdict::Ignored)
//!         .with_retry(RetryClass::IfSafe)
//!         .with_overload(true)
//!         .with_delay_hint(Some(Duration::from_secs(1))),
//!     Ok(r) if r.status >= 500 => Classification::failure(),
//!     Ok(_) => Classification::success(),
//!     Err(e) => Classification::from_error(e),
//! });
//! let c = classify.classify_request(&()).classify(Ok(&Reply { status: 429 }));
//! assert_eq!(c.verdict, Verdict::Ignored);
//! assert!(c.allows_retry(true));
//! ```

use std::fmt;
use std::marker::PhantomData;
use std::time::Duration;

use crate::BoxError;
use crate::rejection::{Elapsed, Rejection, RejectionKind, is_marked_do_not_retry};

/// Whether an outcome counts for or against the callee's health.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// The callee did its job.
    Success,
    /// The callee failed: counts toward tripping a breaker.
    Failure,
    /// Neither: a cancelled call, a local rejection, an answer that says nothing about
    /// the callee's health (a 429). Breakers do not count it.
    Ignored,
}

/// Whether the request may be sent again after this outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RetryClass {
    /// Do not retry.
    No,
    /// Retry only if the request is safe to repeat (idempotent, or carries an
    /// idempotency key) and can be replayed.
    IfSafe,
    /// Retry whatever the request: nothing reached the callee (a connection never
    /// established, a local rejection). It must still be replayable.
    Always,
}

/// Where an outcome came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Origin {
    /// A buttress layer in this process refused or cut short the call.
    Local,
    /// The callee (or the network to it) answered.
    Upstream,
}

/// What one outcome means to every layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Classification {
    /// For or against the callee's health.
    pub verdict: Verdict,
    /// Whether another attempt may be made.
    pub retry: RetryClass,
    /// A delay the callee asked for before the next attempt (`Retry-After`, gRPC
    /// pushback, [`Overloaded::retry_after`](crate::rejection::Overloaded::retry_after)).
    pub delay_hint: Option<Duration>,
    /// A tier below already gave up after its own retries: retry layers must not retry.
    pub do_not_retry: bool,
    /// The answer signals overload (feeds load shedding and throttling).
    pub overload: bool,
    /// Local rejection or upstream answer.
    pub origin: Origin,
}

impl Classification {
    /// A success from upstream: not retried, no hint, no overload.
    pub const fn success() -> Self {
        Self {
            verdict: Verdict::Success,
            retry: RetryClass::No,
            delay_hint: None,
            do_not_retry: false,
            overload: false,
            origin: Origin::Upstream,
        }
    }

    /// A failure from upstream, retryable if the request is safe.
    pub const fn failure() -> Self {
        Self {
            verdict: Verdict::Failure,
            retry: RetryClass::IfSafe,
            ..Self::success()
        }
    }

    /// An outcome that says nothing about the callee (e.g. a cancelled call).
    pub const fn ignored() -> Self {
        Self {
            verdict: Verdict::Ignored,
            ..Self::success()
        }
    }

    /// Sets the verdict.
    #[must_use]
    pub const fn with_verdict(mut self, verdict: Verdict) -> Self {
        self.verdict = verdict;
        self
    }

    /// Sets the retry class.
    #[must_use]
    pub const fn with_retry(mut self, retry: RetryClass) -> Self {
        self.retry = retry;
        self
    }

    /// Sets the delay hint.
    #[must_use]
    pub const fn with_delay_hint(mut self, hint: Option<Duration>) -> Self {
        self.delay_hint = hint;
        self
    }

    /// Sets the do-not-retry mark.
    #[must_use]
    pub const fn with_do_not_retry(mut self, mark: bool) -> Self {
        self.do_not_retry = mark;
        self
    }

    /// Sets the overload signal.
    #[must_use]
    pub const fn with_overload(mut self, overload: bool) -> Self {
        self.overload = overload;
        self
    }

    /// Sets the origin.
    #[must_use]
    pub const fn with_origin(mut self, origin: Origin) -> Self {
        self.origin = origin;
        self
    }

    /// Whether a retry layer may retry after this outcome, for a request that is
    /// (`request_is_safe`) or is not safe to repeat. Replayability is the retry
    /// layer's own check.
    pub const fn allows_retry(&self, request_is_safe: bool) -> bool {
        if self.do_not_retry {
            return false;
        }
        match self.retry {
            RetryClass::No => false,
            RetryClass::IfSafe => request_is_safe,
            RetryClass::Always => true,
        }
    }

    /// Classifies an error the generic way:
    ///
    /// | error | verdict | retry | hint | overload | origin |
    /// |---|---|---|---|---|---|
    /// | [`Elapsed`] (attempt, own budget) | failure | if safe | | | local |
    /// | [`Elapsed`] (otherwise) | failure | no | | | local |
    /// | [`CircuitOpen`] | ignored | always | time left open | | local |
    /// | [`BulkheadFull`] | ignored | always | | yes | local |
    /// | [`Overloaded`] | ignored | always | its delay | yes | local |
    ///
    /// [`CircuitOpen`]: crate::rejection::CircuitOpen
    /// [`BulkheadFull`]: crate::rejection::BulkheadFull
    /// [`Overloaded`]: crate::rejection::Overloaded
    /// | anything else | failure | if safe | | | upstream |
    ///
    /// Rejections that sent nothing are retryable for any request; timeouts count as
    /// failures (a callee that does not answer is unhealthy) but only an attempt
    /// timeout leaves room for another attempt. A [`DoNotRetry`] mark anywhere in the
    /// chain sets [`do_not_retry`](Self::do_not_retry).
    ///
    /// [`DoNotRetry`]: crate::rejection::DoNotRetry
    pub fn from_error(err: &BoxError) -> Self {
        let err: &(dyn std::error::Error + 'static) = err.as_ref();
        let do_not_retry = is_marked_do_not_retry(err);
        let c = match Rejection::find(err) {
            Some(r) => {
                let local = Self::ignored()
                    .with_origin(Origin::Local)
                    .with_retry(RetryClass::Always)
                    .with_delay_hint(r.retry_after());
                match r.kind() {
                    RejectionKind::Timeout { scope, cause } => Self::failure()
                        .with_origin(Origin::Local)
                        .with_retry(if Elapsed::new(scope, cause).is_retryable() {
                            RetryClass::IfSafe
                        } else {
                            RetryClass::No
                        }),
                    RejectionKind::CircuitOpen => local,
                    RejectionKind::BulkheadFull
                    | RejectionKind::Shed
                    | RejectionKind::Draining
                    | RejectionKind::Throttled => local.with_overload(true),
                }
            }
            None => Self::failure(),
        };
        c.with_do_not_retry(do_not_retry)
    }
}

/// Makes a [`Classifier`] for each request.
pub trait Classify<Req, Res> {
    /// The classifier for one request.
    type Classifier: Classifier<Res>;

    /// Looks at the request (method, idempotency key, priority...) and returns the
    /// classifier for its result.
    fn classify_request(&self, req: &Req) -> Self::Classifier;

    /// Called by a retry layer that gives up on a call (attempts, budget or deadline
    /// exhausted) with the response it is about to return, so that tiers above see the
    /// do-not-retry mark. The default does nothing: generic responses have nowhere to
    /// carry it (errors are wrapped in
    /// [`DoNotRetry`](crate::rejection::DoNotRetry) by the retry layer itself). The
    /// HTTP crate adds a header here.
    fn mark_gave_up(&self, response: &mut Res) {
        let _ = response;
    }
}

/// Classifies one request's result.
pub trait Classifier<Res> {
    /// Whether the request this classifier was made for may be repeated
    /// (idempotent, or carrying an idempotency key). Generic requests are assumed
    /// safe: a caller who puts a retry layer in front of a service says so.
    fn request_is_safe(&self) -> bool {
        true
    }

    /// Classifies the result.
    fn classify(self, result: Result<&Res, &BoxError>) -> Classification;
}

/// The generic classifier: any response is a success, errors are classified by
/// [`Classification::from_error`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DefaultClassify;

impl<Req, Res> Classify<Req, Res> for DefaultClassify {
    type Classifier = DefaultClassify;

    fn classify_request(&self, _: &Req) -> Self::Classifier {
        DefaultClassify
    }
}

impl<Res> Classifier<Res> for DefaultClassify {
    #[inline]
    fn classify(self, result: Result<&Res, &BoxError>) -> Classification {
        match result {
            Ok(_) => Classification::success(),
            Err(e) => Classification::from_error(e),
        }
    }
}

/// A classifier from a closure over the result (the same for every request).
pub fn classify_fn<F>(f: F) -> ClassifyFn<F> {
    ClassifyFn { f }
}

/// A [`Classify`] built from a closure; see [`classify_fn`].
#[derive(Clone, Copy)]
pub struct ClassifyFn<F> {
    f: F,
}

impl<F> fmt::Debug for ClassifyFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClassifyFn").finish_non_exhaustive()
    }
}

impl<Req, Res, F> Classify<Req, Res> for ClassifyFn<F>
where
    F: Fn(Result<&Res, &BoxError>) -> Classification + Clone,
{
    type Classifier = FnClassifier<F, Res>;

    fn classify_request(&self, _: &Req) -> Self::Classifier {
        FnClassifier {
            f: self.f.clone(),
            _res: PhantomData,
        }
    }
}

/// The per-request classifier of a [`ClassifyFn`].
pub struct FnClassifier<F, Res> {
    f: F,
    _res: PhantomData<fn(&Res)>,
}

impl<F, Res> fmt::Debug for FnClassifier<F, Res> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FnClassifier").finish_non_exhaustive()
    }
}

impl<F, Res> Classifier<Res> for FnClassifier<F, Res>
where
    F: Fn(Result<&Res, &BoxError>) -> Classification,
{
    fn classify(self, result: Result<&Res, &BoxError>) -> Classification {
        (self.f)(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rejection::{
        BulkheadFull, Cause, CircuitOpen, DoNotRetry, OverloadReason, Overloaded, Scope,
    };

    fn classify_err(err: impl Into<BoxError>) -> Classification {
        let err: BoxError = err.into();
        Classifier::<()>::classify(DefaultClassify, Err(&err))
    }

    #[test]
    fn responses_are_successes() {
        let c = Classifier::<u8>::classify(DefaultClassify, Ok(&1));
        assert_eq!(c, Classification::success());
        assert!(!c.allows_retry(true));
    }

    #[test]
    fn local_rejections_are_ignored_by_breakers_and_retryable() {
        for err in [
            BoxError::from(BulkheadFull::full()),
            CircuitOpen::new(Duration::from_secs(1)).into(),
            Overloaded::new(OverloadReason::Shed, Duration::from_secs(2)).into(),
        ] {
            let c = Classifier::<()>::classify(DefaultClassify, Err(&err));
            assert_eq!(c.verdict, Verdict::Ignored, "{err}");
            assert_eq!(c.origin, Origin::Local, "{err}");
            // Nothing was sent: safe to retry any request.
            assert!(c.allows_retry(false), "{err}");
        }
        let c = classify_err(Overloaded::new(
            OverloadReason::Drain,
            Duration::from_secs(2),
        ));
        assert!(c.overload);
        assert_eq!(c.delay_hint, Some(Duration::from_secs(2)));
        let c = classify_err(BulkheadFull::full());
        assert!(c.overload, "a full bulkhead is a drop for the shedder");
    }

    #[test]
    fn timeouts_are_failures_and_only_attempt_budget_ones_retry() {
        let c = classify_err(Elapsed::new(Scope::Attempt, Cause::Budget));
        assert_eq!(c.verdict, Verdict::Failure);
        assert!(c.allows_retry(true));
        assert!(!c.allows_retry(false));
        let c = classify_err(Elapsed::new(Scope::Attempt, Cause::Deadline));
        assert_eq!(c.verdict, Verdict::Failure);
        assert!(!c.allows_retry(true));
    }

    #[test]
    fn upstream_errors_are_failures_retried_if_safe() {
        let c = classify_err("connection reset by peer");
        assert_eq!(c.verdict, Verdict::Failure);
        assert_eq!(c.origin, Origin::Upstream);
        assert!(c.allows_retry(true));
        assert!(!c.allows_retry(false));
    }

    #[test]
    fn do_not_retry_mark_blocks_every_retry() {
        let c = classify_err(DoNotRetry::new(BulkheadFull::full()));
        assert!(c.do_not_retry);
        assert!(!c.allows_retry(true));
        assert_eq!(c.verdict, Verdict::Ignored);
    }

    #[test]
    fn status_like_answers_can_be_retryable_without_being_failures() {
        #[derive(Debug)]
        struct Reply(u16);
        let classify = classify_fn(|r: Result<&Reply, &BoxError>| match r {
            Ok(Reply(429)) => Classification::ignored()
                .with_retry(RetryClass::IfSafe)
                .with_overload(true)
                .with_delay_hint(Some(Duration::from_secs(3))),
            Ok(Reply(s)) if *s >= 500 => Classification::failure(),
            Ok(_) => Classification::success(),
            Err(e) => Classification::from_error(e),
        });
        let too_many = classify.classify_request(&"GET").classify(Ok(&Reply(429)));
        assert_ne!(too_many.verdict, Verdict::Failure);
        assert!(too_many.allows_retry(true));
        assert_eq!(too_many.delay_hint, Some(Duration::from_secs(3)));
        let broken = classify.classify_request(&"GET").classify(Ok(&Reply(500)));
        assert_eq!(broken.verdict, Verdict::Failure);
        let fine = classify.classify_request(&"GET").classify(Ok(&Reply(200)));
        assert_eq!(fine.verdict, Verdict::Success);
        assert!(!fine.allows_retry(true));
    }
}
