//! End-to-end: reconnection and resumption over real loopback sockets.
//!
//! - an axum SSE feed killed and restarted mid-stream, repeatedly: the consumer of
//!   a `buttress_http::sse::EventSource` gets every event exactly once, in order;
//! - a half-open connection (the server stops writing without closing) is noticed
//!   by the idle timeout and replaced;
//! - against a server that stays down, attempts (of the SSE client and of a
//!   `buttress::reconnect::Reconnect` over a hyper connection) are spaced by the
//!   backoff, capped, and reported by their handles.
//!
//! Real time: delays are tens of milliseconds, and every wait is bounded.
#![allow(clippy::unwrap_used, reason = "test helpers: a failure should panic")]

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use buttress::BoxError;
use buttress::backoff::{Backoff, Jitter};
use buttress::reconnect::error::Reconnecting;
use buttress::reconnect::{Reconnect, ReconnectConfig};
use buttress_http::sse::{EventSource, SseConfig};
use bytes::Bytes;
use http::Request;
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, timeout};
use tower::{Service, ServiceExt};

/// Bounds every wait, so a regression fails instead of hanging.
const BOUND: Duration = Duration::from_secs(5);
const MS: Duration = Duration::from_millis(1);

type HttpClient = Client<HttpConnector, Empty<Bytes>>;

fn http_client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

#[derive(Clone)]
struct FeedState {
    total: u64,
    tick: Duration,
    kill: Arc<watch::Sender<bool>>,
}

/// Streams events `last-event-id + 1 ..= total`, one per tick; 204 once the feed is
/// over. Killing the server errors every open stream at once: hyper drops the
/// connection mid-body, as a crash would.
async fn events(State(s): State<FeedState>, headers: HeaderMap) -> Response {
    let from: u64 = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .unwrap_or(0);
    if from >= s.total {
        return StatusCode::NO_CONTENT.into_response();
    }
    let kill = s.kill.subscribe();
    let stream = futures_util::stream::unfold((from + 1, kill, s), |(i, mut kill, s)| async move {
        if i > s.total {
            return None;
        }
        let killed = tokio::select! {
            () = sleep(s.tick) => false,
            _ = kill.wait_for(|killed| *killed) => true,
        };
        if killed {
            return Some((Err(io::Error::other("server killed")), (i, kill, s)));
        }
        let event = SseEvent::default()
            .id(i.to_string())
            .data(format!("event {i}"));
        Some((Ok(event), (i + 1, kill, s)))
    });
    Sse::new(stream).into_response()
}

/// An SSE feed server that can be killed and started again on the same port.
struct Feed {
    addr: SocketAddr,
    kill: Arc<watch::Sender<bool>>,
    task: JoinHandle<()>,
}

impl Feed {
    async fn start(addr: SocketAddr, total: u64, tick: Duration) -> Self {
        let listener = bind(addr).await;
        let addr = listener.local_addr().unwrap();
        let kill = Arc::new(watch::Sender::new(false));
        let app = Router::new()
            .route("/events", get(events))
            .with_state(FeedState {
                total,
                tick,
                kill: kill.clone(),
            });
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self { addr, kill, task }
    }

    /// Stops accepting and cuts every open stream.
    async fn kill(self) -> SocketAddr {
        self.kill.send_replace(true);
        self.task.abort();
        let _ = self.task.await;
        self.addr
    }
}

/// Binds `addr`, retrying briefly while the port is released.
async fn bind(addr: SocketAddr) -> TcpListener {
    let deadline = Instant::now() + BOUND;
    loop {
        match TcpListener::bind(addr).await {
            Ok(l) => return l,
            Err(e) if Instant::now() < deadline => {
                let _ = e;
                sleep(5 * MS).await;
            }
            Err(e) => panic!("cannot bind {addr}: {e}"),
        }
    }
}

/// A port nothing listens on: connections to it are refused.
async fn closed_port() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap()
}

fn localhost() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

