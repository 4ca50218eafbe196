//! The breaker's metric handles, registered once per layer (every keyed breaker of a
//! layer shares them); names and labels in `docs/metrics.md`.

use std::sync::Mutex;

use super::state::BreakerState;
use crate::classify::Verdict;
use crate::telemetry::{Counter, Gauge};
use crate::util::lock;

pub(crate) struct Metrics {
    pub(crate) name: String,
    state: [Gauge; 5],
    in_state: Mutex<[i64; 5]>,
    success: Counter,
    failure: Counter,
    ignored: Counter,
    slow: Counter,
    rejected: Counter,
    would_reject: Counter,
    transitions: [Counter; 5],
}

impl Metrics {
    pub(crate) fn new(name: &str) -> Self {
        let label = |extra: Option<(&'static str, &str)>| {
            let mut l = vec![("breaker", name.to_owned())];
            if let Some((k, v)) = extra {
                l.push((k, v.to_owned()));
            }
            l
        };
        let calls = |outcome| {
            Counter::register(
                "buttress_breaker_calls_total",
                &label(Some(("outcome", outcome))),
            )
        };
        let rejections = |mode| {
            Counter::register(
                "buttress_breaker_rejections_total",
                &label(Some(("mode", mode))),
            )
        };
        Self {
            name: name.to_owned(),
            state: BreakerState::ALL.map(|s| {
                Gauge::register(
                    "buttress_breaker_state",
                    &label(Some(("state", s.as_str()))),
                )
            }),
            in_state: Mutex::new([0; 5]),
            success: calls("success"),
            failure: calls("failure"),
            ignored: calls("ignored"),
            slow: Counter::register("buttress_breaker_slow_calls_total", &label(None)),
            rejected: rejections("reject"),
            would_reject: rejections("observe"),
            transitions: BreakerState::ALL.map(|s| {
                Counter::register(
                    "buttress_breaker_transitions_total",
                    &label(Some(("to", s.as_str()))),
                )
            }),
        }
    }

    #[inline]
    pub(crate) fn call(&self, verdict: Verdict, slow: bool) {
        match verdict {
            Verdict::Success => self.success.increment(1),
            Verdict::Failure => self.failure.increment(1),
            Verdict::Ignored => self.ignored.increment(1),
        }
        if slow {
            self.slow.increment(1);
        }
    }

    pub(crate) fn rejected(&self, enforced: bool) {
        if enforced {
            self.rejected.increment(1);
        } else {
            self.would_reject.increment(1);
        }
    }

    /// A breaker came into being (closed) or went away (in `state`).
    pub(crate) fn add(&self, state: BreakerState, delta: i64) {
        let mut n = lock(&self.in_state);
        let i = state.index();
        n[i] += delta;
        self.state[i].set(n[i] as f64);
    }

    /// A breaker moved from one state to another: the gauge of the old state goes
    /// down (to 0 for an unkeyed breaker), the new one's up.
    pub(crate) fn transition(&self, from: BreakerState, to: BreakerState) {
        let mut n = lock(&self.in_state);
        n[from.index()] -= 1;
        n[to.index()] += 1;
        self.state[from.index()].set(n[from.index()] as f64);
        self.state[to.index()].set(n[to.index()] as f64);
        drop(n);
        self.transitions[to.index()].increment(1);
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}
