//! A hyper-util client under the HTTP crate's canonical client stack, built from one
//! `HttpPolicy`: a total timeout, retries within a budget with replayable request
//! bodies, a circuit breaker per host, an attempt timeout, and the deadline written
//! into each request so servers know how long the caller will wait.
//!
//! Run: `cargo run -p buttress-examples --example http_client` (starts two small
//! backends on loopback ports, "inventory" and "billing", calls them, prints what
//! happened and exits).

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};
use buttress::breaker::BreakerConfig;
use buttress::retry::RetryConfig;
use buttress::{Policy, Rejection};
use buttress_http::HttpPolicy;
use bytes::Bytes;
use futures_util::StreamExt;
use http::uri::Authority;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::time::Instant;
use tower::{Service, ServiceBuilder, ServiceExt};

type Body = BoxBody<Bytes, Infallible>;

fn header(headers: &HeaderMap, name: &str) -> String {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned()
}

/// Inventory: items, orders that fail their first attempt, and a page whose first
/// call hangs (a replica that stopped answering).
fn inventory() -> Router {
    let first_attempts: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
    let slow_calls = Arc::new(Mutex::new(0));
    Router::new()
        .route(
            "/items/{id}",
            get(|Path(id): Path<u32>, headers: HeaderMap| async move {
                format!(
                    "item {id} (the caller allows {} ms, attempt {})",
                    header(&headers, "buttress-timeout-ms"),
                    header(&headers, "buttress-attempt")
                )
            }),
        )
        .route(
            "/orders",
            post(
                |State(seen): State<Arc<Mutex<HashMap<String, usize>>>>,
                 headers: HeaderMap,
                 body: Bytes| async move {
                    let key = header(&headers, "idempotency-key");
                    let attempt = {
                        let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
                        let n = seen.entry(key).or_default();
                        *n += 1;
                        *n
                    };
                    let status = if attempt == 1 {
                        StatusCode::SERVICE_UNAVAILABLE
                    } else {
                        StatusCode::CREATED
                    };
                    (
                        status,
                        format!("{} bytes received by attempt {attempt}", body.len()),
                    )
                },
            )
            .with_state(first_attempts),
        )
        .route(
            "/slow-once",
            get(move || {
                let slow_calls = slow_calls.clone();
                async move {
                    let first = {
                        let mut n = slow_calls.lock().unwrap_or_else(|e| e.into_inner());
                        *n += 1;
                        *n == 1
                    };
                    if first {
                        tokio::time::sleep(Duration::from_secs(30)).await;
                    }
                    "answered"
                }
            }),
        )
}

/// Billing: broken, answers 500 to everything.
fn billing() -> Router {
    Router::new().fallback(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "ledger unavailable") })
}

async fn serve(app: Router) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}

fn empty() -> Body {
    Empty::new().boxed()
}

/// An upload that arrives in pieces (its size unknown until it ends), as a file or a
/// proxied request would.
fn streamed(chunks: usize) -> Body {
    let frames = futures_util::stream::iter(0..chunks).then(|i| async move {
        tokio::time::sleep(Duration::from_millis(2)).await;
        Ok(http_body::Frame::data(Bytes::from(vec![
            b'a' + i as u8;
            1024
        ])))
    });
    BodyExt::boxed(StreamBody::new(Box::pin(frames)))
}

/// Sends `req` and prints the outcome: the answer, or which buttress layer refused.
async fn call<S>(client: &mut S, label: &str, req: http::Request<Body>)
where
    S: Service<
            http::Request<Body>,
            Response = http::Response<hyper::body::Incoming>,
            Error = buttress::BoxError,
        >,
{
    let start = Instant::now();
    let outcome = match client.ready().await {
        Ok(svc) => svc.call(req).await,
        Err(e) => Err(e),
    };
    let took = start.elapsed().as_millis();
    match outcome {
        Ok(res) => {
            let status = res.status();
            let body = res
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            println!(
                "{label}: {status} after {took} ms: {}",
                String::from_utf8_lossy(&body)
            );
        }
        Err(err) => match Rejection::find(err.as_ref()) {
            Some(r) => println!(
                "{label}: refused by buttress after {took} ms: {:?}",
                r.kind()
            ),
            None => println!("{label}: failed after {took} ms: {err}"),
        },
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let inventory = serve(inventory()).await?;
    let billing = serve(billing()).await?;

    // One value describes the whole stack.
    let policy = HttpPolicy::new(
        Policy::default()
            .with_timeout(Duration::from_secs(2))
            .with_attempt_timeout(Duration::from_millis(300))
            // Three attempts, exponential backoff with jitter, 20% of requests (plus
            // 10 per second) in retries at most.
            .with_retry(RetryConfig::default())
            // A breaker per host: three failures in a row open it for 5 s.
            .with_breaker(BreakerConfig {
                consecutive_failures: Some(3),
                open_for: Duration::from_secs(5),
                ..BreakerConfig::default()
            }),
    )
    // Bodies up to 64 KiB are kept so they can be sent again.
    .with_replay_cap(64 * 1024);
    let layer = policy.client_layer();
    let transport = Client::builder(TokioExecutor::new())
        .build_http::<buttress_http::replay::ReplayBody<Body>>();
    let mut client = ServiceBuilder::new()
        .layer(layer.clone())
        .service(transport);

    // The deadline and the attempt number reach the server: the attempt's deadline,
    // that is the earlier of the 2 s total and the 300 ms attempt timeout, minus a 5 ms
    // offset for the trip.
    let req = http::Request::get(format!("http://{inventory}/items/7")).body(empty())?;
    call(&mut client, "GET inventory /items/7", req).await;

    // A streamed POST with an Idempotency-Key: the first attempt gets 503, the retry
    // sends the same 8 KiB again from the replay buffer.
    let req = http::Request::post(format!("http://{inventory}/orders"))
        .header("idempotency-key", "order-2024-0001")
        .body(streamed(8))?;
    call(&mut client, "POST inventory /orders (Idempotency-Key)", req).await;

    // The first attempt hangs: the attempt timeout cuts it at 300 ms and the retry
    // answers, well within the 2 s total.
    let req = http::Request::get(format!("http://{inventory}/slow-once")).body(empty())?;
    call(&mut client, "GET inventory /slow-once", req).await;

    // Billing is broken: 500 is not retried (the server answered, and did not ask for
    // a retry); after three failures its breaker opens and calls fail fast...
    for i in 1..=5 {
        let req = http::Request::get(format!("http://{billing}/invoices/{i}")).body(empty())?;
        call(&mut client, &format!("GET billing /invoices/{i}"), req).await;
    }
    // ...while inventory, with its own breaker, is unaffected.
    let req = http::Request::get(format!("http://{inventory}/items/8")).body(empty())?;
    call(&mut client, "GET inventory /items/8", req).await;

    let handles = layer.handles();
    if let Some(breakers) = handles.breaker {
        for (host, snapshot) in breakers.keys::<Authority>() {
            println!("breaker for {host}: {:?}", snapshot.state);
        }
    }
    if let Some(retry) = handles.retry {
        let s = retry.snapshot();
        println!(
            "retries: {}, budget left: {}",
            s.retries, s.budget.available
        );
    }
    Ok(())
}
