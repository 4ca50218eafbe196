//! One connection's reconnection logic, without I/O or a `Service`: the outage it is
//! in, the backoff delays of that outage and the budget check before each attempt.

use std::error::Error;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::backoff::{Backoff, Delays};
use crate::budget::Budget;
use crate::rand::Random;

/// An error kept to be reported (by the handle, and as the source of
/// [`Reconnecting`](super::error::Reconnecting)) as long as an outage lasts.
pub(crate) type SharedError = Arc<dyn Error + Send + Sync + 'static>;

/// `error` and its sources, joined: connectors often wrap the interesting part
/// ("client error (Connect)" hides "connection refused").
pub(crate) fn chain(error: &(dyn Error + 'static)) -> String {
    let mut out = error.to_string();
    let mut next = error.source();
    while let Some(e) = next {
        let text = e.to_string();
        if !out.ends_with(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = e.source();
    }
    out
}

/// What one connection reports to the layer's handle.
#[derive(Debug, Clone, Default)]
pub(crate) struct LinkStatus {
    pub(crate) connected: bool,
    /// When the current outage began (the connection was lost or the first attempt
    /// failed); `None` while connected or before any failure.
    pub(crate) down_since: Option<Instant>,
    /// Failed attempts in the current outage.
    pub(crate) attempts: u32,
    /// When the next attempt is due, while waiting for it.
    pub(crate) next_attempt_at: Option<Instant>,
    pub(crate) last_error: Option<SharedError>,
}

/// The reconnection state of one connection.
#[derive(Debug)]
pub(crate) struct Link {
    status: LinkStatus,
    /// The delays of the current outage, started from the backoff in force when it
    /// began.
    delays: Option<Delays>,
}

/// How a connection ended: what the service saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ended {
    /// An attempt to connect failed.
    AttemptFailed,
    /// An established connection failed.
    Lost,
}

impl Link {
    pub(crate) fn new() -> Self {
        Self {
            status: LinkStatus::default(),
            delays: None,
        }
    }

    pub(crate) fn status(&self) -> &LinkStatus {
        &self.status
    }

    /// Whether the connection is in an outage: lost, or never established after a
    /// failed attempt.
    pub(crate) fn in_outage(&self) -> bool {
        self.status.down_since.is_some()
    }

    /// Before an attempt: outside an outage it is free; inside one it takes a token
    /// from `budget`, and when the budget refuses, returns how long to put the
    /// attempt off.
    pub(crate) fn before_attempt(
        &mut self,
        now: Instant,
        budget: Option<&Budget>,
        backoff: &Backoff,
        rng: &(impl Random + ?Sized),
    ) -> Result<(), Duration> {
        if !self.in_outage() {
            return Ok(());
        }
        match budget {
            Some(b) if !b.withdraw(now) => {
                let delay = self.next_delay(backoff, rng);
                self.status.next_attempt_at = now.checked_add(delay);
                Err(delay)
            }
            _ => {
                self.status.next_attempt_at = None;
                Ok(())
            }
        }
    }

    /// A connection is established. Returns the outage it ends, if any: when it
    /// began and how many attempts failed.
    pub(crate) fn connected(&mut self) -> Option<(Instant, u32)> {
        let ended = self
            .status
            .down_since
            .map(|since| (since, self.status.attempts));
        self.status = LinkStatus {
            connected: true,
            ..LinkStatus::default()
        };
        self.delays = None;
        ended
    }

    /// The connection ended with `error` at `now`; returns the delay before the next
    /// attempt.
    pub(crate) fn ended(
        &mut self,
        how: Ended,
        now: Instant,
        error: SharedError,
        backoff: &Backoff,
        rng: &(impl Random + ?Sized),
    ) -> Duration {
        self.status.connected = false;
        if self.status.down_since.is_none() {
            self.status.down_since = Some(now);
        }
        if how == Ended::AttemptFailed {
            self.status.attempts = self.status.attempts.saturating_add(1);
        }
        self.status.last_error = Some(error);
        let delay = self.next_delay(backoff, rng);
        self.status.next_attempt_at = now.checked_add(delay);
        delay
    }

    /// The connection was closed on purpose (left idle too long): reconnect without
    /// an outage.
    pub(crate) fn closed(&mut self) {
        self.status = LinkStatus::default();
        self.delays = None;
    }

    fn next_delay(&mut self, backoff: &Backoff, rng: &(impl Random + ?Sized)) -> Duration {
        self.delays
            .get_or_insert_with(|| backoff.delays())
            .next_delay(rng)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backoff::Jitter;
    use crate::budget::BudgetConfig;
    use crate::rand::SplitMix;
    use proptest::prelude::*;
    use std::io;

    const MS: Duration = Duration::from_millis(1);

    fn err() -> SharedError {
        Arc::new(std::io::Error::from(std::io::ErrorKind::ConnectionRefused))
    }

    #[test]
    fn an_outage_backs_off_to_the_cap_and_ends_on_connect() {
        let backoff = Backoff::exponential(10 * MS, 80 * MS).with_jitter(Jitter::None);
        let rng = SplitMix::seeded(1);
        let t0 = Instant::now();
        let mut link = Link::new();
        assert!(link.before_attempt(t0, None, &backoff, &rng).is_ok());
        assert_eq!(link.connected(), None);
        assert!(link.status().connected);

        let lost_at = t0 + 5 * MS;
        let first = link.ended(Ended::Lost, lost_at, err(), &backoff, &rng);
        assert_eq!(first, 10 * MS);
        assert!(link.in_outage());
        assert_eq!(
            link.status().attempts,
            0,
            "a lost connection is not a failed attempt"
        );
        assert_eq!(link.status().next_attempt_at, Some(lost_at + 10 * MS));
        let delays: Vec<_> = (0..5)
            .map(|_| link.ended(Ended::AttemptFailed, lost_at + MS, err(), &backoff, &rng))
            .collect();
        assert_eq!(delays, [20 * MS, 40 * MS, 80 * MS, 80 * MS, 80 * MS]);
        assert_eq!(link.status().attempts, 5);
        assert_eq!(
            link.status().down_since,
            Some(lost_at),
            "the outage began when it was lost"
        );
        assert!(link.status().last_error.is_some());

        assert_eq!(link.connected(), Some((lost_at, 5)));
        assert!(!link.in_outage());
        assert_eq!(link.status().attempts, 0);
        assert!(link.status().last_error.is_none());
        // The next outage starts its backoff afresh.
        assert_eq!(
            link.ended(Ended::AttemptFailed, lost_at, err(), &backoff, &rng),
            10 * MS
        );
    }

    #[test]
    fn the_budget_is_asked_only_during_an_outage() {
        let backoff = Backoff::constant(10 * MS);
        let rng = SplitMix::seeded(1);
        let t0 = Instant::now();
        // Two tokens: min_per_second 1 over a 2 s ttl.
        let budget = Budget::starting_at(
            BudgetConfig {
                ratio: 0.0,
                min_per_second: 1,
                ttl: Duration::from_secs(2),
            },
            t0,
        );
        let mut link = Link::new();
        for _ in 0..5 {
            assert!(
                link.before_attempt(t0, Some(&budget), &backoff, &rng)
                    .is_ok()
            );
        }
        link.ended(Ended::AttemptFailed, t0, err(), &backoff, &rng);
        assert!(
            link.before_attempt(t0, Some(&budget), &backoff, &rng)
                .is_ok()
        );
        assert!(
            link.before_attempt(t0, Some(&budget), &backoff, &rng)
                .is_ok()
        );
        assert_eq!(
            link.before_attempt(t0, Some(&budget), &backoff, &rng),
            Err(10 * MS)
        );
        assert_eq!(link.status().next_attempt_at, Some(t0 + 10 * MS));
        // Withdrawals expire after the ttl and the budget allows attempts again.
        let later = t0 + Duration::from_millis(2300);
        assert!(
            link.before_attempt(later, Some(&budget), &backoff, &rng)
                .is_ok()
        );
        assert_eq!(link.status().next_attempt_at, None);
    }

    #[test]
    fn the_error_chain_names_the_real_cause() {
        #[derive(Debug)]
        struct Wrapper(io::Error);
        impl std::fmt::Display for Wrapper {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("client error (Connect)")
            }
        }
        impl Error for Wrapper {
            fn source(&self) -> Option<&(dyn Error + 'static)> {
                Some(&self.0)
            }
        }
        let e = Wrapper(io::Error::new(
            io::ErrorKind::ConnectionRefused,
            "connection refused",
        ));
        assert_eq!(chain(&e), "client error (Connect): connection refused");
    }

    #[test]
    fn closing_an_idle_connection_is_no_outage() {
        let backoff = Backoff::constant(10 * MS);
        let rng = SplitMix::seeded(1);
        let mut link = Link::new();
        link.connected();
        link.closed();
        assert!(!link.in_outage());
        assert!(!link.status().connected);
        assert!(
            link.before_attempt(Instant::now(), None, &backoff, &rng)
                .is_ok()
        );
    }

    proptest! {
        /// Against a naive model: within one outage the n-th delay is the backoff's
        /// n-th delay (same seed), the attempts count failures only, and the outage
        /// starts at its first failure.
        #[test]
        fn delays_follow_the_backoff_within_an_outage(
            events in prop::collection::vec(0u8..3, 1..60),
            seed in any::<u64>(),
            base_ms in 1u64..100,
            max_ms in 1u64..2_000,
        ) {
            let backoff = Backoff::exponential(MS * base_ms as u32, MS * max_ms as u32);
            let rng = SplitMix::seeded(seed);
            let model_rng = SplitMix::seeded(seed);
            let t0 = Instant::now();
            let mut link = Link::new();
            let mut model_delays: Option<Delays> = None;
            let mut model_attempts = 0u32;
            let mut model_since: Option<Instant> = None;
            for (i, e) in events.into_iter().enumerate() {
                let now = t0 + MS * i as u32;
                match e {
                    0 => {
                        let ended = link.connected();
                        prop_assert_eq!(ended, model_since.map(|s| (s, model_attempts)));
                        model_delays = None;
                        model_attempts = 0;
                        model_since = None;
                    }
                    _ => {
                        let how = if e == 1 { Ended::AttemptFailed } else { Ended::Lost };
                        let d = link.ended(how, now, err(), &backoff, &rng);
                        let expected = model_delays.get_or_insert_with(|| backoff.delays()).next_delay(&model_rng);
                        prop_assert_eq!(d, expected);
                        prop_assert!(d <= backoff.max);
                        if how == Ended::AttemptFailed {
                            model_attempts += 1;
                        }
                        model_since.get_or_insert(now);
                    }
                }
                prop_assert_eq!(link.status().attempts, model_attempts);
                prop_assert_eq!(link.status().down_since, model_since);
                prop_assert_eq!(link.in_outage(), model_since.is_some());
            }
        }
    }
}
