//! The retry budget: a token bucket shared by every request through a policy, so
//! retries (and hedges, and reconnects) can never multiply the load on a struggling
//! callee.
//!
//! Each original request deposits `ratio` of a token; each retry or hedge withdraws one
//! whole token; a reserve of `min_per_second * ttl` tokens lets low-traffic callers
//! retry at all. Deposits and withdrawals expire after `ttl`, so at every instant:
//!
//! > retries in the last `ttl` <= `ratio` x requests in the last `ttl` + `min_per_second` x `ttl`
//!
//! The arithmetic is exact: amounts are kept in millionths of a token in integers, so a
//! ratio of 0.6 allows six retries per ten requests, not one per request (tower's
//! `TpsBudget` rounds `1 / ratio` down to an integer, so its 0.6 behaves as 1.0).
//!
//! Time is split into ten slots of `ttl / 10`. A deposit counts only while its whole
//! slot lies inside the last `ttl`, and a withdrawal counts until its slot lies wholly
//! outside it, so the slotting can only make the budget stricter than the bound above,
//! never looser. (`ttl` is rounded down to a multiple of ten nanoseconds.)
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use buttress::budget::{Budget, BudgetConfig};
//! use tokio::time::Instant;
//!
//! let now = Instant::now();
//! let budget = Budget::new(BudgetConfig { ratio: 0.6, min_per_second: 0, ttl: Duration::from_secs(10) });
//! for _ in 0..10 {
//!     budget.deposit(now);
//! }
//! let retries = (0..10).filter(|_| budget.withdraw(now)).count();
//! assert_eq!(retries, 6);
//! ```

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::util::lock;

/// Retry budget settings.
#[derive(Debug, Clone, Copy, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct BudgetConfig {
    /// Retries allowed per original request (0.2 = one retry per five requests).
    pub ratio: f64,
    /// Retries allowed per second whatever the request rate.
    pub min_per_second: u32,
    /// How long deposits and withdrawals count.
    #[cfg_attr(feature = "serde", serde(with = "crate::duration::serde"))]
    pub ttl: Duration,
}

impl Default for BudgetConfig {
    /// 20% of requests plus 10 retries per second, over 10 seconds.
    fn default() -> Self {
        Self {
            ratio: 0.2,
            min_per_second: 10,
            ttl: Duration::from_secs(10),
        }
    }
}

const SLOTS: usize = 10;
const RING: usize = SLOTS + 1;
/// One token, in the integer units the budget counts in.
const TOKEN: u64 = 1_000_000;
/// The shortest slot: keeps the slot arithmetic meaningful for a zero `ttl`.
const MIN_SLOT: Duration = Duration::from_millis(1);

/// A shared retry budget; clones share the same bucket.
#[derive(Clone)]
pub struct Budget {
    inner: Arc<Mutex<State>>,
}

struct State {
    origin: Instant,
    slot_nanos: u128,
    deposit_units: u64,
    reserve: u64,
    config: BudgetConfig,
    epoch: u64,
    deposits: [u64; RING],
    withdrawals: [u64; RING],
    // Deposits of the last SLOTS slots, in units; withdrawals of the last RING slots,
    // in tokens.
    deposited: u64,
    withdrawn: u64,
    requests: u64,
}

/// What a budget holds at one instant.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct BudgetSnapshot {
    /// Whole retries the budget would allow now.
    pub available: u64,
    /// Original requests counted in the window.
    pub requests: u64,
    /// Retries counted in the window.
    pub retries: u64,
    /// The settings in force.
    pub config: BudgetConfig,
}

impl Budget {
    /// A budget with `config`, starting now.
    pub fn new(config: BudgetConfig) -> Self {
        Self::starting_at(config, Instant::now())
    }

    /// A budget with `config` whose clock starts at `origin`.
    pub fn starting_at(config: BudgetConfig, origin: Instant) -> Self {
        let mut state = State {
            origin,
            slot_nanos: 0,
            deposit_units: 0,
            reserve: 0,
            config,
            epoch: 0,
            deposits: [0; RING],
            withdrawals: [0; RING],
            deposited: 0,
            withdrawn: 0,
            requests: 0,
        };
        state.apply(config);
        Self {
            inner: Arc::new(Mutex::new(state)),
        }
    }

