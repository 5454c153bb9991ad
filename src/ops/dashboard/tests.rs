//! The dashboard's web side against a fixed source: who may look, the
//! page and its headers, the JSON endpoints' answers and refusals, and the
//! bounds of the event streams.

use std::net::SocketAddr;
use std::time::Duration;

use http::{header, Request, Response, StatusCode};
use http_body_util::BodyExt as _;
use serde_json::json;

use super::*;

/// A source answering each view with a fixed value (findings fail).
struct Fixed {
    changes: broadcast::Sender<Topic>,
}

impl Source for Fixed {
    fn view(&self, view: View) -> BoxFuture<'_, Result<serde_json::Value, SourceError>> {
        Box::pin(async move {
            match view {
                View::Overview => Ok(json!({ "view": "overview" })),
                View::Entries(q) => Ok(json!({ "q": q.q, "page": q.page })),
                View::Findings => Err(SourceError("the store is down".into())),
                other => Ok(json!({ "view": format!("{other:?}") })),
            }
        })
    }

    fn changes(&self) -> broadcast::Receiver<Topic> {
        self.changes.subscribe()
    }
}

struct Fixture {
    dashboard: Dashboard,
    changes: broadcast::Sender<Topic>,
    stop: watch::Sender<bool>,
}

fn fixture() -> Fixture {
    let changes = broadcast::channel(16).0;
    let (stop, stop_rx) = watch::channel(false);
    let source = Arc::new(Fixed {
        changes: changes.clone(),
    });
    Fixture {
        dashboard: Dashboard::new(source, stop_rx),
        changes,
        stop,
    }
}

/// A GET of `path` from `peer` naming `host`, as the listener hands it on.
pub(crate) fn request(path: &str, peer: &str, host: &str) -> Request<()> {
    let peer: SocketAddr = peer.parse().unwrap();
    let mut req = Request::get(path)
        .header(header::HOST, host)
        .body(())
        .unwrap();
    req.extensions_mut().insert(Connection::new(peer));
    req
}

/// A GET of `path` from a loopback peer.
pub(crate) fn local(path: &str) -> Request<()> {
    request(path, "127.0.0.1:40000", "127.0.0.1:9464")
}

pub(crate) async fn text_of(r: Response<Body>) -> String {
    let bytes = r.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

pub(crate) async fn json_of(r: Response<Body>) -> serde_json::Value {
    let content_type = r.headers()[header::CONTENT_TYPE].clone();
    assert_eq!(content_type, "application/json");
    serde_json::from_str(&text_of(r).await).unwrap()
}

#[tokio::test]
async fn a_non_loopback_peer_is_refused_on_every_path() {
    let f = fixture();
    for path in [
        "/",
        "/dashboard/app.js",
        "/dashboard/api/overview",
        "/dashboard/api/events",
    ] {
        let r = f
            .dashboard
            .answer(&request(path, "192.0.2.7:40000", "127.0.0.1:9464"))
            .await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{path}");
        assert!(text_of(r).await.contains("loopback peers only"), "{path}");
        let r = f
            .dashboard
            .answer(&request(path, "127.0.0.1:40000", "rebound.example:9464"))
            .await;
        assert_eq!(r.status(), StatusCode::FORBIDDEN, "{path}");
    }
    // No connection information at all: refused too.
    let bare = Request::get("/")
        .header(header::HOST, "127.0.0.1")
        .body(())
        .unwrap();
    assert_eq!(
        f.dashboard.answer(&bare).await.status(),
        StatusCode::FORBIDDEN
    );
    // Nothing was streamed to the refused peer.
    assert_eq!(f.dashboard.streams.available_permits(), sse::MAX_STREAMS);
}

#[tokio::test]
async fn the_page_and_its_assets_come_with_a_strict_policy() {
    let f = fixture();
    let r = f.dashboard.answer(&local("/")).await;
    assert_eq!(r.status(), StatusCode::OK);
    let csp = r.headers()[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .unwrap();
    assert!(
        csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    assert_eq!(r.headers()[header::CACHE_CONTROL], "no-store");
    assert!(text_of(r)
        .await
        .contains("<script src=\"/dashboard/app.js\""));
    for (path, kind) in [
        ("/dashboard/ui.js", "text/javascript"),
        ("/dashboard/app.js", "text/javascript"),
        ("/dashboard/app.css", "text/css"),
        ("/dashboard/icon.svg", "image/svg+xml"),
    ] {
        let r = f.dashboard.answer(&local(path)).await;
        assert_eq!(r.status(), StatusCode::OK, "{path}");
        assert!(r.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with(kind));
    }
    let r = f.dashboard.answer(&local("/dashboard/nothing.js")).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn json_endpoints_answer_views_and_name_bad_parameters() {
    let f = fixture();
    let ok = f.dashboard.answer(&local("/dashboard/api/overview")).await;
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(json_of(ok).await, json!({ "view": "overview" }));
    let search = local("/dashboard/api/entries?q=spiffe%3A%2F%2Fexample.org%2Fweb&page=2");
    let r = f.dashboard.answer(&search).await;
    assert_eq!(
        json_of(r).await,
        json!({ "q": "spiffe://example.org/web", "page": 2 })
    );
    let bad = f
        .dashboard
        .answer(&local("/dashboard/api/entries?page=two"))
        .await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
    let error = json_of(bad).await["error"].as_str().unwrap().to_string();
    assert!(error.starts_with("page:"), "{error}");
    let unknown = f.dashboard.answer(&local("/dashboard/api/keys")).await;
    assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
    let failed = f.dashboard.answer(&local("/dashboard/api/findings")).await;
    assert_eq!(failed.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(json_of(failed).await["error"], "the store is down");
}

/// The next data frame of an event stream, as text.
async fn next_event(body: &mut Body) -> Option<String> {
    let frame = tokio::time::timeout(Duration::from_secs(10), body.frame())
        .await
        .expect("an event within 10 s")?
        .unwrap();
    Some(String::from_utf8(frame.into_data().unwrap().to_vec()).unwrap())
}

#[tokio::test]
async fn event_streams_are_capped_outlive_the_timeout_and_end_at_stop() {
    let f = fixture();
    let mut head = local("/dashboard/api/events");
    *head.method_mut() = http::Method::HEAD;
    let r = f.dashboard.answer(&head).await;
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    let mut bodies = Vec::new();
    for _ in 0..sse::MAX_STREAMS {
        let req = local("/dashboard/api/events");
        let r = f.dashboard.answer(&req).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[header::CONTENT_TYPE], "text/event-stream");
        let connection = req.extensions().get::<Connection>().unwrap();
        assert!(connection.is_long_lived());
        bodies.push(r.into_body());
    }
    let refused_req = local("/dashboard/api/events");
    let refused = f.dashboard.answer(&refused_req).await;
    assert_eq!(refused.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(!refused_req
        .extensions()
        .get::<Connection>()
        .unwrap()
        .is_long_lived());

    let first = &mut bodies[0];
    assert!(next_event(first).await.unwrap().contains("event: hello"));
    f.changes.send(Topic::Entries).unwrap();
    let change = next_event(first).await.unwrap();
    assert_eq!(change, "event: change\ndata: {\"topic\":\"entries\"}\n\n");

    // A page that went away frees its place at once.
    bodies.truncate(1);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while f.dashboard.streams.available_permits() < sse::MAX_STREAMS - 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "streams not released"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    f.stop.send_replace(true);
    let mut last = bodies.pop().unwrap();
    while let Some(_event) = next_event(&mut last).await {}
}
