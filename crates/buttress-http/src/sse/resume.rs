use std::fmt;

use http::Request;

use super::parser::Event;

/// Where a stream resumes: adjusts the request of each connection from what was
/// received, for servers that resume from something other than `Last-Event-ID`
/// (a `?since=` cursor, an offset in the data, a token of the last event).
///
/// The client sets `Last-Event-ID` itself (when the stream has a last event ID)
/// before calling [`prepare`](Self::prepare), which may change or remove it.
///
/// ```
/// use buttress_http::sse::{Event, Resume};
/// use http::Request;
///
/// /// Resumes with `?after=<seq>`, the sequence number the server puts in each
/// /// event's data as `<seq>:<payload>`.
/// #[derive(Debug, Default)]
/// struct AfterSeq(Option<u64>);
///
/// impl Resume for AfterSeq {
///     fn observe(&mut self, event: &Event) {
///         if let Some(seq) = event.data().split(':').next().and_then(|s| s.parse().ok()) {
///             self.0 = Some(seq);
///         }
///     }
///
///     fn prepare(&mut self, request: &mut Request<()>, _last_event_id: Option<&str>) {
///         if let Some(seq) = self.0 {
///             *request.uri_mut() = format!("/feed?after={seq}").parse().unwrap();
///         }
///     }
/// }
///
/// let mut resume = AfterSeq::default();
/// resume.observe(&Event::new("41:hello"));
/// let mut req = Request::get("/feed").body(()).unwrap();
/// resume.prepare(&mut req, None);
/// assert_eq!(req.uri(), "/feed?after=41");
/// ```
pub trait Resume: Send {
    /// Sees each event handed to the consumer (duplicates dropped), in order.
    fn observe(&mut self, event: &Event) {
        let _ = event;
    }

    /// Adjusts the request of the next connection (the first one included), given
    /// the stream's last event ID.
    fn prepare(&mut self, request: &mut Request<()>, last_event_id: Option<&str>);
}

/// A [`Resume`] from a closure over the request and the last event ID: see
/// [`resume_fn`].
#[derive(Clone)]
pub struct ResumeFn<F>(F);

/// Makes a [`Resume`] that calls `f` before each connection.
///
/// ```
/// use buttress_http::sse::{Resume, resume_fn};
///
/// // Sends the last event ID as a query parameter instead of a header.
/// let mut resume = resume_fn(|req: &mut http::Request<()>, last: Option<&str>| {
///     if let Some(id) = last {
///         req.headers_mut().remove("last-event-id");
///         *req.uri_mut() = format!("/feed?last_id={id}").parse().unwrap();
///     }
/// });
/// let mut req = http::Request::get("/feed").header("last-event-id", "7").body(()).unwrap();
/// resume.prepare(&mut req, Some("7"));
/// assert_eq!(req.uri(), "/feed?last_id=7");
/// assert!(req.headers().get("last-event-id").is_none());
/// ```
pub fn resume_fn<F>(f: F) -> ResumeFn<F>
where
    F: FnMut(&mut Request<()>, Option<&str>) + Send,
{
    ResumeFn(f)
}

impl<F> Resume for ResumeFn<F>
where
    F: FnMut(&mut Request<()>, Option<&str>) + Send,
{
    fn prepare(&mut self, request: &mut Request<()>, last_event_id: Option<&str>) {
        (self.0)(request, last_event_id);
    }
}

impl<F> fmt::Debug for ResumeFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ResumeFn").finish_non_exhaustive()
    }
}

/// Resumes with `Last-Event-ID` only (the default).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct LastEventIdOnly;

impl Resume for LastEventIdOnly {
    fn prepare(&mut self, _: &mut Request<()>, _: Option<&str>) {}
}
