//! The client against a scripted server on paused time.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use buttress::backoff::{Backoff, Jitter};
use buttress::budget::BudgetConfig;
use bytes::Bytes;
use http::{Request, Response};
use http_body::Frame;
use tokio::time::{Instant, Sleep};
use tower_service::Service;

use super::*;

const MS: Duration = Duration::from_millis(1);

/// What a scripted response body does, step by step.
#[derive(Debug, Clone)]
enum Step {
    Send(String),
    Wait(Duration),
    /// A transport error (connection reset).
    Fail,
    /// Silence, forever: a half-open connection.
    Hang,
}

struct Script {
    steps: VecDeque<Step>,
    sleep: Option<Pin<Box<Sleep>>>,
}

impl http_body::Body for Script {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        loop {
            match self.steps.front().cloned() {
                None => return Poll::Ready(None),
                Some(Step::Send(s)) => {
                    self.steps.pop_front();
                    return Poll::Ready(Some(Ok(Frame::data(Bytes::from(s)))));
                }
                Some(Step::Wait(d)) => {
                    let sleep = self
                        .sleep
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep(d)));
                    match sleep.as_mut().poll(cx) {
                        Poll::Ready(()) => {
                            self.sleep = None;
                            self.steps.pop_front();
                        }
                        Poll::Pending => return Poll::Pending,
                    }
                }
                Some(Step::Fail) => {
                    self.steps.pop_front();
                    return Poll::Ready(Some(Err(io::Error::from(io::ErrorKind::ConnectionReset))));
                }
                Some(Step::Hang) => return Poll::Pending,
            }
        }
    }
}

/// What the scripted server does with one connection.
enum Answer {
    Stream(Vec<Step>),
    Status(u16, Vec<(&'static str, &'static str)>),
    Refused,
    /// Accepts the connection and never answers.
    Silent,
}

type Handler = dyn Fn(usize, &Request<()>) -> Answer + Send + Sync;

/// A request: when it came, its Last-Event-ID, its URI.
type Logged = (Instant, Option<String>, String);

#[derive(Clone)]
struct Server {
    handler: Arc<Handler>,
    /// When each request came, and its Last-Event-ID.
    log: Arc<Mutex<Vec<Logged>>>,
}

impl Server {
    fn new(handler: impl Fn(usize, &Request<()>) -> Answer + Send + Sync + 'static) -> Self {
        Self {
            handler: Arc::new(handler),
            log: Arc::default(),
        }
    }

    fn requests(&self) -> Vec<Logged> {
        self.log.lock().unwrap().clone()
    }

    fn last_ids(&self) -> Vec<Option<String>> {
        self.requests().into_iter().map(|(_, id, _)| id).collect()
    }
}

type Answered = Pin<Box<dyn Future<Output = Result<Response<Script>, io::Error>> + Send>>;

impl Service<Request<()>> for Server {
    type Response = Response<Script>;
    type Error = io::Error;
    type Future = Answered;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), io::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<()>) -> Answered {
        let id = req
            .headers()
            .get(LAST_EVENT_ID)
            .map(|v| v.to_str().unwrap().to_owned());
        let n = {
            let mut log = self.log.lock().unwrap();
            log.push((Instant::now(), id, req.uri().to_string()));
            log.len() - 1
        };
        let answer = (self.handler)(n, &req);
        Box::pin(async move {
            match answer {
                Answer::Stream(steps) => Ok(Response::builder()
                    .header("content-type", "text/event-stream; charset=utf-8")
                    .body(Script {
                        steps: steps.into(),
                        sleep: None,
                    })
                    .unwrap()),
                Answer::Status(code, headers) => {
                    let mut b = Response::builder().status(code);
                    for (k, v) in headers {
                        b = b.header(k, v);
                    }
                    Ok(b.body(Script {
                        steps: VecDeque::new(),
                        sleep: None,
                    })
                    .unwrap())
                }
                Answer::Refused => Err(io::Error::from(io::ErrorKind::ConnectionRefused)),
                Answer::Silent => std::future::pending().await,
            }
        })
    }
}

