//! Classifying HTTP and gRPC outcomes for every buttress layer.
//!
//! [`HttpClassify`] implements buttress's [`Classify`] for `http::Request<B>` /
//! `http::Response<B2>` stacks. It is made once, per policy; for each request it
//! makes an [`HttpClassifier`] that remembers whether the request is safe to repeat
//! and whether it is gRPC, then classifies that request's result.
//!
//! # Responses, by status
//!
//! | status | verdict | retry | overload | delay hint |
//! |---|---|---|---|---|
//! | 1xx, 2xx, 3xx | success | no | | |
//! | 408 | ignored | if safe | | `Retry-After` |
//! | 429 | ignored | if safe | yes | `Retry-After` |
//! | other 4xx | success (the caller's mistake) | no | | |
//! | 502, 504 | failure | if safe | | `Retry-After` |
//! | 503 | failure | if safe | yes | `Retry-After` |
//! | other 5xx | failure | no | | |
//!
//! The retryable statuses are a [`StatusSet`]: 408, 429, 502, 503 and 504, plus
//! whatever the policy adds with [`HttpClassify::retry_on`]. A 429 is retryable but
//! is no breaker failure: it says the caller is sending too much, not that the callee
//! is broken.
//!
//! # gRPC
//!
//! A gRPC answer (the request's or the response's `content-type` is
//! `application/grpc*`) with `grpc-status` in its head is a *trailers-only* answer and
//! is classified by that code ([`crate::grpc`] has the table: `UNAVAILABLE` and
//! `RESOURCE_EXHAUSTED` are retryable). A streamed gRPC answer (HTTP 200, no
//! `grpc-status` in the head) is a success at the head: its status arrives in the
//! trailers, when the caller already has the body and no retry is possible. The
//! end-of-body hook classifies it then: [`HttpClassifier::eos`] gives a [`GrpcEos`]
//! ([`ClassifyEos`]) that [`GuardBody`](crate::body::GuardBody) runs on the trailers
//! (see [`ClassifyAtEnd`](crate::body::ClassifyAtEnd)). A gRPC answer with another
//! HTTP status (a proxy's 503) is classified by its status.
//!
//! # Delay hints and the do-not-retry mark
//!
//! `Retry-After` (HTTP) and `grpc-retry-pushback-ms` (gRPC) become
//! [`Classification::delay_hint`], clamped to [`MAX_DELAY_HINT`](crate::hint::MAX_DELAY_HINT)
//! and never compared with a cap here: the retry layer compares it with its own
//! `retry_after_cap` and does not retry when it is above. The do-not-retry mark (a tier
//! below gave up after its own retries) is `buttress-retry: gave-up` on any answer or
//! a negative (or malformed) `grpc-retry-pushback-ms`; it sets
//! [`Classification::do_not_retry`], so a chain of services retries at one tier only.
//! [`Classify::mark_gave_up`] puts the mark on an answer a retry layer gives up on,
//! and sets the gave-up flag of the [request context](crate::context) in scope, so a
//! middle tier's own answer carries the mark too.
//!
//! # Bodies past their replay cap
//!
//! A request whose body went past its replay cap during the attempt (its
//! [`ReplayWatch`], put in the extensions by
//! [`BufferRequestBodyLayer`](crate::replay::BufferRequestBodyLayer), says *spent*)
//! is classified as not retryable whatever the answer: the copy a retry layer made
//! before the attempt cannot deliver the body any more.
//!
//! # Transport errors
//!
//! Errors are classified as [`Classification::from_error`] does (buttress rejections
//! are local and retryable, timeouts are failures, anything else is an upstream failure
//! retryable if safe), except that a connection that was never established
//! ([`is_connect_error`]) is retryable for every method ([`RetryClass::Always`]):
//! nothing was sent.
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use buttress::{Classifier, Classify, Verdict};
//! use http::{Request, Response, StatusCode};
//! use buttress_http::classify::HttpClassify;
//!
//! let classify = HttpClassify::new().retry_on([StatusCode::CONFLICT]);
//!
//! let get = Request::get("/items/7").body(()).unwrap();
//! let busy = Response::builder().status(429).header("retry-after", "2").body(()).unwrap();
//! let c = Classify::<_, Response<()>>::classify_request(&classify, &get).classify(Ok(&busy));
//! assert_eq!(c.verdict, Verdict::Ignored); // not a breaker failure
//! assert!(c.allows_retry(true) && c.overload);
//! assert_eq!(c.delay_hint, Some(Duration::from_secs(2)));
//!
//! // POST without an Idempotency-Key: a 503 is a failure, but not safe to retry.
//! let post = Request::post("/orders").body(()).unwrap();
//! let classifier = Classify::<_, Response<()>>::classify_request(&classify, &post);
//! assert!(!classifier.request_is_safe());
//! let unavailable = Response::builder().status(503).body(()).unwrap();
//! let safe = classifier.request_is_safe();
//! let c = classifier.classify(Ok(&unavailable));
//! assert_eq!(c.verdict, Verdict::Failure);
//! assert!(!c.allows_retry(safe));
//! ```

