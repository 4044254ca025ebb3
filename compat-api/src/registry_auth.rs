//! `X-Registry-Auth` on pull and push: base64url JSON `{username, password, serveraddress,
//! identitytoken}`, as the docker CLI sends the credentials it stored at `docker login`.

use axum::http::HeaderMap;
use base64::Engine as _;
use serde::Deserialize;

#[derive(Deserialize, Default)]
struct AuthConfig {
    #[serde(default)]
    username: String,
    #[serde(default)]
    password: String,
}

/// The credentials in the request, if it carries usable ones. Like dockerd, a header that
/// does not decode is ignored (the pull then goes out with the daemon's own credentials).
pub fn from_headers(h: &HeaderMap) -> Option<registry::Credentials> {
    let raw = h.get("x-registry-auth")?.to_str().ok()?.trim();
    // The CLI pads (URLEncoding); other clients send unpadded or standard alphabet.
    let bytes = [
        &base64::engine::general_purpose::URL_SAFE,
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
        &base64::engine::general_purpose::STANDARD,
        &base64::engine::general_purpose::STANDARD_NO_PAD,
    ]
    .iter()
    .find_map(|e| e.decode(raw).ok())?;
    let a: AuthConfig = serde_json::from_slice(&bytes).ok()?;
    // `{}` (what the CLI sends when it has nothing stored) means anonymous, not the
    // daemon's own config.json entries: None keeps that lookup, so only real ones count.
    (!a.username.is_empty()).then_some(registry::Credentials {
        username: a.username,
        password: a.password,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("X-Registry-Auth", v.parse().unwrap());
        h
    }

    #[test]
    fn decodes_padded_and_unpadded_and_ignores_junk() {
        let json = br#"{"username":"u","password":"p?>","serveraddress":"r:5000"}"#;
        for e in [
            base64::engine::general_purpose::URL_SAFE,
            base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ] {
            let c = from_headers(&with(&e.encode(json))).unwrap();
            assert_eq!((c.username.as_str(), c.password.as_str()), ("u", "p?>"));
        }
        assert!(from_headers(&with("e30=")).is_none()); // {}
        assert!(from_headers(&with("!!!")).is_none());
        assert!(from_headers(&HeaderMap::new()).is_none());
    }
}
