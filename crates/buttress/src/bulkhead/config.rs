use std::time::Duration;

use super::limiter::Limits;
use crate::Mode;
use crate::keyed::KeyedConfig;

/// A bulkhead's settings: its limits, its queue, its mode and, when keyed, the bounds
/// of its map of partitions.
///
/// The defaults: 100 concurrent calls, no queue (fail fast), enforcing, and the
/// [`KeyedConfig`] defaults (1,024 keys). Every partition of a keyed bulkhead gets the
/// same limits.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct BulkheadConfig {
    /// Calls allowed to run at once (per partition). Zero admits nothing: every call
    /// waits in the queue, if any, or is refused.
    pub max_concurrent: usize,
    /// Where calls wait when all permits are taken.
    pub queue: QueueConfig,
    /// Enforce, or only report what would be refused.
    pub mode: Mode,
    /// Bounds of the map of partitions, for a keyed bulkhead (see
    /// [`BulkheadLayer::with_partition`](super::BulkheadLayer::with_partition)).
    pub keys: KeyedConfig,
}

impl Default for BulkheadConfig {
    /// 100 concurrent calls, no queue, enforcing, default key bounds.
    fn default() -> Self {
        Self {
            max_concurrent: 100,
            queue: QueueConfig::default(),
            mode: Mode::Enforce,
            keys: KeyedConfig::default(),
        }
    }
}

impl BulkheadConfig {
    /// `max_concurrent` calls at once, no queue, other settings default.
    pub fn new(max_concurrent: usize) -> Self {
        Self {
            max_concurrent,
            ..Self::default()
        }
    }

    /// Lets up to `size` calls wait, each at most `max_wait`, for a permit.
    #[must_use]
    pub fn with_queue(mut self, size: usize, max_wait: Duration) -> Self {
        self.queue = QueueConfig { size, max_wait };
        self
    }

    /// Sets the mode.
    #[must_use]
    pub fn with_mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// Sets the bounds of the map of partitions.
    #[must_use]
    pub fn with_keys(mut self, keys: KeyedConfig) -> Self {
        self.keys = keys;
        self
    }

    pub(crate) fn limits(&self) -> Limits {
        Limits {
            max_concurrent: self.max_concurrent,
            queue_size: self.queue.size,
            max_wait: self.queue.max_wait,
            observe: !self.mode.enforces(),
        }
    }
}

/// The queue in front of a bulkhead's permits.
///
/// Waiters are served first in, first out; a newcomer never overtakes them. A waiter
/// gives up after `max_wait` or when its request's deadline passes, whichever is
/// first. A `size` of zero (the default) or a zero `max_wait` means no queue: a call
/// that finds every permit taken is refused at once. The default `max_wait` (100 ms)
/// applies when only `size` is set.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct QueueConfig {
    /// Callers allowed to wait at once (per partition).
    pub size: usize,
    /// How long one caller may wait.
    #[cfg_attr(feature = "serde", serde(with = "crate::duration::serde"))]
    pub max_wait: Duration,
}

impl Default for QueueConfig {
    /// No queue; a 100 ms wait once a size is set.
    fn default() -> Self {
        Self {
            size: 0,
            max_wait: Duration::from_millis(100),
        }
    }
}