fn event(i: u64) -> String {
    format!("id: {i}\ndata: event {i}\n\n")
}

fn last_id(req: &Request<()>) -> u64 {
    req.headers()
        .get(LAST_EVENT_ID)
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .unwrap_or(0)
}

fn source(server: &Server, config: SseConfig) -> EventSource<Server, ()> {
    EventSource::new(server.clone(), "http://feed.test/events".parse().unwrap()).with_config(config)
}

fn fast() -> SseConfig {
    SseConfig::default()
        .with_backoff(Backoff::exponential(10 * MS, 80 * MS).with_jitter(Jitter::None))
}

async fn take(source: &mut EventSource<Server, ()>, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    while out.len() < n {
        match source.next().await {
            Some(Ok(e)) => out.push(e.into_data()),
            other => panic!("stream stopped early: {other:?} after {out:?}"),
        }
    }
    out
}

#[tokio::test(start_paused = true)]
async fn cuts_of_every_kind_resume_exactly_once_in_order() {
    // Each connection streams three events from Last-Event-ID, then is cut: by
    // the end of the body, a reset, or a restart that first replays the last event
    // it sent (a server that resumes one event early) and a half-written event.
    let server = Server::new(|n, req| {
        let from = last_id(req);
        let mut steps = Vec::new();
        if n % 3 == 2 && from > 0 {
            steps.push(Step::Send(event(from)));
        }
        for i in from + 1..=from + 3 {
            steps.push(Step::Wait(5 * MS));
            steps.push(Step::Send(event(i)));
        }
        match n % 3 {
            0 => {}
            1 => steps.push(Step::Fail),
            _ => steps.push(Step::Send(format!("id: {}\ndata: half", from + 4))),
        }
        Answer::Stream(steps)
    });
    let mut es = source(&server, fast());
    let handle = es.handle();
    let got = take(&mut es, 30).await;
    let expected: Vec<String> = (1..=30).map(|i| format!("event {i}")).collect();
    assert_eq!(got, expected);
    let ids = server.last_ids();
    assert_eq!(ids[0], None);
    assert_eq!(
        ids[1..4],
        [Some("3".into()), Some("6".into()), Some("9".into())]
    );
    let s = handle.snapshot();
    assert_eq!(s.events, 30);
    assert_eq!(s.duplicates, 3, "one replayed event per third connection");
    assert_eq!(s.disconnects, 9);
    assert_eq!(s.last_event_id.as_deref(), Some("30"));
}

