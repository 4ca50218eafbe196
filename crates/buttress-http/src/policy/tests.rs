use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use buttress::backoff::Backoff;
use buttress::retry::RetryConfig;
use buttress::shed::ShedConfig;
use buttress::{Policy, Priority, RequestMeta};
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use tower::{Layer, ServiceBuilder, ServiceExt, service_fn};

use super::*;
use crate::context::RequestContext;

fn retrying() -> HttpPolicy {
    HttpPolicy::new(
        Policy::default()
            .with_timeout(Duration::from_secs(1))
            .with_retry(
                RetryConfig::default().with_backoff(Backoff::constant(Duration::from_millis(5))),
            ),
    )
}

type Sent = Request<crate::replay::ReplayBody<Full<Bytes>>>;

/// A transport that answers `statuses` in turn (then 200), echoing what it was sent
/// and counting calls into `calls`.
fn counting(
    statuses: &'static [u16],
    calls: Arc<AtomicU32>,
) -> impl tower::Service<Sent, Response = Response<String>, Error = buttress::BoxError, Future: Send>
+ Clone {
    service_fn(move |req: Sent| {
        let n = calls.fetch_add(1, Ordering::SeqCst) as usize;
        async move {
            let status = statuses.get(n).copied().unwrap_or(200);
            let headers = req.headers().clone();
            let body = req.into_body().collect().await?.to_bytes();
            let seen = format!(
                "{} {} {}",
                headers
                    .get("buttress-attempt")
                    .map_or("-", |v| v.to_str().unwrap()),
                headers
                    .get("buttress-timeout-ms")
                    .map_or("-", |v| v.to_str().unwrap()),
                String::from_utf8_lossy(&body),
            );
            Ok::<_, buttress::BoxError>(Response::builder().status(status).body(seen)?)
        }
    })
}

/// [`counting`] with a fresh counter.
fn transport(
    statuses: &'static [u16],
) -> (
    impl tower::Service<Sent, Response = Response<String>, Error = buttress::BoxError, Future: Send>
    + Clone,
    Arc<AtomicU32>,
) {
    let calls = Arc::new(AtomicU32::new(0));
    (counting(statuses, calls.clone()), calls)
}

fn post(key: Option<&str>, body: &'static str) -> Request<Full<Bytes>> {
    let mut req = Request::post("http://orders.internal/orders");
    if let Some(key) = key {
        req = req.header("idempotency-key", key);
    }
    req.body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap()
}

