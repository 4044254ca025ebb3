//! The Docker-level description of a container: what `docker create` / `pelagos create`
//! asked for, with the image's defaults already merged in. Field names follow Docker's
//! ContainerJSON so inspect output reads like Docker's.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `Config` in Docker's terms: the process and its metadata.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct ContainerConfig {
    pub hostname: String,
    pub domainname: String,
    pub user: String,
    pub attach_stdin: bool,
    pub attach_stdout: bool,
    pub attach_stderr: bool,
    pub exposed_ports: BTreeMap<String, serde_json::Value>,
    /// The image's ONBUILD triggers, carried as Docker carries them (null when none).
    pub on_build: Option<Vec<String>>,
    pub tty: bool,
    pub open_stdin: bool,
    pub stdin_once: bool,
    pub env: Vec<String>,
    pub cmd: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<serde_json::Value>,
    pub image: String,
    pub volumes: BTreeMap<String, serde_json::Value>,
    pub working_dir: String,
    pub entrypoint: Vec<String>,
    pub labels: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_signal: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_timeout: Option<i64>,
    /// `--mac-address` (Docker keeps it here in older API versions).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub mac_address: String,
}

/// One host side of a published port (Docker's PortBinding).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct PortBinding {
    pub host_ip: String,
    pub host_port: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct RestartPolicy {
    pub name: String,
    pub maximum_retry_count: i64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct LogConfig {
    #[serde(rename = "Type")]
    pub kind: String,
    pub config: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct Ulimit {
    pub name: String,
    pub soft: i64,
    pub hard: i64,
}

/// One entry of `--mount` / `-v`, normalised.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct MountSpec {
    /// `bind`, `volume` or `tmpfs`.
    #[serde(rename = "Type")]
    pub kind: String,
    pub source: String,
    pub target: String,
    pub read_only: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bind_options: Option<BindOptions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volume_options: Option<VolumeOptions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tmpfs_options: Option<TmpfsOptions>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct BindOptions {
    pub propagation: String,
    pub create_mountpoint: bool,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct VolumeOptions {
    pub no_copy: bool,
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct TmpfsOptions {
    pub size_bytes: i64,
    pub mode: u32,
}

/// `HostConfig` in Docker's terms: how the container is run on this host.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct HostConfig {
    pub binds: Vec<String>,
    pub log_config: LogConfig,
    pub network_mode: String,
    /// `-p`: "80/tcp" -> host bindings (an empty HostPort means any free port).
    pub port_bindings: BTreeMap<String, Vec<PortBinding>>,
    /// `-P`: every exposed port on a free host port.
    pub publish_all_ports: bool,
    /// `--link name[:alias]` (default bridge only): /etc/hosts entries.
    pub links: Vec<String>,
    pub restart_policy: RestartPolicy,
    pub auto_remove: bool,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub dns: Vec<String>,
    pub dns_options: Vec<String>,
    pub dns_search: Vec<String>,
    pub extra_hosts: Vec<String>,
    pub group_add: Vec<String>,
    pub privileged: bool,
    pub readonly_rootfs: bool,
    pub security_opt: Vec<String>,
    pub tmpfs: BTreeMap<String, String>,
    pub sysctls: BTreeMap<String, String>,
    pub shm_size: i64,
    pub init: bool,
    // Resources (Docker puts them flat in HostConfig).
    pub memory: i64,
    pub memory_swap: i64,
    pub memory_reservation: i64,
    pub nano_cpus: i64,
    pub cpu_shares: i64,
    pub cpu_period: i64,
    pub cpu_quota: i64,
    pub cpuset_cpus: String,
    pub cpuset_mems: String,
    pub pids_limit: Option<i64>,
    pub blkio_weight: u16,
    pub ulimits: Vec<Ulimit>,
    pub oom_score_adj: i32,
    pub mounts: Vec<MountSpec>,
    pub masked_paths: Vec<String>,
    pub readonly_paths: Vec<String>,
    /// Not Docker's: `--rootfs DIR` runs from a plain directory instead of an image.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rootfs: Option<String>,
    /// Not Docker's: a prepared network namespace to join (the network crate makes it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub netns_path: Option<String>,
}

/// A mount resolved for this container, as shown in inspect's `Mounts`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "PascalCase", default)]
pub struct MountPoint {
    #[serde(rename = "Type")]
    pub kind: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    pub source: String,
    pub destination: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub driver: String,
    pub mode: String,
    #[serde(rename = "RW")]
    pub rw: bool,
    pub propagation: String,
    /// Set for volumes the engine made for this container alone (`-v /path`, image
    /// VOLUMEs); `rm -v` removes them.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub anonymous: bool,
}

/// Everything persisted about a container except its runtime state.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", default)]
pub struct ContainerRecord {
    pub id: String,
    pub name: String,
    pub created: String,
    /// The image ID (config digest) or empty for `--rootfs`.
    pub image: String,
    pub config: ContainerConfig,
    pub host_config: HostConfig,
    pub mounts: Vec<MountPoint>,
    /// Image layer directories, bottom to top, captured at create time.
    pub layers: Vec<String>,
    /// Networks to join at start (Docker's NetworkingConfig.EndpointsConfig), by the
    /// name or ID the user gave; `connect`/`disconnect` edit it.
    pub networks: BTreeMap<String, network::EndpointConfig>,
}
