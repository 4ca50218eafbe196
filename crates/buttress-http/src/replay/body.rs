use std::fmt;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use buttress::BoxError;
use bytes::{Buf, Bytes};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};

use crate::util::lock;

/// Why a copy of a [`ReplayBody`] could not deliver the whole body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayError {
    over_cap: bool,
}

impl fmt::Display for ReplayError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.over_cap {
            f.write_str("request body past its replay buffer cap was streamed to another attempt")
        } else {
            f.write_str("request body failed while another attempt was reading it")
        }
    }
}

impl std::error::Error for ReplayError {}

/// What every copy of one body shares.
struct Shared<B> {
    /// The rest of the original body; `None` once it ended or failed.
    inner: Option<B>,
    chunks: Vec<Bytes>,
    /// Bytes in `chunks`.
    len: usize,
    cap: usize,
    trailers: Option<HeaderMap>,
    /// The original body ended: `chunks` and `trailers` are all of it unless
    /// `over_cap`.
    ended: bool,
    /// Some bytes were delivered without being kept: no more copies.
    over_cap: bool,
    /// The original body failed: no more copies.
    failed: bool,
    /// Copies waiting for the original body to make progress.
    waiters: Vec<Waker>,
    /// Told when copies can no longer be made (`over_cap` or `failed`).
    watch: ReplayWatch,
}

impl<B> Shared<B> {
    fn set_over_cap(&mut self) {
        self.over_cap = true;
        self.watch.spent.store(true, Ordering::Relaxed);
    }

    fn set_failed(&mut self) {
        self.failed = true;
        self.watch.spent.store(true, Ordering::Relaxed);
    }
}

/// Says whether copies of one [`ReplayBody`] can still be made, without naming the
/// body's type: a request extension a classifier can read.
///
/// Once an attempt carries the body past its cap, no copy of the request can be sent.
/// buttress's retry layer finds that out by asking for a copy when a retry is due;
/// the watch lets a classifier know sooner.
/// [`BufferRequestBodyLayer`](super::BufferRequestBodyLayer) puts the watch of each
/// body it wraps into the request's extensions, and
/// [`HttpClassify`](crate::classify::HttpClassify) classifies the outcome of a
/// request whose watch says *spent* as not retryable, so the retry layer returns that
/// outcome at once instead of waiting out a backoff first.
///
/// ```
/// use buttress_http::replay::ReplayBody;
/// use http_body_util::Full;
///
/// let small = ReplayBody::new(Full::new(bytes::Bytes::from_static(b"1234")), 4);
/// assert!(!small.watch().is_spent());
/// // Known to be larger than the cap: never buffered, never replayed.
/// let large = ReplayBody::new(Full::new(bytes::Bytes::from_static(b"12345678")), 4);
/// assert!(large.watch().is_spent());
/// assert!(large.try_replay().is_none());
/// ```
#[derive(Debug, Clone, Default)]
pub struct ReplayWatch {
    spent: Arc<AtomicBool>,
}

impl ReplayWatch {
    /// Whether the body went past its cap or failed: no copy can deliver it any more.
    pub fn is_spent(&self) -> bool {
        self.spent.load(Ordering::Relaxed)
    }
}

/// A request body that can be sent again; see the [module docs](super).
///
/// `B` must be `Unpin`, as hyper's, axum's and reqwest's bodies are; wrap any other
/// body in `Box::pin`.
pub struct ReplayBody<B> {
    shared: Arc<Mutex<Shared<B>>>,
    cursor: Cursor,
}

/// Where one copy is.
#[derive(Debug, Clone, Copy, Default)]
struct Cursor {
    /// The next buffered chunk this copy delivers.
    next: usize,
    /// Buffered bytes this copy has delivered.
    offset: usize,
    /// This copy delivered its last frame.
    done: bool,
    /// This copy read past the cap: it alone may read the rest.
    owner: bool,
}

impl<B: Body + Unpin> ReplayBody<B> {
    /// Wraps `body`, keeping at most `cap` bytes for replays.
    pub fn new(body: B, cap: usize) -> Self {
        let ended = body.is_end_stream();
        // Known to be too large: never buffer it.
        let over_cap = body.size_hint().exact().is_some_and(|n| n > cap as u64);
        let watch = ReplayWatch {
            spent: Arc::new(AtomicBool::new(over_cap)),
        };
        Self {
            shared: Arc::new(Mutex::new(Shared {
                inner: (!ended).then_some(body),
                chunks: Vec::new(),
                len: 0,
                cap,
                trailers: None,
                ended,
                over_cap,
                failed: false,
                waiters: Vec::new(),
                watch,
            })),
            cursor: Cursor {
                owner: over_cap,
                ..Cursor::default()
            },
        }
    }
}

impl<B> ReplayBody<B> {
    /// A copy that delivers the same bytes from the start, or `None` if the body went
    /// past its cap or failed.
    pub fn try_replay(&self) -> Option<Self> {
        let s = lock(&self.shared);
        if s.over_cap || s.failed {
            return None;
        }
        Some(self.copy())
    }

    /// A copy, only if the whole body is already buffered (for hedging: the copy never
    /// waits on the original).
    pub fn try_replay_complete(&self) -> Option<Self> {
        self.is_complete().then(|| self.copy())
    }

