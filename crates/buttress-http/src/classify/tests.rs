use std::io;
use std::time::{Duration, SystemTime};

use buttress::rejection::{BulkheadFull, DoNotRetry, OverloadReason, Overloaded};
use buttress::{BoxError, Classifier, Classify, Origin, RetryClass, Verdict};
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode};
use proptest::prelude::*;

use super::*;
use crate::context::RequestContext;
use crate::hint::MAX_DELAY_HINT;

fn get() -> Request<()> {
    Request::get("/").body(()).unwrap()
}

fn grpc_req() -> Request<()> {
    Request::post("/pkg.Svc/Call")
        .header("content-type", "application/grpc")
        .body(())
        .unwrap()
}

fn res(status: u16, headers: &[(&'static str, &'static str)]) -> Response<()> {
    let mut r = Response::new(());
    *r.status_mut() = StatusCode::from_u16(status).unwrap();
    for (k, v) in headers {
        r.headers_mut().append(*k, HeaderValue::from_static(v));
    }
    r
}

fn classify_with(c: &HttpClassify, req: &Request<()>, r: &Response<()>) -> Classification {
    Classify::<_, Response<()>>::classify_request(c, req).classify(Ok(r))
}

fn classify(req: &Request<()>, r: &Response<()>) -> Classification {
    classify_with(&HttpClassify::new(), req, r)
}

fn classify_err(req: &Request<()>, err: impl Into<BoxError>) -> Classification {
    let err = err.into();
    Classifier::<Response<()>>::classify(HttpClassify::new().classifier(req), Err(&err))
}

#[test]
fn every_status_against_a_reference() {
    for code in 100..600u16 {
        let c = classify(&get(), &res(code, &[]));
        let retryable = matches!(code, 408 | 429 | 502 | 503 | 504);
        let verdict = match code {
            500..=599 => Verdict::Failure,
            408 | 429 => Verdict::Ignored,
            _ => Verdict::Success,
        };
        assert_eq!(c.verdict, verdict, "{code}");
        assert_eq!(
            c.retry,
            if retryable {
                RetryClass::IfSafe
            } else {
                RetryClass::No
            },
            "{code}"
        );
        assert_eq!(c.overload, matches!(code, 429 | 503), "{code}");
        assert_eq!(c.origin, Origin::Upstream);
        assert!(!c.do_not_retry);
    }
}

#[test]
fn retry_on_adds_statuses() {
    let c = HttpClassify::from_config(&ClassifyConfig {
        retry_on: vec![500, 409, 200, 999],
        ..ClassifyConfig::default()
    });
    assert!(classify_with(&c, &get(), &res(500, &[])).allows_retry(true));
    assert!(classify_with(&c, &get(), &res(409, &[])).allows_retry(true));
    assert!(
        classify_with(&c, &get(), &res(503, &[])).allows_retry(true),
        "defaults kept"
    );
    assert!(
        !classify_with(&c, &get(), &res(200, &[])).allows_retry(true),
        "2xx never retried"
    );
    let only: StatusSet = [StatusCode::BAD_GATEWAY].into_iter().collect();
    let narrow = HttpClassify::new().retry_statuses(only);
    assert!(!classify_with(&narrow, &get(), &res(503, &[])).allows_retry(true));
    assert!(classify_with(&narrow, &get(), &res(502, &[])).allows_retry(true));
}

