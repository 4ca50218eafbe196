//! The response future of [`Retry`](super::Retry).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep, sleep_until};
use tower_service::Service;
use tracing::Span;

use super::Alternatives;
use super::state::{GiveUp, Shared};
use crate::backoff::Delays;
use crate::classify::{Classification, Classifier, Classify};
use crate::rejection::DoNotRetry;
use crate::replay::Replay;
use crate::{Attempt, BoxError, RequestMeta};

/// The span every attempt runs in: target `buttress::retry`, level DEBUG, field
/// `attempt`.
///
/// Without a subscriber interested in DEBUG for this target the span is disabled after
/// one relaxed atomic load (tracing's global max level) and nothing is kept. An enabled
/// span is boxed: it keeps the response future small for everyone else, and a
/// subscriber that records spans allocates per span anyway.
#[inline]
pub(crate) fn attempt_span(attempt: u32) -> AttemptSpan {
    let span = tracing::debug_span!(target: "buttress::retry", "attempt", attempt);
    if span.is_disabled() {
        None
    } else {
        Some(Box::new(span))
    }
}

/// An attempt's span, when enabled.
pub(crate) type AttemptSpan = Option<Box<Span>>;

#[inline]
fn enter(span: &AttemptSpan) -> Option<tracing::span::Entered<'_>> {
    span.as_deref().map(Span::enter)
}

pin_project! {
    /// Resolves to the first outcome that is not retried: a success, a non-retryable
    /// answer, or (once attempts, budget or deadline run out) the last real answer,
    /// marked do-not-retry.
    ///
    /// Dropping it cancels the attempt in flight or the backoff sleep.
    pub struct ResponseFuture<S, Req, C, R, A>
    where
        S: Service<Req>,
        C: Classify<Req, S::Response>,
    {
        #[pin]
        kind: Kind<S::Future, RetryState<S, Req, C, R, A>>,
        span: AttemptSpan,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, T> {
        // Nothing to retry: the inner future, errors boxed.
        Passthrough {
            #[pin]
            fut: F,
        },
        Retrying {
            #[pin]
            state: State<F>,
            ctx: T,
        },
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        // An attempt is in flight.
        Calling {
            #[pin]
            fut: F,
        },
        // Backing off before the next attempt (the timer is in the retry tail).
        Waiting,
        // The next attempt is due: check readiness, deadline and budget, then send.
        Ready,
        Done,
    }
}

pin_project! {
    /// What only a call that retries needs: boxed on its first retry, so the future
    /// of a call that succeeds at once stays small (it is moved a few times per call).
    pub(crate) struct Tail<T> {
        delays: Delays,
        // The outcome being retried, returned if the retry never goes out.
        last: Option<Result<T, BoxError>>,
        #[pin]
        sleep: Sleep,
    }
}

/// Everything a call needs to retry.
pub(crate) struct RetryState<S, Req, C, R, A>
where
    S: Service<Req>,
    C: Classify<Req, S::Response>,
{
    pub(crate) shared: Arc<Shared>,
    pub(crate) service: S,
    pub(crate) classify: C,
    pub(crate) replay: R,
    pub(crate) alternatives: A,
    pub(crate) classifier: Option<C::Classifier>,
    pub(crate) safe: bool,
    /// The caller's request: each retry sends a copy of it, made when the retry is
    /// sent (never earlier: the strategy's answer may change while an attempt runs).
    /// Dropped once no attempt is left.
    pub(crate) original: Option<Req>,
    pub(crate) attempt: u32,
    pub(crate) max_attempts: u32,
    /// Only when the request carries a deadline (the copy carries it too): while an
    /// attempt is in flight, when it started (its duration feeds the estimate); once
    /// it answered, when it ended.
    pub(crate) clock: Option<Instant>,
    pub(crate) tail: Option<Pin<Box<Tail<S::Response>>>>,
}

enum Step<T> {
    Return(Result<T, BoxError>),
    Sleep,
    Now,
}

impl<S, Req, C, R, A> ResponseFuture<S, Req, C, R, A>
where
    S: Service<Req>,
    C: Classify<Req, S::Response>,
{
    pub(super) fn passthrough(fut: S::Future) -> Self {
        Self::single(fut, None)
    }

    pub(super) fn single(fut: S::Future, span: AttemptSpan) -> Self {
        Self {
            kind: Kind::Passthrough { fut },
            span,
        }
    }

    pub(super) fn retrying(
        fut: S::Future,
        span: AttemptSpan,
        ctx: RetryState<S, Req, C, R, A>,
    ) -> Self {
        Self {
            kind: Kind::Retrying {
                state: State::Calling { fut },
                ctx,
            },
            span,
        }
    }
}

impl<S, Req, C, R, A> Future for ResponseFuture<S, Req, C, R, A>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Classify<Req, S::Response>,
    R: Replay<Req>,
    A: Alternatives<Req>,
    Req: RequestMeta,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        match this.kind.project() {
            KindProj::Passthrough { fut } => {
                let _enter = enter(this.span);
                fut.poll(cx).map_err(Into::into)
            }
            KindProj::Retrying { mut state, ctx } => loop {
                match state.as_mut().project() {
                    StateProj::Calling { fut } => {
                        let out = {
                            let _enter = enter(this.span);
                            ready!(fut.poll(cx))
                        };
                        // Classified by reference, each arm on its own: on the happy
                        // path the answer goes straight back to the caller.
                        let (out, class) = match out {
                            Ok(res) => match ctx.retryable(Ok(&res)) {
                                None => {
                                    state.set(State::Done);
                                    return Poll::Ready(Ok(res));
                                }
                                Some(class) => (Ok(res), class),
                            },
                            Err(e) => {
                                let e: BoxError = e.into();
                                match ctx.retryable(Err(&e)) {
                                    None => {
                                        state.set(State::Done);
                                        return Poll::Ready(Err(e));
                                    }
                                    Some(class) => (Err(e), class),
                                }
                            }
                        };
                        match ctx.after_retryable(out, class) {
                            Step::Return(out) => {
                                state.set(State::Done);
                                return Poll::Ready(out);
                            }
                            Step::Sleep => state.set(State::Waiting),
                            Step::Now => state.set(State::Ready),
                        }
                    }
                    StateProj::Waiting => {
                        if let Some(tail) = ctx.tail.as_mut() {
                            ready!(tail.as_mut().project().sleep.poll(cx));
                        }
                        state.set(State::Ready);
                    }
                    StateProj::Ready => match ctx.start_retry(cx) {
                        Ok((fut, span)) => {
                            *this.span = span;
                            state.set(State::Calling { fut });
                        }
                        Err(out) => {
                            state.set(State::Done);
                            return Poll::Ready(out);
                        }
                    },
                    // Polled after completion.
                    StateProj::Done => return Poll::Pending,
                }
            },
        }
    }
}

