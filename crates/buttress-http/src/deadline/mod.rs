//! Deadline propagation over HTTP and gRPC headers.
//!
//! A caller that will give up in 300 ms should not have its callee work for 5 s. The
//! client writes the time it has left into the request; the server reads it, sets the
//! request's [`Deadline`](buttress::Deadline), and every buttress layer below honours
//! it (timeouts fire at it, queues drop waiters past it, retries do not start attempts
//! that cannot finish) and the handler's own outbound calls inherit it (see
//! [`crate::context`]).
//!
//! - Server: [`DeadlineFromHeadersLayer`] reads `grpc-timeout` (gRPC's format: every
//!   unit, `H M S m u n`, at most 8 digits) and a millisecond header
//!   (`buttress-timeout-ms` by default), takes the smaller, clamps it to a maximum
//!   (peers are not trusted to ask for hours) and sets the deadline, with one clock
//!   read. A request that already carries an earlier deadline keeps it. Malformed values
//!   are ignored with a debug event at target `buttress::http`.
//! - Client, innermost (just above the transport): [`DeadlineToHeadersLayer`] writes
//!   the time left, minus an offset for the trip (`grpc-timeout` for gRPC requests,
//!   the millisecond header for others), and the attempt number from
//!   [`Attempt`](buttress::Attempt) (`grpc-previous-rpc-attempts` = attempt - 1, from
//!   the second attempt on, for gRPC; `buttress-attempt` for others). When the request
//!   carries no deadline it uses the [request context](crate::context)'s; when both
//!   exist, the earlier. A sooner value already in the header (tonic's
//!   `Request::set_timeout`, say) is kept.
//! - Client, outermost: [`InheritContextLayer`] gives each outbound request the
//!   earlier of its own deadline and the request context's, so every layer of the client
//!   stack (total timeout, retry) sees the inbound deadline; and it sets the context's
//!   gave-up flag when an answer comes back marked do-not-retry.
//!
//! Each layer has a `disabled()` form of the same type that passes calls through.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use buttress::RequestMeta;
//! use buttress_http::deadline::{DeadlineFromHeadersLayer, InboundDeadlineConfig};
//! use http::Request;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let handler = service_fn(|req: Request<()>| async move {
//!     let left = req.deadline().unwrap().remaining(tokio::time::Instant::now());
//!     Ok::<_, std::convert::Infallible>(left)
//! });
//! let svc = ServiceBuilder::new()
//!     .layer(DeadlineFromHeadersLayer::new(InboundDeadlineConfig {
//!         max: Duration::from_secs(10),
//!         ..Default::default()
//!     }))
//!     .service(handler);
//!
//! let req = Request::get("/").header("buttress-timeout-ms", "250").body(()).unwrap();
//! assert_eq!(svc.clone().oneshot(req).await.unwrap(), Duration::from_millis(250));
//! // Clamped to the maximum.
//! let req = Request::get("/").header("grpc-timeout", "2H").body(()).unwrap();
//! assert_eq!(svc.oneshot(req).await.unwrap(), Duration::from_secs(10));
//! # }
//! ```

mod config;
pub mod future;
mod layer;
mod service;

pub use config::{InboundDeadlineConfig, OutboundDeadlineConfig};
pub use layer::{DeadlineFromHeadersLayer, DeadlineToHeadersLayer, InheritContextLayer};
pub use service::{DeadlineFromHeaders, DeadlineToHeaders, InheritContext};

#[cfg(test)]
mod tests;
