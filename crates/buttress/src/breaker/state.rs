//! The breaker's state machine as plain data: closed, open, half-open, forced open and
//! disabled, the window it trips on, the half-open probe accounting and the open-time
//! growth. No atomics, no locks, no clock reads of its own except where noted: the
//! caller passes the instants in, which is what lets it be tested without any
//! `Service` (and [`Circuit`](super::circuit) wraps it in a mutex).

use std::time::Duration;

use tokio::time::Instant;

use super::config::{
    BreakerConfig, BreakerMode, MAX_WINDOW_CALLS, SlowCall, TIME_BUCKETS, Window as WindowShape,
};
use super::window::{CountWindow, Counts, Outcome, TimeWindow, Window, reaches};
use crate::backoff::{Backoff, Delays, Jitter};
use crate::rand::{Random, Rng};

/// The state of one breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BreakerState {
    /// Calls go through and their outcomes fill the window.
    Closed,
    /// Calls are refused until the open time has passed.
    Open,
    /// A fixed number of probe calls go through; the rest are refused. Their results
    /// decide together whether the breaker closes or opens again.
    HalfOpen,
    /// Opened by hand ([`BreakerHandle::force_open`](super::BreakerHandle::force_open)):
    /// calls are refused until it is reset.
    ForcedOpen,
    /// Turned off by hand ([`BreakerHandle::disable`](super::BreakerHandle::disable)):
    /// always closed, counting nothing, until it is reset.
    Disabled,
}

impl BreakerState {
    /// Every state, in the order of [`BreakerState::index`].
    pub const ALL: [BreakerState; 5] = [
        BreakerState::Closed,
        BreakerState::Open,
        BreakerState::HalfOpen,
        BreakerState::ForcedOpen,
        BreakerState::Disabled,
    ];

    /// A small number for the state (0 closed, 1 open, 2 half-open, 3 forced open,
    /// 4 disabled).
    pub const fn index(self) -> usize {
        match self {
            BreakerState::Closed => 0,
            BreakerState::Open => 1,
            BreakerState::HalfOpen => 2,
            BreakerState::ForcedOpen => 3,
            BreakerState::Disabled => 4,
        }
    }

    /// The state's name as used in metrics labels and config (`half_open`).
    pub const fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
            BreakerState::ForcedOpen => "forced_open",
            BreakerState::Disabled => "disabled",
        }
    }

    pub(crate) fn from_index(i: u64) -> Self {
        match i {
            1 => BreakerState::Open,
            2 => BreakerState::HalfOpen,
            3 => BreakerState::ForcedOpen,
            4 => BreakerState::Disabled,
            _ => BreakerState::Closed,
        }
    }
}

/// One change of state, as published to [`subscribe`](super::BreakerHandle::subscribe)rs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transition {
    /// The state left.
    pub from: BreakerState,
    /// The state entered.
    pub to: BreakerState,
    /// How many transitions this breaker has made, this one included: a subscriber
    /// that sees a gap missed some (a watch channel keeps only the latest).
    pub seq: u64,
}

/// Why a transition happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    FailureRate,
    SlowCallRate,
    ConsecutiveFailures,
    ProbesFailed,
    ProbesPassed,
    OpenTimeElapsed,
    Forced,
    Disabled,
    Reset,
}

impl Reason {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Reason::FailureRate => "failure rate",
            Reason::SlowCallRate => "slow-call rate",
            Reason::ConsecutiveFailures => "consecutive failures",
            Reason::ProbesFailed => "half-open probes failed",
            Reason::ProbesPassed => "half-open probes passed",
            Reason::OpenTimeElapsed => "open time elapsed",
            Reason::Forced => "forced open",
            Reason::Disabled => "disabled",
            Reason::Reset => "reset",
        }
    }
}

/// A transition with what the logs and the circuit need to know about it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Change {
    pub(crate) transition: Transition,
    pub(crate) reason: Reason,
    /// The counts that decided it (the window, or the probes).
    pub(crate) counts: Counts,
    /// When the breaker turns half-open, for a transition to open.
    pub(crate) open_until: Option<Instant>,
    pub(crate) open_for: Option<Duration>,
}

