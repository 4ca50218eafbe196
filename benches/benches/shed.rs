//! Admitted per-call overhead and allocations of the shed layer, interleaved with the
//! bare service and tower's `LoadShed` + `ConcurrencyLimit`.
//!
//! The shed layer admits by a compare-and-swap on its in-flight count and, at the
//! answer, reads the clock once for the round trip (reusing the start instant of the
//! deadline the request carries; twice when it carries none) and adds the round trip
//! to the algorithm's window with atomic additions (the gradient limit takes a short
//! lock once per window, the fixed one takes no samples). The target is tower's pair
//! plus those clock reads, so the clock read has a row of its own.
//!
//! Run: `cargo bench -p buttress-benches --bench shed`
#![allow(missing_docs, clippy::disallowed_types, clippy::disallowed_methods)]

use std::time::Duration;

use buttress::shed::{Algorithm, ShedConfig, ShedLayer};
use buttress::{Deadline, WithDeadline};
use buttress_benches::{
    CountingAlloc, Echo, Variant, allocations_per_call, drive, interleaved, runtime,
};
use tower::Layer;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

fn main() {
    let rt = runtime();
    let rounds = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(41);
    let calls = std::env::var("BENCH_CALLS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20_000);
    let _guard = rt.enter();

    // Every variant gets the same request type; the deadline is made once and copied.
    let deadline = Deadline::after(tokio::time::Instant::now(), Duration::from_secs(3600));
    let with_deadline = move |i: u64| WithDeadline::with_deadline(i, deadline);
    let without = WithDeadline::new;
    let config = || ShedConfig::new(Algorithm::Gradient).with_limits(100, 10, 1000);
    let fixed = || ShedConfig::new(Algorithm::Fixed).with_limits(100, 10, 1000);

    let mut bare = Echo;
    let mut tower_pair = tower::ServiceBuilder::new()
        .load_shed()
        .concurrency_limit(100)
        .service(Echo);
    let mut shed = ShedLayer::new(config()).layer(Echo);
    let mut shed_no_deadline = ShedLayer::new(config()).layer(Echo);
    let mut shed_fixed = ShedLayer::new(fixed()).layer(Echo);
    let mut disabled = ShedLayer::disabled().layer(Echo);
    let clock = || std::hint::black_box(tokio::time::Instant::now());

    type Run<'a> = Box<dyn FnMut(u64) -> Duration + 'a>;
    let variants: Vec<(&str, Run<'_>)> = vec![
        (
            "bare",
            Box::new(|n| drive(&rt, &mut bare, n, with_deadline)),
        ),
        (
            "tower LoadShed+ConcurrencyLimit",
            Box::new(|n| drive(&rt, &mut tower_pair, n, with_deadline)),
        ),
        (
            "buttress Shed, gradient, deadline carried (1 clock read)",
            Box::new(|n| drive(&rt, &mut shed, n, with_deadline)),
        ),
        (
            "buttress Shed, gradient, no deadline (2 clock reads)",
            Box::new(|n| drive(&rt, &mut shed_no_deadline, n, without)),
        ),
        (
            "buttress Shed, fixed, deadline carried (1 clock read)",
            Box::new(|n| drive(&rt, &mut shed_fixed, n, with_deadline)),
        ),
        (
            "buttress Shed, disabled (pass-through)",
            Box::new(|n| drive(&rt, &mut disabled, n, with_deadline)),
        ),
        (
            "bare + 1 clock read",
            Box::new(|n| {
                let mut svc = Echo;
                drive(&rt, &mut svc, n, |i| {
                    clock();
                    with_deadline(i)
                })
            }),
        ),
    ];

    // To profile one row alone (e.g. under `valgrind --tool=callgrind`), set
    // `PROFILE_ROW` to part of its name and optionally `PROFILE_CALLS`:
    // `PROFILE_ROW="fixed" PROFILE_CALLS=200000 valgrind --tool=callgrind target/release/deps/shed-*`.
    if let Ok(name) = std::env::var("PROFILE_ROW") {
        let n = std::env::var("PROFILE_CALLS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(200_000_000u64);
        let Some(mut v) = variants.into_iter().find(|v| v.0.contains(name.as_str())) else {
            panic!("no row matches PROFILE_ROW={name:?}");
        };
        (v.1)(n);
        return;
    }
    let report = interleaved(
        "shed: admitted per-call overhead (WithDeadline<u64> requests; overhead vs reference = (variant - bare) / (tower LoadShed+ConcurrencyLimit - bare))",
        variants
            .into_iter()
            .map(|(name, run)| Variant::new(name, run))
            .collect(),
        Some("tower LoadShed+ConcurrencyLimit"),
        rounds,
        calls,
    );

    let mut allocs = Vec::new();
    let mut s = ShedLayer::new(config()).layer(Echo);
    allocs.push((
        "buttress Shed, gradient, deadline carried (1 clock read)",
        allocations_per_call(10_000, |n| {
            drive(&rt, &mut s, n, with_deadline);
        }),
    ));
    let mut s = ShedLayer::new(config()).layer(Echo);
    allocs.push((
        "buttress Shed, gradient, no deadline (2 clock reads)",
        allocations_per_call(10_000, |n| {
            drive(&rt, &mut s, n, without);
        }),
    ));
    let mut s = ShedLayer::new(fixed()).layer(Echo);
    allocs.push((
        "buttress Shed, fixed, deadline carried (1 clock read)",
        allocations_per_call(10_000, |n| {
            drive(&rt, &mut s, n, with_deadline);
        }),
    ));
    let mut s = ShedLayer::disabled().layer(Echo);
    allocs.push((
        "buttress Shed, disabled (pass-through)",
        allocations_per_call(10_000, |n| {
            drive(&rt, &mut s, n, with_deadline);
        }),
    ));
    let mut s = tower::ServiceBuilder::new()
        .load_shed()
        .concurrency_limit(100)
        .service(Echo);
    allocs.push((
        "tower LoadShed+ConcurrencyLimit",
        allocations_per_call(10_000, |n| {
            drive(&rt, &mut s, n, with_deadline);
        }),
    ));
    allocs.push((
        "bare",
        allocations_per_call(10_000, |n| {
            drive(&rt, &mut Echo, n, with_deadline);
        }),
    ));
    let report = report.with_allocations(&allocs);
    report.publish("shed");

    // The target: tower's pair plus the one clock read a round-trip sample needs.
    let ns = |name: &str| report.row(name).map_or(f64::NAN, |r| r.ns_per_call);
    let bare_ns = ns("bare");
    let clock_ns = ns("bare + 1 clock read") - bare_ns;
    let target = ns("tower LoadShed+ConcurrencyLimit") - bare_ns + clock_ns;
    let ours = ns("buttress Shed, gradient, deadline carried (1 clock read)") - bare_ns;
    println!(
        "target (medians, indicative): tower pair overhead + 1 clock read = {target:.1} ns; \
         buttress Shed overhead (1 clock read) = {ours:.1} ns ({:.2}x the target)\n",
        ours / target
    );
}
