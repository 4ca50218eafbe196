use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::time::{Instant, Sleep, sleep_until};
use tower_service::Service;

use super::circuit::{Admit, GatePoll, Permit};
use super::config::{BreakerConfig, BreakerMode};
use super::future::ResponseFuture;
use super::handle::BreakerHandle;
use super::shared::Shared;
use crate::classify::{Classify, DefaultClassify};
use crate::deadline::attempt_start;
use crate::keyed::{Global, KeyedConfig, Partition};
use crate::rand::Rng;
use crate::{BoxError, RequestMeta};

/// A circuit breaker around `S`; see the [module docs](super).
///
/// Outcomes are classified by `C` (any [`Classify`]); requests are sent to one breaker
/// per key by `P` (any [`Partition`]; [`Global`] shares one breaker).
pub struct Breaker<S, C = DefaultClassify, P = Global> {
    inner: S,
    shared: Option<Arc<Shared>>,
    classify: C,
    partition: P,
    /// Gate mode: the probe slot `poll_ready` took for the next call.
    reserved: Option<Permit>,
    /// Gate mode: wakes the task when the open time is over. Made on the first wait
    /// and reset afterwards, so waiting allocates once per service.
    sleep: Option<Pin<Box<Sleep>>>,
}

impl<S> Breaker<S> {
    /// A breaker of its own around `inner` (use [`BreakerLayer`](super::BreakerLayer)
    /// for one shared by many services).
    pub fn new(inner: S, config: BreakerConfig) -> Self {
        let shared = Shared::new(
            &config,
            "default",
            Rng::default(),
            KeyedConfig::default(),
            true,
        );
        Self::from_parts(inner, Some(Arc::new(shared)), DefaultClassify, Global)
    }

    /// A pass-through: the same type, no breaker.
    pub fn disabled(inner: S) -> Self {
        Self::from_parts(inner, None, DefaultClassify, Global)
    }
}

impl<S, C, P> Breaker<S, C, P> {
    pub(crate) fn from_parts(
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
            reserved: None,
            sleep: None,
        }
    }

    /// The handle of this breaker's state (shared with every service of its layer).
    pub fn handle(&self) -> BreakerHandle {
        BreakerHandle::new(self.shared.clone())
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

/// When the call started, for slow-call detection: see [`attempt_start`]; without
/// `reuse`, always a clock read.
#[inline]
fn start_of<R: RequestMeta>(req: &R, reuse: bool) -> Instant {
    if reuse {
        attempt_start(req.deadline(), req.attempt())
    } else {
        Instant::now()
    }
}

impl<S, C, P, Req> Service<Req> for Breaker<S, C, P>
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
        if let Some(shared) = &self.shared {
            let circuit = &shared.global;
            if circuit.timing().mode() == BreakerMode::Gate {
                // A slot reserved in a half-open phase that has ended since is worth
                // nothing (and may hide that the breaker is open again).
                if self.reserved.as_ref().is_some_and(Permit::is_stale) {
                    self.reserved = None;
                }
                while self.reserved.is_none() {
                    match circuit.poll_gate(cx.waker()) {
                        GatePoll::Ready => break,
                        GatePoll::Reserved(permit) => self.reserved = Some(permit),
                        GatePoll::Wait => return Poll::Pending,
                        GatePoll::WaitUntil(at) => {
                            let sleep = match &mut self.sleep {
                                Some(sleep) => {
                                    sleep.as_mut().reset(at);
                                    sleep
                                }
                                None => self.sleep.insert(Box::pin(sleep_until(at))),
                            };
                            if sleep.as_mut().poll(cx).is_pending() {
                                return Poll::Pending;
                            }
                        }
                    }
                }
            }
        }
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        let Some(shared) = &self.shared else {
            return ResponseFuture::passthrough(self.inner.call(req));
        };
        let admit = match self.partition.key(&req) {
            None => match self.reserved.take() {
                Some(permit) => Admit::Tracked(permit),
                None => shared.global.admit(),
            },
            // Keyed breakers cannot gate (`poll_ready` sees no request): they reject.
            Some(key) => shared.keyed(&key).admit(),
        };
        match admit {
            Admit::Tracked(permit) => {
                let timing = permit.circuit().timing();
                let start = timing
                    .start()
                    .then(|| start_of(&req, shared.reuse_deadline_start));
                let classifier = self.classify.classify_request(&req);
                ResponseFuture::tracked(
                    self.inner.call(req),
                    permit,
                    classifier,
                    start,
                    timing.end(),
                )
            }
            Admit::Pass => ResponseFuture::passthrough(self.inner.call(req)),
            Admit::Reject(open) => ResponseFuture::rejected(open),
        }
    }
}

impl<S: Clone, C: Clone, P: Clone> Clone for Breaker<S, C, P> {
    /// A clone shares the breaker but not a reserved probe slot (readiness is not
    /// inherited by clones, as everywhere in tower).
    fn clone(&self) -> Self {
        Self::from_parts(
            self.inner.clone(),
            self.shared.clone(),
            self.classify.clone(),
            self.partition.clone(),
        )
    }
}

impl<S: fmt::Debug, C: fmt::Debug, P: fmt::Debug> fmt::Debug for Breaker<S, C, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Breaker")
            .field("inner", &self.inner)
            .field("shared", &self.shared)
            .field("classify", &self.classify)
            .field("partition", &self.partition)
            .field("reserved", &self.reserved)
            .finish_non_exhaustive()
    }
}