impl<S, Req, C, R, A> RetryState<S, Req, C, R, A>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Classify<Req, S::Response>,
    R: Replay<Req>,
    A: Alternatives<Req>,
    Req: RequestMeta,
{
    /// Feeds the attempt-time estimate and classifies an attempt's outcome: `None`
    /// when it is to be returned as it is.
    #[inline]
    fn retryable(&mut self, out: Result<&S::Response, &BoxError>) -> Option<Classification> {
        if let Some(start) = self.clock {
            let now = Instant::now();
            self.shared
                .estimate
                .record(now.saturating_duration_since(start));
            self.clock = Some(now);
        }
        let class = self.classifier.take()?.classify(out);
        class.allows_retry(self.safe).then_some(class)
    }

    /// Decides what follows a retryable outcome.
    fn after_retryable(
        &mut self,
        out: Result<S::Response, BoxError>,
        class: Classification,
    ) -> Step<S::Response> {
        let now = self.clock.take();
        if self.attempt >= self.max_attempts {
            return Step::Return(self.give_up(out, GiveUp::Attempts));
        }
        let Some(original) = self.original.as_ref() else {
            return Step::Return(self.give_up(out, GiveUp::NotReplayable));
        };
        let now = now.unwrap_or_else(Instant::now);
        let (backoff, cap) = {
            let settings = self.shared.settings();
            let cap = settings.config.retry_after_cap;
            if class.delay_hint.is_some_and(|hint| hint > cap) {
                drop(settings);
                return Step::Return(self.give_up(out, GiveUp::RetryAfter));
            }
            let tail = self.tail.get_or_insert_with(|| {
                Box::pin(Tail {
                    delays: settings.config.backoff.delays(),
                    last: None,
                    sleep: sleep_until(now),
                })
            });
            (
                tail.as_mut().project().delays.next_delay(&settings.rng),
                cap,
            )
        };
        let delay = match class.delay_hint {
            // Another endpoint can take it now: the balancer routes around the one
            // that asked for the delay.
            Some(hint) if hint <= cap && !self.alternatives.has_alternative(original) => {
                backoff.max(hint)
            }
            _ => backoff,
        };
        if let Some(deadline) = original.deadline() {
            if !fits(now, delay, self.shared.expected_attempt(), deadline.at()) {
                return Step::Return(self.give_up(out, GiveUp::Deadline));
            }
        }
        // A look before sleeping: no point making the caller wait for a retry the
        // budget will refuse. The token itself is taken when the retry is sent.
        if self.shared.budget.snapshot(now).available == 0 {
            return Step::Return(self.give_up(out, GiveUp::Budget));
        }
        // A delay past the end of time (a huge configured maximum) cannot be slept.
        let Some(wake) = now.checked_add(delay) else {
            return Step::Return(self.give_up(out, GiveUp::Deadline));
        };
        let Some(tail) = self.tail.as_mut() else {
            return Step::Return(out);
        };
        let mut tail = tail.as_mut().project();
        *tail.last = Some(out);
        if delay.is_zero() {
            Step::Now
        } else {
            tracing::debug!(target: "buttress::retry", attempt = self.attempt, ?delay, "backing off");
            tail.sleep.as_mut().reset(wake);
            Step::Sleep
        }
    }

    /// Sends the next attempt, or returns the last outcome if it cannot go out.
    fn start_retry(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Result<(S::Future, AttemptSpan), Result<S::Response, BoxError>> {
        // Asked now, not when the attempt before was sent: a request can stop being
        // replayable while an attempt streams it (an HTTP body carried past its
        // buffering cap), and a copy made earlier could then not deliver it whole.
        // Asked first, so nothing (readiness, a budget token) is taken for a retry
        // that cannot go out.
        let Some(mut req) = self
            .original
            .as_ref()
            .and_then(|original| self.replay.replay(original))
        else {
            return Err(self.give_up_last(GiveUp::NotReplayable));
        };
        // Retries never queue behind an inner service that is not ready: that is
        // backpressure (a full concurrency limit, a closed breaker gate, a full
        // buffer), and a retry is extra load by definition. Shed it and return the
        // last answer, as linkerd does.
        match self.service.poll_ready(cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(e)) => {
                let e: BoxError = e.into();
                tracing::debug!(target: "buttress::retry", error = %e, "inner service failed before a retry");
                return Err(self.give_up_last(GiveUp::NotReady));
            }
            Poll::Pending => return Err(self.give_up_last(GiveUp::NotReady)),
        }
        let now = Instant::now();
        let deadline = req.deadline();
        if let Some(deadline) = deadline {
            if !fits(
                now,
                Duration::ZERO,
                self.shared.expected_attempt(),
                deadline.at(),
            ) {
                return Err(self.give_up_last(GiveUp::Deadline));
            }
        }
        if !self.shared.budget.withdraw(now) {
            return Err(self.give_up_last(GiveUp::Budget));
        }
        self.attempt += 1;
        if self.attempt >= self.max_attempts {
            // No attempt after this one: the caller's request is no longer needed.
            self.original = None;
        }
        req.set_attempt(Attempt::new(self.attempt));
        let classifier = self.classify.classify_request(&req);
        self.safe = classifier.request_is_safe();
        self.classifier = Some(classifier);
        self.clock = deadline.map(|_| now);
        if let Some(tail) = self.tail.as_mut() {
            *tail.as_mut().project().last = None;
        }
        self.shared.metrics.attempts.increment(1);
        self.shared.record_retry();
        let span = attempt_span(self.attempt);
        let fut = {
            let _enter = enter(&span);
            tracing::debug!(target: "buttress::retry", attempt = self.attempt, "retrying");
            self.service.call(req)
        };
        Ok((fut, span))
    }

    fn give_up_last(&mut self, reason: GiveUp) -> Result<S::Response, BoxError> {
        let last = self
            .tail
            .as_mut()
            .and_then(|t| t.as_mut().project().last.take());
        match last {
            Some(out) => self.give_up(out, reason),
            // Every path into the Ready state stores the outcome first.
            None => Err("buttress retry: no outcome to return".into()),
        }
    }

    /// Returns `out`, marked so that no retry layer above retries it again.
    fn give_up(
        &self,
        out: Result<S::Response, BoxError>,
        reason: GiveUp,
    ) -> Result<S::Response, BoxError> {
        self.shared.record_gave_up(reason);
        tracing::debug!(
            target: "buttress::retry",
            attempts = self.attempt,
            reason = reason.as_str(),
            "giving up: returning the last outcome, marked do-not-retry"
        );
        match out {
            Ok(mut res) => {
                self.classify.mark_gave_up(&mut res);
                Ok(res)
            }
            Err(e) => Err(Box::new(DoNotRetry::new(e))),
        }
    }
}

/// Whether an attempt started at `now + delay`, taking `expected`, ends by the
/// deadline.
fn fits(now: Instant, delay: Duration, expected: Duration, deadline: Instant) -> bool {
    now.checked_add(delay)
        .and_then(|t| t.checked_add(expected))
        .is_some_and(|end| end <= deadline)
}

impl<S, Req, C, R, A> fmt::Debug for ResponseFuture<S, Req, C, R, A>
where
    S: Service<Req>,
    C: Classify<Req, S::Response>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.kind {
            Kind::Passthrough { .. } => "passthrough",
            Kind::Retrying { state, ctx } => match state {
                State::Calling { .. } if ctx.attempt == 1 => "first attempt",
                State::Calling { .. } => "retry in flight",
                State::Waiting => "backing off",
                State::Ready => "retry due",
                State::Done => "done",
            },
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish_non_exhaustive()
    }
}
