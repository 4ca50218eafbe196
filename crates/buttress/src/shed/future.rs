//! The response future of [`Shed`](super::Shed).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep, sleep_until};
use tower_service::Service;

use super::state::{Outcome, Permit, Place, Wait};
use crate::classify::{Classification, Classifier, Verdict};
use crate::hold::{HoldResponse, ReleaseAtHead};
use crate::rejection::{Overloaded, Rejection, RejectionKind};
use crate::{BoxError, Priority};

pin_project! {
    /// Resolves to the inner service's answer, or to
    /// [`Overloaded`](super::error::Overloaded) when the call was shed, left the
    /// queue unserved, or arrived while draining.
    ///
    /// It holds the call's permit (or its place in the queue, with the request and a
    /// ready copy of the service): dropping it at any point gives them back. When the
    /// inner service answers, the round trip is recorded and the in-flight permit goes
    /// to the layer's [`HoldResponse`] strategy `H`: by default ([`ReleaseAtHead`]) it
    /// is freed then, at the response head; a strategy such as the HTTP crate's
    /// `HoldUntilBodyEnd` keeps it until the streamed body ends. An error frees it at
    /// once.
    pub struct ResponseFuture<S, Req, F, K, H = ReleaseAtHead> {
        #[pin]
        state: State<S, Req, F, K>,
        hold: H,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, Req, F, K> {
        Running {
            #[pin]
            inner: F,
            // `None` for a disabled layer.
            permit: Option<Permit>,
            classifier: Option<K>,
        },
        // Boxed: the admitted path's future stays small (the timer alone is larger
        // than everything else); a queued call already pays a lock and a timer.
        Queued {
            waiting: Pin<Box<Waiting<S, Req, K>>>,
        },
        Refused {
            error: Option<Overloaded>,
        },
    }
}

pin_project! {
    #[project = WaitingProj]
    struct Waiting<S, Req, K> {
        #[pin]
        sleep: Sleep,
        place: Place,
        priority: Priority,
        service: Option<S>,
        request: Option<Req>,
        classifier: Option<K>,
        deadline: Option<Instant>,
    }
}

impl<S, Req, F, K, H> ResponseFuture<S, Req, F, K, H> {
    pub(super) fn passthrough(inner: F, hold: H) -> Self {
        Self {
            state: State::Running {
                inner,
                permit: None,
                classifier: None,
            },
            hold,
        }
    }

    pub(super) fn running(inner: F, permit: Permit, classifier: K, hold: H) -> Self {
        Self {
            state: State::Running {
                inner,
                permit: Some(permit),
                classifier: Some(classifier),
            },
            hold,
        }
    }

    pub(super) fn queued(
        place: Place,
        until: Instant,
        priority: Priority,
        (service, request): (S, Req),
        classifier: K,
        deadline: Option<Instant>,
        hold: H,
    ) -> Self {
        Self {
            state: State::Queued {
                waiting: Box::pin(Waiting {
                    sleep: sleep_until(until),
                    place,
                    priority,
                    service: Some(service),
                    request: Some(request),
                    classifier: Some(classifier),
                    deadline,
                }),
            },
            hold,
        }
    }

    pub(super) fn refused(error: Overloaded, hold: H) -> Self {
        Self {
            state: State::Refused { error: Some(error) },
            hold,
        }
    }
}

/// Reads an admitted call's outcome for the limit algorithm: overload answers and
/// timeouts are drops; outcomes that say nothing about the callee (a refusal by a
/// layer below, a cancellation) are not samples; anything else is a round trip.
fn outcome<T>(c: Classification, out: &Result<T, BoxError>) -> Outcome {
    if c.overload {
        return Outcome::Dropped;
    }
    if let Err(e) = out {
        let kind = Rejection::find(e.as_ref()).map(|r| r.kind());
        if matches!(kind, Some(RejectionKind::Timeout { .. })) {
            return Outcome::Dropped;
        }
    }
    if c.verdict == Verdict::Ignored {
        Outcome::Ignored
    } else {
        Outcome::Answered
    }
}

impl<S, Req, F, K, H, T, E> Future for ResponseFuture<S, Req, F, K, H>
where
    S: Service<Req, Response = T, Error = E, Future = F>,
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
    K: Classifier<T>,
    H: HoldResponse<T>,
{
    type Output = Result<T, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut state = this.state;
        let hold = &*this.hold;
        // The admitted (and pass-through) path first, kept small enough to inline;
        // the queue and refusals live out of line.
        if let StateProj::Running {
            inner,
            permit,
            classifier,
        } = state.as_mut().project()
        {
            return poll_running(inner, permit, classifier, hold, cx);
        }
        poll_slow(state, hold, cx)
    }
}

