//! Service-level tests and the overload simulation of the throttle layer.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::{Instant, sleep_until};
use tower::{Layer, Service, ServiceExt, service_fn};

use super::*;
use crate::keyed::partition_fn;
use crate::rejection::{CircuitOpen, OverloadReason, Overloaded};
use crate::{BoxError, Mode};

fn refused(err: &BoxError) -> Option<Overloaded> {
    err.downcast_ref::<Overloaded>()
        .copied()
        .filter(|o| o.reason() == OverloadReason::Throttle)
}

fn shed() -> BoxError {
    Overloaded::new(OverloadReason::Shed, Duration::from_secs(1)).into()
}

#[tokio::test(start_paused = true)]
async fn an_accepting_upstream_is_never_throttled() {
    let layer = ThrottleLayer::new(ThrottleConfig::default().with_seed(1));
    let handle = layer.handle().unwrap();
    let mut svc = layer.layer(service_fn(|i: u32| async move { Ok::<_, BoxError>(i) }));
    for i in 0..5000 {
        assert_eq!(svc.ready().await.unwrap().call(i).await.unwrap(), i);
    }
    let s = handle.snapshot();
    assert_eq!((s.requests, s.throttled, s.window_accepts), (5000, 0, 5000));
    assert_eq!(s.rejection_probability, 0.0);
}

#[tokio::test(start_paused = true)]
async fn overload_answers_make_it_refuse_locally() {
    let sent = Arc::new(AtomicU64::new(0));
    let upstream = {
        let sent = sent.clone();
        service_fn(move |_: u32| {
            sent.fetch_add(1, Ordering::Relaxed);
            async { Err::<u32, _>(shed()) }
        })
    };
    let layer = ThrottleLayer::new(ThrottleConfig::default().with_seed(2));
    let handle = layer.handle().unwrap();
    let mut svc = layer.layer(upstream);
    let mut local = 0;
    for i in 0..1000 {
        let err = svc.ready().await.unwrap().call(i).await.unwrap_err();
        if let Some(o) = refused(&err) {
            assert_eq!(o.retry_after(), Duration::from_secs(1));
            local += 1;
        }
    }
    // Capped at 90%: about one call in ten still probes the upstream.
    let sent = sent.load(Ordering::Relaxed);
    assert!((60..=160).contains(&sent), "sent {sent}");
    assert_eq!(local + sent, 1000);
    let s = handle.snapshot();
    assert_eq!((s.throttled, s.overload_answers), (local, sent));
    assert!((s.rejection_probability - 0.9).abs() < 1e-9);
}

