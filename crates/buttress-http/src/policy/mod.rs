//! `HttpPolicy`: one value describing a whole HTTP stack, client or server.
//!
//! [`buttress::Policy`] holds the generic settings of every layer (timeouts, retry,
//! hedge, breaker, bulkhead, shed, chaos) and builds the canonical stacks for any
//! request type. [`HttpPolicy`] adds what HTTP needs on top, and builds the canonical
//! stacks for `http::Request`s with the HTTP classifier and replayable bodies:
//!
//! | setting | config name | default | used by |
//! |---|---|---|---|
//! | statuses retried besides 408, 429, 502, 503, 504 | `retry_on` | none | client |
//! | which requests may be sent twice | `retry_safety` | idempotent methods and `Idempotency-Key` | client |
//! | request body kept for replays, in bytes | `replay_cap` | 64 KiB | client |
//! | deadline and attempt headers written | `deadline_out` | `buttress-timeout-ms`, 5 ms offset, `buttress-attempt` | client |
//! | deadline headers read | `deadline_in` | `grpc-timeout` and `buttress-timeout-ms`, at most 5 min | server |
//! | rejections as answers | `rejection` | 503 + `Retry-After`, 504 for timeouts | server |
//! | priority header for the shed layer | `priority` | `buttress-priority`, up to `critical` | server |
//! | the request context (middle tiers) | `context` | on | both |
//!
//! `deadline_out`, `deadline_in` and `priority` can be turned off (`false` in a config
//! file, `None` in code); `context = false` drops both the server's context scope and
//! the client's inheritance of it. Every setting off still gives a stack of the same
//! type.
//!
//! # The stacks
//!
//! [`HttpPolicy::client_layer`], outermost first:
//! [`InheritContext`](crate::deadline::InheritContext) ->
//! [`BufferRequestBody`](crate::replay::BufferRequestBody) -> the policy's client
//! stack ([`Policy::client_layer_with`] with [`HttpClassify`], [`HttpReplay`](crate::replay::HttpReplay) and a
//! breaker and bulkhead per authority: total timeout -> retry -> hedge -> breaker ->
//! bulkhead -> attempt timeout -> chaos) ->
//! [`DeadlineToHeaders`](crate::deadline::DeadlineToHeaders) -> your transport (a
//! hyper-util client, reqwest wrapped as a service, a tonic channel).
//!
//! [`HttpPolicy::server_layer`], outermost first:
//! [`RejectionResponse`](crate::rejection::RejectionResponse) ->
//! [`HoldBody`](crate::body::HoldBody) ->
//! [`DeadlineFromHeaders`](crate::deadline::DeadlineFromHeaders) ->
//! [`PriorityFromHeader`](crate::priority::PriorityFromHeader) -> the policy's server
//! stack ([`Policy::server_layer_with`] with [`HttpClassify`]: shed -> bulkhead ->
//! timeout -> chaos) -> [`ContextScope`](crate::context::ContextScope) -> your handler.
//! Its error type is `Infallible`, so it goes straight into axum's `Router::layer`.
//!
//! Each call to `client_layer` or `server_layer` creates new state (budgets, breaker
//! windows, limits): build the layer once and clone it (clones share the state), and
//! build one per policy when routes or hosts need separate state.
//!
//! # Config files
//!
//! With the `serde` feature, an `HttpPolicy` reads the generic policy's keys and its
//! own side by side (the generic part is `#[serde(flatten)]`ed); unknown keys are
//! errors, at the top level and in every table:
//!
//! ```toml
//! timeout = "2s"
//! attempt_timeout = "500ms"
//! retry = { max_attempts = 3 }
//! retry_on = [409]
//! replay_cap = 1048576
//! deadline_out = { offset = "10ms" }
//! priority = false
//! ```
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use buttress::Policy;
//! use buttress::retry::RetryConfig;
//! use buttress_http::HttpPolicy;
//! use http::{Request, Response, StatusCode};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread", start_paused = true)]
//! # async fn main() -> Result<(), tower::BoxError> {
//! let policy = HttpPolicy::new(
//!     Policy::default()
//!         .with_timeout(Duration::from_secs(2))
//!         .with_retry(RetryConfig::default()),
//! );
//! // A transport that fails the first attempt with 503.
//! let calls = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
//! let transport = service_fn(move |req: Request<_>| {
//!     let n = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
//!     async move {
//!         let status = if n == 0 { StatusCode::SERVICE_UNAVAILABLE } else { StatusCode::OK };
//!         let attempt = req.headers()["buttress-attempt"].to_str()?.to_owned();
//!         Ok::<_, tower::BoxError>(Response::builder().status(status).body(attempt)?)
//!     }
//! });
//! let client = ServiceBuilder::new().layer(policy.client_layer()).service(transport);
//!
//! let res = client.oneshot(Request::get("http://inventory.internal/items/7").body(String::new())?).await?;
//! assert_eq!(res.status(), StatusCode::OK);
//! assert_eq!(res.body(), "2"); // the second attempt
//! # Ok(())
//! # }
//! ```

mod client;
mod server;

use buttress::Policy;
use http::StatusCode;

pub use client::{HttpClient, HttpClientLayer};
pub use server::{HttpServer, HttpServerLayer};