#[tokio::test]
async fn a_feed_restarted_mid_stream_is_received_exactly_once_in_order() {
    timeout(BOUND * 2, async {
        let total = 60;
        let tick = 4 * MS;
        let feed = Feed::start(localhost(), total, tick).await;
        let uri = format!("http://{}/events", feed.addr).parse().unwrap();
        let config = SseConfig::default()
            .with_backoff(Backoff::exponential(10 * MS, 80 * MS))
            .with_idle_timeout(Duration::from_secs(1));
        let mut source = EventSource::new(http_client(), uri).with_config(config);
        let handle = source.handle();

        let received = Arc::new(Mutex::new(Vec::<(String, String)>::new()));
        let consumer = tokio::spawn({
            let received = received.clone();
            async move {
                while let Some(event) = source.next().await {
                    let event = event.unwrap();
                    received
                        .lock()
                        .unwrap()
                        .push((event.id().unwrap().to_owned(), event.into_data()));
                }
            }
        });

        // Kill the server three times, each time once ten more events arrived,
        // and keep it down for a while (the client meets refused connections).
        let mut feed = feed;
        for round in 1..=3 {
            while received.lock().unwrap().len() < 12 * round {
                sleep(2 * MS).await;
            }
            let addr = feed.kill().await;
            sleep(60 * MS).await;
            feed = Feed::start(addr, total, tick).await;
        }
        consumer.await.unwrap();

        let received = received.lock().unwrap().clone();
        let expected: Vec<(String, String)> = (1..=total)
            .map(|i| (i.to_string(), format!("event {i}")))
            .collect();
        assert_eq!(received, expected, "every event exactly once, in order");
        let s = handle.snapshot();
        assert_eq!(s.events, total);
        // Three kills, plus the clean end of the feed before the final 204.
        assert!(s.disconnects >= 4, "{s:?}");
        assert!(
            s.failed_attempts >= 3,
            "the server was down for a while each time: {s:?}"
        );
        assert!(s.finished);
        feed.kill().await;
    })
    .await
    .unwrap();
}