#[tokio::test(start_paused = true)]
async fn the_client_stack_retries_safe_requests_with_their_body_and_deadline() {
    let (svc, calls) = transport(&[503]);
    let client = ServiceBuilder::new()
        .layer(retrying().client_layer())
        .service(svc);
    let res = client.oneshot(post(Some("k-1"), "order")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    // Second attempt, the total timeout's deadline minus the 5 ms offset (and the
    // 5 ms backoff), the same body.
    assert_eq!(res.body(), "2 990 order");
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test(start_paused = true)]
async fn the_client_stack_keeps_the_classifier_settings() {
    // Unsafe request: sent once.
    let (svc, calls) = transport(&[503]);
    let client = ServiceBuilder::new()
        .layer(retrying().client_layer())
        .service(svc);
    let res = client.oneshot(post(None, "order")).await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(calls.load(Ordering::SeqCst), 1);

    // Every request declared safe, and 409 retried too.
    let (svc, calls) = transport(&[409]);
    let policy = retrying()
        .with_retry_safety(crate::classify::RetrySafety {
            all: true,
            ..Default::default()
        })
        .with_retry_on([StatusCode::CONFLICT]);
    let layer = policy.client_layer();
    let client = ServiceBuilder::new().layer(layer.clone()).service(svc);
    let res = client.oneshot(post(None, "order")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(calls.load(Ordering::SeqCst), 2);
    assert_eq!(layer.handles().retry.unwrap().snapshot().retries, 1);
}

#[tokio::test(start_paused = true)]
async fn the_client_stack_sends_bodies_past_the_cap_once() {
    let (svc, calls) = transport(&[503]);
    let client = ServiceBuilder::new()
        .layer(retrying().with_replay_cap(3).client_layer())
        .service(svc);
    let res = client.oneshot(post(Some("k-2"), "order")).await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.body(), "1 995 order");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test(start_paused = true)]
async fn switched_off_parts_keep_the_type_and_do_nothing() {
    let (svc, _) = transport(&[]);
    let policy = retrying().with_deadline_out(None).with_context(false);
    let client: HttpClient<_> = HttpClientLayer::new(&policy).layer(svc);
    let res = client.oneshot(post(None, "x")).await.unwrap();
    assert_eq!(res.body(), "- - x", "no attempt header, no deadline header");
}

/// A handler that reports what it was given: deadline, priority, request context.
async fn report(req: Request<Full<Bytes>>) -> Result<Response<Full<Bytes>>, Infallible> {
    let left = req
        .deadline()
        .map(|d| d.remaining(tokio::time::Instant::now()).as_millis());
    let seen = format!(
        "{left:?} {:?} {}",
        req.priority(),
        RequestContext::current().is_some()
    );
    Ok(Response::new(Full::new(Bytes::from(seen))))
}

fn get(headers: &[(&str, &str)]) -> Request<Full<Bytes>> {
    let mut req = Request::get("/report");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    req.body(Full::default()).unwrap()
}

async fn text<B: http_body::Body>(res: Response<B>) -> String
where
    B::Error: std::fmt::Debug,
{
    String::from_utf8(res.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
}

#[tokio::test(start_paused = true)]
async fn the_server_stack_reads_deadline_and_priority_and_scopes_the_context() {
    let server = ServiceBuilder::new()
        .layer(HttpPolicy::default().server_layer())
        .service(service_fn(report));
    let res = server
        .clone()
        .oneshot(get(&[
            ("buttress-timeout-ms", "250"),
            ("buttress-priority", "sheddable"),
        ]))
        .await
        .unwrap();
    assert_eq!(text(res).await, "Some(250) Sheddable true");

    let policy = HttpPolicy::default()
        .with_deadline_in(None)
        .with_priority(None)
        .with_context(false);
    let server = ServiceBuilder::new()
        .layer(policy.server_layer())
        .service(service_fn(report));
    let res = server
        .oneshot(get(&[
            ("buttress-timeout-ms", "250"),
            ("buttress-priority", "sheddable"),
        ]))
        .await
        .unwrap();
    assert_eq!(
        text(res).await,
        format!("None {:?} false", Priority::default())
    );
}

#[tokio::test(start_paused = true)]
async fn the_server_stack_answers_rejections() {
    let layer = HttpPolicy::new(Policy::default().with_shed(ShedConfig::default())).server_layer();
    let server = ServiceBuilder::new()
        .layer(layer.clone())
        .service(service_fn(report));
    layer.handles().shed.unwrap().drain();
    let res = server.clone().oneshot(get(&[])).await.unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.headers()["retry-after"], "1");

    // A timeout at the caller's deadline, answered with the configured status.
    let policy = HttpPolicy::default().with_rejection(crate::rejection::RejectionConfig {
        timeout_status: StatusCode::SERVICE_UNAVAILABLE,
        ..Default::default()
    });
    let slow = service_fn(|_req: Request<Full<Bytes>>| async {
        tokio::time::sleep(Duration::from_secs(60)).await;
        Ok::<_, Infallible>(Response::new(Full::<Bytes>::default()))
    });
    let server = ServiceBuilder::new()
        .layer(policy.server_layer())
        .service(slow);
    let start = tokio::time::Instant::now();
    let res = server
        .oneshot(get(&[("buttress-timeout-ms", "100")]))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(start.elapsed(), Duration::from_millis(100));
}

#[tokio::test(start_paused = true)]
async fn the_server_stack_uses_the_error_handler() {
    let failing = service_fn(|_req: Request<Full<Bytes>>| async {
        Err::<Response<Full<Bytes>>, _>(buttress::BoxError::from("database on fire"))
    });
    let layer = HttpPolicy::default().server_layer().with_error_handler(
        |err: buttress::BoxError, _: crate::rejection::Protocol| {
            let mut res = Response::new(Bytes::from(err.to_string()));
            *res.status_mut() = StatusCode::BAD_GATEWAY;
            res
        },
    );
    let res = ServiceBuilder::new()
        .layer(layer)
        .service(failing)
        .oneshot(get(&[]))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::BAD_GATEWAY);
    assert_eq!(text(res).await, "database on fire");
}

