//! Listeners and the HTTP/1 connection loop (hyper with upgrades, for hijacked attach and
//! exec streams), API version routing and the headers every response carries.

use crate::error::ApiError;
use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use tokio::io::{AsyncRead, AsyncWrite};

pub const API_VERSION: &str = "1.47";
pub const MIN_API_VERSION: &str = "1.24";
const MIN: (u32, u32) = (1, 24);

/// Where the daemon listens (`-H unix:///path`, `-H tcp://127.0.0.1:PORT`).
#[derive(Debug, Clone, PartialEq)]
pub enum Listen {
    Unix(std::path::PathBuf),
    Tcp(String),
}

impl Listen {
    pub fn parse(s: &str) -> Result<Self, crate::DaemonError> {
        if let Some(p) = s.strip_prefix("unix://") {
            return Ok(Listen::Unix(p.into()));
        }
        if let Some(a) = s.strip_prefix("tcp://") {
            return Ok(Listen::Tcp(a.trim_end_matches('/').to_string()));
        }
        if s.starts_with('/') {
            return Ok(Listen::Unix(s.into()));
        }
        Err(crate::DaemonError::Config(format!(
            "invalid -H {s:?}: expected unix:///path or tcp://HOST:PORT"
        )))
    }
}

/// Strips a `/vX.Y` prefix. Versions above ours are served as ours; below the minimum is
/// Docker's 400 (plain text, like moby).
/// Err carries the plain-text message of a too-old version.
fn route_version(req: &mut Request<hyper::body::Incoming>) -> Result<(), String> {
    let path = req.uri().path();
    let Some(rest) = path.strip_prefix("/v") else {
        return Ok(());
    };
    let (ver, tail) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let Some((maj, min)) = ver.split_once('.') else {
        return Ok(());
    };
    let (Ok(maj), Ok(min)) = (maj.parse::<u32>(), min.parse::<u32>()) else {
        return Ok(());
    };
    if (maj, min) < MIN {
        return Err(format!(
            "client version {ver} is too old. Minimum supported API version is {MIN_API_VERSION}, please upgrade your client to a newer version"
        ));
    }
    let new = match req.uri().query() {
        Some(q) => format!("{tail}?{q}"),
        None => tail.to_string(),
    };
    if let Ok(uri) = new.parse() {
        *req.uri_mut() = uri;
    }
    Ok(())
}

fn add_headers(r: &mut Response<Body>) {
    let h = r.headers_mut();
    h.insert("Api-Version", HeaderValue::from_static(API_VERSION));
    h.insert("Docker-Experimental", HeaderValue::from_static("false"));
    h.insert("Ostype", HeaderValue::from_static("linux"));
    h.insert(
        "Server",
        HeaderValue::from_static(concat!("Pelagos/", env!("CARGO_PKG_VERSION"), " (linux)")),
    );
}

async fn handle(app: Router, mut req: Request<hyper::body::Incoming>) -> Response<Body> {
    crate::heap_trim::note_request();
    let mut resp = match route_version(&mut req) {
        Err(msg) => {
            let mut r = Response::new(Body::from(msg));
            *r.status_mut() = StatusCode::BAD_REQUEST;
            r.headers_mut().insert(
                axum::http::header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
            r
        }
        Ok(()) => {
            let mut app = app;
            match tower_service::Service::call(&mut app, req).await {
                Ok(r) => r,
                Err(e) => {
                    let e: Infallible = e;
                    match e {}
                }
            }
        }
    };
    add_headers(&mut resp);
    resp
}

/// Serves one connection until the client closes it (or it is hijacked and finishes).
pub async fn serve_connection<IO>(app: Router, io: IO)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |req| {
        let app = app.clone();
        async move { Ok::<_, Infallible>(handle(app, req).await) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(io), svc)
        .with_upgrades()
        .await;
}

/// Docker's answer to any path no route matched.
pub async fn not_found() -> ApiError {
    ApiError::not_found("page not found")
}
