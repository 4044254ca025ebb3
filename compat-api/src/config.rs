//! Daemon settings: command-line `-H` and `/etc/pelagos/daemon.json` (Docker's key names;
//! unknown keys are ignored so one file can serve several pelagos components).

use crate::server::Listen;
use crate::{DaemonError, io};
use engine::Roots;
use serde::Deserialize;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

pub const DEFAULT_SOCKET: &str = "/var/run/pelagos.sock";

#[derive(Debug, Clone)]
pub struct DaemonConfig {
    pub roots: Roots,
    /// Empty: the default socket.
    pub hosts: Vec<Listen>,
    /// Group owning the Unix socket; `None` means `docker` when that group exists.
    pub group: Option<String>,
    /// insecure-registries / registry-mirrors, for pull and push.
    pub registry: registry::RegistrySettings,
    /// bip / default-address-pools / bridge / ip-forward, for the network crate.
    pub net: network::NetSettings,
    /// Written with our PID once the sockets accept connections (tests, service managers).
    pub ready_fd_path: Option<PathBuf>,
}

/// The keys of daemon.json this component reads (the file is parsed once by the CLI;
/// every crate picks its own keys and ignores the rest).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct DaemonJson {
    hosts: Vec<String>,
    group: Option<String>,
}

impl DaemonConfig {
    /// Merges the command line with daemon.json; the command line wins.
    pub fn load(
        roots: Roots,
        cli_hosts: &[String],
        group: Option<String>,
        daemon_json: &serde_json::Value,
    ) -> Result<Self, DaemonError> {
        let file: DaemonJson = serde_json::from_value(daemon_json.clone())
            .map_err(|e| DaemonError::Config(format!("daemon.json: {e}")))?;
        let registry = registry::RegistrySettings::from_json(daemon_json)?;
        let net = network::NetSettings::from_json(daemon_json)
            .map_err(|e| DaemonError::Config(e.to_string()))?;
        let hosts_src = if cli_hosts.is_empty() {
            &file.hosts
        } else {
            cli_hosts
        };
        let hosts = hosts_src
            .iter()
            .map(|h| Listen::parse(h))
            .collect::<Result<_, _>>()?;
        Ok(DaemonConfig {
            roots,
            hosts,
            group: group.or(file.group),
            registry,
            net,
            ready_fd_path: None,
        })
    }
}

/// Binds the Unix socket with mode 0660, group `docker` (or the configured one) if it
/// exists, replacing a stale socket file.
pub fn bind_unix(
    path: &Path,
    group: Option<&str>,
) -> Result<tokio::net::UnixListener, DaemonError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io(format!("create {}", dir.display())))?;
    }
    if std::os::unix::net::UnixStream::connect(path).is_ok() {
        return Err(DaemonError::Config(format!(
            "{} is in use by another daemon",
            path.display()
        )));
    }
    let _ = std::fs::remove_file(path);
    let l = tokio::net::UnixListener::bind(path)
        .map_err(io(format!("listen on unix://{}", path.display())))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))
        .map_err(io(format!("chmod {}", path.display())))?;
    let group = group.unwrap_or("docker");
    if let Ok(Some(g)) = nix::unistd::Group::from_name(group) {
        let _ = nix::unistd::chown(path, None, Some(g.gid));
    }
    Ok(l)
}
