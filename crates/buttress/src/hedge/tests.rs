use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;
use tower::{Service, ServiceExt};
use tower_layer::Layer;

use super::{HedgeConfig, HedgeDelay, HedgeLayer, PercentileDelay};
use crate::budget::{Budget, BudgetConfig};
use crate::classify::{Classification, Classifier, Classify};
use crate::replay::NoReplay;
use crate::{BoxError, Deadline, RequestMeta, WithDeadline};

const MS: Duration = Duration::from_millis(1);

/// One entry per copy the inner service saw: when, and its attempt number (0: none).
type Log = Arc<Mutex<Vec<(Duration, u32)>>>;

type Answer = Arc<dyn Fn(usize) -> (Duration, Result<String, BoxError>) + Send + Sync>;

/// Answers copy `n` (from 0) after a delay, as `answer(n)` says; counts the copies
/// dropped before they answered.
#[derive(Clone)]
struct Replicas {
    t0: Instant,
    log: Log,
    cancelled: Arc<AtomicUsize>,
    answer: Answer,
}

fn replicas(
    answer: impl Fn(usize) -> (Duration, Result<String, BoxError>) + Send + Sync + 'static,
) -> Replicas {
    Replicas {
        t0: Instant::now(),
        log: Log::default(),
        cancelled: Arc::default(),
        answer: Arc::new(answer),
    }
}

impl Replicas {
    fn seen(&self) -> Vec<(Duration, u32)> {
        self.log.lock().unwrap().clone()
    }

    fn cancelled(&self) -> usize {
        self.cancelled.load(Ordering::SeqCst)
    }
}

struct CountDrop(Arc<AtomicUsize>, bool);

