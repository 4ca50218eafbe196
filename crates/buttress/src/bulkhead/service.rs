use std::sync::Arc;
use std::task::{Context, Poll};

use tower_service::Service;

use super::config::BulkheadConfig;
use super::future::ResponseFuture;
use super::handle::BulkheadHandle;
use super::limiter::{Admission, Limiter, Permit, Ticket};
use super::state::Shared;
use crate::hold::{HoldResponse, ReleaseAtHead};
use crate::keyed::{Global, Partition};
use crate::{BoxError, RequestMeta};

/// Limits how many calls run at once, queueing or refusing the rest. See the
/// [module docs](super).
///
/// `poll_ready` is the inner service's: the bulkhead never makes a caller wait for
/// readiness. It decides in `call`, and any refusal comes out of the response future.
/// `H` takes each permit when the response head is ready (by default
/// [`ReleaseAtHead`]: released there); see
/// [`BulkheadLayer::with_hold`](super::BulkheadLayer::with_hold).
#[derive(Debug, Clone)]
pub struct Bulkhead<S, P = Global, H = ReleaseAtHead> {
    inner: S,
    shared: Option<Arc<Shared>>,
    partition: P,
    hold: H,
}

impl<S> Bulkhead<S> {
    /// Wraps `inner` in a bulkhead of its own with `config`. To share one state
    /// between services, make them with one [`BulkheadLayer`](super::BulkheadLayer).
    pub fn new(inner: S, config: BulkheadConfig) -> Self {
        Self::from_parts(
            inner,
            Some(Arc::new(Shared::new(config))),
            Global,
            ReleaseAtHead,
        )
    }
}

impl<S, P, H> Bulkhead<S, P, H> {
    pub(crate) fn from_parts(inner: S, shared: Option<Arc<Shared>>, partition: P, hold: H) -> Self {
        Self {
            inner,
            shared,
            partition,
            hold,
        }
    }

    /// A handle on the bulkhead's state.
    pub fn handle(&self) -> BulkheadHandle {
        BulkheadHandle::new(self.shared.clone())
    }

    /// The inner service.
    pub fn get_ref(&self) -> &S {
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

impl<S, P, H, Req> Service<Req> for Bulkhead<S, P, H>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    P: Partition<Req>,
    H: HoldResponse<S::Response> + Clone,
    Req: RequestMeta,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, Req, H>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        let Some(shared) = &self.shared else {
            return ResponseFuture::running(
                self.inner.call(req),
                Permit::none(),
                self.hold.clone(),
            );
        };
        let keyed;
        let limiter = match self.partition.key(&req) {
            None => &shared.unkeyed,
            Some(key) => {
                keyed = shared.keyed(&key);
                &keyed
            }
        };
        if limiter.try_acquire() {
            // Held before the inner call, so a panicking `call` still releases it.
            let permit = Permit::new(limiter.clone());
            return ResponseFuture::running(self.inner.call(req), permit, self.hold.clone());
        }
        call_slow(&mut self.inner, limiter, req, self.hold.clone())
    }
}

/// Every permit was taken or somebody is queued: queue, refuse, or (observe mode) let
/// the call through.
#[cold]
fn call_slow<S, Req, H>(
    inner: &mut S,
    limiter: &Arc<Limiter>,
    req: Req,
    hold: H,
) -> ResponseFuture<S, Req, H>
where
    S: Service<Req> + Clone,
    Req: RequestMeta,
{
    let permit = match limiter.acquire_slow(req.deadline()) {
        Admission::Permit => Permit::new(limiter.clone()),
        Admission::Shadow => Permit::shadow(limiter.clone()),
        Admission::WouldReject => Permit::none(),
        Admission::Rejected(reason) => return ResponseFuture::rejected(reason, hold),
        Admission::Queued { id, at, reason } => {
            let ticket = Ticket::new(limiter.clone(), id);
            // The caller made `inner` ready for this call: that readiness travels with
            // the call into the queue, and a fresh clone (not yet ready) stays here.
            let fresh = inner.clone();
            let ready = std::mem::replace(inner, fresh);
            return ResponseFuture::queued(ready, req, ticket, at, reason, hold);
        }
    };
    ResponseFuture::running(inner.call(req), permit, hold)
}