#[tokio::test(start_paused = true)]
async fn the_reconnection_after_a_useful_stream_waits_the_first_backoff_delay() {
    let server = Server::new(|_, req| {
        let from = last_id(req);
        Answer::Stream(vec![Step::Send(event(from + 1))])
    });
    let mut es = source(&server, fast());
    take(&mut es, 4).await;
    let times: Vec<Instant> = server.requests().into_iter().map(|(t, _, _)| t).collect();
    for w in times.windows(2) {
        assert_eq!(
            w[1] - w[0],
            10 * MS,
            "each stream delivered: the backoff starts over"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_silent_connection_is_cut_by_the_idle_timeout_and_replaced() {
    let server = Server::new(|n, req| {
        let from = last_id(req);
        if n == 0 {
            // One event, then silence without a close: half-open.
            Answer::Stream(vec![Step::Send(event(from + 1)), Step::Hang])
        } else {
            Answer::Stream(vec![Step::Send(event(from + 1)), Step::Hang])
        }
    });
    let mut es = source(&server, fast().with_idle_timeout(100 * MS));
    let handle = es.handle();
    let t0 = Instant::now();
    assert_eq!(take(&mut es, 2).await, ["event 1", "event 2"]);
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    // Cut after 100 ms of silence, reconnected after the first backoff delay.
    assert_eq!(requests[1].0 - t0, 110 * MS);
    assert_eq!(requests[1].1.as_deref(), Some("1"));
    let s = handle.snapshot();
    assert_eq!((s.idle_timeouts, s.disconnects), (1, 1));
    assert!(s.connected);
}

#[tokio::test(start_paused = true)]
async fn heartbeats_keep_a_quiet_stream_alive() {
    let server = Server::new(|_, _| {
        let mut steps = vec![Step::Send(event(1))];
        for _ in 0..20 {
            steps.push(Step::Wait(60 * MS));
            steps.push(Step::Send(": heartbeat\n".into()));
        }
        steps.push(Step::Send(event(2)));
        steps.push(Step::Hang);
        Answer::Stream(steps)
    });
    let mut es = source(&server, fast().with_idle_timeout(100 * MS));
    assert_eq!(take(&mut es, 2).await, ["event 1", "event 2"]);
    assert_eq!(server.requests().len(), 1, "1.2 s of heartbeats, never cut");
    assert_eq!(es.handle().snapshot().idle_timeouts, 0);
}

#[tokio::test(start_paused = true)]
async fn a_server_that_never_answers_fails_the_attempt_after_the_idle_timeout() {
    let server = Server::new(|n, _| {
        if n == 0 {
            Answer::Silent
        } else {
            Answer::Stream(vec![Step::Send(event(1))])
        }
    });
    let mut es = source(&server, fast().with_idle_timeout(100 * MS));
    let t0 = Instant::now();
    assert_eq!(take(&mut es, 1).await, ["event 1"]);
    assert_eq!(server.requests()[1].0 - t0, 110 * MS);
    assert_eq!(es.handle().snapshot().failed_attempts, 1);
}

#[tokio::test(start_paused = true)]
async fn attempts_against_a_server_that_stays_down_back_off_to_the_cap() {
    let up = Arc::new(Mutex::new(false));
    let up2 = up.clone();
    let server = Server::new(move |_, req| {
        if *up2.lock().unwrap() {
            Answer::Stream(vec![Step::Send(event(last_id(req) + 1)), Step::Hang])
        } else {
            Answer::Refused
        }
    });
    let mut es = source(&server, fast());
    let handle = es.handle();
    let t0 = Instant::now();
    let reader = tokio::spawn(async move {
        let first = es.next().await;
        (first, es)
    });
    tokio::time::sleep(500 * MS).await;
    let s = handle.snapshot();
    assert!(!s.connected);
    assert_eq!(s.reconnecting_since, Some(t0));
    let times: Vec<Duration> = server
        .requests()
        .into_iter()
        .map(|(t, _, _)| t - t0)
        .collect();
    // 0, +10, +20, +40, +80, then +80 (the cap) each time.
    assert_eq!(
        &times[..6],
        &[
            Duration::ZERO,
            10 * MS,
            30 * MS,
            70 * MS,
            150 * MS,
            230 * MS
        ]
    );
    let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps[3..].iter().all(|g| *g == 80 * MS), "{gaps:?}");
    assert_eq!(s.attempts as usize, times.len());
    assert_eq!(
        s.next_attempt_at,
        Some(t0 + *times.last().unwrap() + 80 * MS)
    );
    assert!(s.last_error.is_some());

    *up.lock().unwrap() = true;
    let (first, _es) = reader.await.unwrap();
    assert_eq!(first.unwrap().unwrap().data(), "event 1");
    let s = handle.snapshot();
    assert!(s.connected);
    assert_eq!((s.attempts, s.reconnecting_since), (0, None));
}

#[tokio::test(start_paused = true)]
async fn the_servers_retry_field_sets_the_reconnection_delay() {
    let server = Server::new(|n, req| {
        let from = last_id(req);
        let mut steps = vec![Step::Send(event(from + 1))];
        if n == 0 {
            steps.insert(0, Step::Send("retry: 500\n".into()));
        }
        Answer::Stream(steps)
    });
    let mut es = source(&server, fast());
    take(&mut es, 3).await;
    let t: Vec<Instant> = server.requests().into_iter().map(|(t, _, _)| t).collect();
    assert_eq!(t[1] - t[0], 500 * MS);
    assert_eq!(
        t[2] - t[1],
        500 * MS,
        "the server's delay holds until it says otherwise"
    );
    assert_eq!(es.handle().snapshot().retry, Some(500 * MS));

    // Capped by retry_cap.
    let server = Server::new(|_, req| {
        Answer::Stream(vec![
            Step::Send("retry: 999999999\n".into()),
            Step::Send(event(last_id(req) + 1)),
        ])
    });
    let mut es = source(&server, fast().with_retry_cap(2000 * MS));
    take(&mut es, 2).await;
    let t: Vec<Instant> = server.requests().into_iter().map(|(t, _, _)| t).collect();
    assert_eq!(t[1] - t[0], 2000 * MS);
}

#[tokio::test(start_paused = true)]
async fn a_503_is_retried_after_its_retry_after() {
    let server = Server::new(|n, _| match n {
        0 => Answer::Status(503, vec![("retry-after", "2")]),
        1 => Answer::Status(502, vec![]),
        _ => Answer::Stream(vec![Step::Send(event(1))]),
    });
    let mut es = source(&server, fast());
    take(&mut es, 1).await;
    let t: Vec<Instant> = server.requests().into_iter().map(|(t, _, _)| t).collect();
    assert_eq!(t[1] - t[0], Duration::from_secs(2));
    assert_eq!(t[2] - t[1], 20 * MS, "no hint: the backoff goes on");
}

#[tokio::test(start_paused = true)]
async fn final_answers_end_the_stream() {
    let server = Server::new(|n, _| match n {
        0 => Answer::Stream(vec![Step::Send(event(1))]),
        _ => Answer::Status(204, vec![]),
    });
    let mut es = source(&server, fast());
    assert_eq!(take(&mut es, 1).await, ["event 1"]);
    assert!(es.next().await.is_none());
    assert!(es.next().await.is_none(), "and stays ended");
    assert!(es.handle().snapshot().finished);

    let server = Server::new(|_, _| Answer::Status(404, vec![]));
    let mut es = source(&server, fast());
    assert!(matches!(es.next().await, Some(Err(SseError::Status(s))) if s == 404));
    assert!(es.next().await.is_none());

    let server = Server::new(|_, _| Answer::Status(200, vec![("content-type", "text/html")]));
    let mut es = source(&server, fast());
    let err = es.next().await.unwrap().unwrap_err();
    assert!(matches!(err, SseError::ContentType(Some(_))), "{err}");
}

#[tokio::test(start_paused = true)]
async fn an_event_over_the_size_limit_ends_the_stream() {
    let server = Server::new(|_, _| {
        Answer::Stream(vec![
            Step::Send(event(1)),
            Step::Send(format!("data: {}\n\n", "x".repeat(100))),
        ])
    });
    let mut es = source(&server, fast().with_max_event_size(64));
    assert_eq!(take(&mut es, 1).await, ["event 1"]);
    let err = es.next().await.unwrap().unwrap_err();
    assert!(matches!(err, SseError::TooLarge(TooLarge { limit: 64 })));
}

#[tokio::test(start_paused = true)]
async fn the_budget_puts_reconnections_off() {
    let server = Server::new(|_, _| Answer::Refused);
    // Two reconnections per second: min_per_second 2 over a 1 s ttl.
    let budget = BudgetConfig {
        ratio: 0.0,
        min_per_second: 2,
        ttl: Duration::from_secs(1),
    };
    let mut es = source(&server, fast().with_budget(budget));
    let handle = es.handle();
    let reader = tokio::spawn(async move { es.next().await.map(|_| ()) });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // Without the budget: about 20 attempts in 1.5 s.
    let attempts = server.requests().len();
    assert!((3..=6).contains(&attempts), "{attempts}");
    assert!(handle.snapshot().budget_denied > 5);
    reader.abort();
}

#[tokio::test(start_paused = true)]
async fn a_resume_hook_sees_events_and_shapes_the_request() {
    #[derive(Default)]
    struct Cursor(Option<String>);
    impl Resume for Cursor {
        fn observe(&mut self, event: &Event) {
            self.0 = Some(event.data().to_owned());
        }
        fn prepare(&mut self, req: &mut Request<()>, last: Option<&str>) {
            assert_eq!(last.is_some(), self.0.is_some());
            if let Some(c) = &self.0 {
                *req.uri_mut() = format!("http://feed.test/events?after={}", c.replace(' ', "-"))
                    .parse()
                    .unwrap();
            }
        }
    }
    let server = Server::new(|_, req| {
        let from = last_id(req);
        Answer::Stream(vec![Step::Send(event(from + 1))])
    });
    let mut es = source(&server, fast()).with_resume(Cursor::default());
    take(&mut es, 2).await;
    let uris: Vec<String> = server.requests().into_iter().map(|(_, _, u)| u).collect();
    assert_eq!(
        uris,
        [
            "http://feed.test/events",
            "http://feed.test/events?after=event-1"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_stored_last_event_id_is_sent_on_the_first_connection() {
    let server = Server::new(|_, req| Answer::Stream(vec![Step::Send(event(last_id(req) + 1))]));
    let mut es = source(&server, fast()).with_last_event_id("41");
    assert_eq!(take(&mut es, 1).await, ["event 42"]);
    assert_eq!(server.last_ids()[0].as_deref(), Some("41"));
    assert_eq!(es.last_event_id(), Some("42"));
}

#[tokio::test(start_paused = true)]
async fn the_request_asks_for_an_event_stream() {
    let seen = Arc::new(Mutex::new(None));
    let seen2 = seen.clone();
    let server = Server::new(move |_, req| {
        *seen2.lock().unwrap() = Some((
            req.headers()["accept"].clone(),
            req.headers()["cache-control"].clone(),
        ));
        Answer::Stream(vec![Step::Send(event(1))])
    });
    let mut es = source(&server, fast());
    take(&mut es, 1).await;
    let (accept, cache) = seen.lock().unwrap().clone().unwrap();
    assert_eq!(
        (accept.to_str().unwrap(), cache.to_str().unwrap()),
        ("text/event-stream", "no-cache")
    );
}

#[tokio::test(start_paused = true)]
async fn into_stream_yields_the_same_events() {
    use futures_util::StreamExt;
    let server = Server::new(|n, req| {
        if n >= 3 {
            return Answer::Status(204, vec![]);
        }
        let from = last_id(req);
        Answer::Stream(vec![
            Step::Send(event(from + 1)),
            Step::Send(event(from + 2)),
        ])
    });
    let stream = source(&server, fast()).into_stream();
    let got: Vec<String> = stream.map(|e| e.unwrap().into_data()).collect().await;
    assert_eq!(
        got,
        (1..=6).map(|i| format!("event {i}")).collect::<Vec<_>>()
    );
}

#[test]
fn the_handle_reports_a_dropped_source_as_finished() {
    let server = Server::new(|_, _| Answer::Refused);
    let es = source(&server, fast());
    let handle = es.handle();
    assert!(!handle.snapshot().finished);
    drop(es);
    assert!(handle.snapshot().finished);
}

#[cfg(feature = "reconnect")]
#[test]
fn a_policys_reconnect_section_converts() {
    let r =
        buttress::reconnect::ReconnectConfig::default().with_idle_timeout(Duration::from_secs(30));
    let c = SseConfig::from(r);
    assert_eq!((c.backoff, c.idle_timeout), (r.backoff, r.idle_timeout));
}

#[tokio::test(start_paused = true)]
async fn a_shared_budget_outlives_with_config() {
    let server = Server::new(|_, _| Answer::Refused);
    // One reconnection per second.
    let budget = buttress::budget::Budget::new(BudgetConfig {
        ratio: 0.0,
        min_per_second: 1,
        ttl: Duration::from_millis(1000),
    });
    let mut es = EventSource::new(server.clone(), "http://feed.test/events".parse().unwrap())
        .with_budget(budget)
        .with_config(fast());
    let reader = tokio::spawn(async move { es.next().await.map(|_| ()) });
    tokio::time::sleep(500 * MS).await;
    // The first connection (free) and one reconnection; the backoff alone would
    // have made about eight.
    assert_eq!(server.requests().len(), 2);
    reader.abort();
}
