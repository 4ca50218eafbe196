//! The response future of [`Hedge`](super::Hedge).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep, sleep_until};
use tower_service::Service;

use super::state::Shared;
use crate::classify::{Classification, Classifier, Classify, Verdict};
use crate::replay::Replay;
use crate::{Attempt, BoxError, RequestMeta};

pin_project! {
    /// Resolves to the first successful answer among the copies sent, or, when every
    /// copy failed, to the last failure.
    ///
    /// Dropping it (or answering) drops every copy still running.
    pub struct ResponseFuture<S, Req, C, R>
    where
        S: Service<Req>,
        C: Classify<Req, S::Response>,
    {
        #[pin]
        primary: Option<S::Future>,
        // Created on the first pending poll, so a fast primary never touches the timer.
        #[pin]
        timer: Option<Sleep>,
        // `None`: a pass-through.
        ctx: Option<Ctx<S, Req, C, R>>,
    }
}

/// What a call needs to send extra copies.
pub(crate) struct Hedging<S, Req, C, R> {
    pub(crate) service: S,
    pub(crate) classify: C,
    pub(crate) replay: R,
    /// The caller's request: each extra copy is made from it when it is sent (never
    /// earlier: the strategy's answer may change while the primary runs). Dropped once
    /// no extra copy is left.
    pub(crate) original: Option<Req>,
    pub(crate) delay: Duration,
    /// Extra copies still allowed.
    pub(crate) left: u32,
    /// Extra copies sent.
    pub(crate) sent: u32,
    pub(crate) base_attempt: u32,
}

/// What only a call whose copies race needs: boxed when the first extra copy goes out
/// (which is boxed then anyway), so the future of a call that is not hedged stays
/// small.
struct Race<F, K, T> {
    /// The primary's classifier, made from the copy.
    primary_classifier: Option<K>,
    extras: Vec<Extra<F, K>>,
    last_failure: Option<Result<T, BoxError>>,
}

type RaceOf<S, Req, C> = Race<
    <S as Service<Req>>::Future,
    <C as Classify<Req, <S as Service<Req>>::Response>>::Classifier,
    <S as Service<Req>>::Response,
>;

struct Extra<F, K> {
    // Extras are only made on the hedging path, where one more request is on its way
    // anyway: a box per copy keeps the future small and unsafe-free.
    fut: Pin<Box<F>>,
    classifier: Option<K>,
    sent_at: Instant,
}

pub(crate) struct Ctx<S, Req, C, R>
where
    S: Service<Req>,
    C: Classify<Req, S::Response>,
{
    shared: Arc<Shared>,
    /// When the primary was sent: read at the call when latencies are sampled,
    /// otherwise on the first pending poll (for the timer).
    start: Option<Instant>,
    sample: bool,
    hedging: Option<Hedging<S, Req, C, R>>,
    race: Option<Box<RaceOf<S, Req, C>>>,
}

impl<S, Req, C, R> Ctx<S, Req, C, R>
where
    S: Service<Req>,
    C: Classify<Req, S::Response>,
{
    #[inline]
    pub(crate) fn new(
        shared: Arc<Shared>,
        start: Option<Instant>,
        hedging: Option<Hedging<S, Req, C, R>>,
    ) -> Self {
        Self {
            shared,
            sample: start.is_some(),
            start,
            hedging,
            race: None,
        }
    }

    fn racing(&self) -> bool {
        self.race.as_ref().is_some_and(|r| !r.extras.is_empty())
    }
}

impl<S, Req, C, R> ResponseFuture<S, Req, C, R>
where
    S: Service<Req>,
    C: Classify<Req, S::Response>,
{
    #[inline]
    pub(super) fn passthrough(fut: S::Future) -> Self {
        Self {
            primary: Some(fut),
            timer: None,
            ctx: None,
        }
    }

    #[inline]
    pub(super) fn hedging(fut: S::Future, ctx: Ctx<S, Req, C, R>) -> Self {
        Self {
            primary: Some(fut),
            timer: None,
            ctx: Some(ctx),
        }
    }
}

fn is_success(c: Classification) -> bool {
    c.verdict == Verdict::Success
}

