//! An axum server with a buttress server stack: a router-wide timeout and bulkhead,
//! a stricter bulkhead on one expensive route, deadlines read from the caller's
//! headers, and rejections answered as 503 + `Retry-After` or 504.
//!
//! Run: `cargo run -p buttress-examples --example axum_bulkhead` (serves on a
//! loopback port, fires a burst of requests at itself, prints what came back and
//! exits; pass `--serve` to keep serving until Ctrl-C).

use std::time::Duration;

use axum::{Router, routing::get};
use buttress::Policy;
use buttress::bulkhead::BulkheadConfig;
use buttress_http::deadline::DeadlineFromHeadersLayer;
use buttress_http::rejection::RejectionResponseLayer;
use tower::ServiceBuilder;

async fn report() -> &'static str {
    // An expensive page: a quarter of a second of work.
    tokio::time::sleep(Duration::from_millis(250)).await;
    "report\n"
}

async fn hello() -> &'static str {
    "hello\n"
}

fn app() -> Router {
    // Every route: at most 64 requests at once plus 32 queued, 2 s to answer.
    let router_wide = Policy::default()
        .with_timeout(Duration::from_secs(2))
        .with_bulkhead(BulkheadConfig::new(64).with_queue(32, Duration::from_millis(100)));
    // The expensive route: 2 at a time, 2 waiting at most 50 ms, the rest refused.
    let expensive = Policy::default()
        .with_bulkhead(BulkheadConfig::new(2).with_queue(2, Duration::from_millis(50)));
    Router::new()
        .route(
            "/reports/{id}",
            get(report).route_layer(
                ServiceBuilder::new()
                    .layer(RejectionResponseLayer::new())
                    .layer(expensive.server_layer()),
            ),
        )
        .route("/", get(hello))
        // State lives in the layer value: built once here, shared by every route.
        .layer(
            ServiceBuilder::new()
                .layer(RejectionResponseLayer::new())
                .layer(DeadlineFromHeadersLayer::default())
                .layer(router_wide.server_layer()),
        )
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    println!("serving on http://{addr}");
    let server = tokio::spawn(async move { axum::serve(listener, app()).await });

    // Ten concurrent requests to the expensive route: two run; two wait 50 ms in the
    // queue and give up (the work takes 250 ms); the rest are answered 503 with
    // Retry-After at once. Nobody is left hanging.
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    let mut calls = Vec::new();
    for i in 0..10 {
        let client = client.clone();
        let uri: hyper::Uri = format!("http://{addr}/reports/{i}").parse()?;
        calls.push(tokio::spawn(async move { client.get(uri).await }));
    }
    for call in calls {
        let res = call.await??;
        let retry_after = res
            .headers()
            .get("retry-after")
            .map(|v| format!(" (Retry-After: {})", v.to_str().unwrap_or("?")))
            .unwrap_or_default();
        println!("GET /reports/..: {}{retry_after}", res.status());
    }
    // A caller that allows only 100 ms: the server's deadline fires first, 504.
    let req = hyper::Request::get(format!("http://{addr}/reports/late"))
        .header("buttress-timeout-ms", "100")
        .body(http_body_util::Empty::new())?;
    println!(
        "GET /reports/late with a 100 ms deadline: {}",
        client.request(req).await?.status()
    );

    if std::env::args().any(|a| a == "--serve") {
        println!("serving until Ctrl-C");
        tokio::signal::ctrl_c().await?;
    }
    server.abort();
    Ok(())
}
