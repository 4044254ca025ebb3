//! Docker's create request (bollard-stubs models) -> the engine's CreateOptions. The same
//! semantics as the CLI's flag translation (src/run_opts.rs), from already-structured input.

use crate::error::{ApiError, ApiResult};
use bollard_stubs::models::{ContainerConfig, HostConfig, Mount, NetworkingConfig};
use engine::model::{
    BindOptions, ContainerConfig as EConfig, HostConfig as EHost, LogConfig, MountSpec,
    RestartPolicy, TmpfsOptions, Ulimit, VolumeOptions,
};
use engine::{CreateOptions, ImageInfo};
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};

/// `POST /containers/create`: Config with HostConfig and NetworkingConfig inline.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct CreateBody {
    #[serde(flatten)]
    pub config: ContainerConfig,
    #[serde(rename = "HostConfig")]
    pub host_config: Option<HostConfig>,
    #[serde(rename = "NetworkingConfig")]
    pub networking_config: Option<NetworkingConfig>,
    /// dockerode sends the name in the body as well.
    #[serde(rename = "name")]
    pub name: Option<String>,
}

fn map<K: Ord + Clone, V: Clone>(m: &Option<HashMap<K, V>>) -> BTreeMap<K, V> {
    m.as_ref()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default()
}

fn unit_map(m: &Option<HashMap<String, HashMap<(), ()>>>) -> BTreeMap<String, serde_json::Value> {
    m.as_ref()
        .map(|m| {
            m.keys()
                .map(|k| (k.clone(), serde_json::json!({})))
                .collect()
        })
        .unwrap_or_default()
}

fn mount(m: &Mount) -> ApiResult<MountSpec> {
    let kind = m
        .typ
        .as_ref()
        .map(|t| t.to_string())
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| "volume".into());
    let target = m.target.clone().unwrap_or_default();
    if target.is_empty() {
        return Err(ApiError::bad_request(
            "invalid mount config: Target is required",
        ));
    }
    let mut spec = MountSpec {
        kind: kind.clone(),
        source: m.source.clone().unwrap_or_default(),
        target,
        read_only: m.read_only.unwrap_or(false),
        ..Default::default()
    };
    match kind.as_str() {
        "bind" => {
            let o = m.bind_options.clone().unwrap_or_default();
            spec.bind_options = Some(BindOptions {
                propagation: o.propagation.map(|p| p.to_string()).unwrap_or_default(),
                create_mountpoint: o.create_mountpoint.unwrap_or(false),
            });
        }
        "volume" => {
            let o = m.volume_options.clone().unwrap_or_default();
            spec.volume_options = Some(VolumeOptions {
                no_copy: o.no_copy.unwrap_or(false),
                labels: map(&o.labels),
            });
        }
        "tmpfs" => {
            let o = m.tmpfs_options.clone().unwrap_or_default();
            spec.tmpfs_options = Some(TmpfsOptions {
                size_bytes: o.size_bytes.unwrap_or(0),
                mode: o.mode.unwrap_or(0) as u32,
            });
        }
        other => {
            return Err(ApiError::bad_request(format!(
                "invalid mount config: mount type unknown: {other:?}"
            )));
        }
    }
    Ok(spec)
}

/// Options the engine cannot honour yet are refused with 400, not dropped: a container
/// that silently lacks `--pid=host`, a `--device` or `volumes_from` fails later, and
/// further from the cause. Values that ask for what the engine does anyway pass.
fn refuse_unsupported(h: &HostConfig) -> ApiResult<()> {
    let set = |v: &Option<String>| v.as_deref().unwrap_or("").to_string();
    let mut refused = Vec::new();
    let pid = set(&h.pid_mode);
    if !pid.is_empty() && pid != "private" {
        refused.push(format!("PidMode {pid}"));
    }
    let ipc = set(&h.ipc_mode);
    if !matches!(ipc.as_str(), "" | "private" | "shareable") {
        refused.push(format!("IpcMode {ipc}"));
    }
    let uts = set(&h.uts_mode);
    if !uts.is_empty() {
        refused.push(format!("UTSMode {uts}"));
    }
    // No user namespaces here: "host" is what every container gets.
    let userns = set(&h.userns_mode);
    if !matches!(userns.as_str(), "" | "host") {
        refused.push(format!("UsernsMode {userns}"));
    }
    if matches!(
        h.cgroupns_mode,
        Some(bollard_stubs::models::HostConfigCgroupnsModeEnum::HOST)
    ) {
        refused.push("CgroupnsMode host".into());
    }
    if h.devices.as_ref().is_some_and(|d| !d.is_empty()) {
        refused.push("Devices".into());
    }
    if h.device_requests.as_ref().is_some_and(|d| !d.is_empty()) {
        refused.push("DeviceRequests (--gpus)".into());
    }
    if h.volumes_from.as_ref().is_some_and(|v| !v.is_empty()) {
        refused.push("VolumesFrom".into());
    }
    if !set(&h.cgroup_parent).is_empty() {
        refused.push("CgroupParent".into());
    }
    if refused.is_empty() {
        return Ok(());
    }
    Err(ApiError::bad_request(format!(
        "not supported by this engine: {}",
        refused.join(", ")
    )))
}

