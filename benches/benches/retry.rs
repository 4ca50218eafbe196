//! Happy-path (first attempt succeeds) per-call overhead of the retry and hedge layers,
//! interleaved with the bare service and `tower::retry::Retry` driven by a `TpsBudget`
//! policy (which, like ours, deposits into its budget once per request and reads the
//! clock to do so).
//!
//! One long-lived service on a current-thread runtime, `ready().await` then
//! `call().await` in a loop. No `tracing` subscriber is installed, so each attempt's
//! span costs what it costs in production with any subscriber whose level is below
//! DEBUG: one relaxed load of tracing's global max level.
//!
//! The rows marked "WithDeadline<u64> + deadline" build each request with a deadline,
//! which costs a clock read of its own in both variants; with a deadline, buttress's
//! retry reads the clock at the attempt's start and end to feed its attempt-time
//! estimate (tower's reads it once).
//!
//! Run: `cargo bench -p buttress-benches --bench retry` (`BENCH_ROUNDS`, `BENCH_CALLS`
//! change the run's length; `BENCH_PROFILE` runs one variant alone for `perf`).
#![allow(
    missing_docs,
    clippy::disallowed_types,
    clippy::disallowed_methods,
    clippy::unwrap_used
)] // a bench: wall clock, and a failure should panic

use std::sync::Arc;
use std::time::Duration;

use buttress::budget::{Budget, BudgetConfig};
use buttress::hedge::{HedgeConfig, HedgeLayer};
use buttress::retry::{RetryConfig, RetryLayer};
use buttress::{Deadline, WithDeadline};
use buttress_benches::{
    CountingAlloc, Echo, Variant, allocations_per_call, drive, interleaved, runtime,
};
use tower::retry::budget::{Budget as _, TpsBudget};
use tower::{Layer, Service};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// tower's retry with its `TpsBudget`, the way tower's docs use it: deposit on every
/// answer, withdraw before a retry, back off with a sleep.
#[derive(Clone, Debug)]
struct TowerBudgetPolicy {
    budget: Arc<TpsBudget>,
}

impl<Req: Clone, Res, E> tower::retry::Policy<Req, Res, E> for TowerBudgetPolicy {
    type Future = tokio::time::Sleep;

    fn retry(&mut self, _: &mut Req, result: &mut Result<Res, E>) -> Option<Self::Future> {
        match result {
            Ok(_) => {
                self.budget.deposit();
                None
            }
            Err(_) => self
                .budget
                .withdraw()
                .then(|| tokio::time::sleep(Duration::from_millis(25))),
        }
    }

