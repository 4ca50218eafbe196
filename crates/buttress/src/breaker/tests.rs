//! Service-level tests (the plain logic is tested next to it, in `window` and `state`).

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::task::Poll;
use std::time::Duration;

use tokio::time::{Instant, advance};
use tower::{Layer, Service, ServiceExt, service_fn};
use tower_test::mock::Spawn;

use super::*;
use crate::keyed::{KeyedConfig, partition_fn};
use crate::rejection::{BulkheadFull, CircuitOpen};
use crate::{Attempt, BoxError, Deadline, RequestMeta, WithDeadline};

const MS: Duration = Duration::from_millis(1);

/// 0: success; 1: failure; 2: a local `BulkheadFull` (ignored); n >= 10: success after
/// n milliseconds.
fn backend(
    calls: Arc<AtomicU32>,
) -> impl Service<
    u32,
    Response = u32,
    Error = BoxError,
    Future = impl Future<Output = Result<u32, BoxError>>,
> + Clone {
    service_fn(move |r: u32| {
        calls.fetch_add(1, Ordering::SeqCst);
        async move {
            match r {
                0 => Ok(0),
                1 => Err("upstream failed".into()),
                2 => Err(BulkheadFull::full().into()),
                n => {
                    tokio::time::sleep(MS * n).await;
                    Ok(n)
                }
            }
        }
    })
}

fn config() -> BreakerConfig {
    BreakerConfig::default()
        .with_window(Window::Calls(10))
        .with_minimum_calls(4)
        .with_failure_rate(0.5)
        .with_open_for(100 * MS, 400 * MS)
        .with_half_open_probes(2)
        .with_jitter(0.0)
}

async fn run<S: Service<u32, Error = BoxError>>(
    svc: &mut S,
    r: u32,
) -> Result<S::Response, BoxError> {
    svc.ready().await?.call(r).await
}

fn open_error(r: Result<u32, BoxError>) -> CircuitOpen {
    *r.unwrap_err()
        .downcast_ref::<CircuitOpen>()
        .expect("CircuitOpen")
}

#[tokio::test(start_paused = true)]
async fn reject_mode_refuses_without_calling_the_inner_service() {
    let calls = Arc::new(AtomicU32::new(0));
    let layer = BreakerLayer::new(config());
    let handle = layer.handle();
    let mut svc = layer.layer(backend(calls.clone()));
    for _ in 0..4 {
        assert!(run(&mut svc, 1).await.is_err());
    }
    assert_eq!(handle.state(), BreakerState::Open);
    advance(30 * MS).await;
    let open = open_error(run(&mut svc, 0).await);
    assert_eq!(open.retry_after(), 70 * MS);
    assert_eq!(calls.load(Ordering::SeqCst), 4);
    let snap = handle.snapshot();
    assert_eq!(snap.open_remaining, Some(70 * MS));
    assert_eq!((snap.calls, snap.failures), (4, 4));
    assert_eq!(snap.failure_rate, 1.0);
}

#[tokio::test(start_paused = true)]
async fn ignored_outcomes_and_cancelled_calls_are_not_counted() {
    let calls = Arc::new(AtomicU32::new(0));
    let layer = BreakerLayer::new(config());
    let handle = layer.handle();
    let mut svc = layer.layer(backend(calls.clone()));
    for _ in 0..20 {
        assert!(run(&mut svc, 2).await.unwrap_err().is::<BulkheadFull>());
    }
    // Cancelled: the future is dropped before the slow call answers.
    for _ in 0..5 {
        let fut = svc.ready().await.unwrap().call(50);
        drop(fut);
    }
    let snap = handle.snapshot();
    assert_eq!(snap.state, BreakerState::Closed);
    assert_eq!(snap.calls, 0);
}

