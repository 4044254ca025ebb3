//! Serde models with Docker's field names, so `network inspect`, container inspect and the
//! future Engine API serve them as they are.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const OPT_BRIDGE_NAME: &str = "com.docker.network.bridge.name";
pub const OPT_DEFAULT_BRIDGE: &str = "com.docker.network.bridge.default_bridge";
pub const OPT_ENABLE_ICC: &str = "com.docker.network.bridge.enable_icc";
pub const OPT_MASQUERADE: &str = "com.docker.network.bridge.enable_ip_masquerade";

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct IpamConfig {
    pub subnet: String,
    #[serde(rename = "IPRange", skip_serializing_if = "String::is_empty")]
    pub ip_range: String,
    pub gateway: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct Ipam {
    pub driver: String,
    pub options: BTreeMap<String, String>,
    pub config: Vec<IpamConfig>,
}

/// A container as listed in a network's inspect output.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct NetworkContainer {
    pub name: String,
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    pub mac_address: String,
    #[serde(rename = "IPv4Address")]
    pub ipv4_address: String,
    #[serde(rename = "IPv6Address")]
    pub ipv6_address: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct ConfigFrom {
    pub network: String,
}

/// Docker's NetworkResource (`GET /networks/{id}`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct Network {
    pub name: String,
    pub id: String,
    pub created: String,
    pub scope: String,
    pub driver: String,
    #[serde(rename = "EnableIPv6")]
    pub enable_ipv6: bool,
    #[serde(rename = "IPAM")]
    pub ipam: Ipam,
    pub internal: bool,
    pub attachable: bool,
    pub ingress: bool,
    /// Swarm config-only networks; always empty here, present because clients read it.
    pub config_from: ConfigFrom,
    pub config_only: bool,
    /// Filled in by inspect from the live endpoints; never persisted.
    pub containers: BTreeMap<String, NetworkContainer>,
    pub options: BTreeMap<String, String>,
    pub labels: BTreeMap<String, String>,
}

impl Network {
    /// The Linux bridge of a `bridge`-driver network.
    pub fn bridge_name(&self) -> Option<&str> {
        self.options.get(OPT_BRIDGE_NAME).map(String::as_str)
    }
    pub fn is_default_bridge(&self) -> bool {
        self.options
            .get(OPT_DEFAULT_BRIDGE)
            .is_some_and(|v| v == "true")
    }
    /// Whether the network gets an embedded DNS server (Docker: user-defined networks).
    pub fn has_dns(&self) -> bool {
        self.driver == "bridge" && !self.is_default_bridge()
    }
    pub fn short_id(&self) -> &str {
        &self.id[..self.id.len().min(12)]
    }
}

/// What a container asks of one network (Docker's EndpointSettings on create/connect).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct EndpointConfig {
    #[serde(rename = "IPAMConfig", skip_serializing_if = "Option::is_none")]
    pub ipam_config: Option<EndpointIpamConfig>,
    pub links: Vec<String>,
    pub aliases: Vec<String>,
    pub mac_address: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct EndpointIpamConfig {
    #[serde(rename = "IPv4Address")]
    pub ipv4_address: String,
}

/// A live attachment of a running container to a network (run-root state; the embedded DNS
/// server answers from these).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct Endpoint {
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    pub network_name: String,
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    #[serde(rename = "ContainerID")]
    pub container_id: String,
    pub container_name: String,
    pub aliases: Vec<String>,
    #[serde(rename = "IPAddress")]
    pub ip_address: String,
    pub ip_prefix_len: u8,
    pub gateway: String,
    pub mac_address: String,
    /// Interface name inside the container (eth0, eth1, ...).
    pub interface: String,
    /// The host end of the veth pair.
    pub host_veth: String,
    /// What the container asked for (kept so connect's settings show in inspect).
    pub config: EndpointConfig,
    /// The container's `--dns` servers, where the embedded DNS forwards its other queries.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub upstream_dns: Vec<String>,
}

impl Endpoint {
    /// Docker's EndpointSettings as shown in container inspect.
    pub fn settings_json(&self) -> serde_json::Value {
        let mut dns_names = vec![self.container_name.clone()];
        dns_names.push(self.container_id[..self.container_id.len().min(12)].to_string());
        dns_names.extend(self.aliases.iter().cloned());
        serde_json::json!({
            "IPAMConfig": self.config.ipam_config,
            "Links": if self.config.links.is_empty() { serde_json::Value::Null } else { serde_json::json!(self.config.links) },
            "Aliases": if self.aliases.is_empty() { serde_json::Value::Null } else { serde_json::json!(self.aliases) },
            "MacAddress": self.mac_address,
            "DriverOpts": null,
            "NetworkID": self.network_id,
            "EndpointID": self.endpoint_id,
            "Gateway": self.gateway,
            "IPAddress": self.ip_address,
            "IPPrefixLen": self.ip_prefix_len,
            "IPv6Gateway": "",
            "GlobalIPv6Address": "",
            "GlobalIPv6PrefixLen": 0,
            "DNSNames": dns_names,
        })
    }
}

/// One `-p` request (Docker's PortBinding plus the container side).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "PascalCase", default)]
pub struct PortMapping {
    /// `tcp` or `udp`.
    pub proto: String,
    pub container_port: u16,
    /// Empty for all addresses.
    pub host_ip: String,
    /// 0 for an ephemeral port chosen at start.
    pub host_port: u16,
}

/// The network side of one running container: its netns pin, endpoints and ports.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct Sandbox {
    #[serde(rename = "ContainerID")]
    pub container_id: String,
    /// The pinned namespace (Docker's SandboxKey); empty when joining another's.
    pub netns_path: String,
    /// Network IDs attached, in attach order.
    pub networks: Vec<String>,
    /// Published ports with the host ports actually used.
    pub ports: Vec<PortMapping>,
    /// Container IP the published ports forward to.
    pub port_target: String,
}