mod safety;
mod status;
mod transport;

use std::time::SystemTime;

use buttress::{BoxError, Classification, Classifier, Classify, Origin, RetryClass, Verdict};
use http::{HeaderMap, Request, Response, StatusCode};

pub use safety::{RetrySafe, RetrySafety, is_idempotent};
pub use status::StatusSet;
pub use transport::{ConnectFailed, is_connect_error};

use crate::context::RequestContext;
use crate::grpc::Code;
use crate::header::{self, GRPC_RETRY_PUSHBACK_MS, GRPC_STATUS, RETRY_AFTER};
use crate::hint::{self, Pushback};
use crate::replay::ReplayWatch;

/// The classifier settings of an HTTP policy, as plain data.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct ClassifyConfig {
    /// Statuses retried besides 408, 429, 502, 503 and 504 (4xx and 5xx only; others
    /// are ignored with a warning).
    pub retry_on: Vec<u16>,
    /// Which requests may be sent more than once.
    pub safety: RetrySafety,
}

/// Classifies HTTP and gRPC outcomes; see the [module docs](self).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpClassify {
    retry_on: StatusSet,
    safety: RetrySafety,
}

impl Default for HttpClassify {
    fn default() -> Self {
        Self::new()
    }
}

impl HttpClassify {
    /// Retries 408, 429, 502, 503 and 504, for requests that are safe by
    /// [`RetrySafety::default`].
    pub const fn new() -> Self {
        Self {
            retry_on: StatusSet::default_retryable(),
            safety: RetrySafety::new(),
        }
    }

    /// A classifier built from `config`.
    pub fn from_config(config: &ClassifyConfig) -> Self {
        let mut c = Self::new().safety(config.safety);
        for &code in &config.retry_on {
            let added = StatusCode::from_u16(code).is_ok_and(|s| c.retry_on.insert(s));
            if !added {
                tracing::warn!(target: "buttress::http", status = code, "retry_on: only 4xx and 5xx statuses can be retried; ignored");
            }
        }
        c
    }

    /// Also retries `statuses` (4xx and 5xx only; others are ignored).
    #[must_use]
    pub fn retry_on(mut self, statuses: impl IntoIterator<Item = StatusCode>) -> Self {
        for s in statuses {
            self.retry_on.insert(s);
        }
        self
    }

    /// Replaces the whole set of retryable statuses.
    #[must_use]
    pub const fn retry_statuses(mut self, statuses: StatusSet) -> Self {
        self.retry_on = statuses;
        self
    }

    /// Sets which requests may be sent more than once.
    #[must_use]
    pub const fn safety(mut self, safety: RetrySafety) -> Self {
        self.safety = safety;
        self
    }

    /// The retryable statuses.
    pub const fn retryable_statuses(&self) -> &StatusSet {
        &self.retry_on
    }

    /// The retry-safety rules.
    pub const fn retry_safety(&self) -> &RetrySafety {
        &self.safety
    }

    /// The classifier for `req` (also available through [`Classify`]).
    pub fn classifier<B>(&self, req: &Request<B>) -> HttpClassifier {
        let grpc = header::is_grpc(req.headers());
        HttpClassifier {
            safe: self.safety.is_safe(req, grpc),
            grpc,
            retry_on: self.retry_on,
            replay: req.extensions().get::<ReplayWatch>().cloned(),
        }
    }
}

impl<B, RB> Classify<Request<B>, Response<RB>> for HttpClassify {
    type Classifier = HttpClassifier;

    fn classify_request(&self, req: &Request<B>) -> HttpClassifier {
        self.classifier(req)
    }

    /// Puts the do-not-retry mark on the answer (`buttress-retry: gave-up`, plus a
    /// negative `grpc-retry-pushback-ms` on a gRPC answer) and sets the gave-up flag of
    /// the request context in scope, if any.
    fn mark_gave_up(&self, response: &mut Response<RB>) {
        header::mark_gave_up(response.headers_mut());
        RequestContext::mark_current_gave_up();
    }
}

/// Classifies one request's result; made by [`HttpClassify`].
#[derive(Debug, Clone)]
pub struct HttpClassifier {
    safe: bool,
    grpc: bool,
    retry_on: StatusSet,
    /// The request body's watch, when a `BufferRequestBodyLayer` wrapped it.
    replay: Option<ReplayWatch>,
}

impl HttpClassifier {
    /// Whether the request was gRPC.
    pub const fn is_grpc(&self) -> bool {
        self.grpc
    }

    /// Whether the request may be sent more than once (the same as
    /// [`Classifier::request_is_safe`], without naming the response type).
    pub const fn request_is_safe(&self) -> bool {
        self.safe
    }

