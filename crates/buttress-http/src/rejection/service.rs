use std::convert::Infallible;
use std::task::{Context, Poll};

use buttress::BoxError;
use http::{Request, Response};
use tower_service::Service;

use super::config::{Protocol, RejectionConfig};
use super::future::ResponseFuture;
use super::handler::HandleError;
use crate::body::ResponseBody;

/// Answers buttress rejections (and, through a [`HandleError`], every other error)
/// with responses; see the [module docs](super).
#[derive(Debug)]
pub struct RejectionResponse<S, H> {
    inner: S,
    config: RejectionConfig,
    handler: H,
    /// An error the inner service's `poll_ready` returned, answered on the next call.
    not_ready: Option<BoxError>,
}

impl<S: Clone, H: Clone> Clone for RejectionResponse<S, H> {
    fn clone(&self) -> Self {
        // A clone has not been polled: it starts without a pending error.
        Self::new(self.inner.clone(), self.config, self.handler.clone())
    }
}

impl<S, H> RejectionResponse<S, H> {
    /// Wraps `inner`.
    pub const fn new(inner: S, config: RejectionConfig, handler: H) -> Self {
        Self {
            inner,
            config,
            handler,
            not_ready: None,
        }
    }

    /// The inner service.
    pub const fn get_ref(&self) -> &S {
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

impl<S, H, B, RB> Service<Request<B>> for RejectionResponse<S, H>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Error: Into<BoxError>,
    H: HandleError + Clone,
{
    type Response = Response<ResponseBody<RB>>;
    type Error = Infallible;
    type Future = ResponseFuture<S::Future, H>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        if self.not_ready.is_some() {
            return Poll::Ready(Ok(()));
        }
        // An error here cannot be returned (this service never fails): keep it and
        // answer the next call with it.
        match self.inner.poll_ready(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(())) => Poll::Ready(Ok(())),
            Poll::Ready(Err(e)) => {
                self.not_ready = Some(e.into());
                Poll::Ready(Ok(()))
            }
        }
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let protocol = Protocol::of(req.headers());
        let handler = self.handler.clone();
        match self.not_ready.take() {
            Some(e) => ResponseFuture::failed(e, protocol, self.config, handler),
            None => ResponseFuture::new(self.inner.call(req), protocol, self.config, handler),
        }
    }
}
