use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;
use tower_service::Service;

use super::future::ResponseFuture;
use crate::rejection::{Cause, Elapsed, Scope};
use crate::{BoxError, Deadline, RequestMeta};

/// Fails a call that does not finish before its budget or the request's deadline,
/// whichever comes first. See the [module docs](super).
#[derive(Debug, Clone)]
pub struct Timeout<S> {
    inner: S,
    budget: Option<Duration>,
    scope: Scope,
    propagate: bool,
}

impl<S> Timeout<S> {
    /// Wraps `inner` with a timeout of `scope`; `None` passes calls through, honouring
    /// only a carried deadline.
    pub const fn new(inner: S, scope: Scope, budget: Option<Duration>) -> Self {
        Self {
            inner,
            budget,
            scope,
            propagate: true,
        }
    }

    /// Whether the enforced deadline is written onto the request (default `true`).
    #[must_use]
    pub const fn propagate(mut self, propagate: bool) -> Self {
        self.propagate = propagate;
        self
    }

    /// The budget, if any.
    pub const fn budget(&self) -> Option<Duration> {
        self.budget
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

impl<S, Req> Service<Req> for Timeout<S>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    Req: RequestMeta,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, mut req: Req) -> Self::Future {
        let carried = req.deadline();
        let Some(budget) = self.budget else {
            // No budget of our own: enforce the carried deadline, if any, without
            // reading the clock.
            return match carried {
                Some(d) => ResponseFuture::new(
                    self.inner.call(req),
                    d.at(),
                    Elapsed::new(self.scope, Cause::Deadline),
                ),
                None => ResponseFuture::passthrough(self.inner.call(req)),
            };
        };
        let now = Instant::now();
        let own = now.checked_add(budget);
        let (at, cause) = match (own, carried) {
            (Some(own), Some(d)) if d.at() < own => (d.at(), Cause::Deadline),
            (Some(own), _) => (own, Cause::Budget),
            // A budget too large to represent: only the carried deadline can fire.
            (None, Some(d)) => (d.at(), Cause::Deadline),
            (None, None) => return ResponseFuture::passthrough(self.inner.call(req)),
        };
        let elapsed = Elapsed::new(self.scope, cause);
        if at <= now {
            // Already too late: do not start work that cannot finish.
            return ResponseFuture::expired(elapsed);
        }
        if self.propagate {
            let started = carried.map_or(now, |d| d.started());
            req.set_deadline(Deadline::new(started, at));
        }
        ResponseFuture::new(self.inner.call(req), at, elapsed)
    }
}
