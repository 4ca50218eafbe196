//! Shared helpers for the benchmarks: a counting allocator, and an interleaved
//! comparison that reports each variant as a ratio to a baseline measured in the same
//! rounds.
//!
//! These machines are shared and noisy, so absolute times mean little: every variant
//! is run in turn within each round (the order rotating from round to round), the
//! ratio to the baseline is taken per round, and the report gives the median ratio
//! with its interquartile spread.
#![allow(unsafe_code)] // the counting allocator implements `GlobalAlloc`
#![allow(clippy::disallowed_types, clippy::disallowed_methods)] // benches time with the wall clock

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::future::{Ready, ready};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use tower_service::Service;

/// A global allocator that counts allocations made by the current thread.
///
/// Install it in a bench with `#[global_allocator] static A: CountingAlloc = CountingAlloc;`.
#[derive(Debug)]
pub struct CountingAlloc;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: delegates every operation to the system allocator unchanged; the counter is
// a thread-local `Cell` that does not allocate.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

/// Allocations made by this thread so far (only counts with [`CountingAlloc`]
/// installed).
pub fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

/// Allocations per call of `f`, averaged over `calls` calls (after `f` ran once to
/// warm up).
pub fn allocations_per_call(calls: u64, mut f: impl FnMut(u64)) -> f64 {
    f(16);
    let before = allocations();
    f(calls);
    (allocations() - before) as f64 / calls as f64
}

/// One variant of an interleaved comparison: a name and a closure that makes `n`
/// calls and returns how long they took.
pub struct Variant<'a> {
    name: String,
    run: Box<dyn FnMut(u64) -> Duration + 'a>,
    allocs: Option<f64>,
}

impl std::fmt::Debug for Variant<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Variant").field("name", &self.name).finish()
    }
}

impl<'a> Variant<'a> {
    /// A variant called `name` whose closure makes `n` calls and returns the time
    /// they took.
    pub fn new(name: impl Into<String>, run: impl FnMut(u64) -> Duration + 'a) -> Self {
        Self {
            name: name.into(),
            run: Box::new(run),
            allocs: None,
        }
    }
}

/// One row of a comparison report.
#[derive(Debug, Clone)]
pub struct Row {
    /// The variant's name.
    pub name: String,
    /// Median time per call in nanoseconds (indicative only).
    pub ns_per_call: f64,
    /// Median of the per-round ratios to the baseline.
    pub ratio: f64,
    /// 25th percentile of the per-round ratios.
    pub ratio_p25: f64,
    /// 75th percentile of the per-round ratios.
    pub ratio_p75: f64,
    /// Overhead over the bare service, as a ratio to the reference's overhead.
    pub overhead_vs_reference: Option<f64>,
    /// Heap allocations per call.
    pub allocs_per_call: Option<f64>,
}

/// The result of an interleaved comparison.
#[derive(Debug, Clone)]
pub struct Report {
    /// The comparison's title.
    pub title: String,
    /// The baseline's name.
    pub baseline: String,
    /// One row per variant, in the order given.
    pub rows: Vec<Row>,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

/// Runs `variants` interleaved for `rounds` rounds of `calls` calls each and reports
/// every variant's median ratio to `variants[0]` (the baseline).
///
/// Where `reference` names a variant, each row also reports its overhead (time minus
/// the baseline's) relative to the reference's overhead: the honest way to say
/// "within 1.1x of tower's layer" when both are a few nanoseconds over the bare
/// service.
pub fn interleaved(
    title: &str,
    mut variants: Vec<Variant<'_>>,
    reference: Option<&str>,
    rounds: usize,
    calls: u64,
) -> Report {
    let n = variants.len();
    // Warm up every variant once.
    for v in variants.iter_mut() {
        (v.run)(calls / 4 + 1);
    }
    let mut times = vec![Vec::with_capacity(rounds); n];
    for round in 0..rounds {
        for k in 0..n {
            let i = (k + round) % n;
            let d = (variants[i].run)(calls);
            times[i].push(d.as_nanos() as f64 / calls as f64);
        }
    }
    let ratios: Vec<Vec<f64>> = (0..n)
        .map(|i| {
            let mut r: Vec<f64> = times[i].iter().zip(&times[0]).map(|(t, b)| t / b).collect();
            r.sort_by(f64::total_cmp);
            r
        })
        .collect();
    let reference_idx = reference.and_then(|name| variants.iter().position(|v| v.name == name));
    let overhead_ratio = |i: usize| -> Option<f64> {
        let r = reference_idx?;
        let mut per_round: Vec<f64> = (0..rounds)
            .map(|k| {
                let ref_over = times[r][k] - times[0][k];
                let over = times[i][k] - times[0][k];
                over / ref_over
            })
            .filter(|x| x.is_finite())
            .collect();
        per_round.sort_by(f64::total_cmp);
        (!per_round.is_empty()).then(|| percentile(&per_round, 0.5))
    };
    let rows = (0..n)
        .map(|i| {
            let mut t = times[i].clone();
            t.sort_by(f64::total_cmp);
            Row {
                name: variants[i].name.clone(),
                ns_per_call: percentile(&t, 0.5),
                ratio: percentile(&ratios[i], 0.5),
                ratio_p25: percentile(&ratios[i], 0.25),
                ratio_p75: percentile(&ratios[i], 0.75),
                overhead_vs_reference: if Some(i) == reference_idx || i == 0 {
                    None
                } else {
                    overhead_ratio(i)
                },
                allocs_per_call: variants[i].allocs,
            }
        })
        .collect();
    Report {
        title: title.to_owned(),
        baseline: variants[0].name.clone(),
        rows,
    }
}

impl Report {
    /// Attaches allocation counts (per call) to rows by name.
    pub fn with_allocations(mut self, allocs: &[(&str, f64)]) -> Self {
        for (name, a) in allocs {
            if let Some(row) = self.rows.iter_mut().find(|r| r.name == *name) {
                row.allocs_per_call = Some(*a);
            }
        }
        self
    }

