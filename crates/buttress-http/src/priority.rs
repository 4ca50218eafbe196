//! Request priority from a header, for the load shedder.
//!
//! A load shedder refuses lower priorities first ([`Priority`]). Callers say which
//! requests matter in a header (`buttress-priority` by default): `critical`,
//! `default` or `sheddable` (ASCII case-insensitive, surrounding whitespace
//! tolerated). [`PriorityFromHeaderLayer`] sets [`RequestMeta::set_priority`] from it.
//! Only those three values are read; anything else is ignored (with a debug event at
//! target `buttress::http`) and the request keeps its priority. Callers are not
//! trusted to promote themselves without limit: the value is clamped to
//! [`PriorityConfig::max`] (set it to `Default` on an edge facing the internet, so
//! nobody outside can claim `critical`).
//!
//! Place it before the shed layer in a server stack.
//!
//! # Example
//!
//! ```
//! use buttress::{Priority, RequestMeta};
//! use buttress_http::priority::{PriorityConfig, PriorityFromHeaderLayer};
//! use http::Request;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let svc = ServiceBuilder::new()
//!     .layer(PriorityFromHeaderLayer::new(PriorityConfig { max: Priority::Default, ..Default::default() }))
//!     .service(service_fn(|req: Request<()>| async move { Ok::<_, std::convert::Infallible>(req.priority()) }));
//!
//! let req = |v: &str| Request::get("/").header("buttress-priority", v).body(()).unwrap();
//! assert_eq!(svc.clone().oneshot(req("Sheddable")).await.unwrap(), Priority::Sheddable);
//! assert_eq!(svc.clone().oneshot(req("critical")).await.unwrap(), Priority::Default); // clamped
//! assert_eq!(svc.oneshot(req("urgent!!")).await.unwrap(), Priority::Default); // ignored
//! # }
//! ```

use std::sync::Arc;
use std::task::{Context, Poll};

use buttress::{Priority, RequestMeta};
use http::{HeaderName, Request};
use tower_layer::Layer;
use tower_service::Service;

use crate::header::BUTTRESS_PRIORITY;

/// Where the priority is read, and how high a caller may set it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct PriorityConfig {
    /// The header (default `buttress-priority`).
    #[cfg_attr(feature = "serde", serde(with = "crate::serde_util::header_name"))]
    pub header: HeaderName,
    /// The highest priority a caller may ask for (default `Critical`).
    pub max: Priority,
}

impl Default for PriorityConfig {
    fn default() -> Self {
        Self {
            header: BUTTRESS_PRIORITY,
            max: Priority::Critical,
        }
    }
}

/// Parses a priority value: `critical`, `default` or `sheddable`, case-insensitive,
/// surrounding whitespace tolerated; `None` for anything else.
pub fn parse_priority(value: &[u8]) -> Option<Priority> {
    let v = value.trim_ascii();
    [
        (&b"critical"[..], Priority::Critical),
        (b"default", Priority::Default),
        (b"sheddable", Priority::Sheddable),
    ]
    .into_iter()
    .find(|(name, _)| v.eq_ignore_ascii_case(name))
    .map(|(_, p)| p)
}

impl PriorityConfig {
    /// The priority `req`'s header asks for, clamped to [`max`](Self::max); `None` if
    /// the header is absent or not one of the three values.
    pub fn priority_of<B>(&self, req: &Request<B>) -> Option<Priority> {
        let value = req.headers().get(&self.header)?;
        match parse_priority(value.as_bytes()) {
            Some(p) => Some(p.min(self.max)),
            None => {
                let shown = String::from_utf8_lossy(&value.as_bytes()[..value.len().min(32)]);
                tracing::debug!(target: "buttress::http", value = ?shown, "ignoring an unknown priority");
                None
            }
        }
    }
}

/// Applies [`PriorityFromHeader`] to services; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct PriorityFromHeaderLayer {
    config: Option<Arc<PriorityConfig>>,
}

impl PriorityFromHeaderLayer {
    /// Reads priorities as `config` says.
    pub fn new(config: PriorityConfig) -> Self {
        Self {
            config: Some(Arc::new(config)),
        }
    }

