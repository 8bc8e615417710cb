//! Runs the demo on 127.0.0.1:3000 (`SESSION_DEMO_ADDR` to change).
//!
//! `SESSION_DEMO_STORE`: `memory` (default) or a `redis://`, `postgres://`, `mysql://`,
//! `sqlite://` or `mongodb://` URL (see [`session_demo::store_from_setting`]).
//!
//! `SESSION_DEMO_SECRET`: at least 64 bytes signing the cookie; without it a random key is
//! used and every restart logs everybody out.
//!
//! `SESSION_DEMO_EXPRESS_SECRETS` (comma-separated, the first signs): express-session mode,
//! sharing sessions and the `connect.sid` cookie with a Node app; give a store in the
//! express format, e.g.
//! `redis://127.0.0.1:6379?session_format=express&session_owner_path=passport.user`.
//!
//! `SESSION_DEMO_LOG=json` logs one JSON object per line (spans included) instead of text;
//! `RUST_LOG` filters as usual. `GET /metrics` serves the store's metrics.

use axum_extra::extract::cookie::Key;
use session_core::Expiry;
use session_core::express::ExpressSessions;
use session_demo::{
    Demo, app, express_app, install_prometheus, metrics_routes, store_from_setting,
};
use time::Duration;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let logs = tracing_subscriber::fmt().with_env_filter(
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
    );
    if std::env::var("SESSION_DEMO_LOG").is_ok_and(|v| v == "json") {
        logs.json().with_current_span(true).init();
    } else {
        logs.init();
    }
    // Before the store is built, so the store describes its metrics to it.
    let prometheus = install_prometheus()?;
    let store = store_from_setting(std::env::var("SESSION_DEMO_STORE").ok().as_deref()).await?;
    let addr = std::env::var("SESSION_DEMO_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    if let Ok(secrets) = std::env::var("SESSION_DEMO_EXPRESS_SECRETS") {
        // The Node app's options: resave and saveUninitialized off, a 30-minute rolling cookie.
        let sessions = ExpressSessions::new(store.clone(), secrets.split(','))?
            .resave(false)
            .save_uninitialized(false)
            .rolling(true)
            .max_age(Some(Duration::minutes(30)))
            .same_site(Some("lax"))
            .owner_path("passport.user")?;
        tracing::info!("session demo (express-session mode) on http://{addr} with {store:?}");
        let app = express_app(sessions).merge(metrics_routes(prometheus));
        axum::serve(listener, app).await?;
        return Ok(());
    }
    let key = match std::env::var("SESSION_DEMO_SECRET") {
        Ok(secret) => Key::try_from(secret.as_bytes())
            .map_err(|_| "SESSION_DEMO_SECRET must be at least 64 bytes")?,
        Err(_) => {
            tracing::warn!("SESSION_DEMO_SECRET not set: using a random key");
            Key::generate()
        }
    };
    let demo = Demo {
        store,
        key,
        expiry: Expiry::idle_and_absolute(Duration::minutes(30), Duration::hours(12))
            .lazy_touch(0.5),
        secure_cookies: std::env::var("SESSION_DEMO_SECURE_COOKIES").is_ok_and(|v| v == "1"),
        max_sessions_per_user: 3,
    };
    tracing::info!("session demo on http://{addr} with {:?}", demo.store);
    axum::serve(listener, app(demo).merge(metrics_routes(prometheus))).await?;
    Ok(())
}