    /// The row called `name`.
    pub fn row(&self, name: &str) -> Option<&Row> {
        self.rows.iter().find(|r| r.name == name)
    }

    /// The report as a Markdown table.
    pub fn markdown(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "### {}\n", self.title);
        let _ = writeln!(
            s,
            "| variant | ratio to {} (median) | spread (p25..p75) | overhead vs reference | allocs/call | ns/call (indicative) |",
            self.baseline
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|");
        for r in &self.rows {
            let over = r
                .overhead_vs_reference
                .map_or("".to_owned(), |x| format!("{x:.2}x"));
            let allocs = r
                .allocs_per_call
                .map_or("".to_owned(), |x| format!("{x:.2}"));
            let _ = writeln!(
                s,
                "| {} | {:.3} | {:.3}..{:.3} | {} | {} | {:.1} |",
                r.name, r.ratio, r.ratio_p25, r.ratio_p75, over, allocs, r.ns_per_call
            );
        }
        s
    }

    /// Prints the table and appends it to `target/bench-reports/<file>.md`.
    pub fn publish(&self, file: &str) {
        let md = self.markdown();
        println!("{md}");
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/bench-reports");
        if std::fs::create_dir_all(&dir).is_ok() {
            let _ = std::fs::write(dir.join(format!("{file}.md")), md);
        }
    }
}

/// Times `n` iterations of `f` on the wall clock.
pub fn time(n: u64, mut f: impl FnMut()) -> Duration {
    let start = Instant::now();
    for _ in 0..n {
        f();
    }
    start.elapsed()
}

/// A current-thread tokio runtime with the time driver, as a long-lived client would
/// run on.
pub fn runtime() -> tokio::runtime::Runtime {
    match tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => panic!("cannot build a tokio runtime: {e}"),
    }
}

/// The cheapest possible service: answers at once with its request. The baseline every
/// layer's overhead is measured against.
#[derive(Clone, Copy, Debug, Default)]
pub struct Echo;

impl<R> Service<R> for Echo {
    type Response = R;
    type Error = Infallible;
    type Future = Ready<Result<R, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: R) -> Self::Future {
        ready(Ok(req))
    }
}

/// Drives one long-lived `svc` for `n` calls (`ready().await` then `call().await`, as a
/// client task would) on `rt`, and returns the elapsed wall time.
pub fn drive<S, R>(
    rt: &tokio::runtime::Runtime,
    svc: &mut S,
    n: u64,
    req: impl Fn(u64) -> R,
) -> Duration
where
    S: Service<R>,
    S::Error: std::fmt::Debug,
{
    rt.block_on(async {
        let start = Instant::now();
        for i in 0..n {
            let ready = std::future::poll_fn(|cx| svc.poll_ready(cx)).await;
            if let Err(e) = ready {
                panic!("service failed: {e:?}");
            }
            match svc.call(req(i)).await {
                Ok(r) => {
                    std::hint::black_box(r);
                }
                Err(e) => panic!("call failed: {e:?}"),
            }
        }
        start.elapsed()
    })
}
