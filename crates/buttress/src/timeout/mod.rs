//! Timeouts: a total one across attempts and one per attempt, both bounded by the
//! deadline the request carries.
//!
//! A [`Timeout`] fires at the earlier of its own budget and the request's carried
//! [`Deadline`](crate::Deadline), and its [`Elapsed`](error::Elapsed) error says which
//! ([`Cause`](error::Cause)) and which timeout it was ([`Scope`](error::Scope)). It
//! also writes the deadline it enforces back onto the request (updating a carried one
//! in place), so inner layers (retry, queues, the HTTP client writing `grpc-timeout`)
//! see one deadline without reading the clock again.
//!
//! In a client stack the total timeout is outermost and the attempt timeout sits below
//! retry, so a hung attempt is cut short in time for another one. Only an attempt
//! timeout of its own budget is retryable: when the carried deadline has passed, no
//! attempt can finish.
//!
//! A timeout with no budget passes calls through, still honouring a carried deadline.
//! That is how a [`Policy`](crate::Policy) with a timeout disabled keeps one service
//! type. One clock read per call when a budget is set (the same as tower's
//! `Timeout`), none otherwise.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use buttress::timeout::{TimeoutLayer, error::{Elapsed, Scope}};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let slow = service_fn(|_: u32| async {
//!     tokio::time::sleep(Duration::from_secs(10)).await;
//!     Ok::<_, tower::BoxError>("done")
//! });
//! let svc = ServiceBuilder::new()
//!     .layer(TimeoutLayer::attempt(Duration::from_millis(100)))
//!     .service(slow);
//! let err = svc.oneshot(1).await.unwrap_err();
//! let elapsed = err.downcast_ref::<Elapsed>().unwrap();
//! assert_eq!(elapsed.scope(), Scope::Attempt);
//! assert!(elapsed.is_retryable());
//! # }
//! ```

pub mod error;
pub mod future;
mod layer;
mod service;

pub use layer::TimeoutLayer;
pub use service::Timeout;

#[cfg(test)]
mod tests;
