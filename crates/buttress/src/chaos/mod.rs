//! Fault injection: latency, errors and aborts, each with a probability,
//! reproducible for a seed and switchable at run time.
//!
//! A resilience stack that has never met a fault is untested. [`Chaos`] makes the
//! faults the other layers exist for, where they would really happen:
//!
//! - an **error** answers the call without calling the inner service (nothing was
//!   sent): [`error::Injected`] by default, or whatever a [`Fault`] returns — a 503
//!   response, a `RESOURCE_EXHAUSTED` status, your client's own connect error;
//! - an **abort** sends the request, polls the inner future once and drops it, then
//!   fails with [`error::Aborted`]: a connection reset mid-request, after which the
//!   callee may or may not have done the work (this is what makes retrying unsafe
//!   requests dangerous, and what tests of idempotency want);
//! - **latency** holds a call back by a delay drawn uniformly from a range before
//!   the inner service's future is polled (see [`Chaos`] for exactly when the
//!   inner service is called).
//!
//! One draw per call decides between error (`error_rate`), abort (`abort_rate`) and
//! neither, so both rates are fractions of all calls; a call that is neither is
//! delayed with the latency's `probability`. Probabilities are turned into integer
//! thresholds when the layer is configured: a call costs one or two random draws and
//! comparisons, no float work, no allocation and no clock read unless it is
//! delayed. A switched-off layer costs one atomic load per call.
//!
//! Both errors look like upstream failures to
//! [`Classification::from_error`](crate::Classification::from_error): breaker
//! failures, retried if the request is safe to repeat.
//!
//! # Where it goes
//!
//! Innermost, so every other layer sees its faults as it would real ones: in a client
//! stack just above the transport (below the attempt timeout, retry and breaker); in
//! a server stack between the timeout and the handler. That is where a `Policy`
//! puts it.
//!
//! # When to use it, and when not
//!
//! Use it in the tests of anything built on buttress, in the lab, and on game days:
//! deploy it switched off and turn it on through its [`ChaosHandle`] for a while.
//! It is not a model of a particular callee (write a mock service for that), and it
//! injects no faults below the service boundary (slow reads of a body, half-written
//! frames).
//!
//! # Determinism
//!
//! With [`ChaosConfig::seed`] set, the same calls in the same order get the same
//! decisions. Every service a [`ChaosLayer`] makes draws from the layer's one random
//! stream, so on a multi-threaded runtime the order of calls, and so which call gets
//! which decision, is the scheduler's; the rates hold either way. For a whole
//! simulation from one seed, give every layer the same [`Rng`](crate::rand::Rng)
//! with [`ChaosLayer::with_rng`].
//!
//! # Example
//!
//! ```
//! use buttress::chaos::{ChaosConfig, ChaosLayer, error::Injected, fault_fn};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let echo = service_fn(|req: u32| async move { Ok::<_, tower::BoxError>(req) });
//!
//! // Every call fails, and the callee never sees it.
//! let always = ChaosLayer::new(ChaosConfig::default().with_error_rate(1.0));
//! let err = ServiceBuilder::new().layer(always).service(echo).oneshot(1).await.unwrap_err();
//! assert!(err.is::<Injected>());
//!
//! // A fault can be an answer too: here, what a struggling callee says.
//! let busy = ChaosLayer::new(ChaosConfig::default().with_error_rate(1.0).with_seed(7))
//!     .with_fault(fault_fn(|| Ok(503)));
//! let answer = ServiceBuilder::new().layer(busy).service(echo).oneshot(1).await.unwrap();
//! assert_eq!(answer, 503);
//! # }
//! ```
//!
//! # Game days
//!
//! Ship the layer switched off, then let an operator turn faults on and off while
//! the team watches dashboards and alerts. From a configuration file (behind the
//! `serde` feature), `chaos = { enabled = false, error_rate = 0.05 }` does the same
//! as the first line below; a `latency` table takes `min`, `max` (`"250ms"`) and
//! `probability`.
//!
//! ```
//! use std::time::Duration;
//! use buttress::chaos::{ChaosConfig, ChaosLayer, LatencyConfig, error::Injected};
//! use tower::{Service, ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), tower::BoxError> {
//! // Deployed dark: wired in, injecting nothing.
//! let chaos = ChaosLayer::new(ChaosConfig::default().with_enabled(false));
//! let game_day = chaos.handle();
//! let mut orders = ServiceBuilder::new()
//!     .layer(chaos)
//!     .service(service_fn(|id: u32| async move { Ok::<_, tower::BoxError>(id) }));
//!
//! // 10:00: one call in five fails, the others take 50 to 250ms longer.
//! let slow = LatencyConfig::uniform(Duration::from_millis(50), Duration::from_millis(250));
//! game_day.reconfigure(ChaosConfig::default().with_error_rate(0.2).with_latency(slow));
//! let mut failed = 0;
//! for id in 0..100 {
//!     match orders.ready().await?.call(id).await {
//!         Ok(answer) => assert_eq!(answer, id),
//!         Err(e) if e.is::<Injected>() => failed += 1,
//!         Err(e) => return Err(e),
//!     }
//! }
//!
//! // 10:30: back to normal from the next call on.
//! game_day.disable();
//! let report = game_day.snapshot();
//! assert_eq!((report.calls, report.errors), (100, failed));
//! assert_eq!(report.delayed, 100 - failed);
//! let start = tokio::time::Instant::now();
//! assert_eq!(orders.ready().await?.call(7).await?, 7);
//! assert_eq!(start.elapsed(), Duration::ZERO);
//! # Ok(())
//! # }
//! ```

mod config;
mod decide;
pub mod error;
mod fault;
pub mod future;
mod layer;
mod service;
mod state;

pub use config::{ChaosConfig, LatencyConfig};
pub use fault::{Fault, FaultFn, InjectedFault, fault_fn};
pub use layer::ChaosLayer;
pub use service::Chaos;
pub use state::{ChaosHandle, ChaosSnapshot};

#[cfg(test)]
mod tests;
