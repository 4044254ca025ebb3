//! The error type of the cgroups module.
//!
//! Every variant that comes from a file operation carries the path, because a
//! bare "Permission denied" from somewhere under /sys/fs/cgroup is useless when
//! debugging a failed container start.

use std::path::PathBuf;

/// Result alias for this module.
pub type Result<T> = std::result::Result<T, CgroupError>;

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    /// A read, write, mkdir or rmdir under the cgroup filesystem failed.
    #[error("cgroup {op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// /proc/self/mountinfo or /proc/self/cgroup could not be understood.
    #[error("cannot parse {what}: {reason}")]
    Parse { what: String, reason: String },

    /// Neither a cgroup2 mount nor any v1 controller mount was found.
    #[error("no usable cgroup hierarchy is mounted")]
    NoHierarchy,

    /// A container id or parent path would escape the cgroup tree.
    #[error("invalid cgroup path component {0:?}")]
    InvalidPath(String),

    /// The caller asked for a resource whose controller is not available.
    #[error("cgroup controller {controller} is not available for {path}")]
    ControllerUnavailable {
        controller: &'static str,
        path: PathBuf,
    },

    /// A resource value cannot be expressed for this cgroup version.
    #[error("invalid resource value for {field}: {reason}")]
    InvalidResource { field: &'static str, reason: String },

    /// Waiting for a state change (frozen, empty) took too long.
    #[error("timed out waiting for {what} in {path}")]
    Timeout { what: &'static str, path: PathBuf },

    /// An inotify / poll system call failed while waiting for a state change.
    #[error("waiting for {path}: {source}")]
    Wait {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
}

impl CgroupError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        CgroupError::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// True when the underlying cause is "file or directory does not exist";
    /// destroy() uses this to stay idempotent.
    pub fn is_not_found(&self) -> bool {
        matches!(self, CgroupError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }
}
