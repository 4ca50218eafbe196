//! One value that describes a whole stack.
//!
//! A [`Policy`] is plain data (serde behind the `serde` feature): the generic settings
//! of every layer, `None` where a layer is off. It builds the canonical stack as one
//! layer, in the order that makes the layers work together:
//!
//! - client ([`Policy::client_layer`]): total timeout -> retry -> hedge -> throttle ->
//!   breaker -> bulkhead -> attempt timeout -> (chaos) -> transport;
//! - server ([`Policy::server_layer`]): shed -> bulkhead -> timeout -> (chaos) ->
//!   handler.
//!
//! The total timeout bounds everything, retries included; retry sits above the
//! breaker and bulkhead so a refused attempt can be retried, and above the attempt
//! timeout so a hung attempt is cut short in time for another; hedges share the retry
//! budget. On a server, shedding comes first so an overloaded server refuses early and
//! cheaply. (Balance takes its place between throttle and breaker when it lands.)
//!
//! The HTTP crate's `HttpPolicy` builds the same stacks with the HTTP classifier,
//! replayable bodies and, on the server, shed and bulkhead permits held until a
//! streamed body ends ([`Policy::client_layer_with`], [`Policy::server_layer_parts`]).
//!
//! A disabled layer is a pass-through value, not another type, so every stack built
//! from a policy has one concrete type whatever is enabled: choosing a policy per
//! route or per request is a lookup and a dispatch to a prebuilt stack, with no boxing.
//! The state of every stateful layer (budgets, breaker windows, limits, permits) is created
//! when the layer is built and shared by every service it makes; reach it through
//! [`ClientLayer::handles`] / [`ServerLayer::handles`].
//!
//! # Example
//!
//! ```
//! use std::time::Duration;
//! use buttress::Policy;
//! use buttress::bulkhead::BulkheadConfig;
//! use tower::{Service, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), tower::BoxError> {
//! let policy = Policy::default()
//!     .with_timeout(Duration::from_secs(1))
//!     .with_bulkhead(BulkheadConfig { max_concurrent: 8, ..Default::default() });
//! let layer = policy.server_layer();
//! let mut svc = tower::ServiceBuilder::new()
//!     .layer(layer.clone())
//!     .service(service_fn(|req: String| async move { Ok::<_, tower::BoxError>(req.len()) }));
//! assert_eq!(svc.ready().await?.call("hello".to_string()).await?, 5);
//! assert_eq!(layer.handles().bulkhead.unwrap().snapshot().max_concurrent, 8);
//! # Ok(())
//! # }
//! ```

use std::task::{Context, Poll};
use std::time::Duration;

use tower_layer::Layer;
use tower_service::Service;

use crate::breaker::{Breaker, BreakerBuilder, BreakerConfig, BreakerHandle, BreakerLayer};
use crate::bulkhead::{Bulkhead, BulkheadConfig, BulkheadHandle, BulkheadLayer};
use crate::chaos::{Chaos, ChaosConfig, ChaosHandle, ChaosLayer};
use crate::classify::DefaultClassify;
use crate::hedge::{Hedge, HedgeConfig, HedgeHandle, HedgeLayer};
use crate::hold::ReleaseAtHead;
use crate::keyed::{Global, KeyedConfig};
use crate::rejection::Scope;
use crate::replay::CloneReplay;
use crate::retry::{Retry, RetryConfig, RetryHandle, RetryLayer};
use crate::shed::{Shed, ShedConfig, ShedHandle, ShedLayer};
use crate::throttle::{Throttle, ThrottleConfig, ThrottleHandle, ThrottleLayer};
use crate::timeout::{Timeout, TimeoutLayer};
use crate::{BoxError, RequestMeta};

