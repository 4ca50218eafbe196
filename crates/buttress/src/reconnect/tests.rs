use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, advance};
use tower::{Layer, Service, ServiceExt};

use super::error::Reconnecting;
use super::{Reconnect, ReconnectConfig, ReconnectLayer};
use crate::backoff::{Backoff, Jitter};
use crate::budget::{Budget, BudgetConfig};
use crate::rand::Rng;
use crate::util::lock;

const MS: Duration = Duration::from_millis(1);

/// A fake network: whether the server accepts connections, a generation that
/// kills every connection made before it moved, and the instants of every attempt.
#[derive(Clone, Default)]
struct Net {
    inner: Arc<Mutex<NetState>>,
}

#[derive(Default)]
struct NetState {
    down: bool,
    generation: u64,
    connect_delay: Duration,
    attempts: Vec<Instant>,
}

impl Net {
    fn set_down(&self, down: bool) {
        lock(&self.inner).down = down;
    }

    /// Cuts every established connection.
    fn cut(&self) {
        lock(&self.inner).generation += 1;
    }

    fn set_connect_delay(&self, d: Duration) {
        lock(&self.inner).connect_delay = d;
    }

    fn attempts(&self) -> Vec<Instant> {
        lock(&self.inner).attempts.clone()
    }

    fn connector(&self) -> Connector {
        Connector(self.clone())
    }
}

struct Connector(Net);

type ConnectFuture = Pin<Box<dyn Future<Output = Result<Conn, io::Error>> + Send>>;

impl Service<u16> for Connector {
    type Response = Conn;
    type Error = io::Error;
    type Future = ConnectFuture;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), io::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, port: u16) -> ConnectFuture {
        let net = self.0.clone();
        Box::pin(async move {
            let delay = {
                let mut s = lock(&net.inner);
                s.attempts.push(Instant::now());
                s.connect_delay
            };
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            let s = lock(&net.inner);
            if s.down {
                return Err(io::Error::new(
                    io::ErrorKind::ConnectionRefused,
                    format!("port {port}: refused"),
                ));
            }
            Ok(Conn {
                net: net.clone(),
                generation: s.generation,
            })
        })
    }
}

/// A connection: answers (its generation, the request); fails once cut.
struct Conn {
    net: Net,
    generation: u64,
}

impl Service<u32> for Conn {
    type Response = (u64, u32);
    type Error = io::Error;
    type Future = std::future::Ready<Result<(u64, u32), io::Error>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), io::Error>> {
        if lock(&self.net.inner).generation == self.generation {
            Poll::Ready(Ok(()))
        } else {
            Poll::Ready(Err(io::Error::from(io::ErrorKind::ConnectionReset)))
        }
    }

    fn call(&mut self, x: u32) -> Self::Future {
        std::future::ready(Ok((self.generation, x)))
    }
}

fn no_jitter(base: Duration, max: Duration) -> ReconnectConfig {
    ReconnectConfig::default()
        .with_backoff(Backoff::exponential(base, max).with_jitter(Jitter::None))
}

/// Polls `svc` for readiness once, without waiting.
fn poll_ready_now<S: Service<u32>>(svc: &mut S) -> Poll<Result<(), S::Error>> {
    let waker = futures_noop_waker();
    svc.poll_ready(&mut Context::from_waker(&waker))
}

fn futures_noop_waker() -> std::task::Waker {
    std::task::Waker::noop().clone()
}

#[tokio::test(start_paused = true)]
async fn connects_on_first_use_and_serves_calls() {
    let net = Net::default();
    let layer = ReconnectLayer::new(ReconnectConfig::default(), 5432);
    let handle = layer.handle();
    let mut svc = layer.layer(net.connector());
    assert!(
        net.attempts().is_empty(),
        "no connection before the first use"
    );
    assert!(!handle.snapshot().connected);
    assert_eq!(svc.ready().await.unwrap().call(7).await.unwrap(), (0, 7));
    assert_eq!(svc.ready().await.unwrap().call(8).await.unwrap(), (0, 8));
    assert_eq!(net.attempts().len(), 1);
    let s = handle.snapshot();
    assert!(s.connected);
    assert_eq!((s.connections, s.connects, s.total_attempts), (1, 1, 1));
    assert!(svc.is_connected());
}

