//! reqwest, wrapped as a tower service, under the buttress client stack: a 503 is
//! retried and the call succeeds.
#![allow(clippy::unwrap_used, reason = "test code: a failure should panic")]

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use buttress::backoff::Backoff;
use buttress::retry::RetryConfig;
use buttress::{BoxError, Policy};
use buttress_http::HttpPolicy;
use buttress_http::classify::ConnectFailed;
use bytes::Bytes;
use http_body_util::Empty;
use tokio::time::timeout;
use tower::{Service, ServiceBuilder, ServiceExt};

use super::common::{BOUND, serve, text};

/// A `reqwest::Client` as a `tower::Service` of `http` requests: what the buttress
/// client stack wraps.
#[derive(Debug, Clone, Default)]
struct ReqwestService(reqwest::Client);

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

#[tokio::test]
async fn reqwest_under_the_client_stack_retries_a_503() {
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let app = Router::new()
        .route(
            "/flaky",
            get(
                |State(seen): State<Arc<Mutex<Vec<String>>>>, headers: HeaderMap| async move {
                    let attempt = headers["buttress-attempt"].to_str().unwrap().to_owned();
                    let mut seen = seen.lock().unwrap();
                    seen.push(attempt);
                    if seen.len() == 1 {
                        (StatusCode::SERVICE_UNAVAILABLE, "not yet")
                    } else {
                        (StatusCode::OK, "here it is")
                    }
                },
            ),
        )
        .with_state(seen.clone());
    let addr = serve(app).await;

    let layer = HttpPolicy::new(Policy::default().with_retry(RetryConfig {
        max_attempts: 3,
        backoff: Backoff::constant(Duration::from_millis(5)),
        ..RetryConfig::default()
    }))
    .client_layer();
    let client = ServiceBuilder::new()
        .layer(layer.clone())
        .service(ReqwestService::default());

    let req = http::Request::get(format!("http://{addr}/flaky"))
        .body(Empty::<Bytes>::new())
        .unwrap();
    let res = timeout(BOUND, client.oneshot(req)).await.unwrap().unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(text(res).await, "here it is");
    assert_eq!(*seen.lock().unwrap(), ["1", "2"]);
    assert_eq!(layer.handles().retry.unwrap().snapshot().retries, 1);
}
