//! Keys for keyed layers (bulkhead, breaker, throttle, balance): one partition of
//! state per authority, per matched route, or per allow-listed header value.
//!
//! Each implements [`buttress::keyed::Partition`]; `None` means the layer's shared,
//! unkeyed state. Keys that come from a peer are bounded: a header value only through
//! an allow-list, an authority through an allow-list on servers and at most
//! [`MAX_AUTHORITY_LEN`] bytes everywhere, so a peer cannot mint partitions.
//!
//! - [`ByAuthority`]: per host and port, e.g. a breaker per upstream. On a client,
//!   [`ByAuthority::client`] takes the URI's authority (your code built it). On a
//!   server, [`ByAuthority::server`] takes the URI's authority or the `Host` header,
//!   only if allow-listed.
//! - [`ByHeader`]: per allow-listed value of a header, e.g. a bulkhead per tenant.
//! - [`ByExtension`]: per value of a typed request extension that your own middleware
//!   sets (a tenant id from authentication, say).
//! - `ByMatchedPath` (feature `axum`): per axum route pattern (`/users/{id}`, not the
//!   path a peer sent), e.g. a bulkhead per expensive route. buttress-http depends on
//!   axum only with that feature; without it, `ByExtension` with a type your router
//!   inserts does the same.
//!
//! # Example
//!
//! ```
//! use buttress::keyed::Partition;
//! use buttress_http::key::{ByAuthority, ByHeader};
//! use http::{HeaderValue, Request};
//!
//! let tenants = ByHeader::new("x-tenant".parse().unwrap(), ["acme", "globex"].map(HeaderValue::from_static));
//! let req = Request::get("http://inventory.internal:8080/items").header("x-tenant", "acme").body(()).unwrap();
//! assert_eq!(tenants.key(&req).unwrap(), "acme");
//! let stranger = Request::get("/").header("x-tenant", "mallory").body(()).unwrap();
//! assert_eq!(tenants.key(&stranger), None); // shared state, no new partition
//!
//! let hosts = ByAuthority::client();
//! assert_eq!(hosts.key(&req).unwrap(), "inventory.internal:8080");
//! ```

use std::collections::HashSet;
use std::fmt;
use std::hash::Hash;
use std::marker::PhantomData;
use std::sync::Arc;

use buttress::keyed::Partition;
use http::uri::Authority;
use http::{HeaderName, HeaderValue, Request, header::HOST};

/// The longest authority used as a key (a DNS name is at most 253 bytes, plus a port).
pub const MAX_AUTHORITY_LEN: usize = 260;

/// Partitions by authority (host and port); see the [module docs](self).
#[derive(Debug, Clone)]
pub struct ByAuthority {
    host_header: bool,
    allowed: Option<Arc<HashSet<Authority>>>,
}

impl ByAuthority {
    /// The URI's authority, whatever it is (client stacks: your code built the URI).
    pub const fn client() -> Self {
        Self {
            host_header: false,
            allowed: None,
        }
    }

    /// The URI's authority, or else the `Host` header, if it is in `allowed` (server
    /// stacks: both come from the peer). Comparison ignores ASCII case.
    pub fn server(allowed: impl IntoIterator<Item = Authority>) -> Self {
        Self {
            host_header: true,
            allowed: Some(Arc::new(allowed.into_iter().collect())),
        }
    }
}

impl<B> Partition<Request<B>> for ByAuthority {
    type Key = Authority;

    fn key(&self, req: &Request<B>) -> Option<Authority> {
        let authority = match req.uri().authority() {
            Some(a) => a.clone(),
            None if self.host_header => {
                let host = req.headers().get(HOST)?;
                if host.len() > MAX_AUTHORITY_LEN {
                    return None;
                }
                Authority::try_from(host.as_bytes()).ok()?
            }
            None => return None,
        };
        if authority.as_str().len() > MAX_AUTHORITY_LEN {
            return None;
        }
        match &self.allowed {
            Some(allowed) => allowed.get(&authority).cloned(),
            None => Some(authority),
        }
    }
}

/// Partitions by the value of one header, among an allow-list; see the
/// [module docs](self).
#[derive(Debug, Clone)]
pub struct ByHeader {
    name: HeaderName,
    allowed: Arc<HashSet<HeaderValue>>,
}

impl ByHeader {
    /// Keys by `name`'s value when it is one of `allowed` (compared byte for byte);
    /// other values, and requests without the header, share the unkeyed state.
    pub fn new(name: HeaderName, allowed: impl IntoIterator<Item = HeaderValue>) -> Self {
        Self {
            name,
            allowed: Arc::new(allowed.into_iter().collect()),
        }
    }
}

impl<B> Partition<Request<B>> for ByHeader {
    type Key = HeaderValue;

    fn key(&self, req: &Request<B>) -> Option<HeaderValue> {
        let value = req.headers().get(&self.name)?;
        // The allow-list's own copy: no allocation, and nothing of the peer's kept.
        self.allowed.get(value).cloned()
    }
}

/// Partitions by a typed request extension `T` (set by your own middleware); see the
/// [module docs](self).
pub struct ByExtension<T> {
    _t: PhantomData<fn() -> T>,
}

