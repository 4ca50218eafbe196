use http::{Method, Request};

use crate::header::IDEMPOTENCY_KEY;

/// Which requests may be sent more than once (retried or hedged).
///
/// By default: requests with an idempotent method (`GET`, `HEAD`, `OPTIONS`, `TRACE`,
/// `PUT`, `DELETE`, as RFC 9110 defines them) and requests carrying an
/// `Idempotency-Key` header. gRPC requests are all `POST`s, so they follow the same
/// rule unless [`grpc`](Self::grpc) says every gRPC call is safe (gRPC's own retry
/// design leaves it to the service config, per method). A [`RetrySafe`] extension on
/// the request overrides everything.
///
/// Safety only matters for outcomes that may have reached the callee
/// ([`RetryClass::IfSafe`](buttress::RetryClass::IfSafe)); a connection that was never
/// established is retried whatever the method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
pub struct RetrySafety {
    /// Idempotent methods are safe (default `true`).
    pub idempotent_methods: bool,
    /// Requests with an `Idempotency-Key` header are safe (default `true`).
    pub idempotency_key: bool,
    /// Every gRPC request (`content-type: application/grpc*`) is safe (default
    /// `false`).
    pub grpc: bool,
    /// Every request is safe (default `false`): for stacks in front of services known
    /// to be idempotent.
    pub all: bool,
}

impl Default for RetrySafety {
    fn default() -> Self {
        Self::new()
    }
}

impl RetrySafety {
    /// The default rules: idempotent methods and requests with an `Idempotency-Key`.
    pub const fn new() -> Self {
        Self {
            idempotent_methods: true,
            idempotency_key: true,
            grpc: false,
            all: false,
        }
    }
}

/// A request extension that says whether this one request is safe to repeat,
/// overriding [`RetrySafety`].
///
/// ```
/// use buttress_http::classify::RetrySafe;
///
/// let mut req = http::Request::post("/charge").body(()).unwrap();
/// req.extensions_mut().insert(RetrySafe(true)); // the callee deduplicates
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RetrySafe(pub bool);

impl RetrySafety {
    /// Whether `req` may be sent more than once under these rules; `grpc` says whether
    /// it is a gRPC request.
    pub fn is_safe<B>(&self, req: &Request<B>, grpc: bool) -> bool {
        if let Some(RetrySafe(safe)) = req.extensions().get::<RetrySafe>() {
            return *safe;
        }
        self.all
            || (self.idempotent_methods && is_idempotent(req.method()))
            || (self.grpc && grpc)
            || (self.idempotency_key && req.headers().contains_key(IDEMPOTENCY_KEY))
    }
}

/// Whether `method` is idempotent (RFC 9110, section 9.2.2).
pub fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE | Method::PUT | Method::DELETE
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: Method) -> Request<()> {
        Request::builder().method(method).body(()).unwrap()
    }

    #[test]
    fn default_rules() {
        let s = RetrySafety::default();
        for m in [
            Method::GET,
            Method::HEAD,
            Method::OPTIONS,
            Method::TRACE,
            Method::PUT,
            Method::DELETE,
        ] {
            assert!(s.is_safe(&req(m.clone()), false), "{m}");
        }
        for m in [Method::POST, Method::PATCH, Method::CONNECT] {
            assert!(!s.is_safe(&req(m.clone()), false), "{m}");
        }
        let mut keyed = req(Method::POST);
        keyed
            .headers_mut()
            .insert(IDEMPOTENCY_KEY, "abc".parse().unwrap());
        assert!(s.is_safe(&keyed, false));
        assert!(
            !RetrySafety {
                idempotency_key: false,
                ..s
            }
            .is_safe(&keyed, false)
        );
        assert!(
            !s.is_safe(&req(Method::POST), true),
            "gRPC is not safe by default"
        );
        assert!(RetrySafety { grpc: true, ..s }.is_safe(&req(Method::POST), true));
        assert!(RetrySafety { all: true, ..s }.is_safe(&req(Method::PATCH), false));
        assert!(
            !RetrySafety {
                idempotent_methods: false,
                ..s
            }
            .is_safe(&req(Method::GET), false)
        );
    }

    #[test]
    fn extension_overrides() {
        let s = RetrySafety {
            all: true,
            ..RetrySafety::default()
        };
        let mut r = req(Method::GET);
        r.extensions_mut().insert(RetrySafe(false));
        assert!(!s.is_safe(&r, false));
        let mut r = req(Method::POST);
        r.extensions_mut().insert(RetrySafe(true));
        assert!(RetrySafety::default().is_safe(&r, false));
    }
}
