//! express-session's cookies for actix-web: [`ExpressMiddleware`] runs
//! [`ExpressSessions`]' request cycle around each request, and [`Express`] hands a handler
//! the request's session. actix-session can't be configured for express-session's cookie
//! (`s:<id>.<signature>`) or its save rules, so this is a middleware of its own.
//!
//! ```no_run
//! use std::sync::Arc;
//!
//! use actix_web::{App, HttpServer, get};
//! use session_actix::express::{Express, ExpressMiddleware};
//! use session_core::express::ExpressSessions;
//!
//! #[get("/whoami")]
//! async fn whoami(session: Express) -> String {
//!     match session.get::<String>("user") {
//!         Ok(Some(user)) => format!("hello {user}"),
//!         _ => "who are you?".into(),
//!     }
//! }
//!
//! # async fn run(store: Arc<dyn session_core::SessionStore>) -> std::io::Result<()> {
//! // The Node app's options: secret, resave: false, saveUninitialized: false.
//! let sessions = ExpressSessions::new(store, ["keyboard cat"])
//!     .expect("a secret")
//!     .resave(false)
//!     .save_uninitialized(false);
//! HttpServer::new(move || {
//!     App::new()
//!         .wrap(ExpressMiddleware::new(sessions.clone()))
//!         .service(whoami)
//! })
//! .bind("127.0.0.1:8080")?
//! .run()
//! .await
//! # }
//! ```

use std::future::{Future, Ready, ready};
use std::pin::Pin;
use std::rc::Rc;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Payload, Service, ServiceRequest, ServiceResponse, Transform, forward_ready};
use actix_web::http::header::{COOKIE, HeaderValue, SET_COOKIE};
use actix_web::{Error, FromRequest, HttpMessage, HttpRequest, HttpResponse};
use session_core::express::{ExpressSession, ExpressSessions};

/// The middleware: see the module docs.
#[derive(Debug, Clone)]
pub struct ExpressMiddleware {
    sessions: ExpressSessions,
}

impl ExpressMiddleware {
    /// Runs `sessions`' request cycle around every request.
    pub fn new(sessions: ExpressSessions) -> Self {
        Self { sessions }
    }
}

impl<S, B> Transform<S, ServiceRequest> for ExpressMiddleware
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Transform = ExpressService<S>;
    type InitError = ();
    type Future = Ready<Result<Self::Transform, Self::InitError>>;

    fn new_transform(&self, service: S) -> Self::Future {
        ready(Ok(ExpressService {
            inner: Rc::new(service),
            sessions: self.sessions.clone(),
        }))
    }
}

/// The service [`ExpressMiddleware`] wraps around the app.
pub struct ExpressService<S> {
    inner: Rc<S>,
    sessions: ExpressSessions,
}

impl<S, B> Service<ServiceRequest> for ExpressService<S>
where
    S: Service<ServiceRequest, Response = ServiceResponse<B>, Error = Error> + 'static,
    B: MessageBody + 'static,
{
    type Response = ServiceResponse<EitherBody<B>>;
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>>>>;

    forward_ready!(inner);

    fn call(&self, request: ServiceRequest) -> Self::Future {
        let inner = Rc::clone(&self.inner);
        let sessions = self.sessions.clone();
        Box::pin(async move {
            let headers: Vec<String> = request
                .headers()
                .get_all(COOKIE)
                // Bytes, not `to_str`: another cookie of the site may hold UTF-8 (legal
                // `obs-text`), and refusing the header would lose `connect.sid` beside it.
                .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
                .collect();
            let session = match sessions.load(headers.iter().map(String::as_str)).await {
                Ok(session) => session,
                Err(err) => return Ok(failure(request.into_parts().0, "load", &err)),
            };
            request.extensions_mut().insert(session.clone());
            let mut response = inner.call(request).await?;
            match sessions.commit(&session).await {
                Ok(Some(cookie)) => {
                    if let Ok(value) = HeaderValue::from_str(&cookie) {
                        response.headers_mut().append(SET_COOKIE, value);
                    }
                    Ok(response.map_into_left_body())
                }
                Ok(None) => Ok(response.map_into_left_body()),
                Err(err) => Ok(failure(response.request().clone(), "save", &err)),
            }
        })
    }
}

/// A store error answered as express-session does (`next(err)`): a server error.
fn failure<B>(
    request: HttpRequest,
    step: &str,
    err: &session_core::Error,
) -> ServiceResponse<EitherBody<B>> {
    tracing::error!(error = %err, "express session {step} failed");
    ServiceResponse::new(request, HttpResponse::InternalServerError().finish())
        .map_into_right_body()
}

/// The request's express session, for a handler (an extractor). Without
/// [`ExpressMiddleware`] in front, the extraction fails with a server error.
#[derive(Debug, Clone)]
pub struct Express(pub ExpressSession);

impl FromRequest for Express {
    type Error = Error;
    type Future = Ready<Result<Self, Error>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(
            request
                .extensions()
                .get::<ExpressSession>()
                .cloned()
                .map(Express)
                .ok_or_else(|| {
                    actix_web::error::ErrorInternalServerError(
                        "no express session: wrap the app in session_actix::express::ExpressMiddleware",
                    )
                }),
        )
    }
}

impl std::ops::Deref for Express {
    type Target = ExpressSession;

    fn deref(&self) -> &ExpressSession {
        &self.0
    }
}
