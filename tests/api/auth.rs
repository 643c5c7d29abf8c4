use app::server::AppConfig;
use serde_json::json;

use crate::helpers::TestApp;

#[tokio::test]
async fn signup_login_me_logout_with_bearer_token() {
    let app = TestApp::spawn().await;
    let ann = app.signup("ann").await;
    let me = app.call("auth/me", Some(&ann.token), json!({})).await.ok();
    assert_eq!(
        (me["id"].as_i64(), me["username"].as_str()),
        (Some(ann.id), Some("ann"))
    );
    assert_eq!(me["display_name"], "ANN");
    assert!(me.get("password_hash").is_none());

    let login = app
        .call(
            "auth/login",
            None,
            json!({ "username": "ANN ", "password": "correct horse" }),
        )
        .await
        .ok();
    let token = login["token"].as_str().unwrap().to_owned();
    assert_ne!(token, ann.token, "each log-in is its own session");

    // Resolved once (and remembered), then signed out: refused at once, not after a cache TTL.
    app.call("auth/me", Some(&token), json!({})).await.ok();
    app.call("auth/logout", Some(&token), json!({})).await.ok();
    app.call("auth/me", Some(&token), json!({})).await.err(401);
    // The other session is untouched.
    app.call("auth/me", Some(&ann.token), json!({})).await.ok();
}

#[tokio::test]
async fn browser_session_cookie_is_http_only_and_same_site_lax() {
    let app = TestApp::spawn().await;
    app.signup("ann").await;
    let reply = app
        .call(
            "auth/login",
            None,
            json!({ "username": "ann", "password": "correct horse" }),
        )
        .await;
    let cookie = reply.headers["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("dn_session="), "{cookie}");
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
        "{cookie}"
    );
    let session = cookie.split(';').next().unwrap().to_owned();
    // A browser sends its page's origin with every POST; cookie-authenticated POSTs need it.
    let own_origin = format!("http://{}", app.addr);
    let me = app
        .http
        .post(format!("{}/api/auth/me", app.base))
        .header("cookie", &session)
        .header("origin", &own_origin)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), 200);

    let logout = app
        .http
        .post(format!("{}/api/auth/logout", app.base))
        .header("cookie", &session)
        .header("origin", &own_origin)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let cleared = logout.headers()["set-cookie"].to_str().unwrap();
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
}

#[tokio::test]
async fn taken_username_is_a_conflict() {
    let app = TestApp::spawn().await;
    app.signup("ann").await;
    let body = app
        .call(
            "auth/signup",
            None,
            json!({ "username": "Ann", "display_name": "Other", "password": "12345678" }),
        )
        .await
        .err(409);
    assert!(body["message"].as_str().unwrap().contains("taken"));
}

#[tokio::test]
async fn wrong_password_and_unknown_user_look_the_same() {
    let app = TestApp::spawn().await;
    app.signup("ann").await;
    let wrong = app
        .call(
            "auth/login",
            None,
            json!({ "username": "ann", "password": "wrong password" }),
        )
        .await
        .err(401);
    let unknown = app
        .call(
            "auth/login",
            None,
            json!({ "username": "nobody", "password": "wrong password" }),
        )
        .await
        .err(401);
    assert_eq!(wrong, unknown);
}

#[tokio::test]
async fn login_is_throttled_per_username_with_retry_after() {
    let app = TestApp::spawn_with(AppConfig {
        login_per_user_per_minute: 3,
        ..AppConfig::default()
    })
    .await;
    app.signup("ann").await;
    for _ in 0..3 {
        app.call(
            "auth/login",
            None,
            json!({ "username": "ann", "password": "bad password" }),
        )
        .await
        .err(401);
    }
    let reply = app
        .call(
            "auth/login",
            None,
            json!({ "username": "ann", "password": "correct horse" }),
        )
        .await;
    let retry_after: u64 = reply.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry_after >= 1);
    let body = reply.err(429);
    assert_eq!(body["error"], "rate_limited");
    assert_eq!(body["retry_after_secs"].as_u64(), Some(retry_after));
    // Another username is not throttled by ann's attempts.
    app.signup("bob").await;
    app.call(
        "auth/login",
        None,
        json!({ "username": "bob", "password": "correct horse" }),
    )
    .await
    .ok();
}

#[tokio::test]
async fn auth_attempts_are_throttled_per_ip() {
    let app = TestApp::spawn_with(AppConfig {
        auth_per_ip_per_minute: 2,
        ..AppConfig::default()
    })
    .await;
    app.signup("ann").await;
    app.call(
        "auth/login",
        None,
        json!({ "username": "ann", "password": "bad password" }),
    )
    .await
    .err(401);
    app.call(
        "auth/login",
        None,
        json!({ "username": "bob", "password": "bad password" }),
    )
    .await
    .err(429);
}

#[tokio::test]
async fn user_search_by_prefix() {
    let app = TestApp::spawn().await;
    let ann = app.signup("ann").await;
    app.signup("anna").await;
    app.signup("bob").await;
    let found = app
        .call("users/search", Some(&ann.token), json!({ "query": "an" }))
        .await
        .ok();
    let names: Vec<_> = found
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["username"].clone())
        .collect();
    assert_eq!(names, [json!("ann"), json!("anna")]);
    app.call("users/search", None, json!({ "query": "an" }))
        .await
        .err(401);
}