    /// Reads as `config` says, or passes requests through when `None`.
    pub fn from_config(config: Option<PriorityConfig>) -> Self {
        Self {
            config: config.map(Arc::new),
        }
    }

    /// A pass-through of the same type.
    pub const fn disabled() -> Self {
        Self { config: None }
    }
}

impl Default for PriorityFromHeaderLayer {
    fn default() -> Self {
        Self::new(PriorityConfig::default())
    }
}

impl<S> Layer<S> for PriorityFromHeaderLayer {
    type Service = PriorityFromHeader<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PriorityFromHeader {
            inner,
            config: self.config.clone(),
        }
    }
}

/// Sets each request's [`Priority`] from its header; see the [module docs](self).
#[derive(Debug, Clone)]
pub struct PriorityFromHeader<S> {
    inner: S,
    config: Option<Arc<PriorityConfig>>,
}

impl<S> PriorityFromHeader<S> {
    /// The inner service.
    pub const fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The inner service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S, B> Service<Request<B>> for PriorityFromHeader<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    #[inline]
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        if let Some(p) = self.config.as_ref().and_then(|c| c.priority_of(&req)) {
            req.set_priority(p);
        }
        self.inner.call(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn req(value: &'static [u8]) -> Request<()> {
        let mut r = Request::new(());
        r.headers_mut().insert(
            BUTTRESS_PRIORITY,
            http::HeaderValue::from_bytes(value).unwrap(),
        );
        r
    }

    #[test]
    fn allow_listed_values_only() {
        let c = PriorityConfig::default();
        assert_eq!(c.priority_of(&req(b" CRITICAL ")), Some(Priority::Critical));
        assert_eq!(c.priority_of(&req(b"default")), Some(Priority::Default));
        assert_eq!(c.priority_of(&req(b"sheddable")), Some(Priority::Sheddable));
        for bad in [&b""[..], b"crit", b"critical!", b"1", b"high"] {
            assert_eq!(c.priority_of(&req(bad)), None, "{bad:?}");
        }
        assert_eq!(c.priority_of(&Request::new(())), None);
    }

    #[test]
    fn clamped_to_max() {
        let c = PriorityConfig {
            max: Priority::Sheddable,
            ..Default::default()
        };
        assert_eq!(c.priority_of(&req(b"critical")), Some(Priority::Sheddable));
        let custom = PriorityConfig {
            header: HeaderName::from_static("x-prio"),
            ..Default::default()
        };
        assert_eq!(
            custom.priority_of(&req(b"critical")),
            None,
            "reads only its own header"
        );
    }

    #[tokio::test]
    async fn keeps_an_earlier_priority_when_the_header_says_nothing() {
        use tower::ServiceExt;
        let svc = PriorityFromHeaderLayer::default().layer(tower::service_fn(
            |r: Request<()>| async move { Ok::<_, std::convert::Infallible>(r.priority()) },
        ));
        let mut r = req(b"nonsense");
        r.set_priority(Priority::Critical);
        assert_eq!(svc.clone().oneshot(r).await.unwrap(), Priority::Critical);
        let off = PriorityFromHeaderLayer::disabled().layer(tower::service_fn(
            |r: Request<()>| async move { Ok::<_, std::convert::Infallible>(r.priority()) },
        ));
        assert_eq!(
            off.oneshot(req(b"sheddable")).await.unwrap(),
            Priority::Default
        );
    }

    proptest! {
        #[test]
        fn garbage_never_panics_and_is_clamped(bytes in proptest::collection::vec(any::<u8>(), 0..32)) {
            if let Ok(v) = http::HeaderValue::from_bytes(&bytes) {
                let mut r = Request::new(());
                r.headers_mut().insert(BUTTRESS_PRIORITY, v);
                let c = PriorityConfig { max: Priority::Default, ..Default::default() };
                if let Some(p) = c.priority_of(&r) {
                    prop_assert!(p <= Priority::Default);
                }
            }
        }
    }
}
