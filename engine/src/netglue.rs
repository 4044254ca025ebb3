//! The engine's side of networking: which network modes need a sandbox, what to ask the
//! network crate for at start, and the /etc files and inspect view that follow from it.
//! All kernel and state work lives in the `network` crate.

use crate::error::{Error, Result};
use crate::model::{ContainerRecord, HostConfig};
use crate::paths::Roots;
use network::{ContainerRef, EndpointConfig, Networks, PortMapping, SandboxInfo, SandboxRequest};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// How a container is networked.
#[derive(Debug, PartialEq)]
pub enum Mode<'a> {
    /// Own namespace with only `lo`.
    None,
    Host,
    /// `container:<id>`: joins that container's namespace.
    Container(&'a str),
    /// One or more bridge networks: a sandbox made by the network crate.
    Networks,
}

pub fn mode(hc: &HostConfig) -> Mode<'_> {
    match hc.network_mode.as_str() {
        "none" => Mode::None,
        "host" => Mode::Host,
        m => match m.strip_prefix("container:") {
            Some(c) => Mode::Container(c),
            None => Mode::Networks,
        },
    }
}

pub fn open(roots: &Roots, settings: &network::NetSettings) -> Result<Networks> {
    Ok(Networks::open(&roots.data, &roots.run, settings)?)
}

/// Create-time checks and normalisation: `default`/empty become `bridge`, the network
/// must exist, and the primary network gets an entry in `networks`.
pub fn prepare(
    roots: &Roots,
    settings: &network::NetSettings,
    hc: &mut HostConfig,
    networks: &mut BTreeMap<String, EndpointConfig>,
    mac: &str,
) -> Result<()> {
    if hc.network_mode.is_empty() || hc.network_mode == "default" {
        hc.network_mode = "bridge".into();
    }
    // The docker CLI (API >= 1.44) also names the primary network in EndpointsConfig, under
    // the name the user gave: `default`, `host`, `none` or `container:<x>` included.
    if let Some(cfg) = networks.remove("default") {
        networks.entry("bridge".into()).or_insert(cfg);
    }
    match mode(hc) {
        Mode::None | Mode::Host | Mode::Container(_) => {
            if networks
                .get(&hc.network_mode)
                .is_some_and(|c| *c == EndpointConfig::default())
            {
                networks.remove(&hc.network_mode);
            }
            if !networks.is_empty() {
                return Err(Error::invalid(format!(
                    "conflicting options: cannot attach both user-defined and non-user-defined network-modes ({})",
                    hc.network_mode
                )));
            }
            if let Some(c) = hc.network_mode.strip_prefix("container:")
                && c.is_empty()
            {
                return Err(Error::invalid("--network: container name or ID is missing"));
            }
            Ok(())
        }
        Mode::Networks => {
            let nets = open(roots, settings)?;
            let primary = hc.network_mode.clone();
            let n = nets.find(&primary)?;
            let cfg = networks.entry(primary).or_default();
            if cfg.mac_address.is_empty() {
                cfg.mac_address = mac.to_string();
            }
            if !cfg.mac_address.is_empty() {
                network::ipam::parse_mac(&cfg.mac_address)?;
            }
            if n.is_default_bridge() {
                if !cfg.aliases.is_empty() {
                    return Err(Error::invalid(
                        "network-scoped aliases are only supported for user-defined networks",
                    ));
                }
                if cfg
                    .ipam_config
                    .as_ref()
                    .is_some_and(|i| !i.ipv4_address.is_empty())
                {
                    return Err(Error::invalid(
                        "user specified IP address is supported on user defined networks only",
                    ));
                }
            } else if !hc.links.is_empty() {
                // Docker allows --link on user networks as an alias; keep the default-only
                // /etc/hosts semantics simple and refuse nothing.
            }
            for name in networks.keys() {
                nets.find(name)?;
            }
            Ok(())
        }
    }
}

/// Published ports from `-p` bindings and, with `-P`, every exposed port.
pub fn port_mappings(r: &ContainerRecord) -> Result<Vec<PortMapping>> {
    let hc = &r.host_config;
    let mut out = Vec::new();
    let split = |key: &str| -> Result<(u16, String)> {
        let (port, proto) = key.split_once('/').unwrap_or((key, "tcp"));
        let port: u16 = port
            .parse()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| Error::invalid(format!("invalid port {key}")))?;
        Ok((port, proto.to_ascii_lowercase()))
    };
    for (key, binds) in &hc.port_bindings {
        let (port, proto) = split(key)?;
        for b in binds {
            let host_port = if b.host_port.is_empty() {
                0
            } else {
                b.host_port
                    .parse()
                    .map_err(|_| Error::invalid(format!("invalid host port {}", b.host_port)))?
            };
            out.push(PortMapping {
                proto: proto.clone(),
                container_port: port,
                host_ip: b.host_ip.clone(),
                host_port,
            });
        }
    }
    if hc.publish_all_ports {
        for key in r.config.exposed_ports.keys() {
            if hc.port_bindings.contains_key(key) {
                continue;
            }
            let (port, proto) = split(key)?;
            out.push(PortMapping {
                proto,
                container_port: port,
                host_ip: String::new(),
                host_port: 0,
            });
        }
    }
    Ok(out)
}

