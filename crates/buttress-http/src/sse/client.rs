use std::collections::{HashSet, VecDeque};
use std::fmt;
use std::future::{Future, poll_fn};
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, SystemTime};

use buttress::BoxError;
use buttress::backoff::Delays;
use buttress::budget::Budget;
use buttress::rand::Rng;
use bytes::{Buf, Bytes};
use http::header::{ACCEPT, CACHE_CONTROL, CONTENT_TYPE, HeaderName, HeaderValue, RETRY_AFTER};
use http::{Request, Response, StatusCode, Uri};
use http_body::Body;
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use tokio::time::{Instant, Sleep, sleep_until};
use tower_service::Service;

use super::config::SseConfig;
use super::error::SseError;
use super::handle::{SseHandle, Status, lock};
use super::parser::{Event, Parser};
use super::resume::{LastEventIdOnly, Resume};

const TARGET: &str = "buttress::sse";

/// The request header that tells a server where to resume an event stream.
pub const LAST_EVENT_ID: HeaderName = HeaderName::from_static("last-event-id");

const EVENT_STREAM: HeaderValue = HeaderValue::from_static("text/event-stream");
const NO_CACHE: HeaderValue = HeaderValue::from_static("no-cache");

type StreamBody = UnsyncBoxBody<Bytes, BoxError>;

/// A Server-Sent Events client that survives cuts: it reconnects with backoff and
/// resumes where the stream stopped, so its consumer sees one continuous stream.
/// See the [module docs](super).
///
/// `S` is any HTTP client service (`Service<http::Request<B>>` answering
/// `http::Response<_>`), `B` its request body type (an empty one is sent).
pub struct EventSource<S, B> {
    service: S,
    template: Request<()>,
    config: SseConfig,
    parser: Parser,
    resume: Box<dyn Resume>,
    budget: Option<Budget>,
    /// `budget` was given with `with_budget`: a config does not replace it.
    shared_budget: bool,
    rng: Rng,
    body: Option<Pin<Box<StreamBody>>>,
    idle: Option<Pin<Box<Sleep>>>,
    /// The delays of the current outage; reset once a stream delivers an event.
    delays: Option<Delays>,
    next_attempt_at: Option<Instant>,
    /// The current stream delivered an event.
    progressed: bool,
    seen: Seen,
    guard: Guard,
    _body: PhantomData<fn() -> B>,
}

/// Marks the stream finished when the source is dropped.
struct Guard(Arc<Mutex<Status>>);

impl Drop for Guard {
    fn drop(&mut self) {
        let mut s = lock(&self.0);
        s.finished = true;
        s.connected = false;
    }
}

/// The ids of the last events delivered.
struct Seen {
    cap: usize,
    order: VecDeque<Arc<str>>,
    set: HashSet<Arc<str>>,
}

impl Seen {
    fn new(cap: usize) -> Self {
        Self {
            cap,
            order: VecDeque::new(),
            set: HashSet::new(),
        }
    }

    /// Remembers `id`; `false` if it was seen already.
    fn insert(&mut self, id: &Arc<str>) -> bool {
        if self.cap == 0 || id.is_empty() {
            return true;
        }
        if self.set.contains(id) {
            return false;
        }
        if self.order.len() >= self.cap {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        self.order.push_back(id.clone());
        self.set.insert(id.clone());
        true
    }
}

/// How one connection attempt went.
enum Attempt {
    Connected(StreamBody),
    /// Failed; try again (after the server's hint, if it gave one).
    Failed(BoxError, Option<Duration>),
    /// Stop for good: with an error, or (204) without one.
    Stop(Option<SseError>),
}

/// How a stream ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cut {
    End,
    Error,
    Idle,
}

impl<S, B> EventSource<S, B> {
    /// Streams `GET uri` through `service`.
    pub fn new(service: S, uri: Uri) -> Self {
        let mut template = Request::new(());
        *template.uri_mut() = uri;
        Self::from_request(service, template)
    }

    /// Streams `request` (its method, URI, headers and extensions, sent again on
    /// every connection) through `service`. `Accept: text/event-stream` and
    /// `Cache-Control: no-cache` are added unless present.
    pub fn from_request(service: S, request: Request<()>) -> Self {
        let config = SseConfig::default();
        let status = Arc::new(Mutex::new(Status::default()));
        Self {
            service,
            template: request,
            config,
            parser: Parser::new(config.max_event_size),
            resume: Box::new(LastEventIdOnly),
            budget: None,
            shared_budget: false,
            rng: Rng::default(),
            body: None,
            idle: None,
            delays: None,
            next_attempt_at: None,
            progressed: false,
            seen: Seen::new(config.dedup_window),
            guard: Guard(status),
            _body: PhantomData,
        }
    }

