use std::sync::Arc;
use std::task::{Context, Poll};

use buttress::{Attempt, BoxError, Deadline, RequestMeta};
use http::{HeaderValue, Request, Response};
use tokio::time::Instant;
use tower_service::Service;

use super::config::{InboundDeadlineConfig, OutboundDeadlineConfig};
use super::future::ResponseFuture;
use crate::context::RequestContext;
use crate::header::{self, GRPC_PREVIOUS_RPC_ATTEMPTS, GRPC_TIMEOUT};
use crate::hint;

macro_rules! inner_access {
    () => {
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
    };
}

/// Sets each request's deadline from its headers (server side); see the
/// [module docs](super).
#[derive(Debug, Clone)]
pub struct DeadlineFromHeaders<S> {
    inner: S,
    config: Option<Arc<InboundDeadlineConfig>>,
}

impl<S> DeadlineFromHeaders<S> {
    /// Wraps `inner`; `None` passes requests through.
    pub const fn new(inner: S, config: Option<Arc<InboundDeadlineConfig>>) -> Self {
        Self { inner, config }
    }

    inner_access!();
}

impl<S, B> Service<Request<B>> for DeadlineFromHeaders<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        if let Some(budget) = self.config.as_ref().and_then(|c| c.budget(req.headers())) {
            let now = Instant::now();
            if let Some(at) = now.checked_add(budget) {
                let inbound = Deadline::new(now, at);
                let deadline = req.deadline().map_or(inbound, |d| d.min(inbound));
                req.set_deadline(deadline);
            }
        }
        self.inner.call(req)
    }
}

/// Writes each request's time left and attempt number into its headers (client side);
/// see the [module docs](super).
#[derive(Debug, Clone)]
pub struct DeadlineToHeaders<S> {
    inner: S,
    config: Option<Arc<OutboundDeadlineConfig>>,
}

impl<S> DeadlineToHeaders<S> {
    /// Wraps `inner`; `None` passes requests through.
    pub const fn new(inner: S, config: Option<Arc<OutboundDeadlineConfig>>) -> Self {
        Self { inner, config }
    }

    inner_access!();
}

/// Writes the deadline and attempt headers of one outbound request.
fn write_headers<B>(config: &OutboundDeadlineConfig, req: &mut Request<B>) {
    let grpc = header::is_grpc(req.headers());
    let deadline = match (req.deadline(), RequestContext::current_deadline()) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    if let Some(deadline) = deadline {
        let left = deadline
            .remaining(Instant::now())
            .saturating_sub(config.offset);
        // A sooner value already in the request (tonic's `Request::set_timeout`, the
        // caller's own header) stands: the callee gets the sooner of the two.
        let (name, value) = if grpc {
            (GRPC_TIMEOUT, hint::format_grpc_timeout(left))
        } else {
            (config.header.clone(), hint::format_timeout_ms(left))
        };
        let sooner = req.headers().get(&name).is_some_and(|v| {
            let set = if grpc {
                hint::grpc_timeout(v.as_bytes())
            } else {
                hint::timeout_ms(v.as_bytes())
            };
            set.is_some_and(|set| set <= left)
        });
        if !sooner {
            req.headers_mut().insert(name, value);
        }
    }
    if config.attempts {
        if let Some(attempt) = req.attempt() {
            write_attempt(config, req, attempt, grpc);
        }
    }
}

fn write_attempt<B>(
    config: &OutboundDeadlineConfig,
    req: &mut Request<B>,
    attempt: Attempt,
    grpc: bool,
) {
    if grpc {
        // gRPC sends the header from the second attempt on.
        if attempt.previous() > 0 {
            req.headers_mut().insert(
                GRPC_PREVIOUS_RPC_ATTEMPTS,
                HeaderValue::from(attempt.previous()),
            );
        } else {
            req.headers_mut().remove(GRPC_PREVIOUS_RPC_ATTEMPTS);
        }
    } else {
        req.headers_mut().insert(
            config.attempt_header.clone(),
            HeaderValue::from(attempt.get()),
        );
    }
}

impl<S, B> Service<Request<B>> for DeadlineToHeaders<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        if let Some(config) = &self.config {
            write_headers(config, &mut req);
        }
        self.inner.call(req)
    }
}

/// Gives outbound requests the request context's deadline and reports answers marked
/// do-not-retry to it (client side, outermost); see the [module docs](super).
#[derive(Debug, Clone)]
pub struct InheritContext<S> {
    inner: S,
    enabled: bool,
}

impl<S> InheritContext<S> {
    /// Wraps `inner`; `enabled = false` passes calls through.
    pub const fn new(inner: S, enabled: bool) -> Self {
        Self { inner, enabled }
    }

    inner_access!();
}

impl<S, B, RB> Service<Request<B>> for InheritContext<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Error: Into<BoxError>,
{
    type Response = Response<RB>;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        if !self.enabled {
            return ResponseFuture::new(self.inner.call(req), false);
        }
        if let Some(inherited) = RequestContext::current_deadline() {
            let deadline = req.deadline().map_or(inherited, |d| d.min(inherited));
            req.set_deadline(deadline);
        }
        ResponseFuture::new(self.inner.call(req), true)
    }
}
