//! HTTP and gRPC support for [buttress]: the layers speak HTTP.
//!
//! buttress's layers wrap any `tower::Service`; this crate teaches them what an HTTP or
//! gRPC outcome means and carries their signals across the wire:
//!
//! - [`classify`]: [`HttpClassify`] classifies by status, by `grpc-status` (at the
//!   head, or in the trailers through an end-of-body hook) and by transport error;
//!   decides which requests are safe to repeat; reads delay hints and the do-not-retry
//!   mark, and puts the mark on answers a retry layer gave up on.
//! - [`body`]: a response body that holds a guard (a permit, a round-trip sample, the
//!   end-of-body classifier) until it ends, and the body of the answers buttress writes.
//! - [`replay`]: a replayable request body and the [`Replay`](buttress::Replay)
//!   strategies for HTTP requests.
//! - [`deadline`]: deadlines from `grpc-timeout` and a millisecond header on servers;
//!   time left and attempt numbers written on clients.
//! - [`context`]: the middle tier: the inbound deadline and a gave-up flag scoped over a
//!   handler, inherited by its outbound calls.
//! - [`rejection`]: buttress rejections as 503 + `Retry-After`, 504 or trailers-only
//!   gRPC answers, keeping services `Infallible` for axum.
//! - [`priority`] and [`key`]: priority from a header; keys by authority, route and
//!   allow-listed header.
//! - [`hint`], [`grpc`] and [`header`]: the wire formats (lenient parsers that never
//!   panic, gRPC codes, header names).
//! - [`policy`]: [`HttpPolicy`], one value describing a whole client or server stack,
//!   built in the order below.
//!
//! Start with the [guide]: how to use the stacks with axum, hyper-util, reqwest and
//! tonic, and the headers on the wire.
//!
//! # Where each layer goes
//!
//! Client, outermost first: [`InheritContextLayer`](deadline::InheritContextLayer) ->
//! [`BufferRequestBodyLayer`](replay::BufferRequestBodyLayer) -> total timeout -> retry
//! / hedge (with [`HttpClassify`] and [`HttpReplay`](replay::HttpReplay)) -> throttle
//! -> balance -> breaker -> bulkhead -> attempt timeout ->
//! [`DeadlineToHeadersLayer`](deadline::DeadlineToHeadersLayer) -> transport.
//!
//! Server, outermost first: [`RejectionResponseLayer`](rejection::RejectionResponseLayer)
//! -> [`HoldBodyLayer`](body::HoldBodyLayer) ->
//! [`DeadlineFromHeadersLayer`](deadline::DeadlineFromHeadersLayer) ->
//! [`PriorityFromHeaderLayer`](priority::PriorityFromHeaderLayer) -> shed -> bulkhead
//! -> timeout -> [`ContextScopeLayer`](context::ContextScopeLayer) -> handler. Shed and
//! bulkhead hand their permits to [`HoldUntilBodyEnd`](body::HoldUntilBodyEnd), and
//! `HoldBodyLayer` moves them into the answer's body: they are held until the body
//! ends, not released at the head.
//!
//! # Example: a middle tier
//!
//! ```
//! use std::time::Duration;
//! use buttress::RequestMeta;
//! use buttress_http::{context::ContextScopeLayer, deadline::{DeadlineFromHeadersLayer, DeadlineToHeadersLayer, InheritContextLayer}};
//! use http::{Request, Response};
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! // The client stack the handler calls the next tier through (the transport here
//! // just reports the deadline header it would send).
//! let client = ServiceBuilder::new()
//!     .layer(InheritContextLayer::new())
//!     .layer(DeadlineToHeadersLayer::default())
//!     .service(service_fn(|req: Request<()>| async move {
//!         let sent = req.headers()["buttress-timeout-ms"].to_str().unwrap().to_owned();
//!         Ok::<_, buttress::BoxError>(Response::new(sent))
//!     }));
//!
//! let server = ServiceBuilder::new()
//!     .layer(DeadlineFromHeadersLayer::default())
//!     .layer(ContextScopeLayer::new())
//!     .service(service_fn(move |_req: Request<()>| {
//!         let client = client.clone();
//!         // The handler passes no deadline: the outbound call inherits it.
//!         async move { client.oneshot(Request::new(())).await }
//!     }));
//!
//! let inbound = Request::get("/").header("buttress-timeout-ms", "300").body(()).unwrap();
//! let answer = server.oneshot(inbound).await.unwrap();
//! assert_eq!(answer.body(), "295"); // 300 ms minus the default 5 ms offset
//! # }
//! ```
//!
//! [buttress]: https://docs.rs/buttress
//! [`HttpClassify`]: classify::HttpClassify
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod body;
pub mod classify;
pub mod context;
pub mod deadline;
pub mod grpc;
pub mod header;

/// The guide to the HTTP crate (`docs/http.md`): the server and client stacks, the
/// headers read and written, gRPC, and which layers hold their permit until the body
/// ends.
#[doc = include_str!("../../../docs/http.md")]
pub mod guide {}

pub mod hint;
pub mod key;
pub mod policy;
pub mod priority;
pub mod rejection;
pub mod replay;
#[cfg(feature = "serde")]
mod serde_util;
pub mod sse;
mod util;

pub use classify::HttpClassify;
pub use policy::HttpPolicy;
