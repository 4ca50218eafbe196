use std::sync::Arc;
use std::task::{Context, Poll};

use tower_service::Service;

use super::future::ResponseFuture;
use super::state::{Decision, Record, Shared};
use crate::classify::{Classify, DefaultClassify};
use crate::deadline::attempt_start;
use crate::keyed::{Global, Partition};
use crate::{BoxError, RequestMeta};

/// Refuses calls locally, with a probability that grows as the upstream refuses
/// them. See the [module docs](super).
///
/// Made by a [`ThrottleLayer`](super::ThrottleLayer); every `Throttle` a layer makes
/// shares its windows.
#[derive(Debug, Clone)]
pub struct Throttle<S, C = DefaultClassify, P = Global> {
    inner: S,
    shared: Option<Arc<Shared>>,
    classify: C,
    partition: P,
}

impl<S, C, P> Throttle<S, C, P> {
    pub(super) fn from_parts(
        inner: S,
        shared: Option<Arc<Shared>>,
        classify: C,
        partition: P,
    ) -> Self {
        Self {
            inner,
            shared,
            classify,
            partition,
        }
    }

    /// Whether this throttles (it was built from a config).
    pub fn is_enabled(&self) -> bool {
        self.shared.is_some()
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

impl<S, C, P, Req> Service<Req> for Throttle<S, C, P>
where
    S: Service<Req>,
    S::Error: Into<BoxError>,
    C: Classify<Req, S::Response>,
    P: Partition<Req>,
    Req: RequestMeta,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future, C::Classifier>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        let Some(shared) = &self.shared else {
            return ResponseFuture::passthrough(self.inner.call(req));
        };
        // Buckets are coarse: the carried start instant is as good as a clock read.
        let now = attempt_start(req.deadline(), req.attempt());
        let part = match self.partition.key(&req) {
            None => shared.global().clone(),
            Some(key) => shared.partition(&key, now),
        };
        match shared.decide(&part, now) {
            Decision::Send { epoch } => {
                let classifier = self.classify.classify_request(&req);
                let record = Record::new(shared.clone(), part, epoch);
                ResponseFuture::running(self.inner.call(req), record, classifier)
            }
            Decision::Refuse(e) => ResponseFuture::refused(e),
        }
    }
}
