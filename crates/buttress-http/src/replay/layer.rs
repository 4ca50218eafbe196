use std::task::{Context, Poll};

use http::Request;
use http_body::Body;
use tower_layer::Layer;
use tower_service::Service;

use super::ReplayBody;

/// The default replay cap: 64 KiB per request.
pub const DEFAULT_CAP: usize = 64 * 1024;

/// Wraps every request's body in a [`ReplayBody`] and puts its
/// [`ReplayWatch`](super::ReplayWatch) into the request's extensions (client side,
/// outside retry and hedge); see the [module docs](super).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferRequestBodyLayer {
    cap: usize,
}

impl BufferRequestBodyLayer {
    /// Keeps at most `cap` bytes of each request body for replays.
    pub const fn new(cap: usize) -> Self {
        Self { cap }
    }

    /// The same type with a cap of 0: only empty bodies can be replayed.
    pub const fn disabled() -> Self {
        Self { cap: 0 }
    }

    /// The cap.
    pub const fn cap(&self) -> usize {
        self.cap
    }
}

impl Default for BufferRequestBodyLayer {
    fn default() -> Self {
        Self::new(DEFAULT_CAP)
    }
}

impl<S> Layer<S> for BufferRequestBodyLayer {
    type Service = BufferRequestBody<S>;

    fn layer(&self, inner: S) -> Self::Service {
        BufferRequestBody {
            inner,
            cap: self.cap,
        }
    }
}

/// Wraps every request's body in a [`ReplayBody`]; made by [`BufferRequestBodyLayer`].
#[derive(Debug, Clone)]
pub struct BufferRequestBody<S> {
    inner: S,
    cap: usize,
}

impl<S> BufferRequestBody<S> {
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

impl<S, B> Service<Request<B>> for BufferRequestBody<S>
where
    S: Service<Request<ReplayBody<B>>>,
    B: Body + Unpin,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let (mut parts, body) = req.into_parts();
        let body = ReplayBody::new(body, self.cap);
        parts.extensions.insert(body.watch());
        self.inner.call(Request::from_parts(parts, body))
    }
}