#[tokio::test(start_paused = true)]
async fn half_open_probes_are_reserved_across_clones_and_freed_when_dropped() {
    let calls = Arc::new(AtomicU32::new(0));
    let layer = BreakerLayer::new(config());
    let handle = layer.handle();
    let mut a = layer.layer(backend(calls.clone()));
    let mut b = a.clone();
    for _ in 0..4 {
        let _ = run(&mut a, 1).await;
    }
    advance(100 * MS).await;
    // Two probes, one from each clone, both slow.
    let p1 = a.ready().await.unwrap().call(50);
    let p2 = b.ready().await.unwrap().call(50);
    assert_eq!(handle.snapshot().probes_in_flight, 2);
    // A third call, on either clone, is refused with nothing left to wait for.
    assert_eq!(
        open_error(run(&mut b, 0).await).retry_after(),
        Duration::ZERO
    );
    // Dropping a probe frees its slot, uncounted.
    drop(p2);
    assert_eq!(handle.snapshot().probes_in_flight, 1);
    let p3 = b.ready().await.unwrap().call(0);
    assert_eq!(p3.await.unwrap(), 0);
    assert_eq!(handle.state(), BreakerState::HalfOpen);
    assert_eq!(p1.await.unwrap(), 50);
    let snap = handle.snapshot();
    assert_eq!(snap.state, BreakerState::Closed);
    assert_eq!(snap.calls, 0, "a clean close starts with an empty window");
}

#[tokio::test(start_paused = true)]
async fn failed_probes_reopen_for_twice_as_long() {
    let calls = Arc::new(AtomicU32::new(0));
    let layer = BreakerLayer::new(config().with_half_open_probes(1));
    let handle = layer.handle();
    let mut svc = layer.layer(backend(calls.clone()));
    for _ in 0..4 {
        let _ = run(&mut svc, 1).await;
    }
    advance(100 * MS).await;
    assert!(
        run(&mut svc, 1)
            .await
            .unwrap_err()
            .to_string()
            .contains("upstream")
    );
    assert_eq!(open_error(run(&mut svc, 0).await).retry_after(), 200 * MS);
    assert_eq!(handle.snapshot().open_for, Some(200 * MS));
}

#[tokio::test(start_paused = true)]
async fn gate_mode_is_pending_while_open_and_wakes_when_half_open() {
    let calls = Arc::new(AtomicU32::new(0));
    let layer = BreakerLayer::new(
        config()
            .with_mode(BreakerMode::Gate)
            .with_half_open_probes(1),
    );
    let handle = layer.handle();
    let mut svc = Spawn::new(layer.layer(backend(calls.clone())));
    for _ in 0..4 {
        assert!(matches!(svc.poll_ready(), Poll::Ready(Ok(()))));
        let _ = svc.call(1u32).await;
    }
    assert_eq!(handle.state(), BreakerState::Open);
    assert!(svc.poll_ready::<u32>().is_pending());
    assert!(!svc.is_woken());
    advance(99 * MS).await;
    assert!(!svc.is_woken());
    advance(MS).await;
    assert!(svc.is_woken(), "woken when the open time is over");
    // Ready with the one probe slot reserved: a clone must wait for it.
    assert!(matches!(svc.poll_ready::<u32>(), Poll::Ready(Ok(()))));
    assert_eq!(handle.snapshot().probes_in_flight, 1);
    let mut other = Spawn::new(svc.get_ref().clone());
    assert!(other.poll_ready::<u32>().is_pending());
    let probe = svc.call(20u32);
    assert!(!other.is_woken());
    assert_eq!(probe.await.unwrap(), 20);
    assert!(other.is_woken(), "woken when the probe closed the breaker");
    assert_eq!(handle.state(), BreakerState::Closed);
    assert!(matches!(other.poll_ready::<u32>(), Poll::Ready(Ok(()))));
}

