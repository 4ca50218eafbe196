//! tonic under the buttress stacks, over HTTP/2 on loopback: the client retries
//! `UNAVAILABLE` and succeeds; server rejections come back as the right gRPC status;
//! a negative `grpc-retry-pushback-ms` stops the retry.
//!
//! No protoc: the messages are prost structs written by hand, the service glue is
//! tonic's `server::Grpc` and `client::Grpc` with the prost codec.
#![allow(clippy::unwrap_used, reason = "test code: a failure should panic")]

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use buttress::backoff::Backoff;
use buttress::bulkhead::BulkheadConfig;
use buttress::retry::RetryConfig;
use buttress::shed::ShedConfig;
use buttress::{BoxError, Policy};
use buttress_http::HttpPolicy;
use buttress_http::classify::RetrySafety;
use buttress_http::deadline::OutboundDeadlineConfig;
use buttress_http::policy::HttpServerLayer;
use http::uri::PathAndQuery;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::time::{Instant, timeout};
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::{Code, Status};
use tonic_prost::ProstCodec;
use tower::{Service, ServiceBuilder, service_fn};

use super::common::{BOUND, serve};

/// `message SayRequest { string name = 1; }`
#[derive(Clone, PartialEq, prost::Message)]
struct SayRequest {
    #[prost(string, tag = "1")]
    name: String,
}

/// `message SayReply { string message = 1; }`
#[derive(Clone, PartialEq, prost::Message)]
struct SayReply {
    #[prost(string, tag = "1")]
    message: String,
}

const SAY: &str = "/test.Greeter/Say";

type Handler = Arc<dyn Fn(tonic::Request<SayRequest>) -> Result<SayReply, Status> + Send + Sync>;
type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// The server glue of `service Greeter { rpc Say(SayRequest) returns (SayReply); }`,
/// answering with `handler` after `delay`.
#[derive(Clone)]
struct GreeterServer {
    handler: Handler,
    delay: Duration,
}

impl<B> Service<http::Request<B>> for GreeterServer
where
    B: http_body::Body + Send + 'static,
    B::Error: Into<BoxError> + Send,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let (handler, delay) = (self.handler.clone(), self.delay);
        let say = service_fn(move |req: tonic::Request<SayRequest>| {
            let handler = handler.clone();
            async move {
                tokio::time::sleep(delay).await;
                handler(req).map(tonic::Response::new)
            }
        });
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(ProstCodec::<SayReply, SayRequest>::default());
            Ok(grpc.unary(say, req).await)
        })
    }
}

/// A gRPC server on loopback whose `Say` runs `handler`, under the buttress server
/// stack `layer` (rejections as gRPC answers, the deadline from `grpc-timeout`, ...).
async fn server(handler: Handler, delay: Duration, layer: HttpServerLayer) -> SocketAddr {
    let app = Router::new()
        .route_service(SAY, GreeterServer { handler, delay })
        .layer(layer);
    serve(app).await
}

/// The server's policy: a timeout of 10 s of its own (or the caller's deadline), and
/// `shed` if given.
fn server_policy(shed: Option<ShedConfig>) -> HttpServerLayer {
    let mut policy = Policy::default().with_timeout(Duration::from_secs(10));
    if let Some(shed) = shed {
        policy = policy.with_shed(shed);
    }
    HttpPolicy::new(policy).server_layer()
}

/// Calls `Say` through the buttress client stack over an HTTP/2 hyper client: gRPC
/// calls declared safe to retry, three attempts, delay hints honoured up to `cap`, an
/// optional total timeout.
async fn say(addr: SocketAddr, cap: Duration, total: Option<Duration>) -> Result<SayReply, Status> {
    let mut policy = Policy::default().with_retry(RetryConfig {
        max_attempts: 3,
        backoff: Backoff::constant(Duration::from_millis(5)),
        retry_after_cap: cap,
        ..RetryConfig::default()
    });
    if let Some(total) = total {
        policy = policy.with_timeout(total);
    }
    // 20 ms off the time left for the trip (5 ms by default): the server's answer at
    // its deadline must beat the client's own timeout even on a busy machine.
    let policy = HttpPolicy::new(policy)
        .with_retry_safety(RetrySafety {
            grpc: true,
            ..RetrySafety::new()
        })
        .with_deadline_out(Some(OutboundDeadlineConfig {
            offset: Duration::from_millis(20),
            ..Default::default()
        }));
    let transport = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let stack = ServiceBuilder::new()
        .layer(policy.client_layer())
        .service(transport);
    let origin = format!("http://{addr}").parse().unwrap();
    let mut grpc = tonic::client::Grpc::with_origin(stack, origin);
    let call = async {
        grpc.ready()
            .await
            .map_err(|e| Status::unknown(e.to_string()))?;
        let req = tonic::Request::new(SayRequest {
            name: "buttress".into(),
        });
        let codec = ProstCodec::<SayRequest, SayReply>::default();
        grpc.unary(req, PathAndQuery::from_static(SAY), codec).await
    };
    timeout(BOUND, call)
        .await
        .unwrap()
        .map(tonic::Response::into_inner)
}

