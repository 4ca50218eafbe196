//! The response future of [`Breaker`](super::Breaker).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;
use tokio::time::Instant;

use super::circuit::Permit;
use crate::BoxError;
use crate::classify::Classifier;
use crate::rejection::CircuitOpen;

pin_project! {
    /// Resolves to the inner service's answer, recording its classified outcome in the
    /// breaker, or to [`CircuitOpen`] when the breaker refused the call (the inner
    /// service was not called).
    ///
    /// A half-open probe's slot is held by this future: dropping it before it
    /// completes frees the slot, and the call is not counted.
    pub struct ResponseFuture<F, K> {
        #[pin]
        kind: Kind<F, K>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F, K> {
        Passthrough {
            #[pin]
            inner: F,
        },
        Tracked {
            #[pin]
            inner: F,
            // Taken when the outcome is recorded: the permit stays in place (its slot
            // already counted) and goes when the future is dropped.
            classifier: Option<K>,
            permit: Permit,
            start: Option<Instant>,
            end: bool,
        },
        Rejected {
            error: Option<CircuitOpen>,
        },
    }
}

impl<F, K> ResponseFuture<F, K> {
    #[inline]
    pub(super) fn passthrough(inner: F) -> Self {
        Self {
            kind: Kind::Passthrough { inner },
        }
    }

    #[inline]
    pub(super) fn tracked(
        inner: F,
        permit: Permit,
        classifier: K,
        start: Option<Instant>,
        end: bool,
    ) -> Self {
        Self {
            kind: Kind::Tracked {
                inner,
                classifier: Some(classifier),
                permit,
                start,
                end,
            },
        }
    }

    pub(super) fn rejected(error: CircuitOpen) -> Self {
        Self {
            kind: Kind::Rejected { error: Some(error) },
        }
    }
}

impl<F, K, T, E> Future for ResponseFuture<F, K>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
    K: Classifier<T>,
{
    type Output = Result<T, BoxError>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Passthrough { inner } => inner.poll(cx).map_err(Into::into),
            KindProj::Tracked {
                inner,
                classifier,
                permit,
                start,
                end,
            } => {
                let out = ready!(inner.poll(cx)).map_err(Into::into);
                if let Some(classifier) = classifier.take() {
                    let verdict = classifier.classify(out.as_ref()).verdict;
                    let end = end.then(Instant::now);
                    permit.finish(verdict, *start, end);
                }
                Poll::Ready(out)
            }
            KindProj::Rejected { error } => match error.take() {
                Some(e) => Poll::Ready(Err(Box::new(e))),
                None => Poll::Pending,
            },
        }
    }
}

impl<F, K> fmt::Debug for ResponseFuture<F, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match &self.kind {
            Kind::Passthrough { .. } => "passthrough",
            Kind::Tracked { .. } => "tracked",
            Kind::Rejected { .. } => "rejected",
        };
        f.debug_struct("ResponseFuture")
            .field("kind", &kind)
            .finish_non_exhaustive()
    }
}
