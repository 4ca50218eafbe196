//! One value that describes a whole stack.
//!
//! A [`Policy`] is plain data (serde behind the `serde` feature): the generic settings
//! of every layer, `None` where a layer is off. It builds the canonical stack as one
//! layer, in the order that makes the layers work together:
//!
//! - client ([`Policy::client_layer`]): total timeout -> bulkhead -> attempt timeout ->
//!   (chaos) -> transport;
//! - server ([`Policy::server_layer`]): bulkhead -> timeout -> (chaos) -> handler.
//!
//! (Retry, hedge, throttle, balance, breaker and shed take their places in this order
//! as they land: see DESIGN.md's canonical order.)
//!
//! A disabled layer is a pass-through value, not another type, so every stack built
//! from a policy has one concrete type whatever is enabled: choosing a policy per
//! route or per request is a lookup and a dispatch to a prebuilt stack, with no boxing.
//! The state of every stateful layer (bulkhead permits, chaos counters) is created
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

use crate::bulkhead::{Bulkhead, BulkheadConfig, BulkheadHandle, BulkheadLayer};
use crate::chaos::{Chaos, ChaosConfig, ChaosHandle, ChaosLayer};
use crate::rejection::Scope;
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
        serde(with = "crate::duration::serde::option", skip_serializing_if = "Option::is_none")
    )]
    pub timeout: Option<Duration>,
    /// Timeout of one attempt (client stacks, below retry).
    #[cfg_attr(
        feature = "serde",
        serde(with = "crate::duration::serde::option", skip_serializing_if = "Option::is_none")
    )]
    pub attempt_timeout: Option<Duration>,
    /// Concurrency limit with an optional bounded queue.
    #[cfg_attr(feature = "serde", serde(skip_serializing_if = "Option::is_none"))]
    pub bulkhead: Option<BulkheadConfig>,
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

    /// Sets the bulkhead.
    #[must_use]
    pub fn with_bulkhead(mut self, bulkhead: BulkheadConfig) -> Self {
        self.bulkhead = Some(bulkhead);
        self
    }

    /// Sets fault injection.
    #[must_use]
    pub fn with_chaos(mut self, chaos: ChaosConfig) -> Self {
        self.chaos = Some(chaos);
        self
    }

    /// Builds the canonical client stack, creating the state of its stateful layers.
    pub fn client_layer(&self) -> ClientLayer {
        let bulkhead = BulkheadLayer::from_config(self.bulkhead.clone());
        let chaos = ChaosLayer::from_config(self.chaos.clone());
        ClientLayer {
            handles: self.handles(&bulkhead, &chaos),
            total: TimeoutLayer::new(Scope::Total, self.timeout),
            bulkhead,
            attempt: TimeoutLayer::new(Scope::Attempt, self.attempt_timeout),
            chaos,
        }
    }

    /// Builds the canonical server stack, creating the state of its stateful layers.
    ///
    /// A server has one timeout: `timeout` (an `attempt_timeout` is ignored here).
    pub fn server_layer(&self) -> ServerLayer {
        let bulkhead = BulkheadLayer::from_config(self.bulkhead.clone());
        let chaos = ChaosLayer::from_config(self.chaos.clone());
        ServerLayer {
            handles: self.handles(&bulkhead, &chaos),
            bulkhead,
            timeout: TimeoutLayer::new(Scope::Total, self.timeout),
            chaos,
        }
    }

    fn handles(&self, bulkhead: &BulkheadLayer, chaos: &ChaosLayer) -> Handles {
        Handles {
            bulkhead: self.bulkhead.as_ref().map(|_| bulkhead.handle()),
            chaos: self.chaos.as_ref().map(|_| chaos.handle()),
        }
    }
}

/// Handles to the state of a stack's stateful layers (`None` for a layer that is off).
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Handles {
    /// The bulkhead's handle.
    pub bulkhead: Option<BulkheadHandle>,
    /// The chaos layer's handle.
    pub chaos: Option<ChaosHandle>,
}

/// The canonical client stack of a [`Policy`], as one layer.
#[derive(Debug, Clone)]
pub struct ClientLayer {
    total: TimeoutLayer,
    bulkhead: BulkheadLayer,
    attempt: TimeoutLayer,
    chaos: ChaosLayer,
    handles: Handles,
}

impl ClientLayer {
    /// Handles to the stack's state.
    pub fn handles(&self) -> Handles {
        self.handles.clone()
    }
}

type ClientStack<S> = Timeout<Bulkhead<Timeout<Chaos<S>>>>;

/// The service a [`ClientLayer`] makes.
#[derive(Debug, Clone)]
pub struct ClientService<S> {
    inner: ClientStack<S>,
}

impl<S> Layer<S> for ClientLayer {
    type Service = ClientService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        let chaos = self.chaos.layer(inner);
        let attempt = self.attempt.layer(chaos);
        let bulkhead = self.bulkhead.layer(attempt);
        ClientService {
            inner: self.total.layer(bulkhead),
        }
    }
}

