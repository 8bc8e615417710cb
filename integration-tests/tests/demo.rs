//! The demo app driven over real HTTP with a cookie jar, on every backend.

use std::sync::Arc;

use integration_tests::backends::on_every_backend;
use reqwest::StatusCode;
use reqwest::header::{COOKIE, SET_COOKIE};
use serde_json::{Value, json};
use session_core::{Expiry, SessionStore};
use session_demo::{Demo, app};
use time::Duration;

async fn serve(store: Arc<dyn SessionStore>, expiry: Expiry) -> String {
    let demo = Demo {
        store,
        key: axum_extra_key(),
        expiry,
        secure_cookies: false,
        max_sessions_per_user: 2,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app(demo)).await });
    format!("http://{addr}")
}

fn axum_extra_key() -> session_demo::Key {
    session_demo::Key::generate()
}

fn jar_client() -> reqwest::Client {
    reqwest::Client::builder()
        .cookie_store(true)
        .build()
        .unwrap()
}

/// The `sid=...` pair from a response's Set-Cookie, and the full header for flag checks.
fn sid_cookie(response: &reqwest::Response) -> (String, String) {
    let header = response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with("sid="))
        .expect("a sid cookie is set");
    (header.split(';').next().unwrap().to_owned(), header)
}

async fn login(
    client: &reqwest::Client,
    base: &str,
    user: &str,
    password: &str,
) -> reqwest::Response {
    client
        .post(format!("{base}/auth"))
        .json(&json!({"username": user, "password": password}))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn login_me_logout_and_the_old_cookie_is_refused() {
    on_every_backend(
        "login_me_logout_and_the_old_cookie_is_refused",
        login_me_logout_and_the_old_cookie_is_refused_on,
    )
    .await;
}

async fn login_me_logout_and_the_old_cookie_is_refused_on(store: Arc<dyn SessionStore>) {
    let base = serve(store, Expiry::idle(Duration::minutes(30))).await;
    let client = jar_client();
    assert_eq!(
        client
            .get(format!("{base}/me"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );

    let response = login(&client, &base, "alice", "wonderland").await;
    assert_eq!(response.status(), StatusCode::OK);
    let (sid, header) = sid_cookie(&response);
    assert!(
        header.contains("HttpOnly") && header.contains("SameSite=Lax"),
        "{header}"
    );

    let me = client.get(format!("{base}/me")).send().await.unwrap();
    assert_eq!(me.status(), StatusCode::OK);
    assert_eq!(me.json::<Value>().await.unwrap()["user"], "alice");

    let out = client.post(format!("{base}/logout")).send().await.unwrap();
    assert_eq!(out.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        client
            .get(format!("{base}/me"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );

    let replay = reqwest::Client::new()
        .get(format!("{base}/me"))
        .header(COOKIE, &sid)
        .send()
        .await
        .unwrap();
    assert_eq!(
        replay.status(),
        StatusCode::UNAUTHORIZED,
        "a logged-out cookie still works"
    );
}

#[tokio::test]
async fn bad_credentials_and_forged_cookies_are_refused() {
    on_every_backend(
        "bad_credentials_and_forged_cookies_are_refused",
        bad_credentials_and_forged_cookies_are_refused_on,
    )
    .await;
}

async fn bad_credentials_and_forged_cookies_are_refused_on(store: Arc<dyn SessionStore>) {
    let base = serve(store, Expiry::idle(Duration::minutes(30))).await;
    let client = jar_client();
    assert_eq!(
        login(&client, &base, "alice", "nope").await.status(),
        StatusCode::UNAUTHORIZED
    );
    let response = login(&client, &base, "bob", "builder").await;
    let (sid, _) = sid_cookie(&response);
    // Flip one character of the signed value: the signature no longer matches.
    let mut forged = sid.into_bytes();
    let last = forged.len() - 1;
    forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    let me = reqwest::Client::new()
        .get(format!("{base}/me"))
        .header(COOKIE, forged)
        .send()
        .await
        .unwrap();
    assert_eq!(me.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_id_changes_at_login() {
    on_every_backend("the_id_changes_at_login", the_id_changes_at_login_on).await;
}

async fn the_id_changes_at_login_on(store: Arc<dyn SessionStore>) {
    let base = serve(store, Expiry::idle(Duration::minutes(30))).await;
    let client = jar_client();
    let (first, _) = sid_cookie(&login(&client, &base, "alice", "wonderland").await);
    let (second, _) = sid_cookie(&login(&client, &base, "bob", "builder").await);
    assert_ne!(first, second, "a login must move the session to a new id");
    let me = client.get(format!("{base}/me")).send().await.unwrap();
    assert_eq!(me.json::<Value>().await.unwrap()["user"], "bob");
    let old = reqwest::Client::new()
        .get(format!("{base}/me"))
        .header(COOKIE, first)
        .send()
        .await
        .unwrap();
    assert_eq!(
        old.status(),
        StatusCode::UNAUTHORIZED,
        "the pre-login id still works"
    );
}

#[tokio::test]
async fn an_expired_session_is_refused() {
    on_every_backend(
        "an_expired_session_is_refused",
        an_expired_session_is_refused_on,
    )
    .await;
}

async fn an_expired_session_is_refused_on(store: Arc<dyn SessionStore>) {
    let base = serve(store, Expiry::absolute(Duration::milliseconds(600))).await;
    let client = jar_client();
    assert_eq!(
        login(&client, &base, "alice", "wonderland").await.status(),
        StatusCode::OK
    );
    assert_eq!(
        client
            .get(format!("{base}/me"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    tokio::time::sleep(std::time::Duration::from_millis(900)).await;
    assert_eq!(
        client
            .get(format!("{base}/me"))
            .send()
            .await
            .unwrap()
            .status(),
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn devices_limit_and_logout_everywhere() {
    on_every_backend(
        "devices_limit_and_logout_everywhere",
        devices_limit_and_logout_everywhere_on,
    )
    .await;
}

async fn devices_limit_and_logout_everywhere_on(store: Arc<dyn SessionStore>) {
    let base = serve(store, Expiry::idle(Duration::minutes(30))).await;
    let devices: Vec<_> = (0..3).map(|_| jar_client()).collect();
    for device in &devices {
        assert_eq!(
            login(device, &base, "alice", "wonderland").await.status(),
            StatusCode::OK
        );
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    // The limit is 2: the third login ended the first device's session.
    let first = devices[0].get(format!("{base}/me")).send().await.unwrap();
    assert_eq!(
        first.status(),
        StatusCode::UNAUTHORIZED,
        "the oldest session survived the limit"
    );
    let listed: Value = devices[2]
        .get(format!("{base}/sessions"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let sessions = listed["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2);
    assert_eq!(sessions.iter().filter(|s| s["current"] == true).count(), 1);

    let bob = jar_client();
    assert_eq!(
        login(&bob, &base, "bob", "builder").await.status(),
        StatusCode::OK
    );
    let out = devices[1]
        .post(format!("{base}/logout-everywhere"))
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), StatusCode::NO_CONTENT);
    for device in &devices {
        let me = device.get(format!("{base}/me")).send().await.unwrap();
        assert_eq!(
            me.status(),
            StatusCode::UNAUTHORIZED,
            "a session survived logout everywhere"
        );
    }
    assert_eq!(
        bob.get(format!("{base}/me")).send().await.unwrap().status(),
        StatusCode::OK
    );
}

/// The demo's own store setting reaches every backend the test servers offer.
#[tokio::test]
async fn the_store_setting_picks_each_backend() {
    use integration_tests::{Backend, server_url};
    assert!(
        session_demo::store_from_setting(Some("memcached://x"))
            .await
            .is_err()
    );
    let mut settings = vec![
        "memory".to_owned(),
        "sqlite::memory:".to_owned(),
        integration_tests::sqlite_test_url("demo"),
    ];
    for backend in [
        Backend::Redis,
        Backend::Postgres,
        Backend::Mongo,
        Backend::Mysql,
    ] {
        match server_url(backend) {
            Ok(url) => settings.push(url),
            Err(skip) => {
                session_core::conformance::skip(&format!("the demo on {backend:?}"), &skip.0)
            }
        }
    }
    for setting in settings {
        let store = session_demo::store_from_setting(Some(&setting))
            .await
            .unwrap();
        let base = serve(store, Expiry::idle(Duration::minutes(30))).await;
        let client = jar_client();
        assert_eq!(
            login(&client, &base, "bob", "builder").await.status(),
            StatusCode::OK
        );
        let me = client.get(format!("{base}/me")).send().await.unwrap();
        assert_eq!(me.status(), StatusCode::OK, "{setting}");
        let out = client.post(format!("{base}/logout")).send().await.unwrap();
        assert_eq!(out.status(), StatusCode::NO_CONTENT);
    }
}

/// The demo in express-session mode beside the Node app (`node/app.js`, express-session +
/// connect-redis) on one Redis: a login on either side is seen by the other with the same
/// `connect.sid` cookie, and the demo's "log out everywhere" ends the user's Node logins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn express_mode_shares_logins_with_node() {
    const WHAT: &str = "the demo's express-session mode";
    if !integration_tests::node::available(WHAT) {
        return;
    }
    let redis_url = match integration_tests::server_url(integration_tests::Backend::Redis) {
        Ok(url) => url,
        Err(skip) => return session_core::conformance::skip(WHAT, &skip.0),
    };
    let prefix = format!(
        "demo-express:{}:sess:",
        &session_core::SessionId::generate().expose()[..12]
    );
    let node = integration_tests::node::NodeApp::start(
        "app.js",
        &[
            ("REDIS_URL", &redis_url),
            ("SESSION_PREFIX", &prefix),
            ("SESSION_SECRETS", "keyboard cat"),
        ],
    );
    let setting = format!(
        "{redis_url}?session_prefix={}&session_format=express&session_owner_path=passport.user",
        prefix.replace(':', "%3A")
    );
    let store = session_demo::store_from_setting(Some(&setting))
        .await
        .unwrap();
    let sessions = session_core::express::ExpressSessions::new(store, ["keyboard cat"])
        .unwrap()
        .resave(false)
        .save_uninitialized(false)
        .max_age(Some(Duration::hours(1)))
        .owner_path("passport.user")
        .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let demo = format!("http://{}", listener.local_addr().unwrap());
    let app = session_demo::express_app(sessions);
    tokio::spawn(async move { axum::serve(listener, app).await });
    let client = reqwest::Client::new();
    let connect_sid = |response: &reqwest::Response| -> String {
        let header = response
            .headers()
            .get(SET_COOKIE)
            .expect("a Set-Cookie")
            .to_str()
            .unwrap();
        let pair = header.split(';').next().unwrap().to_owned();
        assert!(pair.starts_with("connect.sid=s%3A"), "{header}");
        pair
    };
    let me = |base: String, cookie: String| {
        let client = client.clone();
        async move {
            let response = client
                .get(format!("{base}/me"))
                .header(COOKIE, cookie)
                .send()
                .await
                .unwrap();
            let status = response.status();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };

    // A login on the demo is a login on Node.
    let response = client
        .post(format!("{demo}/auth"))
        .json(&json!({"username": "alice", "password": "wonderland"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let rust_login = connect_sid(&response);
    let (status, seen) = me(node.base.clone(), rust_login.clone()).await;
    assert_eq!(status, StatusCode::OK, "Node does not see the demo's login");
    assert_eq!(seen["passport"]["user"], "alice");

    // A login on Node is a login on the demo.
    let response = client
        .post(format!("{}/login", node.base))
        .json(&json!({"user": "alice"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let node_login = connect_sid(&response);
    let (status, seen) = me(demo.clone(), node_login.clone()).await;
    assert_eq!(status, StatusCode::OK, "the demo does not see Node's login");
    assert_eq!(seen["user"], "alice");

    // The demo's "log out everywhere" ends both logins, Node's too.
    let response = client
        .post(format!("{demo}/logout-everywhere"))
        .header(COOKIE, rust_login.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::NO_CONTENT);
    for login in [rust_login, node_login] {
        assert_eq!(
            me(node.base.clone(), login.clone()).await.0,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(me(demo.clone(), login).await.0, StatusCode::UNAUTHORIZED);
    }
}
