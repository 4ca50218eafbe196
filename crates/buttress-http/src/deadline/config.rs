use std::time::Duration;

use http::{HeaderMap, HeaderName};

use crate::header::{BUTTRESS_ATTEMPT, BUTTRESS_TIMEOUT_MS, GRPC_TIMEOUT};
use crate::hint;

/// Where a server reads the caller's deadline, and how far it trusts it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct InboundDeadlineConfig {
    /// The header holding the time left in whole milliseconds (default
    /// `buttress-timeout-ms`).
    #[cfg_attr(feature = "serde", serde(with = "crate::serde_util::header_name"))]
    pub header: HeaderName,
    /// Whether `grpc-timeout` is read too (default `true`).
    pub grpc_timeout: bool,
    /// The longest deadline a caller may ask for (default 5 minutes).
    #[cfg_attr(feature = "serde", serde(with = "buttress::duration::serde"))]
    pub max: Duration,
}

impl Default for InboundDeadlineConfig {
    fn default() -> Self {
        Self {
            header: BUTTRESS_TIMEOUT_MS,
            grpc_timeout: true,
            max: Duration::from_secs(300),
        }
    }
}

impl InboundDeadlineConfig {
    /// The time the caller says it has left, from `headers`: the smaller of the values
    /// present, clamped to [`max`](Self::max); `None` when no valid value is present.
    pub fn budget(&self, headers: &HeaderMap) -> Option<Duration> {
        let grpc = if self.grpc_timeout {
            headers
                .get(GRPC_TIMEOUT)
                .and_then(|v| hint::grpc_timeout(v.as_bytes()))
        } else {
            None
        };
        let ms = headers
            .get(&self.header)
            .and_then(|v| hint::timeout_ms(v.as_bytes()));
        let budget = match (grpc, ms) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b)?,
        };
        Some(budget.min(self.max))
    }
}

/// What a client writes into each outbound request.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct OutboundDeadlineConfig {
    /// The header for the time left, in whole milliseconds, on non-gRPC requests
    /// (default `buttress-timeout-ms`). gRPC requests get `grpc-timeout`.
    #[cfg_attr(feature = "serde", serde(with = "crate::serde_util::header_name"))]
    pub header: HeaderName,
    /// Taken off the time left, for the trip to the server and the answer's trip back
    /// (default 5 ms).
    #[cfg_attr(feature = "serde", serde(with = "buttress::duration::serde"))]
    pub offset: Duration,
    /// The header for the attempt number on non-gRPC requests (default
    /// `buttress-attempt`). gRPC requests get `grpc-previous-rpc-attempts`.
    #[cfg_attr(feature = "serde", serde(with = "crate::serde_util::header_name"))]
    pub attempt_header: HeaderName,
    /// Whether the attempt number is written (default `true`).
    pub attempts: bool,
}

impl Default for OutboundDeadlineConfig {
    fn default() -> Self {
        Self {
            header: BUTTRESS_TIMEOUT_MS,
            offset: Duration::from_millis(5),
            attempt_header: BUTTRESS_ATTEMPT,
            attempts: true,
        }
    }
}
