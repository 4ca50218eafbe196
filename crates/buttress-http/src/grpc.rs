//! gRPC status codes and what each means to buttress's layers.
//!
//! A gRPC call's outcome is its `grpc-status`: in the head of a *trailers-only* answer
//! (the server failed before sending a message) or in the trailers of a streamed one.
//! [`Code::classification`] maps each code to one [`Classification`]:
//!
//! | code | verdict | retry | overload | why |
//! |---|---|---|---|---|
//! | `OK` (0) | success | no | | |
//! | `CANCELLED` (1) | ignored | no | | the caller gave up: says nothing of the callee |
//! | `UNKNOWN` (2) | failure | no | | a server error of unknown effect |
//! | `INVALID_ARGUMENT` (3) | success | no | | the caller's mistake; the callee is healthy |
//! | `DEADLINE_EXCEEDED` (4) | failure | no | | slow callee; the deadline is gone for every attempt |
//! | `NOT_FOUND` (5) | success | no | | an application answer |
//! | `ALREADY_EXISTS` (6) | success | no | | an application answer |
//! | `PERMISSION_DENIED` (7) | success | no | | an application answer |
//! | `RESOURCE_EXHAUSTED` (8) | ignored | if safe | yes | the gRPC 429: rate limit or quota, retry later |
//! | `FAILED_PRECONDITION` (9) | success | no | | an application answer |
//! | `ABORTED` (10) | success | no | | a conflict the application retries at a higher level |
//! | `OUT_OF_RANGE` (11) | success | no | | an application answer |
//! | `UNIMPLEMENTED` (12) | failure | no | | this endpoint cannot serve the method (a bad deploy) |
//! | `INTERNAL` (13) | failure | no | | a server bug |
//! | `UNAVAILABLE` (14) | failure | if safe | yes | the gRPC 503: transient, retry |
//! | `DATA_LOSS` (15) | failure | no | | |
//! | `UNAUTHENTICATED` (16) | success | no | | an application answer |
//! | anything else, or malformed | failure | no | | treated as `UNKNOWN` |
//!
//! Retryable codes are retried only if the request is safe to repeat (see
//! [`RetrySafety`](crate::classify::RetrySafety)); a `grpc-retry-pushback-ms` next to
//! the status is the delay hint, or (negative) the do-not-retry mark.
//!
//! # Example
//!
//! ```
//! use buttress::{RetryClass, Verdict};
//! use buttress_http::grpc::Code;
//!
//! assert_eq!(Code::from_bytes(b"14"), Code::Unavailable);
//! let c = Code::Unavailable.classification();
//! assert_eq!((c.verdict, c.retry, c.overload), (Verdict::Failure, RetryClass::IfSafe, true));
//! assert_eq!(Code::from_bytes(b"garbage"), Code::Unknown);
//! ```

use buttress::{Classification, RetryClass, Verdict};
use http::HeaderValue;

/// A gRPC status code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Code {
    /// Not an error.
    Ok = 0,
    /// The operation was cancelled, typically by the caller.
    Cancelled = 1,
    /// Unknown error.
    Unknown = 2,
    /// The client specified an invalid argument.
    InvalidArgument = 3,
    /// The deadline expired before the operation could complete.
    DeadlineExceeded = 4,
    /// Some requested entity was not found.
    NotFound = 5,
    /// The entity the client tried to create already exists.
    AlreadyExists = 6,
    /// The caller may not perform the operation.
    PermissionDenied = 7,
    /// A resource (quota, rate limit, capacity) has been exhausted.
    ResourceExhausted = 8,
    /// The system is not in a state required for the operation.
    FailedPrecondition = 9,
    /// The operation was aborted (a concurrency conflict).
    Aborted = 10,
    /// The operation was attempted past the valid range.
    OutOfRange = 11,
    /// The operation is not implemented or supported.
    Unimplemented = 12,
    /// An internal error.
    Internal = 13,
    /// The service is currently unavailable; transient.
    Unavailable = 14,
    /// Unrecoverable data loss or corruption.
    DataLoss = 15,
    /// The request does not have valid authentication credentials.
    Unauthenticated = 16,
}

