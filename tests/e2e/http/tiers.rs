//! Three real axum tiers, each calling the next through the buttress client stack,
//! over a bottom tier that always answers 503.
//!
//! With the HTTP crate's stacks, only the tier nearest the failure retries: its retry
//! layer gives up (attempts or budget) and marks its answer, the middle tiers'
//! handlers pass that answer up without forwarding anything by hand (the request
//! context carries the gave-up flag and the inbound deadline), and the tiers above see
//! the mark and do not retry. The bottom tier sees at most 1.3x the requests that
//! entered the top. Naive retries (three attempts at each tier, marks ignored, no
//! budget) multiply the load 3 x 3 x 3 = 27x.
//!
//! The budget is the default one compressed fivefold in time, so that "at least 1,000
//! requests per `ttl`" takes two seconds instead of ten: `ttl` 2 s instead of 10 s,
//! `min_per_second` 50 instead of 10, so its reserve (`min_per_second x ttl` = 100
//! retries per window) is the default's and, at 1,000 requests per window, adds the
//! same 0.1x to the 0.2 `ratio`: 1.3x at most. The `ratio` is the default's. The load
//! is driven as fast as the machine allows (well above 1,000 per `ttl`, and so below
//! 1.3x), and the test checks the rate it reached.
#![allow(clippy::unwrap_used, reason = "test code: a failure should panic")]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use buttress::backoff::Backoff;
use buttress::budget::BudgetConfig;
use buttress::retry::{RetryConfig, RetryLayer};
use buttress::{BoxError, Classification, Classifier, Classify, Policy};
use buttress_http::classify::HttpClassifier;
use buttress_http::deadline::{DeadlineToHeadersLayer, InheritContextLayer};
use buttress_http::replay::{BufferRequestBodyLayer, HttpReplay, ReplayBody};
use buttress_http::{HttpClassify, HttpPolicy};
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Empty};
use hyper::body::Incoming;
use tokio::time::{Instant, timeout};
use tower::{Service, ServiceBuilder, ServiceExt};

use super::common::{hyper_client, serve};

/// The default budget, compressed fivefold in time (see the module docs).
const BUDGET: BudgetConfig = BudgetConfig {
    ratio: 0.2,
    min_per_second: 50,
    ttl: Duration::from_secs(2),
};

/// Requests sent to the top tier in the budgeted run, and how many at once.
const REQUESTS: u64 = 2_000;
const CONCURRENCY: u64 = 64;

type Body = Empty<Bytes>;

/// A server that counts the requests it receives.
#[derive(Clone)]
struct Hits(Arc<AtomicU64>);

