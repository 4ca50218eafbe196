//! The response future of [`Chaos`](super::Chaos).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::{Sleep, sleep};

use super::error::Aborted;
use crate::BoxError;

pin_project! {
    /// Resolves to the inner service's answer, after an injected delay if one was
    /// drawn; or to the injected fault; or, for an injected abort, to
    /// [`Aborted`] once the inner future has been polled once and dropped.
    pub struct ResponseFuture<F, T> {
        #[pin]
        state: State<F, T>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, T> {
        Call {
            #[pin]
            inner: F,
            // Polled to completion before `inner` is first polled.
            #[pin]
            delay: Option<Sleep>,
        },
        Abort {
            #[pin]
            inner: F,
        },
        Fault {
            result: Option<Result<T, BoxError>>,
        },
        Done,
    }
}

impl<F, T> ResponseFuture<F, T> {
    pub(super) const fn passthrough(inner: F) -> Self {
        Self {
            state: State::Call { inner, delay: None },
        }
    }

    pub(super) fn delayed(inner: F, delay: Duration) -> Self {
        Self {
            state: State::Call {
                inner,
                delay: Some(sleep(delay)),
            },
        }
    }

    pub(super) const fn abort(inner: F) -> Self {
        Self {
            state: State::Abort { inner },
        }
    }

    pub(super) const fn fault(result: Result<T, BoxError>) -> Self {
        Self {
            state: State::Fault {
                result: Some(result),
            },
        }
    }
}

impl<F, T, E> Future for ResponseFuture<F, T>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.project().state;
        match state.as_mut().project() {
            StateProj::Call { inner, mut delay } => {
                if let Some(sleep) = delay.as_mut().as_pin_mut() {
                    ready!(sleep.poll(cx));
                    // The timer is done with; do not poll it again.
                    delay.set(None);
                }
                inner.poll(cx).map_err(Into::into)
            }
            StateProj::Abort { inner } => {
                // The request reaches the callee (which may do the work, or all of
                // it if it answers at once), then the connection "resets": whatever
                // it answered is lost, and dropping its future here cancels the rest.
                let _lost = inner.poll(cx);
                state.set(State::Done);
                Poll::Ready(Err(Aborted::new().into()))
            }
            StateProj::Fault { result } => match result.take() {
                Some(result) => Poll::Ready(result),
                None => Poll::Pending,
            },
            StateProj::Done => Poll::Pending,
        }
    }
}

impl<F, T> fmt::Debug for ResponseFuture<F, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Call { delay: None, .. } => "call",
            State::Call { delay: Some(_), .. } => "delayed",
            State::Abort { .. } => "abort",
            State::Fault { .. } => "fault",
            State::Done => "done",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}
