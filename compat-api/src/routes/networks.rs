//! Networks: list, inspect, create, remove, connect, disconnect, prune. The network crate
//! serves Docker's NetworkResource shape as it is; this module only translates requests.

use crate::blocking::blocking;
use crate::error::{ApiError, ApiResult};
use crate::params::{JsonBody, Params, filters};
use crate::state::AppState;
use axum::Json;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{Response, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use network::Network;
use network::model::{EndpointConfig, EndpointIpamConfig};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/networks", get(list))
        .route("/networks/create", post(create))
        .route("/networks/prune", post(prune))
        .route("/networks/{id}", get(inspect).delete(remove))
        .route("/networks/{id}/connect", post(connect))
        .route("/networks/{id}/disconnect", post(disconnect))
}

fn builtin(n: &Network) -> bool {
    matches!(n.name.as_str(), "bridge" | "host" | "none") && n.driver != "bridge"
        || n.is_default_bridge()
}

/// Docker's network filters: `name` (substring), `id` (prefix), `driver`, `label`
/// (`k` or `k=v`), `scope`, `type` (`custom`/`builtin`), `dangling`.
fn matches(n: &Network, f: &BTreeMap<String, Vec<String>>, in_use: bool) -> ApiResult<bool> {
    for (k, vals) in f {
        if vals.is_empty() {
            continue;
        }
        let ok = match k.as_str() {
            "name" => vals.iter().any(|v| n.name.contains(v.as_str())),
            "id" => vals.iter().any(|v| n.id.starts_with(v.as_str())),
            "driver" => vals.iter().any(|v| &n.driver == v),
            "scope" => vals.iter().any(|v| &n.scope == v),
            "label" => engine::filters::labels_match(vals, &n.labels),
            "type" => vals.iter().try_fold(false, |acc, v| match v.as_str() {
                "custom" => Ok(acc || !builtin(n)),
                "builtin" => Ok(acc || builtin(n)),
                other => Err(ApiError::bad_request(format!(
                    "invalid filter: 'type'='{other}'"
                ))),
            })?,
            // Dangling: a user network nothing is attached to.
            "dangling" => vals
                .iter()
                .any(|v| crate::params::truthy(v) == (!in_use && !builtin(n))),
            other => {
                return Err(ApiError::bad_request(format!("invalid filter '{other}'")));
            }
        };
        if !ok {
            return Ok(false);
        }
    }
    Ok(true)
}

async fn list(State(d): State<AppState>, q: Params) -> ApiResult<Json<Vec<Network>>> {
    let f = filters(&q)?;
    let d2 = d.clone();
    let list = blocking(move || -> ApiResult<Vec<Network>> {
        let nets = d2.engine.networks()?;
        let mut out = Vec::new();
        for n in nets.list()? {
            let in_use = !nets.network_endpoints(&n.id)?.is_empty();
            if matches(&n, &f, in_use)? {
                out.push(n);
            }
        }
        Ok(out)
    })
    .await?;
    Ok(Json(list))
}

async fn inspect(State(d): State<AppState>, Path(id): Path<String>) -> ApiResult<Json<Network>> {
    let d2 = d.clone();
    let n =
        blocking(move || -> ApiResult<Network> { Ok(d2.engine.networks()?.inspect(&id)?) }).await?;
    Ok(Json(n))
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
struct IpamPool {
    subnet: Option<String>,
    #[serde(rename = "IPRange")]
    ip_range: Option<String>,
    gateway: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
struct Ipam {
    driver: Option<String>,
    config: Option<Vec<IpamPool>>,
}

/// `POST /networks/create`. Extra fields (CheckDuplicate, Scope, Ingress...) are accepted
/// and ignored, as Docker >= 1.44 does for CheckDuplicate.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
struct CreateBody {
    name: String,
    driver: Option<String>,
    internal: Option<bool>,
    attachable: Option<bool>,
    #[serde(rename = "IPAM")]
    ipam: Option<Ipam>,
    #[serde(rename = "EnableIPv6")]
    enable_ipv6: Option<bool>,
    options: Option<BTreeMap<String, String>>,
    labels: Option<BTreeMap<String, String>>,
}

async fn create(
    State(d): State<AppState>,
    JsonBody(b): JsonBody<CreateBody>,
) -> ApiResult<Response<Body>> {
    if b.name.is_empty() {
        return Err(ApiError::bad_request("network name is required"));
    }
    if b.enable_ipv6 == Some(true) {
        return Err(ApiError::bad_request(
            "IPv6 networks are not supported by pelagos yet",
        ));
    }
    let ipam = b.ipam.unwrap_or_default();
    if let Some(drv) = ipam
        .driver
        .as_deref()
        .filter(|d| !d.is_empty() && *d != "default")
    {
        return Err(ApiError::not_found(format!(
            "IPAM driver \"{drv}\" not found"
        )));
    }
    let mut pools = ipam.config.unwrap_or_default().into_iter();
    let pool = pools.next().unwrap_or_default();
    if pools.next().is_some() {
        return Err(ApiError::bad_request(
            "only one IPv4 address pool per network is supported",
        ));
    }
    let req = network::CreateRequest {
        name: b.name.clone(),
        driver: b.driver.unwrap_or_default(),
        subnet: pool.subnet.filter(|s| !s.is_empty()),
        gateway: pool.gateway.filter(|s| !s.is_empty()),
        ip_range: pool.ip_range.filter(|s| !s.is_empty()),
        internal: b.internal.unwrap_or(false),
        attachable: b.attachable.unwrap_or(false),
        labels: b.labels.unwrap_or_default(),
        options: b.options.unwrap_or_default(),
    };
    let d2 = d.clone();
    let n = blocking(move || -> ApiResult<Network> { Ok(d2.engine.network_create(req)?) }).await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"Id": n.id, "Warning": ""})),
    )
        .into_response())
}

