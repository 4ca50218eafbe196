use std::sync::Arc;
use std::task::{Context, Poll};

use tower_service::Service;

use super::config::ChaosConfig;
use super::decide::Decision;
use super::fault::{Fault, InjectedFault};
use super::future::ResponseFuture;
use super::state::{ChaosHandle, Shared};
use crate::BoxError;
use crate::rand::Rng;

/// Injects latency, errors and aborts into calls to the inner service. See the
/// [module docs](super).
///
/// # When the inner service is called
///
/// - **Error**: never. The fault is the answer; nothing was sent.
/// - **Abort**: at once. The response future polls the inner future once, drops it
///   and fails with [`Aborted`](super::error::Aborted).
/// - **Latency**: at once, but its future is first polled after the delay. Services
///   whose futures do nothing until polled (async fns, `service_fn`, axum handlers,
///   hyper-util's client) start their work after the delay. Services that act in
///   `call` itself (tower's `Buffer`, channels, tower-test's mock) receive the request
///   at once; the caller still sees the answer no earlier than the delay.
///
/// The alternative, moving the ready service into the future and calling it after
/// the delay, needs `S: Clone`; every stack a `Policy` builds
/// contains a `Chaos` (a pass-through when off), so that bound would fall on every
/// user, and the usual transports under chaos (an HTTP/1 connection, a reconnecting
/// service) are not `Clone`.
#[derive(Debug, Clone)]
pub struct Chaos<S, F = InjectedFault> {
    inner: S,
    shared: Arc<Shared>,
    fault: F,
}

impl<S> Chaos<S> {
    /// Wraps `inner` with fault injection of its own (not shared with any layer).
    /// Prefer a [`ChaosLayer`](super::ChaosLayer), whose services share one state.
    pub fn new(inner: S, config: ChaosConfig) -> Self {
        let rng = Rng::from_seed(config.seed);
        Self::from_parts(inner, Arc::new(Shared::new(config, rng)), InjectedFault)
    }
}

impl<S, F> Chaos<S, F> {
    pub(super) const fn from_parts(inner: S, shared: Arc<Shared>, fault: F) -> Self {
        Self {
            inner,
            shared,
            fault,
        }
    }

    /// Answers injected errors with `fault` instead.
    pub fn with_fault<F2>(self, fault: F2) -> Chaos<S, F2> {
        Chaos::from_parts(self.inner, self.shared, fault)
    }

    /// The handle to this service's fault injection (shared with its layer).
    pub fn handle(&self) -> ChaosHandle {
        ChaosHandle::new(self.shared.clone())
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

impl<S, F, Req> Service<Req> for Chaos<S, F>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    F: Fault<S::Response>,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, S::Response>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        match self.shared.decide() {
            Decision::Pass => ResponseFuture::passthrough(self.inner.call(req)),
            // The inner service stays ready (tower allows not calling a ready
            // service); the next call that passes uses that readiness.
            Decision::Error => ResponseFuture::fault(self.fault.fault()),
            Decision::Abort => ResponseFuture::abort(self.inner.call(req)),
            Decision::Delay(delay) => ResponseFuture::delayed(self.inner.call(req), delay),
        }
    }
}
