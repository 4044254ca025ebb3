//! Query and body parsing with Docker's leniency: booleans in every spelling, filters as
//! a map or a list, JSON bodies whatever their Content-Type, unknown keys ignored.

use crate::error::{ApiError, ApiResult};
use axum::extract::{FromRequest, Query, Request};
use std::collections::{BTreeMap, HashMap};

/// The query string as a map; unknown keys are simply not looked at.
pub type Params = Query<HashMap<String, String>>;

/// Moby's rule: anything but "", "0", "no", "false", "none" is true.
pub fn truthy(v: &str) -> bool {
    !matches!(
        v.trim().to_ascii_lowercase().as_str(),
        "" | "0" | "no" | "false" | "none"
    )
}

pub fn flag(q: &HashMap<String, String>, key: &str) -> bool {
    q.get(key).is_some_and(|v| truthy(v))
}

/// A boolean that defaults to true when absent (e.g. `stdout` on attach for old clients).
pub fn flag_or(q: &HashMap<String, String>, key: &str, default: bool) -> bool {
    q.get(key).map_or(default, |v| truthy(v))
}

pub fn int(q: &HashMap<String, String>, key: &str) -> ApiResult<Option<i64>> {
    match q.get(key).map(|s| s.trim()).filter(|s| !s.is_empty()) {
        None => Ok(None),
        Some(v) => v.parse::<i64>().map(Some).map_err(|_| {
            ApiError::bad_request(format!("invalid value for {key}: {v:?} is not an integer"))
        }),
    }
}

/// `filters={"label":{"a=1":true}}` (CLI) or `{"label":["a=1"]}` (docker-py, Ryuk).
pub fn filters(q: &HashMap<String, String>) -> ApiResult<BTreeMap<String, Vec<String>>> {
    let Some(raw) = q.get("filters").filter(|s| !s.trim().is_empty()) else {
        return Ok(BTreeMap::new());
    };
    let v: serde_json::Value = serde_json::from_str(raw)
        .map_err(|e| ApiError::bad_request(format!("invalid filter: {e}")))?;
    let obj = v
        .as_object()
        .ok_or_else(|| ApiError::bad_request("invalid filter: not an object"))?;
    let mut out = BTreeMap::new();
    for (k, v) in obj {
        let vals: Vec<String> = match v {
            serde_json::Value::Array(a) => a
                .iter()
                .filter_map(|x| x.as_str().map(str::to_string))
                .collect(),
            serde_json::Value::Object(m) => m
                .iter()
                .filter(|(_, on)| on.as_bool().unwrap_or(true))
                .map(|(k, _)| k.clone())
                .collect(),
            serde_json::Value::String(s) => vec![s.clone()],
            _ => return Err(ApiError::bad_request(format!("invalid filter {k:?}"))),
        };
        out.insert(k.clone(), vals);
    }
    Ok(out)
}

/// Request bodies above this are refused (JSON requests only; tar uploads stream).
pub const JSON_LIMIT: usize = 4 << 20;

/// A JSON body parsed whatever its Content-Type (the CLI is not consistent); an empty body
/// is the type's default.
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: serde::de::DeserializeOwned + Default,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::to_bytes(req.into_body(), JSON_LIMIT)
            .await
            .map_err(|e| ApiError::bad_request(format!("reading request body: {e}")))?;
        if bytes.iter().all(|b| b.is_ascii_whitespace()) {
            return Ok(JsonBody(T::default()));
        }
        serde_json::from_slice(&bytes)
            .map(JsonBody)
            .map_err(|e| ApiError::bad_request(format!("invalid JSON: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans_and_filters() {
        for t in ["1", "true", "True", "yes"] {
            assert!(truthy(t));
        }
        for f in ["", "0", "false", "False", "no", "none"] {
            assert!(!truthy(f));
        }
        let mut q = HashMap::new();
        q.insert(
            "filters".into(),
            r#"{"label":{"a=1":true},"name":["x"]}"#.into(),
        );
        let f = filters(&q).unwrap();
        assert_eq!(f["label"], vec!["a=1"]);
        assert_eq!(f["name"], vec!["x"]);
        q.insert("filters".into(), "[".into());
        assert!(filters(&q).is_err());
    }
}
