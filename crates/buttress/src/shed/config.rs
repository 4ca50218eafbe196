use std::time::Duration;

use crate::Mode;

/// A shed layer's settings.
///
/// The defaults: a [`Gradient`](super::limit::Gradient) limit starting at 20 within
/// 5..=1000, no queue, the default priority rule, enforcing, and a one-second retry
/// delay suggested to refused callers.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct ShedConfig {
    /// The concurrency limit and how it adapts.
    pub limit: LimitConfig,
    /// Where calls over the limit wait.
    pub queue: QueueConfig,
    /// How priorities share the limit.
    pub priority: PriorityConfig,
    /// Enforce, or only report what would be refused. The drain switch is obeyed in
    /// both modes: it is an operator's command, not a policy decision.
    pub mode: Mode,
    /// The delay suggested to callers refused for overload or drain
    /// ([`Overloaded::retry_after`](crate::rejection::Overloaded::retry_after)).
    #[cfg_attr(feature = "serde", serde(with = "crate::duration::serde"))]
    pub retry_after: Duration,
}

impl Default for ShedConfig {
    fn default() -> Self {
        Self {
            limit: LimitConfig::default(),
            queue: QueueConfig::default(),
            priority: PriorityConfig::default(),
            mode: Mode::Enforce,
            retry_after: Duration::from_secs(1),
        }
    }
}

impl ShedConfig {
    /// The default settings with `algorithm` for the limit.
    pub fn new(algorithm: Algorithm) -> Self {
        Self {
            limit: LimitConfig {
                algorithm,
                ..LimitConfig::default()
            },
            ..Self::default()
        }
    }

    /// Sets the limit's starting value and bounds.
    #[must_use]
    pub fn with_limits(mut self, initial: usize, min: usize, max: usize) -> Self {
        self.limit.initial = initial;
        self.limit.min = min;
        self.limit.max = max;
        self
    }

    /// Lets up to `size` calls wait, each at most `max_wait`.
    #[must_use]
    pub fn with_queue(mut self, size: usize, max_wait: Duration) -> Self {
        self.queue.size = size;
        self.queue.max_wait = max_wait;
        self
    }

    /// Sets the mode.
    #[must_use]
    pub fn with_mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// The same settings with every value made usable: bounds ordered, shares within
    /// range. A config file can say anything; the layer never panics on it.
    pub fn normalized(&self) -> Self {
        self.clone().into_normalized()
    }

    /// [`normalized`](Self::normalized), consuming `self`.
    pub(crate) fn into_normalized(mut self) -> Self {
        self.limit = self.limit.normalized();
        self.priority = self.priority.normalized();
        self
    }
}

/// Which limit algorithm adapts the concurrency limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
pub enum Algorithm {
    /// [`Fixed`](super::limit::Fixed): `initial`, never changes.
    Fixed,
    /// [`Aimd`](super::limit::Aimd): +1 per round trip, x0.9 on a drop.
    Aimd,
    /// [`Gradient`](super::limit::Gradient): long- against short-term round trip.
    #[default]
    Gradient,
    /// [`Vegas`](super::limit::Vegas): estimated queue at the callee.
    Vegas,
}

/// The concurrency limit: its algorithm, its bounds and its guardrails.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct LimitConfig {
    /// The algorithm (default `gradient`).
    pub algorithm: Algorithm,
    /// The limit to start from (default 20).
    pub initial: usize,
    /// The lowest the limit may go (default 5; at least 1).
    pub min: usize,
    /// The highest the limit may go (default 1000).
    pub max: usize,
    /// The slowest round trip still considered healthy: the baseline (no-load) round
    /// trip never rises above it, however long an incident lasts (default none).
    #[cfg_attr(feature = "serde", serde(with = "crate::duration::serde::option"))]
    pub max_healthy_rtt: Option<Duration>,
    /// How long the adaptive algorithms remember the fastest round trip before their
    /// baseline may rise (default 60 s).
    #[cfg_attr(feature = "serde", serde(with = "crate::duration::serde"))]
    pub baseline_window: Duration,
}

impl Default for LimitConfig {
    fn default() -> Self {
        Self {
            algorithm: Algorithm::Gradient,
            initial: 20,
            min: 5,
            max: 1000,
            max_healthy_rtt: None,
            baseline_window: Duration::from_secs(60),
        }
    }
}

impl LimitConfig {
    /// The same settings made consistent: `1 <= min <= initial <= max`.
    pub fn normalized(&self) -> Self {
        let min = self.min.max(1);
        let max = self.max.max(min);
        Self {
            min,
            max,
            initial: self.initial.clamp(min, max),
            ..*self
        }
    }

    /// Builds the configured algorithm.
    pub fn build(&self) -> Box<dyn super::Limit> {
        use super::limit::{Aimd, Fixed, Gradient, Vegas};
        match self.algorithm {
            Algorithm::Fixed => Box::new(Fixed::from_config(self)),
            Algorithm::Aimd => Box::new(Aimd::from_config(self)),
            Algorithm::Gradient => Box::new(Gradient::from_config(self)),
            Algorithm::Vegas => Box::new(Vegas::from_config(self)),
        }
    }
}