#[tokio::test(start_paused = true)]
async fn gate_mode_releases_a_reserved_probe_when_the_service_is_dropped() {
    let calls = Arc::new(AtomicU32::new(0));
    let layer = BreakerLayer::new(
        config()
            .with_mode(BreakerMode::Gate)
            .with_half_open_probes(1),
    );
    let handle = layer.handle();
    let mut a = Spawn::new(layer.layer(backend(calls.clone())));
    let mut b = Spawn::new(layer.layer(backend(calls.clone())));
    handle.force_open();
    assert!(a.poll_ready::<u32>().is_pending());
    assert!(b.poll_ready::<u32>().is_pending());
    // Forced open: only a handle can change it, and it wakes the waiters.
    handle.reset();
    assert!(a.is_woken() && b.is_woken());
    for _ in 0..4 {
        assert!(a.poll_ready::<u32>().is_ready());
        let _ = a.call(1u32).await;
    }
    advance(100 * MS).await;
    assert!(a.poll_ready::<u32>().is_ready());
    assert!(b.poll_ready::<u32>().is_pending());
    drop(a);
    assert!(b.is_woken());
    assert!(b.poll_ready::<u32>().is_ready());
    assert_eq!(handle.snapshot().probes_in_flight, 1);
}

#[tokio::test(start_paused = true)]
async fn gate_mode_drops_a_reservation_the_breaker_has_moved_past() {
    let calls = Arc::new(AtomicU32::new(0));
    let layer = BreakerLayer::new(config().with_mode(BreakerMode::Gate));
    let handle = layer.handle();
    let mut svc = Spawn::new(layer.layer(backend(calls.clone())));
    for _ in 0..4 {
        assert!(svc.poll_ready::<u32>().is_ready());
        let _ = svc.call(1u32).await;
    }
    advance(100 * MS).await;
    assert!(svc.poll_ready::<u32>().is_ready());
    assert_eq!(handle.snapshot().probes_in_flight, 1);
    handle.reset();
    // The probe slot belonged to a half-open phase that is over: the next call is an
    // ordinary closed call, and it counts.
    assert!(svc.poll_ready::<u32>().is_ready());
    let _ = svc.call(1u32).await;
    assert_eq!(handle.snapshot().calls, 1);
}

#[tokio::test(start_paused = true)]
async fn observe_mode_reports_but_lets_everything_through() {
    let calls = Arc::new(AtomicU32::new(0));
    let layer = BreakerLayer::new(config().with_mode(BreakerMode::Observe));
    let handle = layer.handle();
    let mut rx = handle.subscribe();
    let mut svc = layer.layer(backend(calls.clone()));
    for _ in 0..10 {
        assert!(
            run(&mut svc, 1)
                .await
                .unwrap_err()
                .to_string()
                .contains("upstream")
        );
    }
    assert_eq!(calls.load(Ordering::SeqCst), 10);
    assert_eq!(handle.state(), BreakerState::Open);
    assert!(rx.has_changed().unwrap());
    let t = *rx.borrow_and_update();
    assert_eq!(
        (t.from, t.to, t.seq),
        (BreakerState::Closed, BreakerState::Open, 1)
    );
    // The six calls it would have refused were not counted.
    assert_eq!(handle.snapshot().calls, 4);
}