impl Code {
    /// The code for a number; numbers outside 0..=16 are [`Code::Unknown`], as gRPC
    /// clients treat them.
    pub const fn from_i32(n: i32) -> Self {
        match n {
            0 => Code::Ok,
            1 => Code::Cancelled,
            3 => Code::InvalidArgument,
            4 => Code::DeadlineExceeded,
            5 => Code::NotFound,
            6 => Code::AlreadyExists,
            7 => Code::PermissionDenied,
            8 => Code::ResourceExhausted,
            9 => Code::FailedPrecondition,
            10 => Code::Aborted,
            11 => Code::OutOfRange,
            12 => Code::Unimplemented,
            13 => Code::Internal,
            14 => Code::Unavailable,
            15 => Code::DataLoss,
            16 => Code::Unauthenticated,
            _ => Code::Unknown,
        }
    }

    /// Parses a `grpc-status` value (ASCII decimal, surrounding whitespace tolerated);
    /// anything malformed is [`Code::Unknown`].
    pub fn from_bytes(value: &[u8]) -> Self {
        let s = value.trim_ascii();
        if s.is_empty() || s.len() > 2 || !s.iter().all(u8::is_ascii_digit) {
            return Code::Unknown;
        }
        Code::from_i32(s.iter().fold(0, |n, d| n * 10 + i32::from(d - b'0')))
    }

    /// The code's number.
    pub const fn as_i32(self) -> i32 {
        self as i32
    }

    /// The `grpc-status` header value.
    pub fn to_header_value(self) -> HeaderValue {
        HeaderValue::from(self.as_i32())
    }

    /// What this code means to every layer; see the table in the [module docs](self).
    pub const fn classification(self) -> Classification {
        let retryable = Classification::failure().with_retry(RetryClass::IfSafe);
        match self {
            Code::Ok
            | Code::InvalidArgument
            | Code::NotFound
            | Code::AlreadyExists
            | Code::PermissionDenied
            | Code::FailedPrecondition
            | Code::Aborted
            | Code::OutOfRange
            | Code::Unauthenticated => Classification::success(),
            Code::Cancelled => Classification::ignored(),
            Code::ResourceExhausted => retryable.with_verdict(Verdict::Ignored).with_overload(true),
            Code::Unavailable => retryable.with_overload(true),
            Code::Unknown
            | Code::DeadlineExceeded
            | Code::Unimplemented
            | Code::Internal
            | Code::DataLoss => Classification::failure().with_retry(RetryClass::No),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_code_and_garbage() {
        for n in 0..=16 {
            let code = Code::from_bytes(n.to_string().as_bytes());
            assert_eq!(code.as_i32(), n);
            assert_eq!(Code::from_bytes(code.to_header_value().as_bytes()), code);
        }
        for bad in [&b""[..], b"17", b"-1", b"x", b"140", b"1 4", b"\xff"] {
            assert_eq!(Code::from_bytes(bad), Code::Unknown, "{bad:?}");
        }
        assert_eq!(Code::from_bytes(b" 14 "), Code::Unavailable);
    }

    #[test]
    fn only_unavailable_and_resource_exhausted_retry() {
        for n in 0..=16 {
            let code = Code::from_i32(n);
            let c = code.classification();
            let retryable = matches!(code, Code::Unavailable | Code::ResourceExhausted);
            assert_eq!(c.allows_retry(true), retryable, "{code:?}");
            assert!(
                !c.allows_retry(false),
                "{code:?}: never for unsafe requests"
            );
            assert_eq!(c.overload, retryable, "{code:?}");
        }
        assert_eq!(
            Code::ResourceExhausted.classification().verdict,
            Verdict::Ignored
        );
        assert_eq!(Code::Internal.classification().verdict, Verdict::Failure);
        assert_eq!(Code::NotFound.classification().verdict, Verdict::Success);
        assert_eq!(Code::Cancelled.classification().verdict, Verdict::Ignored);
    }
}
