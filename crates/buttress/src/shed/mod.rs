//! Load shedding: an adaptive concurrency limit, request priorities, a bounded
//! queue and a drain switch, so that a saturated server keeps answering with useful
//! work instead of collapsing.
//!
//! A server past its capacity (its maximum connections, its CPU, a pool below it)
//! that accepts everything builds a queue; every request then waits behind the
//! others, callers time out, and the server spends its capacity on answers nobody
//! reads: goodput falls toward zero just when demand peaks. [`Shed`] admits a call
//! only while fewer than a *limit* are in flight, and refuses the rest at once with
//! [`Overloaded`](error::Overloaded) and a suggested retry delay (503 +
//! `Retry-After` through the HTTP crate), so admitted calls stay fast and refused
//! callers can go elsewhere or back off.
//!
//! The limit adapts to the service: an algorithm from [`limit`] ([`Fixed`],
//! [`Aimd`], [`Gradient`], [`Vegas`]) watches the round trips of admitted calls and
//! finds the concurrency past which they only queue. Timeouts and overload answers
//! (a 503 or 429 from the handler, `Overloaded` or `BulkheadFull` from a layer
//! below) count as drops; refused and cancelled calls are not samples.
//!
//! Around the limit:
//!
//! - **Queue** (`queue.size`, `queue.max_wait`): calls over the limit may wait,
//!   FIFO while the queue drains and LIFO once a standing queue forms (CoDel's test,
//!   `queue.target` for `queue.interval`), so that under overload the freshest
//!   requests are served. A waiter leaves after `max_wait` or when its request's
//!   [`Deadline`](crate::Deadline) passes.
//! - **Priorities**: read from the request ([`RequestMeta::priority`]; the HTTP crate
//!   fills it from a header). Sheddable calls are refused first, critical calls may
//!   use headroom above the limit; [`PriorityConfig`] has the exact rule.
//! - **Drain** ([`ShedHandle::drain`]): for a graceful shutdown or a rolling deploy,
//!   every new call is refused with reason `Drain` while in-flight ones finish;
//!   [`ShedHandle::drained`] resolves once none is left.
//! - **Observe-only** ([`Mode::Observe`](crate::Mode)): computes the limit and counts
//!   what it would refuse, refusing nothing (the drain switch still applies).
//! - **Streamed answers** ([`ShedLayer::with_hold`]): a call's permit is freed when
//!   its answer's head is ready, unless a [`HoldResponse`](crate::hold::HoldResponse)
//!   strategy keeps it with the answer (the HTTP crate's server stack holds it until
//!   the body ends): then the call counts as in flight, against the limit and for
//!   [`ShedHandle::drained`], until the body ends. The round-trip sample is taken at
//!   the head either way.
//!
//! # When to use it, and when not
//!
//! Put it near the top of a server stack (after the deadline is read from headers,
//! before a bulkhead or the handler). It protects a service whose capacity is
//! unknown or changes; for a known, fixed resource (a pool of 16 connections) a
//! bulkhead is simpler. It is not a rate limiter: it bounds concurrency, not requests
//! per second, and it does not keep tenants apart. On the client side use
//! the `throttle` module instead.
//!
//! # Cost
//!
//! An admitted call costs a compare-and-swap on the in-flight count, one clock read
//! at the answer when the request carries a [`Deadline`](crate::Deadline) (its start
//! instant is reused), two otherwise, and a few atomic additions at completion; no
//! allocation. The gradient and Vegas algorithms take a short lock once per window
//! of about one round trip, a fixed limit never; AIMD and an algorithm of your own
//! (fed every sample) take it at every completion. A disabled layer (built from `None`) is a
//! pass-through of the same type. The inner service must be `Clone`: a queued call
//! carries a ready copy of it.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use buttress::shed::{Algorithm, ShedConfig, ShedLayer, error::{OverloadReason, Overloaded}};
//! use tower::{Service, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), tower::BoxError> {
//! let layer = ShedLayer::new(
//!     ShedConfig::new(Algorithm::Gradient)
//!         .with_limits(20, 5, 1000)
//!         .with_queue(64, Duration::from_millis(50)),
//! );
//! let handle = layer.handle().expect("enabled");
//! let mut svc = tower::ServiceBuilder::new()
//!     .layer(layer)
//!     .service(service_fn(|req: u32| async move { Ok::<_, tower::BoxError>(req + 1) }));
//! assert_eq!(svc.ready().await?.call(1).await?, 2);
//! assert_eq!(handle.limit(), 20);
//!
//! // Shutting down: new calls are refused, and `drained` says when in-flight ones are done.
//! handle.drain();
//! let err = svc.ready().await?.call(2).await.unwrap_err();
//! assert_eq!(err.downcast_ref::<Overloaded>().unwrap().reason(), OverloadReason::Drain);
//! handle.drained().await;
//! # Ok(())
//! # }
//! ```
//!
//! [`RequestMeta::priority`]: crate::RequestMeta::priority