/// What the handler saw: `grpc-previous-rpc-attempts` of each call.
type Seen = Arc<Mutex<Vec<Option<String>>>>;

fn record(seen: &Seen, req: &tonic::Request<SayRequest>) -> usize {
    let previous = req
        .metadata()
        .get("grpc-previous-rpc-attempts")
        .map(|v| v.to_str().unwrap().to_owned());
    let mut seen = seen.lock().unwrap();
    seen.push(previous);
    seen.len()
}

#[tokio::test]
async fn the_client_retries_unavailable_and_succeeds() {
    let seen = Seen::default();
    let s = seen.clone();
    let handler: Handler = Arc::new(move |req| match record(&s, &req) {
        1 => Err(Status::unavailable("warming up")),
        _ => Ok(SayReply {
            message: format!("hello, {}", req.into_inner().name),
        }),
    });
    let addr = server(handler, Duration::ZERO, server_policy(None)).await;
    let reply = say(addr, Duration::from_secs(30), None).await.unwrap();
    assert_eq!(reply.message, "hello, buttress");
    assert_eq!(*seen.lock().unwrap(), [None, Some("1".to_owned())]);
}

#[tokio::test]
async fn a_negative_pushback_stops_the_retry() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let handler: Handler = Arc::new(move |_| {
        c.fetch_add(1, Ordering::SeqCst);
        let mut metadata = MetadataMap::new();
        metadata.insert("grpc-retry-pushback-ms", MetadataValue::from_static("-1"));
        Err(Status::with_metadata(
            Code::Unavailable,
            "do not come back",
            metadata,
        ))
    });
    let addr = server(handler, Duration::ZERO, server_policy(None)).await;
    let status = say(addr, Duration::from_secs(30), None).await.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(status.message(), "do not come back");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "retried despite the pushback"
    );
}

#[tokio::test]
async fn a_draining_server_answers_unavailable_with_pushback() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let handler: Handler = Arc::new(move |_| {
        c.fetch_add(1, Ordering::SeqCst);
        Ok(SayReply::default())
    });
    let layer = server_policy(Some(ShedConfig::default()));
    layer.handles().shed.unwrap().drain();
    let addr = server(handler, Duration::ZERO, layer).await;
    // The server asks for 1 s (its retry delay) and this client honours at most
    // 100 ms: no retry, and the client's retry layer marks the answer it gave up on
    // (a negative pushback) for any tier above.
    let status = say(addr, Duration::from_millis(100), None)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert_eq!(status.message(), "draining");
    assert_eq!(
        status.metadata().get("grpc-retry-pushback-ms").unwrap(),
        "-1"
    );
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_full_bulkhead_answers_resource_exhausted() {
    let handler: Handler = Arc::new(|_| Ok(SayReply::default()));
    let layer = HttpPolicy::new(
        Policy::default()
            .with_timeout(Duration::from_secs(10))
            .with_bulkhead(BulkheadConfig::new(1)),
    )
    .server_layer();
    let bulkhead = layer.handles().bulkhead.unwrap();
    // Each call holds the only permit for 300 ms.
    let addr = server(handler, Duration::from_millis(300), layer).await;
    let first = tokio::spawn(say(addr, Duration::from_millis(100), None));
    timeout(BOUND, async {
        while bulkhead.snapshot().running == 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    })
    .await
    .unwrap();
    let status = say(addr, Duration::from_millis(100), None)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert_eq!(status.message(), "bulkhead full");
    first.await.unwrap().unwrap();
    assert_eq!(bulkhead.snapshot().rejected, 1);
}

#[tokio::test]
async fn the_callers_deadline_becomes_deadline_exceeded_from_the_server() {
    let handler: Handler = Arc::new(|_| Ok(SayReply::default()));
    // The handler takes 10 s; the caller allows 300 ms, sent as `grpc-timeout`.
    let addr = server(handler, Duration::from_secs(10), server_policy(None)).await;
    let start = Instant::now();
    let status = say(
        addr,
        Duration::from_secs(30),
        Some(Duration::from_millis(300)),
    )
    .await
    .unwrap_err();
    assert_eq!(status.code(), Code::DeadlineExceeded, "{status:?}");
    assert_eq!(
        status.message(),
        "request timed out",
        "the server's answer, not a local error"
    );
    assert!(
        start.elapsed() < Duration::from_millis(300),
        "{:?}",
        start.elapsed()
    );
}
