//! The response future of [`ContextScope`](super::ContextScope).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use http::{Response, StatusCode};
use pin_project_lite::pin_project;
use tokio::task::futures::TaskLocalFuture;

use super::RequestContext;
use super::service::MarkGaveUp;
use crate::grpc::Code;
use crate::header::{self, GRPC_STATUS};

pin_project! {
    /// Polls the inner future with the request context in scope, then marks the
    /// answer if an outbound call gave up.
    pub struct ResponseFuture<F> {
        #[pin]
        state: State<F>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Scoped { #[pin] inner: TaskLocalFuture<RequestContext, F> },
        Passthrough { #[pin] inner: F },
    }
}

impl<F> std::fmt::Debug for ResponseFuture<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseFuture").finish_non_exhaustive()
    }
}

impl<F> ResponseFuture<F> {
    pub(super) fn scoped(inner: TaskLocalFuture<RequestContext, F>) -> Self {
        Self {
            state: State::Scoped { inner },
        }
    }

    pub(super) fn passthrough(inner: F) -> Self {
        Self {
            state: State::Passthrough { inner },
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: MarkGaveUp,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Passthrough { inner } => inner.poll(cx),
            StateProj::Scoped { mut inner } => {
                let out = ready!(inner.as_mut().poll(cx));
                let gave_up = inner.take_value().is_some_and(|ctx| ctx.gave_up());
                if !gave_up {
                    return Poll::Ready(out);
                }
                Poll::Ready(match out {
                    Ok(mut res) => {
                        if !is_success(&res) {
                            header::mark_gave_up(res.headers_mut());
                        }
                        Ok(res)
                    }
                    Err(e) => Err(e.mark_gave_up()),
                })
            }
        }
    }
}

/// A success needs no mark: nobody retries it. A gRPC answer is a success only when
/// its head says `grpc-status: 0` (a streamed answer's status is still to come).
fn is_success<B>(res: &Response<B>) -> bool {
    let status = res.status();
    if status.as_u16() >= StatusCode::BAD_REQUEST.as_u16() {
        return false;
    }
    if header::is_grpc(res.headers()) {
        return res
            .headers()
            .get(GRPC_STATUS)
            .is_some_and(|v| Code::from_bytes(v.as_bytes()) == Code::Ok);
    }
    true
}
