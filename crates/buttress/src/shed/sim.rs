//! Simulations on paused time: an open-loop load generator, callers with a timeout,
//! and a backend of fixed capacity (a semaphore of `C` permits, each call holding one
//! for `T`). The shed layer sits in front of the backend, as at the top of a server.
//!
//! Arrivals come in 1 ms ticks (the timer wheel's resolution), as many per tick as the
//! rate says, so every run is deterministic.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::{Instant, sleep, sleep_until};
use tower::{Service, ServiceExt};

use super::*;
use crate::rejection::{OverloadReason, Overloaded};
use crate::{BoxError, Deadline, Priority, RequestMeta, WithDeadline};

pub(crate) const C: usize = 50;
pub(crate) const T: Duration = Duration::from_millis(10);
/// Requests per second the backend can answer: C / T.
pub(crate) const CAPACITY: f64 = 5000.0;
pub(crate) const CALLER_TIMEOUT: Duration = Duration::from_millis(100);

pub(crate) type Req = WithDeadline<u64>;

/// A backend whose capacity can change while it runs.
#[derive(Clone)]
pub(crate) struct Backend {
    permits: Arc<Semaphore>,
    capacity: Arc<Mutex<usize>>,
}

impl Backend {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(capacity)),
            capacity: Arc::new(Mutex::new(capacity)),
        }
    }

    pub(crate) fn service(
        &self,
    ) -> impl Service<Req, Response = u64, Error = BoxError, Future: Send + 'static>
    + Clone
    + Send
    + 'static {
        let permits = self.permits.clone();
        tower::service_fn(move |req: Req| {
            let permits = permits.clone();
            async move {
                let _permit = permits
                    .acquire()
                    .await
                    .map_err(|e| -> BoxError { e.into() })?;
                sleep(T).await;
                Ok::<u64, BoxError>(req.request)
            }
        })
    }

    /// Changes the number of calls the backend runs at once. Removing capacity takes
    /// permits as calls free them, in line with the waiting calls.
    pub(crate) fn set_capacity(&self, capacity: usize) {
        let mut current = self.capacity.lock().unwrap();
        if capacity > *current {
            self.permits.add_permits(capacity - *current);
        } else {
            for _ in capacity..*current {
                let permits = self.permits.clone();
                tokio::spawn(async move {
                    if let Ok(p) = permits.acquire().await {
                        p.forget();
                    }
                });
            }
        }
        *current = capacity;
    }
}

/// One stretch of the run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Phase {
    pub(crate) duration: Duration,
    /// Offered requests per second.
    pub(crate) rate: f64,
    /// Backend capacity (concurrent calls) during the phase.
    pub(crate) capacity: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Result_ {
    /// Answered within the caller's timeout.
    Ok,
    /// Refused by the shed layer.
    Shed,
    /// The caller gave up.
    Timeout,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Record {
    pub(crate) at: Duration,
    pub(crate) priority: Priority,
    pub(crate) latency: Duration,
    pub(crate) result: Result_,
}

/// 20% critical, 50% default, 30% sheddable, interleaved.
pub(crate) fn mixed(i: u64) -> Priority {
    match i % 10 {
        0 | 5 => Priority::Critical,
        1 | 3 | 6 | 8 | 9 => Priority::Default,
        _ => Priority::Sheddable,
    }
}

pub(crate) fn all_default(_: u64) -> Priority {
    Priority::Default
}

/// Runs `phases` against `svc` (built over `backend`), calling `probe` every 10 ms
/// with the elapsed time. Returns every request's record.
pub(crate) async fn run<S>(
    svc: S,
    backend: &Backend,
    phases: &[Phase],
    priority: fn(u64) -> Priority,
    mut probe: impl FnMut(Duration),
) -> Vec<Record>
where
    S: Service<Req, Response = u64, Error = BoxError> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let records = Arc::new(Mutex::new(Vec::new()));
    let start = Instant::now();
    let tick = Duration::from_millis(1);
    let mut n = 0u64;
    let mut owed = 0.0;
    let mut elapsed = Duration::ZERO;
    for phase in phases {
        backend.set_capacity(phase.capacity);
        let ticks = phase.duration.as_millis() as u64;
        for _ in 0..ticks {
            owed += phase.rate / 1000.0;
            while owed >= 1.0 {
                owed -= 1.0;
                let now = Instant::now();
                let mut req = WithDeadline::with_deadline(n, Deadline::after(now, CALLER_TIMEOUT));
                let p = priority(n);
                req.set_priority(p);
                n += 1;
                let svc = svc.clone();
                let records = records.clone();
                tokio::spawn(async move {
                    let result = match tokio::time::timeout(CALLER_TIMEOUT, svc.oneshot(req)).await
                    {
                        Ok(Ok(_)) => Result_::Ok,
                        Ok(Err(e)) => match e.downcast_ref::<Overloaded>() {
                            Some(o) if o.reason() == OverloadReason::Shed => Result_::Shed,
                            _ => panic!("unexpected error: {e}"),
                        },
                        Err(_) => Result_::Timeout,
                    };
                    let latency = now.elapsed();
                    records.lock().unwrap().push(Record {
                        at: now - start,
                        priority: p,
                        latency,
                        result,
                    });
                });
            }
            elapsed += tick;
            if elapsed.as_millis() % 10 == 0 {
                probe(elapsed);
            }
            sleep_until(start + elapsed).await;
        }
    }
    // Let every call end.
    sleep(CALLER_TIMEOUT * 2).await;
    let mut out = std::mem::take(&mut *records.lock().unwrap());
    out.sort_by_key(|r| r.at);
    out
}