use crate::classify::{ClassifyConfig, HttpClassify, RetrySafety};
use crate::deadline::{InboundDeadlineConfig, OutboundDeadlineConfig};
use crate::priority::PriorityConfig;
use crate::rejection::RejectionConfig;
use crate::replay::DEFAULT_CAP;

/// The HTTP settings on top of a [`Policy`]; see the [module docs](self).
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
#[non_exhaustive]
pub struct HttpPolicy {
    /// The generic settings of every layer.
    #[cfg_attr(feature = "serde", serde(flatten))]
    pub policy: Policy,
    /// Statuses retried besides 408, 429, 502, 503 and 504 (4xx and 5xx only).
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Vec::is_empty"))]
    pub retry_on: Vec<u16>,
    /// Which requests may be retried or hedged.
    pub retry_safety: RetrySafety,
    /// Bytes of each request body kept so the request can be replayed (client); past
    /// it the request is sent once. 0 replays empty bodies only.
    pub replay_cap: usize,
    /// Where the client writes the time left and the attempt number (`None`: not
    /// written).
    #[cfg_attr(feature = "serde", serde(with = "crate::serde_util::switch"))]
    pub deadline_out: Option<OutboundDeadlineConfig>,
    /// Where the server reads the caller's deadline (`None`: not read).
    #[cfg_attr(feature = "serde", serde(with = "crate::serde_util::switch"))]
    pub deadline_in: Option<InboundDeadlineConfig>,
    /// How the server answers rejections.
    pub rejection: RejectionConfig,
    /// Where the server reads a request's priority (`None`: not read).
    #[cfg_attr(feature = "serde", serde(with = "crate::serde_util::switch"))]
    pub priority: Option<PriorityConfig>,
    /// Whether the server scopes a request context over the handler and the client
    /// inherits it (the inbound deadline, the gave-up mark).
    pub context: bool,
}

impl Default for HttpPolicy {
    fn default() -> Self {
        Self::new(Policy::default())
    }
}

impl From<Policy> for HttpPolicy {
    fn from(policy: Policy) -> Self {
        Self::new(policy)
    }
}

impl HttpPolicy {
    /// `policy` with the HTTP defaults (see the [module docs](self)).
    pub fn new(policy: Policy) -> Self {
        Self {
            policy,
            retry_on: Vec::new(),
            retry_safety: RetrySafety::new(),
            replay_cap: DEFAULT_CAP,
            deadline_out: Some(OutboundDeadlineConfig::default()),
            deadline_in: Some(InboundDeadlineConfig::default()),
            rejection: RejectionConfig::default(),
            priority: Some(PriorityConfig::default()),
            context: true,
        }
    }

    /// Also retries `statuses` (4xx and 5xx only).
    #[must_use]
    pub fn with_retry_on(mut self, statuses: impl IntoIterator<Item = StatusCode>) -> Self {
        self.retry_on
            .extend(statuses.into_iter().map(|s| s.as_u16()));
        self
    }

    /// Sets which requests may be retried or hedged.
    #[must_use]
    pub fn with_retry_safety(mut self, safety: RetrySafety) -> Self {
        self.retry_safety = safety;
        self
    }

    /// Sets how many bytes of each request body are kept for replays.
    #[must_use]
    pub fn with_replay_cap(mut self, cap: usize) -> Self {
        self.replay_cap = cap;
        self
    }

    /// Sets (or, with `None`, turns off) the deadline and attempt headers a client
    /// writes.
    #[must_use]
    pub fn with_deadline_out(mut self, config: Option<OutboundDeadlineConfig>) -> Self {
        self.deadline_out = config;
        self
    }

    /// Sets (or, with `None`, turns off) the deadline headers a server reads.
    #[must_use]
    pub fn with_deadline_in(mut self, config: Option<InboundDeadlineConfig>) -> Self {
        self.deadline_in = config;
        self
    }

    /// Sets how a server answers rejections.
    #[must_use]
    pub fn with_rejection(mut self, config: RejectionConfig) -> Self {
        self.rejection = config;
        self
    }

    /// Sets (or, with `None`, turns off) the priority header a server reads.
    #[must_use]
    pub fn with_priority(mut self, config: Option<PriorityConfig>) -> Self {
        self.priority = config;
        self
    }

    /// Turns the request context on or off.
    #[must_use]
    pub fn with_context(mut self, on: bool) -> Self {
        self.context = on;
        self
    }

    /// The classifier these settings describe.
    pub fn classify(&self) -> HttpClassify {
        HttpClassify::from_config(&ClassifyConfig {
            retry_on: self.retry_on.clone(),
            safety: self.retry_safety,
        })
    }

    /// Builds the canonical HTTP client stack, creating the state of its stateful
    /// layers; see the [module docs](self).
    pub fn client_layer(&self) -> HttpClientLayer {
        HttpClientLayer::new(self)
    }

    /// Builds the canonical HTTP server stack, creating the state of its stateful
    /// layers; see the [module docs](self).
    pub fn server_layer(&self) -> HttpServerLayer {
        HttpServerLayer::new(self)
    }
}

#[cfg(test)]
mod tests;