    /// Records an original request.
    pub fn deposit(&self, now: Instant) {
        let mut s = lock(&self.inner);
        let i = s.advance(now);
        s.deposits[i] += 1;
        s.deposited += s.deposit_units;
        s.requests += 1;
    }

    /// Takes one retry from the budget; `false` when the budget is spent.
    pub fn withdraw(&self, now: Instant) -> bool {
        let mut s = lock(&self.inner);
        let i = s.advance(now);
        if s.available_units() < TOKEN {
            return false;
        }
        s.withdrawals[i] += 1;
        s.withdrawn += 1;
        true
    }

    /// What the budget holds at `now`.
    pub fn snapshot(&self, now: Instant) -> BudgetSnapshot {
        let mut s = lock(&self.inner);
        s.advance(now);
        BudgetSnapshot {
            available: s.available_units() / TOKEN,
            requests: s.requests,
            retries: s.withdrawn,
            config: s.config,
        }
    }

    /// Changes the settings, keeping what was deposited and withdrawn.
    ///
    /// With a different `ttl` the slots cannot be carried over: the window starts
    /// afresh, keeping the withdrawals (so the change never grants extra retries) and
    /// dropping the deposits.
    pub fn reconfigure(&self, config: BudgetConfig) {
        let mut s = lock(&self.inner);
        let old_slot = s.slot_nanos;
        s.apply(config);
        if s.slot_nanos == old_slot {
            s.deposited = s.window_deposits() * s.deposit_units;
            return;
        }
        let withdrawn = s.withdrawn;
        s.origin = Instant::now();
        s.epoch = 0;
        s.deposits = [0; RING];
        s.withdrawals = [0; RING];
        s.withdrawals[0] = withdrawn;
        s.deposited = 0;
        s.requests = 0;
    }
}

impl State {
    fn apply(&mut self, config: BudgetConfig) {
        let ratio = if config.ratio.is_finite() {
            config.ratio.max(0.0)
        } else {
            0.0
        };
        self.config = config;
        self.deposit_units = (ratio * TOKEN as f64).round() as u64;
        let ttl = config.ttl.max(MIN_SLOT * SLOTS as u32);
        self.slot_nanos = (ttl / SLOTS as u32).as_nanos().max(1);
        // min_per_second tokens per second over the whole ttl, in units:
        // min_per_second * ttl_seconds * TOKEN = min_per_second * ttl_micros.
        self.reserve = u64::from(config.min_per_second)
            .saturating_mul(u64::try_from(ttl.as_micros()).unwrap_or(u64::MAX));
    }

    fn window_deposits(&self) -> u64 {
        (0..SLOTS as u64)
            .map(|back| self.deposits[((self.epoch + RING as u64 - back) % RING as u64) as usize])
            .sum()
    }

    fn available_units(&self) -> u64 {
        (self.reserve + self.deposited).saturating_sub(self.withdrawn.saturating_mul(TOKEN))
    }

    /// Moves the window to `now` and returns the ring index of the current slot.
    fn advance(&mut self, now: Instant) -> usize {
        let elapsed = now.saturating_duration_since(self.origin).as_nanos();
        let epoch = u64::try_from(elapsed / self.slot_nanos).unwrap_or(u64::MAX);
        if epoch > self.epoch {
            if epoch - self.epoch >= RING as u64 {
                self.deposits = [0; RING];
                self.withdrawals = [0; RING];
                self.deposited = 0;
                self.withdrawn = 0;
                self.requests = 0;
            } else {
                for e in self.epoch + 1..=epoch {
                    // The slot of e - SLOTS leaves the deposit window ...
                    let leaving = ((e + RING as u64 - SLOTS as u64) % RING as u64) as usize;
                    self.deposited -= self.deposits[leaving] * self.deposit_units;
                    self.requests -= self.deposits[leaving];
                    self.deposits[leaving] = 0;
                    // ... and the slot of e - RING, reused for e, leaves the withdrawal
                    // window.
                    let reused = (e % RING as u64) as usize;
                    self.withdrawn -= self.withdrawals[reused];
                    self.withdrawals[reused] = 0;
                    self.requests -= self.deposits[reused];
                    self.deposits[reused] = 0;
                }
            }
            self.epoch = epoch;
        }
        (self.epoch % RING as u64) as usize
    }
}

