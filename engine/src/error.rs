//! The engine's one error type. Every variant maps to an [`ErrorKind`] so the CLI and the API
//! translate failures in a single place.

use crate::ErrorKind;
use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("No such container: {0}")]
    NoSuchContainer(String),
    #[error("No such volume: {0}")]
    NoSuchVolume(String),
    #[error("Conflict. {0}")]
    Conflict(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("container {0} is already {1}")]
    NotModified(String, &'static str),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: io::Error,
    },
    #[error("{path}: {source}")]
    Path {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{0}")]
    Json(String),
    /// The container's process could not be started (command not found, not executable, ...).
    /// `exit_code` is what Docker reports for it (127, 126, or 128 for other failures).
    #[error("{message}")]
    StartFailed { message: String, exit_code: i32 },
    /// A build step failed (a RUN's non-zero exit, a missing COPY source, ...); `code` is
    /// the RUN's exit code, 1 otherwise.
    #[error("{message}")]
    BuildFailed { message: String, code: i32 },
    #[error(transparent)]
    Registry(#[from] registry::Error),
    #[error(transparent)]
    Network(#[from] network::Error),
    #[error("cgroups: {0}")]
    Cgroup(String),
    #[error("seccomp: {0}")]
    Seccomp(String),
    #[error("{0}")]
    Internal(String),
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::NoSuchContainer(_) | Error::NoSuchVolume(_) => ErrorKind::NotFound,
            Error::Conflict(_) => ErrorKind::Conflict,
            Error::InvalidArgument(_) | Error::Json(_) => ErrorKind::InvalidArgument,
            Error::NotModified(..) => ErrorKind::NotModified,
            Error::Registry(e) => e.kind(),
            Error::Network(e) => match e.kind() {
                network::Kind::NotFound => ErrorKind::NotFound,
                network::Kind::Conflict => ErrorKind::Conflict,
                network::Kind::Forbidden => ErrorKind::Forbidden,
                network::Kind::InvalidArgument => ErrorKind::InvalidArgument,
                network::Kind::Internal => ErrorKind::Internal,
            },
            Error::StartFailed { .. } | Error::BuildFailed { .. } => ErrorKind::InvalidArgument,
            Error::Io { .. }
            | Error::Path { .. }
            | Error::Cgroup(_)
            | Error::Seccomp(_)
            | Error::Internal(_) => ErrorKind::Internal,
        }
    }

    pub fn io(context: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    pub fn path(path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Path {
            path: path.into(),
            source,
        }
    }

    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::InvalidArgument(msg.into())
    }
}

impl From<nix::Error> for Error {
    fn from(e: nix::Error) -> Self {
        Error::Io {
            context: "system call".into(),
            source: io::Error::from(e),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Adds a context string to io / nix results.
pub trait Context<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> Context<T> for std::result::Result<T, io::Error> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::io(what(), e))
    }
}

impl<T> Context<T> for std::result::Result<T, nix::Error> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::io(what(), io::Error::from(e)))
    }
}
