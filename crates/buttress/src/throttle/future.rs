//! The response future of [`Throttle`](super::Throttle).

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use pin_project_lite::pin_project;

use super::state::{Outcome, Record};
use crate::BoxError;
use crate::classify::{Classification, Classifier, Origin, Verdict};
use crate::rejection::Overloaded;

pin_project! {
    /// Resolves to the inner service's answer, or to
    /// [`Overloaded`](super::error::Overloaded) when the call was refused locally.
    ///
    /// It holds the call's place in its window: dropped before the answer, the call
    /// is not counted at all.
    pub struct ResponseFuture<F, K> {
        #[pin]
        state: State<F, K>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<F, K> {
        Running {
            #[pin]
            inner: F,
            // `None` for a disabled layer.
            record: Option<Record>,
            classifier: Option<K>,
        },
        Refused {
            error: Option<Overloaded>,
        },
    }
}

impl<F, K> ResponseFuture<F, K> {
    pub(super) fn passthrough(inner: F) -> Self {
        Self {
            state: State::Running {
                inner,
                record: None,
                classifier: None,
            },
        }
    }

    pub(super) fn running(inner: F, record: Record, classifier: K) -> Self {
        Self {
            state: State::Running {
                inner,
                record: Some(record),
                classifier: Some(classifier),
            },
        }
    }

    pub(super) fn refused(error: Overloaded) -> Self {
        Self {
            state: State::Refused { error: Some(error) },
        }
    }
}

/// Overload answers are not accepts; a local refusal from a layer below (an open
/// breaker) says nothing about the upstream; anything else the upstream accepted.
fn outcome(c: Classification) -> Outcome {
    if c.overload {
        Outcome::Overloaded
    } else if c.verdict == Verdict::Ignored && c.origin == Origin::Local {
        Outcome::Forgotten
    } else {
        Outcome::Accepted
    }
}

impl<F, K, T, E> Future for ResponseFuture<F, K>
where
    F: Future<Output = Result<T, E>>,
    E: Into<BoxError>,
    K: Classifier<T>,
{
    type Output = Result<T, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project().state.project() {
            StateProj::Running {
                inner,
                record,
                classifier,
            } => {
                let out = ready!(inner.poll(cx)).map_err(Into::into);
                if let (Some(record), Some(k)) = (record.take(), classifier.take()) {
                    record.finish(outcome(k.classify(out.as_ref())));
                }
                Poll::Ready(out)
            }
            StateProj::Refused { error } => Poll::Ready(Err(match error.take() {
                Some(e) => e.into(),
                None => "throttle: response future polled after completion".into(),
            })),
        }
    }
}

impl<F, K> fmt::Debug for ResponseFuture<F, K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.state {
            State::Running { record: None, .. } => "passthrough",
            State::Running { .. } => "running",
            State::Refused { .. } => "refused",
        };
        f.debug_struct("ResponseFuture")
            .field("state", &state)
            .finish()
    }
}
