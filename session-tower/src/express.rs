//! express-session's cookies for axum and tower: [`ExpressLayer`] runs
//! [`ExpressSessions`]' request cycle around each request, and [`Express`] hands a handler
//! the request's session. tower-sessions can't be configured for express-session's cookie
//! (`s:<id>.<signature>`) or its save rules, so this is a layer of its own.
//!
//! ```no_run
//! use std::sync::Arc;
//!
//! use axum::{Router, routing::get};
//! use session_core::express::ExpressSessions;
//! use session_tower::express::{Express, ExpressLayer};
//!
//! async fn whoami(Express(session): Express) -> String {
//!     match session.get::<String>("user") {
//!         Ok(Some(user)) => format!("hello {user}"),
//!         _ => "who are you?".into(),
//!     }
//! }
//!
//! # async fn run(store: Arc<dyn session_core::SessionStore>) -> session_core::Result<()> {
//! // The Node app's options: secret, resave: false, saveUninitialized: false.
//! let sessions = ExpressSessions::new(store, ["keyboard cat"])?
//!     .resave(false)
//!     .save_uninitialized(false);
//! let app: Router = Router::new()
//!     .route("/whoami", get(whoami))
//!     .layer(ExpressLayer::new(sessions));
//! # Ok(()) }
//! ```

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum_core::extract::FromRequestParts;
use http::header::{COOKIE, SET_COOKIE};
use http::request::Parts;
use http::{HeaderValue, Request, Response, StatusCode};
use session_core::express::{ExpressSession, ExpressSessions};
use tower_layer::Layer;
use tower_service::Service;

/// The layer: see the module docs.
#[derive(Debug, Clone)]
pub struct ExpressLayer {
    sessions: ExpressSessions,
}

impl ExpressLayer {
    /// Runs `sessions`' request cycle around every request.
    pub fn new(sessions: ExpressSessions) -> Self {
        Self { sessions }
    }
}

impl<S> Layer<S> for ExpressLayer {
    type Service = ExpressService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ExpressService {
            inner,
            sessions: self.sessions.clone(),
        }
    }
}

/// The service [`ExpressLayer`] wraps around the app.
#[derive(Debug, Clone)]
pub struct ExpressService<S> {
    inner: S,
    sessions: ExpressSessions,
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for ExpressService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: Request<ReqBody>) -> Self::Future {
        // The clone that was polled ready serves this request (tower's contract).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let sessions = self.sessions.clone();
        Box::pin(async move {
            // Bytes, not `to_str`: another cookie of the site may hold UTF-8 (legal
            // `obs-text`), and refusing the header would lose `connect.sid` beside it.
            let headers: Vec<String> = request
                .headers()
                .get_all(COOKIE)
                .iter()
                .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
                .collect();
            let session = match sessions.load(headers.iter().map(String::as_str)).await {
                Ok(session) => session,
                Err(err) => return Ok(failure("load", &err)),
            };
            request.extensions_mut().insert(session.clone());
            let mut response = inner.call(request).await?;
            match sessions.commit(&session).await {
                Ok(Some(cookie)) => {
                    if let Ok(value) = HeaderValue::from_str(&cookie) {
                        response.headers_mut().append(SET_COOKIE, value);
                    }
                    Ok(response)
                }
                Ok(None) => Ok(response),
                Err(err) => Ok(failure("save", &err)),
            }
        })
    }
}

/// A store error answered as express-session does (`next(err)`): a server error, the
/// session untouched.
fn failure<B: Default>(step: &str, err: &session_core::Error) -> Response<B> {
    tracing::error!(error = %err, "express session {step} failed");
    let mut response = Response::new(B::default());
    *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    response
}

/// The request's express session, for a handler (axum extractor). Without
/// [`ExpressLayer`] in front, the extraction fails with a server error.
#[derive(Debug, Clone)]
pub struct Express(pub ExpressSession);

impl<S: Send + Sync> FromRequestParts<S> for Express {
    type Rejection = (StatusCode, &'static str);

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<ExpressSession>()
            .cloned()
            .map(Express)
            .ok_or((
                StatusCode::INTERNAL_SERVER_ERROR,
                "no express session: add session_tower::express::ExpressLayer",
            ))
    }
}

impl std::ops::Deref for Express {
    type Target = ExpressSession;

    fn deref(&self) -> &ExpressSession {
        &self.0
    }
}