async fn remove(State(d): State<AppState>, Path(id): Path<String>) -> ApiResult<Response<Body>> {
    let d2 = d.clone();
    blocking(move || -> ApiResult<Network> { Ok(d2.engine.network_remove(&id)?) }).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
struct EndpointIpam {
    #[serde(rename = "IPv4Address")]
    ipv4_address: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
struct EndpointBody {
    #[serde(rename = "IPAMConfig")]
    ipam_config: Option<EndpointIpam>,
    links: Option<Vec<String>>,
    aliases: Option<Vec<String>>,
    mac_address: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
struct ConnectBody {
    container: String,
    endpoint_config: Option<EndpointBody>,
}

async fn connect(
    State(d): State<AppState>,
    Path(id): Path<String>,
    JsonBody(b): JsonBody<ConnectBody>,
) -> ApiResult<Response<Body>> {
    if b.container.is_empty() {
        return Err(ApiError::bad_request("container is required"));
    }
    let e = b.endpoint_config.unwrap_or_default();
    let cfg = EndpointConfig {
        ipam_config: e
            .ipam_config
            .and_then(|i| i.ipv4_address)
            .filter(|a| !a.is_empty())
            .map(|ipv4_address| EndpointIpamConfig { ipv4_address }),
        links: e.links.unwrap_or_default(),
        aliases: e.aliases.unwrap_or_default(),
        mac_address: e.mac_address.unwrap_or_default(),
    };
    let d2 = d.clone();
    blocking(move || -> ApiResult<()> {
        let n = d2.engine.networks()?.find(&id)?;
        let cid = d2.engine.containers.resolve(&b.container)?;
        Ok(d2.engine.network_connect(&n.id, &cid, cfg)?)
    })
    .await?;
    Ok(StatusCode::OK.into_response())
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "PascalCase")]
struct DisconnectBody {
    container: String,
    force: bool,
}

async fn disconnect(
    State(d): State<AppState>,
    Path(id): Path<String>,
    JsonBody(b): JsonBody<DisconnectBody>,
) -> ApiResult<Response<Body>> {
    if b.container.is_empty() {
        return Err(ApiError::bad_request("container is required"));
    }
    let d2 = d.clone();
    let r = blocking(move || -> ApiResult<()> {
        let n = d2.engine.networks()?.find(&id)?;
        let cid = d2.engine.containers.resolve(&b.container)?;
        Ok(d2.engine.network_disconnect(&n.id, &cid)?)
    })
    .await;
    match r {
        // Docker's force: a container already gone is not an error.
        Err(e) if !(b.force && e.kind == engine::ErrorKind::NotFound) => Err(e),
        _ => Ok(StatusCode::OK.into_response()),
    }
}

async fn prune(State(d): State<AppState>, q: Params) -> ApiResult<Json<Value>> {
    let f = crate::prune_filter::PruneFilter::parse(&filters(&q)?, &[], true)?;
    let d2 = d.clone();
    let removed = blocking(move || {
        d2.engine.network_prune(&|n| {
            f.admits(&n.labels, Some(engine::filters::created_nanos(&n.created)))
        })
    })
    .await?;
    Ok(Json(json!({"NetworksDeleted": removed})))
}