mod config;
pub mod error;
pub mod future;
mod layer;
pub mod limit;
mod queue;
mod service;
mod state;

#[cfg(test)]
mod sim;
#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::Arc;

pub use config::{Algorithm, LimitConfig, PriorityConfig, QueueConfig, ShedConfig};
pub use layer::ShedLayer;
pub use limit::{Aimd, Fixed, Gradient, Limit, Sample, Vegas};
pub use service::Shed;

use state::Shared;

/// Counts per priority.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ByPriority {
    /// Critical calls.
    pub critical: u64,
    /// Calls of the default priority.
    pub default: u64,
    /// Sheddable calls.
    pub sheddable: u64,
}

impl ByPriority {
    /// All priorities together.
    pub fn total(&self) -> u64 {
        self.critical + self.default + self.sheddable
    }
}

/// What a shed layer looks like at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct ShedSnapshot {
    /// The current concurrency limit.
    pub limit: usize,
    /// Calls admitted and not finished.
    pub in_flight: usize,
    /// Calls waiting in the queue.
    pub queue_depth: usize,
    /// Whether the queue is standing (serving the newest first).
    pub lifo: bool,
    /// Whether the drain switch is on.
    pub draining: bool,
    /// Calls refused for want of room (or displaced from the queue), so far.
    pub shed: ByPriority,
    /// Calls that left the queue unserved (`max_wait` or deadline), so far.
    pub expired: ByPriority,
    /// Calls refused because the layer was draining, so far.
    pub drain_refused: ByPriority,
    /// Calls an observe-only layer would have refused, so far.
    pub observed: ByPriority,
}

/// The handle to a shed layer: its limit, in-flight count and queue depth, the drain
/// switch, and reconfiguration.
#[derive(Clone)]
pub struct ShedHandle {
    shared: Arc<Shared>,
}

impl ShedHandle {
    fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// The current concurrency limit.
    pub fn limit(&self) -> usize {
        self.shared.limit()
    }

    /// Calls admitted and not finished.
    pub fn in_flight(&self) -> usize {
        self.shared.in_flight()
    }

    /// Calls waiting in the queue.
    pub fn queue_depth(&self) -> usize {
        self.shared.queue_depth()
    }

    /// Everything at once.
    pub fn snapshot(&self) -> ShedSnapshot {
        self.shared.snapshot()
    }

    /// Turns the drain switch on: every new call, and every call still queued, is
    /// refused with [`OverloadReason::Drain`](error::OverloadReason::Drain) and the
    /// configured retry delay; calls in flight finish. Obeyed in observe-only mode too.
    pub fn drain(&self) {
        self.shared.drain();
    }

    /// Turns the drain switch off again (a deploy that was called off).
    pub fn resume(&self) {
        self.shared.resume();
    }

    /// Whether the drain switch is on.
    pub fn is_draining(&self) -> bool {
        self.shared.is_draining()
    }

    /// Resolves once the layer is draining and no call is in flight. Pair it with a
    /// timeout of your own: a call that never ends keeps it pending.
    pub async fn drained(&self) {
        self.shared.drained().await;
    }

    /// Applies new settings, keeping the calls in flight and queued. A changed
    /// `limit` section starts its adaptive algorithm from the current limit (kept
    /// within the new bounds), so a reload does not forget what was learned (a `fixed`
    /// limit is what the config says); an unchanged one keeps the algorithm and its
    /// state.
    pub fn reconfigure(&self, config: ShedConfig) {
        self.shared.reconfigure(config, None);
    }

    /// Applies new settings with `limit` as the algorithm.
    pub fn reconfigure_with_limit(&self, config: ShedConfig, limit: impl Limit + 'static) {
        self.shared.reconfigure(config, Some(Box::new(limit)));
    }
}

impl fmt::Debug for ShedHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ShedHandle").field(&self.shared).finish()
    }
}
