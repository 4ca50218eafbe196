use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use super::circuit::Circuit;
use super::config::{BreakerConfig, BreakerMode};
use super::shared::Shared;
use super::state::{BreakerState, Transition};

/// What a breaker looks like at one instant; see [`BreakerHandle::snapshot`].
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct BreakerSnapshot {
    /// The state.
    pub state: BreakerState,
    /// Reject, gate or observe.
    pub mode: BreakerMode,
    /// Calls counted in the window (a time window first slides to now).
    pub calls: u64,
    /// Failures among them.
    pub failures: u64,
    /// Slow calls among them.
    pub slow_calls: u64,
    /// `failures / calls` (0 with no calls).
    pub failure_rate: f64,
    /// `slow_calls / calls` (0 with no calls).
    pub slow_call_rate: f64,
    /// Failures in a row, as counted for `consecutive_failures`.
    pub consecutive_failures: u32,
    /// Time left until an open breaker turns half-open (`None` unless open).
    pub open_remaining: Option<Duration>,
    /// The last open time drawn (after growth and jitter), if the breaker has opened
    /// since it was built or reset.
    pub open_for: Option<Duration>,
    /// Half-open probes let in and not finished yet.
    pub probes_in_flight: u32,
    /// Half-open probes finished in this half-open phase.
    pub probes_done: u32,
    /// Transitions made since the breaker was built.
    pub transitions: u64,
}

impl BreakerSnapshot {
    fn pass_through() -> Self {
        Self {
            state: BreakerState::Disabled,
            mode: BreakerMode::Reject,
            calls: 0,
            failures: 0,
            slow_calls: 0,
            failure_rate: 0.0,
            slow_call_rate: 0.0,
            consecutive_failures: 0,
            open_remaining: None,
            open_for: None,
            probes_in_flight: 0,
            probes_done: 0,
            transitions: 0,
        }
    }

    fn of(circuit: &Circuit) -> Self {
        let v = circuit.view(Instant::now());
        Self {
            state: v.state,
            mode: v.settings.mode,
            calls: v.counts.calls,
            failures: v.counts.failures,
            slow_calls: v.counts.slow,
            failure_rate: v.counts.failure_rate(),
            slow_call_rate: v.counts.slow_rate(),
            consecutive_failures: v.consecutive_failures,
            open_remaining: v.open_remaining,
            open_for: v.open_for,
            probes_in_flight: v.probes_in_flight,
            probes_done: v.probes_done,
            transitions: v.transitions,
        }
    }
}

/// Reaches a breaker's state from outside the stack: snapshot, force open, disable,
/// reset, reconfigure and subscribe to transitions. Cheap to clone.
///
/// The handle of a layer refers to its unkeyed breaker; [`key`](Self::key) gives the
/// handle of one key's breaker. [`reconfigure`](Self::reconfigure) applies to every
/// breaker of the layer. The handle of a pass-through layer (built from `None`)
/// reports [`BreakerState::Disabled`] and ignores every command.
#[derive(Clone)]
pub struct BreakerHandle {
    shared: Option<Arc<Shared>>,
    circuit: Option<Arc<Circuit>>,
}

impl BreakerHandle {
    pub(crate) fn new(shared: Option<Arc<Shared>>) -> Self {
        let circuit = shared.as_ref().map(|s| s.global.clone());
        Self { shared, circuit }
    }

    /// The current state (no clock read, no lock).
    pub fn state(&self) -> BreakerState {
        self.circuit
            .as_ref()
            .map_or(BreakerState::Disabled, |c| c.state())
    }

    /// The state, the window's counts and rates, and the time left open.
    pub fn snapshot(&self) -> BreakerSnapshot {
        self.circuit
            .as_deref()
            .map_or_else(BreakerSnapshot::pass_through, BreakerSnapshot::of)
    }

    /// Opens the breaker until [`reset`](Self::reset), whatever the window says.
    pub fn force_open(&self) {
        if let Some(c) = &self.circuit {
            c.force_open();
        }
    }

    /// Keeps the breaker closed, counting nothing, until [`reset`](Self::reset).
    pub fn disable(&self) {
        if let Some(c) = &self.circuit {
            c.disable();
        }
    }

    /// Closes the breaker with an empty window and the open time back at its first
    /// value.
    pub fn reset(&self) {
        if let Some(c) = &self.circuit {
            c.reset();
        }
    }

    /// A subscription to this breaker's transitions. It holds the latest one (a
    /// [`watch`] channel): a slow subscriber sees the newest state, and a gap in
    /// [`Transition::seq`] tells it that it missed some.
    pub fn subscribe(&self) -> watch::Receiver<Transition> {
        match &self.circuit {
            Some(c) => c.subscribe(),
            None => {
                let t = Transition {
                    from: BreakerState::Disabled,
                    to: BreakerState::Disabled,
                    seq: 0,
                };
                watch::channel(t).1
            }
        }
    }

    /// Applies new settings to every breaker of the layer (and to keys made later),
    /// keeping their states, and their windows where the window's shape is unchanged.
    pub fn reconfigure(&self, config: &BreakerConfig) {
        if let Some(s) = &self.shared {
            s.reconfigure(config);
        }
    }

    /// The handle of `key`'s breaker, if that key has one (keys get theirs on their
    /// first call, and lose it after being idle while closed).
    pub fn key<K: Hash + Eq + Send + Sync + 'static>(&self, key: &K) -> Option<BreakerHandle> {
        let shared = self.shared.as_ref()?;
        let circuit = shared.keyed_map::<K>()?.get(key)?;
        Some(BreakerHandle {
            shared: Some(shared.clone()),
            circuit: Some(circuit),
        })
    }

    /// A snapshot of every keyed breaker of the layer.
    pub fn keys<K: Hash + Eq + Clone + Send + Sync + 'static>(&self) -> Vec<(K, BreakerSnapshot)> {
        let Some(map) = self.shared.as_ref().and_then(|s| s.keyed_map::<K>()) else {
            return Vec::new();
        };
        let mut circuits = Vec::new();
        map.for_each(|k, c| circuits.push((k.clone(), c.clone())));
        // Snapshots are taken after the map's lock is released.
        circuits
            .into_iter()
            .map(|(k, c)| (k, BreakerSnapshot::of(&c)))
            .collect()
    }
}

impl std::fmt::Debug for BreakerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BreakerHandle")
            .field("state", &self.state())
            .finish_non_exhaustive()
    }
}