    /// Sets the reconnection settings (before the first event is read). A budget
    /// given with [`with_budget`](Self::with_budget) is kept.
    #[must_use]
    pub fn with_config(mut self, config: SseConfig) -> Self {
        let last = self.parser.last_event_id().map(str::to_owned);
        self.parser = Parser::new(config.max_event_size);
        if let Some(id) = last {
            self.parser.set_last_event_id(&id);
        }
        self.seen = Seen::new(config.dedup_window);
        if !self.shared_budget {
            self.budget = config.budget.map(Budget::new);
        }
        self.config = config;
        self
    }

    /// Adds a resume hook for servers that resume from something other than
    /// `Last-Event-ID`.
    #[must_use]
    pub fn with_resume(mut self, resume: impl Resume + 'static) -> Self {
        self.resume = Box::new(resume);
        self
    }

    /// Resumes from `id`, a last event ID kept from an earlier run: the first
    /// connection already sends it.
    #[must_use]
    pub fn with_last_event_id(mut self, id: &str) -> Self {
        self.parser.set_last_event_id(id);
        lock(&self.guard.0).last_event_id = self.parser.last_event_id().map(Arc::from);
        self
    }

    /// Takes reconnections from `budget` (shared with other clients or layers)
    /// instead of the config's.
    #[must_use]
    pub fn with_budget(mut self, budget: Budget) -> Self {
        self.budget = Some(budget);
        self.shared_budget = true;
        self
    }

    /// Draws backoff jitter from `rng` (seeded: reproducible runs).
    #[must_use]
    pub fn with_rng(mut self, rng: Rng) -> Self {
        self.rng = rng;
        self
    }

    /// A handle reporting the stream's state.
    pub fn handle(&self) -> SseHandle {
        SseHandle {
            status: self.guard.0.clone(),
        }
    }

    /// The stream's last event ID: where it would resume now.
    pub fn last_event_id(&self) -> Option<&str> {
        self.parser.last_event_id()
    }

    /// Whether a response is streaming.
    pub fn is_connected(&self) -> bool {
        self.body.is_some()
    }

    /// The HTTP client.
    pub fn get_ref(&self) -> &S {
        &self.service
    }