    fn clone_request(&mut self, req: &Req) -> Option<Req> {
        Some(req.clone())
    }
}

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let rt = runtime();
    let rounds = env("BENCH_ROUNDS", 101) as usize;
    let calls = env("BENCH_CALLS", 20_000);
    // The services live inside the runtime context: tower's budget and the layers'
    // budgets read tokio's clock.
    let _guard = rt.enter();

    let tower_retry = || {
        tower::retry::Retry::new(
            TowerBudgetPolicy {
                budget: Arc::new(TpsBudget::default()),
            },
            Echo,
        )
    };
    let ours_retry = || RetryLayer::new(RetryConfig::default()).layer(Echo);
    let ours_disabled = || RetryLayer::disabled().layer(Echo);
    let ours_hedge_shared = || {
        let shared = Budget::new(BudgetConfig::default());
        HedgeLayer::new(HedgeConfig::fixed(Duration::from_millis(50), 1))
            .with_budget(shared)
            .layer(Echo)
    };
    let ours_hedge_own =
        || HedgeLayer::new(HedgeConfig::fixed(Duration::from_millis(50), 1)).layer(Echo);
    let with_deadline = |i: u64| {
        let now = tokio::time::Instant::now();
        WithDeadline::with_deadline(i, Deadline::after(now, Duration::from_secs(30)))
    };
    let plain = |i: u64| WithDeadline::new(i);

    // `BENCH_PROFILE=buttress|tower|disabled`: one variant alone for a long run, to
    // look at with `perf record`.
    if let Ok(which) = std::env::var("BENCH_PROFILE") {
        let n = 50_000_000;
        let d = match which.as_str() {
            "disabled" => drive(&rt, &mut ours_disabled(), n, |i| i),
            "tower" => drive(&rt, &mut tower_retry(), n, |i| i),
            _ => drive(&rt, &mut ours_retry(), n, |i| i),
        };
        println!("{which}: {:.1} ns/call", d.as_nanos() as f64 / n as f64);
        return;
    }
    // The response future is moved a few times per call: its size shows in the time.
    println!(
        "response future sizes (u64 requests): tower Retry {} bytes, buttress Retry {} bytes, buttress Hedge {} bytes\n",
        std::mem::size_of_val(&tower_retry().call(1u64)),
        std::mem::size_of_val(&ours_retry().call(1u64)),
        std::mem::size_of_val(&ours_hedge_own().call(1u64)),
    );
    let mut bare = Echo;
    let mut t_retry = tower_retry();
    let mut b_retry = ours_retry();
    let mut b_disabled = ours_disabled();
    let mut b_hedge_shared = ours_hedge_shared();
    let mut b_hedge_own = ours_hedge_own();
    let mut bare_wd = Echo;
    let mut t_retry_wd = tower_retry();
    let mut b_retry_wd = ours_retry();
    let clock = || std::hint::black_box(tokio::time::Instant::now());

    let report = interleaved(
        "retry and hedge: happy-path per-call overhead (plain u64 requests unless noted)",
        vec![
            Variant::new("bare", |n| drive(&rt, &mut bare, n, |i| i)),
            Variant::new("tower Retry+TpsBudget", |n| {
                drive(&rt, &mut t_retry, n, |i| i)
            }),
            Variant::new("buttress Retry", |n| drive(&rt, &mut b_retry, n, |i| i)),
            Variant::new("buttress Retry (disabled)", |n| {
                drive(&rt, &mut b_disabled, n, |i| i)
            }),
            Variant::new("buttress Hedge (fixed, shared budget)", |n| {
                drive(&rt, &mut b_hedge_shared, n, |i| i)
            }),
            Variant::new("buttress Hedge (fixed, own budget)", |n| {
                drive(&rt, &mut b_hedge_own, n, |i| i)
            }),
            Variant::new("bare + 1 clock read", |n| {
                let mut svc = Echo;
                drive(&rt, &mut svc, n, |i| {
                    clock();
                    i
                })
            }),
            Variant::new("bare, WithDeadline<u64> (no deadline)", |n| {
                drive(&rt, &mut bare_wd, n, plain)
            }),
            Variant::new("tower Retry+TpsBudget, WithDeadline<u64> + deadline", |n| {
                drive(&rt, &mut t_retry_wd, n, with_deadline)
            }),
            Variant::new("buttress Retry, WithDeadline<u64> + deadline", |n| {
                drive(&rt, &mut b_retry_wd, n, with_deadline)
            }),
        ],
        Some("tower Retry+TpsBudget"),
        rounds,
        calls,
    );

    let allocs = [
        ("bare", allocs_of(&rt, Echo, |i| i)),
        (
            "tower Retry+TpsBudget",
            allocs_of(&rt, tower_retry(), |i| i),
        ),
        ("buttress Retry", allocs_of(&rt, ours_retry(), |i| i)),
        (
            "buttress Retry (disabled)",
            allocs_of(&rt, ours_disabled(), |i| i),
        ),
        (
            "buttress Hedge (fixed, shared budget)",
            allocs_of(&rt, ours_hedge_shared(), |i| i),
        ),
        (
            "buttress Hedge (fixed, own budget)",
            allocs_of(&rt, ours_hedge_own(), |i| i),
        ),
        (
            "bare, WithDeadline<u64> (no deadline)",
            allocs_of(&rt, Echo, plain),
        ),
        (
            "tower Retry+TpsBudget, WithDeadline<u64> + deadline",
            allocs_of(&rt, tower_retry(), with_deadline),
        ),
        (
            "buttress Retry, WithDeadline<u64> + deadline",
            allocs_of(&rt, ours_retry(), with_deadline),
        ),
    ];
    report.with_allocations(&allocs).publish("retry");

    // The target read directly: tower's Retry+TpsBudget as the baseline.
    let mut t_retry = tower_retry();
    let mut b_retry = ours_retry();
    let mut b_disabled = ours_disabled();
    interleaved(
        "retry: happy path relative to tower Retry+TpsBudget (plain u64 requests)",
        vec![
            Variant::new("tower Retry+TpsBudget", |n| {
                drive(&rt, &mut t_retry, n, |i| i)
            }),
            Variant::new("buttress Retry", |n| drive(&rt, &mut b_retry, n, |i| i)),
            Variant::new("buttress Retry (disabled)", |n| {
                drive(&rt, &mut b_disabled, n, |i| i)
            }),
        ],
        None,
        rounds,
        calls,
    )
    .publish("retry-vs-tower");

    // What the happy path is made of.
    let ours_budget = Budget::new(BudgetConfig::default());
    let tower_budget = TpsBudget::default();
    let noop = || std::hint::black_box(0u64);
    interleaved(
        "retry: components of the happy path (one operation per call)",
        vec![
            Variant::new("empty loop", |n| {
                buttress_benches::time(n, || {
                    noop();
                })
            }),
            Variant::new("clock read (tokio Instant::now)", |n| {
                buttress_benches::time(n, || {
                    clock();
                })
            }),
            Variant::new("buttress Budget::deposit (with clock read)", |n| {
                buttress_benches::time(n, || ours_budget.deposit(tokio::time::Instant::now()))
            }),
            Variant::new("tower TpsBudget::deposit (reads the clock)", |n| {
                buttress_benches::time(n, || tower_budget.deposit())
            }),
        ],
        None,
        rounds,
        calls,
    )
    .publish("retry-components");
}

/// Heap allocations per call of `svc`, driven as in the timing loop.
fn allocs_of<S, R>(rt: &tokio::runtime::Runtime, mut svc: S, req: impl Fn(u64) -> R + Copy) -> f64
where
    S: Service<R>,
    S::Error: std::fmt::Debug,
{
    allocations_per_call(10_000, |n| {
        drive(rt, &mut svc, n, req);
    })
}
