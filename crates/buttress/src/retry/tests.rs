use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use proptest::prelude::*;
use tokio::time::Instant;
use tower::{Service, ServiceExt};
use tower_layer::Layer;

use super::{RetryConfig, RetryLayer};
use crate::backoff::{Backoff, Jitter};
use crate::budget::BudgetConfig;
use crate::classify::{Classification, Classifier, Classify, DefaultClassify, RetryClass};
use crate::rand::Rng;
use crate::rejection::{DoNotRetry, Elapsed, is_marked_do_not_retry};
use crate::replay::NoReplay;
use crate::{BoxError, Deadline, RequestMeta, WithDeadline};

const MS: Duration = Duration::from_millis(1);

/// One entry per call the inner service saw: when (since the test started) and the
/// attempt number the request carried (0 for none).
type Log = Arc<Mutex<Vec<(Duration, u32)>>>;

type Answer<T> = Arc<dyn Fn(usize) -> (Duration, Result<T, BoxError>) + Send + Sync>;

/// A service that answers call `n` (from 0) after a delay, as `answer(n)` says, and
/// logs every call.
#[derive(Clone)]
struct Script<T> {
    t0: Instant,
    log: Log,
    answer: Answer<T>,
}

fn script<T>(
    answer: impl Fn(usize) -> (Duration, Result<T, BoxError>) + Send + Sync + 'static,
) -> (Script<T>, Log) {
    let log = Log::default();
    (
        Script {
            t0: Instant::now(),
            log: log.clone(),
            answer: Arc::new(answer),
        },
        log,
    )
}

/// Fails every call at once.
fn failing() -> (Script<u32>, Log) {
    script(|n| (Duration::ZERO, Err(format!("boom #{n}").into())))
}

impl<T: Send + 'static, Req: RequestMeta> Service<Req> for Script<T> {
    type Response = T;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<T, BoxError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Req) -> Self::Future {
        let n = {
            let mut log = self.log.lock().unwrap();
            log.push((self.t0.elapsed(), req.attempt().map_or(0, |a| a.get())));
            log.len() - 1
        };
        let (delay, out) = (self.answer)(n);
        Box::pin(async move {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            out
        })
    }
}

fn calls(log: &Log) -> Vec<(Duration, u32)> {
    log.lock().unwrap().clone()
}

fn config(max_attempts: u32, backoff: Backoff) -> RetryConfig {
    RetryConfig {
        max_attempts,
        backoff,
        ..Default::default()
    }
}

/// A status-like reply, and a classifier for it: 503 is retryable (with an optional
/// delay hint), anything else a success; a reply the layer gave up on is marked.
#[derive(Debug, Clone, PartialEq)]
struct Reply {
    status: u16,
    retry_after: Option<Duration>,
    gave_up: bool,
}

fn reply(status: u16, retry_after: Option<Duration>) -> Reply {
    Reply {
        status,
        retry_after,
        gave_up: false,
    }
}

#[derive(Debug, Clone, Copy)]
struct Statuses {
    safe: bool,
}

impl<Req> Classify<Req, Reply> for Statuses {
    type Classifier = Statuses;

    fn classify_request(&self, _: &Req) -> Statuses {
        *self
    }

    fn mark_gave_up(&self, response: &mut Reply) {
        response.gave_up = true;
    }
}

impl Classifier<Reply> for Statuses {
    fn request_is_safe(&self) -> bool {
        self.safe
    }