#[test]
fn retry_after_becomes_the_delay_hint() {
    let c = classify(&get(), &res(503, &[("retry-after", "3")]));
    assert_eq!(c.delay_hint, Some(Duration::from_secs(3)));
    let c = classify(&get(), &res(429, &[("retry-after", " 1 ")]));
    assert_eq!(c.delay_hint, Some(Duration::from_secs(1)));
    assert_eq!(c.verdict, Verdict::Ignored, "429 is no breaker failure");
    // An HTTP-date a minute ahead.
    let date = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(61));
    let mut r = res(503, &[]);
    r.headers_mut()
        .insert("retry-after", HeaderValue::from_str(&date).unwrap());
    let hint = classify(&get(), &r).delay_hint.unwrap();
    assert!(
        hint > Duration::from_secs(55) && hint <= Duration::from_secs(61),
        "{hint:?}"
    );
    // Above any cap: still shown, so the retry layer sees it is too long.
    let c = classify(&get(), &res(503, &[("retry-after", "3600")]));
    assert_eq!(c.delay_hint, Some(Duration::from_secs(3600)));
    // Garbage is ignored; the answer is still retryable.
    let c = classify(&get(), &res(503, &[("retry-after", "tomorrow-ish")]));
    assert_eq!(c.delay_hint, None);
    assert!(c.allows_retry(true));
    // Not read on answers that are not retried.
    let c = classify(&get(), &res(500, &[("retry-after", "3")]));
    assert_eq!(c.delay_hint, None);
}

#[test]
fn the_do_not_retry_mark_is_honoured() {
    let c = classify(&get(), &res(503, &[("buttress-retry", "gave-up")]));
    assert!(c.do_not_retry);
    assert!(!c.allows_retry(true));
    assert_eq!(
        c.verdict,
        Verdict::Failure,
        "still a failure for the breaker"
    );
    let c = classify(
        &grpc_req(),
        &res(
            200,
            &[("grpc-status", "14"), ("grpc-retry-pushback-ms", "-1")],
        ),
    );
    assert!(c.do_not_retry);
}

#[test]
fn trailers_only_grpc_answers() {
    let c = classify(
        &grpc_req(),
        &res(
            200,
            &[("grpc-status", "14"), ("grpc-retry-pushback-ms", "250")],
        ),
    );
    assert_eq!(c.verdict, Verdict::Failure);
    assert_eq!(c.retry, RetryClass::IfSafe);
    assert_eq!(c.delay_hint, Some(Duration::from_millis(250)));
    assert!(c.overload);
    let c = classify(&grpc_req(), &res(200, &[("grpc-status", "8")]));
    assert_eq!(c.verdict, Verdict::Ignored);
    assert_eq!(c.retry, RetryClass::IfSafe);
    let c = classify(&grpc_req(), &res(200, &[("grpc-status", "0")]));
    assert_eq!(c.verdict, Verdict::Success);
    let c = classify(&grpc_req(), &res(200, &[("grpc-status", "13")]));
    assert_eq!((c.verdict, c.retry), (Verdict::Failure, RetryClass::No));
    // Malformed pushback: do not retry, as gRPC's retry design says.
    let c = classify(
        &grpc_req(),
        &res(
            200,
            &[("grpc-status", "14"), ("grpc-retry-pushback-ms", "soon")],
        ),
    );
    assert!(c.do_not_retry);
    // The response's own content type makes it gRPC too.
    let c = classify(
        &get(),
        &res(
            200,
            &[("content-type", "application/grpc"), ("grpc-status", "14")],
        ),
    );
    assert_eq!(c.verdict, Verdict::Failure);
    // A plain HTTP answer with a stray grpc-status is classified by its status.
    let c = classify(&get(), &res(200, &[("grpc-status", "14")]));
    assert_eq!(c.verdict, Verdict::Success);
}

