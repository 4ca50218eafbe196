//! Composable [Tower] middleware that keeps services answering through transient
//! faults.
//!
//! Every layer wraps any [`tower_service::Service`]. The always-compiled core holds
//! what the layers share:
//!
//! - [`classify`]: one per-request classifier whose [`Classification`] every layer
//!   reads (breaker failure or not, retryable or not, delay hint, overload);
//! - [`rejection`]: the errors buttress layers answer with, and the [`Rejection`]
//!   summary found anywhere in an error's source chain;
//! - [`deadline`]: the [`Deadline`] a request carries through the stack;
//! - [`replay`]: how retry and hedge make another copy of a request;
//! - [`keyed`]: the bounded map that gives one partition of state per key;
//! - [`backoff`], [`budget`] and [`rand`]: delays, the shared retry budget and a
//!   seedable random source;
//! - [`Mode`]: enforce or observe-only, for every layer that can reject;
//! - [`hold`]: whether a layer's permit is released at the response head or kept
//!   with the response (a streamed HTTP body) until it is dropped;
//! - `Policy` (feature `policy`): one plain value describing a whole stack in the
//!   canonical order.
//!
//! Each pattern lives in its own module behind a cargo feature of the same name:
//! `timeout`, `retry`, `hedge`, `throttle`, `breaker`, `bulkhead`, `shed`,
//! `reconnect` and `chaos` (all on by default, with `policy`); `metrics` exports
//! counters and gauges through the `metrics` facade and `serde` makes every config
//! (de)serializable. The [`guide`] explains the shared concepts and the canonical
//! stack order.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use buttress::Policy;
//! use tower::{Service, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower::BoxError> {
//! let policy = Policy::default()
//!     .with_timeout(Duration::from_secs(2))
//!     .with_attempt_timeout(Duration::from_millis(500));
//! let mut svc = tower::ServiceBuilder::new()
//!     .layer(policy.client_layer())
//!     .service(service_fn(|req: u64| async move { Ok::<_, tower::BoxError>(req * 2) }));
//! assert_eq!(svc.ready().await?.call(21).await?, 42);
//! # Ok(())
//! # }
//! ```
//!
//! [Tower]: https://docs.rs/tower
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod backoff;
pub mod budget;
pub mod classify;
pub mod deadline;
pub mod duration;
pub mod hold;
pub mod keyed;
mod mode;
#[cfg(feature = "policy")]
pub mod policy;
pub mod rand;
pub mod rejection;
pub mod replay;
pub(crate) mod telemetry;
mod util;

#[cfg(feature = "breaker")]
pub mod breaker;
#[cfg(feature = "bulkhead")]
pub mod bulkhead;
#[cfg(feature = "chaos")]
pub mod chaos;
#[cfg(feature = "hedge")]
pub mod hedge;
#[cfg(feature = "reconnect")]
pub mod reconnect;
#[cfg(feature = "retry")]
pub mod retry;
#[cfg(feature = "shed")]
pub mod shed;
#[cfg(feature = "throttle")]
pub mod throttle;
#[cfg(feature = "timeout")]
pub mod timeout;

pub use classify::{Classification, Classifier, Classify, Origin, RetryClass, Verdict};
pub use deadline::{Attempt, Deadline, Priority, RequestMeta, WithDeadline};
pub use hold::{HoldResponse, ReleaseAtHead};
pub use mode::Mode;
#[cfg(feature = "policy")]
pub use policy::Policy;
pub use rejection::{Rejection, RejectionKind};
pub use replay::Replay;

/// The boxed error every buttress layer returns, as in tower.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The guide to buttress's shared concepts (`docs/guide.md`).
#[doc = include_str!("../../../docs/guide.md")]
pub mod guide {}