/// The generic settings of a whole stack; `None` turns a layer off.
#[derive(Debug, Clone, Default, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
#[non_exhaustive]
pub struct Policy {
    /// Total timeout, across attempts (outermost).
    #[cfg_attr(
        feature = "serde",
        serde(
            with = "crate::duration::serde::option",
            skip_serializing_if = "Option::is_none"
        )
    )]
    pub timeout: Option<Duration>,
    /// Timeout of one attempt (client stacks, below retry).
    #[cfg_attr(
        feature = "serde",
        serde(
            with = "crate::duration::serde::option",
            skip_serializing_if = "Option::is_none"
        )
    )]
    pub attempt_timeout: Option<Duration>,
    /// Retries with backoff within a shared budget (client stacks).
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub retry: Option<RetryConfig>,
    /// Hedged requests, drawing on the retry budget when retry is on (client stacks).
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub hedge: Option<HedgeConfig>,
    /// Client-side adaptive throttling (client stacks).
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub throttle: Option<ThrottleConfig>,
    /// Circuit breaker (client stacks).
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub breaker: Option<BreakerConfig>,
    /// Concurrency limit with an optional bounded queue.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub bulkhead: Option<BulkheadConfig>,
    /// Adaptive load shedding (server stacks).
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub shed: Option<ShedConfig>,
    /// Fault injection, off unless configured.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub chaos: Option<ChaosConfig>,
}

impl Policy {
    /// Sets the total timeout.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Sets the attempt timeout.
    #[must_use]
    pub fn with_attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = Some(timeout);
        self
    }

    /// Sets retries.
    #[must_use]
    pub fn with_retry(mut self, retry: RetryConfig) -> Self {
        self.retry = Some(retry);
        self
    }

    /// Sets hedging.
    #[must_use]
    pub fn with_hedge(mut self, hedge: HedgeConfig) -> Self {
        self.hedge = Some(hedge);
        self
    }

    /// Sets client-side throttling.
    #[must_use]
    pub fn with_throttle(mut self, throttle: ThrottleConfig) -> Self {
        self.throttle = Some(throttle);
        self
    }

    /// Sets the circuit breaker.
    #[must_use]
    pub fn with_breaker(mut self, breaker: BreakerConfig) -> Self {
        self.breaker = Some(breaker);
        self
    }

    /// Sets the bulkhead.
    #[must_use]
    pub fn with_bulkhead(mut self, bulkhead: BulkheadConfig) -> Self {
        self.bulkhead = Some(bulkhead);
        self
    }

    /// Sets load shedding.
    #[must_use]
    pub fn with_shed(mut self, shed: ShedConfig) -> Self {
        self.shed = Some(shed);
        self
    }

    /// Sets fault injection.
    #[must_use]
    pub fn with_chaos(mut self, chaos: ChaosConfig) -> Self {
        self.chaos = Some(chaos);
        self
    }

    /// Builds the canonical client stack with the generic classifier, cloning replay
    /// and one partition of state, creating the state of its stateful layers.
    pub fn client_layer(&self) -> ClientLayer {
        self.client_layer_with(DefaultClassify, CloneReplay, Global)
    }

    /// Builds the canonical client stack with `classify` (read by retry, hedge,
    /// throttle and the breaker), `replay` (retry and hedge) and `partition` (one
    /// throttle window, breaker and bulkhead per key, e.g. per endpoint), creating the
    /// state of its stateful layers.
    pub fn client_layer_with<C, R, P>(
        &self,
        classify: C,
        replay: R,
        partition: P,
    ) -> ClientLayer<C, R, P>
    where
        C: Clone,
        R: Clone,
        P: Clone,
    {
        self.client_layer_parts(classify, replay.clone(), replay, partition)
    }

    /// Like [`client_layer_with`](Self::client_layer_with), with a replay strategy of
    /// its own for hedging: a hedge runs alongside the first attempt, so it may need a
    /// stricter strategy (the HTTP crate hedges a streaming body only once it is fully
    /// buffered, while a retry may replay what the first attempt streamed).
    pub fn client_layer_parts<C, R, H, P>(
        &self,
        classify: C,
        replay: R,
        hedge_replay: H,
        partition: P,
    ) -> ClientLayer<C, R, P, H>
    where
        C: Clone,
        P: Clone,
    {
        let retry = RetryLayer::from_config(self.retry)
            .with_attempt_timeout(self.attempt_timeout)
            .with_classify(classify.clone())
            .with_replay(replay);
        let hedge = HedgeLayer::from_config(self.hedge);
        let hedge = match retry.budget() {
            Some(budget) => hedge.with_budget(budget),
            None => hedge,
        }
        .with_classify(classify.clone())
        .with_replay(hedge_replay);
        let throttle = ThrottleLayer::from_config(self.throttle)
            .with_classify(classify.clone())
            .with_partition(partition.clone());
        let breaker = BreakerBuilder::from_config(self.breaker)
            .classify(classify)
            .partition(partition.clone(), KeyedConfig::default())
            .build();
        let bulkhead = BulkheadLayer::from_config(self.bulkhead.clone()).with_partition(partition);
        let chaos = ChaosLayer::from_config(self.chaos.clone());
        ClientLayer {
            handles: Handles {
                retry: retry.handle(),
                hedge: hedge.handle(),
                throttle: throttle.handle(),
                breaker: (!breaker.is_disabled()).then(|| breaker.handle()),
                bulkhead: self.bulkhead.as_ref().map(|_| bulkhead.handle()),
                shed: None,
                chaos: self.chaos.as_ref().map(|_| chaos.handle()),
            },
            total: TimeoutLayer::new(Scope::Total, self.timeout),
            retry,
            hedge,
            throttle,
            breaker,
            bulkhead,
            attempt: TimeoutLayer::new(Scope::Attempt, self.attempt_timeout),
            chaos,
        }
    }

    /// Builds the canonical server stack with the generic classifier, creating the
    /// state of its stateful layers.
    ///
    /// A server has one timeout: `timeout`. Client-side settings (`attempt_timeout`,
    /// `retry`, `hedge`, `throttle`, `breaker`) are not part of it.
    pub fn server_layer(&self) -> ServerLayer {
        self.server_layer_with(DefaultClassify)
    }

    /// Builds the canonical server stack with `classify` (read by the load shedder:
    /// overload answers from the handler count as drops). Shed and bulkhead permits
    /// are released at the response head.
    pub fn server_layer_with<C>(&self, classify: C) -> ServerLayer<C> {
        self.server_layer_parts(classify, ReleaseAtHead)
    }

    /// Like [`server_layer_with`](Self::server_layer_with), with `hold` taking the
    /// shed and bulkhead permits when the response head is ready (see
    /// [`hold`](crate::hold)): the HTTP crate keeps them until a streamed body ends,
    /// so a long answer still counts against the limits. The shed's round-trip sample
    /// is still taken at the head.
    pub fn server_layer_parts<C, H: Clone>(&self, classify: C, hold: H) -> ServerLayer<C, H> {
        let shed = ShedLayer::from_config(self.shed.clone())
            .with_classify(classify)
            .with_hold(hold.clone());
        let bulkhead = BulkheadLayer::from_config(self.bulkhead.clone()).with_hold(hold);
        let chaos = ChaosLayer::from_config(self.chaos.clone());
        ServerLayer {
            handles: Handles {
                retry: None,
                hedge: None,
                throttle: None,
                breaker: None,
                bulkhead: self.bulkhead.as_ref().map(|_| bulkhead.handle()),
                shed: shed.handle(),
                chaos: self.chaos.as_ref().map(|_| chaos.handle()),
            },
            shed,
            bulkhead,
            timeout: TimeoutLayer::new(Scope::Total, self.timeout),
            chaos,
        }
    }
}

