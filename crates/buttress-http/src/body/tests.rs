use std::convert::Infallible;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use buttress::{Classification, Verdict};
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Empty, Full};
use tower::{ServiceExt, service_fn};
use tower_layer::Layer;

use super::*;
use crate::classify::GrpcEos;

type Polled<B> = Poll<Option<Result<Frame<<B as Body>::Data>, <B as Body>::Error>>>;

type Log = Arc<Mutex<Vec<String>>>;

fn recorder(log: &Log) -> OnEndFn<impl FnOnce(BodyEnd<'_>) + use<>> {
    let log = log.clone();
    on_end_fn(move |end: BodyEnd<'_>| {
        let what = match end {
            BodyEnd::Complete { trailers: None } => "complete".to_owned(),
            BodyEnd::Complete { trailers: Some(t) } => format!("trailers:{}", t.len()),
            BodyEnd::Error => "error".to_owned(),
            BodyEnd::Dropped => "dropped".to_owned(),
        };
        log.lock().unwrap().push(what);
    })
}

/// A body that yields the given frames, then ends.
struct Script(std::collections::VecDeque<Result<Frame<Bytes>, &'static str>>);

impl Body for Script {
    type Data = Bytes;
    type Error = &'static str;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, &'static str>>> {
        Poll::Ready(self.get_mut().0.pop_front())
    }
}

fn frames(items: Vec<Result<Frame<Bytes>, &'static str>>) -> Script {
    Script(items.into())
}

fn poll<B: Body + Unpin>(b: &mut B) -> Polled<B> {
    Pin::new(b).poll_frame(&mut Context::from_waker(Waker::noop()))
}

#[tokio::test]
async fn fires_once_when_the_last_frame_is_delivered() {
    let log = Log::default();
    let mut body = GuardBody::new(Full::new(Bytes::from_static(b"abc")), recorder(&log));
    assert!(body.is_held());
    assert!(matches!(poll(&mut body), Poll::Ready(Some(Ok(_)))));
    // Released with the last frame, before anyone polls for the end.
    assert!(!body.is_held());
    assert_eq!(*log.lock().unwrap(), ["complete"]);
    drop(body);
    assert_eq!(log.lock().unwrap().len(), 1, "exactly once");
}

#[tokio::test]
async fn trailers_errors_and_drops() {
    let log = Log::default();
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    let body = GuardBody::new(
        frames(vec![
            Ok(Frame::data(Bytes::from_static(b"x"))),
            Ok(Frame::trailers(trailers)),
        ]),
        recorder(&log),
    );
    body.collect().await.unwrap();

    let body = GuardBody::new(
        frames(vec![
            Ok(Frame::data(Bytes::from_static(b"x"))),
            Err("reset"),
        ]),
        recorder(&log),
    );
    assert!(body.collect().await.is_err());

    let mut body = GuardBody::new(
        frames(vec![
            Ok(Frame::data(Bytes::from_static(b"x"))),
            Ok(Frame::data(Bytes::from_static(b"y"))),
        ]),
        recorder(&log),
    );
    assert!(matches!(poll(&mut body), Poll::Ready(Some(Ok(_)))));
    drop(body); // the client went away mid-stream

    // An empty body hyper never polls: held until dropped, reported as complete.
    let body = GuardBody::new(Empty::<Bytes>::new(), recorder(&log));
    assert!(body.is_held());
    drop(body);
    assert_eq!(
        *log.lock().unwrap(),
        ["trailers:1", "error", "dropped", "complete"]
    );
}

#[tokio::test]
async fn holds_a_permit_until_the_body_ends() {
    let permit = Arc::new(());
    let mut body = GuardBody::new(
        frames(vec![
            Ok(Frame::data(Bytes::from_static(b"a"))),
            Ok(Frame::data(Bytes::from_static(b"b"))),
        ]),
        (Hold(permit.clone()), ()),
    );
    assert!(matches!(poll(&mut body), Poll::Ready(Some(Ok(_)))));
    assert_eq!(Arc::strong_count(&permit), 2, "held while the body streams");
    assert!(matches!(poll(&mut body), Poll::Ready(Some(Ok(_)))));
    assert!(matches!(poll(&mut body), Poll::Ready(None)));
    assert_eq!(Arc::strong_count(&permit), 1, "released at the end");
}

#[tokio::test]
async fn the_end_of_body_hook_classifies_grpc_trailers() {
    let seen: Arc<Mutex<Vec<Classification>>> = Arc::default();
    let sink = seen.clone();
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("14"));
    let body = GuardBody::new(
        frames(vec![
            Ok(Frame::data(Bytes::from_static(b"msg"))),
            Ok(Frame::trailers(trailers)),
        ]),
        ClassifyAtEnd::new(GrpcEos::new(), move |c| sink.lock().unwrap().push(c)),
    );
    body.collect().await.unwrap();
    let dropped_sink = seen.clone();
    drop(GuardBody::new(
        frames(vec![Ok(Frame::data(Bytes::from_static(b"msg")))]),
        ClassifyAtEnd::new(GrpcEos::new(), move |c| {
            dropped_sink.lock().unwrap().push(c);
        }),
    ));
    let seen = seen.lock().unwrap();
    assert_eq!(seen[0].verdict, Verdict::Failure);
    assert!(seen[0].allows_retry(true));
    assert_eq!(
        seen[1].verdict,
        Verdict::Ignored,
        "a reader that went away says nothing"
    );
}

#[tokio::test]
async fn hold_body_moves_held_guards_into_the_body() {
    let permit = Arc::new(());
    let p = permit.clone();
    let svc = HoldBodyLayer::new().layer(service_fn(move |_req: Request<()>| {
        let p = p.clone();
        async move {
            let mut res = Response::new(Full::new(Bytes::from_static(b"report")));
            HeldGuards::hold(&mut res, Hold(p));
            Ok::<_, Infallible>(res)
        }
    }));
    let res = svc.oneshot(Request::new(())).await.unwrap(); // the service and its clone are gone
    assert!(
        res.extensions().get::<HeldGuards>().is_none(),
        "moved out of the extensions"
    );
    assert_eq!(Arc::strong_count(&permit), 2, "held by the body");
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, "report");
    assert_eq!(Arc::strong_count(&permit), 1);
    // A response with nothing held is wrapped all the same.
    let plain = HoldBodyLayer::new().layer(service_fn(|_req: Request<()>| async {
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
    }));
    let res = plain.oneshot(Request::new(())).await.unwrap();
    assert_eq!(res.into_body().collect().await.unwrap().to_bytes(), "ok");
}

#[tokio::test]
async fn response_bodies() {
    let full = ResponseBody::<Full<Bytes>>::full("busy");
    assert!(!full.is_inner());
    assert_eq!(full.size_hint().exact(), Some(4));
    assert_eq!(full.collect().await.unwrap().to_bytes(), "busy");
    let empty = ResponseBody::<Full<Bytes>>::empty();
    assert!(empty.is_end_stream());
    let inner = ResponseBody::new(Full::new(Bytes::from_static(b"in")));
    assert!(inner.is_inner());
    assert_eq!(inner.collect().await.unwrap().to_bytes(), "in");
}
