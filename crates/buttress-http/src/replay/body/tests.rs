use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Wake, Waker};

use buttress::Replay;
use http::{HeaderValue, Request};
use http_body_util::{BodyExt, Empty, Full};
use proptest::prelude::*;

use super::*;
use crate::replay::HttpReplay;

type Polled<B> = Poll<Option<Result<Frame<<B as Body>::Data>, <B as Body>::Error>>>;

/// A body fed by the test, one frame at a time.
#[derive(Clone, Default)]
struct Feed {
    state: Arc<Mutex<FeedState>>,
}

#[derive(Default)]
struct FeedState {
    frames: VecDeque<Result<Frame<Bytes>, &'static str>>,
    closed: bool,
    waker: Option<Waker>,
    polls: usize,
}

impl Feed {
    fn push(&self, data: &'static [u8]) {
        self.push_frame(Ok(Frame::data(Bytes::from_static(data))));
    }

    fn push_frame(&self, frame: Result<Frame<Bytes>, &'static str>) {
        let mut s = self.state.lock().unwrap();
        s.frames.push_back(frame);
        if let Some(w) = s.waker.take() {
            w.wake();
        }
    }

    fn close(&self) {
        let mut s = self.state.lock().unwrap();
        s.closed = true;
        if let Some(w) = s.waker.take() {
            w.wake();
        }
    }

    fn polls(&self) -> usize {
        self.state.lock().unwrap().polls
    }
}