#[test]
fn streamed_grpc_answers_wait_for_their_trailers() {
    let classifier = HttpClassify::new().classifier(&grpc_req());
    let streamed = res(200, &[("content-type", "application/grpc")]);
    let c = Classifier::<Response<()>>::classify(classifier.clone(), Ok(&streamed));
    assert_eq!(c.verdict, Verdict::Success);
    let eos = classifier
        .eos(&streamed)
        .expect("status comes in the trailers");
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("14"));
    trailers.insert("grpc-retry-pushback-ms", HeaderValue::from_static("40"));
    let at_end = eos.classify_eos(Some(&trailers));
    assert_eq!(at_end.verdict, Verdict::Failure);
    assert_eq!(at_end.delay_hint, Some(Duration::from_millis(40)));
    assert_eq!(
        eos.classify_eos(None).verdict,
        Verdict::Failure,
        "no status is UNKNOWN"
    );
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    assert_eq!(eos.classify_eos(Some(&trailers)).verdict, Verdict::Success);
    assert_eq!(eos.classify_body_error().verdict, Verdict::Failure);
    // Nothing to wait for: trailers-only, another status, or plain HTTP.
    assert!(classifier.eos(&res(200, &[("grpc-status", "0")])).is_none());
    assert!(classifier.eos(&res(503, &[])).is_none());
    assert!(
        HttpClassify::new()
            .classifier(&get())
            .eos(&res(200, &[]))
            .is_none()
    );
}

#[test]
fn a_proxy_503_to_a_grpc_call_is_an_http_answer() {
    let c = classify(&grpc_req(), &res(503, &[("retry-after", "2")]));
    assert_eq!(c.verdict, Verdict::Failure);
    assert_eq!(c.retry, RetryClass::IfSafe);
    assert_eq!(c.delay_hint, Some(Duration::from_secs(2)));
}

#[test]
fn transport_errors() {
    let refused = classify_err(&get(), io::Error::from(io::ErrorKind::ConnectionRefused));
    assert_eq!(refused.retry, RetryClass::Always);
    assert_eq!(refused.verdict, Verdict::Failure);
    assert!(refused.allows_retry(false), "nothing was sent: any method");
    let marked = classify_err(&get(), ConnectFailed::new("dns lookup failed"));
    assert_eq!(marked.retry, RetryClass::Always);
    let reset = classify_err(&get(), io::Error::from(io::ErrorKind::ConnectionReset));
    assert_eq!(reset.retry, RetryClass::IfSafe);
    assert!(!reset.allows_retry(false));
    let local = classify_err(
        &get(),
        Overloaded::new(OverloadReason::Shed, Duration::from_secs(1)),
    );
    assert_eq!(local.origin, Origin::Local);
    assert_eq!(local.delay_hint, Some(Duration::from_secs(1)));
    let gave_up = classify_err(
        &get(),
        DoNotRetry::new(io::Error::from(io::ErrorKind::ConnectionRefused)),
    );
    assert!(gave_up.do_not_retry);
    assert!(!gave_up.allows_retry(true));
    let bulkhead = classify_err(&get(), BulkheadFull::full());
    assert_eq!(bulkhead.verdict, Verdict::Ignored);
}

#[test]
fn request_safety() {
    let c = HttpClassify::new();
    let safe = |req: &Request<()>| Classifier::<Response<()>>::request_is_safe(&c.classifier(req));
    assert!(safe(&get()));
    assert!(!safe(&Request::post("/").body(()).unwrap()));
    assert!(safe(
        &Request::post("/")
            .header("idempotency-key", "k1")
            .body(())
            .unwrap()
    ));
    assert!(!safe(&grpc_req()));
    let grpc_safe = HttpClassify::new().safety(RetrySafety {
        grpc: true,
        ..RetrySafety::default()
    });
    assert!(Classifier::<Response<()>>::request_is_safe(
        &grpc_safe.classifier(&grpc_req())
    ));
    assert!(grpc_safe.classifier(&grpc_req()).is_grpc());
}