impl<T> ByExtension<T> {
    /// Keys by the `T` in each request's extensions; requests without one share the
    /// unkeyed state.
    pub const fn new() -> Self {
        Self { _t: PhantomData }
    }
}

impl<T> Default for ByExtension<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T> Clone for ByExtension<T> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<T> Copy for ByExtension<T> {}

impl<T> fmt::Debug for ByExtension<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ByExtension")
            .field("type", &std::any::type_name::<T>())
            .finish()
    }
}

impl<B, T> Partition<Request<B>> for ByExtension<T>
where
    T: Hash + Eq + Clone + Send + Sync + 'static,
{
    type Key = T;

    fn key(&self, req: &Request<B>) -> Option<T> {
        req.extensions().get::<T>().cloned()
    }
}

#[cfg(feature = "axum")]
#[cfg_attr(docsrs, doc(cfg(feature = "axum")))]
pub use route::{ByMatchedPath, RouteKey};

#[cfg(feature = "axum")]
mod route {
    use std::hash::{Hash, Hasher};

    use axum::extract::MatchedPath;
    use buttress::keyed::Partition;
    use http::Request;

    /// Partitions by axum's matched route pattern; see the [module docs](super).
    ///
    /// axum sets `MatchedPath` before the route's service (and the layers added with
    /// `Router::layer` or `route_layer`) runs; requests that matched no route share the
    /// unkeyed state.
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
    pub struct ByMatchedPath;

    /// A route pattern as a key (a cheap clone of axum's `MatchedPath`).
    #[derive(Debug, Clone)]
    pub struct RouteKey(pub MatchedPath);

    impl RouteKey {
        /// The route pattern.
        pub fn as_str(&self) -> &str {
            self.0.as_str()
        }
    }

    impl PartialEq for RouteKey {
        fn eq(&self, other: &Self) -> bool {
            self.as_str() == other.as_str()
        }
    }

    impl Eq for RouteKey {}

    impl Hash for RouteKey {
        fn hash<H: Hasher>(&self, state: &mut H) {
            self.as_str().hash(state);
        }
    }

    impl<B> Partition<Request<B>> for ByMatchedPath {
        type Key = RouteKey;

        fn key(&self, req: &Request<B>) -> Option<RouteKey> {
            req.extensions().get::<MatchedPath>().cloned().map(RouteKey)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authority_on_clients_and_servers() {
        let client = ByAuthority::client();
        let req = Request::get("http://API.example:443/x").body(()).unwrap();
        let key = client.key(&req).unwrap();
        assert_eq!(key, "api.example:443", "case-insensitive");
        let origin_form = Request::get("/x")
            .header("host", "api.example:443")
            .body(())
            .unwrap();
        assert_eq!(client.key(&origin_form), None, "clients never read Host");

        let server = ByAuthority::server(["api.example:443".parse().unwrap()]);
        assert_eq!(server.key(&origin_form).unwrap(), "api.example:443");
        let other = Request::get("/x")
            .header("host", "evil.example")
            .body(())
            .unwrap();
        assert_eq!(server.key(&other), None);
        let long = "a".repeat(MAX_AUTHORITY_LEN + 1);
        let too_long = Request::get("/x")
            .header("host", long.as_str())
            .body(())
            .unwrap();
        assert_eq!(server.key(&too_long), None);
        let long_uri = Request::get(format!("http://{long}/")).body(()).unwrap();
        assert_eq!(client.key(&long_uri), None);
    }

    #[test]
    fn header_values_only_from_the_allow_list() {
        let by = ByHeader::new(
            HeaderName::from_static("x-tenant"),
            [HeaderValue::from_static("a")],
        );
        let with = |v: &str| Request::get("/").header("x-tenant", v).body(()).unwrap();
        assert_eq!(by.key(&with("a")).unwrap(), "a");
        assert_eq!(by.key(&with("A")), None);
        assert_eq!(by.key(&with("b")), None);
        assert_eq!(by.key(&Request::new(())), None);
    }

    #[test]
    fn extension_keys() {
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        struct Tenant(u32);
        let by = ByExtension::<Tenant>::new();
        let mut req = Request::new(());
        assert_eq!(by.key(&req), None);
        req.extensions_mut().insert(Tenant(7));
        assert_eq!(by.key(&req), Some(Tenant(7)));
    }

    #[cfg(feature = "axum")]
    #[tokio::test]
    async fn matched_route_patterns() {
        use axum::body::Body;
        use axum::routing::get;
        use tower::ServiceExt;

        let app = axum::Router::new().route(
            "/users/{id}",
            get(|req: axum::extract::Request| async move {
                ByMatchedPath
                    .key(&req)
                    .map(|k| k.as_str().to_owned())
                    .unwrap_or_default()
            }),
        );
        let res = app
            .oneshot(Request::get("/users/7").body(Body::empty()).unwrap())
            .await
            .unwrap();
        let body = axum::body::to_bytes(res.into_body(), 1024).await.unwrap();
        assert_eq!(&body[..], b"/users/{id}");
        assert_eq!(ByMatchedPath.key(&Request::new(())), None);
    }
}