/// Reads a request head from `sock` (without tokio's io-util).
async fn read_head(sock: &TcpStream) -> String {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        sock.readable().await.unwrap();
        match sock.try_read(&mut buf) {
            Ok(0) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("{e}"),
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

async fn write_all(sock: &TcpStream, mut bytes: &[u8]) {
    while !bytes.is_empty() {
        sock.writable().await.unwrap();
        match sock.try_write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("{e}"),
        }
    }
}

#[tokio::test]
async fn a_half_open_connection_is_detected_by_the_idle_timeout_and_replaced() {
    timeout(BOUND, async {
        // Each connection gets one event, then silence: the socket stays open and
        // nothing more is written, as when a peer or a middlebox vanished.
        let listener = TcpListener::bind(localhost()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let requests = Arc::new(Mutex::new(Vec::<(Instant, String)>::new()));
        let server = tokio::spawn({
            let requests = requests.clone();
            async move {
                let mut held = Vec::new();
                for n in 1u32.. {
                    let (sock, _) = listener.accept().await.unwrap();
                    let head = read_head(&sock).await;
                    requests.lock().unwrap().push((Instant::now(), head));
                    write_all(
                        &sock,
                        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\n",
                    )
                    .await;
                    write_all(&sock, format!("id: {n}\ndata: event {n}\n\n").as_bytes()).await;
                    held.push(sock);
                }
            }
        });

        let idle = 200 * MS;
        let config = SseConfig::default()
            .with_backoff(Backoff::constant(10 * MS))
            .with_idle_timeout(idle);
        let uri = format!("http://{addr}/events").parse().unwrap();
        let mut source = EventSource::new(http_client(), uri).with_config(config);
        let handle = source.handle();
        let mut got = Vec::new();
        for _ in 0..3 {
            got.push(source.next().await.unwrap().unwrap().into_data());
        }
        assert_eq!(got, ["event 1", "event 2", "event 3"]);

        let requests = requests.lock().unwrap().clone();
        assert_eq!(requests.len(), 3);
        for pair in requests.windows(2) {
            let gap = pair[1].0 - pair[0].0;
            assert!(
                gap >= idle,
                "replaced only after {idle:?} of silence, not {gap:?}"
            );
            assert!(gap < idle + 150 * MS, "replaced soon after: {gap:?}");
        }
        assert!(!requests[0].1.to_ascii_lowercase().contains("last-event-id"));
        assert!(
            requests[1]
                .1
                .to_ascii_lowercase()
                .contains("last-event-id: 1\r\n"),
            "{}",
            requests[1].1
        );
        assert!(
            requests[2]
                .1
                .to_ascii_lowercase()
                .contains("last-event-id: 2\r\n"),
            "{}",
            requests[2].1
        );
        let s = handle.snapshot();
        assert_eq!((s.idle_timeouts, s.disconnects), (2, 2));
        assert!(s.connected);
        server.abort();
    })
    .await
    .unwrap();
}

/// Checks gaps between attempts against the nominal backoff (no jitter): never
/// early, and late by no more than scheduling noise.
fn assert_spaced(times: &[Instant], nominal: &[Duration], cap: Duration) {
    let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.len() > nominal.len(), "too few attempts: {gaps:?}");
    for (i, gap) in gaps.iter().enumerate() {
        let want = nominal.get(i).copied().unwrap_or(cap);
        assert!(
            *gap >= want,
            "attempt {} came after {gap:?}, before {want:?}: {gaps:?}",
            i + 2
        );
        assert!(
            *gap < want + 100 * MS,
            "attempt {} came after {gap:?}, want {want:?}: {gaps:?}",
            i + 2
        );
    }
}

#[tokio::test]
async fn sse_attempts_against_a_down_server_are_spaced_capped_and_reported() {
    timeout(BOUND, async {
        let addr = closed_port().await;
        let attempts = Arc::new(Mutex::new(Vec::<Instant>::new()));
        let client = http_client();
        let recording = tower::service_fn({
            let attempts = attempts.clone();
            move |req: Request<Empty<Bytes>>| {
                attempts.lock().unwrap().push(Instant::now());
                client.request(req)
            }
        });
        let config = SseConfig::default()
            .with_backoff(Backoff::exponential(40 * MS, 160 * MS).with_jitter(Jitter::None));
        let uri = format!("http://{addr}/events").parse().unwrap();
        let mut source = EventSource::new(recording, uri).with_config(config);
        let handle = source.handle();
        let started = Instant::now();
        let consumer = tokio::spawn(async move {
            let first = source.next().await.unwrap().unwrap();
            (first.into_data(), source)
        });

        sleep(700 * MS).await;
        let times = attempts.lock().unwrap().clone();
        assert_spaced(&times, &[40 * MS, 80 * MS, 160 * MS], 160 * MS);
        let s = handle.snapshot();
        assert!(!s.connected);
        assert_eq!(s.attempts as usize, times.len());
        let since = s.reconnecting_since.unwrap();
        assert!(
            since >= started && since - started < 50 * MS,
            "down since the first attempt"
        );
        // The next attempt is due one capped delay after the last failure (or, if the
        // snapshot caught an attempt under way, about when that attempt started).
        let (next, last) = (s.next_attempt_at.unwrap(), *times.last().unwrap());
        assert!(
            next + 10 * MS > last && next <= last + 220 * MS,
            "{:?}",
            next - last
        );
        assert!(s.last_error.is_some());

        // The server comes up: the next attempt connects.
        let feed = Feed::start(addr, 1, MS).await;
        let (first, _source) = consumer.await.unwrap();
        assert_eq!(first, "event 1");
        let s = handle.snapshot();
        assert!(s.connected);
        assert_eq!((s.attempts, s.reconnecting_since), (0, None));
        feed.kill().await;
    })
    .await
    .unwrap();
}

/// One HTTP/1 connection as a tower service (hyper's `SendRequest`).
struct Http1(hyper::client::conn::http1::SendRequest<Empty<Bytes>>);

type Answer = Pin<Box<dyn Future<Output = Result<http::Response<Incoming>, hyper::Error>> + Send>>;

impl Service<Request<Empty<Bytes>>> for Http1 {
    type Response = http::Response<Incoming>;
    type Error = hyper::Error;
    type Future = Answer;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), hyper::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: Request<Empty<Bytes>>) -> Answer {
        Box::pin(self.0.send_request(req))
    }
}

