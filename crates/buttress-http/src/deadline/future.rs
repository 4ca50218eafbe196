//! The response future of [`InheritContext`](super::InheritContext).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use buttress::BoxError;
use buttress::rejection::is_marked_do_not_retry;
use http::Response;
use pin_project_lite::pin_project;

use crate::context::RequestContext;
use crate::header;

pin_project! {
    /// Resolves to the inner answer, after telling the request context in scope when
    /// that answer carries the do-not-retry mark.
    #[derive(Debug)]
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        report: bool,
    }
}

impl<F> ResponseFuture<F> {
    pub(super) fn new(inner: F, report: bool) -> Self {
        Self { inner, report }
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    E: Into<BoxError>,
{
    type Output = Result<Response<B>, BoxError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let out = ready!(this.inner.poll(cx)).map_err(Into::into);
        if *this.report {
            let marked = match &out {
                Ok(res) => header::is_marked_gave_up(res.headers()),
                Err(e) => is_marked_do_not_retry(e.as_ref()),
            };
            if marked {
                RequestContext::mark_current_gave_up();
            }
        }
        Poll::Ready(out)
    }
}
