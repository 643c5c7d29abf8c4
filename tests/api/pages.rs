//! Server-rendered pages.

use crate::helpers::TestApp;

#[tokio::test]
async fn login_and_signup_pages_render_forms() {
    let app = TestApp::spawn().await;
    for (path, fields) in [
        ("/login", &["username", "password"][..]),
        ("/signup", &["username", "display_name", "password"][..]),
    ] {
        let response = app.get(path).await;
        assert_eq!(response.status(), 200, "{path}");
        let html = response.text().await.unwrap();
        assert!(html.contains("<form"), "{path}: {html}");
        for field in fields {
            assert!(
                html.contains(&format!("name=\"{field}\"")),
                "{path} lacks {field}"
            );
        }
        assert!(
            html.contains("/pkg/dealnest-chat"),
            "{path} loads the app bundle"
        );
    }
}

#[tokio::test]
async fn home_sends_anonymous_visitors_to_login() {
    let app = TestApp::spawn().await;
    // A browser navigation (Accept: text/html) gets a real redirect.
    let response = app
        .http
        .get(format!("{}/", app.base))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 302);
    assert_eq!(response.headers()["location"], "/login");
}

#[tokio::test]
async fn health_reports_database() {
    let app = TestApp::spawn().await;
    let body: serde_json::Value = app.get("/health").await.json().await.unwrap();
    assert_eq!(body["database"], "ok");
}

#[tokio::test]
async fn unknown_api_endpoint_is_a_typed_404() {
    let app = TestApp::spawn().await;
    let body = app
        .call("channels/nope", None, serde_json::json!({}))
        .await
        .err(404);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("/api/channels/nope")
    );
}

#[tokio::test]
async fn pages_are_compressed_and_missing_bundles_are_not_cached() {
    let app = TestApp::spawn().await;
    let page = app
        .http
        .get(format!("{}/login", app.base))
        .header("accept-encoding", "br")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["content-encoding"], "br");

    let missing = app
        .http
        .get(format!("{}/pkg/dealnest-chat.nope.wasm", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    assert!(
        missing.headers().get("cache-control").is_none(),
        "a 404 must not be cached: {:?}",
        missing.headers()
    );
}