/// What to do with a call (or a readiness check).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Closed: let it through and count it under this epoch.
    Call(u64),
    /// Half-open: it holds one of the probe slots of this epoch.
    Probe(u64),
    /// Refuse it. `wake_at` is when this could change by itself (the end of the open
    /// time); `None` means only another call's completion or a handle can change it.
    Reject {
        retry_after: Duration,
        wake_at: Option<Instant>,
    },
    /// Disabled: let it through, count nothing.
    Pass,
}

/// The settings, clamped to values the state machine can honour.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Settings {
    pub(crate) window: WindowShape,
    pub(crate) failure_rate: f64,
    pub(crate) slow_call: Option<SlowCall>,
    pub(crate) consecutive_failures: Option<u32>,
    pub(crate) minimum_calls: u32,
    pub(crate) open_for: Duration,
    pub(crate) max_open_for: Duration,
    pub(crate) half_open_probes: u32,
    pub(crate) jitter: f64,
    pub(crate) mode: BreakerMode,
}

fn clamp_rate(x: f64) -> f64 {
    if x.is_nan() {
        1.0
    } else {
        x.clamp(f64::MIN_POSITIVE, 1.0)
    }
}

impl Settings {
    pub(crate) fn new(c: &BreakerConfig) -> Self {
        let window = match c.window {
            WindowShape::Calls(n) => WindowShape::Calls(n.clamp(1, MAX_WINDOW_CALLS)),
            WindowShape::Duration(d) => {
                WindowShape::Duration(d.max(Duration::from_nanos(u64::from(TIME_BUCKETS))))
            }
        };
        let open_for = c.open_for.max(Duration::from_millis(1));
        Self {
            window,
            failure_rate: clamp_rate(c.failure_rate),
            slow_call: c.slow_call.map(|s| SlowCall {
                after: s.after,
                rate: clamp_rate(s.rate),
            }),
            consecutive_failures: c.consecutive_failures.map(|n| n.max(1)),
            minimum_calls: c.minimum_calls.max(1),
            open_for,
            max_open_for: c.max_open_for.max(open_for),
            half_open_probes: c.half_open_probes.max(1),
            jitter: if c.jitter.is_nan() {
                0.0
            } else {
                c.jitter.clamp(0.0, 1.0)
            },
            mode: c.mode,
        }
    }

    fn backoff(&self) -> Backoff {
        Backoff::exponential(self.open_for, self.max_open_for).with_jitter(Jitter::None)
    }

    fn make_window(&self, origin: Instant) -> Window {
        match self.window {
            WindowShape::Calls(n) => Window::Count(CountWindow::new(n)),
            WindowShape::Duration(d) => Window::Time(TimeWindow::new(d, TIME_BUCKETS, origin)),
        }
    }

    /// Whether a call needs its start instant (slow-call detection).
    pub(crate) fn needs_start(&self) -> bool {
        self.slow_call.is_some()
    }

    /// Whether a call needs its completion instant (slow calls or a time window).
    pub(crate) fn needs_end(&self) -> bool {
        self.slow_call.is_some() || matches!(self.window, WindowShape::Duration(_))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Closed,
    Open {
        until: Instant,
    },
    HalfOpen {
        issued: u32,
        done: u32,
        failures: u32,
        slow: u32,
    },
    ForcedOpen,
    Disabled,
}

impl Phase {
    fn state(self) -> BreakerState {
        match self {
            Phase::Closed => BreakerState::Closed,
            Phase::Open { .. } => BreakerState::Open,
            Phase::HalfOpen { .. } => BreakerState::HalfOpen,
            Phase::ForcedOpen => BreakerState::ForcedOpen,
            Phase::Disabled => BreakerState::Disabled,
        }
    }
}

/// What [`Core::view`] reports.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct View {
    pub(crate) state: BreakerState,
    pub(crate) counts: Counts,
    pub(crate) consecutive_failures: u32,
    pub(crate) open_remaining: Option<Duration>,
    pub(crate) open_for: Option<Duration>,
    pub(crate) probes_in_flight: u32,
    pub(crate) probes_done: u32,
    pub(crate) transitions: u64,
    pub(crate) settings: Settings,
}

/// One breaker's state machine; see the [module docs](self).
#[derive(Debug)]
pub(crate) struct Core {
    settings: Settings,
    window: Window,
    /// `minimum_calls`, capped at the size of a count window.
    minimum: u64,
    consecutive: u32,
    phase: Phase,
    epoch: u64,
    delays: Delays,
    last_open_for: Option<Duration>,
    rng: Rng,
    origin: Instant,
}

