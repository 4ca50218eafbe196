use std::task::{Context, Poll};

use buttress::policy::{Handles, ServerLayer, ServerService};
use http::Request;
use tower_layer::Layer;
use tower_service::Service;

use super::HttpPolicy;
use crate::body::{HoldBody, HoldBodyLayer, HoldUntilBodyEnd};
use crate::classify::HttpClassify;
use crate::context::{ContextScope, ContextScopeLayer};
use crate::deadline::{DeadlineFromHeaders, DeadlineFromHeadersLayer};
use crate::priority::{PriorityFromHeader, PriorityFromHeaderLayer};
use crate::rejection::{DefaultHandler, HandleError, RejectionResponse, RejectionResponseLayer};

/// The canonical HTTP server stack of an [`HttpPolicy`], as one layer; see the
/// [module docs](super).
///
/// Clones share the state of the stack's stateful layers (limits, permits, the drain
/// switch). `H` answers errors that are not buttress rejections
/// ([`with_error_handler`](Self::with_error_handler)).
#[derive(Debug, Clone)]
pub struct HttpServerLayer<H = DefaultHandler> {
    rejection: RejectionResponseLayer<H>,
    deadline: DeadlineFromHeadersLayer,
    priority: PriorityFromHeaderLayer,
    policy: ServerLayer<HttpClassify, HoldUntilBodyEnd>,
    context: ContextScopeLayer,
}

impl HttpServerLayer {
    pub(super) fn new(policy: &HttpPolicy) -> Self {
        Self {
            rejection: RejectionResponseLayer::new().with_config(policy.rejection),
            deadline: DeadlineFromHeadersLayer::from_config(policy.deadline_in.clone()),
            priority: PriorityFromHeaderLayer::from_config(policy.priority.clone()),
            // Shed and bulkhead permits go into the handler's answer, and the
            // `HoldBodyLayer` above moves them into its body: held until it ends.
            policy: policy
                .policy
                .server_layer_parts(policy.classify(), HoldUntilBodyEnd),
            context: if policy.context {
                ContextScopeLayer::new()
            } else {
                ContextScopeLayer::disabled()
            },
        }
    }
}

impl<H> HttpServerLayer<H> {
    /// Answers errors that are not buttress rejections with `handler` (by default a
    /// 500, or `UNKNOWN` for gRPC).
    pub fn with_error_handler<H2: HandleError>(self, handler: H2) -> HttpServerLayer<H2> {
        HttpServerLayer {
            rejection: self.rejection.with_handler(handler),
            deadline: self.deadline,
            priority: self.priority,
            policy: self.policy,
            context: self.context,
        }
    }

    /// Handles to the state of the stack's stateful layers (the shed layer's drain
    /// switch, bulkhead permits, ...).
    pub fn handles(&self) -> Handles {
        self.policy.handles()
    }
}

type Inner<S, H> = RejectionResponse<
    HoldBody<
        DeadlineFromHeaders<
            PriorityFromHeader<ServerService<ContextScope<S>, HttpClassify, HoldUntilBodyEnd>>,
        >,
    >,
    H,
>;

/// The service an [`HttpServerLayer`] makes: answers every request (its error type is
/// `Infallible`), with the handler's answer or one written for a rejection.
#[derive(Debug, Clone)]
pub struct HttpServer<S, H = DefaultHandler> {
    inner: Inner<S, H>,
}

impl<S, H: Clone> Layer<S> for HttpServerLayer<H> {
    type Service = HttpServer<S, H>;

    fn layer(&self, handler: S) -> Self::Service {
        let context = self.context.layer(handler);
        let policy = self.policy.layer(context);
        let priority = self.priority.layer(policy);
        let deadline = self.deadline.layer(priority);
        let hold = HoldBodyLayer::new().layer(deadline);
        HttpServer {
            inner: self.rejection.layer(hold),
        }
    }
}

impl<S, H, B> Service<Request<B>> for HttpServer<S, H>
where
    Inner<S, H>: Service<Request<B>>,
{
    type Response = <Inner<S, H> as Service<Request<B>>>::Response;
    type Error = <Inner<S, H> as Service<Request<B>>>::Error;
    type Future = <Inner<S, H> as Service<Request<B>>>::Future;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, req: Request<B>) -> Self::Future {
        self.inner.call(req)
    }
}