/// Successes per second between `from` and `to` (by arrival).
pub(crate) fn goodput(records: &[Record], from: Duration, to: Duration) -> f64 {
    let ok = records
        .iter()
        .filter(|r| r.at >= from && r.at < to && r.result == Result_::Ok)
        .count();
    ok as f64 / (to - from).as_secs_f64()
}

/// The `p` quantile of the latency of requests the shed layer did not refuse (a
/// caller's timeout counts as its full length).
pub(crate) fn admitted_quantile(records: &[Record], p: f64) -> Duration {
    let mut l: Vec<Duration> = records
        .iter()
        .filter(|r| r.result != Result_::Shed)
        .map(|r| r.latency.min(CALLER_TIMEOUT))
        .collect();
    l.sort();
    if l.is_empty() {
        return Duration::ZERO;
    }
    l[((l.len() - 1) as f64 * p).round() as usize]
}

/// Share of `priority`'s requests with `result`.
pub(crate) fn share(records: &[Record], priority: Priority, result: Result_) -> f64 {
    let of: Vec<_> = records.iter().filter(|r| r.priority == priority).collect();
    of.iter().filter(|r| r.result == result).count() as f64 / of.len().max(1) as f64
}

fn phase(secs: f64, load: f64, capacity: usize) -> Phase {
    Phase {
        duration: Duration::from_secs_f64(secs),
        rate: load * CAPACITY,
        capacity,
    }
}

/// The limit every 10 ms.
type Trace = Vec<(Duration, usize)>;

/// The samples of `trace` within the last second before `end`.
fn last_second(trace: &Trace, end: Duration) -> Vec<usize> {
    trace
        .iter()
        .filter(|(t, _)| *t > end - Duration::from_secs(1) && *t <= end)
        .map(|&(_, l)| l)
        .collect()
}

async fn shed_run(
    config: ShedConfig,
    phases: &[Phase],
    priority: fn(u64) -> Priority,
) -> (Vec<Record>, Trace, ShedSnapshot) {
    let backend = Backend::new(phases[0].capacity);
    let layer = ShedLayer::new(config);
    let handle = layer.handle().unwrap();
    let svc = tower::Layer::layer(&layer, backend.service());
    let mut trace = vec![];
    let records = run(svc, &backend, phases, priority, |t| {
        trace.push((t, handle.limit()));
    })
    .await;
    (records, trace, handle.snapshot())
}

