use std::time::Duration;

use buttress::BoxError;
use buttress::rejection::{
    BulkheadFull, Cause, CircuitOpen, DoNotRetry, Elapsed, OverloadReason, Overloaded, Scope,
};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body::Body;
use http_body_util::{BodyExt, Full};
use tower::{Service, ServiceExt, service_fn};
use tower_layer::Layer;

use super::*;
use crate::body::ResponseBody;

type MakeErr = fn() -> BoxError;

fn failing(
    err: fn() -> BoxError,
) -> impl Service<Request<()>, Response = Response<Full<Bytes>>, Error = BoxError, Future: Send> + Clone
{
    service_fn(move |_req: Request<()>| async move { Err(err()) })
}

fn http_req() -> Request<()> {
    Request::get("/").body(()).unwrap()
}

fn grpc_req() -> Request<()> {
    Request::post("/pkg.Svc/M")
        .header("content-type", "application/grpc")
        .body(())
        .unwrap()
}

async fn answer(err: fn() -> BoxError, req: Request<()>) -> Response<ResponseBody<Full<Bytes>>> {
    RejectionResponseLayer::new()
        .layer(failing(err))
        .oneshot(req)
        .await
        .unwrap()
}

#[tokio::test]
async fn overload_rejections_are_503_with_retry_after_rounded_up() {
    let cases: [(MakeErr, &str); 5] = [
        (|| CircuitOpen::new(Duration::from_millis(2001)).into(), "3"),
        (
            || Overloaded::new(OverloadReason::Shed, Duration::from_millis(500)).into(),
            "1",
        ),
        (
            || Overloaded::new(OverloadReason::Drain, Duration::from_secs(5)).into(),
            "5",
        ),
        (|| BulkheadFull::full().into(), "1"),
        (
            || Overloaded::new(OverloadReason::Throttle, Duration::ZERO).into(),
            "0",
        ),
    ];
    for (err, retry_after) in cases {
        let res = answer(err, http_req()).await;
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE, "{}", err());
        assert_eq!(res.headers()["retry-after"], retry_after, "{}", err());
        assert!(!res.body().is_inner());
        assert!(
            !res.into_body()
                .collect()
                .await
                .unwrap()
                .to_bytes()
                .is_empty()
        );
    }
}

#[tokio::test]
async fn timeouts_are_504_by_default_and_configurable() {
    let timeout: fn() -> BoxError = || Elapsed::new(Scope::Total, Cause::Budget).into();
    let res = answer(timeout, http_req()).await;
    assert_eq!(res.status(), StatusCode::GATEWAY_TIMEOUT);
    assert!(res.headers().get("retry-after").is_none());
    let layer = RejectionResponseLayer::new().with_config(RejectionConfig {
        timeout_status: StatusCode::SERVICE_UNAVAILABLE,
        ..Default::default()
    });
    let res = layer
        .layer(failing(timeout))
        .oneshot(http_req())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
}

#[tokio::test]
async fn grpc_requests_get_trailers_only_answers() {
    let cases: [(MakeErr, &str, Option<&str>); 5] = [
        (
            || Overloaded::new(OverloadReason::Shed, Duration::from_millis(1500)).into(),
            "14",
            Some("1500"),
        ),
        (
            || Overloaded::new(OverloadReason::Drain, Duration::from_secs(1)).into(),
            "14",
            Some("1000"),
        ),
        (
            || CircuitOpen::new(Duration::from_micros(2500)).into(),
            "14",
            Some("3"),
        ),
        (|| BulkheadFull::queue_timeout().into(), "8", Some("1000")),
        (
            || Elapsed::new(Scope::Attempt, Cause::Deadline).into(),
            "4",
            None,
        ),
    ];
    for (err, status, pushback) in cases {
        let res = answer(err, grpc_req()).await;
        assert_eq!(res.status(), StatusCode::OK, "{}", err());
        assert_eq!(res.headers()["content-type"], "application/grpc");
        assert_eq!(res.headers()["grpc-status"], status, "{}", err());
        assert_eq!(
            res.headers()
                .get("grpc-retry-pushback-ms")
                .map(|v| v.to_str().unwrap()),
            pushback,
            "{}",
            err()
        );
        assert!(res.headers().contains_key("grpc-message"));
        assert!(res.body().is_end_stream(), "trailers-only: no body");
    }
}