pub fn host_config(h: &HostConfig) -> ApiResult<EHost> {
    refuse_unsupported(h)?;
    let log = h.log_config.clone().unwrap_or_default();
    let restart = h.restart_policy.clone().unwrap_or_default();
    let restart_name = restart
        .name
        .map(|n| n.to_string())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "no".into());
    let mut security_opt = h.security_opt.clone().unwrap_or_default();
    // Docker's CLI sends `seccomp=<profile JSON>`; the engine takes the same form.
    security_opt.retain(|s| !s.is_empty());
    engine::security::validate_security_opts(&security_opt)?;
    let network_mode = h.network_mode.clone().unwrap_or_default();
    Ok(EHost {
        binds: h.binds.clone().unwrap_or_default(),
        log_config: LogConfig {
            kind: log
                .typ
                .filter(|t| !t.is_empty())
                .unwrap_or_else(|| "pelagos".into()),
            config: map(&log.config),
        },
        network_mode,
        port_bindings: port_bindings(&h.port_bindings),
        publish_all_ports: h.publish_all_ports.unwrap_or(false),
        links: h.links.clone().unwrap_or_default(),
        restart_policy: RestartPolicy {
            name: restart_name,
            maximum_retry_count: restart.maximum_retry_count.unwrap_or(0),
        },
        auto_remove: h.auto_remove.unwrap_or(false),
        cap_add: h.cap_add.clone().unwrap_or_default(),
        cap_drop: h.cap_drop.clone().unwrap_or_default(),
        dns: h.dns.clone().unwrap_or_default(),
        dns_options: h.dns_options.clone().unwrap_or_default(),
        dns_search: h.dns_search.clone().unwrap_or_default(),
        extra_hosts: h.extra_hosts.clone().unwrap_or_default(),
        group_add: h.group_add.clone().unwrap_or_default(),
        privileged: h.privileged.unwrap_or(false),
        readonly_rootfs: h.readonly_rootfs.unwrap_or(false),
        security_opt,
        tmpfs: map(&h.tmpfs),
        sysctls: map(&h.sysctls),
        shm_size: h.shm_size.unwrap_or(0),
        init: h.init.unwrap_or(false),
        memory: h.memory.unwrap_or(0),
        memory_swap: h.memory_swap.unwrap_or(0),
        memory_reservation: h.memory_reservation.unwrap_or(0),
        nano_cpus: h.nano_cpus.unwrap_or(0),
        cpu_shares: h.cpu_shares.unwrap_or(0),
        cpu_period: h.cpu_period.unwrap_or(0),
        cpu_quota: h.cpu_quota.unwrap_or(0),
        cpuset_cpus: h.cpuset_cpus.clone().unwrap_or_default(),
        cpuset_mems: h.cpuset_mems.clone().unwrap_or_default(),
        // Docker: 0 and -1 both mean unlimited.
        pids_limit: h.pids_limit.filter(|p| *p > 0),
        blkio_weight: h.blkio_weight.unwrap_or(0),
        ulimits: h
            .ulimits
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|u| Ulimit {
                name: u.name.unwrap_or_default(),
                soft: u.soft.unwrap_or(0),
                hard: u.hard.unwrap_or(0),
            })
            .collect(),
        oom_score_adj: h.oom_score_adj.unwrap_or(0) as i32,
        mounts: h
            .mounts
            .clone()
            .unwrap_or_default()
            .iter()
            .map(mount)
            .collect::<ApiResult<_>>()?,
        masked_paths: h.masked_paths.clone().unwrap_or_default(),
        readonly_paths: h.readonly_paths.clone().unwrap_or_default(),
        rootfs: None,
        netns_path: None,
    })
}