#[tokio::test(start_paused = true)]
async fn keys_have_windows_of_their_own() {
    let upstream = service_fn(|host: &'static str| async move {
        if host == "overloaded" {
            Err(shed())
        } else {
            Ok(host)
        }
    });
    let layer = ThrottleLayer::new(ThrottleConfig::default().with_seed(3))
        .with_partition(partition_fn(|host: &&'static str| Some(*host)));
    let handle = layer.handle().unwrap();
    let mut svc = layer.layer(upstream);
    for _ in 0..500 {
        let _ = svc.ready().await.unwrap().call("overloaded").await;
    }
    for _ in 0..500 {
        assert_eq!(
            svc.ready().await.unwrap().call("healthy").await.unwrap(),
            "healthy"
        );
    }
    let s = handle.snapshot();
    assert!(s.throttled > 300, "{s:?}");
    assert_eq!(s.keys, 2);
    assert_eq!(
        s.window_requests, 0,
        "keyed calls stay out of the unkeyed window"
    );
}

#[tokio::test(start_paused = true)]
async fn calls_that_say_nothing_about_the_upstream_are_not_counted() {
    let layer = ThrottleLayer::new(ThrottleConfig::default().with_seed(4));
    let handle = layer.handle().unwrap();
    let mut svc = layer.layer(service_fn(|_: u32| async {
        Err::<u32, BoxError>(CircuitOpen::new(Duration::from_secs(5)).into())
    }));
    for i in 0..100 {
        assert!(svc.ready().await.unwrap().call(i).await.is_err());
    }
    // Dropped before its answer: not counted either.
    let mut pending = layer_pending();
    let fut = pending.0.ready().await.unwrap().call(1);
    assert_eq!(pending.1.snapshot().window_requests, 1);
    drop(fut);
    assert_eq!(pending.1.snapshot().window_requests, 0);
    let s = handle.snapshot();
    assert_eq!((s.requests, s.window_requests, s.throttled), (100, 0, 0));
}

fn layer_pending() -> (
    Throttle<tower::util::BoxCloneService<u32, u32, BoxError>>,
    ThrottleHandle,
) {
    let layer = ThrottleLayer::new(ThrottleConfig::default().with_seed(5));
    let handle = layer.handle().unwrap();
    let inner = tower::util::BoxCloneService::new(service_fn(|_: u32| {
        std::future::pending::<Result<u32, BoxError>>()
    }));
    (layer.layer(inner), handle)
}

#[tokio::test(start_paused = true)]
async fn observe_mode_counts_and_sends_everything() {
    let sent = Arc::new(AtomicU64::new(0));
    let upstream = {
        let sent = sent.clone();
        service_fn(move |_: u32| {
            sent.fetch_add(1, Ordering::Relaxed);
            async { Err::<u32, _>(shed()) }
        })
    };
    let layer = ThrottleLayer::new(
        ThrottleConfig::default()
            .with_seed(6)
            .with_mode(Mode::Observe),
    );
    let handle = layer.handle().unwrap();
    let mut svc = layer.layer(upstream);
    for i in 0..500 {
        let err = svc.ready().await.unwrap().call(i).await.unwrap_err();
        assert!(refused(&err).is_none());
    }
    assert_eq!(sent.load(Ordering::Relaxed), 500);
    let s = handle.snapshot();
    assert_eq!(s.throttled, 0);
    assert!(s.observed > 300, "{s:?}");
}

#[tokio::test(start_paused = true)]
async fn a_disabled_layer_is_a_pass_through_of_the_same_type() {
    let layer = ThrottleLayer::from_config(None);
    assert!(layer.handle().is_none() && !layer.is_enabled());
    let mut svc: Throttle<_> = layer.layer(service_fn(|_: u32| async { Err::<u32, _>(shed()) }));
    assert!(!svc.is_enabled());
    for i in 0..1000 {
        let err = svc.ready().await.unwrap().call(i).await.unwrap_err();
        assert!(refused(&err).is_none());
    }
}

#[tokio::test(start_paused = true)]
async fn reconfigure_applies_k_at_once() {
    let layer = ThrottleLayer::new(ThrottleConfig::default().with_seed(7));
    let handle = layer.handle().unwrap();
    let ok = Arc::new(AtomicU64::new(0));
    let upstream = {
        let ok = ok.clone();
        // Accepts one call in four.
        service_fn(move |_: u32| {
            let n = ok.fetch_add(1, Ordering::Relaxed);
            async move {
                if n % 4 == 0 {
                    Ok(n as u32)
                } else {
                    Err(shed())
                }
            }
        })
    };
    let mut svc = layer.layer(upstream);
    for i in 0..400 {
        let _ = svc.ready().await.unwrap().call(i).await;
    }
    assert!(handle.snapshot().rejection_probability > 0.2);
    handle.reconfigure(ThrottleConfig::new(50.0));
    assert_eq!(
        handle.snapshot().rejection_probability,
        0.0,
        "50 x accepts exceeds requests"
    );
}

/// A backend that accepts at most `capacity` calls per second and answers the rest
/// with an overload error at once. Counts what it receives per second.
#[derive(Clone)]
struct Limited {
    start: Instant,
    capacity: Arc<AtomicU64>,
    seconds: Arc<Mutex<Vec<(u64, u64)>>>, // (received, accepted) per second
}

impl Limited {
    fn new(capacity: u64) -> Self {
        Self {
            start: Instant::now(),
            capacity: Arc::new(AtomicU64::new(capacity)),
            seconds: Arc::new(Mutex::new(vec![])),
        }
    }

    fn answer(&self) -> Result<u32, BoxError> {
        let sec = Instant::now().duration_since(self.start).as_secs() as usize;
        let mut s = self.seconds.lock().unwrap();
        if s.len() <= sec {
            s.resize(sec + 1, (0, 0));
        }
        s[sec].0 += 1;
        if s[sec].1 < self.capacity.load(Ordering::Relaxed) {
            s[sec].1 += 1;
            Ok(1)
        } else {
            Err(shed())
        }
    }

    /// Mean calls received per second over `from..to` seconds.
    fn sent(&self, from: usize, to: usize) -> f64 {
        let s = self.seconds.lock().unwrap();
        s[from..to].iter().map(|x| x.0).sum::<u64>() as f64 / (to - from) as f64
    }
}

/// Offered 5X against an upstream that accepts X per second, the throttle sends
/// about 2X (k = 2); once the upstream's capacity returns, it sends everything again.
#[tokio::test(start_paused = true)]
async fn sends_about_k_times_what_is_accepted_and_recovers() {
    const X: u64 = 100;
    let backend = Limited::new(X);
    let layer = ThrottleLayer::new(
        ThrottleConfig::new(2.0)
            .with_window(Duration::from_secs(10))
            .with_seed(8),
    );
    let mut svc = layer.layer(service_fn({
        let b = backend.clone();
        move |_: u32| {
            let r = b.answer();
            async move { r }
        }
    }));
    let start = Instant::now();
    let offered = 5 * X;
    let mut n = 0u64;
    for ms in 0..100_000u64 {
        if ms == 60_000 {
            backend.capacity.store(100 * X, Ordering::Relaxed);
        }
        // `offered` calls per second, spread over the milliseconds.
        while n * 1000 < (ms + 1) * offered {
            n += 1;
            let _ = svc.ready().await.unwrap().call(n as u32).await;
        }
        sleep_until(start + Duration::from_millis(ms + 1)).await;
    }
    let overloaded = backend.sent(30, 60);
    assert!(
        (1.8 * X as f64..=2.2 * X as f64).contains(&overloaded),
        "sent {overloaded}/s against {X}/s accepted"
    );
    let recovered = backend.sent(90, 100);
    assert!(
        recovered >= 0.97 * offered as f64,
        "sent {recovered}/s of {offered}/s once the upstream recovered"
    );
}