impl<S, Req, C, R> Future for ResponseFuture<S, Req, C, R>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Classify<Req, S::Response>,
    R: Replay<Req>,
    Req: RequestMeta,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let Some(ctx) = this.ctx.as_mut() else {
            return match this.primary.as_pin_mut() {
                Some(fut) => fut.poll(cx).map_err(Into::into),
                None => Poll::Pending,
            };
        };
        loop {
            if let Some(fut) = this.primary.as_mut().as_pin_mut() {
                if let Poll::Ready(out) = fut.poll(cx) {
                    this.primary.set(None);
                    if !ctx.racing() {
                        // Alone (the usual case): no need to classify.
                        ctx.finish(ctx.start, false);
                        return Poll::Ready(out.map_err(Into::into));
                    }
                    let out = out.map_err(Into::into);
                    let race = ctx.race.as_deref_mut();
                    let success = race
                        .and_then(|r| r.primary_classifier.take())
                        .is_none_or(|c| is_success(c.classify(out.as_ref())));
                    if success {
                        ctx.finish(ctx.start, false);
                        return Poll::Ready(out);
                    }
                    // A failure waits for the copies still running.
                    ctx.record_one(ctx.start);
                    if let Some(race) = ctx.race.as_deref_mut() {
                        race.last_failure = Some(out);
                    }
                }
            }
            if let Some(race) = ctx.race.as_deref_mut() {
                let mut i = 0;
                while i < race.extras.len() {
                    let Poll::Ready(out) = race.extras[i].fut.as_mut().poll(cx) else {
                        i += 1;
                        continue;
                    };
                    let extra = race.extras.swap_remove(i);
                    let out = out.map_err(Into::into);
                    let success = extra
                        .classifier
                        .is_none_or(|c| is_success(c.classify(out.as_ref())));
                    let primary_running = this.primary.is_some();
                    if success || (!primary_running && race.extras.is_empty()) {
                        if success {
                            ctx.shared.record_won();
                            tracing::debug!(target: "buttress::hedge", "an extra copy answered first");
                        }
                        ctx.finish(Some(extra.sent_at), primary_running);
                        return Poll::Ready(out);
                    }
                    record_one(&ctx.shared, ctx.sample, Some(extra.sent_at));
                    race.last_failure = Some(out);
                }
                if this.primary.is_none() && race.extras.is_empty() {
                    // Every copy failed (each path above returns first; kept for safety).
                    return Poll::Ready(
                        race.last_failure
                            .take()
                            .unwrap_or_else(|| Err("buttress hedge: no outcome to return".into())),
                    );
                }
            }
            // The next copy, when its time comes.
            let Some(next_at) = ctx.next_hedge_at() else {
                return Poll::Pending;
            };
            match this.timer.as_mut().as_pin_mut() {
                Some(timer) => {
                    if timer.deadline() != next_at {
                        timer.reset(next_at);
                    }
                }
                None => this.timer.set(Some(sleep_until(next_at))),
            }
            if let Some(timer) = this.timer.as_mut().as_pin_mut() {
                ready!(timer.poll(cx));
            }
            if !ctx.send_hedge(cx) {
                this.timer.set(None);
            }
            // Poll the new copy (or re-check the others).
        }
    }
}

