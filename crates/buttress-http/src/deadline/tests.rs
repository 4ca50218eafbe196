use std::convert::Infallible;
use std::time::Duration;

use buttress::rejection::DoNotRetry;
use buttress::{Attempt, BoxError, Deadline, RequestMeta};
use http::{HeaderMap, HeaderValue, Request, Response};
use proptest::prelude::*;
use tokio::time::Instant;
use tower::{ServiceExt, service_fn};
use tower_layer::Layer;

use super::*;
use crate::context::RequestContext;

/// A server that answers with the time its request has left.
async fn inbound(layer: DeadlineFromHeadersLayer, req: Request<()>) -> Option<Duration> {
    let now = Instant::now();
    layer
        .layer(service_fn(move |req: Request<()>| async move {
            Ok::<_, Infallible>(req.deadline().map(|d| d.remaining(now)))
        }))
        .oneshot(req)
        .await
        .unwrap()
}

fn with(headers: &[(&'static str, &'static str)]) -> Request<()> {
    let mut r = Request::new(());
    for (k, v) in headers {
        r.headers_mut().insert(*k, HeaderValue::from_static(v));
    }
    r
}

#[tokio::test(start_paused = true)]
async fn server_reads_grpc_timeout_in_every_unit() {
    let layer = DeadlineFromHeadersLayer::new(InboundDeadlineConfig {
        max: Duration::from_secs(100_000),
        ..Default::default()
    });
    for (v, d) in [
        ("1H", Duration::from_secs(3600)),
        ("2M", Duration::from_secs(120)),
        ("3S", Duration::from_secs(3)),
        ("40m", Duration::from_millis(40)),
        ("500u", Duration::from_micros(500)),
        ("600n", Duration::from_nanos(600)),
    ] {
        assert_eq!(
            inbound(layer.clone(), with(&[("grpc-timeout", v)])).await,
            Some(d),
            "{v}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn server_takes_the_smaller_clamps_and_ignores_garbage() {
    let layer = DeadlineFromHeadersLayer::new(InboundDeadlineConfig {
        max: Duration::from_secs(2),
        ..Default::default()
    });
    let ms = Duration::from_millis;
    assert_eq!(
        inbound(layer.clone(), with(&[("buttress-timeout-ms", "250")])).await,
        Some(ms(250))
    );
    assert_eq!(
        inbound(
            layer.clone(),
            with(&[("buttress-timeout-ms", "250"), ("grpc-timeout", "100m")])
        )
        .await,
        Some(ms(100))
    );
    assert_eq!(
        inbound(layer.clone(), with(&[("buttress-timeout-ms", "60000")])).await,
        Some(ms(2000)),
        "clamped"
    );
    assert_eq!(
        inbound(layer.clone(), with(&[("buttress-timeout-ms", "lots")])).await,
        None
    );
    assert_eq!(
        inbound(layer.clone(), with(&[("grpc-timeout", "123456789S")])).await,
        None,
        "9 digits"
    );
    assert_eq!(
        inbound(
            layer.clone(),
            with(&[("buttress-timeout-ms", "soon"), ("grpc-timeout", "7S")])
        )
        .await,
        Some(ms(2000))
    );
    assert_eq!(inbound(layer.clone(), with(&[])).await, None);
    assert_eq!(
        inbound(
            DeadlineFromHeadersLayer::disabled(),
            with(&[("buttress-timeout-ms", "250")])
        )
        .await,
        None
    );
    let custom = DeadlineFromHeadersLayer::new(InboundDeadlineConfig {
        header: http::HeaderName::from_static("x-deadline-ms"),
        grpc_timeout: false,
        ..Default::default()
    });
    assert_eq!(
        inbound(custom.clone(), with(&[("x-deadline-ms", "9")])).await,
        Some(ms(9))
    );
    assert_eq!(
        inbound(
            custom,
            with(&[("grpc-timeout", "9m"), ("buttress-timeout-ms", "9")])
        )
        .await,
        None
    );
}

#[tokio::test(start_paused = true)]
async fn server_keeps_an_earlier_deadline() {
    let now = Instant::now();
    let mut req = with(&[("buttress-timeout-ms", "500")]);
    req.set_deadline(Deadline::after(now, Duration::from_millis(100)));
    assert_eq!(
        inbound(DeadlineFromHeadersLayer::default(), req).await,
        Some(Duration::from_millis(100))
    );
    let mut req = with(&[("buttress-timeout-ms", "50")]);
    req.set_deadline(Deadline::after(now, Duration::from_millis(100)));
    assert_eq!(
        inbound(DeadlineFromHeadersLayer::default(), req).await,
        Some(Duration::from_millis(50))
    );
}

/// A transport that answers with the headers it was sent.
async fn outbound(layer: DeadlineToHeadersLayer, req: Request<()>) -> HeaderMap {
    layer
        .layer(service_fn(|req: Request<()>| async move {
            Ok::<_, Infallible>(req.headers().clone())
        }))
        .oneshot(req)
        .await
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn client_writes_time_left_minus_the_offset() {
    let now = Instant::now();
    let mut req = Request::new(());
    req.set_deadline(Deadline::after(now, Duration::from_millis(300)));
    req.set_attempt(Attempt::new(2));
    tokio::time::advance(Duration::from_millis(20)).await;
    let h = outbound(DeadlineToHeadersLayer::default(), req).await;
    assert_eq!(h["buttress-timeout-ms"], "275");
    assert_eq!(h["buttress-attempt"], "2");
    assert!(h.get("grpc-timeout").is_none());

    let mut req = Request::post("/pkg.Svc/Get")
        .header("content-type", "application/grpc")
        .body(())
        .unwrap();
    req.set_deadline(Deadline::after(Instant::now(), Duration::from_millis(300)));
    req.set_attempt(Attempt::new(3));
    let h = outbound(DeadlineToHeadersLayer::default(), req).await;
    assert_eq!(h["grpc-timeout"], "295000u");
    assert_eq!(h["grpc-previous-rpc-attempts"], "2");
    assert!(h.get("buttress-timeout-ms").is_none());
    assert!(h.get("buttress-attempt").is_none());
}

#[tokio::test(start_paused = true)]
async fn client_keeps_a_sooner_deadline_already_in_the_headers() {
    let grpc = |timeout: &'static str| {
        let mut req = Request::post("/pkg.Svc/Get")
            .header("content-type", "application/grpc")
            .header("grpc-timeout", timeout)
            .body(())
            .unwrap();
        req.set_deadline(Deadline::after(Instant::now(), Duration::from_millis(300)));
        req
    };
    let h = outbound(DeadlineToHeadersLayer::default(), grpc("100m")).await;
    assert_eq!(h["grpc-timeout"], "100m", "sooner: kept");
    let h = outbound(DeadlineToHeadersLayer::default(), grpc("10S")).await;
    assert_eq!(h["grpc-timeout"], "295000u", "later: replaced");
    let h = outbound(DeadlineToHeadersLayer::default(), grpc("garbage")).await;
    assert_eq!(h["grpc-timeout"], "295000u", "malformed: replaced");

    let mut req = Request::get("/")
        .header("buttress-timeout-ms", "40")
        .body(())
        .unwrap();
    req.set_deadline(Deadline::after(Instant::now(), Duration::from_millis(300)));
    let h = outbound(DeadlineToHeadersLayer::default(), req).await;
    assert_eq!(h["buttress-timeout-ms"], "40");
}

#[tokio::test(start_paused = true)]
async fn client_attempt_numbers() {
    let mut first = Request::post("/")
        .header("content-type", "application/grpc+proto")
        .body(())
        .unwrap();
    first.set_attempt(Attempt::FIRST);
    let h = outbound(DeadlineToHeadersLayer::default(), first).await;
    assert!(
        h.get("grpc-previous-rpc-attempts").is_none(),
        "gRPC sends it from the second attempt"
    );
    let mut plain = Request::new(());
    plain.set_attempt(Attempt::FIRST);
    assert_eq!(
        outbound(DeadlineToHeadersLayer::default(), plain).await["buttress-attempt"],
        "1"
    );
    let mut off = Request::new(());
    off.set_attempt(Attempt::new(4));
    let quiet = DeadlineToHeadersLayer::new(OutboundDeadlineConfig {
        attempts: false,
        ..Default::default()
    });
    assert!(outbound(quiet, off).await.is_empty());
    assert!(
        outbound(DeadlineToHeadersLayer::default(), Request::new(()))
            .await
            .is_empty(),
        "nothing known, nothing sent"
    );
}

#[tokio::test(start_paused = true)]
async fn client_passes_zero_once_the_deadline_is_gone() {
    let mut req = Request::new(());
    req.set_deadline(Deadline::after(Instant::now(), Duration::from_millis(3)));
    let h = outbound(DeadlineToHeadersLayer::default(), req).await;
    assert_eq!(h["buttress-timeout-ms"], "0");
}

#[tokio::test(start_paused = true)]
async fn client_inherits_the_context_deadline() {
    let now = Instant::now();
    let ctx = RequestContext::new(Some(Deadline::after(now, Duration::from_millis(200))));
    let h = ctx
        .clone()
        .scope(outbound(
            DeadlineToHeadersLayer::default(),
            Request::new(()),
        ))
        .await;
    assert_eq!(h["buttress-timeout-ms"], "195");
    // The earlier of both.
    let mut req = Request::new(());
    req.set_deadline(Deadline::after(now, Duration::from_millis(100)));
    let h = ctx
        .clone()
        .scope(outbound(DeadlineToHeadersLayer::default(), req))
        .await;
    assert_eq!(h["buttress-timeout-ms"], "95");
    let mut req = Request::new(());
    req.set_deadline(Deadline::after(now, Duration::from_secs(100)));
    let h = ctx
        .scope(outbound(DeadlineToHeadersLayer::default(), req))
        .await;
    assert_eq!(h["buttress-timeout-ms"], "195");
}

#[tokio::test(start_paused = true)]
async fn inherit_context_sets_the_deadline_and_reports_marks() {
    let now = Instant::now();
    let ctx = RequestContext::new(Some(Deadline::after(now, Duration::from_millis(200))));
    let echo = service_fn(|req: Request<()>| async move {
        let mut res = Response::new(req.deadline());
        res.headers_mut()
            .insert("buttress-retry", HeaderValue::from_static("gave-up"));
        Ok::<_, BoxError>(res)
    });
    let svc = InheritContextLayer::new().layer(echo);
    let seen = ctx.clone();
    let got = ctx
        .scope(svc.clone().oneshot(Request::new(())))
        .await
        .unwrap();
    assert_eq!(
        got.into_body(),
        Some(Deadline::after(now, Duration::from_millis(200)))
    );
    assert!(seen.gave_up(), "a marked answer is reported to the context");

    let failing = InheritContextLayer::new().layer(service_fn(|_req: Request<()>| async {
        Err::<Response<()>, _>(BoxError::from(DoNotRetry::new("exhausted")))
    }));
    let ctx = RequestContext::new(None);
    let seen = ctx.clone();
    assert!(ctx.scope(failing.oneshot(Request::new(()))).await.is_err());
    assert!(seen.gave_up(), "so is a marked error");

    // Outside any context: nothing inherited, nothing to report.
    let got = svc.oneshot(Request::new(())).await.unwrap();
    assert_eq!(got.into_body(), None);
    let disabled =
        InheritContextLayer::disabled().layer(service_fn(|req: Request<()>| async move {
            Ok::<_, BoxError>(Response::new(req.deadline()))
        }));
    let ctx = RequestContext::new(Some(Deadline::after(now, Duration::from_millis(5))));
    assert_eq!(
        ctx.scope(disabled.oneshot(Request::new(())))
            .await
            .unwrap()
            .into_body(),
        None
    );
}

#[tokio::test(start_paused = true)]
async fn a_300ms_client_deadline_reaches_the_server_as_295ms() {
    // Client side: a deadline 300 ms out, written as a header ...
    let mut req = Request::new(());
    req.set_deadline(Deadline::after(Instant::now(), Duration::from_millis(300)));
    let headers = outbound(DeadlineToHeadersLayer::default(), req).await;
    // ... read back by the server.
    let mut inbound_req = Request::new(());
    *inbound_req.headers_mut() = headers;
    assert_eq!(
        inbound(DeadlineFromHeadersLayer::default(), inbound_req).await,
        Some(Duration::from_millis(295))
    );
}

proptest! {
    #[test]
    fn arbitrary_deadline_headers_never_panic_nor_exceed_the_max(
        grpc in proptest::collection::vec(any::<u8>(), 0..16),
        ms in proptest::collection::vec(any::<u8>(), 0..24),
        max_ms in 0u64..10_000_000,
    ) {
        let config = InboundDeadlineConfig { max: Duration::from_millis(max_ms), ..Default::default() };
        let mut headers = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_bytes(&grpc) {
            headers.insert("grpc-timeout", v);
        }
        if let Ok(v) = HeaderValue::from_bytes(&ms) {
            headers.insert("buttress-timeout-ms", v);
        }
        if let Some(b) = config.budget(&headers) {
            prop_assert!(b <= config.max);
        }
    }

    #[test]
    fn valid_millisecond_headers_are_read_exactly(ms in 0u64..1_000_000) {
        let config = InboundDeadlineConfig { max: Duration::from_secs(10_000), ..Default::default() };
        let mut headers = HeaderMap::new();
        headers.insert("buttress-timeout-ms", HeaderValue::from(ms));
        prop_assert_eq!(config.budget(&headers), Some(Duration::from_millis(ms)));
    }
}
