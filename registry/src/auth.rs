//! Registry credentials in the docker CLI's own file (`$DOCKER_CONFIG/config.json`, else
//! `~/.docker/config.json`), so `docker login` and `pelagos login` share logins: `auths`
//! entries (base64 `user:password`), `credHelpers` per registry and a default `credsStore`
//! (both through the `docker-credential-<name>` helper protocol).

use crate::error::{Error, Result};
use base64::Engine as _;
use serde_json::{Value, json};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

pub fn config_path() -> PathBuf {
    if let Some(d) = std::env::var_os("DOCKER_CONFIG") {
        return PathBuf::from(d).join("config.json");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".docker").join("config.json")
}

fn read_config() -> Result<Value> {
    let p = config_path();
    match std::fs::read(&p) {
        Ok(b) => serde_json::from_slice(&b)
            .map_err(|e| Error::InvalidArgument(format!("{}: {e}", p.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(json!({})),
        Err(e) => Err(Error::path(p, e)),
    }
}

/// The keys a registry may be stored under: Docker Hub's legacy URL, or the host with or
/// without a scheme.
fn keys_for(host: &str) -> Vec<String> {
    if host == "docker.io" || host == "index.docker.io" || host == "registry-1.docker.io" {
        return vec!["https://index.docker.io/v1/".into(), "docker.io".into()];
    }
    vec![
        host.to_string(),
        format!("https://{host}"),
        format!("http://{host}"),
    ]
}

/// Username and password for `host`, if any are stored.
pub fn credentials_for(host: &str) -> Result<Option<(String, String)>> {
    let cfg = read_config()?;
    for key in keys_for(host) {
        if let Some(helper) = cfg["credHelpers"][&key].as_str() {
            return helper_get(helper, &key);
        }
    }
    for key in keys_for(host) {
        if let Some(auth) = cfg["auths"][&key]["auth"].as_str() {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .map_err(|e| Error::InvalidArgument(format!("bad auth for {key}: {e}")))?;
            let text = String::from_utf8_lossy(&raw).into_owned();
            if let Some((u, p)) = text.split_once(':') {
                return Ok(Some((u.to_string(), p.to_string())));
            }
        }
    }
    if let Some(store) = cfg["credsStore"].as_str() {
        return helper_get(store, &keys_for(host)[0]);
    }
    Ok(None)
}

/// `docker-credential-<helper> get`: server URL on stdin, `{"Username","Secret"}` out.
fn helper_get(helper: &str, server: &str) -> Result<Option<(String, String)>> {
    let prog = format!("docker-credential-{helper}");
    let mut child = Command::new(&prog)
        .arg("get")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::Unavailable(format!("{prog}: {e}")))?;
    if let Some(mut i) = child.stdin.take() {
        let _ = i.write_all(server.as_bytes());
    }
    let out = child
        .wait_with_output()
        .map_err(|e| Error::Unavailable(format!("{prog}: {e}")))?;
    if !out.status.success() {
        // Helpers say "credentials not found" with a failure status.
        return Ok(None);
    }
    let v: Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| Error::Unavailable(format!("{prog}: bad answer: {e}")))?;
    match (v["Username"].as_str(), v["Secret"].as_str()) {
        (Some(u), Some(s)) => Ok(Some((u.to_string(), s.to_string()))),
        _ => Ok(None),
    }
}

fn write_config(cfg: &Value) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let p = config_path();
    if let Some(d) = p.parent() {
        std::fs::create_dir_all(d).map_err(|e| Error::path(d, e))?;
    }
    let tmp = p.with_extension(format!("json.tmp{}", std::process::id()));
    let bytes = serde_json::to_vec_pretty(cfg).map_err(|e| Error::Internal(e.to_string()))?;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| Error::path(&tmp, e))?;
    f.write_all(&bytes).map_err(|e| Error::path(&tmp, e))?;
    drop(f);
    std::fs::rename(&tmp, &p).map_err(|e| Error::path(&p, e))
}

/// Stores a login the way the docker CLI does without a credential store.
pub fn store_login(host: &str, user: &str, password: &str) -> Result<()> {
    let mut cfg = read_config()?;
    let key = keys_for(host).remove(0);
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    if !cfg["auths"].is_object() {
        cfg["auths"] = json!({});
    }
    cfg["auths"][&key] = json!({ "auth": auth });
    write_config(&cfg)
}

/// Removes a stored login; false if there was none.
pub fn remove_login(host: &str) -> Result<bool> {
    let mut cfg = read_config()?;
    let mut removed = false;
    if let Some(auths) = cfg["auths"].as_object_mut() {
        for k in keys_for(host) {
            removed |= auths.remove(&k).is_some();
        }
    }
    if removed {
        write_config(&cfg)?;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    // One test touches the process environment, so the cases run in sequence in it.
    #[test]
    fn login_roundtrip_and_docker_hub_keys() {
        let d = tempfile::tempdir().unwrap();
        // SAFETY: single test function mutating the env; no other test reads DOCKER_CONFIG.
        unsafe { std::env::set_var("DOCKER_CONFIG", d.path()) };
        assert_eq!(credentials_for("127.0.0.1:5000").unwrap(), None);
        store_login("127.0.0.1:5000", "alice", "s3cr:et").unwrap();
        assert_eq!(
            credentials_for("127.0.0.1:5000").unwrap(),
            Some(("alice".into(), "s3cr:et".into()))
        );
        // The file is what the docker CLI writes: auths.<host>.auth = base64(user:pass).
        let raw: Value =
            serde_json::from_slice(&std::fs::read(d.path().join("config.json")).unwrap()).unwrap();
        assert_eq!(
            raw["auths"]["127.0.0.1:5000"]["auth"],
            "YWxpY2U6czNjcjpldA=="
        );
        store_login("docker.io", "bob", "pw").unwrap();
        let raw: Value =
            serde_json::from_slice(&std::fs::read(d.path().join("config.json")).unwrap()).unwrap();
        assert!(raw["auths"]["https://index.docker.io/v1/"]["auth"].is_string());
        assert!(remove_login("127.0.0.1:5000").unwrap());
        assert!(!remove_login("127.0.0.1:5000").unwrap());
        assert_eq!(credentials_for("127.0.0.1:5000").unwrap(), None);
        unsafe { std::env::remove_var("DOCKER_CONFIG") };
    }
}
