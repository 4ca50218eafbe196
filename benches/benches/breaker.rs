//! Circuit breaker overhead, interleaved with the bare service and tower's
//! `ConcurrencyLimit` in the same rounds.
//!
//! Run: `cargo bench -p buttress-benches --bench breaker`
//!
//! Every variant wraps the shared `Echo` service and is driven by the shared `drive`
//! loop (`ready` then `call`, awaited on a current-thread runtime). Every request is a
//! `WithDeadline<u64>` (the bare service and tower get the same requests). The benches package builds buttress with `metrics` on and installs no
//! recorder, so every row pays for the (no-op) metric handles.
//!
//! Clock reads are rows of their own: "ConcurrencyLimit + k clock reads" is the
//! target each breaker configuration is held to.
//!
//! To profile one row alone (e.g. under `perf` or `valgrind --tool=callgrind`), set
//! `PROFILE_ROW` to part of its name and optionally `PROFILE_CALLS` to the number of
//! calls: `PROFILE_ROW="count window" PROFILE_CALLS=200000 valgrind --tool=callgrind
//! target/release/deps/breaker-*`.

use std::hint::black_box;
use std::time::Duration;

use buttress::breaker::{BreakerConfig, BreakerHandle, BreakerLayer, Window};
use buttress::{BoxError, Deadline, WithDeadline};
use buttress_benches::{CountingAlloc, Echo, Variant, allocations_per_call, interleaved, runtime};
use tokio::runtime::Runtime;
use tokio::time::Instant;
use tower::limit::ConcurrencyLimit;
use tower::{Layer, Service};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

type Req = WithDeadline<u64>;

/// Makes `n` calls to `svc` with the shared driver and returns their time.
fn drive<S>(rt: &Runtime, svc: &mut S, make: &impl Fn(u64) -> Req, n: u64) -> Duration
where
    S: Service<Req>,
    S::Error: std::fmt::Debug,
{
    buttress_benches::drive(rt, svc, n, make)
}

fn breaker(
    config: BreakerConfig,
) -> (
    impl Service<Req, Response = Req, Error = BoxError>,
    BreakerHandle,
) {
    let layer = BreakerLayer::new(config);
    let handle = layer.handle();
    (layer.layer(Echo), handle)
}

fn count_window() -> BreakerConfig {
    BreakerConfig::default().with_window(Window::Calls(100))
}

fn time_window(d: Duration) -> BreakerConfig {
    BreakerConfig::default().with_window(Window::Duration(d))
}

