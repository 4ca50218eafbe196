//! End-to-end: a power-of-two-choices balancer (`tower::balance::p2c`) over three real
//! axum endpoints on loopback, each behind its own gate-mode breaker.
//!
//! When one endpoint starts answering 500, its breaker opens and makes its
//! `poll_ready` pending, so the balancer stops picking it (outlier ejection); when it
//! heals, a half-open probe lets it back in.
//!
//! What is asserted, honestly: there is no retry layer here, so every call the
//! balancer sends to the failing endpoint fails. Those are the calls before its breaker
//! trips (at most `consecutive_failures`) and one probe per half-open phase; the test
//! checks that bound exactly (on the server's own count), and that the client's
//! success rate over the whole failing phase, those failures included, is at least
//! 99%.
#![allow(clippy::unwrap_used, reason = "test code: a failure should panic")]

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
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;
use tokio::time::{Instant, timeout};
use tower::balance::p2c::Balance;
use tower::discover::ServiceList;
use tower::load::{CompleteOnResponse, PendingRequests};
use tower::{Layer, Service, ServiceExt, service_fn};

const CONSECUTIVE_FAILURES: u32 = 3;

struct Backend {
    addr: SocketAddr,
    failing: Arc<AtomicBool>,
    hits: Arc<AtomicU64>,
}

