//! The hook through which a balancer tells retry that another endpoint can take a
//! retry at once.

/// Whether another endpoint can take a retry of a request right now.
///
/// When an answer carries a delay hint (`Retry-After`, gRPC pushback,
/// [`Overloaded`](crate::rejection::Overloaded)'s delay), the retry layer waits for the
/// larger of its backoff and the hint, *unless* this hook says another endpoint can
/// take the request: then only the backoff applies, and the endpoint that gave the hint
/// is the balancer's to avoid (it ejects it for the hint's duration).
///
/// Without a balancer the answer is [`NoAlternatives`]: no, the hint is waited for.
/// A closure `Fn(&Req) -> bool` is also an `Alternatives`.
pub trait Alternatives<Req> {
    /// Whether an endpoint other than the one that asked for the delay can take `req`
    /// (the request about to be retried) now.
    fn has_alternative(&self, req: &Req) -> bool;
}

/// No alternative endpoint: a delay hint is always waited for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoAlternatives;

impl<Req> Alternatives<Req> for NoAlternatives {
    fn has_alternative(&self, _: &Req) -> bool {
        false
    }
}

impl<Req, F> Alternatives<Req> for F
where
    F: Fn(&Req) -> bool,
{
    fn has_alternative(&self, req: &Req) -> bool {
        self(req)
    }
}