/// Builds the engine's request; `image` was resolved by the caller.
pub fn create_options(
    name: Option<String>,
    body: &CreateBody,
    image: ImageInfo,
) -> ApiResult<CreateOptions> {
    let c = &body.config;
    let host_config = host_config(&body.host_config.clone().unwrap_or_default())?;
    let healthcheck = c
        .healthcheck
        .as_ref()
        .map(|h| serde_json::to_value(h).unwrap_or_default());
    let config = EConfig {
        hostname: c.hostname.clone().unwrap_or_default(),
        domainname: c.domainname.clone().unwrap_or_default(),
        user: c.user.clone().unwrap_or_default(),
        attach_stdin: c.attach_stdin.unwrap_or(false),
        attach_stdout: c.attach_stdout.unwrap_or(false),
        attach_stderr: c.attach_stderr.unwrap_or(false),
        exposed_ports: unit_map(&c.exposed_ports),
        on_build: c.on_build.clone().filter(|t| !t.is_empty()),
        tty: c.tty.unwrap_or(false),
        open_stdin: c.open_stdin.unwrap_or(false),
        stdin_once: c.stdin_once.unwrap_or(false),
        env: c.env.clone().unwrap_or_default(),
        cmd: c.cmd.clone().unwrap_or_default(),
        healthcheck,
        image: String::new(),
        volumes: unit_map(&c.volumes),
        working_dir: c.working_dir.clone().unwrap_or_default(),
        entrypoint: Vec::new(),
        labels: map(&c.labels),
        stop_signal: c.stop_signal.clone().filter(|s| !s.is_empty()),
        stop_timeout: c.stop_timeout,
        #[allow(deprecated)]
        mac_address: c.mac_address.clone().unwrap_or_default(),
    };
    // Entrypoint: absent/null keeps the image's; `[""]` or `[]` resets it (and the image's
    // Cmd with it), as `--entrypoint ""` does.
    let entrypoint = c.entrypoint.as_ref().map(|e| {
        if e.len() == 1 && e[0].is_empty() {
            Vec::new()
        } else {
            e.clone()
        }
    });
    Ok(CreateOptions {
        name: name.filter(|n| !n.is_empty()),
        image: Some(image),
        config,
        entrypoint,
        host_config,
        networks: endpoints(&body.networking_config),
    })
}

/// HostConfig.PortBindings: `{"80/tcp": [{"HostIp": "", "HostPort": "8080"}]}`; a null list
/// publishes nothing, as in Docker.
fn port_bindings(
    p: &Option<HashMap<String, Option<Vec<bollard_stubs::models::PortBinding>>>>,
) -> BTreeMap<String, Vec<engine::model::PortBinding>> {
    p.as_ref()
        .map(|m| {
            m.iter()
                .map(|(port, list)| {
                    let list = list
                        .iter()
                        .flatten()
                        .map(|b| engine::model::PortBinding {
                            host_ip: b.host_ip.clone().unwrap_or_default(),
                            host_port: b.host_port.clone().unwrap_or_default(),
                        })
                        .collect();
                    (port.clone(), list)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// NetworkingConfig.EndpointsConfig: every network the container joins at create, with its
/// aliases, links, static address and MAC.
fn endpoints(n: &Option<NetworkingConfig>) -> BTreeMap<String, network::model::EndpointConfig> {
    let Some(eps) = n.as_ref().and_then(|n| n.endpoints_config.as_ref()) else {
        return BTreeMap::new();
    };
    eps.iter()
        .map(|(name, e)| {
            let ip = e
                .ipam_config
                .as_ref()
                .and_then(|i| i.ipv4_address.clone())
                .filter(|a| !a.is_empty());
            let cfg = network::model::EndpointConfig {
                ipam_config: ip
                    .map(|ipv4_address| network::model::EndpointIpamConfig { ipv4_address }),
                links: e.links.clone().unwrap_or_default(),
                aliases: e.aliases.clone().unwrap_or_default(),
                mac_address: e.mac_address.clone().unwrap_or_default(),
            };
            (name.clone(), cfg)
        })
        .collect()
}
