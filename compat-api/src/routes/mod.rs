//! Per-resource routers, like moby's: system, containers, exec, images, volumes, networks,
//! and the answers of a node outside any swarm.

pub mod archive;
pub mod attach;
pub mod build;
pub mod containers;
pub mod exec;
pub mod images;
pub mod layers;
pub mod logs;
pub mod networks;
pub mod stats;
pub mod stubs;
pub mod system;
pub mod volumes;

use crate::error::ApiError;
use crate::state::AppState;
use axum::Router;
use axum::response::IntoResponse;

pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(system::routes())
        .merge(containers::routes())
        .merge(exec::routes())
        .merge(images::routes())
        .merge(volumes::routes())
        .merge(networks::routes())
        .merge(build::routes())
        .merge(stubs::routes())
        .fallback(crate::server::not_found)
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            panic_response,
        ))
        .with_state(state)
}

/// A panicking handler answers 500; the daemon keeps serving.
fn panic_response(err: Box<dyn std::any::Any + Send + 'static>) -> axum::response::Response {
    let msg = err
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| err.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panic".into());
    tracing::error!("handler panicked: {msg}");
    ApiError::internal(format!("internal error: {msg}")).into_response()
}
