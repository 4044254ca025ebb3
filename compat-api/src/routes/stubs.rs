//! What a Docker node outside any swarm answers, and features that are later issues
//! (plugins, BuildKit sessions), each with a clear message. Networks other than the
//! built-in `none` and `host` need the network crate; until it lands, the built-in ones
//! are listed so `docker inspect`'s fallback chain and `network ls` work.

use crate::error::ApiError;
use crate::state::AppState;
use axum::Json;
use axum::Router;
use axum::extract::Path;
use axum::routing::{any, get};
use engine::ErrorKind;
use serde_json::{Value, json};

const NOT_SWARM: &str = "This node is not a swarm manager. Use \"docker swarm init\" or \"docker swarm join\" to connect this node to swarm and try again.";

pub fn routes() -> Router<AppState> {
    let mut r = Router::new();
    for p in [
        "/swarm",
        "/swarm/{*rest}",
        "/services",
        "/services/{*rest}",
        "/nodes",
        "/nodes/{*rest}",
        "/tasks",
        "/tasks/{*rest}",
        "/secrets",
        "/secrets/{*rest}",
        "/configs",
        "/configs/{*rest}",
    ] {
        r = r.route(p, any(not_swarm));
    }
    r.route("/plugins", get(plugins_list))
        .route("/plugins/{*rest}", any(plugin))
        .route("/session", any(session))
        .route("/grpc", any(session))
        .route("/build/prune", any(build_prune))
}

async fn not_swarm() -> ApiError {
    ApiError::new(ErrorKind::Unavailable, NOT_SWARM)
}

async fn plugins_list() -> Json<Value> {
    Json(json!([]))
}

async fn plugin(Path(rest): Path<String>) -> ApiError {
    let name = rest.trim_end_matches("/json");
    ApiError::not_found(format!("plugin \"{name}\" not found"))
}

async fn session() -> ApiError {
    ApiError::not_found("BuildKit is not supported yet: use DOCKER_BUILDKIT=0 (classic builder)")
}

async fn build_prune() -> Json<Value> {
    Json(json!({"CachesDeleted": [], "SpaceReclaimed": 0}))
}
