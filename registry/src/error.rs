//! The registry crate's one error type. Every variant maps to an [`ErrorKind`] so the CLI and
//! the API translate failures in a single place.

use crate::ErrorKind;
use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A reference string that does not follow Docker's grammar.
    #[error("invalid reference format: {0}")]
    InvalidReference(String),
    #[error("No such image: {0}")]
    NoSuchImage(String),
    /// The image is in use or referenced elsewhere; the message is Docker's wording.
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    InvalidArgument(String),
    /// The registry refused the credentials.
    #[error("{0}")]
    Unauthorized(String),
    /// A `docker save` / OCI archive that is malformed or inconsistent.
    #[error("invalid image archive: {0}")]
    InvalidArchive(String),
    /// Content whose hash is not the one it was announced with.
    #[error("digest mismatch for {what}: expected {expected}, got {actual}")]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },
    /// A layer tar entry that would write outside the layer root or is otherwise unsafe.
    #[error("unsafe layer entry {path:?}: {reason}")]
    UnsafeEntry { path: String, reason: String },
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
    /// A registry could not be reached or refused the request.
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::NoSuchImage(_) => ErrorKind::NotFound,
            Error::Conflict(_) => ErrorKind::Conflict,
            Error::InvalidReference(_)
            | Error::InvalidArgument(_)
            | Error::InvalidArchive(_)
            | Error::DigestMismatch { .. }
            | Error::UnsafeEntry { .. } => ErrorKind::InvalidArgument,
            Error::Unavailable(_) => ErrorKind::Unavailable,
            Error::Unauthorized(_) => ErrorKind::Unauthorized,
            Error::Io { .. } | Error::Path { .. } | Error::Internal(_) => ErrorKind::Internal,
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

    pub fn archive(msg: impl Into<String>) -> Self {
        Error::InvalidArchive(msg.into())
    }

    pub fn unsafe_entry(path: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::UnsafeEntry {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;
