//! The network crate's one error type. Every variant maps to a [`Kind`] so the engine, the
//! CLI and the API translate failures to exit codes / HTTP statuses in one place.

use std::io;
use std::path::PathBuf;

/// Coarse classification (HTTP 404 / 409 / 400 / 500 in the Docker API).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    NotFound,
    Conflict,
    /// Docker's 403: pre-defined networks, networks in use, duplicate endpoints.
    Forbidden,
    InvalidArgument,
    Internal,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Docker's wording: `network foo not found`.
    #[error("network {0} not found")]
    NoSuchNetwork(String),
    /// Already-exists, in-use and overlap conflicts; the message is Docker's wording.
    #[error("{0}")]
    Conflict(String),
    /// Docker answers these with 403 Forbidden; the message is Docker's wording.
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    InvalidArgument(String),
    #[error("netlink: {context}: {message}")]
    Netlink { context: String, message: String },
    #[error("nftables: {0}")]
    Firewall(String),
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
    Internal(String),
}

impl Error {
    pub fn kind(&self) -> Kind {
        match self {
            Error::NoSuchNetwork(_) => Kind::NotFound,
            Error::Conflict(_) => Kind::Conflict,
            Error::Forbidden(_) => Kind::Forbidden,
            Error::InvalidArgument(_) => Kind::InvalidArgument,
            Error::Netlink { .. }
            | Error::Firewall(_)
            | Error::Io { .. }
            | Error::Path { .. }
            | Error::Internal(_) => Kind::Internal,
        }
    }
    pub fn invalid(msg: impl Into<String>) -> Self {
        Error::InvalidArgument(msg.into())
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
    pub fn netlink(context: impl Into<String>, e: impl std::fmt::Display) -> Self {
        Error::Netlink {
            context: context.into(),
            message: e.to_string(),
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;
