//! Turning buttress rejections into HTTP and gRPC answers, keeping the service
//! `Infallible` for axum.
//!
//! A server's shed, bulkhead, breaker and timeout layers refuse calls with errors
//! ([`Overloaded`](buttress::rejection::Overloaded),
//! [`BulkheadFull`](buttress::rejection::BulkheadFull), ...). A client must get an
//! answer it understands, one that says whether and when to retry.
//! [`RejectionResponseLayer`], outermost in a server stack, finds the rejection in each
//! error ([`Rejection::find`](buttress::Rejection::find), anywhere in the source chain)
//! and answers:
//!
//! | rejection | HTTP | gRPC (trailers-only, HTTP 200) |
//! |---|---|---|
//! | open breaker, shed, draining | 503 + `Retry-After` | `UNAVAILABLE` (14) + `grpc-retry-pushback-ms` |
//! | full bulkhead, throttled | 503 + `Retry-After` | `RESOURCE_EXHAUSTED` (8) + `grpc-retry-pushback-ms` |
//! | timeout | 504 (configurable) | `DEADLINE_EXCEEDED` (4) |
//! | anything else | the error handler: 500 by default | the error handler: `UNKNOWN` (2) by default |
//!
//! `Retry-After` is the rejection's own delay (time left open, the shedder's
//! suggestion) in whole seconds, rounded up, or
//! [`default_retry_after`](RejectionConfig::default_retry_after) when it has none; the
//! pushback is the same in milliseconds. A request is gRPC when its `content-type` is
//! `application/grpc*`. An error carrying the do-not-retry mark
//! ([`DoNotRetry`](buttress::rejection::DoNotRetry)) gives an answer carrying it too
//! (`buttress-retry: gave-up`; a negative pushback for gRPC). Errors it does not
//! recognise go to a [`HandleError`] (a closure works), never dropped.
//!
//! # With axum
//!
//! The service's answer is `http::Response<ResponseBody<B>>` with
//! [`ResponseBody`](crate::body::ResponseBody) the inner body or one written here;
//! with `B = axum::body::Body` that is an `IntoResponse`, and the error is
//! `Infallible`, so the layer goes straight into `Router::layer` (outermost, i.e.
//! last) or `Router::route_layer`: `router.layer(RejectionResponseLayer::new())`.
//! Used around a whole `Router` outside axum, map the answer with
//! `.map_response(IntoResponse::into_response)` before `axum::serve`.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use buttress::rejection::{OverloadReason, Overloaded};
//! use buttress_http::rejection::RejectionResponseLayer;
//! use http::{Request, Response, StatusCode};
//! use http_body_util::Full;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let shedding = service_fn(|_req: Request<()>| async {
//!     Err::<Response<Full<bytes::Bytes>>, _>(Overloaded::new(OverloadReason::Shed, Duration::from_millis(1500)))
//! });
//! let svc = ServiceBuilder::new().layer(RejectionResponseLayer::new()).service(shedding);
//!
//! let res = svc.clone().oneshot(Request::new(())).await.unwrap(); // Infallible
//! assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
//! assert_eq!(res.headers()["retry-after"], "2");
//!
//! let grpc = Request::post("/pkg.Svc/Get").header("content-type", "application/grpc").body(()).unwrap();
//! let res = svc.oneshot(grpc).await.unwrap();
//! assert_eq!(res.status(), StatusCode::OK);
//! assert_eq!(res.headers()["grpc-status"], "14");
//! assert_eq!(res.headers()["grpc-retry-pushback-ms"], "1500");
//! # }
//! ```

mod config;
pub mod future;
mod handler;
mod layer;
mod service;

pub use config::{Protocol, RejectionConfig};
pub use handler::{DefaultHandler, HandleError};
pub use layer::RejectionResponseLayer;
pub use service::RejectionResponse;

#[cfg(test)]
mod tests;
