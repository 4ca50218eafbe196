//! Hedged requests: when an answer is slow in coming, send another copy and take
//! whichever answers first.
//!
//! Tail latency often comes from one slow replica, a GC pause or a lost packet rather
//! than from the request itself; a second copy sent a little later usually overtakes
//! the first. [`Hedge`] waits `delay` for an answer, then sends another copy of the
//! request, up to `max_extra` extra copies (each `delay` after the previous one):
//!
//! - **The delay** is fixed, or a percentile of a rolling latency histogram once it
//!   holds `min_samples` (before that, a fallback delay or no hedging). At p95 about
//!   one call in twenty gets a hedge.
//! - **The first success wins** (as the [`Classify`](crate::Classify) strategy judges:
//!   a [`Verdict::Success`](crate::Verdict)); the other copies are dropped, which
//!   cancels them. A failure from one copy waits for the copies still running; when
//!   every copy has failed, the last failure is returned.
//! - **Only replayable, safe requests** are hedged: the [`Replay`](crate::Replay)
//!   strategy makes the copies and the classifier must call the request safe. The
//!   primary is sent as a copy and the caller's request kept; each extra copy is made
//!   from it when that copy is sent, so a request that stops being replayable while
//!   the primary streams it (an HTTP body past its buffering cap) is not hedged.
//! - **A budget.** Every extra copy withdraws a token from a
//!   [`Budget`](crate::budget::Budget): the layer's own (into which every call
//!   deposits), or, with [`HedgeLayer::with_budget`], the budget of a retry layer
//!   above, so retries and hedges together stay within one ratio of the traffic.
//! - **Deadlines.** No copy is sent that could not finish before the request's
//!   carried deadline (the median latency is the expected copy time).
//! - **Readiness.** A copy is not sent when the inner service is not ready: that is
//!   backpressure, and a copy is extra load.
//! - Copies carry attempt numbers following the original's.
//!
//! Metrics (`docs/metrics.md`): copies sent, copies that won, copies the budget
//! refused.
//!
//! # Cost
//!
//! A call answered before the delay costs a copy of the request and a clone of the
//! inner service, and no timer: the timer is made on the first pending poll. With a
//! fixed delay and no deadline it reads no clock at all (one read for its own budget's
//! deposit unless the request carries a deadline); a percentile delay, or a deadline,
//! adds two clock reads and a short lock to record the latency. Extra copies are boxed
//! (one allocation per copy sent, never on a call that is not hedged).
//!
//! # When to use it, and when not
//!
//! Use it for idempotent reads with a long latency tail against replicated backends.
//! Do not hedge writes, nor calls to a saturated backend (the budget and the
//! readiness check limit the damage, but hedging adds load by design). Put it below
//! retry, sharing retry's budget. A layer built from `None` (or with `max_extra` 0)
//! passes calls through.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicU32, Ordering};
//! use std::time::Duration;
//! use buttress::hedge::{HedgeConfig, HedgeLayer};
//! use tower::{BoxError, ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), BoxError> {
//! // The first replica to answer is stuck for a second; the next answers at once.
//! let calls = Arc::new(AtomicU32::new(0));
//! let replicas = {
//!     let calls = calls.clone();
//!     service_fn(move |req: u32| {
//!         let n = calls.fetch_add(1, Ordering::SeqCst);
//!         async move {
//!             if n == 0 {
//!                 tokio::time::sleep(Duration::from_secs(1)).await;
//!             }
//!             Ok::<_, BoxError>(format!("answer {req} from copy {n}"))
//!         }
//!     })
//! };
//! let layer = HedgeLayer::new(HedgeConfig::fixed(Duration::from_millis(50), 1));
//! let svc = ServiceBuilder::new().layer(layer.clone()).service(replicas);
//! let start = tokio::time::Instant::now();
//! assert_eq!(svc.oneshot(7).await?, "answer 7 from copy 1");
//! assert_eq!(start.elapsed(), Duration::from_millis(50));
//! assert_eq!(layer.handle().unwrap().snapshot().won, 1);
//! # Ok(())
//! # }
//! ```

pub mod future;
mod histogram;
mod layer;
mod service;
mod state;

pub use layer::HedgeLayer;
pub use service::Hedge;
pub use state::{HedgeConfig, HedgeDelay, HedgeHandle, HedgeSnapshot, PercentileDelay};

#[cfg(test)]
mod tests;