/// Handles to the state of a stack's stateful layers (`None` for a layer that is off
/// or not part of the stack).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Handles {
    /// The retry layer's handle (and through it, the shared budget).
    pub retry: Option<RetryHandle>,
    /// The hedge layer's handle.
    pub hedge: Option<HedgeHandle>,
    /// The throttle's handle.
    pub throttle: Option<ThrottleHandle>,
    /// The breaker's handle.
    pub breaker: Option<BreakerHandle>,
    /// The bulkhead's handle.
    pub bulkhead: Option<BulkheadHandle>,
    /// The load shedder's handle (limit, queue, drain switch).
    pub shed: Option<ShedHandle>,
    /// The chaos layer's handle.
    pub chaos: Option<ChaosHandle>,
}

/// The canonical client stack of a [`Policy`], as one layer (`H` is the hedge's
/// replay strategy, by default the retry's).
#[derive(Debug, Clone)]
pub struct ClientLayer<C = DefaultClassify, R = CloneReplay, P = Global, H = R> {
    total: TimeoutLayer,
    retry: RetryLayer<C, R>,
    hedge: HedgeLayer<C, H>,
    throttle: ThrottleLayer<C, P>,
    breaker: BreakerLayer<C, P>,
    bulkhead: BulkheadLayer<P>,
    attempt: TimeoutLayer,
    chaos: ChaosLayer,
    handles: Handles,
}

