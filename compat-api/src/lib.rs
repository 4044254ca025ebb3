//! The Docker Engine API served on a Unix socket; it only translates requests into
//! engine, registry and network calls. The server lands with the compat-api issue.