#[inline]
fn poll_running<F, K, H, T, E>(
    inner: Pin<&mut F>,
    permit: &mut Option<Permit>,
    classifier: &mut Option<K>,
    hold: &H,
    cx: &mut Context<'_>,
) -> Poll<Result<T, BoxError>>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
    K: Classifier<T>,
    H: HoldResponse<T>,
{
    let mut out = ready!(inner.poll(cx)).map_err(Into::into);
    if let Some(permit) = permit.take() {
        let o = match classifier.take() {
            Some(k) => outcome(k.classify(out.as_ref()), &out),
            None => Outcome::Answered,
        };
        match &mut out {
            // The sample is taken at the head; the place in flight goes to `hold`.
            Ok(res) if !hold.releases_at_head() => hold.hold(res, permit.finish_held(o)),
            _ => permit.finish(o),
        }
    }
    Poll::Ready(out)
}

#[inline(never)]
fn poll_slow<S, Req, F, K, H, T, E>(
    mut state: Pin<&mut State<S, Req, F, K>>,
    hold: &H,
    cx: &mut Context<'_>,
) -> Poll<Result<T, BoxError>>
where
    S: Service<Req, Response = T, Error = E, Future = F>,
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
    K: Classifier<T>,
    H: HoldResponse<T>,
{
    loop {
        match state.as_mut().project() {
            StateProj::Running {
                inner,
                permit,
                classifier,
            } => return poll_running(inner, permit, classifier, hold, cx),
            StateProj::Queued { waiting } => {
                let WaitingProj {
                    sleep,
                    place,
                    priority,
                    service,
                    request,
                    classifier,
                    deadline,
                } = waiting.as_mut().project();
                let wait = match place.shared.poll_wait(place.key, cx.waker()) {
                    Wait::Waiting => {
                        ready!(sleep.poll(cx));
                        place.shared.expire(place.key, *priority)
                    }
                    done => done,
                };
                match wait {
                    // `expire` never answers `Waiting`; poll again if it ever did.
                    Wait::Waiting => return Poll::Pending,
                    Wait::Granted { in_flight } => {
                        place.disarm();
                        let (Some(mut service), Some(request)) = (service.take(), request.take())
                        else {
                            return Poll::Ready(Err(
                                "shed: response future polled after completion".into(),
                            ));
                        };
                        // A waiter's round trip starts when it is served: its time in
                        // the queue is not the callee's.
                        let permit =
                            Permit::new(place.shared.clone(), Instant::now(), in_flight, *deadline);
                        let classifier = classifier.take();
                        let inner = service.call(request);
                        state.set(State::Running {
                            inner,
                            permit: Some(permit),
                            classifier,
                        });
                    }
                    Wait::Refused(e) => {
                        place.disarm();
                        state.set(State::Refused { error: None });
                        return Poll::Ready(Err(e.into()));
                    }
                }
            }
            StateProj::Refused { error } => {
                return Poll::Ready(Err(match error.take() {
                    Some(e) => e.into(),
                    None => "shed: response future polled after completion".into(),
                }));
            }
        }
    }
}

impl<S, Req, F, K, H> fmt::Debug for ResponseFuture<S, Req, F, K, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Running { permit: None, .. } => "passthrough",
            State::Running { .. } => "running",
            State::Queued { .. } => "queued",
            State::Refused { .. } => "refused",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}