#[tokio::test]
async fn mark_gave_up_marks_the_answer_and_the_context() {
    let c = HttpClassify::new();
    let mut r = res(503, &[]);
    Classify::<Request<()>, _>::mark_gave_up(&c, &mut r);
    assert_eq!(r.headers()["buttress-retry"], "gave-up");
    assert!(
        classify(&get(), &r).do_not_retry,
        "the tier above honours it"
    );

    let mut g = res(
        200,
        &[
            ("content-type", "application/grpc"),
            ("grpc-status", "14"),
            ("grpc-retry-pushback-ms", "100"),
        ],
    );
    Classify::<Request<()>, _>::mark_gave_up(&c, &mut g);
    assert_eq!(g.headers()["grpc-retry-pushback-ms"], "-1");
    assert!(classify(&grpc_req(), &g).do_not_retry);

    // With a request context in scope, its flag is set too.
    let ctx = RequestContext::new(None);
    let seen = ctx.clone();
    ctx.scope(async move {
        let mut r = res(503, &[]);
        Classify::<Request<()>, _>::mark_gave_up(&c, &mut r);
    })
    .await;
    assert!(seen.gave_up());
}

proptest! {
    #[test]
    fn arbitrary_delay_headers_never_panic_nor_exceed_the_cap(bytes in proptest::collection::vec(any::<u8>(), 0..48), status in prop_oneof![Just(429u16), Just(503u16)]) {
        let Ok(value) = HeaderValue::from_bytes(&bytes) else { return Ok(()) };
        let mut r = Response::new(());
        *r.status_mut() = StatusCode::from_u16(status).unwrap();
        r.headers_mut().insert("retry-after", value.clone());
        let c = classify(&get(), &r);
        prop_assert!(c.delay_hint.is_none_or(|d| d <= MAX_DELAY_HINT));

        let mut g = res(200, &[("grpc-status", "14")]);
        g.headers_mut().insert("grpc-retry-pushback-ms", value.clone());
        g.headers_mut().insert("grpc-status", value);
        let c = classify(&grpc_req(), &g);
        prop_assert!(c.delay_hint.is_none_or(|d| d <= MAX_DELAY_HINT));
        // A delay and the do-not-retry mark never come together from one pushback.
        prop_assert!(!(c.delay_hint.is_some() && c.do_not_retry));
    }
}

#[tokio::test]
async fn a_body_that_went_past_its_replay_cap_is_not_retried() {
    use crate::replay::{BufferRequestBodyLayer, ReplayBody, ReplayWatch};
    use http_body_util::{BodyExt, StreamBody};
    use tower::{Layer, ServiceExt, service_fn};

    // A streamed body of unknown size, read through the layer that records its watch.
    let chunks = || {
        let frames = [&b"1234"[..], b"5678"]
            .map(|c| Ok::<_, io::Error>(http_body::Frame::data(bytes::Bytes::from_static(c))));
        StreamBody::new(futures_util::stream::iter(frames))
    };
    let reader = service_fn(|req: Request<ReplayBody<_>>| async move {
        let watch = req.extensions().get::<ReplayWatch>().cloned().unwrap();
        let before = watch.is_spent();
        let classifier = HttpClassify::new().classifier(&req);
        req.into_body().collect().await.unwrap();
        Ok::<_, BoxError>((before, classifier))
    });
    let unavailable = res(503, &[]);

    let within = Request::put("/").body(chunks()).unwrap();
    let (before, classifier) = BufferRequestBodyLayer::new(8)
        .layer(reader)
        .oneshot(within)
        .await
        .unwrap();
    assert!(!before);
    let c = Classifier::<Response<()>>::classify(classifier, Ok(&unavailable));
    assert_eq!(c.retry, RetryClass::IfSafe, "within the cap: retryable");

    let past = Request::put("/").body(chunks()).unwrap();
    let (before, classifier) = BufferRequestBodyLayer::new(7)
        .layer(reader)
        .oneshot(past)
        .await
        .unwrap();
    assert!(!before, "nothing read yet when the request went out");
    let c = Classifier::<Response<()>>::classify(classifier, Ok(&unavailable));
    assert_eq!(
        c.retry,
        RetryClass::No,
        "the attempt carried the body past the cap"
    );
    assert_eq!(c.verdict, Verdict::Failure, "the verdict is the answer's");
}
