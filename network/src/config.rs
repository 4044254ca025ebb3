//! Host-level network settings: Docker's daemon.json keys (`bip`, `default-address-pools`,
//! `bridge`, `ip-forward`) picked from the daemon.json document the CLI parsed once, and the
//! kernel object names this data root owns.
//!
//! Names are per data root so that several pelagos instances (the test suite runs dozens at
//! once, each with private roots) never share a bridge, an nftables table or address leases:
//! the default root uses Docker-like names (`pelagos0`, table `pelagos`), any other root
//! derives them from a hash of its path.

use crate::error::{Error, Result};
use crate::ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub const DEFAULT_DATA_ROOT: &str = "/var/lib/pelagos";

/// One entry of `default-address-pools`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AddressPool {
    pub base: String,
    pub size: u8,
}

/// The daemon.json keys this crate reads; every other key is ignored.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", default)]
pub struct NetSettings {
    bip: Option<String>,
    default_address_pools: Option<Vec<AddressPool>>,
    bridge: Option<String>,
    ip_forward: Option<bool>,
    /// Docker's `dns`: the resolvers containers use by default, and where the embedded
    /// DNS servers forward names they do not own (instead of the host's resolv.conf).
    pub dns: Vec<String>,
}

/// Where state lives and what the kernel objects are called.
#[derive(Debug, Clone)]
pub struct NetConfig {
    pub data_root: PathBuf,
    pub run_root: PathBuf,
    /// Interface name of the default `bridge` network.
    pub default_bridge: String,
    /// `bip`: gateway address and prefix of the default bridge, when configured.
    pub bip: Option<(std::net::Ipv4Addr, Ipv4Net)>,
    pub pools: Vec<(Ipv4Net, u8)>,
    /// Our nftables table (family `ip`); nothing else is ever touched.
    pub nft_table: String,
    /// Docker's `ip-forward`: turn on net.ipv4.ip_forward (needed for outbound NAT). Off,
    /// only our own bridges forward (per-interface sysctl), which is enough for
    /// container-to-container and published-port traffic but not for outbound traffic.
    pub ip_forward: bool,
    /// daemon.json `dns` (IPv4 entries): the embedded DNS servers' upstreams when set.
    pub dns: Vec<std::net::Ipv4Addr>,
    /// Written to each bridge's IFLA_IFALIAS so leftovers can be attributed to a data root.
    pub owner_tag: String,
}

impl NetConfig {
    pub fn load(data_root: &Path, run_root: &Path, dj: &NetSettings) -> Result<Self> {
        let is_default = data_root == Path::new(DEFAULT_DATA_ROOT);
        let tag = hex::encode(&sha2_digest(data_root.as_os_str().as_encoded_bytes())[..4]);
        let default_bridge = dj.bridge.clone().unwrap_or_else(|| {
            if is_default {
                "pelagos0".into()
            } else {
                format!("pl{tag}")
            }
        });
        if default_bridge.is_empty() || default_bridge.len() > 15 {
            return Err(Error::invalid(format!(
                "invalid bridge name {default_bridge:?} (1 to 15 characters)"
            )));
        }
        let bip = match &dj.bip {
            Some(s) => Some(crate::ipnet::parse_cidr_loose(s)?),
            None => None,
        };
        let pools = match &dj.default_address_pools {
            Some(p) => p
                .iter()
                .map(|p| {
                    let base: Ipv4Net = p.base.parse()?;
                    if p.size < base.prefix() || p.size > 30 {
                        return Err(Error::invalid(format!(
                            "invalid address pool {}: size {}",
                            p.base, p.size
                        )));
                    }
                    Ok((base, p.size))
                })
                .collect::<Result<Vec<_>>>()?,
            None => docker_default_pools(),
        };
        Ok(NetConfig {
            data_root: data_root.to_path_buf(),
            run_root: run_root.to_path_buf(),
            default_bridge,
            bip,
            pools,
            nft_table: if is_default {
                "pelagos".into()
            } else {
                format!("pelagos_{tag}")
            },
            ip_forward: dj.ip_forward.unwrap_or(true),
            dns: dj
                .dns
                .iter()
                .map(|a| {
                    a.parse().map_err(|_| {
                        Error::invalid(format!("daemon.json dns: invalid IPv4 address {a}"))
                    })
                })
                .collect::<Result<_>>()?,
            owner_tag: format!("pelagos:{}", data_root.display()),
        })
    }

    pub fn networks_dir(&self) -> PathBuf {
        self.data_root.join("networks")
    }
    /// Runtime state (endpoints, sandboxes, netns pins): gone after a reboot, like the
    /// kernel objects it describes.
    pub fn run_dir(&self) -> PathBuf {
        self.run_root.join("net")
    }
}

/// Docker's defaults: 172.17-31.0.0/16 as /16s, then 192.168.0.0/16 as /20s.
pub fn docker_default_pools() -> Vec<(Ipv4Net, u8)> {
    let mut v = Vec::new();
    if let Ok(n) = "172.17.0.0/16".parse::<Ipv4Net>() {
        v.push((n, 16));
    }
    for b in 18..=31u8 {
        if let Ok(n) = format!("172.{b}.0.0/16").parse::<Ipv4Net>() {
            v.push((n, 16));
        }
    }
    if let Ok(n) = "192.168.0.0/16".parse::<Ipv4Net>() {
        v.push((n, 20));
    }
    v
}

impl NetSettings {
    /// Picks this crate's keys out of the parsed daemon.json (`null` or `{}`: defaults).
    pub fn from_json(doc: &serde_json::Value) -> Result<Self> {
        if doc.is_null() {
            return Ok(NetSettings::default());
        }
        serde_json::from_value(doc.clone()).map_err(|e| Error::invalid(format!("daemon.json: {e}")))
    }
}

fn sha2_digest(b: &[u8]) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(b).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_depend_on_the_data_root() {
        let d = tempfile::tempdir().unwrap();
        let none = NetSettings::default();
        let c = NetConfig::load(d.path(), d.path(), &none).unwrap();
        assert!(c.default_bridge.starts_with("pl") && c.default_bridge.len() == 10);
        assert!(c.nft_table.starts_with("pelagos_"));
        assert_eq!(c.pools.len(), 16);
        let doc: serde_json::Value = serde_json::from_str(
            r#"{"bip":"10.99.0.1/24","bridge":"br-test","default-address-pools":[{"base":"10.200.0.0/16","size":24}],"ip-forward":false,"insecure-registries":["x"]}"#,
        )
        .unwrap();
        let c =
            NetConfig::load(d.path(), d.path(), &NetSettings::from_json(&doc).unwrap()).unwrap();
        assert_eq!(c.default_bridge, "br-test");
        assert_eq!(c.bip.unwrap().0.to_string(), "10.99.0.1");
        assert_eq!(c.pools, vec![("10.200.0.0/16".parse().unwrap(), 24)]);
        assert!(!c.ip_forward);
        let bad = NetSettings::from_json(&serde_json::json!({"bip": "300.1.1.1/8"})).unwrap();
        assert!(NetConfig::load(d.path(), d.path(), &bad).is_err());
        assert!(NetSettings::from_json(&serde_json::json!({"ip-forward": "yes"})).is_err());
    }
}
