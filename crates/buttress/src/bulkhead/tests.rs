//! Service-level tests, on paused time unless stated.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::time::{Instant, advance};
use tower::{Layer, Service, ServiceExt, service_fn};

use super::error::{BulkheadFull, Cause, Elapsed, Scope};
use super::{Bulkhead, BulkheadConfig, BulkheadHandle, BulkheadLayer};
use crate::keyed::{KeyedConfig, partition_fn};
use crate::{BoxError, Deadline, Mode, RequestMeta};

/// A request the test finishes by hand.
struct Job {
    id: u32,
    release: oneshot::Receiver<()>,
    deadline: Option<Deadline>,
    key: Option<&'static str>,
}

impl RequestMeta for Job {
    fn deadline(&self) -> Option<Deadline> {
        self.deadline
    }
}

fn job(id: u32) -> (Job, oneshot::Sender<()>) {
    let (tx, rx) = oneshot::channel();
    (
        Job {
            id,
            release: rx,
            deadline: None,
            key: None,
        },
        tx,
    )
}

fn keyed_job(id: u32, key: &'static str) -> (Job, oneshot::Sender<()>) {
    let (mut job, tx) = job(id);
    job.key = Some(key);
    (job, tx)
}

/// What the inner service saw: the order calls started in, and how many ran at once.
#[derive(Clone, Default)]
struct Probe {
    started: Arc<Mutex<Vec<u32>>>,
    active: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
}

impl Probe {
    fn started(&self) -> Vec<u32> {
        self.started.lock().unwrap().clone()
    }

    fn active(&self) -> usize {
        self.active.load(Ordering::SeqCst)
    }

    fn peak(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }
}

struct Active(Arc<AtomicUsize>);

