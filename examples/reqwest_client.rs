//! A reqwest client, wrapped as a `tower::Service`, under the HTTP crate's canonical
//! client stack (the same `HttpPolicy` as a hyper-util client would use): a total
//! timeout, retries within a budget with replayable bodies, an attempt timeout and
//! the deadline and attempt headers.
//!
//! reqwest's own `Client` is a service of `reqwest::Request`s; the buttress layers
//! speak `http::Request`s. [`ReqwestService`] below is the whole adapter: it turns the
//! request into reqwest's, the answer back into an `http::Response`, and marks a
//! connection that was never established so that any request may be retried.
//!
//! Run: `cargo run -p buttress-examples --example reqwest_client` (starts a small
//! backend on a loopback port, calls it, prints what happened and exits).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, put};
use buttress::retry::RetryConfig;
use buttress::{BoxError, Policy};
use buttress_http::HttpPolicy;
use buttress_http::classify::ConnectFailed;
use bytes::Bytes;
use http_body_util::Full;
use tower::{Service, ServiceBuilder, ServiceExt};

/// A `reqwest::Client` as a `tower::Service` of `http` requests.
#[derive(Debug, Clone, Default)]
pub struct ReqwestService(reqwest::Client);

impl<B> Service<http::Request<B>> for ReqwestService
where
    B: http_body::Body + Send + Sync + 'static,
    B::Data: Into<Bytes>,
    B::Error: Into<BoxError>,
{
    type Response = http::Response<reqwest::Body>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        // reqwest queues internally: always ready.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let client = self.0.clone();
        Box::pin(async move {
            let req = reqwest::Request::try_from(req.map(reqwest::Body::wrap))?;
            match client.execute(req).await {
                Ok(res) => Ok(http::Response::from(res)),
                // Nothing was sent: the classifier may retry any method.
                Err(e) if e.is_connect() => Err(ConnectFailed::new(e).into()),
                Err(e) => Err(e.into()),
            }
        })
    }
}

/// A backend whose every other answer is 503 (a replica being deployed).
async fn backend() -> std::io::Result<SocketAddr> {
    let calls = Arc::new(AtomicUsize::new(0));
    let flaky = move |headers: HeaderMap, body: Option<Bytes>| {
        let n = calls.fetch_add(1, Ordering::SeqCst);
        async move {
            let attempt = headers
                .get("buttress-attempt")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("-")
                .to_owned();
            let len = body.map_or(0, |b| b.len());
            if n % 2 == 0 {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("deploying (attempt {attempt})"),
                )
            } else {
                (
                    StatusCode::OK,
                    format!("ok (attempt {attempt}, {len} bytes received)"),
                )
            }
        }
    };
    let app = Router::new()
        .route(
            "/profile",
            get({
                let flaky = flaky.clone();
                move |headers: HeaderMap| flaky(headers, None)
            }),
        )
        .route(
            "/profile",
            put(move |headers: HeaderMap, body: Bytes| flaky(headers, Some(body))),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(addr)
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let addr = backend().await?;

    let policy = HttpPolicy::new(
        Policy::default()
            .with_timeout(Duration::from_secs(2))
            .with_attempt_timeout(Duration::from_millis(500))
            .with_retry(RetryConfig::default()),
    );
    let layer = policy.client_layer();
    let client = ServiceBuilder::new()
        .layer(layer.clone())
        .service(ReqwestService::default());

    // GET and PUT are idempotent: both are retried after the 503, the PUT with its
    // body replayed from the buffer.
    let get = http::Request::get(format!("http://{addr}/profile")).body(Full::<Bytes>::default())?;
    let put = http::Request::put(format!("http://{addr}/profile"))
        .body(Full::new(Bytes::from_static(b"{\"name\": \"Ada\"}")))?;
    for (label, req) in [("GET /profile", get), ("PUT /profile", put)] {
        let res = client.clone().oneshot(req).await?;
        let status = res.status();
        let body = http_body_util::BodyExt::collect(res.into_body())
            .await?
            .to_bytes();
        println!("{label}: {status}: {}", String::from_utf8_lossy(&body));
    }
    if let Some(retry) = layer.handles().retry {
        println!("retries: {}", retry.snapshot().retries);
    }

    // Nobody listens on the port: the connection is never established, which any
    // request may retry; after three attempts the caller gets the error.
    let unused = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await?
        .local_addr()?;
    let req =
        http::Request::post(format!("http://{unused}/orders")).body(Full::<Bytes>::default())?;
    match client.oneshot(req).await {
        Ok(res) => println!("POST to a closed port: {}", res.status()),
        Err(err) => println!("POST to a closed port: {err}"),
    }
    Ok(())
}