    fn copy(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            cursor: Cursor::default(),
        }
    }

    /// Whether the whole body has been read and kept: copies need nothing more from
    /// the original.
    pub fn is_complete(&self) -> bool {
        let s = lock(&self.shared);
        s.ended && !s.over_cap && !s.failed
    }

    /// Whether copies can still be made (not past the cap, not failed).
    pub fn is_replayable(&self) -> bool {
        let s = lock(&self.shared);
        !s.over_cap && !s.failed
    }

    /// The body's [`ReplayWatch`] (shared by every copy).
    pub fn watch(&self) -> ReplayWatch {
        lock(&self.shared).watch.clone()
    }

    /// Bytes kept so far.
    pub fn buffered(&self) -> usize {
        lock(&self.shared).len
    }
}

impl<B> Body for ReplayBody<B>
where
    B: Body + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if this.cursor.done {
            return Poll::Ready(None);
        }
        let mut to_wake = Vec::new();
        let polled = {
            let mut s = lock(&this.shared);
            this.cursor.poll(&mut s, cx, &mut to_wake)
        };
        // Wake other copies outside the lock.
        for w in to_wake {
            w.wake();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        let c = &self.cursor;
        if c.done {
            return true;
        }
        let s = lock(&self.shared);
        if c.owner {
            // Past the cap, this copy reads the original directly.
            return s.inner.is_none();
        }
        s.ended && !s.over_cap && c.next >= s.chunks.len() && s.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        if self.cursor.done {
            return SizeHint::with_exact(0);
        }
        let s = lock(&self.shared);
        let kept = s.len.saturating_sub(self.cursor.offset) as u64;
        match &s.inner {
            Some(inner) => {
                let rest = inner.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(rest.lower().saturating_add(kept));
                if let Some(upper) = rest.upper() {
                    hint.set_upper(upper.saturating_add(kept));
                }
                hint
            }
            None => SizeHint::with_exact(kept),
        }
    }
}

impl Cursor {
    fn poll<B>(
        &mut self,
        s: &mut Shared<B>,
        cx: &mut Context<'_>,
        to_wake: &mut Vec<Waker>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>>
    where
        B: Body + Unpin,
        B::Error: Into<BoxError>,
    {
        // Replay what is kept first.
        if !self.owner {
            if let Some(chunk) = s.chunks.get(self.next) {
                self.next += 1;
                self.offset += chunk.len();
                return Poll::Ready(Some(Ok(Frame::data(chunk.clone()))));
            }
            if s.ended && !s.over_cap {
                self.done = true;
                return Poll::Ready(s.trailers.clone().map(|t| Ok(Frame::trailers(t))));
            }
        }
        if s.failed || (s.over_cap && !self.owner) {
            self.done = true;
            return Poll::Ready(Some(Err(Box::new(ReplayError {
                over_cap: !s.failed,
            }))));
        }
        let Some(inner) = s.inner.as_mut() else {
            // The owner read everything.
            self.done = true;
            return Poll::Ready(None);
        };
        let frame = match Pin::new(&mut *inner).poll_frame(cx) {
            Poll::Pending => {
                if !s.waiters.iter().any(|w| w.will_wake(cx.waker())) {
                    s.waiters.push(cx.waker().clone());
                }
                return Poll::Pending;
            }
            Poll::Ready(frame) => frame,
        };
        // The original moved on: other copies waiting on it may now have work.
        to_wake.extend(s.waiters.drain(..).filter(|w| !w.will_wake(cx.waker())));
        match frame {
            None => {
                s.ended = true;
                s.inner = None;
                self.done = true;
                Poll::Ready(None)
            }
            Some(Err(e)) => {
                s.set_failed();
                s.inner = None;
                self.done = true;
                Poll::Ready(Some(Err(e.into())))
            }
            Some(Ok(frame)) => {
                let frame = frame.map_data(|mut d| d.copy_to_bytes(d.remaining()));
                let frame = match frame.into_trailers() {
                    Ok(trailers) => {
                        if !s.over_cap {
                            s.trailers = Some(trailers.clone());
                        }
                        s.ended = true;
                        s.inner = None;
                        self.done = true;
                        return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                    }
                    Err(frame) => frame,
                };
                if let Some(data) = frame.data_ref() {
                    if !s.over_cap && s.len.saturating_add(data.len()) <= s.cap {
                        s.chunks.push(data.clone());
                        s.len += data.len();
                        self.next = s.chunks.len();
                        self.offset = s.len;
                    } else if !s.over_cap {
                        tracing::debug!(target: "buttress::http", cap = s.cap, "request body past its replay cap: it will not be retried");
                        s.set_over_cap();
                        self.owner = true;
                    }
                }
                if s.inner.as_ref().is_some_and(Body::is_end_stream) {
                    s.ended = true;
                    s.inner = None;
                }
                Poll::Ready(Some(Ok(frame)))
            }
        }
    }
}

impl<B> fmt::Debug for ReplayBody<B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = lock(&self.shared);
        f.debug_struct("ReplayBody")
            .field("buffered", &s.len)
            .field("cap", &s.cap)
            .field("ended", &s.ended)
            .field("over_cap", &s.over_cap)
            .field("failed", &s.failed)
            .field("cursor", &self.cursor)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests;
