use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

/// What an [`EventSource`](super::EventSource) reports, shared with its handles.
#[derive(Debug, Default)]
pub(crate) struct Status {
    pub(crate) connected: bool,
    pub(crate) down_since: Option<Instant>,
    pub(crate) attempts: u32,
    pub(crate) next_attempt_at: Option<Instant>,
    pub(crate) last_error: Option<String>,
    pub(crate) last_event_id: Option<Arc<str>>,
    pub(crate) retry: Option<Duration>,
    pub(crate) connects: u64,
    pub(crate) total_attempts: u64,
    pub(crate) failed_attempts: u64,
    pub(crate) disconnects: u64,
    pub(crate) idle_timeouts: u64,
    pub(crate) budget_denied: u64,
    pub(crate) events: u64,
    pub(crate) duplicates: u64,
    pub(crate) finished: bool,
}

pub(crate) fn lock(status: &Mutex<Status>) -> MutexGuard<'_, Status> {
    // Every critical section leaves the status whole before anything can panic.
    status.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Watches an [`EventSource`](super::EventSource) from elsewhere (a health check, a
/// dashboard): cheap to clone, usable after the source is moved into a task.
#[derive(Debug, Clone)]
pub struct SseHandle {
    pub(crate) status: Arc<Mutex<Status>>,
}

impl SseHandle {
    /// The state of the stream now.
    pub fn snapshot(&self) -> SseSnapshot {
        let s = lock(&self.status);
        SseSnapshot {
            connected: s.connected,
            reconnecting_since: s.down_since,
            attempts: s.attempts,
            next_attempt_at: s.next_attempt_at,
            last_error: s.last_error.clone(),
            last_event_id: s.last_event_id.as_deref().map(str::to_owned),
            retry: s.retry,
            connects: s.connects,
            total_attempts: s.total_attempts,
            failed_attempts: s.failed_attempts,
            disconnects: s.disconnects,
            idle_timeouts: s.idle_timeouts,
            budget_denied: s.budget_denied,
            events: s.events,
            duplicates: s.duplicates,
            finished: s.finished,
        }
    }
}

/// The state of an event stream at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SseSnapshot {
    /// A response is streaming.
    pub connected: bool,
    /// When the current outage began (the stream was cut, or the first connection
    /// failed); `None` while connected.
    pub reconnecting_since: Option<Instant>,
    /// Failed connection attempts in the current outage.
    pub attempts: u32,
    /// When the next attempt is due, while waiting for it.
    pub next_attempt_at: Option<Instant>,
    /// Why the last attempt failed or the stream was cut, during an outage.
    pub last_error: Option<String>,
    /// The stream's last event ID: where a reconnection resumes.
    pub last_event_id: Option<String>,
    /// The reconnection time the server asked for with `retry:`.
    pub retry: Option<Duration>,
    /// Streams established.
    pub connects: u64,
    /// Connection attempts made.
    pub total_attempts: u64,
    /// Connection attempts that failed (transport error, a retryable status, no
    /// answer within the idle timeout).
    pub failed_attempts: u64,
    /// Established streams that were cut (end of body, an error, the idle timeout).
    pub disconnects: u64,
    /// Of those, the ones cut by the idle timeout.
    pub idle_timeouts: u64,
    /// Reconnections put off because the budget refused them.
    pub budget_denied: u64,
    /// Events handed to the consumer.
    pub events: u64,
    /// Events dropped as duplicates.
    pub duplicates: u64,
    /// The stream ended for good (a final error, a 204, or the source dropped).
    pub finished: bool,
}
