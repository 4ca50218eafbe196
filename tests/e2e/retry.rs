//! End-to-end: the retry layer on a hyper client, against an axum server over a real
//! loopback socket.
//!
//! The classifier here is a minimal status classifier written for the test (503 is
//! retryable; a response the layer gave up on gets a header); the HTTP crate provides
//! the real one.
#![allow(clippy::unwrap_used, reason = "test helpers: a failure should panic")]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::get;
use buttress::backoff::Backoff;
use buttress::classify::{Classification, Classifier, Classify};
use buttress::retry::{RetryConfig, RetryLayer};
use buttress::{BoxError, RequestMeta};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;
use tokio::time::timeout;
use tower::{ServiceBuilder, ServiceExt};

/// Bounds every wait, so a regression fails instead of hanging.
const BOUND: Duration = Duration::from_secs(5);

const GAVE_UP: &str = "x-test-gave-up";

/// 503 is retryable; a response marked by a tier that gave up is not.
#[derive(Debug, Clone, Copy)]
struct ByStatus;

impl<Req, B> Classify<Req, http::Response<B>> for ByStatus {
    type Classifier = ByStatus;

    fn classify_request(&self, _: &Req) -> ByStatus {
        ByStatus
    }

    fn mark_gave_up(&self, response: &mut http::Response<B>) {
        response
            .headers_mut()
            .insert(GAVE_UP, http::HeaderValue::from_static("1"));
    }
}

impl<B> Classifier<http::Response<B>> for ByStatus {
    fn classify(self, result: Result<&http::Response<B>, &BoxError>) -> Classification {
        match result {
            Ok(res) if res.headers().contains_key(GAVE_UP) => {
                Classification::failure().with_do_not_retry(true)
            }
            Ok(res) if res.status() == StatusCode::SERVICE_UNAVAILABLE => Classification::failure(),
            Ok(_) => Classification::success(),
            Err(e) => Classification::from_error(e),
        }
    }
}

/// A server whose `/flaky` answers 503 to the first `failures` requests, then 200.
async fn serve(failures: usize) -> (SocketAddr, Arc<AtomicUsize>) {
    let seen = Arc::new(AtomicUsize::new(0));
    let app = Router::new().route(
        "/flaky",
        get({
            let seen = seen.clone();
            move || {
                let n = seen.fetch_add(1, Ordering::SeqCst);
                async move {
                    if n < failures {
                        (StatusCode::SERVICE_UNAVAILABLE, format!("unavailable #{n}"))
                    } else {
                        (StatusCode::OK, format!("ok #{n}"))
                    }
                }
            }
        }),
    );
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (addr, seen)
}

fn layer() -> RetryLayer<ByStatus> {
    RetryLayer::new(RetryConfig {
        max_attempts: 3,
        backoff: Backoff::constant(Duration::from_millis(5)),
        ..RetryConfig::default()
    })
    .with_classify(ByStatus)
}

async fn get_flaky(layer: RetryLayer<ByStatus>, addr: SocketAddr) -> (StatusCode, bool, String) {
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let svc = ServiceBuilder::new().layer(layer).service(client);
    let req = http::Request::get(format!("http://{addr}/flaky"))
        .body(Empty::<Bytes>::new())
        .unwrap();
    assert_eq!(req.attempt(), None);
    let res = timeout(BOUND, svc.oneshot(req)).await.unwrap().unwrap();
    let status = res.status();
    let marked = res.headers().contains_key(GAVE_UP);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, marked, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn retries_a_503_until_the_server_answers() {
    let (addr, seen) = serve(2).await;
    let layer = layer();
    let (status, marked, body) = get_flaky(layer.clone(), addr).await;
    assert_eq!(
        (status, marked, body.as_str()),
        (StatusCode::OK, false, "ok #2")
    );
    assert_eq!(seen.load(Ordering::SeqCst), 3);
    assert_eq!(layer.handle().unwrap().snapshot().retries, 2);
}

#[tokio::test]
async fn gives_up_with_the_real_503_marked_for_the_tiers_above() {
    let (addr, seen) = serve(usize::MAX).await;
    let (status, marked, body) = get_flaky(layer(), addr).await;
    // The caller sees the server's own last answer, not a synthetic error.
    assert_eq!(
        (status, marked, body.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, true, "unavailable #2")
    );
    assert_eq!(seen.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_tier_above_does_not_retry_an_answer_marked_below() {
    // Two retry layers in a row stand for two tiers: the inner one gives up after its
    // three attempts and marks the answer; the outer one sees the mark and stops.
    let (addr, seen) = serve(usize::MAX).await;
    let client = Client::builder(TokioExecutor::new()).build_http::<Empty<Bytes>>();
    let svc = ServiceBuilder::new()
        .layer(layer())
        .layer(layer())
        .service(client);
    let req = http::Request::get(format!("http://{addr}/flaky"))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let res = timeout(BOUND, svc.oneshot(req)).await.unwrap().unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(seen.load(Ordering::SeqCst), 3, "not 9");
}
