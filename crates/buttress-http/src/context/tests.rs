use std::convert::Infallible;
use std::time::Duration;

use buttress::rejection::is_marked_do_not_retry;
use buttress::{BoxError, Deadline, RequestMeta};
use http::{Request, Response, StatusCode};
use tokio::time::Instant;
use tower::{ServiceBuilder, ServiceExt, service_fn};
use tower_layer::Layer;

use super::*;

fn answer(status: u16) -> Response<()> {
    let mut r = Response::new(());
    *r.status_mut() = StatusCode::from_u16(status).unwrap();
    r
}

fn gives_up_with(
    status: u16,
) -> impl tower::Service<Request<()>, Response = Response<()>, Error = Infallible, Future: Send> + Clone
{
    service_fn(move |_req: Request<()>| async move {
        assert!(
            RequestContext::mark_current_gave_up(),
            "a context is in scope"
        );
        tokio::task::yield_now().await;
        Ok::<_, Infallible>(answer(status))
    })
}

#[tokio::test(start_paused = true)]
async fn the_handler_sees_the_inbound_deadline() {
    let now = Instant::now();
    let svc = ContextScopeLayer::new().layer(service_fn(|_req: Request<()>| async {
        tokio::task::yield_now().await;
        Ok::<_, Infallible>(Response::new(RequestContext::current_deadline()))
    }));
    let mut req = Request::new(());
    let deadline = Deadline::after(now, Duration::from_millis(300));
    req.set_deadline(deadline);
    assert_eq!(
        svc.clone().oneshot(req).await.unwrap().into_body(),
        Some(deadline)
    );
    assert_eq!(
        svc.oneshot(Request::new(())).await.unwrap().into_body(),
        None
    );
    assert!(
        RequestContext::current().is_none(),
        "nothing leaks out of the scope"
    );
}

#[tokio::test]
async fn failures_are_marked_when_an_outbound_call_gave_up() {
    let svc = ContextScopeLayer::new().layer(gives_up_with(503));
    let res = svc.oneshot(Request::new(())).await.unwrap();
    assert_eq!(res.headers()["buttress-retry"], "gave-up");
}

#[tokio::test]
async fn successes_are_never_marked() {
    let res = ContextScopeLayer::new()
        .layer(gives_up_with(200))
        .oneshot(Request::new(()))
        .await
        .unwrap();
    assert!(res.headers().get("buttress-retry").is_none());
}

#[tokio::test]
async fn no_mark_without_a_give_up() {
    let svc = ContextScopeLayer::new().layer(service_fn(|_req: Request<()>| async {
        Ok::<_, Infallible>(answer(503))
    }));
    let res = svc.oneshot(Request::new(())).await.unwrap();
    assert!(res.headers().get("buttress-retry").is_none());
}

#[tokio::test]
async fn grpc_answers_get_a_negative_pushback_unless_ok() {
    let grpc = |status: &'static str| {
        service_fn(move |_req: Request<()>| async move {
            RequestContext::mark_current_gave_up();
            let mut r = answer(200);
            r.headers_mut()
                .insert("content-type", "application/grpc".parse().unwrap());
            if !status.is_empty() {
                r.headers_mut()
                    .insert("grpc-status", status.parse().unwrap());
            }
            Ok::<_, Infallible>(r)
        })
    };
    let res = ContextScopeLayer::new()
        .layer(grpc("14"))
        .oneshot(Request::new(()))
        .await
        .unwrap();
    assert_eq!(res.headers()["grpc-retry-pushback-ms"], "-1");
    let res = ContextScopeLayer::new()
        .layer(grpc(""))
        .oneshot(Request::new(()))
        .await
        .unwrap();
    assert_eq!(
        res.headers()["grpc-retry-pushback-ms"],
        "-1",
        "a streamed answer may still fail"
    );
    let res = ContextScopeLayer::new()
        .layer(grpc("0"))
        .oneshot(Request::new(()))
        .await
        .unwrap();
    assert!(res.headers().get("grpc-retry-pushback-ms").is_none());
}

#[tokio::test]
async fn errors_are_wrapped_in_the_mark() {
    let svc = ContextScopeLayer::new().layer(service_fn(|_req: Request<()>| async {
        RequestContext::mark_current_gave_up();
        Err::<Response<()>, BoxError>("upstream broke".into())
    }));
    let err = svc.oneshot(Request::new(())).await.unwrap_err();
    assert!(is_marked_do_not_retry(err.as_ref()));
    assert_eq!(err.to_string(), "gave up after retries: upstream broke");
}

#[tokio::test]
async fn work_done_in_call_is_scoped_too() {
    #[derive(Clone)]
    struct EagerService;
    impl tower::Service<Request<()>> for EagerService {
        type Response = Response<()>;
        type Error = Infallible;
        type Future = std::future::Ready<Result<Response<()>, Infallible>>;
        fn poll_ready(
            &mut self,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Result<(), Infallible>> {
            std::task::Poll::Ready(Ok(()))
        }
        fn call(&mut self, _: Request<()>) -> Self::Future {
            RequestContext::mark_current_gave_up();
            std::future::ready(Ok(answer(502)))
        }
    }
    let res = ServiceBuilder::new()
        .layer(ContextScopeLayer::new())
        .service(EagerService)
        .oneshot(Request::new(()))
        .await
        .unwrap();
    assert_eq!(res.headers()["buttress-retry"], "gave-up");
}

#[tokio::test]
async fn spawned_work_shares_the_flag_when_carried() {
    let svc = ContextScopeLayer::new().layer(service_fn(|_req: Request<()>| async {
        let ctx = RequestContext::current().unwrap();
        tokio::spawn(ctx.scope(async {
            RequestContext::mark_current_gave_up();
        }))
        .await
        .unwrap();
        Ok::<_, Infallible>(answer(500))
    }));
    let res = svc.oneshot(Request::new(())).await.unwrap();
    assert_eq!(res.headers()["buttress-retry"], "gave-up");
}

#[tokio::test]
async fn disabled_is_a_pass_through() {
    let svc = ContextScopeLayer::disabled().layer(service_fn(|_req: Request<()>| async {
        assert!(!RequestContext::mark_current_gave_up(), "no context");
        Ok::<_, Infallible>(answer(503))
    }));
    let res = svc.oneshot(Request::new(())).await.unwrap();
    assert!(res.headers().get("buttress-retry").is_none());
}
