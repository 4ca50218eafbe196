//! Outlier ejection: a power-of-two-choices balancer over three axum endpoints, each
//! behind its own gate-mode circuit breaker.
//!
//! Run: `cargo run -p buttress-examples --example p2c_breaker`
//!
//! Three backends listen on loopback. After a healthy second, backend 1 starts
//! answering 500: its breaker opens after a few failures and makes that endpoint's
//! `poll_ready` pending, so `tower::balance` routes every call to the other two. Every
//! open period ends in one half-open probe; while backend 1 is still failing the
//! probe fails and the breaker opens again, for twice as long. Once backend 1 heals,
//! the next probe succeeds, the breaker closes, and backend 1 takes its share again.
//! The program prints what each phase looked like from the client's side and from
//! the servers'.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use buttress::BoxError;
use buttress::breaker::{
    BreakerConfig, BreakerHandle, BreakerLayer, BreakerMode, BreakerState, Window,
};
use buttress::classify::{Classification, classify_fn};
use http_body_util::{BodyExt, Empty};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;
use tokio::time::Instant;
use tower::balance::p2c::Balance;
use tower::discover::ServiceList;
use tower::load::{CompleteOnResponse, PendingRequests};
use tower::{Layer, Service, ServiceExt, service_fn};

struct Backend {
    addr: SocketAddr,
    failing: Arc<AtomicBool>,
    hits: Arc<AtomicU64>,
}

async fn backend() -> Result<Backend, BoxError> {
    let failing = Arc::new(AtomicBool::new(false));
    let hits = Arc::new(AtomicU64::new(0));
    let (f, h) = (failing.clone(), hits.clone());
    let app = Router::new().route(
        "/",
        get(move || {
            let (f, h) = (f.clone(), h.clone());
            async move {
                h.fetch_add(1, Ordering::Relaxed);
                if f.load(Ordering::Relaxed) {
                    (StatusCode::INTERNAL_SERVER_ERROR, "down")
                } else {
                    (StatusCode::OK, "up")
                }
            }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(Backend {
        addr,
        failing,
        hits,
    })
}

/// One endpoint of the pool: requests go to `uri`, through a gate-mode breaker that
/// counts 5xx answers as failures; `PendingRequests` gives p2c its load.
fn endpoint(
    client: Client<HttpConnector, Empty<Bytes>>,
    uri: hyper::Uri,
    name: String,
) -> (
    impl Service<Request<Empty<Bytes>>, Response = Response<Incoming>, Error = BoxError>
    + tower::load::Load<Metric: std::fmt::Debug>,
    BreakerHandle,
) {
    let transport = service_fn(move |mut req: Request<Empty<Bytes>>| {
        *req.uri_mut() = uri.clone();
        client.request(req)
    });
    let classify = classify_fn(|r: Result<&Response<Incoming>, &BoxError>| match r {
        Ok(res) if res.status().is_server_error() => Classification::failure(),
        Ok(_) => Classification::success(),
        Err(e) => Classification::from_error(e),
    });
    let config = BreakerConfig::default()
        .with_window(Window::Calls(20))
        .with_minimum_calls(5)
        .with_failure_rate(0.5)
        .with_consecutive_failures(3)
        .with_open_for(Duration::from_millis(250), Duration::from_secs(1))
        .with_half_open_probes(1)
        .with_mode(BreakerMode::Gate);
    let layer = BreakerLayer::builder(config)
        .name(name)
        .classify(classify)
        .build();
    let handle = layer.handle();
    (
        PendingRequests::new(layer.layer(transport), CompleteOnResponse::default()),
        handle,
    )
}

#[derive(Default)]
struct Tally {
    ok: u64,
    failed: u64,
}

async fn run_for<S>(balance: &mut S, how_long: Duration) -> Result<Tally, BoxError>
where
    S: Service<Request<Empty<Bytes>>, Response = Response<Incoming>, Error = BoxError>,
{
    let mut tally = Tally::default();
    let start = Instant::now();
    while start.elapsed() < how_long {
        let req = Request::get("http://pool/").body(Empty::new())?;
        match balance.ready().await?.call(req).await {
            Ok(res) if res.status().is_success() => {
                tally.ok += 1;
                res.into_body().collect().await?;
            }
            Ok(res) => {
                tally.failed += 1;
                res.into_body().collect().await?;
            }
            Err(_) => tally.failed += 1,
        }
    }
    Ok(tally)
}

fn report(phase: &str, t: &Tally, backends: &[Backend], before: &[u64], handles: &[BreakerHandle]) {
    let rate = 100.0 * t.ok as f64 / (t.ok + t.failed).max(1) as f64;
    println!("{phase}: {} calls, {:.2}% succeeded", t.ok + t.failed, rate);
    for (i, (b, h)) in backends.iter().zip(handles).enumerate() {
        let hits = b.hits.load(Ordering::Relaxed) - before[i];
        let s = h.snapshot();
        println!(
            "  endpoint {i}: {hits:>6} calls served, breaker {:?} ({} transitions so far)",
            s.state, s.transitions
        );
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let backends = [backend().await?, backend().await?, backend().await?];
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let mut services = Vec::new();
    let mut handles = Vec::new();
    for (i, b) in backends.iter().enumerate() {
        let uri = format!("http://{}/", b.addr).parse()?;
        let (svc, handle) = endpoint(client.clone(), uri, format!("endpoint-{i}"));
        services.push(svc);
        handles.push(handle);
    }
    let mut balance = Balance::new(ServiceList::new(services));
    let hits = || {
        backends
            .iter()
            .map(|b| b.hits.load(Ordering::Relaxed))
            .collect::<Vec<_>>()
    };

    let before = hits();
    let t = run_for(&mut balance, Duration::from_secs(1)).await?;
    report("healthy", &t, &backends, &before, &handles);

    backends[1].failing.store(true, Ordering::Relaxed);
    let before = hits();
    let t = run_for(&mut balance, Duration::from_secs(2)).await?;
    report("endpoint 1 failing", &t, &backends, &before, &handles);

    backends[1].failing.store(false, Ordering::Relaxed);
    let mut events = handles[1].subscribe();
    let before = hits();
    let t = run_for(&mut balance, Duration::from_secs(2)).await?;
    report("endpoint 1 healed", &t, &backends, &before, &handles);
    let last = *events.borrow_and_update();
    if handles[1].state() == BreakerState::Closed {
        println!(
            "endpoint 1 was let back in: {:?} -> {:?}",
            last.from, last.to
        );
    }
    Ok(())
}