/// The headline: at 3x capacity for 10 s, shedding keeps goodput near capacity and
/// admitted calls fast; without it, goodput collapses.
#[tokio::test(start_paused = true)]
async fn shedding_keeps_goodput_and_latency_at_three_times_capacity() {
    let secs = Duration::from_secs(10);
    // Unloaded: half the capacity, no shedding.
    let backend = Backend::new(C);
    let unloaded = run(
        backend.service(),
        &backend,
        &[phase(2.0, 0.5, C)],
        all_default,
        |_| {},
    )
    .await;
    let unloaded_p99 = admitted_quantile(&unloaded, 0.99);
    assert_eq!(unloaded_p99, T);

    // AIMD is the algorithm that keeps round trips within 1.2x of the baseline; the
    // queue's `max_wait` is T / 2 (at most T, as the scenario asks) and it turns LIFO
    // once it stands for 100 ms.
    let mut config = ShedConfig::new(Algorithm::Aimd).with_queue(64, T / 2);
    config.queue.target = Duration::from_millis(2);
    let (shed, _, snap) = shed_run(config, &[phase(10.0, 3.0, C)], all_default).await;
    let good = goodput(&shed, Duration::ZERO, secs);
    let p99 = admitted_quantile(&shed, 0.99);
    assert!(good >= 0.9 * CAPACITY, "goodput with shedding {good}/s");
    assert!(
        p99 <= unloaded_p99 * 2,
        "p99 of admitted {p99:?} vs unloaded {unloaded_p99:?}"
    );
    let refused = snap.shed.total() + snap.expired.total();
    assert!(refused > 90_000, "about two thirds refused: {snap:?}");

    let backend = Backend::new(C);
    let bare = run(
        backend.service(),
        &backend,
        &[phase(10.0, 3.0, C)],
        all_default,
        |_| {},
    )
    .await;
    let good = goodput(&bare, Duration::ZERO, secs);
    assert!(good < 0.5 * CAPACITY, "goodput without shedding {good}/s");
}

/// One adaptive algorithm, started at C/4 and at 4C: it settles within 0.9C..1.5C at
/// 3x load, then follows the capacity as it doubles and halves.
async fn settles_and_follows(algorithm: Algorithm) {
    let phases = [
        phase(4.0, 3.0, C),
        phase(3.0, 3.0, 2 * C),
        phase(3.0, 3.0, C),
    ];
    for initial in [C / 4, 4 * C] {
        let config = ShedConfig::new(algorithm).with_limits(initial, 1, 1000);
        let (_, trace, _) = shed_run(config, &phases, all_default).await;
        let mut end = Duration::ZERO;
        for p in &phases {
            end += p.duration;
            let c = p.capacity as f64;
            let seen = last_second(&trace, end);
            let (lo, hi) = ((0.9 * c).floor() as usize, (1.5 * c).ceil() as usize);
            assert!(
                seen.iter().all(|l| (lo..=hi).contains(l)),
                "{algorithm:?} from {initial}, capacity {c} until {end:?}: {seen:?}"
            );
        }
    }
}

#[tokio::test(start_paused = true)]
async fn aimd_settles_near_capacity_and_follows_it() {
    settles_and_follows(Algorithm::Aimd).await;
}

#[tokio::test(start_paused = true)]
async fn gradient_settles_near_capacity_and_follows_it() {
    settles_and_follows(Algorithm::Gradient).await;
}

#[tokio::test(start_paused = true)]
async fn vegas_settles_near_capacity_and_follows_it() {
    settles_and_follows(Algorithm::Vegas).await;
}

/// 20% critical (0.6x capacity on its own), 50% default, 30% sheddable, at 3x.
#[tokio::test(start_paused = true)]
async fn sheddable_calls_absorb_the_refusals_and_critical_ones_get_through() {
    let config = ShedConfig::new(Algorithm::Aimd).with_queue(64, T / 2);
    let (records, _, snap) = shed_run(config, &[phase(10.0, 3.0, C)], mixed).await;
    let ok = |p| share(&records, p, Result_::Ok);
    let (critical, default, sheddable) = (
        ok(Priority::Critical),
        ok(Priority::Default),
        ok(Priority::Sheddable),
    );
    assert!(
        snap.shed.critical + snap.expired.critical < 1_000,
        "{snap:?}"
    );
    assert!(critical >= 0.99, "critical success {critical}");
    assert!(
        sheddable < default && default < critical,
        "{sheddable} < {default} < {critical}"
    );
    // Sheddable calls are refused before any default call is.
    assert!(sheddable < 0.05, "sheddable success {sheddable}");
    assert!(goodput(&records, Duration::ZERO, Duration::from_secs(10)) >= 0.9 * CAPACITY);
}
