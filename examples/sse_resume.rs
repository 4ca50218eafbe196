//! A Server-Sent Events feed that crashes twice, and a client that does not notice:
//! it reconnects with backoff, resumes from `Last-Event-ID`, and prints every event
//! once, in order, with no gap.
//!
//! Run: `cargo run -p buttress-examples --example sse_resume` (about three seconds;
//! `RUST_LOG=buttress=debug` shows every attempt).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use buttress::backoff::Backoff;
use buttress_http::sse::{EventSource, SseConfig};
use bytes::Bytes;
use http_body_util::Empty;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How many events the feed has; then it answers 204 (the format's "stop").
const TOTAL: u64 = 30;
const TICK: Duration = Duration::from_millis(40);

#[derive(Clone)]
struct Feed {
    crashed: Arc<watch::Sender<bool>>,
}

/// Streams the events after the client's `Last-Event-ID`, one per tick, with a
/// heartbeat comment when idle.
async fn events(State(feed): State<Feed>, headers: HeaderMap) -> Response {
    let after: u64 = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .unwrap_or(0);
    if after >= TOTAL {
        return StatusCode::NO_CONTENT.into_response();
    }
    println!("  [server] client connected, resuming after event {after}");
    let crashed = feed.crashed.subscribe();
    let stream =
        futures_util::stream::unfold((after + 1, crashed), |(n, mut crashed)| async move {
            if n > TOTAL {
                return None;
            }
            let crash = tokio::select! {
                () = tokio::time::sleep(TICK) => false,
                _ = crashed.wait_for(|c| *c) => true,
            };
            if crash {
                // The connection is dropped mid-stream, as when the process dies.
                return Some((Err(std::io::Error::other("crashed")), (n, crashed)));
            }
            let event = Event::default()
                .id(n.to_string())
                .data(format!("price update #{n}"));
            Some((Ok(event), (n + 1, crashed)))
        });
    Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_millis(200)))
        .into_response()
}

struct Server {
    addr: SocketAddr,
    feed: Feed,
    task: JoinHandle<()>,
}

impl Server {
    async fn start(addr: SocketAddr) -> std::io::Result<Self> {
        let listener = loop {
            match TcpListener::bind(addr).await {
                Ok(l) => break l,
                // The old process's port may take a moment to come free.
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(e) => return Err(e),
            }
        };
        let addr = listener.local_addr()?;
        let feed = Feed {
            crashed: Arc::new(watch::Sender::new(false)),
        };
        let app = Router::new()
            .route("/prices", get(events))
            .with_state(feed.clone());
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Ok(Self { addr, feed, task })
    }

    async fn crash(self) -> SocketAddr {
        self.feed.crashed.send_replace(true);
        self.task.abort();
        let _ = self.task.await;
        self.addr
    }
}

#[tokio::main]
async fn main() -> Result<(), buttress::BoxError> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "buttress=info".into()),
        )
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();

    let mut server = Server::start("127.0.0.1:0".parse()?).await?;
    let uri = format!("http://{}/prices", server.addr).parse()?;

    // The client: any tower HTTP service will do; here hyper-util's.
    let http = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let config = SseConfig::default()
        .with_backoff(Backoff::exponential(
            Duration::from_millis(50),
            Duration::from_secs(1),
        ))
        // Above the server's heartbeat: a silent connection is a dead one.
        .with_idle_timeout(Duration::from_secs(1));
    let mut prices = EventSource::new(http, uri).with_config(config);
    let handle = prices.handle();

    let received = Arc::new(AtomicU64::new(0));
    let consumer = tokio::spawn({
        let received = received.clone();
        async move {
            let mut last = 0;
            while let Some(event) = prices.next().await {
                let event = event?;
                let id: u64 = event.id().unwrap_or_default().parse()?;
                if id != last + 1 {
                    return Err(format!("gap or duplicate: event {id} after {last}").into());
                }
                last = id;
                println!("event {id:>2}: {}", event.data());
                received.store(id, Ordering::Relaxed);
            }
            Ok::<u64, buttress::BoxError>(last)
        }
    });

    // Crash the server twice mid-stream; each time it stays down for a while.
    for crash_after in [10, 20] {
        while received.load(Ordering::Relaxed) < crash_after {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        println!("  [server] crashing");
        let addr = server.crash().await;
        tokio::time::sleep(Duration::from_millis(400)).await;
        println!("  [server] restarted");
        server = Server::start(addr).await?;
    }

    let last = tokio::time::timeout(Duration::from_secs(30), consumer)
        .await
        .map_err(|_| "the client did not finish in time")???;
    let s = handle.snapshot();
    println!(
        "done: {last} of {TOTAL} events, each once and in order, across {} connections \
         ({} cuts, {} failed attempts while the server was down)",
        s.connects, s.disconnects, s.failed_attempts
    );
    server.crash().await;
    Ok(())
}
