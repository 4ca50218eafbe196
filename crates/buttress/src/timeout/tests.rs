use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::time::Instant;
use tower::{Service, ServiceExt, service_fn};

use super::TimeoutLayer;
use crate::rejection::{Cause, Elapsed, Scope};
use crate::{BoxError, Deadline, RequestMeta, WithDeadline};
use tower_layer::Layer;

const MS: Duration = Duration::from_millis(1);

/// A service that answers after `delay`, reporting the deadline it saw.
fn slow(
    delay: Duration,
) -> impl Service<WithDeadline<()>, Response = Option<Deadline>, Error = BoxError, Future = impl Send>
+ Clone {
    service_fn(move |req: WithDeadline<()>| async move {
        tokio::time::sleep(delay).await;
        Ok::<_, BoxError>(req.deadline())
    })
}

fn elapsed(err: &BoxError) -> Elapsed {
    *err.downcast_ref::<Elapsed>().expect("an Elapsed error")
}

#[tokio::test(start_paused = true)]
async fn own_budget_fires_when_earlier_than_the_deadline() {
    let start = Instant::now();
    let svc = TimeoutLayer::attempt(100 * MS).layer(slow(Duration::from_secs(5)));
    let req = WithDeadline::with_deadline((), Deadline::after(start, Duration::from_secs(1)));
    let err = svc.oneshot(req).await.unwrap_err();
    assert_eq!(elapsed(&err), Elapsed::new(Scope::Attempt, Cause::Budget));
    assert_eq!(start.elapsed(), 100 * MS);
}

#[tokio::test(start_paused = true)]
async fn carried_deadline_fires_when_earlier_than_the_budget() {
    let start = Instant::now();
    let svc = TimeoutLayer::attempt(Duration::from_secs(1)).layer(slow(Duration::from_secs(5)));
    let req = WithDeadline::with_deadline((), Deadline::after(start, 30 * MS));
    let err = svc.oneshot(req).await.unwrap_err();
    let e = elapsed(&err);
    assert_eq!(e, Elapsed::new(Scope::Attempt, Cause::Deadline));
    assert!(!e.is_retryable());
    assert_eq!(start.elapsed(), 30 * MS);
}

#[tokio::test(start_paused = true)]
async fn answers_in_time_pass_through() {
    let svc = TimeoutLayer::total(100 * MS).layer(slow(99 * MS));
    assert!(svc.oneshot(WithDeadline::new(())).await.is_ok());
}

#[tokio::test(start_paused = true)]
async fn total_timeout_sets_the_deadline_for_inner_layers() {
    let start = Instant::now();
    let svc = TimeoutLayer::total(250 * MS).layer(slow(MS));
    let seen = svc.oneshot(WithDeadline::new(())).await.unwrap().unwrap();
    assert_eq!(seen.at(), start + 250 * MS);
    assert_eq!(seen.started(), start);
}

#[tokio::test(start_paused = true)]
async fn an_earlier_budget_updates_the_carried_deadline_in_place() {
    let start = Instant::now();
    let svc = service_fn(|req: http::Request<()>| async move {
        Ok::<_, BoxError>((req.deadline(), req.extensions().len()))
    });
    let svc = TimeoutLayer::total(100 * MS).layer(svc);
    let mut req = http::Request::new(());
    req.set_deadline(Deadline::after(start - 10 * MS, Duration::from_secs(3)));
    let (seen, extensions) = svc.oneshot(req).await.unwrap();
    let seen = seen.unwrap();
    assert_eq!(seen.at(), start + 100 * MS);
    // The call's original start instant is kept, and nothing was inserted twice.
    assert_eq!(seen.started(), start - 10 * MS);
    assert_eq!(extensions, 1);
}

#[tokio::test(start_paused = true)]
async fn a_later_budget_keeps_the_carried_deadline() {
    let start = Instant::now();
    let svc = TimeoutLayer::attempt(Duration::from_secs(10)).layer(slow(MS));
    let req = WithDeadline::with_deadline((), Deadline::after(start, 40 * MS));
    let seen = svc.oneshot(req).await.unwrap().unwrap();
    assert_eq!(seen.at(), start + 40 * MS);
}

#[tokio::test(start_paused = true)]
async fn an_expired_deadline_never_calls_the_inner_service() {
    let calls = Arc::new(AtomicUsize::new(0));
    let c = calls.clone();
    let inner = service_fn(move |_: WithDeadline<()>| {
        c.fetch_add(1, Ordering::SeqCst);
        async { Ok::<_, BoxError>(()) }
    });
    let start = Instant::now();
    let mut svc = TimeoutLayer::attempt(Duration::from_secs(1)).layer(inner);
    tokio::time::advance(50 * MS).await;
    let req = WithDeadline::with_deadline((), Deadline::after(start, 10 * MS));
    let err = svc.ready().await.unwrap().call(req).await.unwrap_err();
    assert_eq!(elapsed(&err).cause(), Cause::Deadline);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test(start_paused = true)]
async fn no_budget_still_honours_the_carried_deadline() {
    let start = Instant::now();
    let svc = TimeoutLayer::new(Scope::Total, None).layer(slow(Duration::from_secs(5)));
    let req = WithDeadline::with_deadline((), Deadline::after(start, 70 * MS));
    let err = svc.oneshot(req).await.unwrap_err();
    assert_eq!(elapsed(&err), Elapsed::new(Scope::Total, Cause::Deadline));
    assert_eq!(start.elapsed(), 70 * MS);
}

#[tokio::test(start_paused = true)]
async fn no_budget_and_no_deadline_is_a_pass_through() {
    let start = Instant::now();
    let svc = TimeoutLayer::new(Scope::Total, None).layer(slow(Duration::from_secs(3600)));
    let seen = svc.oneshot(WithDeadline::new(())).await.unwrap();
    assert_eq!(seen, None);
    assert_eq!(start.elapsed(), Duration::from_secs(3600));
}

#[tokio::test(start_paused = true)]
async fn propagation_can_be_turned_off() {
    let svc = TimeoutLayer::total(250 * MS)
        .propagate(false)
        .layer(slow(MS));
    assert_eq!(svc.oneshot(WithDeadline::new(())).await.unwrap(), None);
}

#[tokio::test(start_paused = true)]
async fn inner_errors_are_passed_on() {
    let svc =
        TimeoutLayer::total(MS * 10).layer(service_fn(|_: u32| async { Err::<(), _>("boom") }));
    let err = svc.oneshot(1).await.unwrap_err();
    assert_eq!(err.to_string(), "boom");
}
