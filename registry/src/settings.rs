//! The registry part of the daemon-wide settings file (`/etc/pelagos/daemon.json`), read
//! with Docker's key names so an existing `daemon.json` works unchanged: `insecure-registries`
//! (host[:port] or CIDR) and `registry-mirrors` (used for docker.io). Other keys belong to
//! other crates and are ignored here.

use crate::error::{Error, Result};
use std::net::IpAddr;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct RegistrySettings {
    pub insecure_registries: Vec<String>,
    /// Mirror hosts (`host[:port]`, scheme stripped), tried in order for docker.io.
    pub registry_mirrors: Vec<String>,
    /// Credentials given with one request (the Docker API's `X-Registry-Auth`). When set
    /// they replace the docker config.json lookup for that operation's registry calls.
    pub credentials: Option<Credentials>,
}

/// A username and password for a registry, supplied by the caller rather than looked up.
#[derive(Clone, Default, PartialEq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

// Hand-written so the password never reaches a log line.
impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl RegistrySettings {
    /// Reads the registry keys of a parsed `daemon.json`.
    pub fn from_json(doc: &serde_json::Value) -> Result<Self> {
        let list = |key: &str| -> Result<Vec<String>> {
            match doc.get(key) {
                None | Some(serde_json::Value::Null) => Ok(Vec::new()),
                Some(serde_json::Value::Array(items)) => items
                    .iter()
                    .map(|v| {
                        v.as_str().map(str::to_string).ok_or_else(|| {
                            Error::InvalidArgument(format!(
                                "daemon.json: {key} must be a list of strings"
                            ))
                        })
                    })
                    .collect(),
                Some(_) => Err(Error::InvalidArgument(format!(
                    "daemon.json: {key} must be a list of strings"
                ))),
            }
        };
        let mirrors = list("registry-mirrors")?
            .into_iter()
            .map(|m| {
                let host = m
                    .trim_start_matches("https://")
                    .trim_start_matches("http://")
                    .trim_end_matches('/');
                if host.is_empty() || host.contains('/') {
                    Err(Error::InvalidArgument(format!(
                        "daemon.json: invalid registry mirror {m:?}: a mirror is scheme://host[:port]"
                    )))
                } else {
                    Ok(host.to_string())
                }
            })
            .collect::<Result<_>>()?;
        let insecure = list("insecure-registries")?;
        for entry in &insecure {
            if entry.contains('/') && parse_cidr(entry).is_none() {
                return Err(Error::InvalidArgument(format!(
                    "daemon.json: invalid insecure registry {entry:?}: not host[:port] or CIDR"
                )));
            }
        }
        Ok(RegistrySettings {
            insecure_registries: insecure,
            registry_mirrors: mirrors,
            credentials: None,
        })
    }

    /// Registries spoken to over plain HTTP: loopback always (Docker treats 127.0.0.0/8 as
    /// insecure), plus the configured hosts and CIDRs (matched against IP-literal hosts).
    pub fn is_insecure(&self, host: &str) -> bool {
        let name = strip_port(host);
        if name == "localhost" || name == "[::1]" || name == "::1" {
            return true;
        }
        let ip: Option<IpAddr> = name.trim_matches(|c| c == '[' || c == ']').parse().ok();
        if ip.is_some_and(|ip| ip.is_loopback()) {
            return true;
        }
        self.insecure_registries.iter().any(|entry| {
            if let Some((net, bits)) = parse_cidr(entry) {
                ip.is_some_and(|ip| in_cidr(ip, net, bits))
            } else {
                entry == host || entry == name
            }
        })
    }
}

fn strip_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) && !h.contains(':') => h,
        _ => host,
    }
}

fn parse_cidr(s: &str) -> Option<(IpAddr, u8)> {
    let (net, bits) = s.split_once('/')?;
    let net: IpAddr = net.parse().ok()?;
    let bits: u8 = bits.parse().ok()?;
    let max = if net.is_ipv4() { 32 } else { 128 };
    (bits <= max).then_some((net, bits))
}

fn in_cidr(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_insecure_by_default() {
        let s = RegistrySettings::default();
        assert!(s.is_insecure("127.0.0.1:5000"));
        assert!(s.is_insecure("127.3.2.1"));
        assert!(s.is_insecure("localhost:5000"));
        assert!(s.is_insecure("[::1]:5000"));
        assert!(!s.is_insecure("registry.example.com"));
        assert!(!s.is_insecure("10.1.2.3:5000"));
    }

    #[test]
    fn configured_hosts_and_cidrs() {
        let doc = serde_json::json!({
            "insecure-registries": ["reg.lan:5000", "10.0.0.0/8"],
            "registry-mirrors": ["https://mirror.lan:5000/", "http://127.0.0.1:5055"],
            "data-root": "/elsewhere",
            "bip": "10.9.0.1/24"
        });
        let s = RegistrySettings::from_json(&doc).unwrap();
        assert!(s.is_insecure("reg.lan:5000"));
        assert!(!s.is_insecure("reg.lan:5001"));
        assert!(s.is_insecure("10.20.30.40:443"));
        assert!(!s.is_insecure("11.0.0.1"));
        assert_eq!(
            s.registry_mirrors,
            vec!["mirror.lan:5000", "127.0.0.1:5055"]
        );
    }

    #[test]
    fn bad_settings_are_refused() {
        for doc in [
            serde_json::json!({"insecure-registries": "reg.lan"}),
            serde_json::json!({"insecure-registries": ["10.0.0.0/99"]}),
            serde_json::json!({"registry-mirrors": ["https://mirror.lan/path"]}),
        ] {
            assert!(RegistrySettings::from_json(&doc).is_err(), "{doc}");
        }
    }
}
