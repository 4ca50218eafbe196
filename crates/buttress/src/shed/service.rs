use std::sync::Arc;
use std::task::{Context, Poll};

use tower_service::Service;

use super::future::ResponseFuture;
use super::state::{Admission, Permit, Place, Shared};
use crate::classify::{Classify, DefaultClassify};
use crate::deadline::attempt_start;
use crate::hold::{HoldResponse, ReleaseAtHead};
use crate::{BoxError, RequestMeta};

/// Sheds load above an adaptive concurrency limit. See the [module docs](super).
///
/// Made by a [`ShedLayer`](super::ShedLayer); every `Shed` a layer makes shares its
/// limit, queue and drain switch. `H` takes each in-flight permit when the response
/// head is ready (by default [`ReleaseAtHead`]: freed there); see
/// [`ShedLayer::with_hold`](super::ShedLayer::with_hold).
#[derive(Debug, Clone)]
pub struct Shed<S, C = DefaultClassify, H = ReleaseAtHead> {
    inner: S,
    shared: Option<Arc<Shared>>,
    classify: C,
    hold: H,
}

impl<S, C, H> Shed<S, C, H> {
    pub(super) fn from_parts(inner: S, shared: Option<Arc<Shared>>, classify: C, hold: H) -> Self {
        Self {
            inner,
            shared,
            classify,
            hold,
        }
    }

    /// Whether this is a pass-through (built from no config).
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

impl<S, C, H, Req> Service<Req> for Shed<S, C, H>
where
    S: Service<Req> + Clone,
    S::Error: Into<BoxError>,
    C: Classify<Req, S::Response>,
    H: HoldResponse<S::Response> + Clone,
    Req: RequestMeta,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S, Req, S::Future, C::Classifier, H>;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        let Some(shared) = &self.shared else {
            return ResponseFuture::passthrough(self.inner.call(req), self.hold.clone());
        };
        let priority = req.priority();
        let deadline = req.deadline();
        if let Some(in_flight) = shared.try_admit(priority) {
            let classifier = self.classify.classify_request(&req);
            // Reuse the instant the call started, read once by whoever set the
            // deadline (first attempts only): the round trip then costs one clock
            // read, at the answer.
            let start = attempt_start(deadline, req.attempt());
            let permit = Permit::new(shared.clone(), start, in_flight, deadline.map(|d| d.at()));
            return ResponseFuture::running(
                self.inner.call(req),
                permit,
                classifier,
                self.hold.clone(),
            );
        }
        match shared.admit(priority, deadline.map(|d| d.at())) {
            Admission::Admitted { in_flight, now } => {
                let classifier = self.classify.classify_request(&req);
                let start = deadline.map_or(now, |d| d.started());
                let permit =
                    Permit::new(shared.clone(), start, in_flight, deadline.map(|d| d.at()));
                ResponseFuture::running(self.inner.call(req), permit, classifier, self.hold.clone())
            }
            Admission::Queued { key, until } => {
                let classifier = self.classify.classify_request(&req);
                let place = Place::new(shared.clone(), key);
                // The caller made `self.inner` ready for this request: the queued call
                // takes that ready service with it and leaves a fresh clone behind.
                let fresh = self.inner.clone();
                let ready = std::mem::replace(&mut self.inner, fresh);
                ResponseFuture::queued(
                    place,
                    until,
                    priority,
                    (ready, req),
                    classifier,
                    deadline.map(|d| d.at()),
                    self.hold.clone(),
                )
            }
            Admission::Refused(e) => ResponseFuture::refused(e, self.hold.clone()),
        }
    }
}
