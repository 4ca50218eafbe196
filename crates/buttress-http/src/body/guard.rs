use std::fmt;
use std::pin::Pin;
use std::task::{Context, Poll};

use buttress::Classification;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use crate::classify::ClassifyEos;

/// How a body ended.
#[derive(Debug, Clone, Copy)]
pub enum BodyEnd<'a> {
    /// The whole body was delivered, with its trailers if it had any.
    Complete {
        /// The trailers, if any.
        trailers: Option<&'a HeaderMap>,
    },
    /// The body failed part way.
    Error,
    /// The body was dropped before its end (the reader went away).
    Dropped,
}

impl BodyEnd<'_> {
    /// Whether the whole body was delivered.
    pub const fn is_complete(&self) -> bool {
        matches!(self, BodyEnd::Complete { .. })
    }
}

/// What a [`GuardBody`] runs, once, when its body ends.
pub trait OnBodyEnd {
    /// The body ended this way.
    fn on_end(self, end: BodyEnd<'_>);
}

impl OnBodyEnd for () {
    fn on_end(self, _: BodyEnd<'_>) {}
}

impl<T: OnBodyEnd> OnBodyEnd for Option<T> {
    fn on_end(self, end: BodyEnd<'_>) {
        if let Some(t) = self {
            t.on_end(end);
        }
    }
}

impl<A: OnBodyEnd, B: OnBodyEnd> OnBodyEnd for (A, B) {
    fn on_end(self, end: BodyEnd<'_>) {
        self.0.on_end(end);
        self.1.on_end(end);
    }
}

/// A guard that is only held: dropped when the body ends (a permit, a sample timer
/// that records on drop).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Hold<T>(pub T);

impl<T> OnBodyEnd for Hold<T> {
    fn on_end(self, _: BodyEnd<'_>) {}
}

/// A callback run when the body ends; see [`on_end_fn`].
#[derive(Clone, Copy)]
pub struct OnEndFn<F> {
    f: F,
}

/// Runs `f` when the body ends. `Box<dyn FnOnce(BodyEnd<'_>) + Send>` works too, for a
/// guard whose type must not show.
pub fn on_end_fn<F: FnOnce(BodyEnd<'_>)>(f: F) -> OnEndFn<F> {
    OnEndFn { f }
}

impl<F: FnOnce(BodyEnd<'_>)> OnBodyEnd for OnEndFn<F> {
    fn on_end(self, end: BodyEnd<'_>) {
        (self.f)(end);
    }
}

impl<F> fmt::Debug for OnEndFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OnEndFn").finish_non_exhaustive()
    }
}

/// The end-of-body hook: classifies the answer with `classifier` when its body ends and
/// passes the [`Classification`] to `sink`.
///
/// A complete body is classified by its trailers
/// ([`ClassifyEos::classify_eos`]); a failed one by
/// [`ClassifyEos::classify_body_error`]; a dropped one is
/// [`Classification::ignored`]: the reader went away, which says nothing of the callee.
///
/// ```
/// use buttress::Verdict;
/// use buttress_http::body::{BodyEnd, ClassifyAtEnd, OnBodyEnd};
/// use buttress_http::classify::GrpcEos;
///
/// let mut trailers = http::HeaderMap::new();
/// trailers.insert("grpc-status", "14".parse().unwrap());
/// let mut verdict = None;
/// ClassifyAtEnd::new(GrpcEos::new(), |c: buttress::Classification| verdict = Some(c.verdict))
///     .on_end(BodyEnd::Complete { trailers: Some(&trailers) });
/// assert_eq!(verdict, Some(Verdict::Failure));
/// ```
#[derive(Clone, Copy)]
pub struct ClassifyAtEnd<C, F> {
    classifier: C,
    sink: F,
}

impl<C, F> ClassifyAtEnd<C, F> {
    /// Classifies with `classifier` and hands the result to `sink`.
    pub const fn new(classifier: C, sink: F) -> Self {
        Self { classifier, sink }
    }
}

impl<C: ClassifyEos, F: FnOnce(Classification)> OnBodyEnd for ClassifyAtEnd<C, F> {
    fn on_end(self, end: BodyEnd<'_>) {
        let c = match end {
            BodyEnd::Complete { trailers } => self.classifier.classify_eos(trailers),
            BodyEnd::Error => self.classifier.classify_body_error(),
            BodyEnd::Dropped => Classification::ignored(),
        };
        (self.sink)(c);
    }
}

impl<C: fmt::Debug, F> fmt::Debug for ClassifyAtEnd<C, F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClassifyAtEnd")
            .field("classifier", &self.classifier)
            .finish_non_exhaustive()
    }
}

/// Runs the guard on drop if nothing ran it before.
struct Slot<G: OnBodyEnd> {
    guard: Option<G>,
    /// The inner body reported its end before it was ever polled (an empty body,
    /// which hyper drops without polling).
    empty: bool,
}

impl<G: OnBodyEnd> Slot<G> {
    fn fire(&mut self, end: BodyEnd<'_>) {
        if let Some(g) = self.guard.take() {
            g.on_end(end);
        }
    }
}

impl<G: OnBodyEnd> Drop for Slot<G> {
    fn drop(&mut self) {
        let end = if self.empty {
            BodyEnd::Complete { trailers: None }
        } else {
            BodyEnd::Dropped
        };
        self.fire(end);
    }
}

pin_project! {
    /// A response body that holds a guard until it ends; see the
    /// [module docs](super).
    ///
    /// The guard runs exactly once: after the last frame is delivered (with the
    /// trailers, if the last frame held them), on the first error, or when the body is
    /// dropped before either.
    pub struct GuardBody<B, G: OnBodyEnd> {
        #[pin]
        inner: B,
        slot: Slot<G>,
    }
}

impl<B: Body, G: OnBodyEnd> GuardBody<B, G> {
    /// Wraps `inner`, holding `guard` until it ends.
    pub fn new(inner: B, guard: G) -> Self {
        let empty = inner.is_end_stream();
        Self {
            inner,
            slot: Slot {
                guard: Some(guard),
                empty,
            },
        }
    }
}

impl<B, G: OnBodyEnd> GuardBody<B, G> {
    /// Whether the guard is still held (the body has not ended).
    pub fn is_held(&self) -> bool {
        self.slot.guard.is_some()
    }

    /// The inner body.
    pub fn get_ref(&self) -> &B {
        &self.inner
    }
}

impl<B: Body, G: OnBodyEnd> Body for GuardBody<B, G> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let mut inner = this.inner;
        let polled = inner.as_mut().poll_frame(cx);
        if this.slot.guard.is_none() {
            return polled;
        }
        match &polled {
            Poll::Pending => {}
            Poll::Ready(None) => this.slot.fire(BodyEnd::Complete { trailers: None }),
            Poll::Ready(Some(Err(_))) => this.slot.fire(BodyEnd::Error),
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref() {
                    this.slot.fire(BodyEnd::Complete {
                        trailers: Some(trailers),
                    });
                } else if inner.is_end_stream() {
                    this.slot.fire(BodyEnd::Complete { trailers: None });
                }
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B: fmt::Debug, G: OnBodyEnd> fmt::Debug for GuardBody<B, G> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GuardBody")
            .field("inner", &self.inner)
            .field("held", &self.slot.guard.is_some())
            .finish()
    }
}
