//! The low-level runtime: what happens between "start this container" and the user's
//! process running, and the per-container monitor that outlives the caller.

pub mod attach;
pub mod exec;
pub mod exec_helper;
pub mod health;
pub mod init;
pub mod monitor;
pub mod mounts;
pub mod restart;
pub mod rootfs;
pub mod spawn;
pub mod spawner;
pub mod sync;
pub mod user;

use crate::paths::Roots;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// How the container's root filesystem is assembled (inside its own mount namespace, so a
/// dead container can never leave a mount behind on the host).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub enum RootfsPlan {
    /// overlayfs: `lowers` top-most first, plus the container's writable upper and work dirs.
    Overlay {
        lowers: Vec<PathBuf>,
        upper: PathBuf,
        work: PathBuf,
        /// overlayfs' `volatile`: no syncs of the upper layer, for a container whose files
        /// are thrown away anyway (`--rm`), as podman and CRI-O do.
        #[serde(default)]
        volatile: bool,
    },
    /// `--rootfs DIR`: a plain directory, bind-mounted.
    Dir(PathBuf),
}

/// An image directory whose content seeds an empty named/anonymous volume on first use.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Prefill {
    /// Path inside the container (e.g. `/data`).
    pub container_path: String,
    /// The volume's data directory on the host.
    pub volume_dir: PathBuf,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct LogOptions {
    /// Rotate when the current file exceeds this many bytes (0 = never).
    pub max_size: u64,
    /// How many files to keep in all, the current one included (>= 1).
    pub max_file: u32,
}

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq)]
pub struct AttachStreams {
    pub stdin: bool,
    pub stdout: bool,
    pub stderr: bool,
}

/// A compiled seccomp program: raw `sock_filter` bytes (hex) and seccomp(2) flags.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SeccompBlob {
    pub hex: String,
    pub flags: u32,
}

/// Everything the monitor needs to start and then supervise one container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StartRequest {
    pub id: String,
    pub roots: Roots,
    pub spec: oci_spec::runtime::Spec,
    pub rootfs: RootfsPlan,
    /// The compiled seccomp filter (from the cache), if any.
    pub seccomp_bpf: Option<SeccompBlob>,
    pub prefill: Vec<Prefill>,
    pub log: LogOptions,
    pub tty: bool,
    pub open_stdin: bool,
    pub stdin_once: bool,
    pub auto_remove: bool,
    /// `--init`: run pelagos' reaper as PID 1, the command as its child.
    pub init: bool,
    pub netns_path: Option<PathBuf>,
    /// daemon.json's network settings, for the monitor's port publishing and teardown
    /// (a firewall rebuild there must keep `ip-forward: false`'s rule).
    #[serde(default)]
    pub net: network::NetSettings,
    /// The container has a healthcheck: the monitor starts its `__health` runner.
    #[serde(default)]
    pub health: bool,
    pub cgroup_parent: Option<String>,
    /// Streams of the first attach client, whose socket arrives with the request.
    pub initial_attach: Option<AttachStreams>,
}
