use std::task::{Context, Poll};

use buttress::policy::{ClientLayer, ClientService, Handles};
use http::Request;
use tower_layer::Layer;
use tower_service::Service;

use super::HttpPolicy;
use crate::classify::HttpClassify;
use crate::deadline::{
    DeadlineToHeaders, DeadlineToHeadersLayer, InheritContext, InheritContextLayer,
};
use crate::key::ByAuthority;
use crate::replay::{BufferRequestBody, BufferRequestBodyLayer, HttpReplay};

/// The canonical HTTP client stack of an [`HttpPolicy`], as one layer; see the
/// [module docs](super).
///
/// Clones share the state of the stack's stateful layers.
#[derive(Debug, Clone)]
pub struct HttpClientLayer {
    inherit: InheritContextLayer,
    buffer: BufferRequestBodyLayer,
    policy: ClientLayer<HttpClassify, HttpReplay, ByAuthority>,
    deadline: DeadlineToHeadersLayer,
}

impl HttpClientLayer {
    pub(super) fn new(policy: &HttpPolicy) -> Self {
        Self {
            inherit: if policy.context {
                InheritContextLayer::new()
            } else {
                InheritContextLayer::disabled()
            },
            buffer: BufferRequestBodyLayer::new(policy.replay_cap),
            // Retries replay what the first attempt streamed; hedges wait for the
            // whole body.
            policy: policy.policy.client_layer_parts(
                policy.classify(),
                HttpReplay::retry(),
                HttpReplay::hedge(),
                ByAuthority::client(),
            ),
            deadline: DeadlineToHeadersLayer::from_config(policy.deadline_out.clone()),
        }
    }

    /// Handles to the state of the stack's stateful layers (retry budget, breakers,
    /// bulkheads, ...).
    pub fn handles(&self) -> Handles {
        self.policy.handles()
    }
}

type Inner<S> = InheritContext<
    BufferRequestBody<ClientService<DeadlineToHeaders<S>, HttpClassify, HttpReplay, ByAuthority>>,
>;

/// The service an [`HttpClientLayer`] makes: takes `http::Request<B>` for any body
/// `B` (wrapped in a [`ReplayBody`](crate::replay::ReplayBody) on its way to the
/// transport `S`).
#[derive(Debug, Clone)]
pub struct HttpClient<S> {
    inner: Inner<S>,
}

impl<S> Layer<S> for HttpClientLayer {
    type Service = HttpClient<S>;

    fn layer(&self, transport: S) -> Self::Service {
        let deadline = self.deadline.layer(transport);
        let policy = self.policy.layer(deadline);
        let buffer = self.buffer.layer(policy);
        HttpClient {
            inner: self.inherit.layer(buffer),
        }
    }
}

impl<S, B> Service<Request<B>> for HttpClient<S>
where
    Inner<S>: Service<Request<B>>,
{
    type Response = <Inner<S> as Service<Request<B>>>::Response;
    type Error = <Inner<S> as Service<Request<B>>>::Error;
    type Future = <Inner<S> as Service<Request<B>>>::Future;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, req: Request<B>) -> Self::Future {
        self.inner.call(req)
    }
}
