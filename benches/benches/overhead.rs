//! Per-call overhead and allocations of the timeout and bulkhead layers, interleaved
//! with the bare service and tower's own layers.
//!
//! One long-lived service on a current-thread runtime, `ready().await` then
//! `call().await` in a loop, as a client or server task would drive it.
//!
//! Run: `cargo bench -p buttress-benches --bench overhead`
#![allow(missing_docs, clippy::disallowed_types, clippy::disallowed_methods)]

use std::time::Duration;

use buttress::bulkhead::{BulkheadConfig, BulkheadLayer};
use buttress::timeout::TimeoutLayer;
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
    let budget = Duration::from_secs(30);

    // The services live outside the guards so the runtime's timer is registered once.
    let _guard = rt.enter();
    let mut bare = Echo;
    let mut tower_timeout = tower::timeout::TimeoutLayer::new(budget).layer(Echo);
    let mut tower_limit = tower::limit::ConcurrencyLimitLayer::new(64).layer(Echo);
    let mut tower_shed_limit = tower::ServiceBuilder::new()
        .load_shed()
        .concurrency_limit(64)
        .service(Echo);
    let mut ours_timeout = TimeoutLayer::attempt(budget).layer(Echo);
    let mut ours_bulkhead = BulkheadLayer::new(BulkheadConfig {
        max_concurrent: 64,
        ..Default::default()
    })
    .layer(Echo);
    let clock = || std::hint::black_box(tokio::time::Instant::now());

    let timeouts = interleaved(
        "timeout: per-call overhead (plain u64 requests; overhead vs reference = (variant - bare) / (tower Timeout - bare))",
        vec![
            Variant::new("bare", |n| drive(&rt, &mut bare, n, |i| i)),
            Variant::new("tower Timeout", |n| {
                drive(&rt, &mut tower_timeout, n, |i| i)
            }),
            Variant::new("buttress Timeout", |n| {
                drive(&rt, &mut ours_timeout, n, |i| i)
            }),
            Variant::new("bare + 1 clock read", |n| {
                let mut svc = Echo;
                drive(&rt, &mut svc, n, |i| {
                    clock();
                    i
                })
            }),
        ],
        Some("tower Timeout"),
        rounds,
        calls,
    );
    let mut bare = Echo;
    let limits = interleaved(
        "bulkhead: admitted per-call overhead (plain u64 requests; overhead vs reference = (variant - bare) / (tower ConcurrencyLimit - bare))",
        vec![
            Variant::new("bare", |n| drive(&rt, &mut bare, n, |i| i)),
            Variant::new("tower ConcurrencyLimit", |n| {
                drive(&rt, &mut tower_limit, n, |i| i)
            }),
            Variant::new("tower LoadShed+ConcurrencyLimit", |n| {
                drive(&rt, &mut tower_shed_limit, n, |i| i)
            }),
            Variant::new("buttress Bulkhead", |n| {
                drive(&rt, &mut ours_bulkhead, n, |i| i)
            }),
            Variant::new("bare + 1 clock read", |n| {
                let mut svc = Echo;
                drive(&rt, &mut svc, n, |i| {
                    clock();
                    i
                })
            }),
        ],
        Some("tower ConcurrencyLimit"),
        rounds,
        calls,
    );

    let mut allocs = Vec::new();
    let mut s = TimeoutLayer::attempt(budget).layer(Echo);
    allocs.push((
        "buttress Timeout",
        allocations_per_call(10_000, |n| {
            drive(&rt, &mut s, n, |i| i);
        }),
    ));
    let mut s = BulkheadLayer::new(BulkheadConfig {
        max_concurrent: 64,
        ..Default::default()
    })
    .layer(Echo);
    allocs.push((
        "buttress Bulkhead",
        allocations_per_call(10_000, |n| {
            drive(&rt, &mut s, n, |i| i);
        }),
    ));
    let mut s = tower::timeout::TimeoutLayer::new(budget).layer(Echo);
    allocs.push((
        "tower Timeout",
        allocations_per_call(10_000, |n| {
            drive(&rt, &mut s, n, |i| i);
        }),
    ));
    let mut s = tower::limit::ConcurrencyLimitLayer::new(64).layer(Echo);
    allocs.push((
        "tower ConcurrencyLimit",
        allocations_per_call(10_000, |n| {
            drive(&rt, &mut s, n, |i| i);
        }),
    ));
    allocs.push((
        "bare",
        allocations_per_call(10_000, |n| {
            drive(&rt, &mut Echo, n, |i| i);
        }),
    ));
    timeouts
        .with_allocations(&allocs)
        .publish("overhead-timeout");
    limits
        .with_allocations(&allocs)
        .publish("overhead-bulkhead");

    // http::Request: a total timeout writes the deadline into the extensions; the first
    // insert allocates the extension map.
    let mut http_timeout = TimeoutLayer::total(budget).layer(Echo);
    let per_call = allocations_per_call(10_000, |n| {
        drive(&rt, &mut http_timeout, n, |_| http::Request::new(()));
    });
    let mut http_bare = Echo;
    let bare_per_call = allocations_per_call(10_000, |n| {
        drive(&rt, &mut http_bare, n, |_| http::Request::new(()));
    });
    println!(
        "http::Request<()>: allocations per call: bare {bare_per_call:.2}, buttress total Timeout {per_call:.2} \
         (the deadline is the request's first extension)\n"
    );
}