/// The queue in front of the limit.
///
/// Waiters are served first in, first out while the queue drains; once a *standing*
/// queue forms (the oldest waiter has waited longer than `target` for a whole
/// `interval`, as in CoDel), the newest are served first, so that under overload the
/// callers still waiting get fresh answers instead of everyone getting stale ones. A
/// waiter leaves after `max_wait` or when its request's deadline passes, whichever is
/// first. A `size` of zero (the default) means no queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct QueueConfig {
    /// Callers allowed to wait at once (default 0: refuse at once).
    pub size: usize,
    /// How long one caller may wait (default 50 ms).
    #[cfg_attr(feature = "serde", serde(with = "crate::duration::serde"))]
    pub max_wait: Duration,
    /// Queueing delay above which the queue may be standing (default 5 ms). Keep it
    /// below `max_wait`, or the queue never turns LIFO.
    #[cfg_attr(feature = "serde", serde(with = "crate::duration::serde"))]
    pub target: Duration,
    /// How long the delay must stay above `target` before the queue turns LIFO
    /// (default 100 ms).
    #[cfg_attr(feature = "serde", serde(with = "crate::duration::serde"))]
    pub interval: Duration,
}

impl Default for QueueConfig {
    fn default() -> Self {
        Self {
            size: 0,
            max_wait: Duration::from_millis(50),
            target: Duration::from_millis(5),
            interval: Duration::from_millis(100),
        }
    }
}

/// How priorities share the limit `L`.
///
/// | priority | admitted at once while in flight is below | queued | when the queue is full |
/// |---|---|---|---|
/// | critical | `L + max(1, ceil(L * critical_headroom))` | served first | displaces the oldest lower-priority waiter |
/// | default | `L` | after critical | displaces the oldest sheddable waiter |
/// | sheddable | `max(1, floor(L * sheddable_share))` | last | refused |
///
/// So sheddable calls are refused first, as soon as the service is a little busy;
/// critical calls may use headroom above the limit that the others cannot. Once the
/// queue is standing (LIFO), a newcomer also displaces the oldest waiter of its own
/// priority: under overload the freshest requests win.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct PriorityConfig {
    /// The fraction of the limit critical calls may use on top of it (default 0.1).
    pub critical_headroom: f64,
    /// The fraction of the limit sheddable calls may fill (default 0.75).
    pub sheddable_share: f64,
}

impl Default for PriorityConfig {
    fn default() -> Self {
        Self {
            critical_headroom: 0.1,
            sheddable_share: 0.75,
        }
    }
}

impl PriorityConfig {
    /// Headroom within `0..=10`, share within `0..=1`; a non-number becomes the default.
    pub fn normalized(&self) -> Self {
        let d = Self::default();
        let fix = |x: f64, def: f64, hi: f64| if x.is_finite() { x.clamp(0.0, hi) } else { def };
        Self {
            critical_headroom: fix(self.critical_headroom, d.critical_headroom, 10.0),
            sheddable_share: fix(self.sheddable_share, d.sheddable_share, 1.0),
        }
    }

    /// The in-flight thresholds for a limit, indexed by [`lane`]: sheddable, default,
    /// critical.
    pub(crate) fn caps(&self, limit: usize) -> [usize; 3] {
        let l = limit as f64;
        let headroom = ((l * self.critical_headroom).ceil() as usize).max(1);
        let sheddable = ((l * self.sheddable_share).floor() as usize).clamp(1, limit.max(1));
        [sheddable, limit, limit.saturating_add(headroom)]
    }
}

/// The index of a priority in per-priority arrays: sheddable 0, default 1, critical 2.
pub(crate) fn lane(p: crate::Priority) -> usize {
    match p {
        crate::Priority::Sheddable => 0,
        crate::Priority::Default => 1,
        crate::Priority::Critical => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_follow_the_documented_rule() {
        let p = PriorityConfig::default();
        assert_eq!(p.caps(50), [37, 50, 55]);
        assert_eq!(p.caps(1), [1, 1, 2]);
        assert_eq!(p.caps(5), [3, 5, 6]);
        let none = PriorityConfig {
            critical_headroom: 0.0,
            sheddable_share: 1.0,
        };
        assert_eq!(
            none.caps(10),
            [10, 10, 11],
            "critical always gets one slot of headroom"
        );
    }

    #[test]
    fn nonsense_values_are_made_usable() {
        let c = ShedConfig {
            limit: LimitConfig {
                initial: 0,
                min: 0,
                max: 0,
                ..LimitConfig::default()
            },
            priority: PriorityConfig {
                critical_headroom: f64::NAN,
                sheddable_share: 7.0,
            },
            ..ShedConfig::default()
        }
        .normalized();
        assert_eq!((c.limit.min, c.limit.initial, c.limit.max), (1, 1, 1));
        assert_eq!(c.priority.critical_headroom, 0.1);
        assert_eq!(c.priority.sheddable_share, 1.0);
    }

    #[cfg(feature = "serde")]
    #[test]
    fn reads_the_design_config_shape() {
        let c: ShedConfig = serde_json::from_str(
            r#"{"limit": {"algorithm": "gradient", "initial": 20, "min": 5, "max": 1000},
                "queue": {"size": 64, "max_wait": "50ms"}}"#,
        )
        .unwrap();
        assert_eq!(c.limit.algorithm, Algorithm::Gradient);
        assert_eq!(c.queue.size, 64);
        assert_eq!(c.queue.max_wait, Duration::from_millis(50));
        assert!(serde_json::from_str::<ShedConfig>(r#"{"limits": {}}"#).is_err());
        let back: ShedConfig = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
        assert_eq!(back, c);
    }
}
