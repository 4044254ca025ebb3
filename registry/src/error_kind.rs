//! The error kinds shared by every pelagos crate. The CLI maps a kind to an exit code and
//! the API maps it to an HTTP status, each in exactly one place.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// No such container, image, volume, network or exec (HTTP 404).
    NotFound,
    /// Name in use, object in use, wrong state for the request (HTTP 409).
    Conflict,
    /// Malformed or invalid input from the caller (HTTP 400).
    InvalidArgument,
    /// Allowed in general but not on this object: pre-defined networks, networks with
    /// active endpoints (HTTP 403, as Docker answers).
    Forbidden,
    /// The request asks for the state the object is already in (HTTP 304).
    NotModified,
    /// Credentials a registry refused (HTTP 401, `docker login`).
    Unauthorized,
    /// A remote service (registry, ...) could not be reached or refused us (HTTP 502/500).
    Unavailable,
    /// Anything else: a bug or a host failure (HTTP 500).
    Internal,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            ErrorKind::NotFound => "not found",
            ErrorKind::Conflict => "conflict",
            ErrorKind::InvalidArgument => "invalid argument",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::NotModified => "not modified",
            ErrorKind::Unauthorized => "unauthorized",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Internal => "internal error",
        };
        f.write_str(s)
    }
}