#[tokio::test]
async fn other_errors_go_to_the_handler() {
    let plain: fn() -> BoxError = || "database on fire".into();
    let res = answer(plain, http_req()).await;
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert!(
        !String::from_utf8_lossy(&body).contains("fire"),
        "the error's text is not sent"
    );
    let res = answer(plain, grpc_req()).await;
    assert_eq!(res.headers()["grpc-status"], "2");

    let custom = RejectionResponseLayer::new().with_handler(|err: BoxError, protocol: Protocol| {
        let mut res = Response::new(Bytes::from(format!("{protocol:?}: {err}")));
        *res.status_mut() = StatusCode::BAD_GATEWAY;
        res
    });
    let res = custom
        .layer(failing(plain))
        .oneshot(http_req())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(
        res.into_body().collect().await.unwrap().to_bytes(),
        "Http: database on fire"
    );
}

#[tokio::test]
async fn marked_errors_give_marked_answers() {
    let gave_up: fn() -> BoxError = || {
        DoNotRetry::new(Overloaded::new(
            OverloadReason::Shed,
            Duration::from_secs(1),
        ))
        .into()
    };
    let res = answer(gave_up, http_req()).await;
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.headers()["buttress-retry"], "gave-up");
    let res = answer(gave_up, grpc_req()).await;
    assert_eq!(
        res.headers()["grpc-retry-pushback-ms"],
        "-1",
        "gRPC clients must not retry either"
    );
    let plain_gave_up: fn() -> BoxError = || DoNotRetry::new("upstream 503").into();
    let res = answer(plain_gave_up, http_req()).await;
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(res.headers()["buttress-retry"], "gave-up");
}

#[tokio::test]
async fn answers_pass_through_untouched() {
    let ok = service_fn(|_req: Request<()>| async {
        Ok::<_, BoxError>(Response::new(Full::new(Bytes::from_static(b"fine"))))
    });
    let res = RejectionResponseLayer::new()
        .layer(ok)
        .oneshot(http_req())
        .await
        .unwrap();
    assert!(res.body().is_inner());
    assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "fine");
}

#[tokio::test]
async fn a_poll_ready_error_is_answered_on_the_next_call() {
    #[derive(Clone)]
    struct Broken;
    impl Service<Request<()>> for Broken {
        type Response = Response<Full<Bytes>>;
        type Error = BoxError;
        type Future = std::future::Ready<Result<Self::Response, BoxError>>;
        fn poll_ready(
            &mut self,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), BoxError>> {
            std::task::Poll::Ready(Err(Overloaded::new(
                OverloadReason::Drain,
                Duration::from_secs(2),
            )
            .into()))
        }
        fn call(&mut self, _: Request<()>) -> Self::Future {
            unreachable!("never ready")
        }
    }
    let res = RejectionResponseLayer::new()
        .layer(Broken)
        .oneshot(http_req())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.headers()["retry-after"], "2");
}

#[cfg(feature = "axum")]
#[tokio::test]
async fn fits_axum_router_layer() {
    use std::convert::Infallible;

    use axum::body::Body;
    use axum::routing::get;

    // A buttress-like layer below that refuses requests marked `x-shed`.
    let shed = tower::layer::layer_fn(|inner: axum::routing::Route| {
        service_fn(move |req: axum::extract::Request| {
            let inner = inner.clone();
            async move {
                if req.headers().contains_key("x-shed") {
                    return Err::<axum::response::Response, BoxError>(
                        Overloaded::new(OverloadReason::Shed, Duration::from_secs(1)).into(),
                    );
                }
                inner.oneshot(req).await.map_err(|e: Infallible| match e {})
            }
        })
    });
    let app = axum::Router::new()
        .route("/", get(|| async { "hello" }))
        .layer(
            tower::ServiceBuilder::new()
                .layer(RejectionResponseLayer::new())
                .layer(shed),
        );
    let res = app
        .clone()
        .oneshot(Request::get("/").body(Body::empty()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body = axum::body::to_bytes(res.into_body(), 64).await.unwrap();
    assert_eq!(&body[..], b"hello");
    let res = app
        .oneshot(
            Request::get("/")
                .header("x-shed", "1")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.headers()["retry-after"], "1");
}
