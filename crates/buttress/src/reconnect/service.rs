use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::{Instant, Sleep, sleep_until};
use tower_service::Service;

use super::config::ReconnectConfig;
use super::error::Reconnecting;
use super::future::ResponseFuture;
use super::link::{Ended, Link, SharedError, chain};
use super::state::{Cached, Event, ReconnectHandle, Shared, Slot, TARGET};
use crate::BoxError;
use crate::backoff::Backoff;

/// Keeps a connection made by a connector (`M`, a `Service<Target>` whose responses
/// are services) and makes a new one, with backoff, when it fails. See the
/// [module docs](super).
pub struct Reconnect<M, Target>
where
    M: Service<Target>,
{
    mk: M,
    target: Target,
    state: State<M::Future, M::Response>,
    link: Link,
    slot: Slot,
    cached: Cached,
    /// The backoff timer, allocated at the first outage and reset after that.
    sleep: Option<Pin<Box<Sleep>>>,
    /// A pass-through layer's connect error, for the next call.
    error: Option<BoxError>,
    /// When the connection was last made ready for a call (with an idle timeout).
    last_used: Option<Instant>,
}

enum State<F, S> {
    /// Connect at the next `poll_ready`.
    Idle,
    Connecting(Pin<Box<F>>),
    /// Waiting out a backoff delay.
    Waiting,
    Connected(S),
}

impl<F, S> State<F, S> {
    fn name(&self) -> &'static str {
        match self {
            State::Idle => "idle",
            State::Connecting(_) => "connecting",
            State::Waiting => "waiting",
            State::Connected(_) => "connected",
        }
    }
}

impl<M, Target> Reconnect<M, Target>
where
    M: Service<Target>,
{
    /// Connects to `target` through `mk` on the first `poll_ready`, and reconnects
    /// as `config` says. The service is the only one of its layer: see
    /// [`handle`](Self::handle).
    pub fn new(mk: M, target: Target, config: ReconnectConfig) -> Self {
        Self::with_shared(mk, target, Arc::new(Shared::new(Some(config))))
    }

    pub(crate) fn with_shared(mk: M, target: Target, shared: Arc<Shared>) -> Self {
        let cached = shared.cached();
        Self {
            mk,
            target,
            state: State::Idle,
            link: Link::new(),
            slot: Slot::new(shared),
            cached,
            sleep: None,
            error: None,
            last_used: None,
        }
    }

    /// The handle of the layer this service belongs to.
    pub fn handle(&self) -> ReconnectHandle {
        ReconnectHandle {
            shared: self.slot.shared.clone(),
        }
    }

    /// Whether a connection is established.
    pub fn is_connected(&self) -> bool {
        matches!(self.state, State::Connected(_))
    }

    /// The connector.
    pub fn get_ref(&self) -> &M {
        &self.mk
    }

    /// The connector, mutably.
    pub fn get_mut(&mut self) -> &mut M {
        &mut self.mk
    }

    /// Unwraps the connector, dropping the connection.
    pub fn into_inner(self) -> M {
        self.mk
    }

    fn shared(&self) -> &Shared {
        &self.slot.shared
    }

    fn publish(&self, event: Event) {
        self.shared()
            .publish(self.slot.index, event, self.link.status());
    }

    /// What `poll_ready` answers when no connection is ready: wait, or (failing
    /// fast during an outage) let the call through to be refused.
    fn not_ready(&self) -> Poll<Result<(), BoxError>> {
        if self.cached.fail_fast && self.link.in_outage() {
            Poll::Ready(Ok(()))
        } else {
            Poll::Pending
        }
    }

    fn wait(&mut self, delay: Duration, now: Instant) {
        let at = now.checked_add(delay).unwrap_or(now);
        match &mut self.sleep {
            Some(sleep) => sleep.as_mut().reset(at),
            None => self.sleep = Some(Box::pin(sleep_until(at))),
        }
        self.state = State::Waiting;
    }

    /// The connection ended (an attempt failed or an established connection was
    /// lost): schedule the next attempt.
    fn ended(&mut self, how: Ended, error: BoxError) {
        let now = Instant::now();
        let event = match how {
            Ended::AttemptFailed => Event::AttemptFailed,
            Ended::Lost => Event::Lost,
        };
        if !self.cached.enabled {
            // Pass-through: as tower's `Reconnect`, the connect error goes to the
            // next call as it is and the next `poll_ready` connects again at once.
            let shared: SharedError = Arc::new(Message(chain(&*error)));
            self.link.ended(
                how,
                now,
                shared,
                &Backoff::constant(Duration::ZERO),
                &NoJitter,
            );
            self.state = State::Idle;
            if how == Ended::AttemptFailed {
                self.error = Some(error);
            }
            self.publish(event);
            return;
        }
        let error: SharedError = Arc::from(error);
        let (shared, link) = (&self.slot.shared, &mut self.link);
        let delay = shared
            .with_settings(|s| link.ended(how, now, error.clone(), &s.config.backoff, &s.rng));
        match how {
            Ended::AttemptFailed => tracing::warn!(
                target: TARGET,
                attempts = self.link.status().attempts,
                retry_in = ?delay,
                error = %chain(&*error),
                "reconnect attempt failed"
            ),
            Ended::Lost => {
                tracing::warn!(target: TARGET, retry_in = ?delay, error = %chain(&*error), "connection lost");
            }
        }
        self.publish(event);
        self.wait(delay, now);
    }

    fn reconnecting(&self) -> Reconnecting {
        let s = self.link.status();
        Reconnecting::new(
            s.down_since,
            s.attempts,
            s.next_attempt_at,
            s.last_error.clone(),
        )
    }
}

