//! The header names buttress reads and writes, and the marks it puts on answers.
//!
//! | header | direction | meaning |
//! |---|---|---|
//! | [`BUTTRESS_RETRY`] `: gave-up` | response | a buttress retry layer below gave up after its retries: do not retry this answer (the do-not-retry mark) |
//! | [`GRPC_RETRY_PUSHBACK_MS`] | response (gRPC) | non-negative: wait this many ms before retrying; negative or malformed: do not retry (gRPC's retry design) |
//! | [`RETRY_AFTER`] | response | delta-seconds or an HTTP-date before retrying |
//! | [`BUTTRESS_TIMEOUT_MS`] | request | the caller's time left, in whole milliseconds (the default name of the deadline header) |
//! | [`GRPC_TIMEOUT`] | request (gRPC) | the caller's time left, gRPC's format (`100m`, `5S`, ...) |
//! | [`BUTTRESS_ATTEMPT`] | request | which attempt this is, from 1 |
//! | [`GRPC_PREVIOUS_RPC_ATTEMPTS`] | request (gRPC) | how many attempts came before this one (sent from the second on) |
//! | [`IDEMPOTENCY_KEY`] | request | the request is safe to repeat |
//! | [`BUTTRESS_PRIORITY`] | request | `critical`, `default` or `sheddable` for the load shedder |
//! | [`GRPC_STATUS`], [`GRPC_MESSAGE`] | response (gRPC) | the call's status, in the head of a trailers-only answer or in the trailers |
//!
//! A request or response is gRPC when its `content-type` starts with
//! `application/grpc` ([`is_grpc`]).

use http::HeaderMap;
pub use http::header::RETRY_AFTER;
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue};

/// The do-not-retry mark on HTTP answers: `buttress-retry: gave-up`.
pub const BUTTRESS_RETRY: HeaderName = HeaderName::from_static("buttress-retry");
/// The value of [`BUTTRESS_RETRY`] that marks an answer a retry layer gave up on.
pub const GAVE_UP: HeaderValue = HeaderValue::from_static("gave-up");
/// The default deadline header for HTTP requests: time left in whole milliseconds.
pub const BUTTRESS_TIMEOUT_MS: HeaderName = HeaderName::from_static("buttress-timeout-ms");
/// The attempt number of an HTTP request, from 1.
pub const BUTTRESS_ATTEMPT: HeaderName = HeaderName::from_static("buttress-attempt");
/// The priority of a request for the load shedder.
pub const BUTTRESS_PRIORITY: HeaderName = HeaderName::from_static("buttress-priority");
/// The request header that makes a non-idempotent request safe to retry.
pub const IDEMPOTENCY_KEY: HeaderName = HeaderName::from_static("idempotency-key");
/// gRPC's deadline header.
pub const GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");
/// gRPC's status code.
pub const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
/// gRPC's status message (percent-encoded).
pub const GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");
/// gRPC's server pushback: a delay in milliseconds, or (negative) do not retry.
pub const GRPC_RETRY_PUSHBACK_MS: HeaderName = HeaderName::from_static("grpc-retry-pushback-ms");
/// gRPC's count of the attempts made before this one.
pub const GRPC_PREVIOUS_RPC_ATTEMPTS: HeaderName =
    HeaderName::from_static("grpc-previous-rpc-attempts");

/// The pushback value buttress writes to tell gRPC clients not to retry.
pub(crate) const NEGATIVE_PUSHBACK: HeaderValue = HeaderValue::from_static("-1");
/// The content type of a trailers-only gRPC answer.
pub(crate) const APPLICATION_GRPC: HeaderValue = HeaderValue::from_static("application/grpc");

/// Whether these headers describe a gRPC message: `content-type` starts with
/// `application/grpc` (`application/grpc`, `application/grpc+proto`, ...).
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers.get(CONTENT_TYPE).is_some_and(|ct| {
        let ct = ct.as_bytes();
        ct.len() >= 16
            && ct[..16].eq_ignore_ascii_case(b"application/grpc")
            && matches!(ct.get(16), None | Some(b'+' | b';'))
    })
}

/// Whether these headers carry the do-not-retry mark: [`BUTTRESS_RETRY`]`: gave-up`.
/// (A negative gRPC pushback is read by the classifier with the other gRPC headers.)
pub fn is_marked_gave_up(headers: &HeaderMap) -> bool {
    headers.get_all(BUTTRESS_RETRY).iter().any(|v| {
        v.as_bytes()
            .trim_ascii()
            .eq_ignore_ascii_case(GAVE_UP.as_bytes())
    })
}

/// Puts the do-not-retry mark on an answer's headers: [`BUTTRESS_RETRY`]`: gave-up`,
/// and for a gRPC answer a negative [`GRPC_RETRY_PUSHBACK_MS`] as well, which gRPC
/// clients that know nothing of buttress honour too.
pub fn mark_gave_up(headers: &mut HeaderMap) {
    headers.insert(BUTTRESS_RETRY, GAVE_UP);
    if is_grpc(headers) {
        headers.insert(GRPC_RETRY_PUSHBACK_MS, NEGATIVE_PUSHBACK);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_ct(ct: &'static str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_TYPE, HeaderValue::from_static(ct));
        h
    }

    #[test]
    fn grpc_content_types() {
        for ct in [
            "application/grpc",
            "application/grpc+proto",
            "Application/GRPC+json",
            "application/grpc;charset=x",
        ] {
            assert!(is_grpc(&with_ct(ct)), "{ct}");
        }
        for ct in [
            "application/json",
            "application/grpc-web",
            "application/grp",
            "text/plain",
        ] {
            assert!(!is_grpc(&with_ct(ct)), "{ct}");
        }
        assert!(!is_grpc(&HeaderMap::new()));
    }

    #[test]
    fn marks_round_trip() {
        let mut h = HeaderMap::new();
        assert!(!is_marked_gave_up(&h));
        mark_gave_up(&mut h);
        assert!(is_marked_gave_up(&h));
        assert!(
            h.get(GRPC_RETRY_PUSHBACK_MS).is_none(),
            "plain HTTP gets no gRPC header"
        );
        let mut g = with_ct("application/grpc");
        mark_gave_up(&mut g);
        assert_eq!(g[GRPC_RETRY_PUSHBACK_MS], "-1");
        assert!(is_marked_gave_up(&g));
        let mut other = HeaderMap::new();
        other.insert(BUTTRESS_RETRY, HeaderValue::from_static("something-else"));
        assert!(!is_marked_gave_up(&other));
    }
}
