//! Client-side adaptive throttling: when an upstream starts refusing calls for
//! overload, refuse some locally instead of sending them, so that refusals cost the
//! upstream nothing.
//!
//! An overloaded server that answers 503 or 429 still spends work on every refusal,
//! and clients that keep sending (or retry) keep it overloaded. Google's SRE book
//! describes the fix this layer implements: each client counts, over a sliding
//! window, the `requests` it attempted and the `accepts` the upstream accepted, and
//! refuses each new call locally with probability
//!
//! ```text
//! max(0, (requests - k * accepts) / (requests + 1))
//! ```
//!
//! While the upstream accepts everything nothing is refused. When it accepts only a
//! share, the client sends about `k` times what it accepts and refuses the rest
//! locally with [`Overloaded`](error::Overloaded) (reason `Throttle`); as the
//! upstream recovers, accepts grow and so does what is sent. `k` = 2 (the default)
//! wastes at most half of what is sent on refusals; a lower `k` is stricter.
//!
//! An answer is "not accepted" when its [`Classification`](crate::Classification)
//! says `overload`: a 503 or 429 through the HTTP crate, or an `Overloaded` or
//! `BulkheadFull` error from a layer below. Every other answer, failures included, was
//! accepted (the upstream took the call). A call refused by a layer below for its own
//! reasons (an open breaker) or dropped before its answer is not counted at all.
//!
//! The window is a ring of ten buckets over `window` (default 60 s). Keep one window
//! per upstream with [`ThrottleLayer::with_partition`] (per host, say): keys are
//! bounded by [`KeyedConfig`](crate::keyed::KeyedConfig). Observe-only mode counts
//! what it would refuse and sends everything.
//!
//! # When to use it, and when not
//!
//! In a client stack, below retry and above the balancer (retries then count as
//! requests, and a throttled attempt is a cheap local refusal the retry budget sees).
//! It answers an upstream's explicit overload signals; for an upstream that is
//! simply slow or down, a timeout and a breaker are the tools. It is probabilistic and
//! per client: many clients together still send about `k` times the upstream's
//! capacity.
//!
//! # Cost
//!
//! One clock read per call when the request carries no
//! [`Deadline`](crate::Deadline) (none when it does: its start instant picks the
//! bucket), two short locks on the call's window (at the call and at the answer), a
//! random draw only when the probability is above zero, and no allocation. A disabled
//! layer (built from `None`) is a pass-through of the same type.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use buttress::rejection::{OverloadReason, Overloaded};
//! use buttress::throttle::{ThrottleConfig, ThrottleLayer};
//! use tower::{Service, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! // An upstream that refuses everything for overload.
//! let upstream = service_fn(|_: u32| async {
//!     Err::<u32, _>(Overloaded::new(OverloadReason::Shed, Duration::from_secs(1)))
//! });
//! let layer = ThrottleLayer::new(ThrottleConfig::new(2.0).with_seed(7));
//! let handle = layer.handle().expect("enabled");
//! let mut svc = tower::ServiceBuilder::new().layer(layer).service(upstream);
//! for i in 0..100 {
//!     let _ = svc.ready().await.unwrap().call(i).await;
//! }
//! let snap = handle.snapshot();
//! // Most calls never left the client.
//! assert!(snap.throttled > 50, "{snap:?}");
//! # }
//! ```

mod config;
pub mod error;
pub mod future;
mod layer;
mod service;
mod state;
mod window;

#[cfg(test)]
mod tests;

use std::fmt;
use std::sync::Arc;

pub use config::ThrottleConfig;
pub use layer::ThrottleLayer;
pub use service::Throttle;

use state::Shared;

/// What a throttle layer looks like at one instant.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct ThrottleSnapshot {
    /// Calls seen so far (sent or refused).
    pub requests: u64,
    /// Calls refused locally so far.
    pub throttled: u64,
    /// Calls an observe-only layer would have refused, so far.
    pub observed: u64,
    /// Answers that signalled overload, so far.
    pub overload_answers: u64,
    /// Keys with a window of their own.
    pub keys: usize,
    /// Requests in the unkeyed window now.
    pub window_requests: u64,
    /// Accepts in the unkeyed window now.
    pub window_accepts: u64,
    /// The unkeyed window's current rejection probability.
    pub rejection_probability: f64,
}

/// The handle to a throttle layer: its counts and reconfiguration.
#[derive(Clone)]
pub struct ThrottleHandle {
    shared: Arc<Shared>,
}

impl ThrottleHandle {
    fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    /// Counts so far, and the unkeyed window now.
    pub fn snapshot(&self) -> ThrottleSnapshot {
        self.shared.snapshot()
    }

    /// Applies new settings. `k`, `max_rejection`, the mode and the retry delay apply
    /// at once and the windows keep their counts; a changed `window` empties each
    /// window at its next use. The key bounds and the seed are fixed at construction.
    pub fn reconfigure(&self, config: ThrottleConfig) {
        self.shared.reconfigure(config);
    }
}

impl fmt::Debug for ThrottleHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ThrottleHandle").field(&self.shared).finish()
    }
}