impl<S, Req> Service<Req> for ClientService<S>
where
    ClientStack<S>: Service<Req, Error = BoxError>,
    Req: RequestMeta,
{
    type Response = <ClientStack<S> as Service<Req>>::Response;
    type Error = BoxError;
    type Future = <ClientStack<S> as Service<Req>>::Future;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    #[inline]
    fn call(&mut self, req: Req) -> Self::Future {
        self.inner.call(req)
    }
}

/// The canonical server stack of a [`Policy`], as one layer.
#[derive(Debug, Clone)]
pub struct ServerLayer {
    bulkhead: BulkheadLayer,
    timeout: TimeoutLayer,
    chaos: ChaosLayer,
    handles: Handles,
}

impl ServerLayer {
    /// Handles to the stack's state.
    pub fn handles(&self) -> Handles {
        self.handles.clone()
    }
}

type ServerStack<S> = Bulkhead<Timeout<Chaos<S>>>;

/// The service a [`ServerLayer`] makes.
#[derive(Debug, Clone)]
pub struct ServerService<S> {
    inner: ServerStack<S>,
}

impl<S> Layer<S> for ServerLayer {
    type Service = ServerService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        let chaos = self.chaos.layer(inner);
        let timeout = self.timeout.layer(chaos);
        ServerService {
            inner: self.bulkhead.layer(timeout),
        }
    }
}

impl<S, Req> Service<Req> for ServerService<S>
where
    ServerStack<S>: Service<Req, Error = BoxError>,
    Req: RequestMeta,
{
    type Response = <ServerStack<S> as Service<Req>>::Response;
    type Error = BoxError;
    type Future = <ServerStack<S> as Service<Req>>::Future;

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

    fn sleepy(d: Duration) -> impl Service<WithDeadline<()>, Response = Option<Deadline>, Error = BoxError, Future = impl Send> + Clone {
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
        let seen = layer.layer(sleepy(Duration::from_secs(600))).oneshot(WithDeadline::new(())).await.unwrap();
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
        let seen = policy.client_layer().layer(sleepy(MS)).oneshot(WithDeadline::new(())).await.unwrap().unwrap();
        assert_eq!(seen.at(), start + 200 * MS);
        assert_eq!(seen.started(), start);
        let err = policy.client_layer().layer(sleepy(Duration::from_secs(5))).oneshot(WithDeadline::new(())).await.unwrap_err();
        assert_eq!(err.downcast_ref::<Elapsed>().unwrap().scope(), Scope::Attempt);
        assert_eq!(err.downcast_ref::<Elapsed>().unwrap().cause(), Cause::Budget);
    }

    #[tokio::test(start_paused = true)]
    async fn the_total_timeout_bounds_time_queued_in_the_bulkhead() {
        let policy = Policy::default()
            .with_timeout(50 * MS)
            .with_bulkhead(BulkheadConfig {
                max_concurrent: 1,
                queue: crate::bulkhead::QueueConfig { size: 4, max_wait: Duration::from_secs(10) },
                ..Default::default()
            });
        let layer = policy.client_layer();
        let first = tokio::spawn(layer.layer(sleepy(Duration::from_secs(1))).oneshot(WithDeadline::new(())));
        tokio::task::yield_now().await;
        let start = Instant::now();
        let err = layer.layer(sleepy(MS)).oneshot(WithDeadline::new(())).await.unwrap_err();
        let e = err.downcast_ref::<Elapsed>().unwrap();
        assert_eq!(e.scope(), Scope::Total);
        assert_eq!(start.elapsed(), 50 * MS);
        assert!(first.await.unwrap().is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn one_layer_is_one_bulkhead_for_every_service_it_makes() {
        let layer = Policy::default()
            .with_bulkhead(BulkheadConfig { max_concurrent: 1, ..Default::default() })
            .server_layer();
        let held = tokio::spawn(layer.layer(sleepy(Duration::from_secs(1))).oneshot(WithDeadline::new(())));
        tokio::task::yield_now().await;
        let err = layer.layer(sleepy(MS)).oneshot(WithDeadline::new(())).await.unwrap_err();
        assert!(err.is::<BulkheadFull>());
        assert_eq!(layer.handles().bulkhead.unwrap().snapshot().rejected, 1);
        held.await.unwrap().unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn chaos_sits_below_the_timeouts() {
        let policy = Policy::default()
            .with_attempt_timeout(100 * MS)
            .with_chaos(ChaosConfig::default().with_latency(crate::chaos::LatencyConfig::fixed(Duration::from_secs(1))));
        let layer = policy.client_layer();
        let err = layer.layer(sleepy(MS)).oneshot(WithDeadline::new(())).await.unwrap_err();
        assert!(err.is::<Elapsed>(), "{err}");
        let injected = layer.handles().chaos.unwrap().snapshot();
        assert_eq!((injected.calls, injected.delayed), (1, 1));
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
        assert_eq!((b.max_concurrent, b.queue.size, b.queue.max_wait), (16, 32, 100 * MS));
        let back: Policy = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
        assert_eq!(back, p);
        let err = serde_json::from_str::<Policy>(r#"{"timeuot": "5s"}"#).unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }
}
