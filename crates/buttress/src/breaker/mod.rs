//! Circuit breaker: stop calling a callee that keeps failing, give it time to recover,
//! and let a few probes find out when it has.
//!
//! A failing dependency costs its callers twice: each call waits for a failure (often a
//! timeout), and the retries pile load onto a service that is already down. A
//! [`Breaker`] watches the classified outcomes of recent calls and, when too many fail
//! (or are too slow), *opens*: calls are refused at once with
//! [`CircuitOpen`](error::CircuitOpen), which carries the time left until the breaker
//! lets probes through (so HTTP can send `Retry-After`). After the open time it turns
//! *half-open* and lets exactly `half_open_probes` probe calls through; when they have
//! all finished it closes if their failure rate is under the threshold, or opens again
//! for longer.
//!
//! Use it on the client side of a call to a dependency that can fail as a whole (a
//! host, a replica, a downstream service), below retry so retries see the refusal and
//! go elsewhere, and keyed by endpoint under a balancer. Do not use it to shed load on
//! a server (that is the load shedder's job), nor in front of calls whose failures say
//! nothing about the callee's health (classify those as ignored instead).
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use buttress::breaker::{BreakerConfig, BreakerLayer, BreakerState, Window, error::CircuitOpen};
//! use tower::{Service, ServiceExt, ServiceBuilder, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() {
//! let layer = BreakerLayer::new(
//!     BreakerConfig::default()
//!         .with_window(Window::Calls(10))
//!         .with_minimum_calls(4)
//!         .with_failure_rate(0.5)
//!         .with_open_for(Duration::from_secs(5), Duration::from_secs(60))
//!         .with_jitter(0.0),
//! );
//! let handle = layer.handle();
//! let mut svc = ServiceBuilder::new()
//!     .layer(layer)
//!     .service(service_fn(|fail: bool| async move {
//!         if fail { Err::<(), tower::BoxError>("upstream failed".into()) } else { Ok(()) }
//!     }));
//! for _ in 0..4 {
//!     let _ = svc.ready().await.unwrap().call(true).await;
//! }
//! assert_eq!(handle.state(), BreakerState::Open);
//! let err = svc.ready().await.unwrap().call(false).await.unwrap_err();
//! assert_eq!(err.downcast_ref::<CircuitOpen>().unwrap().retry_after(), Duration::from_secs(5));
//!
//! // After the open time it turns half-open: three probes (the default) go through,
//! // and once they have all passed it closes.
//! tokio::time::advance(Duration::from_secs(5)).await;
//! for _ in 0..3 {
//!     svc.ready().await.unwrap().call(false).await.unwrap();
//! }
//! assert_eq!(handle.state(), BreakerState::Closed);
//! # }
//! ```
//!
//! # Windows
//!
//! Rates are computed over a window that really slides, at O(1) cost per call however
//! many calls it holds:
//!
//! - `window = { calls = N }`: the last N completed calls, a ring. With a window of 10
//!   and a 50% threshold, 5 failures open the breaker after 10,000 successes.
//! - `window = { duration = "30s" }`: the calls completed in the last 30 s, kept in
//!   [`TIME_BUCKETS`] buckets (the window slides one bucket, 3 s here, at a time).
//!
//! # When it trips
//!
//! When the window holds at least `minimum_calls` calls (capped at the size of a count
//! window) and the failure rate reaches `failure_rate` or, with `slow_call` set, the
//! slow-call rate reaches `slow_call.rate`; or, with `consecutive_failures` set, after
//! that many failures in a row. A slow call is one that took at least
//! `slow_call.after`, success or failure.
//!
//! Outcomes come from the classifier ([`Classify`](crate::Classify); the default counts
//! errors as failures except buttress rejections from inner layers). Ignored outcomes
//! (a local [`BulkheadFull`](crate::rejection::BulkheadFull), a 429 classified as
//! ignored) and calls whose future was dropped are not counted; nor are calls let in
//! before the latest transition (their results arrive too late to mean anything about
//! the new state).
//!
//! # Open time
//!
//! `open_for` after a trip from closed; each trip straight from half-open doubles it
//! up to `max_open_for`; a clean close starts over. With `jitter` set to a factor `j`,
//! each open time is drawn from `[(1 - j) * t, t]` (so `max_open_for` stays a true
//! maximum), from a seedable random source ([`BreakerBuilder::rng`]). With `jitter`
//! 0 and `max_open_for = open_for` the open time is exact.
//!
//! # Half-open
//!
//! Exactly `half_open_probes` probes go through, reserved across every clone and
//! service sharing the breaker; other calls get [`CircuitOpen`](error::CircuitOpen)
//! with zero time left. A probe slot lives in the probe's response future: dropping
//! the future frees the slot (the probe is not counted), and so does an ignored
//! outcome.
//!
//! # Modes
//!
//! - [`BreakerMode::Reject`] (default): an open breaker answers in the response
//!   future without calling the inner service; `poll_ready` is the inner service's.
//! - [`BreakerMode::Gate`]: an open breaker makes `poll_ready` pending and wakes the
//!   task when it turns half-open; half-open, `poll_ready` reserves a probe slot for
//!   the next call (and stays pending while none is free). Give each endpoint of a
//!   `tower::balance` pool its own gate-mode breaker and the pool routes around the
//!   ones that are open: outlier ejection.
//! - [`BreakerMode::Observe`]: the breaker computes and reports everything (state,
//!   transitions, would-be rejections in metrics and at `debug` under target
//!   `buttress::observe`) but lets every call through; calls it would have refused are
//!   not counted, so its transitions are the ones it would make in earnest.
//!
//! The [`BreakerHandle`] can also force a breaker open, disable it (always closed,
//! counting nothing) and reset it.
//!
//! # Keys
//!
//! [`BreakerBuilder::partition`] gives one breaker per key (host, route, endpoint) in
//! the shared bounded [`KeyedMap`](crate::keyed::KeyedMap); an open or half-open
//! breaker is never evicted, so a flood of new keys cannot reset it. Keyed breakers
//! reject (gate mode needs the request, which `poll_ready` does not see).
//!
//! # Configuration and turning it off
//!
//! [`BreakerConfig`] holds the knobs under their configuration names, with the
//! defaults (and the peers they follow) listed on its `Default` impl;
//! [`BreakerConfig::validate`] names any knob it would have to clamp.
//! [`BreakerLayer::from_config`]`(None)` is a pass-through of the same type, so a
//! stack built from a policy has one type whether the breaker is on or off.
//!
//! # Cost and clock reads
//!
//! Closed, a call costs an atomic load, an `Arc` clone and, when it completes, a short
//! critical section to update the window; no allocation. Clock reads per call:
//!
//! | configuration | clock reads |
//! |---|---|
//! | count window | 0 |
//! | time window | 1 (at completion) |
//! | slow-call detection, request carrying a [`Deadline`](crate::Deadline), first attempt | 1 (at completion; the start is the deadline's [`started`](crate::Deadline::started)) |
//! | slow-call detection otherwise | 2 (in `call` and at completion) |
//! | keyed breaker | 1 more (the map's idle tracking) |
//!
//! An open breaker reads the clock to see whether its time has passed.
//!
//! # Telemetry
//!
//! `tracing` events under target `buttress::breaker` on each transition (`warn` when
//! it opens, `info` when it closes, `debug` when it turns half-open); metrics in
//! `docs/metrics.md` (state gauge, calls by outcome, slow calls, rejections,
//! transitions).

mod circuit;
mod config;
pub mod error;
pub mod future;
mod handle;
mod layer;
mod metrics;
mod service;
mod shared;
mod state;
mod window;

#[cfg(test)]
mod tests;

pub use config::{
    BreakerConfig, BreakerMode, DEFAULT_JITTER, MAX_WINDOW_CALLS, SlowCall, TIME_BUCKETS, Window,
};
pub use handle::{BreakerHandle, BreakerSnapshot};
pub use layer::{BreakerBuilder, BreakerLayer};
pub use service::Breaker;
pub use state::{BreakerState, Transition};
