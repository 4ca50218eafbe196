use buttress::Replay;
use http::Request;

use super::ReplayBody;

/// The [`Replay`] strategy for requests whose body is a [`ReplayBody`]: copies the
/// method, URI, version, headers and extensions, and a copy of the body sharing its
/// buffer.
///
/// - [`HttpReplay::retry`] (the default): a copy whenever the body is within its cap,
///   even if the first attempt has not finished reading it.
/// - [`HttpReplay::hedge`]: a copy only once the body is fully buffered, so a hedged
///   copy never waits on the attempt it races.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HttpReplay {
    complete_only: bool,
}

impl HttpReplay {
    /// Replays a body within its cap, complete or not (for retry).
    pub const fn retry() -> Self {
        Self {
            complete_only: false,
        }
    }

    /// Replays only a body fully buffered (for hedge).
    pub const fn hedge() -> Self {
        Self {
            complete_only: true,
        }
    }
}

impl<B> Replay<Request<ReplayBody<B>>> for HttpReplay {
    fn replay(&self, req: &Request<ReplayBody<B>>) -> Option<Request<ReplayBody<B>>> {
        let body = if self.complete_only {
            req.body().try_replay_complete()?
        } else {
            req.body().try_replay()?
        };
        Some(copy_parts(req, body))
    }
}

/// The [`Replay`] strategy for requests whose body is `Clone` (`Full<Bytes>`, `()`,
/// `String`): copies the parts and clones the body.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CloneRequest;

impl<B: Clone> Replay<Request<B>> for CloneRequest {
    fn replay(&self, req: &Request<B>) -> Option<Request<B>> {
        Some(copy_parts(req, req.body().clone()))
    }
}

fn copy_parts<A, B>(req: &Request<A>, body: B) -> Request<B> {
    let mut copy = Request::new(body);
    *copy.method_mut() = req.method().clone();
    *copy.uri_mut() = req.uri().clone();
    *copy.version_mut() = req.version();
    *copy.headers_mut() = req.headers().clone();
    *copy.extensions_mut() = req.extensions().clone();
    copy
}
