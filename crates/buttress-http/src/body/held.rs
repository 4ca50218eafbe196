use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};

use http::{Request, Response};
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;

use buttress::hold::HoldResponse;

use super::guard::{BodyEnd, GuardBody, Hold, OnBodyEnd};

trait ErasedGuard: Send {
    fn end(self: Box<Self>, end: BodyEnd<'_>);
}

impl<G: OnBodyEnd + Send> ErasedGuard for G {
    fn end(self: Box<Self>, end: BodyEnd<'_>) {
        (*self).on_end(end);
    }
}

/// Guards left in a response's extensions, to be held until its body ends.
///
/// For layers whose response type must stay the same (a generic layer cannot change
/// the body type of an `http::Response` it knows nothing about): the layer calls
/// [`HeldGuards::hold`] with its permit or sample guard, and [`HoldBodyLayer`],
/// outermost, moves every held guard into a [`GuardBody`]. Without a `HoldBodyLayer`
/// the guards are released when the response (and so its extensions) is dropped, that
/// is, when the head is written: no worse than not holding them at all.
///
/// ```
/// use buttress_http::body::{HeldGuards, Hold};
///
/// let mut res = http::Response::new(());
/// HeldGuards::hold(&mut res, Hold("a permit"));
/// assert_eq!(res.extensions().get::<HeldGuards>().unwrap().len(), 1);
/// ```
#[derive(Clone, Default)]
pub struct HeldGuards {
    guards: Arc<Mutex<Vec<Box<dyn ErasedGuard>>>>,
}

impl HeldGuards {
    /// Leaves `guard` in `res`'s extensions, to be held until its body ends.
    pub fn hold<B>(res: &mut Response<B>, guard: impl OnBodyEnd + Send + 'static) {
        let ext = res.extensions_mut();
        match ext.get_mut::<HeldGuards>() {
            Some(held) => held.push(guard),
            None => {
                let held = HeldGuards::default();
                held.push(guard);
                ext.insert(held);
            }
        }
    }

    /// Adds a guard.
    pub fn push(&self, guard: impl OnBodyEnd + Send + 'static) {
        self.lock().push(Box::new(guard));
    }

    /// How many guards are held.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no guard is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Box<dyn ErasedGuard>>> {
        self.guards.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl OnBodyEnd for HeldGuards {
    fn on_end(self, end: BodyEnd<'_>) {
        // Take them out first: a guard's callback must not run under the lock.
        let guards = std::mem::take(&mut *self.lock());
        for g in guards {
            g.end(end);
        }
    }
}

impl fmt::Debug for HeldGuards {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HeldGuards")
            .field("len", &self.len())
            .finish()
    }
}

/// A [`HoldResponse`] strategy for `http::Response`s: leaves each guard (a shed or
/// bulkhead permit) in the response's [`HeldGuards`], so that a [`HoldBodyLayer`]
/// above moves it into the body, which drops it when the body ends (complete, failed
/// or dropped unread). [`HttpPolicy::server_layer`](crate::HttpPolicy::server_layer)
/// uses it; give it to a core layer yourself with `with_hold`:
///
/// ```
/// use buttress::bulkhead::{BulkheadConfig, BulkheadLayer};
/// use buttress_http::body::{HoldBodyLayer, HoldUntilBodyEnd};
/// use tower::ServiceBuilder;
///
/// let layers = ServiceBuilder::new()
///     .layer(HoldBodyLayer::new()) // outside: moves the permits into the body
///     .layer(BulkheadLayer::new(BulkheadConfig::new(8)).with_hold(HoldUntilBodyEnd));
/// # let _ = layers;
/// ```
///
/// Without a `HoldBodyLayer` above it, the guards live as long as the response's
/// extensions (released when the head is written).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct HoldUntilBodyEnd;

impl<B> HoldResponse<Response<B>> for HoldUntilBodyEnd {
    fn hold<G: Send + 'static>(&self, res: &mut Response<B>, guard: G) {
        HeldGuards::hold(res, Hold(guard));
    }
}

/// Moves the [`HeldGuards`] of each response into its body; see [`HeldGuards`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HoldBodyLayer {
    _private: (),
}

impl HoldBodyLayer {
    /// The layer.
    pub const fn new() -> Self {
        Self { _private: () }
    }
}

impl<S> Layer<S> for HoldBodyLayer {
    type Service = HoldBody<S>;

    fn layer(&self, inner: S) -> Self::Service {
        HoldBody { inner }
    }
}

/// Moves the [`HeldGuards`] of each response into its body; made by [`HoldBodyLayer`].
#[derive(Debug, Clone)]
pub struct HoldBody<S> {
    inner: S,
}

impl<S> HoldBody<S> {
    /// Wraps `inner`.
    pub const fn new(inner: S) -> Self {
        Self { inner }
    }

    /// The inner service.
    pub const fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B, RB> Service<Request<B>> for HoldBody<S>
where
    S: Service<Request<B>, Response = Response<RB>>,
    RB: http_body::Body,
{
    type Response = Response<GuardBody<RB, Option<HeldGuards>>>;
    type Error = S::Error;
    type Future = HoldBodyFuture<S::Future>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        HoldBodyFuture {
            inner: self.inner.call(req),
        }
    }
}

pin_project! {
    /// The response future of [`HoldBody`].
    #[derive(Debug)]
    pub struct HoldBodyFuture<F> {
        #[pin]
        inner: F,
    }
}

impl<F, RB, E> Future for HoldBodyFuture<F>
where
    F: Future<Output = Result<Response<RB>, E>>,
    RB: http_body::Body,
{
    type Output = Result<Response<GuardBody<RB, Option<HeldGuards>>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let res = ready!(self.project().inner.poll(cx))?;
        let (mut parts, body) = res.into_parts();
        let held = parts.extensions.remove::<HeldGuards>();
        Poll::Ready(Ok(Response::from_parts(parts, GuardBody::new(body, held))))
    }
}
