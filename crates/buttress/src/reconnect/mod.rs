//! Reconnection with backoff: keeps a connection made by a connector and makes a new
//! one, spaced by the shared backoff and within an optional budget, when it fails.
//!
//! Clients that hold a connection open (a database session, an HTTP/2 or gRPC
//! channel, a message broker, the transport under a feed) lose it when the server
//! restarts, a deploy drains it or the network blips. tower's `Reconnect` retries at
//! once, with no backoff, so a fleet of clients that lost one server hammers it
//! while it comes back. A [`Reconnect`] instead:
//!
//! - connects through a connector `M: Service<Target>` (tower's `MakeService`
//!   shape: each response is a connection, itself a service) on first use;
//! - notices a failed connection (its `poll_ready` fails), waits a
//!   [backoff](crate::backoff) delay (with jitter, so clients that lost one server
//!   together do not return together; capped at `backoff.max`), then reconnects,
//!   backing off further while attempts fail;
//! - takes each attempt from an optional [budget](crate::budget) (its own, or
//!   shared with a retry layer), putting off attempts the budget refuses;
//! - either holds calls until the connection is back, or, with
//!   [`fail_fast`](ReconnectConfig::fail_fast), answers them at once with
//!   [`Reconnecting`](error::Reconnecting) (nothing sent: safe to retry elsewhere);
//! - replaces a connection left unused for longer than
//!   [`idle_timeout`](ReconnectConfig::idle_timeout), which a NAT or load balancer
//!   may have dropped silently;
//! - reports its state (connected, reconnecting since, attempts) through a
//!   [`ReconnectHandle`], `tracing` events (target `buttress::reconnect`) and
//!   metrics (`docs/metrics.md`).
//!
//! # When to use it, and when not
//!
//! Use it below everything else, between a client stack and a connector that
//! makes long-lived connections. It is not part of the per-request order of a
//! `Policy`: its settings are a policy's `reconnect` section, read by connectors and
//! by stream clients (the HTTP crate's resumable Server-Sent Events client reads the
//! same knobs and resumes the stream where it was cut).
//!
//! It keeps one connection and sends calls over it: for a pool of connections use
//! the connection pool of your client (hyper-util's), for many endpoints a balancer.
//! It never resends a call that failed on a dying connection: put a retry layer
//! above it for that. Like any service holding one connection, it takes `&mut self`:
//! share it between tasks with `tower::buffer::Buffer`.
//!
//! A pass-through layer (a `None` config, [`ReconnectLayer::from_config`]) behaves
//! as tower's `Reconnect`, with the same type.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicU32, Ordering};
//! use std::time::Duration;
//! use buttress::backoff::{Backoff, Jitter};
//! use buttress::reconnect::{ReconnectConfig, ReconnectLayer};
//! use tower::{Layer, Service, ServiceExt, service_fn};
//! use tokio::time::Instant;
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), tower::BoxError> {
//! // A connector whose first two attempts are refused; a connection doubles numbers.
//! let tries = Arc::new(AtomicU32::new(0));
//! let connector = service_fn(move |addr: &'static str| {
//!     let n = tries.fetch_add(1, Ordering::Relaxed);
//!     async move {
//!         if n < 2 {
//!             return Err(format!("{addr}: connection refused").into());
//!         }
//!         Ok::<_, tower::BoxError>(service_fn(|x: u32| async move { Ok::<_, tower::BoxError>(x * 2) }))
//!     }
//! });
//!
//! let backoff = Backoff::exponential(Duration::from_millis(100), Duration::from_secs(5))
//!     .with_jitter(Jitter::None);
//! let layer = ReconnectLayer::new(ReconnectConfig::default().with_backoff(backoff), "db.internal:5432");
//! let handle = layer.handle();
//! let mut conn = layer.layer(connector);
//!
//! // The call waits while the connection is made: refused, 100 ms, refused, 200 ms.
//! let start = Instant::now();
//! assert_eq!(conn.ready().await?.call(21).await?, 42);
//! assert_eq!(start.elapsed(), Duration::from_millis(300));
//!
//! let state = handle.snapshot();
//! assert!(state.connected);
//! assert_eq!((state.connects, state.failed_attempts), (1, 2));
//! assert_eq!(state.reconnecting_since, None);
//! # Ok(())
//! # }
//! ```
//!
//! With `fail_fast`, the same call would have been refused at once while the
//! connector was being refused:
//!
//! ```
//! # use std::time::Duration;
//! use buttress::reconnect::{Reconnect, ReconnectConfig, error::Reconnecting};
//! use tower::{Service, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! // A connector that is always refused (the connection type is what it would make).
//! let down = service_fn(|_: ()| async {
//!     let refused = true;
//!     if refused {
//!         return Err(tower::BoxError::from("connection refused"));
//!     }
//!     Ok(service_fn(|x: u32| async move { Ok::<_, tower::BoxError>(x) }))
//! });
//! let mut conn = Reconnect::new(down, (), ReconnectConfig::default().with_fail_fast(true));
//! let err = conn.ready().await.unwrap().call(1).await.unwrap_err();
//! let reconnecting = err.downcast_ref::<Reconnecting>().unwrap();
//! assert_eq!(reconnecting.attempts(), 1);
//! assert_eq!(reconnecting.to_string(), "connection down, reconnecting (1 failed attempts)");
//! assert_eq!(std::error::Error::source(reconnecting).unwrap().to_string(), "connection refused");
//! # }
//! ```

mod config;
pub mod error;
pub mod future;
mod layer;
mod link;
mod service;
mod state;

pub use config::ReconnectConfig;
pub use layer::ReconnectLayer;
pub use service::Reconnect;
pub use state::{ReconnectHandle, ReconnectSnapshot};

#[cfg(test)]
mod tests;
