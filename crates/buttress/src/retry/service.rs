use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::time::Instant;
use tower_service::Service;

use super::future::{ResponseFuture, RetryState};
use super::state::{RetryConfig, Shared, budget_for};
use super::{Alternatives, NoAlternatives};
use crate::classify::{Classifier, Classify, DefaultClassify};
use crate::replay::{CloneReplay, Replay};
use crate::{Attempt, BoxError, RequestMeta};

/// Retries retryable outcomes of replayable requests with backoff, within a shared
/// budget and the request's deadline. See the [module docs](super).
#[derive(Debug, Clone)]
pub struct Retry<S, C = DefaultClassify, R = CloneReplay, A = NoAlternatives> {
    inner: S,
    shared: Option<Arc<Shared>>,
    classify: C,
    replay: R,
    alternatives: A,
}

impl<S> Retry<S> {
    /// Wraps `inner` with its own retry state (use [`RetryLayer`](super::RetryLayer)
    /// to share one state between services).
    pub fn new(inner: S, config: RetryConfig) -> Self {
        let shared = Arc::new(Shared::new(config, budget_for(&config), None));
        Self::from_parts(
            inner,
            Some(shared),
            DefaultClassify,
            CloneReplay,
            NoAlternatives,
        )
    }
}

impl<S, C, R, A> Retry<S, C, R, A> {
    pub(crate) fn from_parts(
        inner: S,
        shared: Option<Arc<Shared>>,
        classify: C,
        replay: R,
        alternatives: A,
    ) -> Self {
        Self {
            inner,
            shared,
            classify,
            replay,
            alternatives,
        }
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, C, R, A, Req> Service<Req> for Retry<S, C, R, A>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    C: Classify<Req, S::Response> + Clone,
    R: Replay<Req> + Clone,
    A: Alternatives<Req> + Clone,
    Req: RequestMeta,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, Req, C, R, A>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    // Always inlined: the response future is then built in the caller's frame instead
    // of being returned through memory and copied (a store-forwarding stall that cost
    // more than the rest of the happy path).
    #[inline(always)]
    fn call(&mut self, mut req: Req) -> Self::Future {
        let Some(shared) = &self.shared else {
            return ResponseFuture::passthrough(self.inner.call(req));
        };
        // One clock read per call: the budget deposit's instant, and the attempt's
        // start when the request carries a deadline (the only time the attempt-time
        // estimate is needed, and so the only time it is fed).
        let now = Instant::now();
        shared.budget.deposit(now);
        let max_attempts = shared.max_attempts();
        if max_attempts <= 1 {
            return ResponseFuture::passthrough(self.inner.call(req));
        }
        shared.metrics.attempts.increment(1);
        req.set_attempt(Attempt::FIRST);
        let span = super::future::attempt_span(1);
        // The first attempt sends a copy and the caller's request is kept: each retry's
        // copy is made from it when the retry is sent, so the strategy is asked again
        // after the attempts before it (whether a request can be replayed may change
        // while an attempt streams it: an HTTP body past its buffering cap).
        let Some(first) = self.replay.replay(&req) else {
            // Cannot be replayed: sent once.
            let fut = {
                let _enter = span.as_deref().map(tracing::Span::enter);
                self.inner.call(req)
            };
            return ResponseFuture::single(fut, span);
        };
        let classifier = self.classify.classify_request(&req);
        let safe = classifier.request_is_safe();
        let clock = req.deadline().map(|_| now);
        let fut = {
            let _enter = span.as_deref().map(tracing::Span::enter);
            self.inner.call(first)
        };
        // Built in place, after the call: no intermediate copy of the state.
        ResponseFuture::retrying(
            fut,
            span,
            RetryState {
                shared: shared.clone(),
                service: self.inner.clone(),
                classify: self.classify.clone(),
                replay: self.replay.clone(),
                alternatives: self.alternatives.clone(),
                classifier: Some(classifier),
                safe,
                original: Some(req),
                attempt: 1,
                max_attempts,
                clock,
                tail: None,
            },
        )
    }
}