    /// Classifies an answer by its head: status and headers. A streamed gRPC answer is
    /// a provisional success here; see [`eos`](Self::eos).
    pub fn classify_head(&self, status: StatusCode, headers: &HeaderMap) -> Classification {
        let grpc = self.grpc || header::is_grpc(headers);
        let c = match grpc_outcome(headers).filter(|_| grpc) {
            Some(c) => c,
            None if grpc && status == StatusCode::OK => Classification::success(),
            None => self.classify_status(status, headers),
        };
        if header::is_marked_gave_up(headers) {
            c.with_do_not_retry(true)
        } else {
            c
        }
    }

    fn classify_status(&self, status: StatusCode, headers: &HeaderMap) -> Classification {
        let code = status.as_u16();
        let verdict = if status.is_server_error() {
            Verdict::Failure
        } else if code == 408 || code == 429 {
            Verdict::Ignored
        } else {
            Verdict::Success
        };
        let retryable = self.retry_on.contains(status);
        let delay_hint = if retryable {
            headers
                .get(RETRY_AFTER)
                .and_then(|v| hint::retry_after(v.as_bytes(), SystemTime::now()))
        } else {
            None
        };
        Classification::success()
            .with_verdict(verdict)
            .with_retry(if retryable {
                RetryClass::IfSafe
            } else {
                RetryClass::No
            })
            .with_overload(code == 429 || code == 503)
            .with_delay_hint(delay_hint)
    }

    /// Classifies an error: as [`Classification::from_error`], except that a
    /// connection never established ([`is_connect_error`]) may be retried for any
    /// request.
    pub fn classify_error(&self, err: &BoxError) -> Classification {
        let c = Classification::from_error(err);
        if c.origin == Origin::Upstream && is_connect_error(err.as_ref()) {
            c.with_retry(RetryClass::Always)
        } else {
            c
        }
    }

    /// The end-of-body classifier for `res`, if its outcome is only known at the end of
    /// its body: a streamed gRPC answer (HTTP 200, no `grpc-status` in the head).
    pub fn eos<B>(&self, res: &Response<B>) -> Option<GrpcEos> {
        let grpc = self.grpc || header::is_grpc(res.headers());
        (grpc && res.status() == StatusCode::OK && !res.headers().contains_key(GRPC_STATUS))
            .then_some(GrpcEos { _private: () })
    }
}

impl<RB> Classifier<Response<RB>> for HttpClassifier {
    fn request_is_safe(&self) -> bool {
        self.safe
    }

    fn classify(self, result: Result<&Response<RB>, &BoxError>) -> Classification {
        let c = match result {
            Ok(res) => self.classify_head(res.status(), res.headers()),
            Err(err) => self.classify_error(err),
        };
        // The body went past its replay cap (or failed) during this attempt: a copy
        // made before it cannot be sent, so there is nothing to retry with.
        if self.replay.as_ref().is_some_and(ReplayWatch::is_spent) {
            c.with_retry(RetryClass::No)
        } else {
            c
        }
    }
}

/// Classifies an answer at the end of its body, from its trailers.
///
/// The end-of-body hook: [`ClassifyAtEnd`](crate::body::ClassifyAtEnd) calls it when a
/// [`GuardBody`](crate::body::GuardBody) ends.
pub trait ClassifyEos {
    /// Classifies by the trailers (`None` if the body ended without any).
    fn classify_eos(self, trailers: Option<&HeaderMap>) -> Classification;

    /// Classifies a body that failed before its end.
    fn classify_body_error(self) -> Classification
    where
        Self: Sized,
    {
        Classification::failure().with_retry(RetryClass::No)
    }
}

/// The end-of-body classifier of a streamed gRPC answer: `grpc-status` (and
/// `grpc-retry-pushback-ms`) from the trailers, by the table in [`crate::grpc`]. A
/// stream that ends without a status is an `UNKNOWN` failure, as gRPC clients report
/// it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GrpcEos {
    _private: (),
}

impl GrpcEos {
    /// The end-of-body classifier for any gRPC stream.
    pub const fn new() -> Self {
        Self { _private: () }
    }
}

impl Default for GrpcEos {
    fn default() -> Self {
        Self::new()
    }
}

impl ClassifyEos for GrpcEos {
    fn classify_eos(self, trailers: Option<&HeaderMap>) -> Classification {
        let Some(trailers) = trailers else {
            return Code::Unknown.classification();
        };
        let c = grpc_outcome(trailers).unwrap_or(Code::Unknown.classification());
        if header::is_marked_gave_up(trailers) {
            c.with_do_not_retry(true)
        } else {
            c
        }
    }
}

/// The outcome a head or trailers with `grpc-status` give, with pushback.
fn grpc_outcome(map: &HeaderMap) -> Option<Classification> {
    let code = Code::from_bytes(map.get(GRPC_STATUS)?.as_bytes());
    let c = code.classification();
    Some(match map.get(GRPC_RETRY_PUSHBACK_MS) {
        None => c,
        Some(v) => match hint::grpc_pushback(v.as_bytes()) {
            Pushback::Delay(d) => c.with_delay_hint(Some(d)),
            Pushback::DoNotRetry => c.with_do_not_retry(true),
        },
    })
}

#[cfg(test)]
mod tests;
