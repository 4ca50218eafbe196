//! A tonic gRPC server and client under the HTTP crate's stacks: the client retries
//! `UNAVAILABLE`, its deadline reaches the server as `grpc-timeout`, and the server
//! stops at that deadline and answers `DEADLINE_EXCEEDED`.
//!
//! No protoc: the messages are prost structs written by hand and the service glue is
//! tonic's `server::Grpc` and `client::Grpc` with the prost codec (what tonic-build
//! would generate, minus the generality). The server is axum over HTTP/2, the client a
//! hyper-util HTTP/2 client.
//!
//! Run: `cargo run -p buttress-examples --example tonic_grpc` (starts the server on a
//! loopback port, calls it, prints what happened and exits; `--serve` keeps the server
//! up until Ctrl-C).

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use buttress::retry::RetryConfig;
use buttress::{BoxError, Policy};
use buttress_http::HttpPolicy;
use buttress_http::classify::RetrySafety;
use http::uri::PathAndQuery;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::time::Instant;
use tonic::{Request, Response, Status};
use tonic_prost::ProstCodec;
use tower::{Service, ServiceBuilder, service_fn};

/// `message HelloRequest { string name = 1; }`
#[derive(Clone, PartialEq, prost::Message)]
pub struct HelloRequest {
    /// Who to greet.
    #[prost(string, tag = "1")]
    pub name: String,
}

/// `message HelloReply { string message = 1; }`
#[derive(Clone, PartialEq, prost::Message)]
pub struct HelloReply {
    /// The greeting.
    #[prost(string, tag = "1")]
    pub message: String,
}

/// `service Greeter { rpc SayHello(HelloRequest) returns (HelloReply); }`
const SAY_HELLO: &str = "/helloworld.Greeter/SayHello";

/// The service's logic: every third call finds the server warming up (a retryable
/// `UNAVAILABLE`); "slow" takes two seconds.
async fn say_hello(
    calls: Arc<AtomicUsize>,
    req: Request<HelloRequest>,
) -> Result<Response<HelloReply>, Status> {
    let n = calls.fetch_add(1, Ordering::SeqCst);
    let deadline = req
        .metadata()
        .get("grpc-timeout")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("none")
        .to_owned();
    let name = req.into_inner().name;
    println!("  server: call #{n} for {name:?}, grpc-timeout {deadline}");
    if n % 3 == 0 {
        return Err(Status::unavailable("warming up"));
    }
    if name == "slow" {
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    Ok(Response::new(HelloReply {
        message: format!("hello, {name}"),
    }))
}

/// The server glue: decodes the request, runs [`say_hello`], encodes the answer (or
/// the status as a trailers-only answer).
#[derive(Clone, Default)]
struct GreeterServer {
    calls: Arc<AtomicUsize>,
}

impl<B> Service<http::Request<B>> for GreeterServer
where
    B: http_body::Body + Send + 'static,
    B::Error: Into<BoxError> + Send,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Infallible>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let calls = self.calls.clone();
        let method = service_fn(move |req| say_hello(calls.clone(), req));
        Box::pin(async move {
            let mut grpc =
                tonic::server::Grpc::new(ProstCodec::<HelloReply, HelloRequest>::default());
            Ok(grpc.unary(method, req).await)
        })
    }
}

async fn serve() -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<std::io::Result<()>>)> {
    // The server stack: rejections as gRPC statuses, the caller's `grpc-timeout`
    // read (and clamped), a load shedder and a 10 s timeout of the server's own.
    let layer = HttpPolicy::new(
        Policy::default()
            .with_timeout(Duration::from_secs(10))
            .with_shed(buttress::shed::ShedConfig::default()),
    )
    .server_layer();
    let app = Router::new()
        .route_service(SAY_HELLO, GreeterServer::default())
        .layer(layer);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    Ok((
        addr,
        tokio::spawn(async move { axum::serve(listener, app).await }),
    ))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (addr, server) = serve().await?;
    println!("gRPC server on http://{addr}");
    if std::env::args().any(|a| a == "--serve") {
        tokio::signal::ctrl_c().await?;
        return Ok(());
    }

    // The client stack: 500 ms for the whole call, three attempts. gRPC calls are all
    // POSTs; this client declares them safe to repeat (SayHello is idempotent).
    let policy = HttpPolicy::new(
        Policy::default()
            .with_timeout(Duration::from_millis(500))
            .with_retry(RetryConfig::default()),
    )
    .with_retry_safety(RetrySafety {
        grpc: true,
        ..RetrySafety::new()
    });
    let layer = policy.client_layer();
    let transport = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let stack = ServiceBuilder::new()
        .layer(layer.clone())
        .service(transport);
    let mut greeter = tonic::client::Grpc::with_origin(stack, format!("http://{addr}").parse()?);

    for name in ["ada", "grace", "slow"] {
        let start = Instant::now();
        greeter
            .ready()
            .await
            .map_err(|e| format!("not ready: {e}"))?;
        let req = Request::new(HelloRequest {
            name: name.to_owned(),
        });
        let codec = ProstCodec::<HelloRequest, HelloReply>::default();
        let outcome = greeter
            .unary(req, PathAndQuery::from_static(SAY_HELLO), codec)
            .await;
        let took = start.elapsed().as_millis();
        match outcome {
            Ok(reply) => println!("client: {:?} after {took} ms", reply.into_inner().message),
            Err(status) => println!(
                "client: {:?} {:?} after {took} ms",
                status.code(),
                status.message()
            ),
        }
    }
    if let Some(retry) = layer.handles().retry {
        println!("client retries: {}", retry.snapshot().retries);
    }
    server.abort();
    Ok(())
}