impl fmt::Debug for Budget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = lock(&self.inner);
        f.debug_struct("Budget")
            .field("config", &s.config)
            .field("requests", &s.requests)
            .field("retries", &s.withdrawn)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cfg(ratio: f64, min_per_second: u32, ttl_s: u64) -> BudgetConfig {
        BudgetConfig {
            ratio,
            min_per_second,
            ttl: Duration::from_secs(ttl_s),
        }
    }

    #[test]
    fn fractional_ratios_are_exact() {
        let now = Instant::now();
        for (ratio, requests, allowed) in [
            (0.6, 10, 6),
            (0.2, 100, 20),
            (0.1, 25, 2),
            (1.0, 7, 7),
            (0.0, 50, 0),
        ] {
            let b = Budget::starting_at(cfg(ratio, 0, 10), now);
            for _ in 0..requests {
                b.deposit(now);
            }
            let n = (0..1000).filter(|_| b.withdraw(now)).count();
            assert_eq!(n, allowed, "ratio {ratio}");
        }
    }

    #[test]
    fn reserve_allows_min_per_second_times_ttl() {
        let now = Instant::now();
        let b = Budget::starting_at(cfg(0.2, 10, 10), now);
        assert_eq!((0..1000).filter(|_| b.withdraw(now)).count(), 100);
    }

    #[test]
    fn deposits_expire_after_ttl() {
        let t0 = Instant::now();
        let b = Budget::starting_at(cfg(0.5, 0, 10), t0);
        for _ in 0..10 {
            b.deposit(t0);
        }
        assert_eq!(b.snapshot(t0 + Duration::from_secs(9)).available, 5);
        assert_eq!(b.snapshot(t0 + Duration::from_secs(10)).available, 0);
    }

    #[test]
    fn withdrawals_expire_and_the_budget_refills() {
        let t0 = Instant::now();
        let b = Budget::starting_at(cfg(0.0, 1, 10), t0);
        assert_eq!((0..100).filter(|_| b.withdraw(t0)).count(), 10);
        assert!(!b.withdraw(t0 + Duration::from_secs(10)));
        assert!(b.withdraw(t0 + Duration::from_secs(11)));
    }

    #[test]
    fn reconfigure_keeps_counts_with_the_same_ttl() {
        let t0 = Instant::now();
        let b = Budget::starting_at(cfg(0.1, 0, 10), t0);
        for _ in 0..100 {
            b.deposit(t0);
        }
        assert_eq!(b.snapshot(t0).available, 10);
        b.reconfigure(cfg(0.5, 0, 10));
        assert_eq!(b.snapshot(t0).available, 50);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Request(u64),
        Retry(u64),
    }

    fn ops() -> impl Strategy<Value = Vec<Op>> {
        prop::collection::vec(
            prop_oneof![
                3 => (0u64..2_000).prop_map(Op::Request),
                2 => (0u64..2_000).prop_map(Op::Retry),
            ],
            1..400,
        )
    }

    proptest! {
        /// At every instant a retry is allowed, the retries in the last ttl stay within
        /// ratio * requests in the last ttl + min_per_second * ttl, over any sequence
        /// (gaps in ms).
        #[test]
        fn budget_bound_holds_for_any_sequence(
            ops in ops(),
            ratio in 0.0f64..1.5,
            min_per_second in 0u32..5,
            ttl_ms in 10u64..5_000,
        ) {
            let ttl = Duration::from_millis(ttl_ms);
            let t0 = Instant::now();
            let b = Budget::starting_at(BudgetConfig { ratio, min_per_second, ttl }, t0);
            let mut now = t0;
            let mut requests: Vec<Instant> = Vec::new();
            let mut retries: Vec<Instant> = Vec::new();
            for op in ops {
                match op {
                    Op::Request(gap) => {
                        now += Duration::from_millis(gap / 4);
                        b.deposit(now);
                        requests.push(now);
                    }
                    Op::Retry(gap) => {
                        now += Duration::from_millis(gap / 4);
                        if b.withdraw(now) {
                            retries.push(now);
                            let in_window = |t: &&Instant| now.duration_since(**t) < ttl;
                            let r = retries.iter().filter(in_window).count() as f64;
                            let q = requests.iter().filter(in_window).count() as f64;
                            let bound = ratio * q + f64::from(min_per_second) * ttl.as_secs_f64();
                            prop_assert!(r <= bound + 1e-6, "retries {r} > bound {bound}");
                        }
                    }
                }
            }
        }
    }
}
