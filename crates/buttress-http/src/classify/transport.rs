use std::error::Error;
use std::fmt;
use std::io;

use buttress::BoxError;

/// Marks a transport error as "the connection was never established": nothing was
/// sent, so the request may be retried whatever its method.
///
/// Wrap your connector's errors in it when your client does not report connect
/// failures in a way buttress recognises (see [`is_connect_error`]).
///
/// ```
/// use buttress_http::classify::{ConnectFailed, is_connect_error};
///
/// let err: buttress::BoxError = ConnectFailed::new("no route to the service mesh").into();
/// assert!(is_connect_error(err.as_ref()));
/// ```
#[derive(Debug)]
pub struct ConnectFailed {
    inner: BoxError,
}

impl ConnectFailed {
    /// Marks `inner` as a failure to connect.
    pub fn new(inner: impl Into<BoxError>) -> Self {
        Self {
            inner: inner.into(),
        }
    }

    /// The connector's error.
    pub fn get_ref(&self) -> &(dyn Error + Send + Sync + 'static) {
        self.inner.as_ref()
    }

    /// Takes the connector's error back.
    pub fn into_inner(self) -> BoxError {
        self.inner
    }
}

impl fmt::Display for ConnectFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "could not connect: {}", self.inner)
    }
}

impl Error for ConnectFailed {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(self.inner.as_ref())
    }
}

/// Whether `err`, or anything in its source chain, says the connection was never
/// established:
///
/// - a [`ConnectFailed`] mark;
/// - an [`io::Error`] of kind [`ConnectionRefused`](io::ErrorKind::ConnectionRefused)
///   (hyper-util's `HttpConnector` reports a refused connection this way, in the
///   source chain of its client error);
/// - with the `hyper-util` feature, a hyper-util legacy client error whose
///   `is_connect()` is true (which also covers DNS failures and connect timeouts).
pub fn is_connect_error(err: &(dyn Error + 'static)) -> bool {
    let mut next = Some(err);
    while let Some(err) = next {
        if is_connect_one(err) {
            return true;
        }
        // `io::Error::source` skips the error it wraps: look inside it too.
        if let Some(inner) = err.downcast_ref::<io::Error>().and_then(io::Error::get_ref) {
            if is_connect_error(inner) {
                return true;
            }
        }
        next = err.source();
    }
    false
}

fn is_connect_one(err: &(dyn Error + 'static)) -> bool {
    if err.is::<ConnectFailed>() {
        return true;
    }
    if let Some(io) = err.downcast_ref::<io::Error>() {
        return io.kind() == io::ErrorKind::ConnectionRefused;
    }
    #[cfg(feature = "hyper-util")]
    if let Some(e) = err.downcast_ref::<hyper_util::client::legacy::Error>() {
        return e.is_connect();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Wrap(BoxError);
    impl fmt::Display for Wrap {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("client error")
        }
    }
    impl Error for Wrap {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(self.0.as_ref())
        }
    }

    #[test]
    fn finds_refused_connections_anywhere() {
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        let err: BoxError = Wrap(Wrap(refused.into()).into()).into();
        assert!(is_connect_error(err.as_ref()));
        let inside_io: BoxError = io::Error::other(ConnectFailed::new("dns")).into();
        assert!(is_connect_error(inside_io.as_ref()));
    }

    #[test]
    fn other_transport_errors_may_have_sent_the_request() {
        for kind in [
            io::ErrorKind::ConnectionReset,
            io::ErrorKind::BrokenPipe,
            io::ErrorKind::TimedOut,
        ] {
            let err: BoxError = Wrap(io::Error::from(kind).into()).into();
            assert!(!is_connect_error(err.as_ref()), "{kind:?}");
        }
        let plain: BoxError = "boom".into();
        assert!(!is_connect_error(plain.as_ref()));
    }

    #[cfg(feature = "hyper-util")]
    #[tokio::test]
    async fn hyper_util_connect_errors_of_any_cause() {
        use hyper_util::client::legacy::Client;
        use hyper_util::rt::{TokioExecutor, TokioIo};

        // A connector failing with an error that says nothing about sockets.
        let connector = tower::service_fn(|_: http::Uri| {
            std::future::ready(Err::<TokioIo<tokio::net::TcpStream>, _>(BoxError::from(
                "no endpoint in the pool",
            )))
        });
        let client: Client<_, http_body_util::Empty<bytes::Bytes>> =
            Client::builder(TokioExecutor::new()).build(connector);
        let err = client
            .get("http://svc.internal/".parse().unwrap())
            .await
            .unwrap_err();
        assert!(err.is_connect());
        let boxed: BoxError = err.into();
        assert!(is_connect_error(boxed.as_ref()));
    }
}
