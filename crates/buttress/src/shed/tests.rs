//! Service-level tests of the shed layer, on paused time with tower-test mocks.

use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::{Instant, advance};
use tower::{Layer, Service, ServiceExt};
use tower_test::mock;

use super::*;
use crate::rejection::{Cause, Elapsed, OverloadReason, Overloaded, Scope};
use crate::{BoxError, Deadline, Mode, Priority, RequestMeta, WithDeadline};

type Req = WithDeadline<u32>;
type Svc = Shed<mock::Mock<Req, u32>>;

fn fixed(limit: usize) -> ShedConfig {
    ShedConfig::new(Algorithm::Fixed).with_limits(limit, 1, 1000)
}

fn setup(config: ShedConfig) -> (Svc, mock::Handle<Req, u32>, ShedHandle) {
    let layer = ShedLayer::new(config);
    let handle = layer.handle().unwrap();
    let (inner, mock) = mock::pair::<Req, u32>();
    (layer.layer(inner), mock, handle)
}

fn req(n: u32, priority: Priority) -> Req {
    let mut r = WithDeadline::new(n);
    r.set_priority(priority);
    r
}

/// Starts a call on its own task.
async fn start(svc: &mut Svc, r: Req) -> JoinHandle<Result<u32, BoxError>> {
    let fut = svc.ready().await.unwrap().call(r);
    let task = tokio::spawn(fut);
    settle().await;
    task
}

async fn settle() {
    for _ in 0..8 {
        tokio::task::yield_now().await;
    }
}

fn overloaded(res: Result<u32, BoxError>) -> Overloaded {
    *res.unwrap_err()
        .downcast_ref::<Overloaded>()
        .expect("an Overloaded error")
}

/// Answers the next request the mock received with its own number.
async fn answer(mock: &mut mock::Handle<Req, u32>) -> u32 {
    let (r, send) = mock.next_request().await.unwrap();
    send.send_response(r.request);
    settle().await;
    r.request
}

#[tokio::test(start_paused = true)]
async fn admits_up_to_the_limit_and_sheds_the_rest_at_once() {
    let (mut svc, mut mock, handle) = setup(fixed(2));
    let a = start(&mut svc, req(1, Priority::Default)).await;
    let b = start(&mut svc, req(2, Priority::Default)).await;
    assert_eq!(handle.in_flight(), 2);
    let c = start(&mut svc, req(3, Priority::Default)).await;
    let e = overloaded(c.await.unwrap());
    assert_eq!(e.reason(), OverloadReason::Shed);
    assert_eq!(e.retry_after(), Duration::from_secs(1));
    assert_eq!(answer(&mut mock).await, 1);
    assert_eq!(a.await.unwrap().unwrap(), 1);
    let d = start(&mut svc, req(4, Priority::Default)).await;
    assert_eq!(answer(&mut mock).await, 2);
    assert_eq!(answer(&mut mock).await, 4);
    assert_eq!(b.await.unwrap().unwrap(), 2);
    assert_eq!(d.await.unwrap().unwrap(), 4);
    let s = handle.snapshot();
    assert_eq!((s.in_flight, s.shed.default), (0, 1));
}