/// Connects over TCP and shakes hands; records each attempt.
#[derive(Clone)]
struct Connector {
    attempts: Arc<Mutex<Vec<Instant>>>,
}

type Connecting = Pin<Box<dyn Future<Output = Result<Http1, BoxError>> + Send>>;

impl Service<SocketAddr> for Connector {
    type Response = Http1;
    type Error = BoxError;
    type Future = Connecting;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, addr: SocketAddr) -> Connecting {
        self.attempts.lock().unwrap().push(Instant::now());
        Box::pin(async move {
            let io = TcpStream::connect(addr).await?;
            let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
            tokio::spawn(async move {
                let _ = conn.await;
            });
            Ok(Http1(send))
        })
    }
}

fn get_root(addr: SocketAddr) -> Request<Empty<Bytes>> {
    Request::get(format!("http://{addr}/"))
        .header("host", addr.to_string())
        .body(Empty::new())
        .unwrap()
}

async fn serve_ok(addr: SocketAddr) -> JoinHandle<()> {
    let listener = bind(addr).await;
    let app = Router::new().route("/", get(|| async { "ok" }));
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    })
}

#[tokio::test]
async fn a_reconnecting_connection_backs_off_against_a_down_server_and_recovers() {
    timeout(BOUND, async {
        let addr = closed_port().await;
        let connector = Connector {
            attempts: Arc::default(),
        };
        let config = ReconnectConfig::default()
            .with_backoff(Backoff::exponential(40 * MS, 160 * MS).with_jitter(Jitter::None));
        let mut conn = Reconnect::new(connector.clone(), addr, config);
        let handle = conn.handle();
        let started = Instant::now();
        // A caller waits for the connection (no fail-fast).
        let caller = tokio::spawn(async move {
            let answer = conn
                .ready()
                .await
                .unwrap()
                .call(get_root(addr))
                .await
                .unwrap();
            (answer.status(), conn)
        });

        sleep(700 * MS).await;
        let times = connector.attempts.lock().unwrap().clone();
        assert_spaced(&times, &[40 * MS, 80 * MS, 160 * MS], 160 * MS);
        let s = handle.snapshot();
        assert!(!s.connected);
        assert_eq!(s.attempts as usize, times.len());
        assert_eq!(s.failed_attempts as usize, times.len());
        let since = s.reconnecting_since.unwrap();
        assert!(since >= started && since - started < 50 * MS);
        assert!(s.last_error.unwrap().to_lowercase().contains("refused"));

        let server = serve_ok(addr).await;
        let (status, _conn) = caller.await.unwrap();
        assert_eq!(status, StatusCode::OK);
        let s = handle.snapshot();
        assert!(s.connected);
        assert_eq!((s.attempts, s.reconnecting_since, s.connects), (0, None, 1));
        server.abort();
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_fail_fast_connection_refuses_calls_at_once_while_the_server_is_down() {
    timeout(BOUND, async {
        let addr = closed_port().await;
        let connector = Connector {
            attempts: Arc::default(),
        };
        let config = ReconnectConfig::default()
            .with_backoff(Backoff::constant(50 * MS))
            .with_fail_fast(true);
        let mut conn = Reconnect::new(connector, addr, config);
        for _ in 0..3 {
            let t0 = Instant::now();
            let err = conn
                .ready()
                .await
                .unwrap()
                .call(get_root(addr))
                .await
                .unwrap_err();
            assert!(t0.elapsed() < 50 * MS, "refused at once");
            let r = err.downcast_ref::<Reconnecting>().unwrap();
            assert!(r.attempts() >= 1);
            assert!(std::error::Error::source(r).is_some());
        }
        let server = serve_ok(addr).await;
        // Within one backoff delay the connection is back.
        let deadline = Instant::now() + BOUND;
        let status = loop {
            match conn.ready().await.unwrap().call(get_root(addr)).await {
                Ok(answer) => break answer.status(),
                Err(e) if e.is::<Reconnecting>() && Instant::now() < deadline => {
                    sleep(10 * MS).await;
                }
                Err(e) => panic!("{e}"),
            }
        };
        assert_eq!(status, StatusCode::OK);
        assert!(conn.is_connected());
        server.abort();
    })
    .await
    .unwrap();
}