#[tokio::test(start_paused = true)]
async fn a_lost_connection_comes_back_after_spaced_capped_attempts() {
    let net = Net::default();
    let layer = ReconnectLayer::new(no_jitter(10 * MS, 40 * MS), 5432);
    let handle = layer.handle();
    let mut svc = layer.layer(net.connector());
    svc.ready().await.unwrap().call(1).await.unwrap();

    net.set_down(true);
    net.cut();
    let lost_at = Instant::now();
    // A caller waits while the server stays down; bring it back after 200 ms.
    let caller = tokio::spawn(async move {
        let answer = svc.ready().await.unwrap().call(2).await.unwrap();
        (answer, Instant::now(), svc)
    });
    tokio::time::sleep(200 * MS).await;
    let s = handle.snapshot();
    assert!(!s.connected);
    assert_eq!(s.reconnecting_since, Some(lost_at));
    assert_eq!(s.disconnects, 1);
    assert!(
        s.last_error.as_deref().unwrap().contains("refused"),
        "{:?}",
        s.last_error
    );
    net.set_down(false);
    let ((generation, x), done, _svc) = caller.await.unwrap();
    assert_eq!((generation, x), (1, 2));

    // Attempt times after the loss: 10, +20, +40, then +40 capped...
    let gaps: Vec<Duration> = std::iter::once(lost_at)
        .chain(net.attempts().into_iter().skip(1))
        .collect::<Vec<_>>()
        .windows(2)
        .map(|w| w[1] - w[0])
        .collect();
    assert_eq!(&gaps[..4], &[10 * MS, 20 * MS, 40 * MS, 40 * MS]);
    assert!(gaps[3..].iter().all(|g| *g == 40 * MS), "{gaps:?}");
    // Failed attempts: those up to 200 ms (10, 30, 70, 110, 150, 190); the next, at
    // 230 ms, connects.
    assert_eq!(done - lost_at, 230 * MS);
    let s = handle.snapshot();
    assert!(s.connected);
    assert_eq!(s.failed_attempts, 6);
    assert_eq!(s.connects, 2);
    assert_eq!(
        (s.reconnecting_since, s.attempts, s.last_error),
        (None, 0, None)
    );
}

#[tokio::test(start_paused = true)]
async fn the_handle_reports_attempts_and_the_next_one_during_an_outage() {
    let net = Net::default();
    net.set_down(true);
    let layer = ReconnectLayer::new(no_jitter(100 * MS, 1000 * MS), 5432);
    let handle = layer.handle();
    let mut svc = layer.layer(net.connector());
    let t0 = Instant::now();
    assert!(poll_ready_now(&mut svc).is_pending());
    let s = handle.snapshot();
    assert_eq!(s.attempts, 1);
    assert_eq!(
        s.reconnecting_since,
        Some(t0),
        "the first failed attempt starts the outage"
    );
    assert_eq!(s.next_attempt_at, Some(t0 + 100 * MS));
    advance(100 * MS).await;
    assert!(poll_ready_now(&mut svc).is_pending());
    let s = handle.snapshot();
    assert_eq!(s.attempts, 2);
    assert_eq!(s.next_attempt_at, Some(t0 + 300 * MS));
    assert_eq!(s.reconnecting_since, Some(t0));
}

#[tokio::test(start_paused = true)]
async fn fail_fast_refuses_calls_while_reconnecting() {
    let net = Net::default();
    let layer = ReconnectLayer::new(no_jitter(50 * MS, 50 * MS).with_fail_fast(true), 5432);
    let mut svc = layer.layer(net.connector());
    svc.ready().await.unwrap().call(1).await.unwrap();

    net.set_down(true);
    net.cut();
    let t0 = Instant::now();
    let err = svc.ready().await.unwrap().call(2).await.unwrap_err();
    assert_eq!(Instant::now(), t0, "refused at once");
    let r = err.downcast_ref::<Reconnecting>().unwrap();
    assert_eq!(r.since(), Some(t0));
    assert_eq!(r.attempts(), 0);
    assert_eq!(r.retry_after(), 50 * MS);
    let source = std::error::Error::source(r).unwrap();
    assert_eq!(
        source.downcast_ref::<io::Error>().unwrap().kind(),
        io::ErrorKind::ConnectionReset
    );

    // While an attempt is under way (a slow connect), callers are refused too.
    net.set_connect_delay(30 * MS);
    advance(50 * MS).await;
    let err = svc.ready().await.unwrap().call(3).await.unwrap_err();
    assert!(err.is::<Reconnecting>());
    advance(30 * MS).await;
    let err = svc.ready().await.unwrap().call(4).await.unwrap_err();
    let r = err.downcast_ref::<Reconnecting>().unwrap();
    assert_eq!(r.attempts(), 1);
    assert!(
        std::error::Error::source(r)
            .unwrap()
            .to_string()
            .contains("refused")
    );

    // Back up: the call after the next attempt succeeds.
    net.set_down(false);
    advance(50 * MS).await;
    assert!(
        svc.ready()
            .await
            .unwrap()
            .call(5)
            .await
            .unwrap_err()
            .is::<Reconnecting>(),
        "attempt under way"
    );
    advance(30 * MS).await;
    assert_eq!(svc.ready().await.unwrap().call(6).await.unwrap(), (1, 6));
}

