//! The response future of [`Bulkhead`](super::Bulkhead).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep, sleep_until};
use tower_service::Service;

use super::limiter::{Permit, Reason, Ticket};
use crate::BoxError;
use crate::hold::{HoldResponse, ReleaseAtHead};

pin_project! {
    /// Resolves to the inner service's answer, or to the bulkhead's refusal.
    ///
    /// It holds the call's permit (or queue place) until the inner service answers,
    /// and releases it if the future is dropped first, at any point, queued or
    /// running. When the inner service answers, the permit goes to the layer's
    /// [`HoldResponse`] strategy `H`: by default ([`ReleaseAtHead`]) it is released
    /// then, at the response head; a strategy such as the HTTP crate's
    /// `HoldUntilBodyEnd` keeps it until the streamed body ends. An error releases it
    /// at once.
    ///
    /// A queued call keeps the readiness the inner service granted before `call`:
    /// the ready service moves into this future and is called once a permit is
    /// granted. For an inner service that reserves capacity in `poll_ready`, up to
    /// `queue.size` such reservations are held by waiting calls.
    pub struct ResponseFuture<S, Req, H = ReleaseAtHead>
    where
        S: Service<Req>,
    {
        #[pin]
        state: State<S, Req>,
        hold: H,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, Req>
    where
        S: Service<Req>,
    {
        Running {
            #[pin]
            fut: S::Future,
            permit: Permit,
        },
        // Boxed: the slow path only, and it keeps the common future small.
        Queued {
            queued: Pin<Box<Queued<S, Req>>>,
        },
        Rejected {
            reason: Option<Reason>,
        },
    }
}

pin_project! {
    struct Queued<S, Req> {
        call: Option<(S, Req)>,
        ticket: Ticket,
        #[pin]
        sleep: Option<Sleep>,
        reason: Reason,
    }
}

impl<S, Req, H> ResponseFuture<S, Req, H>
where
    S: Service<Req>,
{
    #[inline]
    pub(super) fn running(fut: S::Future, permit: Permit, hold: H) -> Self {
        Self {
            state: State::Running { fut, permit },
            hold,
        }
    }

    pub(super) fn rejected(reason: Reason, hold: H) -> Self {
        Self {
            state: State::Rejected {
                reason: Some(reason),
            },
            hold,
        }
    }

    pub(super) fn queued(
        svc: S,
        req: Req,
        ticket: Ticket,
        at: Option<Instant>,
        reason: Reason,
        hold: H,
    ) -> Self {
        Self {
            state: State::Queued {
                queued: Box::pin(Queued {
                    call: Some((svc, req)),
                    ticket,
                    sleep: at.map(sleep_until),
                    reason,
                }),
            },
            hold,
        }
    }
}

impl<S, Req, H> Future for ResponseFuture<S, Req, H>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    H: HoldResponse<S::Response>,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let this = self.as_mut().project();
            let mut state = this.state;
            let (permit, call) = match state.as_mut().project() {
                StateProj::Running { fut, permit } => {
                    let mut out = ready!(fut.poll(cx));
                    match &mut out {
                        // The whole permit goes: wherever it is dropped, it is
                        // released once.
                        Ok(res) if permit.is_held() => {
                            this.hold
                                .hold(res, std::mem::replace(permit, Permit::none()));
                        }
                        _ => permit.release(),
                    }
                    return Poll::Ready(out.map_err(Into::into));
                }
                StateProj::Rejected { reason } => {
                    return match reason.take() {
                        Some(reason) => Poll::Ready(Err(reason.into_error())),
                        None => Poll::Pending,
                    };
                }
                StateProj::Queued { queued } => {
                    let q = queued.as_mut().project();
                    let permit = match q.ticket.poll_granted(cx) {
                        Poll::Ready(permit) => permit,
                        Poll::Pending => {
                            match q.sleep.as_pin_mut() {
                                Some(sleep) => ready!(sleep.poll(cx)),
                                None => return Poll::Pending,
                            }
                            match q.ticket.give_up(*q.reason) {
                                // Granted just as the timer fired: serve it.
                                Some(permit) => permit,
                                None => {
                                    let reason = *q.reason;
                                    state.set(State::Rejected { reason: None });
                                    return Poll::Ready(Err(reason.into_error()));
                                }
                            }
                        }
                    };
                    (permit, q.call.take())
                }
            };
            let Some((mut svc, req)) = call else {
                // Unreachable: a queued call is taken once, as it leaves this state.
                return Poll::Pending;
            };
            let fut = svc.call(req);
            state.set(State::Running { fut, permit });
        }
    }
}

impl<S, Req, H> fmt::Debug for ResponseFuture<S, Req, H>
where
    S: Service<Req>,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Running { .. } => "running",
            State::Queued { .. } => "queued",
            State::Rejected { .. } => "rejected",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}