/// A body the test streams by hand, chunk by chunk.
type Streamed = http_body_util::StreamBody<
    std::pin::Pin<
        Box<dyn futures_util::Stream<Item = Result<http_body::Frame<Bytes>, Infallible>> + Send>,
    >,
>;

fn streamed(rx: Option<tokio::sync::mpsc::Receiver<Bytes>>) -> Streamed {
    let chunks = futures_util::stream::unfold(rx, |rx| async move {
        let mut rx = rx?;
        let chunk = rx.recv().await?;
        Some((Ok(http_body::Frame::data(chunk)), Some(rx)))
    });
    http_body_util::StreamBody::new(Box::pin(chunks))
}

/// A handler answering each request with a body streamed from the next of `bodies`
/// (an empty body once they are used up).
fn streaming(
    bodies: Vec<tokio::sync::mpsc::Receiver<Bytes>>,
) -> impl tower::Service<
    Request<Full<Bytes>>,
    Response = Response<Streamed>,
    Error = Infallible,
    Future: Send,
> + Clone {
    let bodies = Arc::new(std::sync::Mutex::new(std::collections::VecDeque::from(
        bodies,
    )));
    service_fn(move |_req: Request<Full<Bytes>>| {
        let rx = bodies.lock().unwrap().pop_front();
        async move { Ok::<_, Infallible>(Response::new(streamed(rx))) }
    })
}

/// The server stack with a bulkhead of one around a streaming handler; the sender
/// streams the first answer's body.
fn one_at_a_time() -> (
    impl tower::Service<
        Request<Full<Bytes>>,
        Response = Response<impl http_body::Body<Data = Bytes, Error: std::fmt::Debug>>,
        Error = Infallible,
        Future: Send,
    > + Clone,
    buttress::bulkhead::BulkheadHandle,
    tokio::sync::mpsc::Sender<Bytes>,
) {
    let layer = HttpPolicy::new(
        Policy::default().with_bulkhead(buttress::bulkhead::BulkheadConfig::new(1)),
    )
    .server_layer();
    let bulkhead = layer.handles().bulkhead.unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let server = ServiceBuilder::new()
        .layer(layer)
        .service(streaming(vec![rx]));
    (server, bulkhead, tx)
}

#[tokio::test(start_paused = true)]
async fn the_server_stack_holds_the_bulkhead_permit_until_the_body_ends() {
    let (server, bulkhead, tx) = one_at_a_time();
    let first = server.clone().oneshot(get(&[])).await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    let mut body = first.into_body();
    tx.send(Bytes::from_static(b"part one")).await.unwrap();
    let chunk = body.frame().await.unwrap().unwrap().into_data().unwrap();
    assert_eq!(&chunk[..], b"part one");

    // The head is long gone, but the body is still being read: the permit is held.
    assert_eq!(bulkhead.snapshot().running, 1);
    let second = server.clone().oneshot(get(&[])).await.unwrap();
    assert_eq!(second.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(second.headers().contains_key("retry-after"));
    assert_eq!(bulkhead.snapshot().rejected, 1);

    // The body ends: the permit is released and the next request is admitted.
    drop(tx);
    assert!(body.frame().await.is_none());
    assert_eq!(bulkhead.snapshot().running, 0);
    let third = server.clone().oneshot(get(&[])).await.unwrap();
    assert_eq!(third.status(), StatusCode::OK);
    assert_eq!(text(third).await, "");
    assert_eq!(bulkhead.snapshot().running, 0);
}

#[tokio::test(start_paused = true)]
async fn the_server_stack_releases_the_bulkhead_permit_of_a_body_dropped_unread() {
    let (server, bulkhead, _tx) = one_at_a_time();
    let first = server.clone().oneshot(get(&[])).await.unwrap();
    assert_eq!(first.status(), StatusCode::OK);
    assert_eq!(bulkhead.snapshot().running, 1);
    let refused = server.clone().oneshot(get(&[])).await.unwrap();
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);

    // The reader goes away without reading a byte (its sender still open).
    drop(first);
    assert_eq!(bulkhead.snapshot().running, 0);
    let admitted = server.clone().oneshot(get(&[])).await.unwrap();
    assert_eq!(admitted.status(), StatusCode::OK);
}