/// Makes the container's sandbox: namespace, endpoints on every configured network (the
/// primary one first, as eth0), published ports.
pub fn setup(
    roots: &Roots,
    settings: &network::NetSettings,
    r: &ContainerRecord,
) -> Result<SandboxInfo> {
    let nets = open(roots, settings)?;
    let primary = r.host_config.network_mode.clone();
    let mut order: Vec<(String, EndpointConfig)> = Vec::new();
    if let Some(c) = r.networks.get(&primary) {
        order.push((primary.clone(), c.clone()));
    }
    for (k, c) in &r.networks {
        if *k != primary {
            order.push((k.clone(), c.clone()));
        }
    }
    let req = SandboxRequest {
        container: ContainerRef {
            id: r.id.clone(),
            name: r.name.clone(),
            dns: r.host_config.dns.clone(),
        },
        networks: order,
        ports: port_mappings(r)?,
    };
    Ok(nets.setup(&req)?)
}

/// Releases what [`setup`] made; harmless when there is nothing.
pub fn teardown(roots: &Roots, settings: &network::NetSettings, id: &str) {
    if let Ok(n) = Networks::open(&roots.data, &roots.run, settings)
        && let Err(e) = n.teardown(id)
    {
        tracing::warn!("network teardown of {id}: {e}");
    }
}

/// Makes the container's published ports live (the monitor calls this once the container
/// runs, before it reports the start): the starter never opens an nf_tables socket, whose
/// release right after a commit waits an RCU grace period.
pub fn publish_ports(roots: &Roots, settings: &network::NetSettings, id: &str) -> Result<()> {
    Ok(Networks::open(&roots.data, &roots.run, settings)?.publish_sandbox(id)?)
}

/// Docker's NetworkSettings for inspect: live endpoints and ports of a running container,
/// the configured networks (without addresses) otherwise.
pub fn settings_json(roots: &Roots, r: &ContainerRecord, running: bool) -> Value {
    let empty = |name: &str| {
        json!({ name: {
            "IPAMConfig": null, "Links": null, "Aliases": null, "MacAddress": "", "DriverOpts": null,
            "NetworkID": "", "EndpointID": "", "Gateway": "", "IPAddress": "", "IPPrefixLen": 0,
            "IPv6Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "DNSNames": null
        }})
    };
    let mut s = json!({
        "Bridge": "", "SandboxID": "", "SandboxKey": "", "HairpinMode": false,
        "LinkLocalIPv6Address": "", "LinkLocalIPv6PrefixLen": 0, "Ports": {},
        "SecondaryIPAddresses": null, "SecondaryIPv6Addresses": null, "EndpointID": "",
        "Gateway": "", "GlobalIPv6Address": "", "GlobalIPv6PrefixLen": 0, "IPAddress": "",
        "IPPrefixLen": 0, "IPv6Gateway": "", "MacAddress": "", "Networks": {},
    });
    match mode(&r.host_config) {
        Mode::None => s["Networks"] = empty("none"),
        Mode::Host => s["Networks"] = empty("host"),
        Mode::Container(_) => {}
        Mode::Networks => {
            // Read-only view of the stored networks: settings do not matter.
            let nets = open(roots, &network::NetSettings::default()).ok();
            let sandbox = nets
                .as_ref()
                .filter(|_| running)
                .and_then(|n| n.sandbox(&r.id).ok().flatten());
            let mut map = serde_json::Map::new();
            if let (Some(n), Some(sb)) = (nets.as_ref(), sandbox.as_ref()) {
                s["SandboxKey"] = json!(sb.netns_path);
                s["SandboxID"] = json!(sandbox_id(&r.id));
                for ep in n.endpoints(&r.id).unwrap_or_default() {
                    if ep.network_name == "bridge" {
                        s["EndpointID"] = json!(ep.endpoint_id);
                        s["Gateway"] = json!(ep.gateway);
                        s["IPAddress"] = json!(ep.ip_address);
                        s["IPPrefixLen"] = json!(ep.ip_prefix_len);
                        s["MacAddress"] = json!(ep.mac_address);
                    }
                    map.insert(ep.network_name.clone(), ep.settings_json());
                }
                let mut ports = serde_json::Map::new();
                for k in r.config.exposed_ports.keys() {
                    ports.insert(k.clone(), Value::Null);
                }
                for p in &sb.ports {
                    let key = format!("{}/{}", p.container_port, p.proto);
                    let ip = if p.host_ip.is_empty() {
                        "0.0.0.0"
                    } else {
                        &p.host_ip
                    };
                    let entry = ports.entry(key).or_insert(Value::Null);
                    if !entry.is_array() {
                        *entry = json!([]);
                    }
                    if let Some(a) = entry.as_array_mut() {
                        a.push(json!({"HostIp": ip, "HostPort": p.host_port.to_string()}));
                    }
                }
                s["Ports"] = Value::Object(ports);
            } else {
                for name in r.networks.keys() {
                    if let Some(o) = empty(name).as_object() {
                        map.extend(o.clone());
                    }
                }
            }
            s["Networks"] = Value::Object(map);
        }
    }
    s
}

fn sandbox_id(id: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(format!("sandbox:{id}").as_bytes()))
}