impl Hits {
    fn get(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// The bottom tier: always 503.
async fn bottom() -> (SocketAddr, Hits) {
    let hits = Hits(Arc::default());
    let app = Router::new()
        .route(
            "/",
            get(|State(hits): State<Hits>| async move {
                hits.0.fetch_add(1, Ordering::SeqCst);
                (StatusCode::SERVICE_UNAVAILABLE, "down")
            }),
        )
        .with_state(hits.clone());
    (serve(app).await, hits)
}

/// A tier whose handler calls `next` through `client` and answers with what came back,
/// passing nothing else on: no deadline, no mark.
async fn tier<C>(next: SocketAddr, client: C) -> (SocketAddr, Hits)
where
    C: Service<Request<Body>, Response = Response<Incoming>, Error = BoxError>
        + Clone
        + Send
        + Sync
        + 'static,
    C::Future: Send,
{
    let hits = Hits(Arc::default());
    let app = Router::new()
        .route(
            "/",
            get(move |State((hits, client)): State<(Hits, C)>| async move {
                hits.0.fetch_add(1, Ordering::SeqCst);
                let req = Request::get(format!("http://{next}/"))
                    .body(Body::new())
                    .unwrap();
                match client.oneshot(req).await {
                    Ok(res) => {
                        let status = res.status();
                        let body = res.into_body().collect().await.unwrap().to_bytes();
                        (status, body)
                    }
                    Err(_) => (StatusCode::BAD_GATEWAY, Bytes::new()),
                }
            }),
        )
        .with_state((hits.clone(), client))
        .layer(HttpPolicy::default().server_layer());
    (serve(app).await, hits)
}

/// A hand-built client stack around `retry` (for the naive run: `HttpPolicy` always
/// honours the marks).
fn client<C>(
    retry: RetryLayer<C, HttpReplay>,
) -> impl Service<Request<Body>, Response = Response<Incoming>, Error = BoxError, Future: Send>
+ Clone
+ Send
+ Sync
+ 'static
where
    C: Classify<Request<ReplayBody<Body>>, Response<Incoming>> + Clone + Send + Sync + 'static,
    C::Classifier: Send,
{
    ServiceBuilder::new()
        .layer(InheritContextLayer::new())
        .layer(BufferRequestBodyLayer::default())
        .layer(retry)
        .layer(DeadlineToHeadersLayer::default())
        .service(hyper_client::<ReplayBody<Body>>())
}

/// Three tiers over the bottom one, each with a client made by `make`; the hit counters
/// top first, bottom last.
async fn chain<C>(make: impl Fn() -> C) -> (SocketAddr, [Hits; 4])
where
    C: Service<Request<Body>, Response = Response<Incoming>, Error = BoxError>
        + Clone
        + Send
        + Sync
        + 'static,
    C::Future: Send,
{
    let (b, bottom) = bottom().await;
    let (t3, third) = tier(b, make()).await;
    let (t2, second) = tier(t3, make()).await;
    let (t1, first) = tier(t2, make()).await;
    (t1, [first, second, third, bottom])
}

/// Sends `n` requests to `top`, `concurrency` at a time, each allowing `deadline`;
/// returns how long it took. Every answer must be the bottom's failure.
async fn load(top: SocketAddr, n: u64, concurrency: u64, deadline: Option<Duration>) -> Duration {
    let start = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|w| {
            let client = hyper_client::<Body>();
            tokio::spawn(async move {
                for _ in (w..n).step_by(concurrency as usize) {
                    let mut req = Request::get(format!("http://{top}/"));
                    if let Some(d) = deadline {
                        req = req.header("buttress-timeout-ms", d.as_millis().to_string());
                    }
                    let res = client
                        .request(req.body(Body::new()).unwrap())
                        .await
                        .unwrap();
                    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
                    res.into_body().collect().await.unwrap();
                }
            })
        })
        .collect();
    for w in workers {
        timeout(Duration::from_secs(30), w).await.unwrap().unwrap();
    }
    start.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_marks_and_budgets_the_bottom_sees_at_most_1_3x() {
    // What a user writes: the default policy with retries, the budget compressed.
    let policy = HttpPolicy::new(Policy::default().with_retry(RetryConfig {
        budget: BUDGET,
        ..RetryConfig::default()
    }));
    let make = || {
        ServiceBuilder::new()
            .layer(policy.client_layer())
            .service(hyper_client())
    };
    let (top, [first, second, third, bottom]) = chain(make).await;
    let took = load(top, REQUESTS, CONCURRENCY, Some(Duration::from_secs(2))).await;

    let per_ttl = REQUESTS as f64 * BUDGET.ttl.as_secs_f64() / took.as_secs_f64();
    assert!(
        per_ttl >= 1_000.0,
        "the load reached only {per_ttl:.0} requests per ttl ({took:?})"
    );
    // One tier retried: the tiers above it saw the mark.
    assert_eq!(first.get(), REQUESTS);
    assert_eq!(second.get(), REQUESTS, "the top tier retried");
    assert_eq!(third.get(), REQUESTS, "the middle tier retried");
    let amplification = bottom.get() as f64 / REQUESTS as f64;
    assert!(
        amplification <= 1.3,
        "the bottom saw {} requests for {REQUESTS}: {amplification:.3}x ({per_ttl:.0} per ttl)",
        bottom.get()
    );
    // The budget did its work: without it the bottom would see 3x.
    assert!(amplification > 1.0, "no retry at all: {amplification}");
}

/// Honours nothing: every retryable answer is retried, marked or not.
#[derive(Debug, Clone, Copy)]
struct IgnoreMarks;

struct Naive(HttpClassifier);

impl<B, RB> Classify<Request<B>, Response<RB>> for IgnoreMarks {
    type Classifier = Naive;

    fn classify_request(&self, req: &Request<B>) -> Naive {
        Naive(HttpClassify::new().classifier(req))
    }
}

impl<RB> Classifier<Response<RB>> for Naive {
    fn request_is_safe(&self) -> bool {
        self.0.request_is_safe()
    }

    fn classify(self, result: Result<&Response<RB>, &BoxError>) -> Classification {
        Classifier::<Response<RB>>::classify(self.0, result).with_do_not_retry(false)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn naive_retries_multiply_the_load_27x() {
    const N: u64 = 10;
    let make = || {
        client(
            RetryLayer::new(RetryConfig {
                max_attempts: 3,
                backoff: Backoff::constant(Duration::from_millis(1)),
                // No budget to speak of.
                budget: BudgetConfig {
                    ratio: 10.0,
                    min_per_second: 1_000_000,
                    ttl: Duration::from_secs(1),
                },
                ..RetryConfig::default()
            })
            .with_classify(IgnoreMarks)
            .with_replay(HttpReplay::retry()),
        )
    };
    let (top, [first, second, third, bottom]) = chain(make).await;
    load(top, N, N, None).await;
    assert_eq!(
        [first.get(), second.get(), third.get(), bottom.get()],
        [N, 3 * N, 9 * N, 27 * N]
    );
}
