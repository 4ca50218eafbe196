//! End-to-end: a bulkhead on an axum router, over a real loopback socket.
//!
//! `Router::layer` calls `Layer::layer` once per route, yet every route shares the one
//! state the layer made; routes get separate limits only through a key.
#![allow(clippy::unwrap_used, reason = "test helpers: a failure should panic")]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::error_handling::HandleErrorLayer;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::routing::get;
use buttress::BoxError;
use buttress::bulkhead::{BulkheadConfig, BulkheadHandle, BulkheadLayer};
use buttress::keyed::{Partition, partition_fn};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio::time::timeout;
use tower::ServiceBuilder;

/// Bounds every wait, so a regression fails instead of hanging.
const BOUND: Duration = Duration::from_secs(5);

/// Holds `/a` open until the test lets it go.
struct Gate {
    entered: Notify,
    release: watch::Sender<bool>,
}

impl Gate {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            entered: Notify::new(),
            release: watch::Sender::new(false),
        })
    }
}

fn router<P>(bulkhead: BulkheadLayer<P>, gate: Arc<Gate>) -> Router
where
    P: Partition<Request> + Clone + Send + Sync + 'static,
{
    let slow = move || {
        let gate = gate.clone();
        async move {
            gate.entered.notify_one();
            let mut release = gate.release.subscribe();
            let _ = timeout(BOUND, release.wait_for(|go| *go)).await;
            "a"
        }
    };
    Router::new()
        .route("/a", get(slow))
        .route("/b", get(|| async { "b" }))
        .layer(
            ServiceBuilder::new()
                // axum needs `Infallible`: the HTTP crate maps rejections properly;
                // here a plain 503 is enough.
                .layer(HandleErrorLayer::new(|err: BoxError| async move {
                    (StatusCode::SERVICE_UNAVAILABLE, err.to_string())
                }))
                .layer(bulkhead),
        )
}

async fn serve(app: Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    addr
}

type HttpClient = Client<HttpConnector, Empty<Bytes>>;

async fn get_path(client: &HttpClient, addr: SocketAddr, path: &str) -> (StatusCode, String) {
    let uri = format!("http://{addr}{path}").parse().unwrap();
    let res = timeout(BOUND, client.get(uri)).await.unwrap().unwrap();
    let status = res.status();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Holds `/a` open, then asks for `/b` and for a second `/a`; returns their answers.
async fn while_a_is_held<P>(bulkhead: BulkheadLayer<P>) -> (StatusCode, StatusCode, BulkheadHandle)
where
    P: Partition<Request> + Clone + Send + Sync + 'static,
{
    let handle = bulkhead.handle();
    let gate = Gate::new();
    let addr = serve(router(bulkhead, gate.clone())).await;
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();

    let held = tokio::spawn({
        let client = client.clone();
        async move { get_path(&client, addr, "/a").await }
    });
    timeout(BOUND, gate.entered.notified()).await.unwrap();
    assert_eq!(handle.snapshot().running, 1);

    let (b, b_body) = get_path(&client, addr, "/b").await;
    if b == StatusCode::SERVICE_UNAVAILABLE {
        assert!(b_body.contains("bulkhead full"), "{b_body}");
    }
    let (second_a, _) = get_path(&client, addr, "/a").await;

    gate.release.send_replace(true);
    let (a, a_body) = held.await.unwrap();
    assert_eq!((a, a_body.as_str()), (StatusCode::OK, "a"));
    // The permit came back: `/b` is served again.
    assert_eq!(
        get_path(&client, addr, "/b").await,
        (StatusCode::OK, "b".to_owned())
    );
    assert_eq!(handle.snapshot().running, 0);
    (b, second_a, handle)
}

#[tokio::test]
async fn every_route_shares_one_bulkhead_unless_keyed() {
    timeout(BOUND * 2, async {
        // One state for the whole router: a slow `/a` takes the only permit, so `/b`
        // is refused.
        let shared = BulkheadLayer::new(BulkheadConfig::new(1));
        let (b, second_a, handle) = while_a_is_held(shared).await;
        assert_eq!(b, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(second_a, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(handle.snapshot().rejected, 2);

        // Keyed by route (through an allow-list: keys must stay bounded): `/b` has
        // its own partition, `/a` is still limited to one.
        let by_route = BulkheadLayer::new(BulkheadConfig::new(1)).with_partition(partition_fn(
            |req: &Request| match req.uri().path() {
                "/a" => Some("/a"),
                "/b" => Some("/b"),
                _ => None,
            },
        ));
        let (b, second_a, handle) = while_a_is_held(by_route).await;
        assert_eq!(b, StatusCode::OK);
        assert_eq!(second_a, StatusCode::SERVICE_UNAVAILABLE);
        let snapshot = handle.snapshot();
        assert_eq!((snapshot.rejected, snapshot.partitions), (1, 2));
    })
    .await
    .unwrap();
}
