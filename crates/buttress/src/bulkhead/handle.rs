use std::sync::Arc;

use super::config::BulkheadConfig;
use super::state::Shared;

/// Reads and changes a bulkhead's state at run time; see
/// [`BulkheadLayer::handle`](super::BulkheadLayer::handle).
///
/// A handle to a [disabled](super::BulkheadLayer::disabled) layer reports zeros, and
/// resizing or reconfiguring it does nothing: a disabled layer has no state to change.
#[derive(Debug, Clone)]
pub struct BulkheadHandle {
    shared: Option<Arc<Shared>>,
}

impl BulkheadHandle {
    pub(crate) fn new(shared: Option<Arc<Shared>>) -> Self {
        Self { shared }
    }

    /// The current counts, summed over every partition.
    pub fn snapshot(&self) -> BulkheadSnapshot {
        let Some(shared) = &self.shared else {
            return BulkheadSnapshot::default();
        };
        let config = shared.config();
        let totals = shared.totals();
        BulkheadSnapshot {
            running: totals.running,
            queued: totals.queued,
            max_concurrent: config.max_concurrent,
            queue_size: config.queue.size,
            rejected: totals.rejected,
            would_reject: totals.would_reject,
            partitions: totals.partitions,
        }
    }

    /// Changes `max_concurrent` of every partition. Growing grants queued callers at
    /// once; shrinking lets the calls already running finish, and admits no new call
    /// into a partition until its running calls are below the new maximum.
    pub fn resize(&self, max_concurrent: usize) {
        if let Some(shared) = &self.shared {
            shared.resize(max_concurrent);
        }
    }

    /// Applies new settings to every partition (running calls and waiters keep their
    /// permits, places and timers). The bounds of the map of partitions (`keys`) are
    /// fixed when the first keyed request arrives and do not change.
    pub fn reconfigure(&self, config: BulkheadConfig) {
        if let Some(shared) = &self.shared {
            shared.reconfigure(config);
        }
    }
}

/// A bulkhead's counts at one instant, from [`BulkheadHandle::snapshot`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct BulkheadSnapshot {
    /// Permits held, over every partition (calls running, and waiters granted a
    /// permit that have not yet started).
    pub running: usize,
    /// Callers waiting in a queue, over every partition.
    pub queued: usize,
    /// The configured maximum of concurrent calls per partition.
    pub max_concurrent: usize,
    /// The configured queue size per partition.
    pub queue_size: usize,
    /// Calls refused since the layer was made (full, queue timeout, deadline).
    pub rejected: u64,
    /// Calls observe mode let through that enforcing would have refused.
    pub would_reject: u64,
    /// Keyed partitions in the map (the unkeyed and overflow partitions not counted).
    pub partitions: usize,
}