#[tokio::test(start_paused = true)]
async fn without_fail_fast_calls_wait_and_the_first_connect_is_not_an_outage() {
    let net = Net::default();
    net.set_connect_delay(20 * MS);
    let mut svc = Reconnect::new(
        net.connector(),
        5432,
        ReconnectConfig::default().with_fail_fast(true),
    );
    // Even failing fast, the first connection is waited for: nothing failed yet.
    let t0 = Instant::now();
    assert_eq!(svc.ready().await.unwrap().call(1).await.unwrap(), (0, 1));
    assert_eq!(Instant::now() - t0, 20 * MS);
}

#[tokio::test(start_paused = true)]
async fn the_budget_puts_attempts_off() {
    let net = Net::default();
    // One attempt per second: min_per_second 1 over 1 s.
    let budget = BudgetConfig {
        ratio: 0.0,
        min_per_second: 1,
        ttl: Duration::from_secs(1),
    };
    let layer = ReconnectLayer::new(no_jitter(10 * MS, 10 * MS).with_budget(budget), 5432);
    let handle = layer.handle();
    let mut svc = layer.layer(net.connector());
    svc.ready().await.unwrap().call(1).await.unwrap();
    net.set_down(true);
    net.cut();
    let waiter = tokio::spawn(async move {
        let _ = svc.ready().await.map(|_| ());
        svc
    });
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let s = handle.snapshot();
    // Without the budget: 250 attempts. With it: one per second (at 10 ms, 1.1 s,
    // 2.2 s, give or take the slot rounding).
    assert!((2..=3).contains(&s.failed_attempts), "{s:?}");
    assert!(s.budget_denied > 200, "{s:?}");
    assert_eq!(net.attempts().len() as u64, 1 + s.failed_attempts);
    net.set_down(false);
    let svc = waiter.await.unwrap();
    assert!(svc.is_connected());
}

#[tokio::test(start_paused = true)]
async fn a_shared_budget_counts_requests_deposited_elsewhere() {
    let net = Net::default();
    let budget = Budget::new(BudgetConfig {
        ratio: 1.0,
        min_per_second: 0,
        ttl: Duration::from_secs(10),
    });
    let layer = ReconnectLayer::new(no_jitter(10 * MS, 10 * MS), 5432).with_budget(budget.clone());
    let handle = layer.handle();
    let mut svc = layer.layer(net.connector());
    svc.ready().await.unwrap().call(1).await.unwrap();
    // Two requests seen by another layer sharing the budget: two reconnect attempts.
    budget.deposit(Instant::now());
    budget.deposit(Instant::now());
    net.set_down(true);
    net.cut();
    let waiter = tokio::spawn(async move {
        let _ = svc.ready().await.map(|_| ());
    });
    tokio::time::sleep(500 * MS).await;
    let s = handle.snapshot();
    assert_eq!(s.failed_attempts, 2, "{s:?}");
    assert!(s.budget_denied > 40, "{s:?}");
    assert_eq!(s.budget.unwrap().available, 0);
    waiter.abort();
}

#[tokio::test(start_paused = true)]
async fn an_idle_connection_is_replaced_before_the_next_call() {
    let net = Net::default();
    let layer = ReconnectLayer::new(
        ReconnectConfig::default().with_idle_timeout(Duration::from_secs(30)),
        5432,
    );
    let handle = layer.handle();
    let mut svc = layer.layer(net.connector());
    assert_eq!(svc.ready().await.unwrap().call(1).await.unwrap(), (0, 1));
    advance(Duration::from_secs(29)).await;
    svc.ready().await.unwrap().call(2).await.unwrap();
    assert_eq!(net.attempts().len(), 1, "used within the timeout: kept");
    advance(Duration::from_secs(31)).await;
    let t0 = Instant::now();
    svc.ready().await.unwrap().call(3).await.unwrap();
    assert_eq!(Instant::now(), t0, "replaced at once, without backoff");
    assert_eq!(net.attempts().len(), 2);
    let s = handle.snapshot();
    assert_eq!((s.connects, s.disconnects, s.failed_attempts), (2, 0, 0));
    assert!(s.connected);
}

