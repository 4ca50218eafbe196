//! Retry with backoff, a shared retry budget and deadline awareness.
//!
//! A transient fault (a server that died behind a load balancer, a record not yet in a
//! cache, a lock held by a contender, a deploying server answering 503) usually clears
//! on a second try. [`Retry`] sends a request again when its classifier says the
//! outcome is retryable, and only when that can help without hurting:
//!
//! - **Replayable requests only.** A [`Replay`](crate::Replay) strategy makes the copy
//!   ([`CloneReplay`](crate::replay::CloneReplay) by default; the HTTP crate's replays
//!   buffered bodies). A request it cannot replay is sent once. The first attempt
//!   sends a copy and the caller's request is kept; each retry's copy is made from it
//!   when the retry is sent, not before, so a request that stops being replayable
//!   while an attempt streams it (an HTTP body past its buffering cap) is not retried.
//! - **Retryable outcomes only**, as the [`Classify`](crate::Classify) strategy says:
//!   [`RetryClass::IfSafe`](crate::RetryClass) outcomes are retried only for requests
//!   the classifier calls safe, `Always` outcomes (nothing was sent) for any.
//! - **`max_attempts`** counts every attempt, the first included.
//! - **Backoff** between attempts ([`Backoff`](crate::backoff::Backoff): constant,
//!   exponential, full or decorrelated jitter, capped).
//! - **A shared budget.** Every original request deposits into a
//!   [`Budget`](crate::budget::Budget) shared by every service the layer makes; every
//!   retry withdraws a token. When the budget says no, the last outcome is returned.
//!   A hedge layer can draw on the same budget ([`RetryLayer::budget`]).
//! - **Server delay hints** (`Retry-After`, gRPC pushback, an `Overloaded`'s delay)
//!   come through the classifier: a hint above `retry_after_cap` means no retry;
//!   otherwise the retry waits for the larger of the backoff and the hint, unless the
//!   [`Alternatives`] hook (filled in by a balancer) says another endpoint can take it.
//! - **Deadlines.** With a carried [`Deadline`](crate::Deadline), the layer never
//!   sleeps, nor starts an attempt, that cannot finish in time: it gives up when the
//!   time left is under the next delay plus the expected attempt time (the running
//!   median of attempt durations, capped by the attempt timeout given with
//!   [`RetryLayer::with_attempt_timeout`]).
//! - **Readiness.** When a retry is due and the inner service is not ready, the retry
//!   is shed (the last outcome returned) rather than queued: not-ready is
//!   backpressure, and a retry is extra load by definition (linkerd does the same).
//! - **One tier retries.** When the layer gives up on a retryable outcome, it returns
//!   the last real answer marked do-not-retry: an error is wrapped in
//!   [`DoNotRetry`](error::DoNotRetry) (source = the original), a response is marked
//!   by [`Classify::mark_gave_up`](crate::Classify::mark_gave_up) (the HTTP crate
//!   adds a header). Classifiers honour the mark, so a chain of tiers retries at one
//!   tier only instead of multiplying attempts.
//! - **The attempt number** is set on each attempt's request
//!   ([`RequestMeta::set_attempt`](crate::RequestMeta::set_attempt)).
//!
//! Each attempt runs in a `tracing` span `attempt` (target `buttress::retry`, level
//! DEBUG, field `attempt`); metrics are listed in `docs/metrics.md`.
//!
//! # Cost
//!
//! A call whose first attempt succeeds costs what tower's `Retry` with a `TpsBudget`
//! costs (within a few percent in `benches/benches/retry.rs`): one clock read and one
//! short uncontended lock for the budget deposit, a copy of the request made up front
//! (as tower's `clone_request`; the copy is sent, the caller's request kept), a clone of the inner service, and no heap allocation.
//! When the request carries a deadline, a second clock read at the attempt's end feeds
//! the attempt-time estimate (the start is read fresh rather than taken from
//! [`Deadline::started`](crate::Deadline::started), which for a deadline inherited from
//! an inbound request can be long before this attempt). A call that retries allocates
//! once, on its first retry (the backoff sequence, the timer and the outcome kept in
//! case the retry cannot go out).
//!
//! # When to use it, and when not
//!
//! Use it on clients, above the breaker, bulkhead and attempt timeout (see the
//! canonical order in the [guide](crate::guide)), for idempotent requests. Do not
//! retry at every tier of a call chain: the do-not-retry mark limits the damage, but
//! one retrying tier (usually the outermost client) is the design. A layer built from
//! `None` passes calls through untouched; with `max_attempts` 1 it sends every request
//! once but still counts requests into its budget (for a hedge layer sharing it).
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use std::sync::atomic::{AtomicU32, Ordering};
//! use std::time::Duration;
//! use buttress::backoff::Backoff;
//! use buttress::retry::{RetryConfig, RetryLayer};
//! use tower::{BoxError, ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), BoxError> {
//! // A flaky service: fails twice, then answers.
//! let calls = Arc::new(AtomicU32::new(0));
//! let flaky = {
//!     let calls = calls.clone();
//!     service_fn(move |req: u32| {
//!         let n = calls.fetch_add(1, Ordering::SeqCst);
//!         async move {
//!             if n < 2 { Err::<u32, BoxError>("connection reset".into()) } else { Ok(req * 2) }
//!         }
//!     })
//! };
//! let layer = RetryLayer::new(RetryConfig {
//!     max_attempts: 3,
//!     backoff: Backoff::constant(Duration::from_millis(10)),
//!     ..Default::default()
//! });
//! let svc = ServiceBuilder::new().layer(layer.clone()).service(flaky);
//! assert_eq!(svc.oneshot(21).await?, 42);
//! assert_eq!(calls.load(Ordering::SeqCst), 3);
//! assert_eq!(layer.handle().unwrap().snapshot().retries, 2);
//! # Ok(())
//! # }
//! ```

mod alternatives;
pub mod error;
mod estimate;
pub mod future;
mod layer;
mod service;
mod state;

pub use alternatives::{Alternatives, NoAlternatives};
pub use layer::RetryLayer;
pub use service::Retry;
pub use state::{RetryConfig, RetryHandle, RetrySnapshot};

#[cfg(test)]
mod tests;