fn main() {
    let rt = runtime();
    let rt = &rt;
    let _guard = rt.enter();
    let started = Instant::now();
    let carried = move |i: u64| {
        WithDeadline::with_deadline(i, Deadline::after(started, Duration::from_secs(3600)))
    };
    let plain = |i: u64| WithDeadline::new(i);
    // Calls are never slow here (the carried deadline started with the run).
    let slow = Duration::from_secs(86_400);

    // One constructor per row, so that the same services serve the timing and the
    // allocation count.
    type Run<'a> = Box<dyn FnMut(u64) -> Duration + 'a>;
    let rows: Vec<(&str, Run<'_>)> = vec![
        ("bare", {
            let mut s = Echo;
            Box::new(move |n| drive(rt, &mut s, &carried, n))
        }),
        ("tower ConcurrencyLimit", {
            let mut s = ConcurrencyLimit::new(Echo, 1 << 20);
            Box::new(move |n| drive(rt, &mut s, &carried, n))
        }),
        ("tower ConcurrencyLimit + 1 clock read", {
            let mut s = ConcurrencyLimit::new(Echo, 1 << 20);
            Box::new(move |n| {
                drive(
                    rt,
                    &mut s,
                    &|i| {
                        black_box(Instant::now());
                        carried(i)
                    },
                    n,
                )
            })
        }),
        ("tower ConcurrencyLimit + 2 clock reads", {
            let mut s = ConcurrencyLimit::new(Echo, 1 << 20);
            Box::new(move |n| {
                drive(
                    rt,
                    &mut s,
                    &|i| {
                        black_box(Instant::now());
                        black_box(Instant::now());
                        carried(i)
                    },
                    n,
                )
            })
        }),
        ("bare + 1 clock read", {
            let mut s = Echo;
            Box::new(move |n| {
                drive(
                    rt,
                    &mut s,
                    &|i| {
                        black_box(Instant::now());
                        carried(i)
                    },
                    n,
                )
            })
        }),
        ("breaker disabled (pass-through)", {
            let mut s = BreakerLayer::disabled().layer(Echo);
            Box::new(move |n| drive(rt, &mut s, &carried, n))
        }),
        ("breaker, count window (0 clock reads)", {
            let (mut s, _) = breaker(count_window());
            Box::new(move |n| drive(rt, &mut s, &carried, n))
        }),
        ("breaker, time window 30s (1 clock read)", {
            let (mut s, _) = breaker(time_window(Duration::from_secs(30)));
            Box::new(move |n| drive(rt, &mut s, &carried, n))
        }),
        (
            "breaker, count window + slow calls, deadline carried (1 clock read)",
            {
                let (mut s, _) = breaker(count_window().with_slow_call(slow, 0.5));
                Box::new(move |n| drive(rt, &mut s, &carried, n))
            },
        ),
        (
            "breaker, count window + slow calls, no deadline (2 clock reads)",
            {
                let (mut s, _) = breaker(count_window().with_slow_call(slow, 0.5));
                Box::new(move |n| drive(rt, &mut s, &plain, n))
            },
        ),
        (
            "breaker, time window 30s + slow calls, deadline carried (1 clock read)",
            {
                let (mut s, _) =
                    breaker(time_window(Duration::from_secs(30)).with_slow_call(slow, 0.5));
                Box::new(move |n| drive(rt, &mut s, &carried, n))
            },
        ),
    ];

    if let Ok(name) = std::env::var("PROFILE_ROW") {
        let Some((_, mut run)) = rows.into_iter().find(|(n, _)| n.contains(name.as_str())) else {
            panic!("no row matches PROFILE_ROW={name:?}");
        };
        let n = std::env::var("PROFILE_CALLS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(200_000_000u64);
        run(n);
        return;
    }
    let mut allocs = Vec::new();
    let mut variants = Vec::new();
    for (name, mut run) in rows {
        allocs.push((
            name,
            allocations_per_call(10_000, |n| {
                run(n);
            }),
        ));
        variants.push(Variant::new(name, run));
    }
    let report = interleaved(
        "Circuit breaker: overhead per call (closed, successes)",
        variants,
        Some("tower ConcurrencyLimit"),
        101,
        50_000,
    )
    .with_allocations(&allocs);
    report.publish("breaker");

    // Time-window scaling: the same time window holding about 1,000 or about 100,000
    // calls. The window's duration is set from the measured cost of a call so that it
    // holds that many calls at the rate this loop makes them.
    let ns = {
        let (mut s, _) = breaker(time_window(Duration::from_secs(30)));
        drive(rt, &mut s, &carried, 200_000);
        drive(rt, &mut s, &carried, 1_000_000).as_nanos() as f64 / 1e6
    };
    let span = |calls: f64| Duration::from_nanos((calls * ns) as u64);
    let (mut small, small_handle) = breaker(time_window(span(1_000.0)));
    let (mut large, large_handle) = breaker(time_window(span(100_000.0)));
    // What each window held at the end of each of its rounds, as a check on the setup.
    let held_small = std::cell::Cell::new(0);
    let held_large = std::cell::Cell::new(0);
    let mut scaling = interleaved(
        "Circuit breaker: time-window scaling",
        vec![
            Variant::new("time window holding ~1,000 calls", |n| {
                let d = drive(rt, &mut small, &carried, n);
                held_small.set(small_handle.snapshot().calls);
                d
            }),
            Variant::new("time window holding ~100,000 calls", |n| {
                let d = drive(rt, &mut large, &carried, n);
                held_large.set(large_handle.snapshot().calls);
                d
            }),
        ],
        None,
        41,
        400_000,
    );
    scaling.title = format!(
        "{} (windows of {:?} and {:?}; calls held at the end of the last round: {} and {})",
        scaling.title,
        span(1_000.0),
        span(100_000.0),
        held_small.get(),
        held_large.get(),
    );
    scaling.publish("breaker-scaling");
    if let Some(r) = scaling.row("time window holding ~100,000 calls") {
        println!("scaling ratio 100k/1k: {:.3} (target <= 1.2)", r.ratio);
    }
}
