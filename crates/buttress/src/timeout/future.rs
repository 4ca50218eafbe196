//! The response future of [`Timeout`](super::Timeout).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep, sleep_until};

use crate::BoxError;
use crate::rejection::Elapsed;

pin_project! {
    /// Resolves to the inner service's answer, or [`Elapsed`] if the timeout fires
    /// first.
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    #[derive(Debug)]
    enum State<F> {
        Running {
            #[pin]
            inner: F,
            #[pin]
            sleep: Option<Sleep>,
            elapsed: Elapsed,
        },
        Expired {
            elapsed: Option<Elapsed>,
        },
    }
}

impl<F> ResponseFuture<F> {
    pub(super) fn new(inner: F, at: Instant, elapsed: Elapsed) -> Self {
        Self {
            state: State::Running {
                inner,
                sleep: Some(sleep_until(at)),
                elapsed,
            },
        }
    }

    pub(super) fn passthrough(inner: F) -> Self {
        Self {
            state: State::Running {
                inner,
                sleep: None,
                // Never returned: there is no timer to fire.
                elapsed: Elapsed::new(
                    crate::rejection::Scope::Total,
                    crate::rejection::Cause::Budget,
                ),
            },
        }
    }

    pub(super) fn expired(elapsed: Elapsed) -> Self {
        Self {
            state: State::Expired {
                elapsed: Some(elapsed),
            },
        }
    }
}

impl<F, T, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Running {
                inner,
                sleep,
                elapsed,
            } => {
                if let Poll::Ready(out) = inner.poll(cx) {
                    return Poll::Ready(out.map_err(Into::into));
                }
                if let Some(sleep) = sleep.as_pin_mut() {
                    ready!(sleep.poll(cx));
                    return Poll::Ready(Err(Box::new(*elapsed)));
                }
                Poll::Pending
            }
            StateProj::Expired { elapsed } => match elapsed.take() {
                Some(e) => Poll::Ready(Err(Box::new(e))),
                None => Poll::Pending,
            },
        }
    }
}
