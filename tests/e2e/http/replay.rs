//! A streamed POST to a server that fails its first attempt with 503: retried with the
//! identical bytes when it carries an `Idempotency-Key`; sent once without the key, and
//! sent once when its body goes past the replay cap.
#![allow(clippy::unwrap_used, reason = "test code: a failure should panic")]

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use http::Request;
use http_body::Frame;
use http_body_util::StreamBody;
use tokio::time::timeout;
use tower::ServiceExt;

use super::common::{BOUND, serve, text};

type Chunks = Pin<Box<dyn Stream<Item = Result<Frame<Bytes>, Infallible>> + Send>>;
/// A request body that arrives in pieces, as an upload does: its size is unknown
/// until it ends.
type Streamed = StreamBody<Chunks>;

fn streamed(chunks: Vec<Bytes>) -> Streamed {
    let frames = futures_util::stream::iter(chunks).then(|chunk| async move {
        tokio::time::sleep(Duration::from_millis(1)).await;
        Ok(Frame::data(chunk))
    });
    StreamBody::new(Box::pin(frames))
}

/// Eight distinct 1 KiB chunks.
fn payload() -> Vec<Bytes> {
    (0..8u8)
        .map(|i| Bytes::from(vec![b'a' + i; 1024]))
        .collect()
}

/// What the server saw of each attempt: the attempt header and the whole body.
type Seen = Arc<Mutex<Vec<(Option<String>, Bytes)>>>;

/// `/orders` answers 503 to the first attempt and 200 to the others, after reading the
/// whole body.
async fn server() -> (std::net::SocketAddr, Seen) {
    let seen = Seen::default();
    let app = Router::new()
        .route(
            "/orders",
            post(
                |State(seen): State<Seen>, headers: HeaderMap, body: Bytes| async move {
                    let attempt = headers
                        .get("buttress-attempt")
                        .map(|v| v.to_str().unwrap().to_owned());
                    let mut seen = seen.lock().unwrap();
                    seen.push((attempt, body));
                    if seen.len() == 1 {
                        (StatusCode::SERVICE_UNAVAILABLE, "try again")
                    } else {
                        (StatusCode::OK, "ordered")
                    }
                },
            ),
        )
        .with_state(seen.clone());
    (serve(app).await, seen)
}

async fn post_order(cap: usize, key: Option<&str>) -> (StatusCode, String, Seen) {
    let (addr, seen) = server().await;
    let client = super::common::client_with_cap::<Streamed>(cap);
    let mut req = Request::post(format!("http://{addr}/orders"));
    if let Some(key) = key {
        req = req.header("idempotency-key", key);
    }
    let req = req.body(streamed(payload())).unwrap();
    let res = timeout(BOUND, client.oneshot(req)).await.unwrap().unwrap();
    (res.status(), text(res).await, seen)
}

#[tokio::test]
async fn with_an_idempotency_key_the_retry_sends_the_identical_bytes() {
    let (status, body, seen) = post_order(64 * 1024, Some("order-7")).await;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "ordered"));
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 2);
    let whole: Bytes = payload().concat().into();
    assert_eq!(
        seen[0].1, whole,
        "the first attempt streamed the whole body"
    );
    assert_eq!(seen[1].1, whole, "the retry carried the identical bytes");
    assert_eq!(seen[0].0.as_deref(), Some("1"));
    assert_eq!(seen[1].0.as_deref(), Some("2"));
}

#[tokio::test]
async fn without_an_idempotency_key_a_post_is_sent_once() {
    let (status, body, seen) = post_order(64 * 1024, None).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "try again")
    );
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn past_the_replay_cap_the_request_is_sent_once() {
    // 8 KiB against a 4 KiB cap: the first attempt gets everything, the caller gets
    // the server's own answer, and no broken copy is sent.
    let (status, body, seen) = post_order(4 * 1024, Some("order-8")).await;
    assert_eq!(
        (status, body.as_str()),
        (StatusCode::SERVICE_UNAVAILABLE, "try again")
    );
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].1.len(), 8 * 1024);
}
