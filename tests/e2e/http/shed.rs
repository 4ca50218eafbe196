//! A server shedding under load answers 503 with `Retry-After`, and the buttress client
//! waits at least that long before it sends the retry to the same server.
#![allow(clippy::unwrap_used, reason = "test code: a failure should panic")]

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{Next, from_fn_with_state};
use axum::response::Response;
use axum::routing::get;
use buttress::Policy;
use buttress::shed::{Algorithm, ShedConfig};
use buttress_http::HttpPolicy;
use bytes::Bytes;
use http_body_util::Empty;
use tokio::time::{Instant, sleep, timeout};
use tower::ServiceExt;

use super::common::{BOUND, client_with_cap, hyper_client, serve, text};

/// One attempt of the request under test, as the server saw it.
#[derive(Debug, Clone)]
struct Attempt {
    number: Option<String>,
    arrived: Instant,
    answered: Instant,
    status: StatusCode,
    retry_after: Option<String>,
}

type Log = Arc<Mutex<Vec<Attempt>>>;

/// Outermost: notes when each attempt of the request under test (`x-subject`) arrived
/// and how and when it was answered.
async fn record(State(log): State<Log>, req: Request, next: Next) -> Response {
    let arrived = Instant::now();
    let subject = req.headers().contains_key("x-subject");
    let number = req
        .headers()
        .get("buttress-attempt")
        .map(|v| v.to_str().unwrap().to_owned());
    let res = next.run(req).await;
    if subject {
        log.lock().unwrap().push(Attempt {
            number,
            arrived,
            answered: Instant::now(),
            status: res.status(),
            retry_after: res
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned()),
        });
    }
    res
}

#[tokio::test]
async fn the_client_honours_retry_after_from_a_shedding_server() {
    // Two calls at once, no queue: a third is shed with the layer's suggested delay.
    let server = HttpPolicy::new(
        Policy::default().with_shed(ShedConfig::new(Algorithm::Fixed).with_limits(2, 2, 2)),
    )
    .server_layer();
    let shed_handle = server.handles().shed.unwrap();
    let log = Log::default();
    let app = Router::new()
        .route(
            "/work",
            get(|headers: HeaderMap| async move {
                if headers.contains_key("x-load") {
                    sleep(Duration::from_millis(400)).await;
                }
                "done"
            }),
        )
        .layer(server)
        .layer(from_fn_with_state(log.clone(), record));
    let addr = serve(app).await;

    // The load: two slow calls fill the limit.
    let load: Vec<_> = (0..2)
        .map(|_| {
            let req = http::Request::get(format!("http://{addr}/work"))
                .header("x-load", "1")
                .body(Empty::<Bytes>::new())
                .unwrap();
            tokio::spawn(hyper_client().oneshot(req))
        })
        .collect();
    timeout(BOUND, async {
        while shed_handle.in_flight() < 2 {
            sleep(Duration::from_millis(2)).await;
        }
    })
    .await
    .unwrap();

    let req = http::Request::get(format!("http://{addr}/work"))
        .header("x-subject", "1")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let res = timeout(BOUND, client_with_cap(0).oneshot(req))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(text(res).await, "done");
    for l in load {
        assert_eq!(l.await.unwrap().unwrap().status(), StatusCode::OK);
    }

    let log = log.lock().unwrap().clone();
    assert_eq!(log.len(), 2, "{log:?}");
    let (shed, served) = (&log[0], &log[1]);
    assert_eq!(shed.number.as_deref(), Some("1"));
    assert_eq!(shed.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(shed.retry_after.as_deref(), Some("1"));
    assert_eq!(served.number.as_deref(), Some("2"));
    assert_eq!(served.status, StatusCode::OK);
    let waited = served.arrived - shed.answered;
    assert!(
        waited >= Duration::from_secs(1),
        "retried {waited:?} after a Retry-After of 1 s"
    );
    assert!(waited < Duration::from_secs(3), "waited {waited:?}");
    assert!(shed_handle.snapshot().shed.total() >= 1);
}
