use std::convert::Infallible;
use std::task::{Context, Poll};

use buttress::rejection::{DoNotRetry, is_marked_do_not_retry};
use buttress::{BoxError, RequestMeta};
use http::{Request, Response};
use tower_service::Service;

use super::RequestContext;
use super::future::ResponseFuture;

/// Scopes a [`RequestContext`] over each call and marks answers when an outbound call
/// gave up; see the [module docs](super).
#[derive(Debug, Clone)]
pub struct ContextScope<S> {
    inner: S,
    enabled: bool,
}

impl<S> ContextScope<S> {
    /// Wraps `inner`; `enabled = false` passes calls through untouched.
    pub const fn new(inner: S, enabled: bool) -> Self {
        Self { inner, enabled }
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

/// Errors that can carry the do-not-retry mark, so [`ContextScope`] keeps its inner
/// service's error type: [`BoxError`] (wrapped in
/// [`DoNotRetry`](buttress::rejection::DoNotRetry)) and [`Infallible`] (axum's
/// handlers, which answer every error with a response).
pub trait MarkGaveUp: Sized {
    /// The error with the mark.
    fn mark_gave_up(self) -> Self;
}

impl MarkGaveUp for BoxError {
    fn mark_gave_up(self) -> Self {
        if is_marked_do_not_retry(self.as_ref()) {
            self
        } else {
            Box::new(DoNotRetry::new(self))
        }
    }
}

impl MarkGaveUp for Infallible {
    fn mark_gave_up(self) -> Self {
        self
    }
}

impl<S, B, RB> Service<Request<B>> for ContextScope<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Error: MarkGaveUp,
{
    type Response = Response<RB>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        if !self.enabled {
            return ResponseFuture::passthrough(self.inner.call(req));
        }
        let ctx = RequestContext::new(req.deadline());
        // Some services do their work in `call`: scope it too.
        let inner = &mut self.inner;
        let fut = ctx.clone().sync_scope(|| inner.call(req));
        ResponseFuture::scoped(ctx.scope(fut))
    }
}
