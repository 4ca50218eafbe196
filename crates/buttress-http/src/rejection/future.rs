//! The response future of [`RejectionResponse`](super::RejectionResponse).

use std::convert::Infallible;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use buttress::rejection::is_marked_do_not_retry;
use buttress::{BoxError, Rejection};
use http::Response;
use pin_project_lite::pin_project;

use super::config::{Protocol, RejectionConfig};
use super::handler::HandleError;
use crate::body::ResponseBody;
use crate::header;

pin_project! {
    /// Resolves to the inner service's answer, or to the answer for its error.
    pub struct ResponseFuture<F, H> {
        #[pin]
        state: State<F>,
        protocol: Protocol,
        config: RejectionConfig,
        handler: H,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F> {
        Running { #[pin] inner: F },
        Failed { error: Option<BoxError> },
    }
}

impl<F, H> ResponseFuture<F, H> {
    pub(super) fn new(inner: F, protocol: Protocol, config: RejectionConfig, handler: H) -> Self {
        Self {
            state: State::Running { inner },
            protocol,
            config,
            handler,
        }
    }

    pub(super) fn failed(
        error: BoxError,
        protocol: Protocol,
        config: RejectionConfig,
        handler: H,
    ) -> Self {
        Self {
            state: State::Failed { error: Some(error) },
            protocol,
            config,
            handler,
        }
    }
}

impl<F, H> fmt::Debug for ResponseFuture<F, H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResponseFuture")
            .field("protocol", &self.protocol)
            .finish_non_exhaustive()
    }
}

impl<F, H, RB, E> Future for ResponseFuture<F, H>
where
    F: Future<Output = Result<Response<RB>, E>>,
    E: Into<BoxError>,
    H: HandleError,
{
    type Output = Result<Response<ResponseBody<RB>>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let error = match this.state.project() {
            StateProj::Running { inner } => match ready!(inner.poll(cx)) {
                Ok(res) => return Poll::Ready(Ok(res.map(ResponseBody::new))),
                Err(e) => e.into(),
            },
            StateProj::Failed { error } => match error.take() {
                Some(e) => e,
                None => return Poll::Pending,
            },
        };
        Poll::Ready(Ok(answer(error, *this.protocol, this.config, this.handler)))
    }
}

fn answer<RB, H: HandleError>(
    error: BoxError,
    protocol: Protocol,
    config: &RejectionConfig,
    handler: &H,
) -> Response<ResponseBody<RB>> {
    let gave_up = is_marked_do_not_retry(error.as_ref());
    let res = match Rejection::find(error.as_ref()) {
        Some(rejection) => {
            tracing::debug!(target: "buttress::http", kind = ?rejection.kind(), ?protocol, "answering a rejection");
            config.response(rejection, protocol)
        }
        None => handler.handle(error, protocol),
    };
    let mut res = res.map(ResponseBody::full);
    if gave_up {
        header::mark_gave_up(res.headers_mut());
    }
    res
}
