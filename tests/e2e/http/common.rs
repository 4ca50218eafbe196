//! What the HTTP end-to-end tests share: servers on loopback ports and the client
//! stack.
#![allow(clippy::unwrap_used, reason = "test helpers: a failure should panic")]

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use buttress::backoff::Backoff;
use buttress::retry::RetryConfig;
use buttress::{BoxError, Policy};
use buttress_http::HttpPolicy;
use buttress_http::policy::HttpClient;
use buttress_http::replay::ReplayBody;
use bytes::Bytes;
use http_body::Body;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;
use tower::ServiceBuilder;

/// Bounds every wait, so a regression fails instead of hanging.
pub(super) const BOUND: Duration = Duration::from_secs(10);

/// Serves `app` on a fresh loopback port (HTTP/1 and HTTP/2) until the test ends.
pub(super) async fn serve(app: Router) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// A hyper-util client over HTTP/1.
pub(super) fn hyper_client<B>() -> Client<HttpConnector, B>
where
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    Client::builder(TokioExecutor::new()).build_http()
}

/// The body of an answer, as text.
pub(super) async fn text<B>(res: http::Response<B>) -> String
where
    B: Body,
    B::Error: std::fmt::Debug,
{
    use http_body_util::BodyExt;
    let bytes: Bytes = res.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Three attempts 5 ms apart, the HTTP defaults for the rest.
pub(super) fn policy() -> HttpPolicy {
    HttpPolicy::new(Policy::default().with_retry(RetryConfig {
        max_attempts: 3,
        backoff: Backoff::constant(Duration::from_millis(5)),
        ..RetryConfig::default()
    }))
}

/// [`policy`]'s client stack over hyper-util, keeping up to `cap` bytes of each body
/// for replays.
pub(super) fn client_with_cap<B>(cap: usize) -> HttpClient<Client<HttpConnector, ReplayBody<B>>>
where
    B: Body + Unpin + Send + 'static,
    B::Data: Send,
    B::Error: Into<BoxError>,
{
    ServiceBuilder::new()
        .layer(policy().with_replay_cap(cap).client_layer())
        .service(hyper_client())
}
