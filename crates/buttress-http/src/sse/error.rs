use std::fmt;

use http::{HeaderValue, StatusCode};

use super::parser::TooLarge;

/// Why an [`EventSource`](super::EventSource) stopped. Every error is final: the
/// stream ends after it.
///
/// Cuts, failed connections and answers a server gives while restarting (5xx, 429,
/// 408) are not errors: the client reconnects.
#[derive(Debug)]
#[non_exhaustive]
pub enum SseError {
    /// The server answered with a status that means "do not come back" (a 4xx
    /// other than 408 and 429, or another non-2xx).
    Status(StatusCode),
    /// The server answered 2xx with a content type other than `text/event-stream`.
    ContentType(Option<HeaderValue>),
    /// An event was larger than [`max_event_size`](super::SseConfig::max_event_size).
    TooLarge(TooLarge),
}

impl fmt::Display for SseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SseError::Status(s) => write!(f, "event stream refused with status {s}"),
            SseError::ContentType(Some(ct)) => {
                write!(f, "not an event stream: content-type {ct:?}")
            }
            SseError::ContentType(None) => f.write_str("not an event stream: no content-type"),
            SseError::TooLarge(_) => f.write_str("event stream item too large"),
        }
    }
}

impl std::error::Error for SseError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SseError::TooLarge(e) => Some(e),
            _ => None,
        }
    }
}
