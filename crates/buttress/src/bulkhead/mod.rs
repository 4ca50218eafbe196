//! Bulkheads: a bound on how many calls run at once, so one slow dependency or one
//! heavy route cannot take every worker, connection or byte of memory.
//!
//! A [`Bulkhead`] admits up to `max_concurrent` calls. Further calls wait in a FIFO
//! queue of `queue.size` places, each for at most `queue.max_wait` and never past the
//! deadline its request carries; when running and queued calls are both full, a call
//! is refused at once with [`BulkheadFull`](error::BulkheadFull). Queued calls are
//! served in arrival order: a newcomer never overtakes a queued caller, even when it
//! arrives just as a permit frees. A waiter that gives up is refused with
//! [`BulkheadFull::queue_timeout`](error::BulkheadFull::queue_timeout), or with
//! [`Elapsed`](error::Elapsed) (total scope, deadline cause) when its deadline passed
//! first.
//!
//! The limit can change at run time through the [`BulkheadHandle`]: growing it grants
//! queued callers at once; shrinking it lets the calls already running finish. Every
//! service one [`BulkheadLayer`] makes shares one state, so under axum every route
//! shares one bulkhead unless the layer is keyed: with
//! [`with_partition`](BulkheadLayer::with_partition) each key (a tenant, a route, an
//! endpoint) gets its own partition with the same limits, so one cannot starve
//! another. In [observe mode](crate::Mode::Observe) the bulkhead only counts what it
//! would refuse and lets every call through.
//!
//! **Use it** in front of a resource with a known capacity (a connection pool, a
//! CPU-heavy handler, a fragile dependency), or per tenant to keep one from crowding
//! out the rest. **Do not use it** to protect a server from overload whose capacity
//! you do not know: the load shedder (`shed`) finds the limit from latency. Keep
//! queues short: a long queue only adds latency to calls that would better fail
//! fast and go elsewhere.
//!
//! `poll_ready` is the inner service's own; the bulkhead never makes a caller wait
//! for readiness, and refusals come out of the response future. An unkeyed call
//! admitted at once costs one compare-and-swap to take its permit, one atomic
//! decrement to return it, and a reference count on the shared state: no lock, no
//! clock read, no allocation. A queued call moves the ready inner service into its (boxed)
//! future and calls it once it gets a permit. The permit is released when the inner
//! service answers or the future is dropped, at any point. For answers whose body
//! streams after the head, [`with_hold`](BulkheadLayer::with_hold) hands the permit to
//! a [`HoldResponse`](crate::hold::HoldResponse) strategy instead, which keeps it as
//! long as the answer (the HTTP crate's server stack holds it until the body ends).
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use buttress::bulkhead::{BulkheadConfig, BulkheadLayer, error::BulkheadFull};
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let layer = BulkheadLayer::new(BulkheadConfig::new(1).with_queue(1, Duration::from_millis(50)));
//! let handle = layer.handle();
//! let mut svc = ServiceBuilder::new().layer(layer).service(service_fn(|ms: u64| async move {
//!     tokio::time::sleep(Duration::from_millis(ms)).await;
//!     Ok::<_, tower::BoxError>(ms)
//! }));
//!
//! let running = svc.ready().await.unwrap().call(100);
//! let queued = svc.ready().await.unwrap().call(1);
//! let refused = svc.ready().await.unwrap().call(1);
//! assert_eq!((handle.snapshot().running, handle.snapshot().queued), (1, 1));
//!
//! // Running and queue are full: refused at once.
//! let err = refused.await.unwrap_err();
//! assert!(!err.downcast_ref::<BulkheadFull>().unwrap().was_queued());
//! // The queued call gives up after 50 ms, while the first one still runs.
//! let err = queued.await.unwrap_err();
//! assert!(err.downcast_ref::<BulkheadFull>().unwrap().was_queued());
//! assert_eq!(running.await.unwrap(), 100);
//! assert_eq!(handle.snapshot().rejected, 2);
//! # }
//! ```

mod config;
pub mod error;
pub mod future;
mod handle;
mod layer;
mod limiter;
mod service;
mod state;

#[cfg(test)]
mod tests;

pub use config::{BulkheadConfig, QueueConfig};
pub use handle::{BulkheadHandle, BulkheadSnapshot};
pub use layer::BulkheadLayer;
pub use service::Bulkhead;