#[tokio::test(start_paused = true)]
async fn the_server_stack_drains_only_once_streamed_bodies_end() {
    let layer = HttpPolicy::new(Policy::default().with_shed(ShedConfig::default())).server_layer();
    let shed = layer.handles().shed.unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let server = ServiceBuilder::new()
        .layer(layer)
        .service(streaming(vec![rx]));
    let first = server.clone().oneshot(get(&[])).await.unwrap();
    assert_eq!(shed.in_flight(), 1);
    shed.drain();
    let drained = {
        let shed = shed.clone();
        tokio::spawn(async move { shed.drained().await })
    };
    tokio::task::yield_now().await;
    assert!(!drained.is_finished());

    drop(tx);
    assert_eq!(text(first).await, "");
    assert_eq!(shed.in_flight(), 0);
    tokio::time::timeout(Duration::from_secs(1), drained)
        .await
        .expect("drained once the body ended")
        .unwrap();
}

#[cfg(feature = "serde")]
mod serde {
    use super::*;

    #[test]
    fn reads_the_generic_and_the_http_settings_side_by_side() {
        let p: HttpPolicy = serde_json::from_str(
            r#"{
                "timeout": "2s",
                "retry": {"max_attempts": 4},
                "retry_on": [409],
                "retry_safety": {"grpc": true},
                "replay_cap": 1024,
                "deadline_out": {"offset": "10ms"},
                "deadline_in": true,
                "priority": false,
                "rejection": {"timeout_status": 503}
            }"#,
        )
        .unwrap();
        assert_eq!(p.policy.timeout, Some(Duration::from_secs(2)));
        assert_eq!(p.policy.retry.unwrap().max_attempts, 4);
        assert_eq!(p.retry_on, [409]);
        assert!(p.retry_safety.grpc && p.retry_safety.idempotency_key);
        assert_eq!(p.replay_cap, 1024);
        assert_eq!(
            p.deadline_out.as_ref().unwrap().offset,
            Duration::from_millis(10)
        );
        assert_eq!(p.deadline_in, Some(Default::default()));
        assert_eq!(p.priority, None);
        assert_eq!(p.rejection.timeout_status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(p.context, "defaults fill the rest");
        assert!(
            p.classify()
                .retryable_statuses()
                .contains(StatusCode::CONFLICT)
        );

        let back: HttpPolicy = serde_json::from_str(&serde_json::to_string(&p).unwrap()).unwrap();
        assert_eq!(back, p);
        let empty: HttpPolicy = serde_json::from_str("{}").unwrap();
        assert_eq!(empty, HttpPolicy::default());
    }

    #[test]
    fn unknown_keys_are_errors_everywhere() {
        for bad in [
            r#"{"timeuot": "2s"}"#,
            r#"{"retry": {"max_attempt": 4}}"#,
            r#"{"deadline_out": {"ofset": "1ms"}}"#,
            r#"{"retry_safety": {"everything": true}}"#,
        ] {
            let err = serde_json::from_str::<HttpPolicy>(bad).unwrap_err();
            assert!(err.to_string().contains("unknown field"), "{bad}: {err}");
        }
        let err = serde_json::from_str::<HttpPolicy>(r#"{"priority": 3}"#).unwrap_err();
        assert!(err.to_string().contains("table of settings"), "{err}");
    }
}