#[tokio::test(start_paused = true)]
async fn the_queue_serves_waiters_in_order_as_permits_free() {
    let (mut svc, mut mock, handle) = setup(fixed(1).with_queue(2, Duration::from_millis(50)));
    let a = start(&mut svc, req(1, Priority::Default)).await;
    let b = start(&mut svc, req(2, Priority::Default)).await;
    let c = start(&mut svc, req(3, Priority::Default)).await;
    assert_eq!(handle.queue_depth(), 2);
    let d = start(&mut svc, req(4, Priority::Default)).await;
    assert_eq!(
        overloaded(d.await.unwrap()).reason(),
        OverloadReason::Shed,
        "queue full"
    );
    assert_eq!(answer(&mut mock).await, 1);
    assert_eq!(answer(&mut mock).await, 2, "FIFO while the queue drains");
    assert_eq!(answer(&mut mock).await, 3);
    for (t, n) in [(a, 1), (b, 2), (c, 3)] {
        assert_eq!(t.await.unwrap().unwrap(), n);
    }
    assert_eq!((handle.in_flight(), handle.queue_depth()), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn a_waiter_leaves_after_max_wait_or_at_its_deadline() {
    let (mut svc, mut mock, handle) = setup(fixed(1).with_queue(4, Duration::from_millis(50)));
    let _a = start(&mut svc, req(1, Priority::Default)).await;
    let b = start(&mut svc, req(2, Priority::Default)).await;
    let mut short = req(3, Priority::Default);
    short.set_deadline(Deadline::after(Instant::now(), Duration::from_millis(10)));
    let c = start(&mut svc, short).await;
    advance(Duration::from_millis(10)).await;
    settle().await;
    assert!(c.is_finished(), "left at its deadline");
    assert_eq!(overloaded(c.await.unwrap()).reason(), OverloadReason::Shed);
    assert!(!b.is_finished());
    advance(Duration::from_millis(40)).await;
    settle().await;
    assert_eq!(overloaded(b.await.unwrap()).reason(), OverloadReason::Shed);
    let s = handle.snapshot();
    assert_eq!((s.queue_depth, s.expired.default), (0, 2));
    // The expired waiters never reached the service: after the first call, nothing.
    assert_eq!(answer(&mut mock).await, 1);
    settle().await;
    assert!(futures_poll_none(&mut mock));
}

#[tokio::test(start_paused = true)]
async fn dropping_a_future_gives_back_its_place_or_permit() {
    let (mut svc, mut mock, handle) = setup(fixed(1).with_queue(4, Duration::from_secs(1)));
    let a = svc.ready().await.unwrap().call(req(1, Priority::Default));
    let b = svc.ready().await.unwrap().call(req(2, Priority::Default));
    assert_eq!((handle.in_flight(), handle.queue_depth()), (1, 1));
    drop(b);
    assert_eq!(handle.queue_depth(), 0);
    drop(a);
    assert_eq!(handle.in_flight(), 0);
    // `a` had reached the service before it was dropped.
    assert_eq!(mock.next_request().await.unwrap().0.request, 1);
    // A waiter granted a permit but dropped before running hands it on.
    let a = start(&mut svc, req(3, Priority::Default)).await;
    let b = svc.ready().await.unwrap().call(req(4, Priority::Default));
    let c = start(&mut svc, req(5, Priority::Default)).await;
    assert_eq!(answer(&mut mock).await, 3);
    a.await.unwrap().unwrap();
    // `b` holds the permit now, unpolled; dropping it passes it to `c`.
    drop(b);
    settle().await;
    assert_eq!(answer(&mut mock).await, 5);
    assert_eq!(c.await.unwrap().unwrap(), 5);
    assert_eq!((handle.in_flight(), handle.queue_depth()), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn drain_refuses_new_and_queued_calls_while_in_flight_ones_finish() {
    let (mut svc, mut mock, handle) = setup(fixed(1).with_queue(4, Duration::from_secs(1)));
    let a = start(&mut svc, req(1, Priority::Default)).await;
    let b = start(&mut svc, req(2, Priority::Default)).await;
    let b2 = start(&mut svc, req(3, Priority::Sheddable)).await;
    handle.drain();
    assert!(handle.is_draining());
    assert_eq!(
        overloaded(b2.await.unwrap()).reason(),
        OverloadReason::Drain
    );
    assert_eq!(overloaded(b.await.unwrap()).reason(), OverloadReason::Drain);
    let c = start(&mut svc, req(4, Priority::Critical)).await;
    let e = overloaded(c.await.unwrap());
    assert_eq!(
        (e.reason(), e.retry_after()),
        (OverloadReason::Drain, Duration::from_secs(1))
    );
    let drained = tokio::spawn({
        let h = handle.clone();
        async move { h.drained().await }
    });
    settle().await;
    assert!(!drained.is_finished(), "one call still in flight");
    assert_eq!(answer(&mut mock).await, 1);
    assert_eq!(a.await.unwrap().unwrap(), 1);
    settle().await;
    assert!(drained.is_finished());
    assert_eq!(handle.snapshot().drain_refused.total(), 3);
    handle.resume();
    let d = start(&mut svc, req(5, Priority::Default)).await;
    assert_eq!(answer(&mut mock).await, 5);
    assert_eq!(d.await.unwrap().unwrap(), 5);
}

#[tokio::test(start_paused = true)]
async fn drained_resolves_at_once_when_idle_and_obeys_observe_mode_too() {
    let (mut svc, _mock, handle) = setup(fixed(1).with_mode(Mode::Observe));
    handle.drain();
    handle.drained().await;
    let c = start(&mut svc, req(1, Priority::Critical)).await;
    assert_eq!(overloaded(c.await.unwrap()).reason(), OverloadReason::Drain);
}

#[tokio::test(start_paused = true)]
async fn observe_mode_counts_what_it_would_shed_and_lets_it_through() {
    let (mut svc, mut mock, handle) = setup(fixed(1).with_mode(Mode::Observe));
    let tasks = [
        start(&mut svc, req(1, Priority::Default)).await,
        start(&mut svc, req(2, Priority::Default)).await,
        start(&mut svc, req(3, Priority::Sheddable)).await,
    ];
    assert_eq!(handle.in_flight(), 3);
    for _ in 0..3 {
        answer(&mut mock).await;
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    let s = handle.snapshot();
    assert_eq!(
        (s.observed.default, s.observed.sheddable, s.shed.total()),
        (1, 1, 0)
    );
}

#[tokio::test(start_paused = true)]
async fn a_disabled_layer_is_a_pass_through_of_the_same_type() {
    let layer = ShedLayer::from_config(None);
    assert!(layer.handle().is_none() && !layer.is_enabled());
    let (inner, mut mock) = mock::pair::<Req, u32>();
    let mut svc: Svc = layer.layer(inner);
    let tasks: Vec<_> = futures_like_start(&mut svc, 50).await;
    for _ in 0..50 {
        answer(&mut mock).await;
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
}

async fn futures_like_start(svc: &mut Svc, n: u32) -> Vec<JoinHandle<Result<u32, BoxError>>> {
    let mut out = vec![];
    for i in 0..n {
        out.push(start(svc, req(i, Priority::Sheddable)).await);
    }
    out
}

#[tokio::test(start_paused = true)]
async fn priorities_share_the_limit_as_documented() {
    // Limit 4: sheddable below 3, default below 4, critical below 5.
    let (mut svc, _mock, handle) = setup(fixed(4));
    let mut running = vec![];
    for i in 0..3 {
        running.push(start(&mut svc, req(i, Priority::Default)).await);
    }
    let s = start(&mut svc, req(10, Priority::Sheddable)).await;
    assert_eq!(overloaded(s.await.unwrap()).reason(), OverloadReason::Shed);
    running.push(start(&mut svc, req(11, Priority::Default)).await);
    let d = start(&mut svc, req(12, Priority::Default)).await;
    assert!(d.await.unwrap().is_err());
    running.push(start(&mut svc, req(13, Priority::Critical)).await);
    assert_eq!(handle.in_flight(), 5, "critical used the headroom");
    let c = start(&mut svc, req(14, Priority::Critical)).await;
    assert!(c.await.unwrap().is_err());
    let snap = handle.snapshot();
    assert_eq!(
        (snap.shed.sheddable, snap.shed.default, snap.shed.critical),
        (1, 1, 1)
    );
}

#[tokio::test(start_paused = true)]
async fn critical_waiters_go_first_and_displace_sheddable_ones() {
    // Limit 1: one default call, or two with a critical one in the headroom.
    let (mut svc, mut mock, _handle) = setup(fixed(1).with_queue(2, Duration::from_secs(1)));
    let _a = start(&mut svc, req(1, Priority::Critical)).await;
    let _b = start(&mut svc, req(2, Priority::Critical)).await;
    let s = start(&mut svc, req(3, Priority::Sheddable)).await;
    let d = start(&mut svc, req(4, Priority::Default)).await;
    let c = start(&mut svc, req(5, Priority::Critical)).await;
    assert_eq!(
        overloaded(s.await.unwrap()).reason(),
        OverloadReason::Shed,
        "displaced"
    );
    assert_eq!(answer(&mut mock).await, 1);
    assert_eq!(answer(&mut mock).await, 2);
    assert_eq!(answer(&mut mock).await, 5, "critical first");
    assert_eq!(answer(&mut mock).await, 4);
    assert_eq!(c.await.unwrap().unwrap(), 5);
    assert_eq!(d.await.unwrap().unwrap(), 4);
}

fn aimd(initial: usize) -> ShedConfig {
    ShedConfig::new(Algorithm::Aimd).with_limits(initial, 1, 1000)
}

#[tokio::test(start_paused = true)]
async fn timeouts_and_overload_answers_are_drops() {
    let (mut svc, mut mock, handle) = setup(aimd(20));
    let t = start(&mut svc, req(1, Priority::Default)).await;
    let (_, send) = mock.next_request().await.unwrap();
    send.send_error(Elapsed::new(Scope::Attempt, Cause::Budget));
    assert!(t.await.unwrap().is_err());
    assert_eq!(handle.limit(), 18, "x0.9 on a timeout");
    // A bulkhead below refusing is an overload answer: a drop too.
    let (mut svc, mut mock, handle) = setup(aimd(20));
    let t = start(&mut svc, req(2, Priority::Default)).await;
    let (_, send) = mock.next_request().await.unwrap();
    send.send_error(crate::rejection::BulkheadFull::full());
    assert!(t.await.unwrap().is_err());
    assert_eq!(handle.limit(), 18);
}

#[tokio::test(start_paused = true)]
async fn cancelled_calls_feed_nothing_unless_their_deadline_passed() {
    let (mut svc, _mock, handle) = setup(aimd(20));
    let fut = svc.ready().await.unwrap().call(req(1, Priority::Default));
    drop(fut);
    assert_eq!(
        (handle.limit(), handle.in_flight()),
        (20, 0),
        "a cancellation is not a drop"
    );
    let mut r = req(2, Priority::Default);
    r.set_deadline(Deadline::after(Instant::now(), Duration::from_millis(100)));
    let fut = svc.ready().await.unwrap().call(r);
    advance(Duration::from_millis(100)).await;
    drop(fut);
    assert_eq!(
        handle.limit(),
        18,
        "dropped at its deadline: the caller timed out"
    );
}

#[tokio::test(start_paused = true)]
async fn round_trips_start_at_the_carried_deadline_start() {
    // A caller whose deadline says the call started 50 ms ago: the round trip counts
    // from then (AIMD sees 50 ms, then 1 ms: no slow-sample drop until the baseline
    // exists; then a 50 ms round trip is a drop).
    let (mut svc, mut mock, handle) = setup(aimd(20));
    let t = start(&mut svc, req(1, Priority::Default)).await;
    advance(Duration::from_millis(10)).await;
    answer(&mut mock).await;
    t.await.unwrap().unwrap();
    let mut r = req(2, Priority::Default);
    r.set_deadline(Deadline::new(
        Instant::now() - Duration::from_millis(50),
        Instant::now() + Duration::from_secs(1),
    ));
    let t = start(&mut svc, r).await;
    answer(&mut mock).await;
    t.await.unwrap().unwrap();
    assert_eq!(handle.limit(), 18, "60 ms against a 10 ms baseline");
}

#[tokio::test(start_paused = true)]
async fn one_state_for_every_service_the_layer_makes() {
    let layer = ShedLayer::new(fixed(1));
    let handle = layer.handle().unwrap();
    let (a, _ma) = mock::pair::<Req, u32>();
    let (b, _mb) = mock::pair::<Req, u32>();
    let mut a = layer.layer(a);
    let mut b = layer.layer(b);
    let _t = start(&mut a, req(1, Priority::Default)).await;
    let t = start(&mut b, req(2, Priority::Default)).await;
    assert!(
        t.await.unwrap().is_err(),
        "the second route shares the limit"
    );
    assert_eq!(handle.in_flight(), 1);
}

#[tokio::test(start_paused = true)]
async fn reconfigure_keeps_what_was_learned_and_applies_new_bounds() {
    let (mut svc, mut mock, handle) = setup(aimd(10).with_queue(4, Duration::from_secs(1)));
    for i in 0..10 {
        let t = start(&mut svc, req(i, Priority::Default)).await;
        answer(&mut mock).await;
        t.await.unwrap().unwrap();
    }
    let learned = handle.limit();
    handle.reconfigure(
        ShedConfig::new(Algorithm::Vegas)
            .with_limits(20, 1, 1000)
            .with_queue(4, Duration::from_secs(1)),
    );
    assert_eq!(
        handle.limit(),
        learned,
        "the new algorithm starts from the current limit"
    );
    handle.reconfigure(ShedConfig::new(Algorithm::Aimd).with_limits(1, 1, 3));
    assert_eq!(handle.limit(), 3, "kept within the new bounds");
    handle.reconfigure(ShedConfig::new(Algorithm::Fixed).with_limits(7, 1, 30));
    assert_eq!(handle.limit(), 7, "a fixed limit is what the config says");
    // A waiter is served as soon as a raised limit makes room.
    handle.reconfigure(fixed(1).with_queue(4, Duration::from_secs(1)));
    let _a = start(&mut svc, req(100, Priority::Default)).await;
    let b = start(&mut svc, req(101, Priority::Default)).await;
    assert_eq!(handle.queue_depth(), 1);
    handle.reconfigure(fixed(2).with_queue(4, Duration::from_secs(1)));
    settle().await;
    assert_eq!(handle.queue_depth(), 0);
    answer(&mut mock).await;
    answer(&mut mock).await;
    b.await.unwrap().unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_standing_queue_serves_the_newest_first() {
    let cfg = fixed(1).with_queue(64, Duration::from_secs(10));
    let (mut svc, mut mock, handle) = setup(cfg);
    let mut tasks = vec![start(&mut svc, req(0, Priority::Default)).await];
    // Keep the queue long for well over 100 ms, serving one call every 10 ms.
    let mut served = vec![];
    for i in 1..=30 {
        tasks.push(start(&mut svc, req(i, Priority::Default)).await);
        tasks.push(start(&mut svc, req(1000 + i, Priority::Default)).await);
        advance(Duration::from_millis(10)).await;
        served.push(answer(&mut mock).await);
    }
    assert!(handle.snapshot().lifo);
    let last = served.last().copied().unwrap();
    assert!(last > 1000, "the freshest request won: {served:?}");
    assert_eq!(served[..5], [0, 1, 1001, 2, 1002], "FIFO at first");
}

#[tokio::test(start_paused = true)]
async fn classifier_overload_answers_are_drops() {
    use crate::classify::{Classification, classify_fn};
    let layer =
        ShedLayer::new(aimd(20)).with_classify(classify_fn(|r: Result<&u32, &BoxError>| match r {
            Ok(503) => Classification::failure().with_overload(true),
            Ok(_) => Classification::success(),
            Err(e) => Classification::from_error(e),
        }));
    let handle = layer.handle().unwrap();
    let (inner, mut mock) = mock::pair::<Req, u32>();
    let mut svc = layer.layer(inner);
    let fut = svc.ready().await.unwrap().call(req(503, Priority::Default));
    let t = tokio::spawn(fut);
    answer(&mut mock).await;
    assert_eq!(t.await.unwrap().unwrap(), 503);
    assert_eq!(handle.limit(), 18);
}

/// Whether the mock has no request waiting.
fn futures_poll_none(mock: &mut mock::Handle<Req, u32>) -> bool {
    mock.poll_request().is_pending()
}

#[test]
fn the_admitted_path_future_stays_small() {
    // The queued state (a timer, the request, a ready service) is boxed: it must not
    // make every admitted call's future carry it.
    type F = future::ResponseFuture<
        Svc,
        Req,
        <mock::Mock<Req, u32> as Service<Req>>::Future,
        crate::classify::DefaultClassify,
    >;
    assert!(
        std::mem::size_of::<F>() < std::mem::size_of::<tokio::time::Sleep>(),
        "{}",
        std::mem::size_of::<F>()
    );
}

/// Completions free permits without the lock (gradient, Vegas, fixed): under real
/// contention every call is still served and the in-flight count (which shares its
/// word with the window's sample count) comes back to zero. A lost wake-up would
/// park a waiter for the hour of `max_wait` and trip the timeout; that race is
/// narrow, so this is a smoke test of it, not a proof (the argument is in state.rs).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn waiters_never_miss_a_permit_freed_without_the_lock() {
    for algorithm in [Algorithm::Gradient, Algorithm::Vegas, Algorithm::Fixed] {
        let config = ShedConfig::new(algorithm)
            .with_limits(1, 1, 1)
            .with_queue(10_000, Duration::from_secs(3600));
        let layer = ShedLayer::new(config);
        let handle = layer.handle().unwrap();
        // Answered at once: permits churn as fast as they can.
        let svc = layer.layer(tower::service_fn(|r: WithDeadline<u32>| async move {
            Ok::<_, BoxError>(r.request)
        }));
        let tasks: Vec<_> = (0..4)
            .map(|t| {
                let mut svc = svc.clone();
                tokio::spawn(async move {
                    for i in 0..20_000 {
                        let n = t * 100_000 + i;
                        let out = svc.ready().await.unwrap().call(WithDeadline::new(n)).await;
                        assert_eq!(out.unwrap(), n);
                    }
                })
            })
            .collect();
        let all = async {
            for t in tasks {
                t.await.unwrap();
            }
        };
        if tokio::time::timeout(Duration::from_secs(10), all)
            .await
            .is_err()
        {
            panic!("{algorithm:?}: a waiter was never woken");
        }
        let s = handle.snapshot();
        assert_eq!((s.in_flight, s.queue_depth), (0, 0), "{algorithm:?}");
        assert_eq!(
            s.shed.default + s.expired.default,
            0,
            "{algorithm:?}: all served"
        );
    }
}

mod hold {
    use super::*;
    use crate::hold::testing::{KeepInResponse, Kept};

    fn held_layer(
        config: ShedConfig,
    ) -> (
        ShedLayer<crate::classify::DefaultClassify, KeepInResponse>,
        ShedHandle,
    ) {
        let layer = ShedLayer::new(config).with_hold(KeepInResponse);
        let handle = layer.handle().unwrap();
        (layer, handle)
    }

    fn answering() -> impl Service<
        Req,
        Response = Kept,
        Error = BoxError,
        Future = impl Future<Output = Result<Kept, BoxError>> + Send,
    > + Clone {
        tower::service_fn(|_: Req| async { Ok::<_, BoxError>(Kept::default()) })
    }

    #[tokio::test(start_paused = true)]
    async fn a_held_permit_counts_in_flight_as_long_as_the_response() {
        // Every way a limit is fed: none (fixed), per sample window, every sample.
        for algorithm in [
            Algorithm::Fixed,
            Algorithm::Gradient,
            Algorithm::Vegas,
            Algorithm::Aimd,
        ] {
            let (layer, handle) = held_layer(ShedConfig::new(algorithm).with_limits(1, 1, 1));
            let mut svc = layer.layer(answering());

            let first = svc
                .ready()
                .await
                .unwrap()
                .call(req(1, Priority::Default))
                .await
                .unwrap();
            assert_eq!(first.guards.len(), 1, "{algorithm:?}");
            assert_eq!(handle.in_flight(), 1, "{algorithm:?}");
            let err = svc
                .ready()
                .await
                .unwrap()
                .call(req(2, Priority::Default))
                .await
                .err()
                .unwrap();
            let e = err
                .downcast_ref::<Overloaded>()
                .expect("an Overloaded error");
            assert_eq!(e.reason(), OverloadReason::Shed, "{algorithm:?}");

            drop(first);
            assert_eq!(handle.in_flight(), 0, "{algorithm:?}");
            let second = svc
                .ready()
                .await
                .unwrap()
                .call(req(3, Priority::Default))
                .await
                .unwrap();
            assert_eq!(handle.in_flight(), 1, "{algorithm:?}");
            drop(second);
            assert_eq!(handle.in_flight(), 0, "{algorithm:?}");
            assert_eq!(handle.limit(), 1, "{algorithm:?}");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn dropping_a_held_permit_serves_a_waiter() {
        let (layer, handle) = held_layer(fixed(1).with_queue(4, Duration::from_secs(10)));
        let mut svc = layer.layer(answering());
        let first = svc
            .ready()
            .await
            .unwrap()
            .call(req(1, Priority::Default))
            .await
            .unwrap();
        let waiter = tokio::spawn(svc.ready().await.unwrap().call(req(2, Priority::Default)));
        settle().await;
        assert_eq!((handle.in_flight(), handle.queue_depth()), (1, 1));
        advance(Duration::from_secs(1)).await;
        assert!(!waiter.is_finished());

        drop(first);
        let second = waiter.await.unwrap().unwrap();
        assert_eq!((handle.in_flight(), handle.queue_depth()), (1, 0));
        drop(second);
        assert_eq!(handle.in_flight(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn the_drain_waits_for_held_permits() {
        let (layer, handle) = held_layer(fixed(4));
        let mut svc = layer.layer(answering());
        let first = svc
            .ready()
            .await
            .unwrap()
            .call(req(1, Priority::Default))
            .await
            .unwrap();
        handle.drain();
        let drained = {
            let handle = handle.clone();
            tokio::spawn(async move { handle.drained().await })
        };
        settle().await;
        // The answer is out but its body (here, the response) still holds its place.
        assert!(!drained.is_finished());
        assert_eq!(handle.in_flight(), 1);

        drop(first);
        tokio::time::timeout(Duration::from_secs(1), drained)
            .await
            .expect("drained once the held permit is freed")
            .unwrap();
        assert_eq!(handle.in_flight(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_call_frees_its_permit_at_once() {
        let (layer, handle) = held_layer(fixed(1));
        let mut svc = layer.layer(tower::service_fn(|r: Req| async move {
            if r.request == 0 {
                Err::<Kept, BoxError>("boom".into())
            } else {
                Ok(Kept::default())
            }
        }));
        assert!(
            svc.ready()
                .await
                .unwrap()
                .call(req(0, Priority::Default))
                .await
                .is_err()
        );
        assert_eq!(handle.in_flight(), 0);
        let ok = svc
            .ready()
            .await
            .unwrap()
            .call(req(1, Priority::Default))
            .await
            .unwrap();
        assert_eq!(ok.guards.len(), 1);
    }
}
