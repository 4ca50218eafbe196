use std::time::Duration;

use buttress::{Rejection, RejectionKind};
use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Response, StatusCode};

use crate::grpc::Code;
use crate::header::{
    self, APPLICATION_GRPC, GRPC_MESSAGE, GRPC_RETRY_PUSHBACK_MS, GRPC_STATUS, RETRY_AFTER,
};
use crate::hint;

/// Whether a request speaks plain HTTP or gRPC (and so which kind of answer it needs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// Plain HTTP: answers by status.
    Http,
    /// gRPC (`content-type: application/grpc*`): trailers-only answers by `grpc-status`.
    Grpc,
}

impl Protocol {
    /// The protocol of a request with these headers.
    pub fn of(headers: &http::HeaderMap) -> Self {
        if header::is_grpc(headers) {
            Protocol::Grpc
        } else {
            Protocol::Http
        }
    }
}

/// How rejections become answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct RejectionConfig {
    /// The status of a timeout's answer (default 504 Gateway Timeout; some prefer 503,
    /// or 408 for a server's own timeout).
    #[cfg_attr(feature = "serde", serde(with = "crate::serde_util::status_code"))]
    pub timeout_status: StatusCode,
    /// The `Retry-After` of a rejection that suggests no delay of its own (a full
    /// bulkhead); default 1 s.
    #[cfg_attr(feature = "serde", serde(with = "buttress::duration::serde"))]
    pub default_retry_after: Duration,
}

impl Default for RejectionConfig {
    fn default() -> Self {
        Self {
            timeout_status: StatusCode::GATEWAY_TIMEOUT,
            default_retry_after: Duration::from_secs(1),
        }
    }
}

impl RejectionConfig {
    /// The answer to `rejection` for a request of `protocol`.
    pub fn response(&self, rejection: Rejection, protocol: Protocol) -> Response<Bytes> {
        let retry_after = rejection.retry_after().unwrap_or(self.default_retry_after);
        let (status, code, text, delay) = match rejection.kind() {
            RejectionKind::Timeout { .. } => (
                self.timeout_status,
                Code::DeadlineExceeded,
                "request timed out",
                None,
            ),
            RejectionKind::CircuitOpen => (
                StatusCode::SERVICE_UNAVAILABLE,
                Code::Unavailable,
                "circuit open",
                Some(retry_after),
            ),
            RejectionKind::Shed => (
                StatusCode::SERVICE_UNAVAILABLE,
                Code::Unavailable,
                "overloaded",
                Some(retry_after),
            ),
            RejectionKind::Draining => (
                StatusCode::SERVICE_UNAVAILABLE,
                Code::Unavailable,
                "draining",
                Some(retry_after),
            ),
            RejectionKind::BulkheadFull => (
                StatusCode::SERVICE_UNAVAILABLE,
                Code::ResourceExhausted,
                "bulkhead full",
                Some(retry_after),
            ),
            RejectionKind::Throttled => (
                StatusCode::SERVICE_UNAVAILABLE,
                Code::ResourceExhausted,
                "throttled",
                Some(retry_after),
            ),
            // A kind added later: a generic overload answer.
            _ => (
                StatusCode::SERVICE_UNAVAILABLE,
                Code::Unavailable,
                "unavailable",
                Some(retry_after),
            ),
        };
        match protocol {
            Protocol::Grpc => grpc_response(code, text, delay),
            Protocol::Http => {
                let mut res = text_response(status, text);
                if let Some(d) = delay {
                    res.headers_mut()
                        .insert(RETRY_AFTER, hint::format_retry_after(d));
                }
                res
            }
        }
    }
}

/// A plain-text answer.
pub(crate) fn text_response(status: StatusCode, text: &'static str) -> Response<Bytes> {
    let mut res = Response::new(Bytes::from_static(text.as_bytes()));
    *res.status_mut() = status;
    res.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    res
}

/// A trailers-only gRPC answer. `message` must be plain ASCII with no `%` (it is sent
/// as is, which is its own percent-encoding).
pub(crate) fn grpc_response(
    code: Code,
    message: &'static str,
    pushback: Option<Duration>,
) -> Response<Bytes> {
    let mut res = Response::new(Bytes::new());
    let h = res.headers_mut();
    h.insert(CONTENT_TYPE, APPLICATION_GRPC);
    h.insert(GRPC_STATUS, code.to_header_value());
    h.insert(GRPC_MESSAGE, HeaderValue::from_static(message));
    if let Some(d) = pushback {
        h.insert(GRPC_RETRY_PUSHBACK_MS, hint::format_pushback(d));
    }
    res
}