    /// The HTTP client, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.service
    }

    fn status(&self) -> std::sync::MutexGuard<'_, Status> {
        lock(&self.guard.0)
    }

    /// The next event from the buffer, duplicates dropped.
    fn take_event(&mut self) -> Option<Event> {
        while let Some(event) = self.parser.next_event() {
            if let Some(id) = event.id_arc() {
                if !self.seen.insert(id) {
                    tracing::debug!(target: TARGET, id = %id, "dropping a duplicate event");
                    self.status().duplicates += 1;
                    continue;
                }
            }
            self.progressed = true;
            self.resume.observe(&event);
            let last = self.parser.last_event_id().map(Arc::from);
            let mut s = self.status();
            s.events += 1;
            s.last_event_id = last;
            return Some(event);
        }
        None
    }

    /// The delay before the next attempt: the backoff's, or the server's when it
    /// asked for longer.
    fn next_delay(&mut self, hint: Option<Duration>) -> Duration {
        let backoff = self.config.backoff;
        let delay = self
            .delays
            .get_or_insert_with(|| backoff.delays())
            .next_delay(&self.rng);
        match hint.or(self.parser.retry()) {
            Some(floor) => delay.max(floor.min(self.config.retry_cap)),
            None => delay,
        }
    }

    fn schedule(&mut self, now: Instant, hint: Option<Duration>) -> Duration {
        let delay = self.next_delay(hint);
        let at = now.checked_add(delay);
        self.next_attempt_at = at;
        let retry = self.parser.retry();
        let mut s = self.status();
        s.next_attempt_at = at;
        s.retry = retry;
        delay
    }

    fn attempt_failed(&mut self, error: &BoxError, hint: Option<Duration>) {
        let now = Instant::now();
        {
            let mut s = self.status();
            s.down_since.get_or_insert(now);
            s.attempts = s.attempts.saturating_add(1);
            s.failed_attempts += 1;
            s.last_error = Some(chain(&**error));
        }
        let delay = self.schedule(now, hint);
        let attempts = self.status().attempts;
        tracing::warn!(
            target: TARGET,
            attempts,
            retry_in = ?delay,
            error = %chain(&**error),
            "event stream connection failed"
        );
    }

    fn cut(&mut self, how: Cut, error: Option<BoxError>) {
        self.body = None;
        self.parser.reset();
        if self.progressed {
            // The stream was useful: the next outage backs off from the start.
            self.delays = None;
        }
        let now = Instant::now();
        {
            let mut s = self.status();
            s.connected = false;
            s.down_since = Some(now);
            s.disconnects += 1;
            if how == Cut::Idle {
                s.idle_timeouts += 1;
            }
            s.last_error = Some(match (&error, how) {
                (Some(e), _) => chain(&**e),
                (None, Cut::Idle) => "no data within the idle timeout".to_owned(),
                (None, _) => "the stream ended".to_owned(),
            });
        }
        let delay = self.schedule(now, None);
        let last_event_id = self.parser.last_event_id().unwrap_or_default();
        match (how, error) {
            (Cut::Idle, _) => tracing::warn!(
                target: TARGET,
                idle_timeout = ?self.config.idle_timeout,
                retry_in = ?delay,
                last_event_id,
                "event stream silent for too long: reconnecting"
            ),
            (_, Some(e)) => tracing::warn!(
                target: TARGET,
                error = %chain(&*e),
                retry_in = ?delay,
                last_event_id,
                "event stream cut: reconnecting"
            ),
            (_, None) => tracing::info!(
                target: TARGET,
                retry_in = ?delay,
                last_event_id,
                "event stream ended: reconnecting"
            ),
        }
    }

    fn connected(&mut self, body: StreamBody) {
        self.body = Some(Box::pin(body));
        self.progressed = false;
        self.arm_idle(Instant::now());
        let (since, attempts) = {
            let mut s = self.status();
            let ended = (s.down_since.take(), s.attempts);
            s.connected = true;
            s.connects += 1;
            s.attempts = 0;
            s.next_attempt_at = None;
            s.last_error = None;
            ended
        };
        let last_event_id = self.parser.last_event_id().unwrap_or_default();
        match since {
            Some(since) => tracing::info!(
                target: TARGET,
                down_for = ?since.elapsed(),
                attempts,
                last_event_id,
                "event stream resumed"
            ),
            None => tracing::debug!(target: TARGET, "event stream connected"),
        }
    }

    /// (Re)starts the idle timer from `now`.
    fn arm_idle(&mut self, now: Instant) {
        let Some(at) = self.config.idle_timeout.and_then(|t| now.checked_add(t)) else {
            self.idle = None;
            return;
        };
        match &mut self.idle {
            Some(sleep) => sleep.as_mut().reset(at),
            None => self.idle = Some(Box::pin(sleep_until(at))),
        }
    }

    /// The request of the next connection.
    fn request(&mut self) -> Request<()> {
        let mut req = self.template.clone();
        let headers = req.headers_mut();
        if !headers.contains_key(ACCEPT) {
            headers.insert(ACCEPT, EVENT_STREAM);
        }
        if !headers.contains_key(CACHE_CONTROL) {
            headers.insert(CACHE_CONTROL, NO_CACHE);
        }
        let last = self.parser.last_event_id();
        if let Some(id) = last {
            match HeaderValue::from_str(id) {
                Ok(v) => {
                    headers.insert(LAST_EVENT_ID, v);
                }
                Err(_) => tracing::warn!(
                    target: TARGET,
                    id,
                    "the last event id cannot be sent as a header: resuming without it"
                ),
            }
        }
        self.resume.prepare(&mut req, last);
        req
    }
}