#[tokio::test(start_paused = true)]
async fn a_pass_through_layer_behaves_like_towers_reconnect() {
    let net = Net::default();
    net.set_down(true);
    let layer = ReconnectLayer::from_config(None, 5432);
    let handle = layer.handle();
    let mut svc = layer.layer(net.connector());
    // The connect error itself goes to the caller.
    let err = svc.ready().await.unwrap().call(1).await.unwrap_err();
    assert_eq!(
        err.downcast_ref::<io::Error>().unwrap().kind(),
        io::ErrorKind::ConnectionRefused
    );
    net.set_down(false);
    // And the next call connects at once.
    let t0 = Instant::now();
    assert_eq!(svc.ready().await.unwrap().call(2).await.unwrap(), (0, 2));
    net.cut();
    assert_eq!(svc.ready().await.unwrap().call(3).await.unwrap(), (1, 3));
    assert_eq!(Instant::now(), t0, "no backoff");
    let s = handle.snapshot();
    assert!(!s.enabled);
    assert_eq!((s.connects, s.failed_attempts, s.disconnects), (2, 1, 1));
}

#[tokio::test(start_paused = true)]
async fn reconfigure_applies_to_running_services() {
    let net = Net::default();
    let layer = ReconnectLayer::from_config(None, 5432);
    let handle = layer.handle();
    let mut svc = layer.layer(net.connector());
    svc.ready().await.unwrap().call(1).await.unwrap();
    handle.reconfigure(no_jitter(10 * MS, 10 * MS).with_fail_fast(true));
    net.set_down(true);
    net.cut();
    let err = svc.ready().await.unwrap().call(2).await.unwrap_err();
    assert!(err.is::<Reconnecting>());
    let s = handle.snapshot();
    assert!(s.enabled && s.config.fail_fast);
}

#[tokio::test(start_paused = true)]
async fn a_layer_reports_every_service_it_made() {
    let (a, b) = (Net::default(), Net::default());
    let layer = ReconnectLayer::new(no_jitter(10 * MS, 10 * MS), 5432);
    let handle = layer.handle();
    let mut sa = layer.layer(a.connector());
    let mut sb = layer.layer(b.connector());
    sa.ready().await.unwrap().call(1).await.unwrap();
    let s = handle.snapshot();
    assert_eq!(
        (s.connections, s.connected_count, s.connected),
        (2, 1, false)
    );
    sb.ready().await.unwrap().call(1).await.unwrap();
    assert!(handle.snapshot().connected);
    b.set_down(true);
    b.cut();
    assert!(poll_ready_now(&mut sb).is_pending());
    let s = handle.snapshot();
    assert!(!s.connected);
    assert!(s.reconnecting_since.is_some());
    drop(sb);
    let s = handle.snapshot();
    assert_eq!((s.connections, s.connected), (1, true));
    assert_eq!(s.reconnecting_since, None);
}

#[tokio::test(start_paused = true)]
async fn jitter_is_reproducible_for_a_seed() {
    async fn attempt_times(seed: u64) -> Vec<Duration> {
        let net = Net::default();
        net.set_down(true);
        let config = ReconnectConfig::default().with_backoff(
            Backoff::exponential(10 * MS, Duration::from_secs(1)).with_jitter(Jitter::Full),
        );
        let layer = ReconnectLayer::new(config, 5432).with_rng(Rng::seeded(seed));
        let mut svc = layer.layer(net.connector());
        let t0 = Instant::now();
        let driver = tokio::spawn(async move {
            let _ = svc.ready().await;
        });
        tokio::time::sleep(Duration::from_secs(3)).await;
        driver.abort();
        net.attempts().into_iter().map(|t| t - t0).collect()
    }
    let a = attempt_times(5).await;
    assert!(a.len() > 5);
    assert_eq!(a, attempt_times(5).await);
    assert_ne!(a, attempt_times(6).await);
}
