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

pin_project! {
    /// Resolves to the inner service's answer, or to the bulkhead's refusal.
    ///
    /// It holds the call's permit (or queue place) and releases it when the inner
    /// service answers (at the response head: a streaming body is not covered) or
    /// when the future is dropped, at any point, queued or running. Holding a permit
    /// until a body ends takes a body wrapper, which the HTTP crate provides.
    ///
    /// A queued call keeps the readiness the inner service granted before `call`:
    /// the ready service moves into this future and is called once a permit is
    /// granted. For an inner service that reserves capacity in `poll_ready`, up to
    /// `queue.size` such reservations are held by waiting calls.
    pub struct ResponseFuture<S, Req>
    where
        S: Service<Req>,
    {
        #[pin]
        state: State<S, Req>,
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

impl<S, Req> ResponseFuture<S, Req>
where
    S: Service<Req>,
{
    #[inline]
    pub(super) fn running(fut: S::Future, permit: Permit) -> Self {
        Self {
            state: State::Running { fut, permit },
        }
    }

    pub(super) fn rejected(reason: Reason) -> Self {
        Self {
            state: State::Rejected {
                reason: Some(reason),
            },
        }
    }

    pub(super) fn queued(
        svc: S,
        req: Req,
        ticket: Ticket,
        at: Option<Instant>,
        reason: Reason,
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
        }
    }
}

impl<S, Req> Future for ResponseFuture<S, Req>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
{
    type Output = Result<S::Response, BoxError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let mut state = self.as_mut().project().state;
            let (permit, call) = match state.as_mut().project() {
                StateProj::Running { fut, permit } => {
                    let out = ready!(fut.poll(cx));
                    permit.release();
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

impl<S, Req> fmt::Debug for ResponseFuture<S, Req>
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