impl<S, Req, C, R> Ctx<S, Req, C, R>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Classify<Req, S::Response>,
    R: Replay<Req>,
    Req: RequestMeta,
{
    /// When the next extra copy is due, if one may still be sent.
    fn next_hedge_at(&mut self) -> Option<Instant> {
        let h = self.hedging.as_ref().filter(|h| h.left > 0)?;
        let after = h.delay.checked_mul(h.sent + 1)?;
        let start = *self.start.get_or_insert_with(Instant::now);
        start.checked_add(after)
    }

    /// Sends one extra copy; `false` (and no more copies for this call) when it cannot
    /// go out.
    fn send_hedge(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(h) = self.hedging.as_mut() else {
            return false;
        };
        let now = Instant::now();
        if let Some(deadline) = h.original.as_ref().and_then(RequestMeta::deadline) {
            let end = now.checked_add(self.shared.expected());
            if end.is_none_or(|end| end > deadline.at()) {
                h.left = 0;
                tracing::debug!(target: "buttress::hedge", "no extra copy: it could not finish before the deadline");
                return false;
            }
        }
        if h.sent == 0 {
            // Only requests safe to repeat are hedged; the primary's classifier is made
            // from the caller's request now, as it is only needed once copies race.
            let Some(original) = h.original.as_ref() else {
                h.left = 0;
                return false;
            };
            let classifier = h.classify.classify_request(original);
            if !classifier.request_is_safe() {
                h.left = 0;
                return false;
            }
            self.race.get_or_insert_with(|| {
                Box::new(Race {
                    primary_classifier: None,
                    extras: Vec::with_capacity(h.left.min(4) as usize),
                    last_failure: None,
                })
            });
            if let Some(race) = self.race.as_deref_mut() {
                race.primary_classifier = Some(classifier);
            }
        }
        // Asked now, not when the call was made: a request can stop being replayable
        // while the primary streams it (an HTTP body carried past its buffering cap),
        // and a copy made earlier could then not deliver it whole. Asked before
        // readiness and the budget, so nothing is taken for a copy that cannot go out.
        let Some(mut req) = h.original.as_ref().and_then(|r| h.replay.replay(r)) else {
            h.left = 0;
            h.original = None;
            tracing::debug!(target: "buttress::hedge", "no extra copy: the request can no longer be replayed");
            return false;
        };
        // Like retries, extra copies never queue behind an inner service that is not
        // ready: that is backpressure, and a copy is extra load.
        match h.service.poll_ready(cx) {
            Poll::Ready(Ok(())) => {}
            Poll::Ready(Err(_)) | Poll::Pending => {
                h.left = 0;
                return false;
            }
        }
        if !self.shared.budget.withdraw(now) {
            h.left = 0;
            self.shared.record_budget_exhausted();
            tracing::debug!(target: "buttress::hedge", "no extra copy: the budget is spent");
            return false;
        }
        h.sent += 1;
        h.left -= 1;
        if h.left == 0 {
            // No extra copy after this one: the caller's request is no longer needed.
            h.original = None;
        }
        req.set_attempt(Attempt::new(h.base_attempt.saturating_add(h.sent)));
        let classifier = h.classify.classify_request(&req);
        let fut = h.service.call(req);
        let race = self.race.get_or_insert_with(|| {
            Box::new(Race {
                primary_classifier: None,
                extras: Vec::new(),
                last_failure: None,
            })
        });
        race.extras.push(Extra {
            fut: Box::pin(fut),
            classifier: Some(classifier),
            sent_at: now,
        });
        self.shared.record_sent();
        tracing::debug!(target: "buttress::hedge", copy = h.sent, "sent an extra copy");
        true
    }
}

impl<S, Req, C, R> Ctx<S, Req, C, R>
where
    S: Service<Req>,
    C: Classify<Req, S::Response>,
{
    /// Records the latency of a copy that failed while others run.
    fn record_one(&self, sent_at: Option<Instant>) {
        record_one(&self.shared, self.sample, sent_at);
    }

    /// Records the latency of the answer returned (sent at `answered`) and, as lower
    /// bounds, the time so far of every copy about to be cancelled: they were slower,
    /// and leaving them out would bias the percentile low.
    fn finish(&self, answered: Option<Instant>, primary_running: bool) {
        if !self.sample {
            return;
        }
        let now = Instant::now();
        let since = |t: Instant| now.saturating_duration_since(t);
        if !self.racing() && !primary_running {
            if let Some(t) = answered {
                self.shared.record(now, &[since(t)]);
            }
            return;
        }
        let mut samples: Vec<Duration> = answered.into_iter().map(since).collect();
        if let Some(race) = &self.race {
            samples.extend(race.extras.iter().map(|e| since(e.sent_at)));
        }
        if primary_running {
            samples.extend(self.start.map(since));
        }
        self.shared.record(now, &samples);
    }
}

/// Records the latency of a copy that failed while others run.
fn record_one(shared: &Shared, sample: bool, sent_at: Option<Instant>) {
    if let (true, Some(sent_at)) = (sample, sent_at) {
        let now = Instant::now();
        shared.record(now, &[now.saturating_duration_since(sent_at)]);
    }
}

impl<S, Req, C, R> fmt::Debug for ResponseFuture<S, Req, C, R>
where
    S: Service<Req>,
    C: Classify<Req, S::Response>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("ResponseFuture");
        d.field("primary_running", &self.primary.is_some());
        if let Some(ctx) = &self.ctx {
            d.field(
                "extras_running",
                &ctx.race.as_ref().map_or(0, |r| r.extras.len()),
            );
            d.field("extras_sent", &ctx.hedging.as_ref().map_or(0, |h| h.sent));
        }
        d.finish_non_exhaustive()
    }
}
