//! The client's total timeout reaches the server as a deadline (the time left minus
//! the offset), the server's own timeout fires at that deadline, before the client's,
//! and the attempt header counts the attempts.
#![allow(clippy::unwrap_used, reason = "test code: a failure should panic")]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use buttress::Policy;
use buttress::backoff::Backoff;
use buttress::retry::RetryConfig;
use buttress_http::HttpPolicy;
use buttress_http::deadline::OutboundDeadlineConfig;
use bytes::Bytes;
use http_body_util::Empty;
use tokio::time::{Instant, sleep, timeout};
use tower::{ServiceBuilder, ServiceExt};

use super::common::{BOUND, hyper_client, serve, text};

const OFFSET: Duration = Duration::from_millis(20);

/// The attempt number and the deadline header of each call the server saw.
type Seen = Arc<Mutex<Vec<(String, u64)>>>;

/// `/slow` answers 503 at once to the first call and never answers the others in
/// time; the server reads the caller's deadline and times out at it (its own budget is
/// a generous 10 s).
async fn server() -> (std::net::SocketAddr, Seen) {
    let seen = Seen::default();
    let app = Router::new()
        .route(
            "/slow",
            get(|State(seen): State<Seen>, headers: HeaderMap| async move {
                let header = |name: &str| headers.get(name).unwrap().to_str().unwrap().to_owned();
                let first = {
                    let mut seen = seen.lock().unwrap();
                    let left = header("buttress-timeout-ms").parse().unwrap();
                    seen.push((header("buttress-attempt"), left));
                    seen.len() == 1
                };
                if first {
                    return (StatusCode::SERVICE_UNAVAILABLE, "busy");
                }
                sleep(Duration::from_secs(10)).await;
                (StatusCode::OK, "too late")
            }),
        )
        .with_state(seen.clone())
        .layer(
            HttpPolicy::new(Policy::default().with_timeout(Duration::from_secs(10))).server_layer(),
        );
    (serve(app).await, seen)
}

#[tokio::test]
async fn the_callers_deadline_reaches_the_server_and_its_timeout_fires_first() {
    let (addr, seen) = server().await;
    // A 300 ms total timeout, two attempts 10 ms apart, a 20 ms offset taken off the
    // time left for the trip.
    let policy = HttpPolicy::new(
        Policy::default()
            .with_timeout(Duration::from_millis(300))
            .with_retry(RetryConfig {
                max_attempts: 2,
                backoff: Backoff::constant(Duration::from_millis(10)),
                ..RetryConfig::default()
            }),
    )
    .with_deadline_out(Some(OutboundDeadlineConfig {
        offset: OFFSET,
        ..Default::default()
    }));
    let client = ServiceBuilder::new()
        .layer(policy.client_layer())
        .service(hyper_client());

    let start = Instant::now();
    let req = http::Request::get(format!("http://{addr}/slow"))
        .body(Empty::<Bytes>::new())
        .unwrap();
    // An answer, not the client's own `Elapsed`: the server's timeout came first.
    let res = timeout(BOUND, client.oneshot(req)).await.unwrap().unwrap();
    let elapsed = start.elapsed();
    assert_eq!(res.status(), StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(res.headers()["buttress-retry"], "gave-up");
    assert_eq!(text(res).await, "request timed out");
    assert!(
        elapsed >= Duration::from_millis(250) && elapsed < Duration::from_millis(300),
        "the server timed out at {elapsed:?}, the client would at 300 ms"
    );

    let seen = seen.lock().unwrap().clone();
    let attempts: Vec<&str> = seen.iter().map(|(a, _)| a.as_str()).collect();
    assert_eq!(attempts, ["1", "2"]);
    let (first, second) = (seen[0].1, seen[1].1);
    // 300 ms minus the offset, minus the little time the request took to leave.
    assert!(
        (260..=280).contains(&first),
        "first attempt allowed {first} ms"
    );
    // Less again: the first attempt and the 10 ms backoff came off the total.
    assert!(
        second + 10 <= first && second >= 200,
        "second attempt allowed {second} ms after {first} ms"
    );
}
