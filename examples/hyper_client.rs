//! A hyper-util client under the buttress client stack: a total timeout, a bulkhead,
//! an attempt timeout, and the deadline written into each request's headers so the
//! server knows how long the caller will wait.
//!
//! Run: `cargo run -p buttress-examples --example hyper_client` (starts a small
//! backend on a loopback port, calls it, prints what came back and exits).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::{Router, http::HeaderMap, routing::get};
use buttress::Policy;
use buttress::bulkhead::BulkheadConfig;
use buttress::rejection::Rejection;
use buttress_http::deadline::DeadlineToHeadersLayer;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tower::{ServiceBuilder, ServiceExt};

/// A backend whose every third answer hangs, like a replica that stopped answering.
fn backend() -> Router {
    let calls = Arc::new(AtomicUsize::new(0));
    Router::new().route(
        "/",
        get(move |headers: HeaderMap| {
            let n = calls.fetch_add(1, Ordering::Relaxed);
            async move {
                if n % 3 == 2 {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                }
                let budget = headers
                    .get("buttress-timeout-ms")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("none")
                    .to_owned();
                format!("answer {n}: the caller allows {budget} ms")
            }
        }),
    )
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move { axum::serve(listener, backend()).await });

    let policy = Policy::default()
        .with_timeout(Duration::from_secs(2))
        .with_attempt_timeout(Duration::from_millis(300))
        .with_bulkhead(BulkheadConfig::new(32));
    let client = ServiceBuilder::new()
        .layer(policy.client_layer())
        .layer(DeadlineToHeadersLayer::default())
        .service(Client::builder(TokioExecutor::new()).build_http::<Empty<bytes::Bytes>>());

    for _ in 0..6 {
        let req = http::Request::get(format!("http://{addr}/")).body(Empty::new())?;
        match client.clone().oneshot(req).await {
            Ok(res) => {
                let body = res.into_body().collect().await?.to_bytes();
                println!("{}", String::from_utf8_lossy(&body));
            }
            Err(err) => match Rejection::find(err.as_ref()) {
                Some(r) => println!("rejected by buttress: {:?} ({err})", r.kind()),
                None => println!("failed: {err}"),
            },
        }
    }
    server.abort();
    Ok(())
}