impl Core {
    pub(crate) fn new(settings: Settings, rng: Rng, origin: Instant) -> Self {
        let window = settings.make_window(origin);
        Self {
            minimum: u64::from(settings.minimum_calls).min(window.capacity()),
            window,
            delays: settings.backoff().delays(),
            settings,
            consecutive: 0,
            phase: Phase::Closed,
            epoch: 0,
            last_open_for: None,
            rng,
            origin,
        }
    }

    #[cfg(test)]
    pub(crate) fn state(&self) -> BreakerState {
        self.phase.state()
    }

    /// Bumped on every transition: a call admitted under an older epoch is not counted.
    #[cfg(test)]
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch
    }

    #[cold]
    fn change(&mut self, to: Phase, reason: Reason, counts: Counts) -> Change {
        let from = self.phase.state();
        self.phase = to;
        self.epoch += 1;
        let (open_until, open_for) = match to {
            Phase::Open { until } => (Some(until), self.last_open_for),
            _ => (None, None),
        };
        Change {
            transition: Transition {
                from,
                to: to.state(),
                seq: self.epoch,
            },
            reason,
            counts,
            open_until,
            open_for,
        }
    }

    #[cold]
    fn trip(&mut self, now: Instant, reason: Reason, counts: Counts) -> Change {
        if !matches!(self.phase, Phase::HalfOpen { .. }) {
            // A trip from closed starts the growth over: a clean close has happened.
            self.delays = self.settings.backoff().delays();
        }
        let nominal = self.delays.next_delay(&self.rng);
        let open_for = if self.settings.jitter > 0.0 {
            nominal.mul_f64(1.0 - self.settings.jitter * self.rng.next_f64())
        } else {
            nominal
        };
        self.last_open_for = Some(open_for);
        let until = now
            .checked_add(open_for)
            .unwrap_or(now + Duration::from_secs(86_400 * 365));
        self.change(Phase::Open { until }, reason, counts)
    }

    #[cold]
    fn close(&mut self, reason: Reason, counts: Counts) -> Change {
        self.window.clear();
        self.consecutive = 0;
        self.change(Phase::Closed, reason, counts)
    }

    /// Decides what to do with a call, or a readiness check, at `now`. Turns an open
    /// breaker whose time has passed half-open, and takes a probe slot when one is
    /// free.
    pub(crate) fn admit(&mut self, now: Instant) -> (Admission, Option<Change>) {
        let mut change = None;
        if let Phase::Open { until } = self.phase {
            if now < until {
                let retry_after = until - now;
                return (
                    Admission::Reject {
                        retry_after,
                        wake_at: Some(until),
                    },
                    None,
                );
            }
            change = Some(self.change(
                Phase::HalfOpen {
                    issued: 0,
                    done: 0,
                    failures: 0,
                    slow: 0,
                },
                Reason::OpenTimeElapsed,
                Counts::default(),
            ));
        }
        let admission = match &mut self.phase {
            Phase::Closed => Admission::Call(self.epoch),
            Phase::Disabled => Admission::Pass,
            Phase::HalfOpen { issued, .. } if *issued < self.settings.half_open_probes => {
                *issued += 1;
                Admission::Probe(self.epoch)
            }
            Phase::HalfOpen { .. } => Admission::Reject {
                retry_after: Duration::ZERO,
                wake_at: None,
            },
            Phase::ForcedOpen => Admission::Reject {
                retry_after: self.settings.open_for,
                wake_at: None,
            },
            Phase::Open { .. } => unreachable_open(),
        };
        (admission, change)
    }

    /// Records a completed call admitted under `epoch` (as a probe or not), that failed
    /// or not and was slow or not (the caller compares its duration with
    /// `slow_call.after`). `end` is its completion instant: a time window needs it;
    /// tripping reads the clock when it is not given.
    #[inline]
    pub(crate) fn record(
        &mut self,
        epoch: u64,
        probe: bool,
        failure: bool,
        slow: bool,
        end: Option<Instant>,
    ) -> Option<Change> {
        if epoch != self.epoch {
            return None;
        }
        let slow = slow && self.settings.slow_call.is_some();
        match &mut self.phase {
            Phase::Closed if !probe => {
                let o = Outcome { failure, slow };
                self.consecutive = if failure {
                    self.consecutive.saturating_add(1)
                } else {
                    0
                };
                // A plain success cannot raise a rate: the window was under the
                // thresholds when they were last checked (or it would have tripped),
                // unless this call brings it up to the minimum or a time window has
                // slid since (successes leaving raise the rates).
                let plain = !failure && !slow;
                let counts = match &mut self.window {
                    Window::Count(w) => {
                        if w.push(o) > self.minimum && plain {
                            return None;
                        }
                        w.counts()
                    }
                    Window::Time(w) => {
                        w.record(end.unwrap_or_else(Instant::now), o);
                        let counts = w.counts();
                        if !w.take_slid() && counts.calls > self.minimum && plain {
                            return None;
                        }
                        counts
                    }
                };
                self.evaluate(counts, end)
            }
            Phase::HalfOpen {
                done,
                failures,
                slow: slow_count,
                ..
            } if probe => {
                *done += 1;
                *failures += u32::from(failure);
                *slow_count += u32::from(slow);
                self.decide(end)
            }
            _ => None,
        }
    }

    /// Whether the window's `counts` trip a closed breaker.
    fn evaluate(&mut self, counts: Counts, end: Option<Instant>) -> Option<Change> {
        let now = || end.unwrap_or_else(Instant::now);
        if self
            .settings
            .consecutive_failures
            .is_some_and(|n| self.consecutive >= n)
        {
            return Some(self.trip(now(), Reason::ConsecutiveFailures, counts));
        }
        if counts.calls >= self.minimum {
            if reaches(counts.failures, counts.calls, self.settings.failure_rate) {
                return Some(self.trip(now(), Reason::FailureRate, counts));
            }
            if let Some(s) = self.settings.slow_call {
                if reaches(counts.slow, counts.calls, s.rate) {
                    return Some(self.trip(now(), Reason::SlowCallRate, counts));
                }
            }
        }
        None
    }

    /// Once every probe has finished: close if their failure (and slow-call) rate is
    /// under the threshold, else open again for longer.
    #[cold]
    fn decide(&mut self, end: Option<Instant>) -> Option<Change> {
        let Phase::HalfOpen {
            done,
            failures,
            slow,
            ..
        } = self.phase
        else {
            return None;
        };
        if done < self.settings.half_open_probes {
            return None;
        }
        let counts = Counts {
            calls: u64::from(done),
            failures: u64::from(failures),
            slow: u64::from(slow),
        };
        let failed = reaches(counts.failures, counts.calls, self.settings.failure_rate)
            || self
                .settings
                .slow_call
                .is_some_and(|s| reaches(counts.slow, counts.calls, s.rate));
        Some(if failed {
            self.trip(
                end.unwrap_or_else(Instant::now),
                Reason::ProbesFailed,
                counts,
            )
        } else {
            self.close(Reason::ProbesPassed, counts)
        })
    }

    /// Frees a probe slot of `epoch` whose call was dropped or ignored (not counted).
    /// Returns whether a slot was freed.
    pub(crate) fn release_probe(&mut self, epoch: u64) -> bool {
        if epoch != self.epoch {
            return false;
        }
        match &mut self.phase {
            Phase::HalfOpen { issued, done, .. } if *issued > *done => {
                *issued -= 1;
                true
            }
            _ => false,
        }
    }

    /// The epoch under which plain successes may be set aside and recorded later, in
    /// a batch, by [`record_successes`](Self::record_successes): closed, a count
    /// window, and one that already holds enough calls that pushing a success cannot
    /// reach the rate checks in [`record`](Self::record) (it would return `None` at
    /// once, having only pushed the success and reset the consecutive failures).
    /// While nothing but such successes reaches the core, this stays true.
    #[inline]
    pub(crate) fn batch_epoch(&self) -> Option<u64> {
        match (&self.phase, &self.window) {
            (Phase::Closed, Window::Count(w)) => {
                let size = u64::try_from(w.size()).unwrap_or(u64::MAX);
                ((w.counts().calls + 1).min(size) > self.minimum).then_some(self.epoch)
            }
            _ => None,
        }
    }

    /// Records `n` plain successes (not probes, not slow) admitted under an epoch
    /// whose low 32 bits are `epoch_low`, set aside while
    /// [`batch_epoch`](Self::batch_epoch) allowed it: the same as `n` calls to
    /// [`record`](Self::record), each of which would have returned `None`.
    pub(crate) fn record_successes(&mut self, epoch_low: u32, n: u64) {
        if n == 0 || self.epoch as u32 != epoch_low || self.batch_epoch().is_none() {
            return;
        }
        self.consecutive = 0;
        if let Window::Count(w) = &mut self.window {
            for _ in 0..n {
                w.push(Outcome::default());
            }
        }
    }

    /// Opens the breaker until [`reset`](Self::reset).
    pub(crate) fn force_open(&mut self) -> Option<Change> {
        (self.phase != Phase::ForcedOpen)
            .then(|| self.change(Phase::ForcedOpen, Reason::Forced, Counts::default()))
    }

    /// Keeps the breaker closed, counting nothing, until [`reset`](Self::reset).
    pub(crate) fn disable(&mut self) -> Option<Change> {
        (self.phase != Phase::Disabled)
            .then(|| self.change(Phase::Disabled, Reason::Disabled, Counts::default()))
    }

    /// Closes the breaker with an empty window and the open time back at `open_for`.
    pub(crate) fn reset(&mut self) -> Option<Change> {
        self.delays = self.settings.backoff().delays();
        self.last_open_for = None;
        if self.phase == Phase::Closed {
            self.window.clear();
            self.consecutive = 0;
            return None;
        }
        Some(self.close(Reason::Reset, Counts::default()))
    }

    /// Applies new settings, keeping the window when its shape is unchanged (a new
    /// shape starts empty) and the state. A half-open breaker whose finished probes
    /// now reach the new probe count decides at once; a closed one whose window
    /// already exceeds the new thresholds trips at once.
    pub(crate) fn reconfigure(&mut self, settings: Settings, now: Instant) -> Option<Change> {
        let old = std::mem::replace(&mut self.settings, settings);
        if old.window != settings.window {
            self.window = settings.make_window(self.origin);
        }
        self.minimum = u64::from(settings.minimum_calls).min(self.window.capacity());
        if old.open_for != settings.open_for || old.max_open_for != settings.max_open_for {
            self.delays = settings.backoff().delays();
        }
        match self.phase {
            Phase::HalfOpen { done, .. } if done > 0 => self.decide(Some(now)),
            // New thresholds may already be exceeded by the window as it stands.
            Phase::Closed => {
                let counts = self.window.counts(Some(now));
                self.evaluate(counts, Some(now))
            }
            _ => None,
        }
    }

    /// The state and the window's totals at `now` (a time window slides to it).
    pub(crate) fn view(&mut self, now: Instant) -> View {
        let (probes_in_flight, probes_done) = match self.phase {
            Phase::HalfOpen { issued, done, .. } => (issued - done, done),
            _ => (0, 0),
        };
        View {
            state: self.phase.state(),
            counts: self.window.counts(Some(now)),
            consecutive_failures: self.consecutive,
            open_remaining: match self.phase {
                Phase::Open { until } => Some(until.saturating_duration_since(now)),
                _ => None,
            },
            open_for: self.last_open_for,
            probes_in_flight,
            probes_done,
            transitions: self.epoch,
            settings: self.settings,
        }
    }
}