impl Drop for CountDrop {
    fn drop(&mut self) {
        if !self.1 {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl<Req: RequestMeta> Service<Req> for Replicas {
    type Response = String;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<String, BoxError>> + Send>>;

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
        let guard = CountDrop(self.cancelled.clone(), false);
        Box::pin(async move {
            let mut guard = guard;
            tokio::time::sleep(delay).await;
            guard.1 = true;
            out
        })
    }
}

fn ok(s: &str) -> Result<String, BoxError> {
    Ok(s.to_owned())
}

fn fixed(delay_ms: u32, max_extra: u32) -> HedgeConfig {
    HedgeConfig::fixed(delay_ms * MS, max_extra)
}

#[tokio::test(start_paused = true)]
async fn an_extra_copy_wins_over_a_slow_primary() {
    let svc = replicas(|n| {
        if n == 0 {
            (Duration::from_secs(1), ok("primary"))
        } else {
            (10 * MS, ok("hedge"))
        }
    });
    let layer = HedgeLayer::new(fixed(50, 1));
    let start = Instant::now();
    let out = layer
        .layer(svc.clone())
        .oneshot(WithDeadline::new(1u32))
        .await
        .unwrap();
    assert_eq!(out, "hedge");
    assert_eq!(start.elapsed(), 60 * MS);
    assert_eq!(svc.seen(), [(Duration::ZERO, 0), (50 * MS, 2)]);
    // The primary was dropped, not left running.
    assert_eq!(svc.cancelled(), 1);
    let snap = layer.handle().unwrap().snapshot();
    assert_eq!((snap.sent, snap.won), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn no_copy_when_the_primary_is_fast() {
    let svc = replicas(|_| (30 * MS, ok("primary")));
    let layer = HedgeLayer::new(fixed(50, 3));
    let s = layer.layer(svc.clone());
    for _ in 0..10 {
        assert_eq!(s.clone().oneshot(1u32).await.unwrap(), "primary");
    }
    assert_eq!(svc.seen().len(), 10);
    let snap = layer.handle().unwrap().snapshot();
    assert_eq!((snap.sent, snap.won), (0, 0));
    assert_eq!(snap.budget.requests, 10);
}

#[tokio::test(start_paused = true)]
async fn the_primary_still_wins_when_it_answers_first() {
    let svc = replicas(|n| {
        if n == 0 {
            (80 * MS, ok("primary"))
        } else {
            (100 * MS, ok("hedge"))
        }
    });
    let layer = HedgeLayer::new(fixed(50, 1));
    assert_eq!(
        layer.layer(svc.clone()).oneshot(1u32).await.unwrap(),
        "primary"
    );
    assert_eq!(svc.cancelled(), 1);
    let snap = layer.handle().unwrap().snapshot();
    assert_eq!((snap.sent, snap.won), (1, 0));
}

#[tokio::test(start_paused = true)]
async fn extra_copies_go_out_one_delay_apart_up_to_max_extra() {
    let svc = replicas(|n| {
        (
            Duration::from_secs(1) - MS * 100 * n as u32,
            ok(&format!("copy {n}")),
        )
    });
    let layer = HedgeLayer::new(fixed(50, 2));
    let start = Instant::now();
    // Copy 2 (sent at 100 ms, 800 ms long) answers first, at 900 ms.
    assert_eq!(
        layer.layer(svc.clone()).oneshot(1u32).await.unwrap(),
        "copy 2"
    );
    assert_eq!(start.elapsed(), 900 * MS);
    let times: Vec<_> = svc.seen().iter().map(|c| c.0).collect();
    assert_eq!(times, [Duration::ZERO, 50 * MS, 100 * MS]);
    assert_eq!(svc.cancelled(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_failure_waits_for_the_copies_still_running() {
    let svc = replicas(|n| {
        if n == 0 {
            (200 * MS, ok("primary"))
        } else {
            (MS, Err("hedge failed".into()))
        }
    });
    let layer = HedgeLayer::new(fixed(50, 1));
    let start = Instant::now();
    assert_eq!(
        layer.layer(svc.clone()).oneshot(1u32).await.unwrap(),
        "primary"
    );
    assert_eq!(start.elapsed(), 200 * MS);
    assert_eq!(layer.handle().unwrap().snapshot().won, 0);
}

#[tokio::test(start_paused = true)]
async fn when_every_copy_fails_the_last_failure_is_returned() {
    let svc = replicas(|n| {
        if n == 0 {
            (100 * MS, Err("primary failed".into()))
        } else {
            (200 * MS, Err("hedge failed".into()))
        }
    });
    let layer = HedgeLayer::new(fixed(50, 1));
    let start = Instant::now();
    let err = layer.layer(svc.clone()).oneshot(1u32).await.unwrap_err();
    assert_eq!(err.to_string(), "hedge failed");
    assert_eq!(start.elapsed(), 250 * MS);
}

#[tokio::test(start_paused = true)]
async fn a_primary_failing_before_the_delay_is_returned_at_once() {
    let svc = replicas(|_| (10 * MS, Err("refused".into())));
    let layer = HedgeLayer::new(fixed(50, 1));
    let start = Instant::now();
    assert!(layer.layer(svc.clone()).oneshot(1u32).await.is_err());
    assert_eq!(start.elapsed(), 10 * MS);
    assert_eq!(svc.seen().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn extra_copies_are_limited_by_the_budget() {
    // No deposits count (ratio 0): only the floor, 2 tokens over the ttl.
    let budget = Budget::new(BudgetConfig {
        ratio: 0.0,
        min_per_second: 1,
        ttl: Duration::from_secs(2),
    });
    let svc = replicas(|n| (if n % 2 == 0 { 500 * MS } else { 10 * MS }, ok("x")));
    let layer = HedgeLayer::new(fixed(50, 1)).with_budget(budget);
    let s = layer.layer(svc.clone());
    for _ in 0..5 {
        s.clone().oneshot(1u32).await.unwrap();
    }
    let snap = layer.handle().unwrap().snapshot();
    // Calls 1 and 2 were hedged; calls 3 and 5 (slow) found the budget spent.
    assert_eq!((snap.sent, snap.budget_exhausted), (2, 2));
    // A shared budget is filled by the retry layer above, not here.
    assert_eq!(snap.budget.requests, 0);
}

#[tokio::test(start_paused = true)]
async fn its_own_budget_allows_ratio_of_the_calls() {
    let svc = replicas(|_| (100 * MS, ok("slow")));
    let layer = HedgeLayer::new(fixed(50, 1));
    layer.handle().unwrap().budget().reconfigure(BudgetConfig {
        ratio: 0.25,
        min_per_second: 0,
        ttl: Duration::from_secs(60),
    });
    let s = layer.layer(svc.clone());
    for _ in 0..40 {
        s.clone().oneshot(1u32).await.unwrap();
    }
    // Each call deposits a quarter of a token before asking: 10 copies in 40 calls.
    assert_eq!(layer.handle().unwrap().snapshot().sent, 10);
}

#[tokio::test(start_paused = true)]
async fn the_percentile_delay_applies_once_enough_samples_exist() {
    // Calls take 10..=29 ms (p90 is about 27 ms); every 25th is stuck for a second.
    let svc = replicas(|n| {
        if n % 25 == 24 {
            (Duration::from_secs(1), ok("stuck"))
        } else {
            (MS * (10 + (n % 20) as u32), ok("fine"))
        }
    });
    let config = HedgeConfig {
        delay: HedgeDelay::Percentile(PercentileDelay {
            percentile: 0.9,
            min_samples: 20,
            window: Duration::from_secs(60),
            fallback: None,
        }),
        max_extra: 1,
    };
    let layer = HedgeLayer::new(config);
    let handle = layer.handle().unwrap();
    let s = layer.layer(svc.clone());
    assert_eq!(handle.snapshot().delay, None);
    for _ in 0..24 {
        s.clone().oneshot(1u32).await.unwrap();
    }
    // p90 of 10..=29 ms, to within a bucket.
    let snap = handle.snapshot();
    let delay = snap
        .delay
        .expect("a percentile delay once 20 samples are in");
    assert!(delay >= 25 * MS && delay <= 31 * MS, "{delay:?}");
    assert_eq!(snap.sent, 0, "no call was slow yet");
    let start = Instant::now();
    assert_eq!(s.clone().oneshot(1u32).await.unwrap(), "fine");
    assert!(start.elapsed() < 2 * delay, "the stuck call was hedged");
    assert_eq!(handle.snapshot().sent, 1);
}

#[tokio::test(start_paused = true)]
async fn no_hedging_before_enough_samples_without_a_fallback() {
    let svc = replicas(|n| {
        if n == 0 {
            (Duration::from_secs(1), ok("stuck"))
        } else {
            (MS, ok("fast"))
        }
    });
    let layer = HedgeLayer::new(HedgeConfig::percentile(0.95, 1));
    assert_eq!(
        layer.layer(svc.clone()).oneshot(1u32).await.unwrap(),
        "stuck"
    );
    assert_eq!(svc.seen().len(), 1);

    let svc = replicas(|n| {
        if n == 0 {
            (Duration::from_secs(1), ok("stuck"))
        } else {
            (MS, ok("fast"))
        }
    });
    let layer = HedgeLayer::new(HedgeConfig {
        delay: HedgeDelay::Percentile(PercentileDelay {
            fallback: Some(100 * MS),
            ..PercentileDelay::default()
        }),
        max_extra: 1,
    });
    assert_eq!(
        layer.layer(svc.clone()).oneshot(1u32).await.unwrap(),
        "fast"
    );
    assert_eq!(svc.seen()[1].0, 100 * MS);
}

#[tokio::test(start_paused = true)]
async fn no_copy_that_cannot_finish_before_the_deadline() {
    // Calls carrying deadlines teach the layer they take 40 ms.
    let svc = replicas(|n| {
        if n < 20 {
            (40 * MS, ok("warm-up"))
        } else {
            (Duration::from_secs(1), ok("stuck"))
        }
    });
    let layer = HedgeLayer::new(fixed(50, 1));
    let s = layer.layer(svc.clone());
    let with_deadline = |budget: Duration| {
        WithDeadline::with_deadline(1u32, Deadline::after(Instant::now(), budget))
    };
    for _ in 0..20 {
        s.clone()
            .oneshot(with_deadline(Duration::from_secs(5)))
            .await
            .unwrap();
    }
    let median = layer.handle().unwrap().snapshot().median.unwrap();
    assert!(median >= 38 * MS && median <= 42 * MS, "{median:?}");
    // 80 ms to live: a copy at 50 ms would need 40 more.
    let out = tokio::time::timeout(80 * MS, s.clone().oneshot(with_deadline(80 * MS))).await;
    assert!(out.is_err(), "the stuck primary runs out the clock alone");
    assert_eq!(svc.seen().len(), 21);
    // 100 ms to live: 50 + 40 fits.
    let _ = tokio::time::timeout(100 * MS, s.clone().oneshot(with_deadline(100 * MS))).await;
    assert_eq!(svc.seen().len(), 23);
}

#[derive(Debug, Clone, Copy)]
struct Unsafe;

impl<Req> Classify<Req, String> for Unsafe {
    type Classifier = Unsafe;

    fn classify_request(&self, _: &Req) -> Unsafe {
        Unsafe
    }
}

impl Classifier<String> for Unsafe {
    fn request_is_safe(&self) -> bool {
        false
    }

    fn classify(self, result: Result<&String, &BoxError>) -> Classification {
        match result {
            Ok(_) => Classification::success(),
            Err(e) => Classification::from_error(e),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn only_replayable_safe_requests_are_hedged() {
    let slow = || {
        replicas(|n| {
            if n == 0 {
                (Duration::from_secs(1), ok("primary"))
            } else {
                (MS, ok("hedge"))
            }
        })
    };
    let svc = slow();
    let out = HedgeLayer::new(fixed(50, 1))
        .with_replay(NoReplay)
        .layer(svc.clone())
        .oneshot(1u32)
        .await
        .unwrap();
    assert_eq!((out.as_str(), svc.seen().len()), ("primary", 1));

    let svc = slow();
    let out = HedgeLayer::new(fixed(50, 1))
        .with_classify(Unsafe)
        .layer(svc.clone())
        .oneshot(1u32)
        .await
        .unwrap();
    assert_eq!((out.as_str(), svc.seen().len()), ("primary", 1));
}

#[tokio::test(start_paused = true)]
async fn disabled_layers_pass_calls_through() {
    for layer in [HedgeLayer::from_config(None), HedgeLayer::new(fixed(50, 0))] {
        let svc = replicas(|n| {
            if n == 0 {
                (Duration::from_secs(1), ok("primary"))
            } else {
                (MS, ok("hedge"))
            }
        });
        assert_eq!(
            layer.layer(svc.clone()).oneshot(1u32).await.unwrap(),
            "primary"
        );
        assert_eq!(svc.seen().len(), 1);
    }
    assert!(HedgeLayer::disabled().handle().is_none());
}

#[tokio::test(start_paused = true)]
async fn dropping_the_future_cancels_every_copy() {
    let svc = replicas(|_| (Duration::from_secs(1), ok("slow")));
    let mut fut = Box::pin(
        HedgeLayer::new(fixed(50, 2))
            .layer(svc.clone())
            .oneshot(1u32),
    );
    let _ = tokio::time::timeout(120 * MS, &mut fut).await;
    assert_eq!(svc.seen().len(), 3);
    drop(fut);
    assert_eq!(svc.cancelled(), 3);
}

#[tokio::test(start_paused = true)]
async fn reconfigure_changes_the_delay() {
    let svc = replicas(|n| {
        if n == 0 {
            (Duration::from_secs(1), ok("primary"))
        } else {
            (MS, ok("hedge"))
        }
    });
    let layer = HedgeLayer::new(fixed(500, 1));
    layer.handle().unwrap().reconfigure(fixed(20, 1));
    let start = Instant::now();
    assert_eq!(layer.layer(svc).oneshot(1u32).await.unwrap(), "hedge");
    assert_eq!(start.elapsed(), 21 * MS);
}

#[cfg(feature = "retry")]
#[tokio::test(start_paused = true)]
async fn hedges_draw_on_the_retry_budget() {
    use crate::retry::{RetryConfig, RetryLayer};

    let retry = RetryLayer::new(RetryConfig {
        budget: BudgetConfig {
            ratio: 0.5,
            min_per_second: 0,
            ttl: Duration::from_secs(60),
        },
        ..RetryConfig::default()
    });
    let hedge = HedgeLayer::new(fixed(50, 1)).with_budget(retry.budget().unwrap());
    let svc = replicas(|n| {
        (
            if n % 3 == 0 {
                Duration::from_secs(1)
            } else {
                MS
            },
            ok("x"),
        )
    });
    let stack = tower::ServiceBuilder::new()
        .layer(retry.clone())
        .layer(hedge.clone())
        .service(svc.clone());
    for _ in 0..10 {
        stack.clone().oneshot(1u32).await.unwrap();
    }
    // Ten requests deposited once each (by retry), for five tokens.
    let snap = hedge.handle().unwrap().snapshot();
    assert_eq!(snap.budget.requests, 10);
    assert!(snap.sent >= 1 && snap.sent <= 5, "{}", snap.sent);
    assert_eq!(snap.budget.retries, snap.sent);
}

#[cfg(feature = "serde")]
#[test]
fn delays_read_as_a_duration_or_a_table() {
    let c: HedgeConfig = serde_json::from_str(r#"{ "delay": "50ms", "max_extra": 2 }"#).unwrap();
    assert_eq!(c, fixed(50, 2));
    let c: HedgeConfig =
        serde_json::from_str(r#"{ "delay": { "percentile": 0.99, "window": "30s" } }"#).unwrap();
    assert_eq!(
        c.delay,
        HedgeDelay::Percentile(PercentileDelay {
            percentile: 0.99,
            window: Duration::from_secs(30),
            ..PercentileDelay::default()
        })
    );
    assert!(serde_json::from_str::<HedgeConfig>(r#"{ "delay": { "percentil": 0.99 } }"#).is_err());
    let round = serde_json::to_string(&HedgeConfig::default()).unwrap();
    assert_eq!(
        serde_json::from_str::<HedgeConfig>(&round).unwrap(),
        HedgeConfig::default()
    );
}

/// A replay strategy whose answer changes once a copy is under way, as the HTTP
/// crate's does for a body that an attempt streams past its buffering cap: a copy made
/// before that must not be sent after it.
#[tokio::test(start_paused = true)]
async fn an_extra_copy_is_made_when_it_is_sent_not_before() {
    use std::sync::atomic::AtomicBool;

    use crate::replay::replay_fn;

    // `spent_on`: the copy (1: the primary) during which the request stops being
    // replayable.
    for spent_on in [1usize, 2] {
        let spent = Arc::new(AtomicBool::new(false));
        let stale = Arc::new(AtomicUsize::new(0));
        let svc = replicas(|_| (Duration::from_secs(1), ok("answer")));
        let watched = {
            let (spent, stale, svc) = (spent.clone(), stale.clone(), svc.clone());
            tower::service_fn(move |req: u32| {
                if spent.load(Ordering::SeqCst) {
                    // The strategy would refuse to copy this request now.
                    stale.fetch_add(1, Ordering::SeqCst);
                }
                let mut svc = svc.clone();
                let fut = svc.call(req);
                if svc.seen().len() == spent_on {
                    spent.store(true, Ordering::SeqCst);
                }
                fut
            })
        };
        let replay = {
            let spent = spent.clone();
            replay_fn(move |req: &u32| (!spent.load(Ordering::SeqCst)).then_some(*req))
        };
        let out = HedgeLayer::new(fixed(50, 2))
            .with_replay(replay)
            .layer(watched)
            .oneshot(1u32)
            .await
            .unwrap();
        assert_eq!(out, "answer");
        assert_eq!(stale.load(Ordering::SeqCst), 0, "spent on {spent_on}");
        let times: Vec<_> = svc.seen().iter().map(|c| c.0).collect();
        assert_eq!(times, [Duration::ZERO, 50 * MS][..spent_on]);
    }
}
