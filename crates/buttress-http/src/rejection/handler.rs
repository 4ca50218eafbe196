use buttress::BoxError;
use bytes::Bytes;
use http::{Response, StatusCode};

use super::config::{Protocol, grpc_response, text_response};
use crate::grpc::Code;

/// Answers errors that are not buttress rejections.
///
/// Implemented for closures `Fn(BoxError, Protocol) -> http::Response<Bytes>`. Called
/// once per error; it should be cheap to clone (a function, a closure over `Arc`s):
/// [`RejectionResponse`](super::RejectionResponse) clones it into each call.
pub trait HandleError {
    /// The answer to `error`, for a request of `protocol`.
    fn handle(&self, error: BoxError, protocol: Protocol) -> Response<Bytes>;
}

impl<F> HandleError for F
where
    F: Fn(BoxError, Protocol) -> Response<Bytes>,
{
    fn handle(&self, error: BoxError, protocol: Protocol) -> Response<Bytes> {
        self(error, protocol)
    }
}

/// The default [`HandleError`]: logs the error (a `tracing` warning at target
/// `buttress::http`) and answers 500, or `UNKNOWN` for gRPC. The error's text is not
/// sent: it may say more than a client should see.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DefaultHandler;

impl HandleError for DefaultHandler {
    fn handle(&self, error: BoxError, protocol: Protocol) -> Response<Bytes> {
        tracing::warn!(target: "buttress::http", error = %error, "unhandled error answered with a server error");
        match protocol {
            Protocol::Http => {
                text_response(StatusCode::INTERNAL_SERVER_ERROR, "internal server error")
            }
            Protocol::Grpc => grpc_response(Code::Unknown, "internal error", None),
        }
    }
}
