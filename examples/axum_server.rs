//! An axum server under the HTTP crate's server stack (`HttpPolicy::server_layer`):
//! a router-wide load shedder and timeout, a stricter bulkhead on one expensive
//! route, rejections answered as 503 + `Retry-After` or 504, the caller's deadline
//! read from its headers, a drain on Ctrl-C through the shed layer's handle, and
//! buttress's metrics in Prometheus text format on `/metrics`.
//!
//! Run: `cargo run -p buttress-examples --example axum_server` (serves on a loopback
//! port, sends a few requests to itself, prints the answers and the metrics, then
//! drains and exits). With `--serve` it keeps serving until Ctrl-C, then drains: new
//! requests get 503 + `Retry-After` while those in flight finish.

use std::future::IntoFuture;
use std::time::Duration;

use axum::{Router, routing::get};
use buttress::Policy;
use buttress::bulkhead::BulkheadConfig;
use buttress::shed::{Algorithm, ShedConfig, ShedHandle};
use buttress_http::HttpPolicy;
use buttress_http::policy::HttpServerLayer;
use buttress_http::rejection::RejectionResponseLayer;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::sync::oneshot;
use tower::ServiceBuilder;

async fn hello() -> &'static str {
    "hello\n"
}

/// An expensive page: a quarter of a second of work.
async fn report() -> &'static str {
    tokio::time::sleep(Duration::from_millis(250)).await;
    "report\n"
}

/// A page slower than most callers are willing to wait for.
async fn slow() -> &'static str {
    tokio::time::sleep(Duration::from_secs(1)).await;
    "finally\n"
}

/// The router-wide policy: an adaptive limit (gradient, 20 to start, 5 to 200) with a
/// short queue, and 2 s to answer. Deadlines come from `grpc-timeout` or
/// `buttress-timeout-ms` (the HTTP defaults), whichever is sooner.
fn router_wide() -> HttpServerLayer {
    let shed = ShedConfig::new(Algorithm::Gradient)
        .with_limits(20, 5, 200)
        .with_queue(32, Duration::from_millis(50));
    HttpPolicy::new(
        Policy::default()
            .with_timeout(Duration::from_secs(2))
            .with_shed(shed),
    )
    .server_layer()
}

fn app(router_wide: HttpServerLayer, metrics: PrometheusHandle) -> Router {
    // The expensive route, inside the router-wide stack: 2 at a time, 2 more waiting
    // at most 50 ms, the rest refused at once (503 + Retry-After).
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
        .route("/slow", get(slow))
        .route("/", get(hello))
        // Built once: every route shares its limit, its queue and its drain switch.
        .layer(router_wide)
        // Added after the layer, so outside it: scraping works while shedding or
        // draining.
        .route(
            "/metrics",
            get(move || std::future::ready(metrics.render())),
        )
}

type HttpClient = Client<HttpConnector, Empty<Bytes>>;

/// Sends one GET with `headers`, and prints the answer's status, `Retry-After` and
/// body.
async fn show(
    client: &HttpClient,
    uri: String,
    headers: &[(&str, &str)],
) -> Result<(), Box<dyn std::error::Error>> {
    let mut req = http::Request::get(&uri);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = client.request(req.body(Empty::new())?).await?;
    let status = res.status();
    let retry_after = res
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(|v| format!(", Retry-After: {v}"))
        .unwrap_or_default();
    let body = res.into_body().collect().await?.to_bytes();
    let path = uri
        .split_once("//")
        .and_then(|(_, rest)| rest.split_once('/'))
        .map_or("", |(_, p)| p);
    let sent: String = headers
        .iter()
        .map(|(k, v)| format!(" ({k}: {v})"))
        .collect();
    println!(
        "GET /{path}{sent}: {status}{retry_after}: {}",
        String::from_utf8_lossy(&body).trim()
    );
    Ok(())
}

/// Waits for Ctrl-C (or `stop`), then drains: the shed layer refuses new requests
/// with 503 + `Retry-After` while those in flight finish, for at most 10 s.
async fn drain_on_signal(shed: ShedHandle, stop: oneshot::Receiver<()>) {
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = stop => {}
    }
    println!("draining: {} request(s) in flight", shed.in_flight());
    shed.drain();
    if tokio::time::timeout(Duration::from_secs(10), shed.drained())
        .await
        .is_err()
    {
        println!("gave up waiting for the last requests");
    }
    println!("drained");
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The recorder first: buttress registers its metric handles when a layer is
    // built, and handles made before a recorder exists stay no-ops.
    let metrics = PrometheusBuilder::new().install_recorder()?;
    let layer = router_wide();
    let shed = layer.handles().shed.ok_or("the router-wide policy sheds")?;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    println!("serving on http://{addr} (metrics on http://{addr}/metrics)");
    let (stop, stopped) = oneshot::channel();
    let server = tokio::spawn(
        axum::serve(listener, app(layer, metrics))
            .with_graceful_shutdown(drain_on_signal(shed.clone(), stopped))
            .into_future(),
    );
    if std::env::args().any(|a| a == "--serve") {
        server.await??;
        return Ok(());
    }

    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    show(&client, format!("http://{addr}/"), &[]).await?;

    // Eight at once on the expensive route: two run, two wait and give up after
    // 50 ms (the work takes 250 ms), four are refused at once.
    let burst: Vec<_> = (0..8)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move {
                show(&client, format!("http://{addr}/reports/{i}"), &[])
                    .await
                    .map_err(|e| e.to_string())
            })
        })
        .collect();
    for call in burst {
        call.await??;
    }

    // The caller allows 100 ms: the server stops working on it then and answers 504.
    show(
        &client,
        format!("http://{addr}/slow"),
        &[("buttress-timeout-ms", "100")],
    )
    .await?;

    let res = client
        .get(format!("http://{addr}/metrics").parse()?)
        .await?;
    let text = res.into_body().collect().await?.to_bytes();
    println!("/metrics, the buttress samples that are not zero:");
    let text = String::from_utf8_lossy(&text);
    for line in text
        .lines()
        .filter(|l| l.starts_with("buttress_") && !l.ends_with(" 0"))
    {
        println!("  {line}");
    }

    // Shutting down with a request in flight: it finishes, newcomers are refused.
    let in_flight = {
        let client = client.clone();
        tokio::spawn(async move {
            show(&client, format!("http://{addr}/reports/last"), &[])
                .await
                .map_err(|e| e.to_string())
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    let _ = stop.send(());
    tokio::time::sleep(Duration::from_millis(20)).await;
    show(&client, format!("http://{addr}/"), &[]).await?;
    in_flight.await??;
    server.await??;
    Ok(())
}
