//! Errors produced by [`Reconnect`](super::Reconnect).

use std::error::Error;
use std::fmt;
use std::time::Duration;

use tokio::time::Instant;

use super::link::SharedError;

/// The connection is down and being re-established; the call was not sent.
///
/// Returned at once while reconnecting when the layer is configured to
/// [`fail_fast`](super::ReconnectConfig::fail_fast) (otherwise calls wait for the
/// connection). The last connection error, if any, is the
/// [`source`](Error::source). Nothing was sent, so the call is safe to retry
/// elsewhere or later (after [`retry_after`](Self::retry_after)).
#[derive(Clone)]
pub struct Reconnecting {
    since: Option<Instant>,
    attempts: u32,
    next_attempt_at: Option<Instant>,
    last_error: Option<SharedError>,
}

impl Reconnecting {
    pub(crate) fn new(
        since: Option<Instant>,
        attempts: u32,
        next_attempt_at: Option<Instant>,
        last_error: Option<SharedError>,
    ) -> Self {
        Self {
            since,
            attempts,
            next_attempt_at,
            last_error,
        }
    }

    /// When the outage began (`None` when the service was called while not ready,
    /// outside an outage).
    pub fn since(&self) -> Option<Instant> {
        self.since
    }

    /// Failed attempts so far in this outage.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// When the next attempt is due, if the service is waiting for it (`None` while
    /// an attempt is under way).
    pub fn next_attempt_at(&self) -> Option<Instant> {
        self.next_attempt_at
    }

    /// How long until the next attempt (zero while one is under way). Reads the
    /// clock.
    pub fn retry_after(&self) -> Duration {
        self.next_attempt_at.map_or(Duration::ZERO, |at| {
            at.saturating_duration_since(Instant::now())
        })
    }
}

impl fmt::Debug for Reconnecting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reconnecting")
            .field("since", &self.since)
            .field("attempts", &self.attempts)
            .field("next_attempt_at", &self.next_attempt_at)
            .field(
                "last_error",
                &self.last_error.as_ref().map(ToString::to_string),
            )
            .finish()
    }
}

impl fmt::Display for Reconnecting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The last error is the source, not repeated here.
        write!(
            f,
            "connection down, reconnecting ({} failed attempts)",
            self.attempts
        )
    }
}

impl Error for Reconnecting {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.last_error
            .as_deref()
            .map(|e| e as &(dyn Error + 'static))
    }
}