async fn backend() -> Backend {
    let failing = Arc::new(AtomicBool::new(false));
    let hits = Arc::new(AtomicU64::new(0));
    let (f, h) = (failing.clone(), hits.clone());
    let app = Router::new().route(
        "/",
        get(move || {
            let (f, h) = (f.clone(), h.clone());
            async move {
                h.fetch_add(1, Ordering::SeqCst);
                if f.load(Ordering::SeqCst) {
                    (StatusCode::INTERNAL_SERVER_ERROR, "down")
                } else {
                    (StatusCode::OK, "up")
                }
            }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    Backend {
        addr,
        failing,
        hits,
    }
}

fn config() -> BreakerConfig {
    BreakerConfig::default()
        .with_window(Window::Calls(20))
        .with_minimum_calls(5)
        .with_failure_rate(0.5)
        .with_consecutive_failures(CONSECUTIVE_FAILURES)
        .with_open_for(Duration::from_millis(200), Duration::from_millis(400))
        .with_half_open_probes(1)
        .with_jitter(0.0)
        .with_mode(BreakerMode::Gate)
}

/// One endpoint: a client that sends every request to `addr`, behind a gate-mode
/// breaker classifying 5xx answers as failures, with its load tracked for p2c.
fn endpoint(
    client: Client<HttpConnector, Empty<Bytes>>,
    addr: SocketAddr,
    name: String,
) -> (
    impl Service<Request<Empty<Bytes>>, Response = Response<Incoming>, Error = BoxError, Future: Send>
    + tower::load::Load<Metric: std::fmt::Debug>,
    BreakerHandle,
) {
    let uri: http::Uri = format!("http://{addr}/").parse().unwrap();
    let transport = service_fn(move |mut req: Request<Empty<Bytes>>| {
        *req.uri_mut() = uri.clone();
        client.request(req)
    });
    let classify = classify_fn(|r: Result<&Response<Incoming>, &BoxError>| match r {
        Ok(res) if res.status().is_server_error() => Classification::failure(),
        Ok(_) => Classification::success(),
        Err(e) => Classification::from_error(e),
    });
    let layer = BreakerLayer::builder(config())
        .name(name)
        .classify(classify)
        .build();
    let handle = layer.handle();
    (
        PendingRequests::new(layer.layer(transport), CompleteOnResponse::default()),
        handle,
    )
}

/// Makes one call through the balancer; whether it succeeded.
async fn call<S>(balance: &mut S) -> bool
where
    S: Service<Request<Empty<Bytes>>, Response = Response<Incoming>, Error = BoxError>,
{
    let req = Request::get("http://balanced/").body(Empty::new()).unwrap();
    let Ok(ready) = timeout(Duration::from_secs(2), balance.ready()).await else {
        panic!("the balancer never became ready");
    };
    let svc = ready.unwrap();
    match svc.call(req).await {
        Ok(res) => {
            let ok = res.status().is_success();
            let _ = res.into_body().collect().await;
            ok
        }
        Err(_) => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p2c_ejects_a_failing_endpoint_and_lets_it_back_through_half_open() {
    let backends = [backend().await, backend().await, backend().await];
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let mut handles = Vec::new();
    let mut services = Vec::new();
    for (i, b) in backends.iter().enumerate() {
        let (svc, handle) = endpoint(client.clone(), b.addr, format!("endpoint-{i}"));
        services.push(svc);
        handles.push(handle);
    }
    let mut balance = Balance::new(ServiceList::new(services));

    // Healthy: every call succeeds and every endpoint takes a share.
    for _ in 0..300 {
        assert!(call(&mut balance).await);
    }
    for b in &backends {
        assert!(b.hits.load(Ordering::SeqCst) > 30, "p2c spreads the load");
    }

    // Endpoint 1 starts failing.
    let sick = &backends[1];
    let sick_handle = &handles[1];
    let hits_before = sick.hits.load(Ordering::SeqCst);
    let transitions_before = sick_handle.snapshot().transitions;
    sick.failing.store(true, Ordering::SeqCst);
    let (mut ok, mut failed) = (0u64, 0u64);
    let phase = Instant::now();
    while phase.elapsed() < Duration::from_millis(1500) {
        if call(&mut balance).await {
            ok += 1;
        } else {
            failed += 1;
        }
    }
    let snap = sick_handle.snapshot();
    let sick_hits = sick.hits.load(Ordering::SeqCst) - hits_before;
    // Closed -> open, then each half-open phase adds two transitions (-> half-open,
    // -> open again); one more may be under way.
    let transitions = snap.transitions - transitions_before;
    let half_opens = transitions / 2;
    assert!(transitions >= 1, "the failing endpoint's breaker opened");
    assert_ne!(snap.state, BreakerState::Closed);
    assert_eq!(failed, sick_hits, "only the sick endpoint failed calls");
    assert!(
        sick_hits <= u64::from(CONSECUTIVE_FAILURES) + half_opens,
        "ejected: {sick_hits} calls reached it, {half_opens} half-open probes"
    );
    let rate = ok as f64 / (ok + failed) as f64;
    assert!(
        rate >= 0.99,
        "success rate {rate:.4} ({ok} ok, {failed} failed)"
    );
    for (i, h) in handles.iter().enumerate() {
        if i != 1 {
            assert_eq!(
                h.state(),
                BreakerState::Closed,
                "healthy endpoint {i} stays in"
            );
        }
    }

    // It heals: the next half-open probe succeeds and closes its breaker.
    sick.failing.store(false, Ordering::SeqCst);
    let mut events = sick_handle.subscribe();
    let healed = Instant::now();
    while sick_handle.state() != BreakerState::Closed {
        assert!(
            healed.elapsed() < Duration::from_secs(2),
            "never let back in: {:?}",
            sick_handle.snapshot()
        );
        assert!(
            call(&mut balance).await,
            "no call fails once the endpoint healed"
        );
    }
    let last = *events.borrow_and_update();
    assert_eq!(
        (last.from, last.to),
        (BreakerState::HalfOpen, BreakerState::Closed),
        "let back in through half-open"
    );

    // And takes its share again.
    let hits_healed = sick.hits.load(Ordering::SeqCst);
    for _ in 0..300 {
        assert!(call(&mut balance).await);
    }
    assert!(
        sick.hits.load(Ordering::SeqCst) - hits_healed > 30,
        "the healed endpoint takes traffic again"
    );
}