impl<S, B, RB> EventSource<S, B>
where
    S: Service<Request<B>, Response = Response<RB>>,
    S::Error: Into<BoxError>,
    B: Default,
    RB: Body + Send + 'static,
    RB::Error: Into<BoxError>,
{
    /// The next event, or `None` once the stream ended for good (a 204 from the
    /// server, or after an error). Cuts are handled inside: the call waits while
    /// the client reconnects.
    ///
    /// Cancel-safe: dropping the returned future loses no event (a connection
    /// attempt under way is abandoned and made again).
    pub async fn next(&mut self) -> Option<Result<Event, SseError>> {
        loop {
            if self.status().finished {
                return None;
            }
            if let Some(event) = self.take_event() {
                return Some(Ok(event));
            }
            if let Some(e) = self.parser.too_large() {
                return self.finish(Some(SseError::TooLarge(e)));
            }
            if self.body.is_none() {
                if let Err(stop) = self.connect().await {
                    return self.finish(stop);
                }
                continue;
            }
            self.read().await;
        }
    }

    /// The events as a [`Stream`](futures_util::Stream).
    pub fn into_stream(self) -> impl futures_util::Stream<Item = Result<Event, SseError>> {
        futures_util::stream::unfold(self, |mut source| async move {
            let item = source.next().await?;
            Some((item, source))
        })
    }

    fn finish(&mut self, error: Option<SseError>) -> Option<Result<Event, SseError>> {
        self.body = None;
        {
            let mut s = self.status();
            s.finished = true;
            s.connected = false;
        }
        match &error {
            Some(e) => tracing::warn!(target: TARGET, error = %e, "event stream stopped"),
            None => tracing::info!(target: TARGET, "event stream closed by the server"),
        }
        error.map(Err)
    }

    /// Reads one frame, or notices the stream was cut.
    async fn read(&mut self) {
        let Some(body) = self.body.as_mut() else {
            return;
        };
        let idle = &mut self.idle;
        let outcome = poll_fn(|cx| {
            if let Poll::Ready(frame) = body.as_mut().poll_frame(cx) {
                return Poll::Ready(Some(frame));
            }
            if let Some(sleep) = idle.as_mut() {
                if sleep.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(None);
                }
            }
            Poll::Pending
        })
        .await;
        match outcome {
            Some(Some(Ok(frame))) => {
                self.arm_idle(Instant::now());
                if let Ok(data) = frame.into_data() {
                    self.parser.feed(&data);
                }
            }
            Some(Some(Err(e))) => self.cut(Cut::Error, Some(e)),
            Some(None) => self.cut(Cut::End, None),
            None => self.cut(Cut::Idle, None),
        }
    }

    /// Connects, waiting and retrying as long as it takes; `Err` to stop for good.
    async fn connect(&mut self) -> Result<(), Option<SseError>> {
        loop {
            if let Some(at) = self.next_attempt_at {
                sleep_until(at).await;
            }
            let in_outage = self.status().down_since.is_some();
            if in_outage {
                if let Some(budget) = &self.budget {
                    let now = Instant::now();
                    if !budget.withdraw(now) {
                        self.status().budget_denied += 1;
                        let delay = self.schedule(now, None);
                        tracing::debug!(target: TARGET, retry_in = ?delay, "reconnection put off: budget spent");
                        continue;
                    }
                }
            }
            self.next_attempt_at = None;
            self.status().total_attempts += 1;
            let request = self.request().map(|()| B::default());
            match self.attempt(request).await {
                Attempt::Connected(body) => {
                    self.connected(body);
                    return Ok(());
                }
                Attempt::Failed(error, hint) => self.attempt_failed(&error, hint),
                Attempt::Stop(error) => return Err(error),
            }
        }
    }

    async fn attempt(&mut self, request: Request<B>) -> Attempt {
        if let Err(e) = poll_fn(|cx| self.service.poll_ready(cx)).await {
            return Attempt::Failed(e.into(), None);
        }
        let call = self.service.call(request);
        let answer = match self.config.idle_timeout {
            Some(t) => match tokio::time::timeout(t, call).await {
                Ok(answer) => answer,
                Err(_) => return Attempt::Failed("no answer within the idle timeout".into(), None),
            },
            None => call.await,
        };
        let response = match answer {
            Ok(r) => r,
            Err(e) => return Attempt::Failed(e.into(), None),
        };
        let status = response.status();
        if status == StatusCode::NO_CONTENT {
            return Attempt::Stop(None);
        }
        if status.is_success() {
            let content_type = response.headers().get(CONTENT_TYPE);
            if !content_type.is_some_and(is_event_stream) {
                return Attempt::Stop(Some(SseError::ContentType(content_type.cloned())));
            }
            let body = response
                .into_body()
                .map_frame(|frame| frame.map_data(|mut data| data.copy_to_bytes(data.remaining())))
                .map_err(Into::into);
            return Attempt::Connected(UnsyncBoxBody::new(body));
        }
        if status.is_server_error()
            || status == StatusCode::TOO_MANY_REQUESTS
            || status == StatusCode::REQUEST_TIMEOUT
        {
            let hint = response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| crate::hint::retry_after(v.as_bytes(), SystemTime::now()));
            return Attempt::Failed(format!("the server answered {status}").into(), hint);
        }
        Attempt::Stop(Some(SseError::Status(status)))
    }
}

/// `error` and its sources, joined: HTTP clients often wrap the interesting part
/// ("client error (Connect)" hides "connection refused").
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut out = error.to_string();
    let mut next = error.source();
    while let Some(e) = next {
        let text = e.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = e.source();
    }
    out
}

fn is_event_stream(value: &HeaderValue) -> bool {
    let essence = value
        .as_bytes()
        .split(|&b| b == b';')
        .next()
        .unwrap_or_default();
    essence
        .trim_ascii()
        .eq_ignore_ascii_case(b"text/event-stream")
}

impl<S: fmt::Debug, B> fmt::Debug for EventSource<S, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EventSource")
            .field("service", &self.service)
            .field("uri", self.template.uri())
            .field("config", &self.config)
            .field("connected", &self.body.is_some())
            .field("last_event_id", &self.parser.last_event_id())
            .finish_non_exhaustive()
    }
}