    fn classify(self, result: Result<&Reply, &BoxError>) -> Classification {
        match result {
            Ok(r) if r.gave_up => Classification::failure().with_do_not_retry(true),
            Ok(r) if r.status == 503 => Classification::failure().with_delay_hint(r.retry_after),
            Ok(r) if r.status == 429 => Classification::ignored().with_retry(RetryClass::Always),
            Ok(_) => Classification::success(),
            Err(e) => Classification::from_error(e),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn attempts_are_counted_exactly_and_numbered() {
    let (svc, log) = failing();
    let layer = RetryLayer::new(config(3, Backoff::constant(10 * MS)));
    let err = layer
        .layer(svc)
        .oneshot(WithDeadline::new(1u32))
        .await
        .unwrap_err();
    let seen = calls(&log);
    assert_eq!(seen.iter().map(|c| c.1).collect::<Vec<_>>(), [1, 2, 3]);
    // The caller gets the last real error, marked for the tiers above.
    let marked = err
        .downcast_ref::<DoNotRetry>()
        .expect("marked do-not-retry");
    assert_eq!(marked.get_ref().to_string(), "boom #2");
    let snap = layer.handle().unwrap().snapshot();
    assert_eq!(
        (snap.retries, snap.gave_up, snap.budget_exhausted),
        (2, 1, 0)
    );
    assert_eq!(snap.budget.requests, 1);
}

#[tokio::test(start_paused = true)]
async fn a_success_ends_the_call() {
    let (svc, log) = script(|n| {
        (
            Duration::ZERO,
            if n == 0 {
                Err("reset".into())
            } else {
                Ok(n as u32)
            },
        )
    });
    let out = RetryLayer::new(config(5, Backoff::constant(MS)))
        .layer(svc)
        .oneshot(0u32)
        .await
        .unwrap();
    assert_eq!(out, 1);
    assert_eq!(calls(&log).len(), 2);
}

#[tokio::test(start_paused = true)]
async fn non_retryable_outcomes_are_returned_as_they_are() {
    let (svc, log) = script::<u32>(|_| {
        (
            Duration::ZERO,
            Err(Elapsed::new(
                crate::rejection::Scope::Total,
                crate::rejection::Cause::Deadline,
            )
            .into()),
        )
    });
    let err = RetryLayer::new(RetryConfig::default())
        .layer(svc)
        .oneshot(0u32)
        .await
        .unwrap_err();
    assert_eq!(calls(&log).len(), 1);
    assert!(
        err.is::<Elapsed>(),
        "not marked: the layer did not give up, it had nothing to retry"
    );
}

#[tokio::test(start_paused = true)]
async fn a_mark_from_below_is_honoured() {
    let (svc, log) =
        script::<u32>(|_| (Duration::ZERO, Err(DoNotRetry::new("gave up below").into())));
    let err = RetryLayer::new(RetryConfig::default())
        .layer(svc)
        .oneshot(0u32)
        .await
        .unwrap_err();
    assert_eq!(calls(&log).len(), 1);
    assert!(is_marked_do_not_retry(err.as_ref()));
}

#[tokio::test(start_paused = true)]
async fn a_request_that_cannot_be_replayed_is_sent_once() {
    let (svc, log) = failing();
    let err = RetryLayer::new(RetryConfig::default())
        .with_replay(NoReplay)
        .layer(svc)
        .oneshot(0u32)
        .await
        .unwrap_err();
    assert_eq!(calls(&log).len(), 1);
    assert!(!is_marked_do_not_retry(err.as_ref()));
}

#[tokio::test(start_paused = true)]
async fn unsafe_requests_retry_only_when_nothing_was_sent() {
    // 503 is retryable if safe; 429 here is "always" (as for a local rejection).
    let (svc, log) = script(|_| (Duration::ZERO, Ok(reply(503, None))));
    let layer =
        RetryLayer::new(config(3, Backoff::constant(MS))).with_classify(Statuses { safe: false });
    let out = layer.layer(svc).oneshot(0u32).await.unwrap();
    assert_eq!((calls(&log).len(), out.gave_up), (1, false));

    let (svc, log) = script(|_| (Duration::ZERO, Ok(reply(429, None))));
    let layer =
        RetryLayer::new(config(3, Backoff::constant(MS))).with_classify(Statuses { safe: false });
    let out = layer.layer(svc).oneshot(0u32).await.unwrap();
    assert_eq!((calls(&log).len(), out.gave_up), (3, true));
}

#[tokio::test(start_paused = true)]
async fn a_response_given_up_on_is_the_last_real_one_marked() {
    // Each 503 carries a distinct (tiny) hint so the test can tell them apart.
    let (svc, log) = script(|n| (Duration::ZERO, Ok(reply(503, Some(MS * n as u32)))));
    let layer =
        RetryLayer::new(config(2, Backoff::constant(MS))).with_classify(Statuses { safe: true });
    let out = layer.layer(svc).oneshot(0u32).await.unwrap();
    assert_eq!(calls(&log).len(), 2);
    assert_eq!((out.status, out.retry_after), (503, Some(MS)));
    assert!(out.gave_up);
}

#[tokio::test(start_paused = true)]
async fn backoff_sets_the_time_between_attempts() {
    let (svc, log) = failing();
    let backoff = Backoff::exponential(10 * MS, 25 * MS).with_jitter(Jitter::None);
    let _ = RetryLayer::new(config(5, backoff))
        .layer(svc)
        .oneshot(0u32)
        .await;
    let times: Vec<_> = calls(&log).iter().map(|c| c.0).collect();
    // 10, 20, then capped at 25.
    assert_eq!(times, [Duration::ZERO, 10 * MS, 30 * MS, 55 * MS, 80 * MS]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// With full jitter, every gap between attempts lies within [0, nominal], the
    /// nominal delay doubling from the base up to the cap.
    #[test]
    fn jittered_gaps_stay_within_the_backoff_bounds(seed in any::<u64>(), base_ms in 1u32..50, max_ms in 1u32..400) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build().unwrap();
        rt.block_on(async move {
            let (svc, log) = failing();
            let backoff = Backoff::exponential(base_ms * MS, max_ms * MS).with_jitter(Jitter::Full);
            let layer = RetryLayer::new(RetryConfig {
                budget: BudgetConfig { ratio: 0.0, min_per_second: 1_000, ttl: Duration::from_secs(10) },
                ..config(8, backoff)
            })
            .with_rng(Rng::seeded(seed));
            let _ = layer.layer(svc).oneshot(0u32).await;
            let times: Vec<_> = calls(&log).iter().map(|c| c.0).collect();
            prop_assert_eq!(times.len(), 8);
            for (i, w) in times.windows(2).enumerate() {
                let gap = w[1] - w[0];
                let nominal = (base_ms * MS * (1u32 << i)).min(max_ms * MS);
                prop_assert!(gap <= nominal, "gap {} = {:?} > {:?}", i, gap, nominal);
            }
            Ok(())
        })?;
    }
}

#[tokio::test(start_paused = true)]
async fn a_delay_hint_is_honoured() {
    let (svc, log) = script(|n| {
        (
            Duration::ZERO,
            Ok(if n == 0 {
                reply(503, Some(Duration::from_secs(2)))
            } else {
                reply(200, None)
            }),
        )
    });
    let layer = RetryLayer::new(config(3, Backoff::constant(10 * MS)))
        .with_classify(Statuses { safe: true });
    let out = layer.layer(svc).oneshot(0u32).await.unwrap();
    assert_eq!(out.status, 200);
    let times: Vec<_> = calls(&log).iter().map(|c| c.0).collect();
    assert_eq!(times, [Duration::ZERO, Duration::from_secs(2)]);
}

#[tokio::test(start_paused = true)]
async fn a_delay_hint_shorter_than_the_backoff_waits_for_the_backoff() {
    let (svc, log) = script(|n| {
        (
            Duration::ZERO,
            Ok(if n == 0 {
                reply(503, Some(MS))
            } else {
                reply(200, None)
            }),
        )
    });
    let layer = RetryLayer::new(config(3, Backoff::constant(40 * MS)))
        .with_classify(Statuses { safe: true });
    layer.layer(svc).oneshot(0u32).await.unwrap();
    assert_eq!(calls(&log)[1].0, 40 * MS);
}

#[tokio::test(start_paused = true)]
async fn a_delay_hint_above_the_cap_means_no_retry() {
    let (svc, log) = script(|_| {
        (
            Duration::ZERO,
            Ok(reply(503, Some(Duration::from_secs(31)))),
        )
    });
    let layer = RetryLayer::new(RetryConfig {
        retry_after_cap: Duration::from_secs(30),
        ..config(3, Backoff::constant(MS))
    })
    .with_classify(Statuses { safe: true });
    let start = Instant::now();
    let out = layer.layer(svc).oneshot(0u32).await.unwrap();
    assert_eq!(calls(&log).len(), 1);
    assert!(out.gave_up, "the tiers above must not retry it either");
    assert_eq!(start.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn another_endpoint_takes_the_retry_without_waiting_for_the_hint() {
    let (svc, log) = script(|n| {
        (
            Duration::ZERO,
            Ok(if n == 0 {
                reply(503, Some(Duration::from_secs(5)))
            } else {
                reply(200, None)
            }),
        )
    });
    let asked = Arc::new(AtomicU64::new(0));
    let alternatives = {
        let asked = asked.clone();
        move |_: &u32| {
            asked.fetch_add(1, Ordering::SeqCst);
            true
        }
    };
    let layer = RetryLayer::new(config(3, Backoff::constant(10 * MS)))
        .with_classify(Statuses { safe: true })
        .with_alternatives(alternatives);
    layer.layer(svc).oneshot(0u32).await.unwrap();
    assert_eq!(calls(&log)[1].0, 10 * MS);
    assert_eq!(asked.load(Ordering::SeqCst), 1);
}

fn with_deadline(budget: Duration) -> WithDeadline<u32> {
    let now = Instant::now();
    WithDeadline::with_deadline(0, Deadline::after(now, budget))
}

#[tokio::test(start_paused = true)]
async fn never_sleeps_past_the_deadline() {
    // Attempts fail at once; 60 ms between them; 100 ms to live: the retry at 60 ms
    // fits, the one at 120 ms would not, so the call ends at 60 ms, not later.
    let (svc, log) = failing();
    let start = Instant::now();
    let err = RetryLayer::new(config(5, Backoff::constant(60 * MS)))
        .layer(svc)
        .oneshot(with_deadline(100 * MS))
        .await
        .unwrap_err();
    assert_eq!(
        calls(&log).iter().map(|c| c.0).collect::<Vec<_>>(),
        [Duration::ZERO, 60 * MS]
    );
    assert_eq!(start.elapsed(), 60 * MS);
    assert!(err.is::<DoNotRetry>());
}

#[tokio::test(start_paused = true)]
async fn never_starts_an_attempt_that_cannot_finish() {
    // Attempts take 30 ms to fail. After the first (0..30 ms) the retry would start at
    // 90 ms and need 30 ms more: 120 > 100, so the layer gives up at 30 ms.
    let (svc, log) = script::<u32>(|_| (30 * MS, Err("slow failure".into())));
    let layer = RetryLayer::new(config(5, Backoff::constant(60 * MS)));
    let start = Instant::now();
    let err = layer
        .layer(svc)
        .oneshot(with_deadline(100 * MS))
        .await
        .unwrap_err();
    assert_eq!(calls(&log).len(), 1);
    assert_eq!(start.elapsed(), 30 * MS);
    assert!(err.is::<DoNotRetry>());
    assert_eq!(
        layer.handle().unwrap().snapshot().expected_attempt,
        Some(30 * MS)
    );
}

#[tokio::test(start_paused = true)]
async fn the_attempt_timeout_caps_the_expected_attempt_time() {
    // As above, but attempts are known to be cut at 10 ms: 30 + 60 + 10 = 100 fits.
    let (svc, log) = script::<u32>(|_| (30 * MS, Err("slow failure".into())));
    let layer =
        RetryLayer::new(config(2, Backoff::constant(60 * MS))).with_attempt_timeout(Some(10 * MS));
    let _ = layer.layer(svc).oneshot(with_deadline(100 * MS)).await;
    assert_eq!(
        calls(&log).iter().map(|c| c.0).collect::<Vec<_>>(),
        [Duration::ZERO, 90 * MS]
    );
}

#[tokio::test(start_paused = true)]
async fn dropping_the_future_cancels_the_backoff_sleep() {
    let (svc, log) = failing();
    let layer = RetryLayer::new(config(3, Backoff::constant(Duration::from_secs(1))));
    let mut fut = Box::pin(layer.layer(svc).oneshot(0u32));
    // First attempt fails at once; the future is now sleeping.
    assert!(futures_poll(&mut fut).is_pending());
    assert_eq!(calls(&log).len(), 1);
    drop(fut);
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(calls(&log).len(), 1);
}

#[tokio::test(start_paused = true)]
async fn dropping_the_future_cancels_the_attempt_in_flight() {
    struct Guard(Arc<AtomicBool>);
    impl Drop for Guard {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }
    let dropped = Arc::new(AtomicBool::new(false));
    let svc = {
        let dropped = dropped.clone();
        tower::service_fn(move |_: u32| {
            let guard = Guard(dropped.clone());
            async move {
                let _guard = guard;
                std::future::pending::<Result<u32, BoxError>>().await
            }
        })
    };
    let mut fut = Box::pin(
        RetryLayer::new(RetryConfig::default())
            .layer(svc)
            .oneshot(0u32),
    );
    assert!(futures_poll(&mut fut).is_pending());
    assert!(!dropped.load(Ordering::SeqCst));
    drop(fut);
    assert!(dropped.load(Ordering::SeqCst));
}

/// Polls a future once.
fn futures_poll<F: Future + Unpin>(fut: &mut F) -> Poll<F::Output> {
    let waker = std::task::Waker::noop();
    Pin::new(fut).poll(&mut Context::from_waker(waker))
}

#[tokio::test(start_paused = true)]
async fn when_the_budget_says_no_the_last_outcome_is_returned() {
    let (svc, log) = failing();
    let layer = RetryLayer::new(RetryConfig {
        budget: BudgetConfig {
            ratio: 0.0,
            min_per_second: 0,
            ttl: Duration::from_secs(10),
        },
        ..config(3, Backoff::constant(MS))
    });
    let err = layer.layer(svc).oneshot(0u32).await.unwrap_err();
    assert_eq!(calls(&log).len(), 1);
    assert_eq!(
        err.downcast_ref::<DoNotRetry>()
            .unwrap()
            .get_ref()
            .to_string(),
        "boom #0"
    );
    let snap = layer.handle().unwrap().snapshot();
    assert_eq!((snap.budget_exhausted, snap.retries), (1, 0));
}

#[tokio::test(start_paused = true)]
async fn the_budget_is_shared_by_every_service_of_the_layer() {
    let layer = RetryLayer::new(RetryConfig {
        budget: BudgetConfig {
            ratio: 0.0,
            min_per_second: 1,
            ttl: Duration::from_secs(3),
        },
        ..config(10, Backoff::constant(MS))
    });
    // Three tokens in all, whichever service asks.
    let (a, log_a) = failing();
    let (b, log_b) = failing();
    let _ = layer.layer(a).oneshot(0u32).await;
    let _ = layer.layer(b).oneshot(0u32).await;
    assert_eq!(calls(&log_a).len() + calls(&log_b).len(), 2 + 3);
    assert_eq!(layer.handle().unwrap().snapshot().budget.requests, 2);
}

#[tokio::test(start_paused = true)]
async fn a_retry_is_shed_when_the_inner_service_is_not_ready() {
    let (svc, mut handle) = tower_test::mock::pair::<u32, u32>();
    let layer = RetryLayer::new(config(3, Backoff::constant(MS)));
    let mut retry = layer.layer(svc.clone());
    handle.allow(1);
    std::future::poll_fn(|cx| retry.poll_ready(cx))
        .await
        .unwrap();
    let fut = tokio::spawn(retry.call(7));
    let (req, send) = handle.next_request().await.unwrap();
    assert_eq!(req, 7);
    send.send_error("overloaded upstream");
    // No more capacity: the retry is due but the inner service is not ready.
    let err = fut.await.unwrap().unwrap_err();
    assert!(err.is::<DoNotRetry>());
    assert_eq!(
        err.downcast_ref::<DoNotRetry>()
            .unwrap()
            .get_ref()
            .to_string(),
        "overloaded upstream"
    );
    let snap = layer.handle().unwrap().snapshot();
    assert_eq!((snap.retries, snap.gave_up), (0, 1));
    // Nothing else reached the service.
    assert!(
        tokio::time::timeout(Duration::from_secs(1), handle.next_request())
            .await
            .is_err()
    );
    drop(svc);
}

#[tokio::test(start_paused = true)]
async fn disabled_layers_pass_calls_through() {
    // None: no state at all.
    let (svc, log) = failing();
    let layer = RetryLayer::from_config(None);
    assert!(layer.handle().is_none() && layer.budget().is_none());
    let err = layer
        .layer(svc)
        .oneshot(WithDeadline::new(0u32))
        .await
        .unwrap_err();
    assert_eq!(calls(&log), [(Duration::ZERO, 0)]);
    assert!(!err.is::<DoNotRetry>());

    // max_attempts 1: sent once, unmarked, but counted into the budget.
    let (svc, log) = failing();
    let layer = RetryLayer::new(config(1, Backoff::constant(MS)));
    let err = layer
        .layer(svc)
        .oneshot(WithDeadline::new(0u32))
        .await
        .unwrap_err();
    assert_eq!(calls(&log), [(Duration::ZERO, 0)]);
    assert!(!err.is::<DoNotRetry>());
    assert_eq!(layer.budget().unwrap().snapshot(Instant::now()).requests, 1);
}

#[tokio::test(start_paused = true)]
async fn reconfigure_applies_to_the_next_call() {
    let layer = RetryLayer::new(config(1, Backoff::constant(MS)));
    let (svc, log) = failing();
    let svc = layer.layer(svc);
    let _ = svc.clone().oneshot(0u32).await;
    assert_eq!(calls(&log).len(), 1);
    layer
        .handle()
        .unwrap()
        .reconfigure(config(4, Backoff::constant(MS)));
    let _ = svc.oneshot(0u32).await;
    assert_eq!(calls(&log).len(), 1 + 4);
}

// ---- The retry storm ------------------------------------------------------------

/// Honours the classification but not the do-not-retry mark: with it, the storm test
/// measures budgets alone.
#[derive(Debug, Clone, Copy)]
struct IgnoreMark;

impl<Req, Res> Classify<Req, Res> for IgnoreMark {
    type Classifier = IgnoreMark;

    fn classify_request(&self, _: &Req) -> IgnoreMark {
        IgnoreMark
    }
}

impl<Res> Classifier<Res> for IgnoreMark {
    fn classify(self, result: Result<&Res, &BoxError>) -> Classification {
        DefaultClassify.classify(result).with_do_not_retry(false)
    }
}

const STORM_REQUESTS: u64 = 10_000;
/// 500 requests a second: 5,000 per default budget ttl (10 s).
const STORM_INTERVAL: Duration = Duration::from_millis(2);

/// Sends `STORM_REQUESTS` requests open-loop through `svc` and returns how many
/// attempts the innermost service saw per request.
async fn storm<S>(svc: S, inner_calls: Arc<AtomicU64>) -> f64
where
    S: Service<u32> + Clone + Send + 'static,
    S::Future: Send,
    S::Error: Send,
    S::Response: Send,
{
    let mut tasks = Vec::new();
    for i in 0..STORM_REQUESTS {
        tasks.push(tokio::spawn(svc.clone().oneshot(i as u32)));
        tokio::time::sleep(STORM_INTERVAL).await;
    }
    for t in tasks {
        assert!(t.await.unwrap().is_err());
    }
    let amplification = inner_calls.load(Ordering::Relaxed) as f64 / STORM_REQUESTS as f64;
    eprintln!("retry storm: the innermost service saw {amplification:.3} attempts per request");
    amplification
}

fn always_failing() -> (
    impl Service<u32, Response = u32, Error = BoxError, Future: Send> + Clone + Send + 'static,
    Arc<AtomicU64>,
) {
    let n = Arc::new(AtomicU64::new(0));
    let svc = {
        let n = n.clone();
        tower::service_fn(move |_: u32| {
            n.fetch_add(1, Ordering::Relaxed);
            std::future::ready(Err::<u32, BoxError>("unavailable".into()))
        })
    };
    (svc, n)
}

fn tier(budget: BudgetConfig, seed: u64) -> RetryLayer {
    RetryLayer::new(RetryConfig {
        max_attempts: 3,
        budget,
        ..Default::default()
    })
    .with_rng(Rng::seeded(seed))
}

const UNLIMITED: BudgetConfig = BudgetConfig {
    ratio: 100.0,
    min_per_second: 1_000_000,
    ttl: Duration::from_secs(10),
};

/// Three tiers of a call chain, each retrying up to three times, over a service that
/// fails every call, at 5,000 requests per budget ttl.
#[tokio::test(start_paused = true)]
async fn retry_storm_without_budgets_or_marks_multiplies_load_27_times() {
    let (svc, n) = always_failing();
    let stack = tower::ServiceBuilder::new()
        .layer(tier(UNLIMITED, 1).with_classify(IgnoreMark))
        .layer(tier(UNLIMITED, 2).with_classify(IgnoreMark))
        .layer(tier(UNLIMITED, 3).with_classify(IgnoreMark))
        .service(svc);
    assert_eq!(storm(stack, n).await, 27.0);
}

#[tokio::test(start_paused = true)]
async fn retry_storm_with_budgets_alone_stays_near_one_plus_ratio_cubed() {
    let budget = BudgetConfig::default();
    let (svc, n) = always_failing();
    let stack = tower::ServiceBuilder::new()
        .layer(tier(budget, 1).with_classify(IgnoreMark))
        .layer(tier(budget, 2).with_classify(IgnoreMark))
        .layer(tier(budget, 3).with_classify(IgnoreMark))
        .service(svc);
    let amplification = storm(stack, n).await;
    let per_tier = 1.0 + budget.ratio;
    // The floor adds min_per_second * ttl retries per tier per ttl window (the run
    // spans at most three windows), amplified by the tiers below it.
    let floor = f64::from(budget.min_per_second) * budget.ttl.as_secs_f64() * 3.0;
    let bound =
        per_tier.powi(3) + floor * (per_tier.powi(2) + per_tier + 1.0) / STORM_REQUESTS as f64;
    assert!(amplification <= bound, "{amplification} > {bound}");
    assert!(amplification <= 1.85, "{amplification}");
    // Budgets alone still let every tier use its share.
    assert!(amplification >= 1.6, "{amplification}");
}

#[tokio::test(start_paused = true)]
async fn retry_storm_with_the_do_not_retry_mark_stays_under_1_3x() {
    let budget = BudgetConfig::default();
    let (svc, n) = always_failing();
    let stack = tower::ServiceBuilder::new()
        .layer(tier(budget, 1))
        .layer(tier(budget, 2))
        .layer(tier(budget, 3))
        .service(svc);
    let amplification = storm(stack, n).await;
    assert!(amplification <= 1.3, "{amplification}");
    // Only the innermost tier retried: its budget share, no more.
    assert!(amplification >= 1.1, "{amplification}");
}

#[cfg(feature = "serde")]
#[test]
fn config_reads_from_a_file_shape() {
    let c: RetryConfig = serde_json::from_str(
        r#"{ "max_attempts": 4,
             "backoff": { "kind": "exponential", "base": "25ms", "max": "1s", "jitter": "decorrelated" },
             "budget": { "ratio": 0.1, "min_per_second": 5, "ttl": "10s" },
             "retry_after_cap": "30s" }"#,
    )
    .unwrap();
    assert_eq!(c.max_attempts, 4);
    assert_eq!(c.budget.ratio, 0.1);
    assert_eq!(c.retry_after_cap, Duration::from_secs(30));
    assert_eq!(
        serde_json::from_str::<RetryConfig>("{}").unwrap(),
        RetryConfig::default()
    );
    assert!(serde_json::from_str::<RetryConfig>(r#"{ "max_attempt": 4 }"#).is_err());
    let round = serde_json::to_string(&c).unwrap();
    assert_eq!(serde_json::from_str::<RetryConfig>(&round).unwrap(), c);
}

/// A replay strategy whose answer changes once an attempt is under way, as the HTTP
/// crate's does for a body that an attempt streams past its buffering cap: a copy made
/// before that attempt must not be sent after it.
#[tokio::test(start_paused = true)]
async fn a_copy_is_made_when_the_retry_is_sent_not_before_the_attempt_it_follows() {
    use std::sync::atomic::AtomicU32;

    use crate::replay::replay_fn;

    // `spent_on`: the attempt during which the request stops being replayable.
    for spent_on in [1u32, 2] {
        let spent = Arc::new(AtomicBool::new(false));
        let calls = Arc::new(AtomicU32::new(0));
        let stale = Arc::new(AtomicU32::new(0));
        let svc = {
            let (spent, calls, stale) = (spent.clone(), calls.clone(), stale.clone());
            tower::service_fn(move |_: u32| {
                let n = calls.fetch_add(1, Ordering::SeqCst) + 1;
                if spent.load(Ordering::SeqCst) {
                    // The strategy would refuse to copy this request now.
                    stale.fetch_add(1, Ordering::SeqCst);
                }
                if n == spent_on {
                    spent.store(true, Ordering::SeqCst);
                }
                async move { Err::<u32, BoxError>(format!("boom #{n}").into()) }
            })
        };
        let replay = {
            let spent = spent.clone();
            replay_fn(move |req: &u32| (!spent.load(Ordering::SeqCst)).then_some(*req))
        };
        let layer = RetryLayer::new(config(3, Backoff::constant(10 * MS))).with_replay(replay);
        let err = layer.layer(svc).oneshot(7).await.unwrap_err();
        assert_eq!(stale.load(Ordering::SeqCst), 0, "spent on {spent_on}");
        assert_eq!(calls.load(Ordering::SeqCst), spent_on);
        // The last real answer, given up on as not replayable.
        let marked = err
            .downcast_ref::<DoNotRetry>()
            .expect("marked do-not-retry");
        assert_eq!(marked.get_ref().to_string(), format!("boom #{spent_on}"));
        let snap = layer.handle().unwrap().snapshot();
        assert_eq!((snap.retries, snap.gave_up), (u64::from(spent_on) - 1, 1));
    }
}