impl Drop for Active {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

type Inner = tower::util::BoxCloneService<Job, u32, BoxError>;

fn inner(probe: &Probe) -> Inner {
    let probe = probe.clone();
    tower::util::BoxCloneService::new(service_fn(move |job: Job| {
        probe.started.lock().unwrap().push(job.id);
        let now = probe.active.fetch_add(1, Ordering::SeqCst) + 1;
        probe.peak.fetch_max(now, Ordering::SeqCst);
        let active = Active(probe.active.clone());
        async move {
            let _active = active;
            let _ = job.release.await;
            Ok::<_, BoxError>(job.id)
        }
    }))
}

fn bulkhead(config: BulkheadConfig) -> (Bulkhead<Inner>, BulkheadHandle, Probe) {
    let probe = Probe::default();
    let layer = BulkheadLayer::new(config);
    let handle = layer.handle();
    (layer.layer(inner(&probe)), handle, probe)
}

fn poll<F: Future>(f: Pin<&mut F>) -> Poll<F::Output> {
    f.poll(&mut Context::from_waker(Waker::noop()))
}

async fn call<S>(svc: &mut S, job: Job) -> S::Future
where
    S: Service<Job>,
    S::Error: std::fmt::Debug,
{
    svc.ready().await.unwrap().call(job)
}

fn counts(h: &BulkheadHandle) -> (usize, usize) {
    let s = h.snapshot();
    (s.running, s.queued)
}

/// Polls `f` once, expecting a refusal.
fn refused<F, T>(f: &mut Pin<Box<F>>, why: &str) -> BoxError
where
    F: Future<Output = Result<T, BoxError>>,
{
    match poll(f.as_mut()) {
        Poll::Ready(Err(e)) => e,
        Poll::Ready(Ok(_)) => panic!("answered: {why}"),
        Poll::Pending => panic!("still pending: {why}"),
    }
}

fn bulkhead_full(err: &BoxError) -> BulkheadFull {
    *err.downcast_ref::<BulkheadFull>()
        .unwrap_or_else(|| panic!("not BulkheadFull: {err}"))
}

const WAIT: Duration = Duration::from_millis(100);

#[tokio::test(start_paused = true)]
async fn refuses_at_once_when_running_and_queue_are_full() {
    let (mut svc, h, probe) = bulkhead(BulkheadConfig::new(1).with_queue(1, WAIT));
    let (a, a_done) = job(1);
    let (b, _b_done) = job(2);
    let (c, _c_done) = job(3);
    let mut a = Box::pin(call(&mut svc, a).await);
    let mut b = Box::pin(call(&mut svc, b).await);
    let mut c = Box::pin(call(&mut svc, c).await);
    assert!(poll(a.as_mut()).is_pending());
    assert!(poll(b.as_mut()).is_pending());
    let err = refused(&mut c, "a full bulkhead refuses at once");
    assert!(!bulkhead_full(&err).was_queued());
    assert_eq!(counts(&h), (1, 1));
    assert_eq!(h.snapshot().rejected, 1);
    assert_eq!(probe.started(), [1]);

    a_done.send(()).unwrap();
    assert!(matches!(poll(a.as_mut()), Poll::Ready(Ok(1))));
    assert!(poll(b.as_mut()).is_pending());
    assert_eq!(probe.started(), [1, 2]);
    assert_eq!(counts(&h), (1, 0));
}

#[tokio::test(start_paused = true)]
async fn without_a_queue_every_call_over_the_limit_is_refused() {
    let (mut svc, h, probe) = bulkhead(BulkheadConfig::new(2));
    let jobs: Vec<_> = (1..=3).map(job).collect();
    let mut futs = Vec::new();
    let mut done = Vec::new();
    for (j, tx) in jobs {
        futs.push(Box::pin(call(&mut svc, j).await));
        done.push(tx);
    }
    assert!(poll(futs[0].as_mut()).is_pending());
    assert!(poll(futs[1].as_mut()).is_pending());
    assert!(matches!(poll(futs[2].as_mut()), Poll::Ready(Err(_))));
    assert_eq!(counts(&h), (2, 0));
    done.remove(0).send(()).unwrap();
    assert!(poll(futs[0].as_mut()).is_ready());
    assert_eq!(counts(&h), (1, 0));
    let (d, _d_done) = job(4);
    let mut d = Box::pin(call(&mut svc, d).await);
    assert!(poll(d.as_mut()).is_pending());
    assert_eq!(probe.started(), [1, 2, 4]);
}

#[tokio::test(start_paused = true)]
async fn dropping_before_the_first_poll_or_while_running_releases_the_permit() {
    let (mut svc, h, probe) = bulkhead(BulkheadConfig::new(1));
    let (a, _a_done) = job(1);
    let a = call(&mut svc, a).await;
    assert_eq!(counts(&h), (1, 0));
    drop(a);
    assert_eq!(counts(&h), (0, 0));

    let (b, _b_done) = job(2);
    let mut b = Box::pin(call(&mut svc, b).await);
    assert!(poll(b.as_mut()).is_pending());
    assert_eq!(probe.active(), 1);
    drop(b);
    assert_eq!(counts(&h), (0, 0));
    assert_eq!(probe.active(), 0);

    let (c, c_done) = job(3);
    let mut c = Box::pin(call(&mut svc, c).await);
    c_done.send(()).unwrap();
    assert!(matches!(poll(c.as_mut()), Poll::Ready(Ok(3))));
    assert_eq!(
        counts(&h),
        (0, 0),
        "released at the answer, before the future is dropped"
    );
}

#[tokio::test(start_paused = true)]
async fn dropping_a_queued_call_leaves_the_queue() {
    let (mut svc, h, probe) = bulkhead(BulkheadConfig::new(1).with_queue(2, WAIT));
    let (a, a_done) = job(1);
    let (b, _b_done) = job(2);
    let mut a = Box::pin(call(&mut svc, a).await);
    let mut b = Box::pin(call(&mut svc, b).await);
    assert!(poll(a.as_mut()).is_pending());
    assert!(poll(b.as_mut()).is_pending());
    assert_eq!(counts(&h), (1, 1));
    drop(b);
    assert_eq!(counts(&h), (1, 0));
    a_done.send(()).unwrap();
    assert!(poll(a.as_mut()).is_ready());
    assert_eq!(counts(&h), (0, 0), "no permit handed to the dropped waiter");
    assert_eq!(probe.started(), [1]);
    // The fast path is open again.
    let (c, _c_done) = job(3);
    let _c = call(&mut svc, c).await;
    assert_eq!(counts(&h), (1, 0));
    // An unpolled queued call dropped too.
    let (d, _d_done) = job(4);
    let d = call(&mut svc, d).await;
    assert_eq!(counts(&h), (1, 1));
    drop(d);
    assert_eq!(counts(&h), (1, 0));
}

#[tokio::test(start_paused = true)]
async fn dropping_a_granted_call_before_it_runs_hands_the_permit_on() {
    let (mut svc, h, probe) = bulkhead(BulkheadConfig::new(1).with_queue(2, WAIT));
    let (a, a_done) = job(1);
    let (b, _b_done) = job(2);
    let (c, c_done) = job(3);
    let mut a = Box::pin(call(&mut svc, a).await);
    let mut b = Box::pin(call(&mut svc, b).await);
    let mut c = Box::pin(call(&mut svc, c).await);
    assert!(poll(a.as_mut()).is_pending());
    assert!(poll(b.as_mut()).is_pending());
    assert!(poll(c.as_mut()).is_pending());
    a_done.send(()).unwrap();
    assert!(poll(a.as_mut()).is_ready());
    // `b` holds the permit now but has not run.
    assert_eq!(counts(&h), (1, 1));
    drop(b);
    assert_eq!(counts(&h), (1, 0));
    assert!(poll(c.as_mut()).is_pending());
    assert_eq!(probe.started(), [1, 3]);
    c_done.send(()).unwrap();
    assert!(matches!(poll(c.as_mut()), Poll::Ready(Ok(3))));
    assert_eq!(counts(&h), (0, 0));

    // Granted with nobody behind it: the permit goes back.
    let (d, d_done) = job(4);
    let (e, _e_done) = job(5);
    let mut d = Box::pin(call(&mut svc, d).await);
    let e = call(&mut svc, e).await;
    d_done.send(()).unwrap();
    assert!(poll(d.as_mut()).is_ready());
    assert_eq!(counts(&h), (1, 0));
    drop(e);
    assert_eq!(counts(&h), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn queued_calls_are_served_in_order_and_never_overtaken() {
    let (mut svc, h, probe) = bulkhead(BulkheadConfig::new(1).with_queue(3, WAIT));
    let mut done = Vec::new();
    let mut futs = Vec::new();
    for id in 1..=4 {
        let (j, tx) = job(id);
        futs.push(Some(Box::pin(call(&mut svc, j).await)));
        done.push(Some(tx));
    }
    // Polls every unfinished call, newest first, dropping those that answered.
    let poll_all = |futs: &mut Vec<Option<Pin<Box<_>>>>| {
        for slot in futs.iter_mut().rev() {
            if let Some(f) = slot {
                if poll(Pin::as_mut(f)).is_ready() {
                    *slot = None;
                }
            }
        }
    };
    poll_all(&mut futs);
    assert_eq!(counts(&h), (1, 3));
    // A permit frees: it goes to 2, the head, before 2 is even polled...
    done[0].take().unwrap().send(()).unwrap();
    assert!(poll(futs[0].as_mut().unwrap().as_mut()).is_ready());
    futs[0] = None;
    // ...so a newcomer arriving now queues behind 3 and 4.
    let (e, e_done) = job(5);
    futs.push(Some(Box::pin(call(&mut svc, e).await)));
    done.push(Some(e_done));
    assert_eq!(counts(&h), (1, 3));
    // Polling newest first does not change who runs.
    poll_all(&mut futs);
    assert_eq!(probe.started(), [1, 2]);
    for d in done.iter_mut().skip(1) {
        d.take().unwrap().send(()).unwrap();
        poll_all(&mut futs);
        poll_all(&mut futs);
    }
    assert_eq!(probe.started(), [1, 2, 3, 4, 5]);
    assert_eq!(probe.peak(), 1);
    assert!(futs.iter().all(Option::is_none));
    assert_eq!(counts(&h), (0, 0));
}

#[tokio::test(start_paused = true)]
async fn a_queued_call_gives_up_after_max_wait() {
    let (mut svc, h, probe) = bulkhead(BulkheadConfig::new(1).with_queue(1, WAIT));
    let (a, _a_done) = job(1);
    let (b, _b_done) = job(2);
    let mut a = Box::pin(call(&mut svc, a).await);
    let mut b = Box::pin(call(&mut svc, b).await);
    assert!(poll(a.as_mut()).is_pending());
    assert!(poll(b.as_mut()).is_pending());
    advance(WAIT - Duration::from_millis(1)).await;
    assert!(poll(b.as_mut()).is_pending());
    advance(Duration::from_millis(1)).await;
    let err = refused(&mut b, "should have given up");
    assert!(bulkhead_full(&err).was_queued());
    assert_eq!(counts(&h), (1, 0));
    assert_eq!(h.snapshot().rejected, 1);
    assert_eq!(probe.started(), [1]);
}

#[tokio::test(start_paused = true)]
async fn a_queued_call_gives_up_when_its_deadline_passes() {
    let (mut svc, h, probe) =
        bulkhead(BulkheadConfig::new(1).with_queue(3, Duration::from_secs(1)));
    let now = Instant::now();
    let (a, _a_done) = job(1);
    let (mut soon, _s) = job(2);
    soon.deadline = Some(Deadline::after(now, Duration::from_millis(30)));
    let (mut late, _l) = job(3);
    late.deadline = Some(Deadline::after(now, Duration::from_secs(5)));
    let (mut passed, _p) = job(4);
    passed.deadline = Some(Deadline::new(now, now));

    let mut a = Box::pin(call(&mut svc, a).await);
    let mut soon = Box::pin(call(&mut svc, soon).await);
    let mut late = Box::pin(call(&mut svc, late).await);
    let mut passed = Box::pin(call(&mut svc, passed).await);
    assert!(poll(a.as_mut()).is_pending());
    assert!(poll(soon.as_mut()).is_pending());
    assert!(poll(late.as_mut()).is_pending());
    // Already too late: not queued at all.
    let err = refused(&mut passed, "a passed deadline is refused at once");
    assert_eq!(
        *err.downcast_ref::<Elapsed>().unwrap(),
        Elapsed::new(Scope::Total, Cause::Deadline)
    );
    assert_eq!(counts(&h), (1, 2));

    advance(Duration::from_millis(30)).await;
    let err = refused(&mut soon, "should have given up at the deadline");
    assert_eq!(
        *err.downcast_ref::<Elapsed>().unwrap(),
        Elapsed::new(Scope::Total, Cause::Deadline)
    );
    assert!(poll(late.as_mut()).is_pending());
    // The deadline is later than `max_wait`: `max_wait` decides.
    advance(Duration::from_millis(970)).await;
    let err = refused(&mut late, "should have given up after max_wait");
    assert!(bulkhead_full(&err).was_queued());
    assert_eq!(h.snapshot().rejected, 3);
    assert_eq!(probe.started(), [1]);
}

#[tokio::test(start_paused = true)]
async fn growing_wakes_queued_calls() {
    let (mut svc, h, probe) = bulkhead(BulkheadConfig::new(1).with_queue(4, WAIT));
    let mut done = Vec::new();
    let mut futs = Vec::new();
    for id in 1..=4 {
        let (j, tx) = job(id);
        futs.push(Box::pin(call(&mut svc, j).await));
        done.push(tx);
    }
    for f in &mut futs {
        assert!(poll(f.as_mut()).is_pending());
    }
    assert_eq!(counts(&h), (1, 3));
    h.resize(3);
    assert_eq!(counts(&h), (3, 1));
    for f in &mut futs {
        assert!(poll(f.as_mut()).is_pending());
    }
    assert_eq!(probe.started(), [1, 2, 3]);
    assert_eq!(h.snapshot().max_concurrent, 3);
}

#[tokio::test(start_paused = true)]
async fn shrinking_lets_running_calls_finish_then_enforces() {
    let (mut svc, h, probe) =
        bulkhead(BulkheadConfig::new(3).with_queue(4, Duration::from_secs(10)));
    let mut done = Vec::new();
    let mut futs = Vec::new();
    for id in 1..=3 {
        let (j, tx) = job(id);
        futs.push(Box::pin(call(&mut svc, j).await));
        done.push(tx);
    }
    for f in &mut futs {
        assert!(poll(f.as_mut()).is_pending());
    }
    h.resize(1);
    assert_eq!(counts(&h), (3, 0), "running calls keep their permits");
    let (d, d_done) = job(4);
    let mut d = Box::pin(call(&mut svc, d).await);
    assert!(poll(d.as_mut()).is_pending());
    assert_eq!(counts(&h), (3, 1));
    // Two finish: still at the new limit of one, nothing starts.
    for f in futs.iter_mut().take(2) {
        done.remove(0).send(()).unwrap();
        assert!(poll(f.as_mut()).is_ready());
        assert!(poll(d.as_mut()).is_pending());
    }
    assert_eq!(counts(&h), (1, 1));
    assert_eq!(probe.started(), [1, 2, 3]);
    done.remove(0).send(()).unwrap();
    assert!(poll(futs[2].as_mut()).is_ready());
    assert!(poll(d.as_mut()).is_pending());
    assert_eq!(probe.started(), [1, 2, 3, 4]);
    assert_eq!(counts(&h), (1, 0));
    // And the new limit holds for newcomers.
    let (e, _e_done) = job(5);
    let mut e = Box::pin(call(&mut svc, e).await);
    assert!(poll(e.as_mut()).is_pending());
    assert_eq!(counts(&h), (1, 1));
    d_done.send(()).unwrap();
    assert!(poll(d.as_mut()).is_ready());
    assert!(poll(e.as_mut()).is_pending());
    assert_eq!(probe.started(), [1, 2, 3, 4, 5]);
}

#[tokio::test(start_paused = true)]
async fn shrinking_without_a_queue_refuses_until_below_the_new_limit() {
    let (mut svc, h, _probe) = bulkhead(BulkheadConfig::new(2));
    let (a, a_done) = job(1);
    let (b, _b_done) = job(2);
    let mut a = Box::pin(call(&mut svc, a).await);
    let _b = call(&mut svc, b).await;
    h.resize(1);
    let (c, _c_done) = job(3);
    assert!(call(&mut svc, c).await.await.is_err());
    a_done.send(()).unwrap();
    assert!(poll(a.as_mut()).is_ready());
    let (d, _d_done) = job(4);
    assert!(
        call(&mut svc, d).await.await.is_err(),
        "one still running, new limit one"
    );
}

fn by_key() -> crate::keyed::PartitionFn<fn(&Job) -> Option<&'static str>> {
    partition_fn(|job: &Job| job.key)
}

#[tokio::test(start_paused = true)]
async fn each_key_has_its_own_partition() {
    let probe = Probe::default();
    let layer = BulkheadLayer::new(BulkheadConfig::new(1)).with_partition(by_key());
    let h = layer.handle();
    let mut svc = layer.layer(inner(&probe));

    let (a1, _a1) = keyed_job(1, "a");
    let (a2, _a2) = keyed_job(2, "a");
    let (b1, _b1) = keyed_job(3, "b");
    let (u1, _u1) = job(4);
    let (u2, _u2) = job(5);
    let _a1 = call(&mut svc, a1).await;
    assert!(call(&mut svc, a2).await.await.is_err(), "a is full");
    let mut b1 = Box::pin(call(&mut svc, b1).await);
    assert!(
        poll(b1.as_mut()).is_pending(),
        "a full partition does not affect b"
    );
    let mut u1 = Box::pin(call(&mut svc, u1).await);
    assert!(poll(u1.as_mut()).is_pending(), "nor the unkeyed one");
    assert!(
        call(&mut svc, u2).await.await.is_err(),
        "the unkeyed partition has its own limit"
    );
    let s = h.snapshot();
    assert_eq!((s.running, s.partitions, s.rejected), (3, 2, 2));
    assert_eq!(probe.started(), [1, 3, 4]);
}

#[tokio::test(start_paused = true)]
async fn new_keys_share_the_overflow_partition_once_the_map_is_full() {
    let probe = Probe::default();
    let config = BulkheadConfig::new(1).with_keys(KeyedConfig {
        max_keys: 1,
        idle_timeout: Duration::from_secs(60),
    });
    let layer = BulkheadLayer::new(config).with_partition(by_key());
    let h = layer.handle();
    let mut svc = layer.layer(inner(&probe));

    let (a, _a) = keyed_job(1, "a");
    let (b, b_done) = keyed_job(2, "b");
    let (c, _c) = keyed_job(3, "c");
    let _a = call(&mut svc, a).await;
    let mut b = Box::pin(call(&mut svc, b).await);
    assert!(
        poll(b.as_mut()).is_pending(),
        "b runs in the overflow partition"
    );
    assert!(
        call(&mut svc, c).await.await.is_err(),
        "c shares the overflow partition with b"
    );
    assert_eq!(h.snapshot().partitions, 1);
    b_done.send(()).unwrap();
    assert!(poll(b.as_mut()).is_ready());
    let (c, _c) = keyed_job(4, "c");
    let mut c = Box::pin(call(&mut svc, c).await);
    assert!(poll(c.as_mut()).is_pending());
    assert_eq!(probe.started(), [1, 2, 4]);
}

#[tokio::test(start_paused = true)]
async fn reconfigure_applies_to_every_partition() {
    let probe = Probe::default();
    let layer = BulkheadLayer::new(BulkheadConfig::new(1)).with_partition(by_key());
    let h = layer.handle();
    let mut svc = layer.layer(inner(&probe));
    let mut held = Vec::new();
    for (id, key) in [(1, Some("a")), (2, None)] {
        let (mut j, tx) = job(id);
        j.key = key;
        held.push((Box::pin(call(&mut svc, j).await), tx));
    }
    h.reconfigure(BulkheadConfig::new(2));
    for (id, key) in [(3, Some("a")), (4, None)] {
        let (mut j, tx) = job(id);
        j.key = key;
        let mut f = Box::pin(call(&mut svc, j).await);
        assert!(
            poll(f.as_mut()).is_pending(),
            "{key:?} has room for a second call"
        );
        held.push((f, tx));
    }
    assert_eq!(probe.started(), [1, 2, 3, 4]);
    assert_eq!(h.snapshot().max_concurrent, 2);
    // And a third is refused in each.
    for (id, key) in [(5, Some("a")), (6, None)] {
        let (mut j, _tx) = job(id);
        j.key = key;
        assert!(
            call(&mut svc, j).await.await.is_err(),
            "{key:?} is full at two"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn observe_mode_lets_everything_through_and_counts() {
    let config = BulkheadConfig::new(1)
        .with_queue(1, WAIT)
        .with_mode(Mode::Observe);
    let (mut svc, h, probe) = bulkhead(config);
    let mut held = Vec::new();
    for id in 1..=4 {
        let (j, tx) = job(id);
        let mut f = Box::pin(call(&mut svc, j).await);
        assert!(poll(f.as_mut()).is_pending());
        held.push((f, tx));
    }
    assert_eq!(probe.started(), [1, 2, 3, 4]);
    assert_eq!(probe.peak(), 4);
    let s = h.snapshot();
    // One runs with the permit, one stands in for the queue place, two would have
    // been refused.
    assert_eq!(
        (s.running, s.queued, s.rejected, s.would_reject),
        (1, 0, 0, 2)
    );
    // Nothing waits, even past `max_wait`.
    advance(WAIT * 2).await;
    for (f, tx) in held.drain(..) {
        tx.send(()).unwrap();
        let mut f = f;
        assert!(matches!(poll(f.as_mut()), Poll::Ready(Ok(_))));
    }
    assert_eq!(counts(&h), (0, 0));

    // Back to enforcing: refusals are real again.
    h.reconfigure(BulkheadConfig::new(1));
    let (a, _a) = job(5);
    let (b, _b) = job(6);
    let _a = call(&mut svc, a).await;
    assert!(call(&mut svc, b).await.await.is_err());
    assert_eq!(h.snapshot().rejected, 1);
}

#[tokio::test(start_paused = true)]
async fn one_layer_is_one_state_for_every_service_it_makes() {
    let probe = Probe::default();
    let layer = BulkheadLayer::new(BulkheadConfig::new(1));
    let mut first = layer.layer(inner(&probe));
    let mut second = layer.layer(inner(&probe));
    let (a, _a) = job(1);
    let (b, _b) = job(2);
    let _a = call(&mut first, a).await;
    assert!(call(&mut second, b).await.await.is_err());
}

#[tokio::test(start_paused = true)]
async fn disabled_is_a_pass_through_of_the_same_type() {
    let probe = Probe::default();
    let layer = BulkheadLayer::from_config(None);
    assert!(!layer.is_enabled());
    let h = layer.handle();
    let mut svc: Bulkhead<Inner> = layer.layer(inner(&probe));
    let mut held = Vec::new();
    for id in 1..=50 {
        let (j, tx) = job(id);
        let mut f = Box::pin(call(&mut svc, j).await);
        assert!(poll(f.as_mut()).is_pending());
        held.push((f, tx));
    }
    assert_eq!(probe.peak(), 50);
    h.resize(1);
    assert_eq!(h.snapshot(), super::BulkheadSnapshot::default());
}

#[tokio::test(start_paused = true)]
async fn a_queued_call_uses_the_readiness_it_was_given() {
    // The mock panics if called without `poll_ready` first: the ready instance must
    // travel with the queued call, a fresh clone stays behind.
    let (mock, mut upstream) = tower_test::mock::pair::<u32, u32>();
    upstream.allow(10);
    let mut svc = Bulkhead::new(mock, BulkheadConfig::new(1).with_queue(1, WAIT));
    let first = svc.ready().await.unwrap().call(1);
    let second = svc.ready().await.unwrap().call(2);
    let first = tokio::spawn(first);
    let second = tokio::spawn(second);
    let (req, respond) = upstream.next_request().await.unwrap();
    assert_eq!(req, 1);
    respond.send_response(10);
    assert_eq!(first.await.unwrap().unwrap(), 10);
    let (req, respond) = upstream.next_request().await.unwrap();
    assert_eq!(req, 2);
    respond.send_response(20);
    assert_eq!(second.await.unwrap().unwrap(), 20);
}

#[tokio::test(start_paused = true)]
async fn inner_errors_pass_through_and_release() {
    let svc = service_fn(|_: u32| async { Err::<u32, _>(BoxError::from("upstream failed")) });
    let mut svc = Bulkhead::new(svc, BulkheadConfig::new(1));
    let h = svc.handle();
    let err = svc.ready().await.unwrap().call(1).await.unwrap_err();
    assert_eq!(err.to_string(), "upstream failed");
    assert_eq!(counts(&h), (0, 0));
}

/// Polls the inner future at most `polls` times, then drops it.
struct Abandon<F> {
    fut: Pin<Box<F>>,
    polls: u32,
}

impl<F: Future> Future for Abandon<F> {
    type Output = Option<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if self.polls == 0 {
            return Poll::Ready(None);
        }
        self.polls -= 1;
        match self.fut.as_mut().poll(cx) {
            Poll::Ready(out) => Poll::Ready(Some(out)),
            Poll::Pending => Poll::Pending,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stress_never_exceeds_the_limit_and_returns_every_permit() {
    use crate::rand::{Random, SplitMix};

    const MAX: usize = 4;
    let active = Arc::new(AtomicUsize::new(0));
    let peak = Arc::new(AtomicUsize::new(0));
    let rng = Arc::new(SplitMix::seeded(42));
    let started = Arc::new(AtomicUsize::new(0));
    let svc = {
        let (active, peak, rng, started) =
            (active.clone(), peak.clone(), rng.clone(), started.clone());
        service_fn(move |_: u32| {
            started.fetch_add(1, Ordering::SeqCst);
            let now = active.fetch_add(1, Ordering::SeqCst) + 1;
            peak.fetch_max(now, Ordering::SeqCst);
            let guard = Active(active.clone());
            let spins = rng.next_u64() % 8;
            async move {
                let _guard = guard;
                for _ in 0..spins {
                    tokio::task::yield_now().await;
                }
                Ok::<_, BoxError>(())
            }
        })
    };
    let layer =
        BulkheadLayer::new(BulkheadConfig::new(MAX).with_queue(32, Duration::from_millis(20)));
    let h = layer.handle();
    let svc = layer.layer(svc);

    // Callers making calls one after another: more of them than permits and queue
    // places, so calls run, queue, time out and are refused; a quarter are dropped
    // before their first poll and a quarter after a few polls, and some callers are
    // aborted mid-call.
    const CALLERS: u32 = 64;
    const CALLS: u32 = 60;
    let served = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for caller in 0..CALLERS {
        let mut svc = svc.clone();
        let (rng, served, refused) = (rng.clone(), served.clone(), refused.clone());
        tasks.push(tokio::spawn(async move {
            for i in 0..CALLS {
                let polls = match rng.next_u64() % 4 {
                    0 => 0,
                    1 => 1 + (rng.next_u64() % 4) as u32,
                    _ => u32::MAX,
                };
                let fut = svc.ready().await.unwrap().call(caller * CALLS + i);
                match (Abandon {
                    fut: Box::pin(fut),
                    polls,
                })
                .await
                {
                    Some(Ok(())) => served.fetch_add(1, Ordering::SeqCst),
                    Some(Err(_)) => refused.fetch_add(1, Ordering::SeqCst),
                    None => 0,
                };
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(1)).await;
    for task in tasks.iter().step_by(7) {
        task.abort();
    }
    for t in tasks {
        let _ = t.await;
    }
    let (served, refused) = (
        served.load(Ordering::SeqCst),
        refused.load(Ordering::SeqCst),
    );
    assert!(
        served > 0 && refused > 0,
        "served {served}, refused {refused}"
    );
    assert!(
        peak.load(Ordering::SeqCst) <= MAX,
        "peak {}",
        peak.load(Ordering::SeqCst)
    );
    assert!(
        peak.load(Ordering::SeqCst) >= 2,
        "the test never ran calls concurrently"
    );
    assert_eq!(active.load(Ordering::SeqCst), 0);
    assert_eq!(counts(&h), (0, 0));
    // Every permit is back: MAX calls go through the fast path at once.
    let mut svc = svc;
    let mut held = Vec::new();
    for i in 0..MAX as u32 {
        held.push(svc.ready().await.unwrap().call(i));
    }
    assert_eq!(counts(&h), (MAX, 0));
}

#[cfg(feature = "serde")]
#[test]
fn config_reads_from_a_file_with_defaults_for_what_is_left_out() {
    let config: BulkheadConfig = serde_json::from_str(
        r#"{ "max_concurrent": 16, "queue": { "size": 32, "max_wait": "250ms" }, "mode": "observe" }"#,
    )
    .unwrap();
    assert_eq!(
        config,
        BulkheadConfig::new(16)
            .with_queue(32, Duration::from_millis(250))
            .with_mode(Mode::Observe)
    );
    let only_size: BulkheadConfig = serde_json::from_str(r#"{ "queue": { "size": 8 } }"#).unwrap();
    assert_eq!(only_size.queue.max_wait, Duration::from_millis(100));
    assert_eq!(only_size.max_concurrent, 100);
    assert!(serde_json::from_str::<BulkheadConfig>(r#"{ "max_concurent": 1 }"#).is_err());
}

mod hold {
    use super::*;
    use crate::hold::testing::{KeepInResponse, Kept};

    fn answering() -> impl Service<
        (),
        Response = Kept,
        Error = BoxError,
        Future = impl Future<Output = Result<Kept, BoxError>> + Send,
    > + Clone {
        service_fn(|_: ()| async { Ok::<_, BoxError>(Kept::default()) })
    }

    #[tokio::test(start_paused = true)]
    async fn a_held_permit_lasts_as_long_as_the_response() {
        let layer = BulkheadLayer::new(BulkheadConfig::new(1)).with_hold(KeepInResponse);
        let handle = layer.handle();
        let mut svc = layer.layer(answering());

        let first = svc.ready().await.unwrap().call(()).await.unwrap();
        assert_eq!(first.guards.len(), 1);
        assert_eq!(handle.snapshot().running, 1);
        // The answer's head is out, but it still holds the only permit.
        let err = svc.ready().await.unwrap().call(()).await.err().unwrap();
        assert!(err.downcast_ref::<BulkheadFull>().is_some(), "{err}");

        drop(first);
        assert_eq!(handle.snapshot().running, 0);
        let second = svc.ready().await.unwrap().call(()).await.unwrap();
        assert_eq!(handle.snapshot().running, 1);
        drop(second);
        assert_eq!(handle.snapshot().running, 0);
        assert_eq!(handle.snapshot().rejected, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn dropping_a_held_permit_grants_a_queued_call() {
        let layer =
            BulkheadLayer::new(BulkheadConfig::new(1).with_queue(1, Duration::from_secs(10)))
                .with_hold(KeepInResponse);
        let handle = layer.handle();
        let mut svc = layer.layer(answering());

        let first = svc.ready().await.unwrap().call(()).await.unwrap();
        let queued = tokio::spawn(svc.ready().await.unwrap().call(()));
        tokio::task::yield_now().await;
        assert_eq!(
            (handle.snapshot().running, handle.snapshot().queued),
            (1, 1)
        );
        advance(Duration::from_secs(1)).await;
        assert!(!queued.is_finished());

        drop(first);
        let second = queued.await.unwrap().unwrap();
        assert_eq!(second.guards.len(), 1);
        assert_eq!(
            (handle.snapshot().running, handle.snapshot().queued),
            (1, 0)
        );
        drop(second);
        assert_eq!(handle.snapshot().running, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_call_releases_its_permit_at_once() {
        let layer = BulkheadLayer::new(BulkheadConfig::new(1)).with_hold(KeepInResponse);
        let handle = layer.handle();
        let mut svc = layer.layer(service_fn(|fail: bool| async move {
            if fail {
                Err::<Kept, BoxError>("boom".into())
            } else {
                Ok(Kept::default())
            }
        }));
        assert!(svc.ready().await.unwrap().call(true).await.is_err());
        assert_eq!(handle.snapshot().running, 0);
        assert!(svc.ready().await.unwrap().call(false).await.is_ok());
        assert_eq!(handle.snapshot().rejected, 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_disabled_layer_hands_nothing_to_hold() {
        let layer = BulkheadLayer::disabled().with_hold(KeepInResponse);
        let mut svc = layer.layer(answering());
        let answer = svc.ready().await.unwrap().call(()).await.unwrap();
        assert!(answer.guards.is_empty());
    }
}