impl Body for Feed {
    type Data = Bytes;
    type Error = &'static str;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, &'static str>>> {
        let mut s = self.state.lock().unwrap();
        s.polls += 1;
        match s.frames.pop_front() {
            Some(f) => Poll::Ready(Some(f)),
            None if s.closed => Poll::Ready(None),
            None => {
                s.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

struct CountWake(AtomicUsize);

impl Wake for CountWake {
    fn wake(self: Arc<Self>) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

fn counting_waker() -> (Arc<CountWake>, Waker) {
    let count = Arc::new(CountWake(AtomicUsize::new(0)));
    (count.clone(), Waker::from(count))
}

fn poll_once<B: Body + Unpin>(body: &mut B, waker: &Waker) -> Polled<B> {
    Pin::new(body).poll_frame(&mut Context::from_waker(waker))
}

fn data(p: Poll<Option<Result<Frame<Bytes>, BoxError>>>) -> Bytes {
    match p {
        Poll::Ready(Some(Ok(f))) => f.into_data().unwrap(),
        _ => panic!("expected data"),
    }
}

async fn collect<B>(body: B) -> Result<(Bytes, Option<HeaderMap>), BoxError>
where
    B: Body<Data = Bytes, Error = BoxError>,
{
    let c = body.collect().await?;
    let trailers = c.trailers().cloned();
    Ok((c.to_bytes(), trailers))
}

#[tokio::test]
async fn a_replay_sends_identical_bytes_and_trailers() {
    let feed = Feed::default();
    feed.push(b"hello ");
    feed.push(b"world");
    let mut trailers = HeaderMap::new();
    trailers.insert("checksum", HeaderValue::from_static("abc"));
    feed.push_frame(Ok(Frame::trailers(trailers.clone())));
    let body = ReplayBody::new(feed, 1024);
    let copy = body.try_replay().unwrap();
    assert!(!body.is_complete());
    let first = collect(body).await.unwrap();
    assert_eq!(first, (Bytes::from_static(b"hello world"), Some(trailers)));
    let second = collect(copy).await.unwrap();
    assert_eq!(first, second);
}

#[tokio::test]
async fn a_copy_made_mid_stream_replays_then_reads_the_rest() {
    let feed = Feed::default();
    let mut first = ReplayBody::new(feed.clone(), 1024);
    let waker = Waker::noop();
    feed.push(b"ab");
    assert_eq!(data(poll_once(&mut first, waker)), "ab");
    assert!(poll_once(&mut first, waker).is_pending());
    // The server answered 503 before reading the rest; the first attempt is dropped.
    let mut retry = first.try_replay().unwrap();
    drop(first);
    assert_eq!(data(poll_once(&mut retry, waker)), "ab");
    feed.push(b"cd");
    feed.close();
    let (rest, _) = collect(retry).await.unwrap();
    assert_eq!(rest, "cd");
}

#[tokio::test]
async fn past_the_cap_there_is_no_replay_but_the_first_attempt_gets_everything() {
    let feed = Feed::default();
    feed.push(b"0123");
    feed.push(b"4567");
    feed.push(b"89");
    feed.close();
    let body = ReplayBody::new(feed, 8);
    let early = body.try_replay().unwrap();
    let req = Request::post("/").body(body).unwrap();
    let (parts, body) = req.into_parts();
    let (all, _) = collect(body).await.unwrap();
    assert_eq!(all, "0123456789");
    let req = Request::from_parts(parts, ReplayBody::new(Empty::<Bytes>::new(), 0));
    assert!(
        HttpReplay::retry().replay(&req).is_some(),
        "an empty body always replays"
    );
    // A copy made before the cap was crossed cannot finish: it fails rather than send
    // a truncated body.
    let err = collect(early).await.unwrap_err();
    assert!(err.downcast_ref::<ReplayError>().is_some(), "{err}");
}

#[tokio::test]
async fn crossing_the_cap_stops_replays() {
    let feed = Feed::default();
    feed.push(b"0123");
    feed.push(b"45678");
    feed.close();
    let mut body = ReplayBody::new(feed, 8);
    let waker = Waker::noop();
    assert_eq!(data(poll_once(&mut body, waker)), "0123");
    assert!(body.try_replay().is_some());
    assert_eq!(data(poll_once(&mut body, waker)), "45678");
    assert!(body.try_replay().is_none());
    assert!(!body.is_replayable());
    assert_eq!(body.buffered(), 4, "nothing past the cap is kept");
    assert!(matches!(poll_once(&mut body, waker), Poll::Ready(None)));
    assert!(!body.is_complete());
}

#[tokio::test]
async fn a_body_known_to_be_too_large_is_never_buffered() {
    let body = ReplayBody::new(Full::new(Bytes::from(vec![7u8; 100])), 99);
    assert!(body.try_replay().is_none());
    let (all, _) = collect(body).await.unwrap();
    assert_eq!(all.len(), 100);
    let fits = ReplayBody::new(Full::new(Bytes::from(vec![7u8; 99])), 99);
    assert!(fits.try_replay().is_some());
}

#[tokio::test]
async fn hedging_waits_for_a_fully_buffered_body() {
    let feed = Feed::default();
    let mut body = ReplayBody::new(feed.clone(), 64);
    feed.push(b"part");
    let req_copy = |b: &ReplayBody<Feed>| b.try_replay_complete().is_some();
    assert!(!req_copy(&body));
    let waker = Waker::noop();
    assert_eq!(data(poll_once(&mut body, waker)), "part");
    assert!(!req_copy(&body), "not all read yet");
    feed.close();
    assert!(matches!(poll_once(&mut body, waker), Poll::Ready(None)));
    assert!(body.is_complete());
    let req = Request::put("/x")
        .header("idempotency-key", "1")
        .body(body)
        .unwrap();
    let hedge = HttpReplay::hedge().replay(&req).expect("complete now");
    assert_eq!(hedge.headers()["idempotency-key"], "1");
    assert_eq!(hedge.method(), http::Method::PUT);
    assert_eq!(hedge.uri(), "/x");
    assert_eq!(collect(hedge.into_body()).await.unwrap().0, "part");
}

#[tokio::test]
async fn a_full_body_is_complete_after_its_only_frame() {
    let mut body = ReplayBody::new(Full::new(Bytes::from_static(b"x")), 64);
    assert_eq!(body.size_hint().exact(), Some(1));
    assert_eq!(data(poll_once(&mut body, Waker::noop())), "x");
    // hyper stops here when is_end_stream says so: the body must already be complete.
    assert!(body.is_end_stream());
    assert!(body.is_complete());
    let copy = body.try_replay().unwrap();
    assert_eq!(copy.size_hint().exact(), Some(1));
    assert!(!copy.is_end_stream());
}

#[tokio::test]
async fn a_failed_body_is_not_replayed() {
    let feed = Feed::default();
    feed.push(b"a");
    feed.push_frame(Err("reset"));
    let body = ReplayBody::new(feed, 64);
    let copy = body.try_replay().unwrap();
    let err = collect(body).await.unwrap_err();
    assert_eq!(err.to_string(), "reset");
    let err = collect(copy).await.unwrap_err();
    assert!(err.downcast_ref::<ReplayError>().is_some());
}

#[tokio::test]
async fn concurrent_copies_wake_each_other() {
    let feed = Feed::default();
    let mut a = ReplayBody::new(feed.clone(), 64);
    let mut b = a.try_replay().unwrap();
    let (a_wakes, a_waker) = counting_waker();
    let (_b_wakes, b_waker) = counting_waker();
    assert!(poll_once(&mut a, &a_waker).is_pending());
    assert!(poll_once(&mut b, &b_waker).is_pending());
    // The inner body now wakes only b (the last to poll it); b reads the frame ...
    feed.push(b"xy");
    assert_eq!(data(poll_once(&mut b, &b_waker)), "xy");
    // ... and wakes a, which finds it in the buffer without touching the inner body.
    assert_eq!(a_wakes.0.load(Ordering::SeqCst), 1);
    let polls = feed.polls();
    assert_eq!(data(poll_once(&mut a, &a_waker)), "xy");
    assert_eq!(feed.polls(), polls);
}

#[tokio::test]
async fn a_replayed_request_keeps_its_parts() {
    let mut req = Request::post("http://svc/orders")
        .header("idempotency-key", "k")
        .body(ReplayBody::new(Full::new(Bytes::from_static(b"{}")), 64))
        .unwrap();
    req.extensions_mut().insert(7u32);
    let copy = HttpReplay::retry().replay(&req).unwrap();
    assert_eq!(copy.uri(), "http://svc/orders");
    assert_eq!(copy.extensions().get::<u32>(), Some(&7));
    assert_eq!(copy.version(), req.version());
    let cloned = crate::replay::CloneRequest
        .replay(&Request::new(Full::new(Bytes::from_static(b"z"))))
        .unwrap();
    assert_eq!(cloned.into_body().collect().await.unwrap().to_bytes(), "z");
}

#[tokio::test]
async fn the_layer_wraps_request_bodies() {
    use tower::{ServiceExt, service_fn};
    use tower_layer::Layer;
    let svc = crate::replay::BufferRequestBodyLayer::new(16).layer(service_fn(
        |req: Request<ReplayBody<Full<Bytes>>>| async move {
            Ok::<_, Infallible>(req.body().is_replayable())
        },
    ));
    assert!(
        svc.clone()
            .oneshot(Request::new(Full::new(Bytes::from_static(b"small"))))
            .await
            .unwrap()
    );
    assert!(
        !svc.oneshot(Request::new(Full::new(Bytes::from(vec![0; 17]))))
            .await
            .unwrap()
    );
    let off = crate::replay::BufferRequestBodyLayer::disabled().layer(service_fn(
        |req: Request<ReplayBody<Full<Bytes>>>| async move {
            Ok::<_, Infallible>(req.body().is_replayable())
        },
    ));
    assert!(
        off.clone()
            .oneshot(Request::new(Full::new(Bytes::new())))
            .await
            .unwrap()
    );
    assert!(
        !off.oneshot(Request::new(Full::new(Bytes::from_static(b"a"))))
            .await
            .unwrap()
    );
}

proptest! {
    #[test]
    fn replays_are_identical_or_refused(chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..20), 0..8), cap in 0usize..100, copy_after in 0usize..9) {
        let total: usize = chunks.iter().map(Vec::len).sum();
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(async {
            let feed = Feed::default();
            for c in &chunks {
                feed.push_frame(Ok(Frame::data(Bytes::from(c.clone()))));
            }
            feed.close();
            let mut body = ReplayBody::new(feed, cap);
            // Read part of the body, then ask for a copy.
            let mut sent = Vec::new();
            for _ in 0..copy_after {
                match poll_once(&mut body, Waker::noop()) {
                    Poll::Ready(Some(Ok(f))) => sent.extend_from_slice(&f.into_data().unwrap()),
                    _ => break,
                }
            }
            let copy = body.try_replay();
            let (rest, _) = collect(body).await.unwrap();
            sent.extend_from_slice(&rest);
            prop_assert_eq!(sent.len(), total);
            let read_so_far_fits = copy.is_some();
            if let Some(copy) = copy {
                match collect(copy).await {
                    Ok((again, _)) => {
                        prop_assert!(total <= cap);
                        prop_assert_eq!(&again[..], &sent[..]);
                    }
                    // The first attempt crossed the cap after the copy was made.
                    Err(e) => prop_assert!(e.downcast_ref::<ReplayError>().is_some() && total > cap),
                }
            }
            prop_assert!(read_so_far_fits || total > cap);
            Ok(())
        })?;
    }
}

/// The retry layer asks the strategy for each retry's copy when the retry is sent: a
/// body the first attempt carried past the cap is not sent again, even with a
/// classifier that knows nothing of the cap (no `ReplayWatch` in the extensions).
#[tokio::test(start_paused = true)]
async fn retry_sends_no_copy_of_a_body_an_attempt_carried_past_the_cap() {
    use buttress::retry::{RetryConfig, RetryLayer};
    use http::Response;
    use http_body_util::StreamBody;
    use tower::{ServiceExt, service_fn};
    use tower_layer::Layer;

    use crate::classify::HttpClassify;

    // What each attempt's body delivered.
    let seen: Arc<Mutex<Vec<Result<Bytes, String>>>> = Arc::default();
    let server = {
        let seen = seen.clone();
        service_fn(move |req: Request<ReplayBody<_>>| {
            let seen = seen.clone();
            async move {
                let got = req.into_body().collect().await;
                seen.lock()
                    .unwrap()
                    .push(got.map(|c| c.to_bytes()).map_err(|e| e.to_string()));
                let mut res = Response::new(());
                *res.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
                Ok::<_, Infallible>(res)
            }
        })
    };
    let retry = RetryLayer::new(RetryConfig {
        max_attempts: 3,
        ..Default::default()
    })
    .with_classify(HttpClassify::new())
    .with_replay(HttpReplay::retry());
    let body = |cap| {
        let frames = [&b"1234"[..], b"5678"]
            .map(|c| Ok::<_, Infallible>(Frame::data(Bytes::from_static(c))));
        ReplayBody::new(StreamBody::new(futures_util::stream::iter(frames)), cap)
    };

    // Within the cap: every attempt gets the whole body.
    let req = Request::put("/").body(body(8)).unwrap();
    let res = retry.layer(server.clone()).oneshot(req).await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(
        *seen.lock().unwrap(),
        vec![Ok(Bytes::from_static(b"12345678")); 3]
    );

    // Past the cap: the first attempt gets it, and no truncated copy follows.
    seen.lock().unwrap().clear();
    let req = Request::put("/").body(body(7)).unwrap();
    let res = retry.layer(server).oneshot(req).await.unwrap();
    assert_eq!(res.status(), 503);
    assert_eq!(*seen.lock().unwrap(), [Ok(Bytes::from_static(b"12345678"))]);
}
