use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::Instant;
use tower::{Layer, Service, ServiceBuilder, ServiceExt, service_fn};

use super::error::{Aborted, Injected};
use super::*;
use crate::BoxError;
use crate::classify::{Classification, Origin, RetryClass, Verdict};

/// What one call came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Passed(Duration),
    Injected,
    Aborted,
}

/// An echo service that counts the calls it receives and the polls of its futures.
#[derive(Clone, Default)]
struct Counts {
    calls: Arc<AtomicUsize>,
    polls: Arc<AtomicUsize>,
}

impl Counts {
    fn service(
        &self,
    ) -> impl Service<u32, Response = u32, Error = BoxError, Future: Send> + Clone + use<> {
        let (calls, polls) = (self.calls.clone(), self.polls.clone());
        service_fn(move |req: u32| {
            calls.fetch_add(1, Ordering::SeqCst);
            let polls = polls.clone();
            async move {
                polls.fetch_add(1, Ordering::SeqCst);
                Ok::<_, BoxError>(req)
            }
        })
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    fn polls(&self) -> usize {
        self.polls.load(Ordering::SeqCst)
    }
}

async fn outcome<S>(svc: &mut S, req: u32) -> Outcome
where
    S: Service<u32, Response = u32, Error = BoxError>,
{
    let start = Instant::now();
    match svc.ready().await.unwrap().call(req).await {
        Ok(answer) => {
            assert_eq!(answer, req);
            Outcome::Passed(start.elapsed())
        }
        Err(e) if e.is::<Injected>() => Outcome::Injected,
        Err(e) if e.is::<Aborted>() => Outcome::Aborted,
        Err(e) => panic!("unexpected error {e}"),
    }
}

async fn run(config: ChaosConfig, n: u32) -> (Vec<Outcome>, ChaosSnapshot, Counts) {
    let counts = Counts::default();
    let layer = ChaosLayer::new(config);
    let mut svc = ServiceBuilder::new()
        .layer(layer.clone())
        .service(counts.service());
    let mut outcomes = Vec::with_capacity(n as usize);
    for req in 0..n {
        outcomes.push(outcome(&mut svc, req).await);
    }
    (outcomes, layer.handle().snapshot(), counts)
}

/// `k` out of `n` is within five standard deviations of `n * p`.
fn assert_rate(k: u64, n: u64, p: f64, what: &str) {
    let mean = n as f64 * p;
    let sigma = (n as f64 * p * (1.0 - p)).sqrt();
    assert!(
        (k as f64 - mean).abs() <= 5.0 * sigma,
        "{what}: {k} of {n}, expected {mean} +- {}",
        5.0 * sigma
    );
}

#[tokio::test(start_paused = true)]
async fn error_rate_holds_and_errors_never_reach_the_inner_service() {
    let (outcomes, snap, counts) = run(
        ChaosConfig::default().with_error_rate(0.1).with_seed(1),
        10_000,
    )
    .await;
    let errors = outcomes.iter().filter(|o| **o == Outcome::Injected).count() as u64;
    assert_rate(errors, 10_000, 0.1, "errors");
    assert!(
        outcomes
            .iter()
            .all(|o| matches!(o, Outcome::Injected | Outcome::Passed(Duration::ZERO)))
    );
    assert_eq!(
        (snap.calls, snap.errors, snap.aborts, snap.delayed),
        (10_000, errors, 0, 0)
    );
    assert_eq!(counts.calls() as u64, 10_000 - errors);
    assert_eq!(counts.polls(), counts.calls());
}

#[tokio::test(start_paused = true)]
async fn every_kind_of_fault_at_its_rate() {
    let config = ChaosConfig::default()
        .with_error_rate(0.1)
        .with_abort_rate(0.2)
        .with_latency(LatencyConfig::fixed(Duration::from_millis(1)).with_probability(0.5))
        .with_seed(2);
    let n = 10_000;
    let (outcomes, snap, counts) = run(config, n).await;
    let count = |f: fn(&Outcome) -> bool| outcomes.iter().filter(|o| f(o)).count() as u64;
    let errors = count(|o| *o == Outcome::Injected);
    let aborts = count(|o| *o == Outcome::Aborted);
    let delayed = count(|o| *o == Outcome::Passed(Duration::from_millis(1)));
    let passed = count(|o| *o == Outcome::Passed(Duration::ZERO));
    assert_eq!(errors + aborts + delayed + passed, u64::from(n));
    assert_rate(errors, n.into(), 0.1, "errors");
    assert_rate(aborts, n.into(), 0.2, "aborts");
    // The latency probability applies to the calls that are neither.
    assert_rate(delayed, n.into(), 0.7 * 0.5, "delayed");
    assert_eq!(
        (snap.errors, snap.aborts, snap.delayed),
        (errors, aborts, delayed)
    );
    // Aborted calls reached the callee too.
    assert_eq!(counts.calls() as u64, aborts + delayed + passed);
}

#[tokio::test(start_paused = true)]
async fn a_seed_fixes_the_decisions() {
    let config = |seed| {
        ChaosConfig::default()
            .with_error_rate(0.2)
            .with_abort_rate(0.2)
            .with_latency(
                LatencyConfig::uniform(Duration::from_millis(1), Duration::from_millis(100))
                    .with_probability(0.5),
            )
            .with_seed(seed)
    };
    let (a, ..) = run(config(42), 300).await;
    let (b, ..) = run(config(42), 300).await;
    let (c, ..) = run(config(43), 300).await;
    assert_eq!(a, b);
    assert_ne!(a, c);
    // And each kind did occur, so the sequences compare something.
    for kind in [Outcome::Injected, Outcome::Aborted] {
        assert!(a.contains(&kind), "{kind:?}");
    }
    assert!(
        a.iter()
            .any(|o| matches!(o, Outcome::Passed(d) if *d > Duration::ZERO))
    );
}

#[tokio::test(start_paused = true)]
async fn an_abort_sends_the_request_then_drops_it() {
    let calls = Arc::new(AtomicUsize::new(0));
    let polls = Arc::new(AtomicUsize::new(0));
    let (tx, mut rx) = oneshot::channel::<()>();
    let tx = Arc::new(std::sync::Mutex::new(Some(tx)));
    let inner = {
        let (calls, polls) = (calls.clone(), polls.clone());
        service_fn(move |_: u32| {
            calls.fetch_add(1, Ordering::SeqCst);
            let (polls, tx) = (polls.clone(), tx.lock().unwrap().take());
            async move {
                let _alive = tx;
                polls.fetch_add(1, Ordering::SeqCst);
                std::future::pending::<()>().await;
                Ok::<u32, BoxError>(0)
            }
        })
    };
    let layer = ChaosLayer::new(ChaosConfig::default().with_abort_rate(1.0));
    let svc = ServiceBuilder::new().layer(layer.clone()).service(inner);
    let err = svc.oneshot(1).await.unwrap_err();
    assert!(err.is::<Aborted>(), "{err}");
    assert_eq!(
        (calls.load(Ordering::SeqCst), polls.load(Ordering::SeqCst)),
        (1, 1)
    );
    // The inner future, and the sender it held, are gone.
    assert_eq!(rx.try_recv(), Err(oneshot::error::TryRecvError::Closed));
    assert_eq!(layer.handle().snapshot().aborts, 1);
}

#[tokio::test(start_paused = true)]
async fn an_abort_loses_an_answer_the_callee_gave() {
    let counts = Counts::default();
    let svc = ChaosLayer::new(ChaosConfig::default().with_abort_rate(1.0)).layer(counts.service());
    let err = svc.oneshot(5).await.unwrap_err();
    assert!(err.is::<Aborted>());
    // The work was done: the callee answered on its first poll.
    assert_eq!((counts.calls(), counts.polls()), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn latency_holds_the_inner_future_back_within_the_range() {
    let (min, max) = (Duration::from_millis(100), Duration::from_millis(300));
    let started = Arc::new(std::sync::Mutex::new(Vec::new()));
    let inner = {
        let started = started.clone();
        service_fn(move |req: u32| {
            let started = started.clone();
            async move {
                started.lock().unwrap().push(Instant::now());
                Ok::<_, BoxError>(req)
            }
        })
    };
    let layer = ChaosLayer::new(
        ChaosConfig::default()
            .with_latency(LatencyConfig::uniform(min, max))
            .with_seed(3),
    );
    let mut svc = layer.layer(inner);
    let mut delays = Vec::new();
    for req in 0..200 {
        let start = Instant::now();
        let Outcome::Passed(elapsed) = outcome(&mut svc, req).await else {
            panic!("only latency is configured")
        };
        let inner_start = *started.lock().unwrap().last().unwrap();
        // The inner future ran only once the delay was over, and answered at once.
        assert_eq!(inner_start - start, elapsed);
        assert!((min..=max).contains(&elapsed), "{elapsed:?}");
        delays.push(elapsed);
    }
    assert_eq!(layer.handle().snapshot().delayed, 200);
    // Spread over the range, not stuck at one end.
    let below = delays
        .iter()
        .filter(|d| **d < Duration::from_millis(200))
        .count();
    assert_rate(below as u64, 200, 0.5, "delays below the middle");
    assert!(delays.iter().any(|d| *d < Duration::from_millis(120)));
    assert!(delays.iter().any(|d| *d > Duration::from_millis(280)));
}

#[tokio::test(start_paused = true)]
async fn a_call_cut_short_during_its_delay_never_polls_the_inner_future() {
    let counts = Counts::default();
    let delay = LatencyConfig::fixed(Duration::from_millis(100));
    let mut svc =
        ChaosLayer::new(ChaosConfig::default().with_latency(delay)).layer(counts.service());
    let fut = svc.ready().await.unwrap().call(1);
    let res = tokio::time::timeout(Duration::from_millis(50), fut).await;
    assert!(res.is_err(), "the delay outlasts the timeout");
    // Called (the request is handed over at once) but no work done.
    assert_eq!((counts.calls(), counts.polls()), (1, 0));
}

#[tokio::test(start_paused = true)]
async fn the_handle_switches_from_the_next_call_on() {
    let counts = Counts::default();
    let layer = ChaosLayer::new(ChaosConfig::default().with_error_rate(1.0));
    let handle = layer.handle();
    let mut svc = layer.layer(counts.service());
    assert_eq!(outcome(&mut svc, 1).await, Outcome::Injected);

    handle.disable();
    assert!(!handle.snapshot().enabled);
    assert_eq!(outcome(&mut svc, 2).await, Outcome::Passed(Duration::ZERO));

    handle.enable();
    assert_eq!(outcome(&mut svc, 3).await, Outcome::Injected);

    handle.reconfigure(ChaosConfig::default().with_abort_rate(1.0));
    assert_eq!(outcome(&mut svc, 4).await, Outcome::Aborted);

    handle.reconfigure(
        ChaosConfig::default().with_latency(LatencyConfig::fixed(Duration::from_secs(1))),
    );
    assert_eq!(
        outcome(&mut svc, 5).await,
        Outcome::Passed(Duration::from_secs(1))
    );

    handle.set_enabled(false);
    assert_eq!(outcome(&mut svc, 6).await, Outcome::Passed(Duration::ZERO));

    handle.reconfigure(ChaosConfig::default());
    assert_eq!(outcome(&mut svc, 7).await, Outcome::Passed(Duration::ZERO));

    let snap = handle.snapshot();
    // Call 2 and 6 were made while switched off and are not counted.
    assert_eq!(
        (snap.calls, snap.errors, snap.aborts, snap.delayed),
        (5, 2, 1, 1)
    );
    assert!(
        snap.enabled,
        "a reconfigure applies the config's own switch"
    );
    assert_eq!(counts.calls(), 5);
}

#[tokio::test(start_paused = true)]
async fn a_disabled_layer_is_a_pass_through_of_the_same_type() {
    // One type whatever the config, as a Policy needs.
    let layers: [ChaosLayer; 3] = [
        ChaosLayer::disabled(),
        ChaosLayer::from_config(None),
        ChaosLayer::new(
            ChaosConfig::default()
                .with_error_rate(1.0)
                .with_enabled(false),
        ),
    ];
    for layer in layers {
        let counts = Counts::default();
        let mut svc = layer.layer(counts.service());
        for req in 0..100 {
            assert_eq!(
                outcome(&mut svc, req).await,
                Outcome::Passed(Duration::ZERO)
            );
        }
        assert_eq!((counts.calls(), counts.polls()), (100, 100));
        assert_eq!(layer.handle().snapshot(), ChaosSnapshot::default());
    }
    let on = ChaosLayer::from_config(Some(ChaosConfig::default().with_error_rate(1.0)));
    assert_eq!(
        outcome(&mut on.layer(Counts::default().service()), 1).await,
        Outcome::Injected
    );
}

#[tokio::test(start_paused = true)]
async fn a_disabled_layer_can_be_switched_on() {
    let layer = ChaosLayer::disabled();
    let mut svc = layer.layer(Counts::default().service());
    layer
        .handle()
        .reconfigure(ChaosConfig::default().with_error_rate(1.0));
    assert_eq!(outcome(&mut svc, 1).await, Outcome::Injected);
}

#[tokio::test(start_paused = true)]
async fn a_user_fault_can_be_a_response() {
    let counts = Counts::default();
    let layer = ChaosLayer::new(ChaosConfig::default().with_error_rate(1.0))
        .with_fault(fault_fn(|| Ok(503)));
    let handle = layer.handle();
    let svc = layer.layer(counts.service());
    assert_eq!(svc.oneshot(1).await.unwrap(), 503);
    assert_eq!(counts.calls(), 0);
    assert_eq!(handle.snapshot().errors, 1);
}

#[tokio::test(start_paused = true)]
async fn a_user_fault_can_be_an_error_of_its_own() {
    #[derive(Debug)]
    struct Refused;
    impl std::fmt::Display for Refused {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("connection refused")
        }
    }
    impl std::error::Error for Refused {}

    let svc = ChaosLayer::new(ChaosConfig::default().with_error_rate(1.0))
        .with_fault(fault_fn(|| Err(Refused.into())))
        .layer(Counts::default().service());
    let err = svc.oneshot(1).await.unwrap_err();
    assert!(err.is::<Refused>(), "{err}");
}

#[tokio::test(start_paused = true)]
async fn every_service_of_a_layer_shares_its_state() {
    let layer = ChaosLayer::new(ChaosConfig::default().with_error_rate(1.0));
    let mut a = layer.layer(Counts::default().service());
    let mut b = layer.layer(Counts::default().service());
    outcome(&mut a, 1).await;
    outcome(&mut b, 2).await;
    assert_eq!(layer.handle().snapshot().errors, 2);
    // A service's own handle is the layer's.
    a.handle().disable();
    assert_eq!(outcome(&mut b, 3).await, Outcome::Passed(Duration::ZERO));
}

#[tokio::test(start_paused = true)]
async fn a_standalone_service_has_state_of_its_own() {
    let counts = Counts::default();
    let mut svc = Chaos::new(
        counts.service(),
        ChaosConfig::default().with_error_rate(1.0),
    );
    assert_eq!(outcome(&mut svc, 1).await, Outcome::Injected);
    assert_eq!(svc.handle().snapshot().errors, 1);
    let mut svc = svc.with_fault(fault_fn(|| Ok(9)));
    assert_eq!(svc.ready().await.unwrap().call(1).await.unwrap(), 9);
    assert_eq!(counts.calls(), 0);
}

#[test]
fn injected_errors_classify_as_upstream_failures() {
    for err in [BoxError::from(Injected::new()), Aborted::new().into()] {
        let c = Classification::from_error(&err);
        assert_eq!(c.verdict, Verdict::Failure, "{err}");
        assert_eq!(c.retry, RetryClass::IfSafe, "{err}");
        assert_eq!(c.origin, Origin::Upstream, "{err}");
        assert!(c.allows_retry(true) && !c.allows_retry(false), "{err}");
        assert!(!c.overload);
    }
    assert_eq!(Injected::new().to_string(), "injected fault");
}

#[test]
fn futures_and_handles_debug_without_bounds() {
    struct NotDebug;
    let fut =
        future::ResponseFuture::<std::future::Ready<Result<NotDebug, BoxError>>, NotDebug>::fault(
            Ok(NotDebug),
        );
    assert!(format!("{fut:?}").contains("fault"));
    let handle = ChaosLayer::disabled().handle();
    assert!(format!("{handle:?}").contains("enabled: false"));
}