// `admit` leaves the open phase before matching: an open breaker either returned
// early or turned half-open.
#[cold]
fn unreachable_open() -> Admission {
    Admission::Reject {
        retry_after: Duration::ZERO,
        wake_at: None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::window::tests::Model;
    use super::*;
    use proptest::prelude::*;

    const MS: Duration = Duration::from_millis(1);

    fn exact(config: BreakerConfig) -> BreakerConfig {
        config.with_jitter(0.0)
    }

    fn core(config: BreakerConfig, origin: Instant) -> Core {
        Core::new(Settings::new(&config), crate::rand::Rng::seeded(7), origin)
    }

    /// Records a closed-state call at `at` and returns the change it caused.
    fn call(c: &mut Core, failure: bool, at: Instant) -> Option<Change> {
        let (adm, change) = c.admit(at);
        assert!(change.is_none());
        let Admission::Call(epoch) = adm else {
            panic!("not closed: {adm:?}")
        };
        c.record(epoch, false, failure, false, Some(at))
    }

    #[test]
    fn window_of_ten_opens_after_five_failures_following_ten_thousand_successes() {
        let t = Instant::now();
        let mut c = core(
            exact(
                BreakerConfig::default()
                    .with_window(WindowShape::Calls(10))
                    .with_minimum_calls(10),
            ),
            t,
        );
        for _ in 0..10_000 {
            assert!(call(&mut c, false, t).is_none());
        }
        for _ in 0..4 {
            assert!(call(&mut c, true, t).is_none());
        }
        let change = call(&mut c, true, t).unwrap();
        assert_eq!(change.transition.to, BreakerState::Open);
        assert_eq!(change.reason, Reason::FailureRate);
        assert_eq!(
            change.counts,
            Counts {
                calls: 10,
                failures: 5,
                slow: 0
            }
        );
    }

    #[test]
    fn minimum_calls_holds_back_an_early_trip() {
        let t = Instant::now();
        let mut c = core(exact(BreakerConfig::default().with_minimum_calls(5)), t);
        for _ in 0..4 {
            assert!(call(&mut c, true, t).is_none());
        }
        assert_eq!(call(&mut c, true, t).unwrap().reason, Reason::FailureRate);
    }

    #[test]
    fn minimum_calls_is_capped_at_the_count_window() {
        let t = Instant::now();
        let mut c = core(
            exact(
                BreakerConfig::default()
                    .with_window(WindowShape::Calls(4))
                    .with_minimum_calls(100),
            ),
            t,
        );
        for _ in 0..3 {
            assert!(call(&mut c, true, t).is_none());
        }
        assert!(call(&mut c, true, t).is_some());
    }

    #[test]
    fn consecutive_failures_trip_before_the_rate_does() {
        let t = Instant::now();
        let mut c = core(
            exact(BreakerConfig::default().with_consecutive_failures(3)),
            t,
        );
        for _ in 0..50 {
            call(&mut c, false, t);
        }
        call(&mut c, true, t);
        call(&mut c, true, t);
        // A success breaks the run.
        call(&mut c, false, t);
        call(&mut c, true, t);
        call(&mut c, true, t);
        assert_eq!(
            call(&mut c, true, t).unwrap().reason,
            Reason::ConsecutiveFailures
        );
    }

    #[test]
    fn slow_calls_count_whatever_their_verdict() {
        let t = Instant::now();
        let mut c = core(
            exact(
                BreakerConfig::default()
                    .with_minimum_calls(4)
                    .with_slow_call(100 * MS, 0.5),
            ),
            t,
        );
        let e = c.epoch();
        assert!(
            c.record(e, false, false, 10 * MS >= 100 * MS, Some(t))
                .is_none()
        );
        assert!(
            c.record(e, false, false, 100 * MS >= 100 * MS, Some(t))
                .is_none()
        );
        assert!(
            c.record(e, false, false, 10 * MS >= 100 * MS, Some(t))
                .is_none()
        );
        let change = c
            .record(e, false, false, 500 * MS >= 100 * MS, Some(t))
            .unwrap();
        assert_eq!(change.reason, Reason::SlowCallRate);
        assert_eq!(change.counts.slow, 2);
    }

    #[test]
    fn exact_open_time_then_half_open_probes_decide() {
        let t0 = Instant::now();
        let cfg = exact(
            BreakerConfig::default()
                .with_consecutive_failures(1)
                .with_open_for(100 * MS, 100 * MS)
                .with_half_open_probes(2),
        );
        let mut c = core(cfg, t0);
        let change = call(&mut c, true, t0).unwrap();
        assert_eq!(change.open_until, Some(t0 + 100 * MS));
        assert_eq!(
            c.admit(t0 + 40 * MS).0,
            Admission::Reject {
                retry_after: 60 * MS,
                wake_at: Some(t0 + 100 * MS)
            }
        );
        let t1 = t0 + 100 * MS;
        let (a, ch) = c.admit(t1);
        assert_eq!(ch.unwrap().transition.to, BreakerState::HalfOpen);
        let Admission::Probe(e) = a else {
            panic!("{a:?}")
        };
        let (b, _) = c.admit(t1);
        assert_eq!(b, Admission::Probe(e));
        // Exactly two probes.
        assert!(matches!(
            c.admit(t1).0,
            Admission::Reject { wake_at: None, .. }
        ));
        // A dropped probe frees its slot and is not counted.
        assert!(c.release_probe(e));
        assert!(!c.release_probe(e + 1));
        assert_eq!(c.admit(t1).0, Admission::Probe(e));
        assert!(c.record(e, true, false, false, Some(t1)).is_none());
        let closed = c.record(e, true, false, false, Some(t1)).unwrap();
        assert_eq!(closed.transition.to, BreakerState::Closed);
        assert_eq!(closed.counts.calls, 2);
        // A late result from the earlier phase is not counted.
        assert!(c.record(e, true, true, false, Some(t1)).is_none());
        assert_eq!(c.view(t1).counts, Counts::default());
    }

    #[test]
    fn open_time_doubles_from_half_open_up_to_the_max_and_resets_on_close() {
        let t0 = Instant::now();
        let cfg = exact(
            BreakerConfig::default()
                .with_consecutive_failures(1)
                .with_open_for(100 * MS, 350 * MS)
                .with_half_open_probes(1),
        );
        let mut c = core(cfg, t0);
        let mut now = t0;
        let mut open_for = vec![call(&mut c, true, now).unwrap().open_for.unwrap()];
        for _ in 0..4 {
            now += *open_for.last().unwrap();
            let (Admission::Probe(e), _) = c.admit(now) else {
                panic!()
            };
            let change = c.record(e, true, true, false, Some(now)).unwrap();
            assert_eq!(change.reason, Reason::ProbesFailed);
            open_for.push(change.open_for.unwrap());
        }
        assert_eq!(open_for, [100 * MS, 200 * MS, 350 * MS, 350 * MS, 350 * MS]);
        now += 350 * MS;
        let (Admission::Probe(e), _) = c.admit(now) else {
            panic!()
        };
        assert_eq!(
            c.record(e, true, false, false, Some(now))
                .unwrap()
                .transition
                .to,
            BreakerState::Closed
        );
        assert_eq!(call(&mut c, true, now).unwrap().open_for, Some(100 * MS));
    }

    #[test]
    fn jitter_stays_within_its_band_and_is_reproducible_for_a_seed() {
        let t0 = Instant::now();
        let cfg = BreakerConfig::default()
            .with_consecutive_failures(1)
            .with_open_for(Duration::from_secs(10), Duration::from_secs(10))
            .with_jitter(0.5);
        let run = |seed| {
            let mut c = Core::new(Settings::new(&cfg), crate::rand::Rng::seeded(seed), t0);
            (0..20)
                .map(|_| {
                    let d = call(&mut c, true, t0).unwrap().open_for.unwrap();
                    c.reset();
                    d
                })
                .collect::<Vec<_>>()
        };
        let a = run(1);
        assert_eq!(a, run(1));
        assert_ne!(a, run(2));
        for d in &a {
            assert!(
                (Duration::from_secs(5)..=Duration::from_secs(10)).contains(d),
                "{d:?}"
            );
        }
    }

    #[test]
    fn forced_open_and_disabled_until_reset() {
        let t = Instant::now();
        let mut c = core(
            exact(BreakerConfig::default().with_consecutive_failures(1)),
            t,
        );
        assert_eq!(
            c.force_open().unwrap().transition.to,
            BreakerState::ForcedOpen
        );
        assert!(c.force_open().is_none());
        assert!(matches!(
            c.admit(t + Duration::from_secs(3600)).0,
            Admission::Reject { wake_at: None, .. }
        ));
        assert_eq!(c.disable().unwrap().transition.to, BreakerState::Disabled);
        assert_eq!(c.admit(t).0, Admission::Pass);
        // Nothing is counted while disabled.
        assert!(c.record(c.epoch(), false, true, false, Some(t)).is_none());
        assert_eq!(c.reset().unwrap().transition.to, BreakerState::Closed);
        assert!(c.reset().is_none());
        assert!(call(&mut c, true, t).is_some());
    }

    #[test]
    fn reconfigure_keeps_a_window_of_the_same_shape() {
        let t = Instant::now();
        let cfg = exact(BreakerConfig::default().with_minimum_calls(100));
        let mut c = core(cfg, t);
        for _ in 0..30 {
            call(&mut c, true, t);
        }
        assert!(
            c.reconfigure(Settings::new(&cfg.with_minimum_calls(40)), t)
                .is_none()
        );
        assert_eq!(c.view(t).counts.calls, 30);
        for _ in 0..9 {
            assert!(call(&mut c, true, t).is_none());
        }
        assert!(call(&mut c, true, t).is_some());
        c.reset();
        call(&mut c, true, t);
        c.reconfigure(Settings::new(&cfg.with_window(WindowShape::Calls(7))), t);
        assert_eq!(c.view(t).counts.calls, 0);
    }

    #[derive(Debug, Clone)]
    enum Step {
        Call { failure: bool, slow: bool, dt: u64 },
    }

    fn steps() -> impl Strategy<Value = Vec<Step>> {
        prop::collection::vec(
            (
                prop::bool::weighted(0.3),
                prop::bool::weighted(0.2),
                0u64..400,
            )
                .prop_map(|(failure, slow, dt)| Step::Call { failure, slow, dt }),
            0..300,
        )
    }

    proptest! {
        /// The closed-state trip decision against the naive model: the window rebuilt
        /// from every timestamped result on each call.
        #[test]
        fn trips_exactly_when_the_model_says(
            count in any::<bool>(),
            size in 1u32..30,
            minimum in 1u32..30,
            rate in 0.05f64..1.0,
            slow_rate in prop::option::of(0.05f64..1.0),
            consecutive in prop::option::of(1u32..6),
            steps in steps(),
        ) {
            let origin = Instant::now();
            let shape = if count { WindowShape::Calls(size) } else { WindowShape::Duration(MS * size * 100) };
            let mut cfg = exact(BreakerConfig::default())
                .with_window(shape)
                .with_failure_rate(rate)
                .with_minimum_calls(minimum);
            cfg.slow_call = slow_rate.map(|r| SlowCall { after: 50 * MS, rate: r });
            cfg.consecutive_failures = consecutive;
            let mut c = core(cfg, origin);
            let mut model = Model::default();
            let mut run = 0u32;
            let mut now = origin;
            for Step::Call { failure, slow, dt } in steps {
                now += MS * dt as u32;
                if c.state() != BreakerState::Closed {
                    // Start over after each trip, as a clean close would.
                    c.reset();
                    model.results.clear();
                    run = 0;
                }
                let e = c.epoch();
                let got = c.record(e, false, failure, slow, Some(now));
                let slow = slow && slow_rate.is_some();
                model.push(now, Outcome { failure, slow });
                run = if failure { run + 1 } else { 0 };
                let counts = if count {
                    model.last(size as usize)
                } else {
                    model.within(origin, MS * 10 * size, 10, now)
                };
                let minimum = if count { u64::from(minimum.min(size)) } else { u64::from(minimum) };
                let want = consecutive.is_some_and(|n| run >= n)
                    || (counts.calls >= minimum
                        && (reaches(counts.failures, counts.calls, rate)
                            || slow_rate.is_some_and(|r| reaches(counts.slow, counts.calls, r))));
                prop_assert_eq!(got.is_some(), want, "counts {:?}", counts);
                if let Some(ch) = got {
                    prop_assert_eq!(ch.transition.to, BreakerState::Open);
                    prop_assert_eq!(ch.counts, counts);
                }
            }
        }

        /// Half-open admits exactly `probes` probes however many are dropped and
        /// retaken, and decides only when that many have finished.
        #[test]
        fn half_open_admits_exactly_the_probes(
            probes in 1u32..6,
            ops in prop::collection::vec(0u8..4, 0..80),
        ) {
            let t = Instant::now();
            let cfg = exact(BreakerConfig::default().with_consecutive_failures(1).with_half_open_probes(probes));
            let mut c = core(cfg, t);
            call(&mut c, true, t);
            let t = t + Duration::from_secs(10);
            let mut held: Vec<u64> = Vec::new();
            let mut finished = 0u32;
            for op in ops {
                if c.state() != BreakerState::HalfOpen && c.state() != BreakerState::Open {
                    break;
                }
                match op {
                    0 | 1 => match c.admit(t).0 {
                        Admission::Probe(e) => held.push(e),
                        Admission::Reject { .. } => prop_assert_eq!(held.len() as u32 + finished, probes),
                        other => prop_assert!(false, "{:?}", other),
                    },
                    2 => if let Some(e) = held.pop() {
                        prop_assert!(c.release_probe(e));
                    },
                    _ => if let Some(e) = held.pop() {
                        finished += 1;
                        let change = c.record(e, true, false, false, Some(t));
                        prop_assert_eq!(change.is_some(), finished == probes);
                    },
                }
                prop_assert!(held.len() as u32 + finished <= probes);
            }
        }
    }
}