impl<M, Target, S, Req> Service<Req> for Reconnect<M, Target>
where
    M: Service<Target, Response = S>,
    M::Error: Into<BoxError>,
    S: Service<Req>,
    S::Error: Into<BoxError>,
    Target: Clone,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.slot.shared.refresh(&mut self.cached);
        if self.error.is_some() {
            return Poll::Ready(Ok(()));
        }
        loop {
            match &mut self.state {
                State::Connected(conn) => {
                    let now = self.cached.idle_timeout.map(|idle| (idle, Instant::now()));
                    if let (Some((idle, now)), Some(last)) = (now, self.last_used) {
                        if now.saturating_duration_since(last) >= idle {
                            tracing::debug!(target: TARGET, idle = ?idle, "replacing a connection left idle");
                            self.state = State::Idle;
                            self.last_used = None;
                            self.link.closed();
                            self.publish(Event::Closed);
                            continue;
                        }
                    }
                    match conn.poll_ready(cx) {
                        Poll::Ready(Ok(())) => {
                            if let Some((_, now)) = now {
                                self.last_used = Some(now);
                            }
                            return Poll::Ready(Ok(()));
                        }
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Err(e)) => {
                            self.last_used = None;
                            self.ended(Ended::Lost, e.into());
                        }
                    }
                }
                State::Idle => {
                    match self.mk.poll_ready(cx) {
                        Poll::Ready(Ok(())) => {}
                        Poll::Ready(Err(e)) => {
                            self.ended(Ended::AttemptFailed, e.into());
                            if self.error.is_some() {
                                return Poll::Ready(Ok(()));
                            }
                            continue;
                        }
                        Poll::Pending => return self.not_ready(),
                    }
                    if self.link.in_outage() {
                        let now = Instant::now();
                        let (shared, link) = (&self.slot.shared, &mut self.link);
                        let allowed = shared.with_settings(|s| {
                            link.before_attempt(now, s.budget.as_ref(), &s.config.backoff, &s.rng)
                        });
                        if let Err(delay) = allowed {
                            tracing::debug!(target: TARGET, retry_in = ?delay, "reconnect attempt put off: budget spent");
                            self.publish(Event::BudgetDenied);
                            self.wait(delay, now);
                            continue;
                        }
                    }
                    tracing::debug!(
                        target: TARGET,
                        attempt = self.link.status().attempts + 1,
                        "connecting"
                    );
                    self.state = State::Connecting(Box::pin(self.mk.call(self.target.clone())));
                    self.publish(Event::AttemptStarted);
                }
                State::Connecting(fut) => match fut.as_mut().poll(cx) {
                    Poll::Ready(Ok(conn)) => {
                        self.state = State::Connected(conn);
                        self.last_used = None;
                        if let Some((since, attempts)) = self.link.connected() {
                            tracing::info!(
                                target: TARGET,
                                attempts,
                                down_for = ?since.elapsed(),
                                "reconnected"
                            );
                        } else {
                            tracing::debug!(target: TARGET, "connected");
                        }
                        self.publish(Event::Connected);
                    }
                    Poll::Ready(Err(e)) => {
                        self.ended(Ended::AttemptFailed, e.into());
                        if self.error.is_some() {
                            return Poll::Ready(Ok(()));
                        }
                    }
                    Poll::Pending => return self.not_ready(),
                },
                State::Waiting => {
                    let Some(sleep) = self.sleep.as_mut() else {
                        self.state = State::Idle;
                        continue;
                    };
                    match sleep.as_mut().poll(cx) {
                        Poll::Ready(()) => self.state = State::Idle,
                        Poll::Pending => return self.not_ready(),
                    }
                }
            }
        }
    }

    fn call(&mut self, req: Req) -> Self::Future {
        if let Some(error) = self.error.take() {
            return ResponseFuture::failed(error);
        }
        match &mut self.state {
            State::Connected(conn) => ResponseFuture::called(conn.call(req)),
            _ => ResponseFuture::failed(Box::new(self.reconnecting())),
        }
    }
}

/// The text of an error handed to the caller (pass-through layer), kept for the
/// handle.
#[derive(Debug)]
struct Message(String);

impl fmt::Display for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Message {}

/// Draws nothing: a pass-through layer has no jitter.
struct NoJitter;

impl crate::rand::Random for NoJitter {
    fn next_u64(&self) -> u64 {
        0
    }
}

impl<M, Target> fmt::Debug for Reconnect<M, Target>
where
    M: Service<Target> + fmt::Debug,
    Target: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reconnect")
            .field("mk", &self.mk)
            .field("target", &self.target)
            .field("state", &self.state.name())
            .field("link", &self.link)
            .finish_non_exhaustive()
    }
}