impl<C, R, P, H> ClientLayer<C, R, P, H> {
    /// Handles to the stack's state.
    pub fn handles(&self) -> Handles {
        self.handles.clone()
    }
}

type ClientStack<S, C, R, P, H> = Timeout<
    Retry<Hedge<Throttle<Breaker<Bulkhead<Timeout<Chaos<S>>, P>, C, P>, C, P>, C, H>, C, R>,
>;

/// The service a [`ClientLayer`] makes.
#[derive(Debug, Clone)]
pub struct ClientService<S, C = DefaultClassify, R = CloneReplay, P = Global, H = R> {
    inner: ClientStack<S, C, R, P, H>,
}

impl<S, C: Clone, R: Clone, P: Clone, H: Clone> Layer<S> for ClientLayer<C, R, P, H> {
    type Service = ClientService<S, C, R, P, H>;

    fn layer(&self, inner: S) -> Self::Service {
        let chaos = self.chaos.layer(inner);
        let attempt = self.attempt.layer(chaos);
        let bulkhead = self.bulkhead.layer(attempt);
        let breaker = self.breaker.layer(bulkhead);
        let throttle = self.throttle.layer(breaker);
        let hedge = self.hedge.layer(throttle);
        let retry = self.retry.layer(hedge);
        ClientService {
            inner: self.total.layer(retry),
        }
    }
}

impl<S, C, R, P, H, Req> Service<Req> for ClientService<S, C, R, P, H>
where
    ClientStack<S, C, R, P, H>: Service<Req, Error = BoxError>,
    Req: RequestMeta,
{
    type Response = <ClientStack<S, C, R, P, H> as Service<Req>>::Response;
    type Error = BoxError;
    type Future = <ClientStack<S, C, R, P, H> as Service<Req>>::Future;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        self.inner.call(req)
    }
}

/// The canonical server stack of a [`Policy`], as one layer (`H` takes the shed and
/// bulkhead permits when the response head is ready; see
/// [`Policy::server_layer_parts`]).
#[derive(Debug, Clone)]
pub struct ServerLayer<C = DefaultClassify, H = ReleaseAtHead> {
    shed: ShedLayer<C, H>,
    bulkhead: BulkheadLayer<Global, H>,
    timeout: TimeoutLayer,
    chaos: ChaosLayer,
    handles: Handles,
}

impl<C, H> ServerLayer<C, H> {
    /// Handles to the stack's state.
    pub fn handles(&self) -> Handles {
        self.handles.clone()
    }
}

type ServerStack<S, C, H> = Shed<Bulkhead<Timeout<Chaos<S>>, Global, H>, C, H>;

/// The service a [`ServerLayer`] makes.
#[derive(Debug, Clone)]
pub struct ServerService<S, C = DefaultClassify, H = ReleaseAtHead> {
    inner: ServerStack<S, C, H>,
}

impl<S, C: Clone, H: Clone> Layer<S> for ServerLayer<C, H> {
    type Service = ServerService<S, C, H>;

    fn layer(&self, inner: S) -> Self::Service {
        let chaos = self.chaos.layer(inner);
        let timeout = self.timeout.layer(chaos);
        let bulkhead = self.bulkhead.layer(timeout);
        ServerService {
            inner: self.shed.layer(bulkhead),
        }
    }
}

