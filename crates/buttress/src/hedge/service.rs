use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::time::Instant;
use tower_service::Service;

use super::future::{Ctx, Hedging, ResponseFuture};
use super::state::{HedgeConfig, Shared, own_budget};
use crate::classify::{Classify, DefaultClassify};
use crate::replay::{CloneReplay, Replay};
use crate::{BoxError, RequestMeta};

/// Sends extra copies of a slow request and answers with the first success. See the
/// [module docs](super).
#[derive(Debug, Clone)]
pub struct Hedge<S, C = DefaultClassify, R = CloneReplay> {
    inner: S,
    shared: Option<Arc<Shared>>,
    classify: C,
    replay: R,
}

impl<S> Hedge<S> {
    /// Wraps `inner` with its own hedge state and budget (use
    /// [`HedgeLayer`](super::HedgeLayer) to share one state between services).
    pub fn new(inner: S, config: HedgeConfig) -> Self {
        let shared = Arc::new(Shared::new(config, own_budget(), true, None));
        Self::from_parts(inner, Some(shared), DefaultClassify, CloneReplay)
    }
}

impl<S, C, R> Hedge<S, C, R> {
    pub(crate) fn from_parts(
        inner: S,
        shared: Option<Arc<Shared>>,
        classify: C,
        replay: R,
    ) -> Self {
        Self {
            inner,
            shared,
            classify,
            replay,
        }
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

impl<S, C, R, Req> Service<Req> for Hedge<S, C, R>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    C: Classify<Req, S::Response> + Clone,
    R: Replay<Req> + Clone,
    Req: RequestMeta,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, Req, C, R>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    // Always inlined, as `Retry::call`: the future is built in the caller's frame.
    #[inline(always)]
    fn call(&mut self, req: Req) -> Self::Future {
        let Some(shared) = &self.shared else {
            return ResponseFuture::passthrough(self.inner.call(req));
        };
        let max_extra = shared.max_extra();
        if max_extra == 0 {
            return ResponseFuture::passthrough(self.inner.call(req));
        }
        let deadline = req.deadline();
        // Latencies feed the percentile delay, and the expected copy time for the
        // deadline check when requests carry one; otherwise nothing is measured.
        let sample = shared.percentile_mode() || deadline.is_some();
        let start = sample.then(Instant::now);
        if shared.deposits {
            let at = start
                .or(deadline.map(|d| d.started()))
                .unwrap_or_else(Instant::now);
            shared.budget.deposit(at);
        }
        // When it may be hedged, the primary sends a copy and the caller's request is
        // kept: each extra copy is made from it when it is sent, so the strategy is
        // asked again once the primary is under way (whether a request can be replayed
        // may change while an attempt streams it: an HTTP body past its buffering cap).
        let Some((primary, delay)) = shared
            .delay()
            .and_then(|delay| Some((self.replay.replay(&req)?, delay)))
        else {
            let fut = self.inner.call(req);
            if !sample {
                return ResponseFuture::passthrough(fut);
            }
            return ResponseFuture::hedging(fut, Ctx::new(shared.clone(), start, None));
        };
        let base_attempt = req.attempt().map_or(1, |a| a.get());
        let hedging = Hedging {
            service: self.inner.clone(),
            classify: self.classify.clone(),
            replay: self.replay.clone(),
            original: Some(req),
            delay,
            left: max_extra,
            sent: 0,
            base_attempt,
        };
        let fut = self.inner.call(primary);
        ResponseFuture::hedging(fut, Ctx::new(shared.clone(), start, Some(hedging)))
    }
}