#[tokio::test(start_paused = true)]
async fn a_disabled_layer_is_a_pass_through_of_the_same_type() {
    let calls = Arc::new(AtomicU32::new(0));
    let layers: [BreakerLayer; 2] = [BreakerLayer::from_config(None), BreakerLayer::new(config())];
    assert!(layers[0].is_disabled() && !layers[1].is_disabled());
    let handle = layers[0].handle();
    let mut svc = layers[0].layer(backend(calls.clone()));
    for _ in 0..50 {
        let _ = run(&mut svc, 1).await;
    }
    assert_eq!(calls.load(Ordering::SeqCst), 50);
    assert_eq!(handle.state(), BreakerState::Disabled);
    handle.force_open();
    assert!(run(&mut svc, 0).await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn handle_forces_disables_and_resets() {
    let calls = Arc::new(AtomicU32::new(0));
    let layer = BreakerLayer::new(config());
    let handle = layer.handle();
    let mut svc = layer.layer(backend(calls.clone()));
    handle.force_open();
    assert_eq!(open_error(run(&mut svc, 0).await).retry_after(), 100 * MS);
    advance(Duration::from_secs(3600)).await;
    assert!(run(&mut svc, 0).await.is_err(), "forced open stays open");
    handle.disable();
    for _ in 0..10 {
        let _ = run(&mut svc, 1).await;
    }
    assert_eq!(handle.snapshot().calls, 0);
    handle.reset();
    assert_eq!(handle.state(), BreakerState::Closed);
    assert_eq!(handle.snapshot().transitions, 3);
}

#[tokio::test(start_paused = true)]
async fn time_window_forgets_old_failures() {
    let calls = Arc::new(AtomicU32::new(0));
    let layer = BreakerLayer::new(config().with_window(Window::Duration(Duration::from_secs(10))));
    let handle = layer.handle();
    let mut svc = layer.layer(backend(calls.clone()));
    for _ in 0..3 {
        let _ = run(&mut svc, 1).await;
    }
    advance(Duration::from_secs(11)).await;
    assert_eq!(handle.snapshot().calls, 0);
    let _ = run(&mut svc, 1).await;
    assert_eq!(
        handle.state(),
        BreakerState::Closed,
        "the first three failures left the window"
    );
    for _ in 0..3 {
        let _ = run(&mut svc, 1).await;
    }
    assert_eq!(handle.state(), BreakerState::Open);
}

#[tokio::test(start_paused = true)]
async fn slow_calls_trip_and_reuse_the_deadline_start_on_first_attempts() {
    let calls = Arc::new(AtomicU32::new(0));
    let inner = backend(calls.clone());
    let svc = service_fn(move |r: WithDeadline<u32>| inner.clone().oneshot(r.into_inner()));
    let layer = BreakerLayer::new(
        config()
            .with_failure_rate(1.0)
            .with_slow_call(100 * MS, 0.5),
    );
    let handle = layer.handle();
    let mut svc = layer.layer(svc);
    let req = |n: u32, started: Instant, attempt: u32| {
        let mut r =
            WithDeadline::with_deadline(n, Deadline::after(started, Duration::from_secs(60)));
        r.set_attempt(Attempt::new(attempt));
        r
    };
    // A first attempt whose call started 150 ms ago is slow however fast this leg is.
    let t0 = Instant::now();
    advance(150 * MS).await;
    svc.ready()
        .await
        .unwrap()
        .call(req(0, t0, 1))
        .await
        .unwrap();
    assert_eq!(handle.snapshot().slow_calls, 1);
    // A retry measures its own time: fast.
    svc.ready()
        .await
        .unwrap()
        .call(req(0, t0, 2))
        .await
        .unwrap();
    assert_eq!(handle.snapshot().slow_calls, 1);
    // Slow by itself, success or not.
    svc.ready()
        .await
        .unwrap()
        .call(req(120, Instant::now(), 2))
        .await
        .unwrap();
    assert_eq!(handle.state(), BreakerState::Closed);
    svc.ready()
        .await
        .unwrap()
        .call(req(100, Instant::now(), 2))
        .await
        .unwrap();
    let snap = handle.snapshot();
    assert_eq!((snap.calls, snap.slow_calls, snap.failures), (4, 3, 0));
    assert_eq!(snap.state, BreakerState::Open);
}

#[tokio::test(start_paused = true)]
async fn keyed_breakers_are_independent_and_open_ones_are_never_evicted() {
    let calls = Arc::new(AtomicU32::new(0));
    let inner = backend(calls.clone());
    let svc =
        service_fn(move |r: WithDeadline<(&'static str, u32)>| inner.clone().oneshot(r.request.1));
    let layer = BreakerLayer::builder(config())
        .partition(
            partition_fn(|r: &WithDeadline<(&'static str, u32)>| Some(r.request.0)),
            KeyedConfig {
                max_keys: 1,
                idle_timeout: Duration::from_secs(1),
            },
        )
        .build();
    let handle = layer.handle();
    let mut svc = layer.layer(svc);
    for _ in 0..4 {
        let _ = svc
            .ready()
            .await
            .unwrap()
            .call(WithDeadline::new(("a", 1)))
            .await;
    }
    let a = handle.key(&"a").unwrap();
    assert_eq!(a.state(), BreakerState::Open);
    assert_eq!(
        handle.state(),
        BreakerState::Closed,
        "the unkeyed breaker is untouched"
    );
    advance(Duration::from_secs(10)).await;
    // "a" has idled out but is open (well, due half-open): "b" gets the overflow
    // breaker rather than evicting it.
    a.force_open();
    svc.ready()
        .await
        .unwrap()
        .call(WithDeadline::new(("b", 0)))
        .await
        .unwrap();
    assert!(handle.key(&"b").is_none());
    assert_eq!(handle.key(&"a").unwrap().state(), BreakerState::ForcedOpen);
    let err = svc
        .ready()
        .await
        .unwrap()
        .call(WithDeadline::new(("a", 0)))
        .await
        .unwrap_err();
    assert!(err.is::<CircuitOpen>());
    let keys = handle.keys::<&'static str>();
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].1.state, BreakerState::ForcedOpen);
    // Once closed and idle, it can go.
    a.reset();
    advance(Duration::from_secs(10)).await;
    svc.ready()
        .await
        .unwrap()
        .call(WithDeadline::new(("b", 0)))
        .await
        .unwrap();
    assert!(handle.key(&"a").is_none());
    assert!(handle.key(&"b").is_some());
}

#[tokio::test(start_paused = true)]
async fn reconfigure_reaches_every_breaker_and_keeps_windows() {
    let calls = Arc::new(AtomicU32::new(0));
    let layer = BreakerLayer::new(config().with_minimum_calls(10));
    let handle = layer.handle();
    let mut svc = layer.layer(backend(calls.clone()));
    for _ in 0..5 {
        let _ = run(&mut svc, 1).await;
    }
    assert_eq!(handle.state(), BreakerState::Closed);
    handle.reconfigure(
        &config()
            .with_minimum_calls(6)
            .with_mode(BreakerMode::Observe),
    );
    assert_eq!(handle.snapshot().calls, 5);
    assert_eq!(handle.snapshot().mode, BreakerMode::Observe);
    let _ = run(&mut svc, 1).await;
    assert_eq!(handle.state(), BreakerState::Open);
    assert!(
        run(&mut svc, 0).await.is_ok(),
        "observe mode lets it through"
    );
}

#[tokio::test(start_paused = true)]
async fn classifier_decides_what_counts() {
    use crate::classify::{Classification, classify_fn};
    let calls = Arc::new(AtomicU32::new(0));
    // Answers of 429 (here: any value over 400) are not failures; errors are.
    let classify = classify_fn(|r: Result<&u32, &BoxError>| match r {
        Ok(n) if *n > 400 => Classification::ignored(),
        Ok(_) => Classification::success(),
        Err(e) => Classification::from_error(e),
    });
    let layer = BreakerLayer::builder(config())
        .classify(classify)
        .name("classified")
        .build();
    let handle = layer.handle();
    let mut svc = layer.layer(backend(calls.clone()));
    for _ in 0..6 {
        run(&mut svc, 429).await.unwrap();
    }
    assert_eq!(handle.snapshot().calls, 0);
    run(&mut svc, 10).await.unwrap();
    assert_eq!(handle.snapshot().calls, 1);
}

#[test]
fn services_and_futures_are_send_and_sync() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>(_: &T) {}
    send_sync::<BreakerLayer>();
    send_sync::<BreakerHandle>();
    let calls = Arc::new(AtomicU32::new(0));
    let mut svc = BreakerLayer::new(config()).layer(backend(calls));
    send(&svc);
    send(&svc.call(0));
}