impl<S, C, H, Req> Service<Req> for ServerService<S, C, H>
where
    ServerStack<S, C, H>: Service<Req, Error = BoxError>,
    Req: RequestMeta,
{
    type Response = <ServerStack<S, C, H> as Service<Req>>::Response;
    type Error = BoxError;
    type Future = <ServerStack<S, C, H> as Service<Req>>::Future;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        self.inner.call(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rejection::{BulkheadFull, Cause, Elapsed};
    use crate::{Deadline, WithDeadline};
    use tokio::time::Instant;
    use tower::{ServiceExt, service_fn};

    const MS: Duration = Duration::from_millis(1);

    fn sleepy(
        d: Duration,
    ) -> impl Service<
        WithDeadline<()>,
        Response = Option<Deadline>,
        Error = BoxError,
        Future = impl Send,
    > + Clone {
        service_fn(move |req: WithDeadline<()>| async move {
            tokio::time::sleep(d).await;
            Ok::<_, BoxError>(req.deadline())
        })
    }

    #[tokio::test(start_paused = true)]
    async fn an_empty_policy_passes_everything_through() {
        let layer = Policy::default().client_layer();
        assert!(layer.handles().bulkhead.is_none() && layer.handles().chaos.is_none());
        let start = Instant::now();
        let seen = layer
            .layer(sleepy(Duration::from_secs(600)))
            .oneshot(WithDeadline::new(()))
            .await
            .unwrap();
        assert_eq!(seen, None);
        assert_eq!(start.elapsed(), Duration::from_secs(600));
    }

    #[tokio::test(start_paused = true)]
    async fn client_attempt_timeout_sits_inside_the_total() {
        let start = Instant::now();
        let policy = Policy::default()
            .with_timeout(Duration::from_secs(1))
            .with_attempt_timeout(200 * MS);
        // The inner service sees the attempt's (earlier) deadline with the call's start.
        let seen = policy
            .client_layer()
            .layer(sleepy(MS))
            .oneshot(WithDeadline::new(()))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(seen.at(), start + 200 * MS);
        assert_eq!(seen.started(), start);
        let err = policy
            .client_layer()
            .layer(sleepy(Duration::from_secs(5)))
            .oneshot(WithDeadline::new(()))
            .await
            .unwrap_err();
        assert_eq!(
            err.downcast_ref::<Elapsed>().unwrap().scope(),
            Scope::Attempt
        );
        assert_eq!(
            err.downcast_ref::<Elapsed>().unwrap().cause(),
            Cause::Budget
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_total_timeout_bounds_time_queued_in_the_bulkhead() {
        let policy = Policy::default()
            .with_timeout(50 * MS)
            .with_bulkhead(BulkheadConfig {
                max_concurrent: 1,
                queue: crate::bulkhead::QueueConfig {
                    size: 4,
                    max_wait: Duration::from_secs(10),
                },
                ..Default::default()
            });
        let layer = policy.client_layer();
        let first = tokio::spawn(
            layer
                .layer(sleepy(Duration::from_secs(1)))
                .oneshot(WithDeadline::new(())),
        );
        tokio::task::yield_now().await;
        let start = Instant::now();
        let err = layer
            .layer(sleepy(MS))
            .oneshot(WithDeadline::new(()))
            .await
            .unwrap_err();
        let e = err.downcast_ref::<Elapsed>().unwrap();
        assert_eq!(e.scope(), Scope::Total);
        assert_eq!(start.elapsed(), 50 * MS);
        assert!(first.await.unwrap().is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn one_layer_is_one_bulkhead_for_every_service_it_makes() {
        let layer = Policy::default()
            .with_bulkhead(BulkheadConfig {
                max_concurrent: 1,
                ..Default::default()
            })
            .server_layer();
        let held = tokio::spawn(
            layer
                .layer(sleepy(Duration::from_secs(1)))
                .oneshot(WithDeadline::new(())),
        );
        tokio::task::yield_now().await;
        let err = layer
            .layer(sleepy(MS))
            .oneshot(WithDeadline::new(()))
            .await
            .unwrap_err();
        assert!(err.is::<BulkheadFull>());
        assert_eq!(layer.handles().bulkhead.unwrap().snapshot().rejected, 1);
        held.await.unwrap().unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn chaos_sits_below_the_timeouts() {
        let policy = Policy::default().with_attempt_timeout(100 * MS).with_chaos(
            ChaosConfig::default()
                .with_latency(crate::chaos::LatencyConfig::fixed(Duration::from_secs(1))),
        );
        let layer = policy.client_layer();
        let err = layer
            .layer(sleepy(MS))
            .oneshot(WithDeadline::new(()))
            .await
            .unwrap_err();
        assert!(err.is::<Elapsed>(), "{err}");
        let injected = layer.handles().chaos.unwrap().snapshot();
        assert_eq!((injected.calls, injected.delayed), (1, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn client_stack_retries_a_failed_attempt() {
        use std::sync::atomic::{AtomicU32, Ordering};
        let calls = std::sync::Arc::new(AtomicU32::new(0));
        let c = calls.clone();
        let flaky = service_fn(move |_: u32| {
            let n = c.fetch_add(1, Ordering::SeqCst);
            async move {
                if n == 0 {
                    Err::<u32, BoxError>("reset".into())
                } else {
                    Ok(n)
                }
            }
        });
        let layer = Policy::default()
            .with_retry(crate::retry::RetryConfig::default())
            .client_layer();
        let answer = layer.layer(flaky).oneshot(7).await.unwrap();
        assert_eq!(answer, 1);
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert_eq!(layer.handles().retry.unwrap().snapshot().retries, 1);
    }

    #[tokio::test(start_paused = true)]
    async fn client_breaker_opens_below_retry_and_stops_calling() {
        use std::sync::atomic::{AtomicU32, Ordering};
        let calls = std::sync::Arc::new(AtomicU32::new(0));
        let c = calls.clone();
        let broken = service_fn(move |_: u32| {
            c.fetch_add(1, Ordering::SeqCst);
            async { Err::<u32, BoxError>("down".into()) }
        });
        let breaker = BreakerConfig {
            consecutive_failures: Some(2),
            ..Default::default()
        };
        let layer = Policy::default().with_breaker(breaker).client_layer();
        let mut svc = layer.layer(broken);
        for _ in 0..2 {
            assert!(svc.ready().await.unwrap().call(1).await.is_err());
        }
        let err = svc.ready().await.unwrap().call(1).await.unwrap_err();
        assert!(err.is::<crate::rejection::CircuitOpen>(), "{err}");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn server_stack_drains_through_the_shed_handle() {
        let layer = Policy::default()
            .with_shed(ShedConfig::default())
            .server_layer();
        let mut svc = layer.layer(sleepy(MS));
        assert!(
            svc.ready()
                .await
                .unwrap()
                .call(WithDeadline::new(()))
                .await
                .is_ok()
        );
        layer.handles().shed.unwrap().drain();
        let err = svc
            .ready()
            .await
            .unwrap()
            .call(WithDeadline::new(()))
            .await
            .unwrap_err();
        let rejection = crate::Rejection::find(err.as_ref()).unwrap();
        assert_eq!(rejection.kind(), crate::RejectionKind::Draining);
    }

    #[tokio::test(start_paused = true)]
    async fn server_layer_parts_hands_shed_and_bulkhead_permits_to_the_hold_strategy() {
        use crate::hold::testing::{KeepInResponse, Kept};
        let policy = Policy::default()
            .with_bulkhead(BulkheadConfig::new(1))
            .with_shed(ShedConfig::new(crate::shed::Algorithm::Fixed).with_limits(4, 1, 4));
        let layer = policy.server_layer_parts(DefaultClassify, KeepInResponse);
        let handles = layer.handles();
        let mut svc = layer.layer(service_fn(|_: WithDeadline<()>| async {
            Ok::<_, BoxError>(Kept::default())
        }));
        let first = svc
            .ready()
            .await
            .unwrap()
            .call(WithDeadline::new(()))
            .await
            .unwrap();
        // One guard from each layer.
        assert_eq!(first.guards.len(), 2);
        let shed = handles.shed.unwrap();
        let bulkhead = handles.bulkhead.unwrap();
        assert_eq!((shed.in_flight(), bulkhead.snapshot().running), (1, 1));
        let err = svc
            .ready()
            .await
            .unwrap()
            .call(WithDeadline::new(()))
            .await
            .err()
            .unwrap();
        assert!(err.is::<BulkheadFull>(), "{err}");
        drop(first);
        assert_eq!((shed.in_flight(), bulkhead.snapshot().running), (0, 0));
        assert!(
            svc.ready()
                .await
                .unwrap()
                .call(WithDeadline::new(()))
                .await
                .is_ok()
        );
    }

    #[cfg(feature = "serde")]
    #[test]
    fn deserializes_with_human_durations_and_rejects_unknown_keys() {
        let p: Policy = serde_json::from_str(
            r#"{"timeout": "5s", "attempt_timeout": "250ms", "bulkhead": {"max_concurrent": 16, "queue": {"size": 32, "max_wait": "100ms"}}}"#,
        )
        .unwrap();
        assert_eq!(p.timeout, Some(Duration::from_secs(5)));
        assert_eq!(p.attempt_timeout, Some(250 * MS));
        let b = p.bulkhead.as_ref().unwrap();
        assert_eq!(
            (b.max_concurrent, b.queue.size, b.queue.max_wait),
            (16, 32, 100 * MS)
        );
        let back: Policy = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
        assert_eq!(back, p);
        let err = serde_json::from_str::<Policy>(r#"{"timeuot": "5s"}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }
}
