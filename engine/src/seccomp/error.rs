//! Seccomp errors (wrapped by the crate-wide engine error via `From`).

use std::io;
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    /// The profile JSON is malformed (message prefix as in Docker).
    #[error("Decoding seccomp profile failed: {0}")]
    Decode(#[from] serde_json::Error),
    #[error(
        "both 'architectures' and 'archMap' are specified in the seccomp profile, use either 'architectures' or 'archMap'"
    )]
    ArchitecturesAndArchMap,
    #[error(
        "both 'name' and 'names' are specified in the seccomp profile, use either 'name' or 'names'"
    )]
    NameAndNames,
    #[error("seccomp profile has syscall rules but no defaultAction")]
    MissingDefaultAction,
    #[error("invalid kernel version {0:?}, expected \"<kernel>.<major>\"")]
    KernelVersion(String),
    #[error("unknown seccomp architecture {0:?}")]
    UnknownArch(String),
    /// oci-spec refused to build a section value.
    #[error("building OCI seccomp section: {0}")]
    Spec(#[from] oci_spec::OciSpecError),
    /// A feature of the OCI seccomp section we do not implement (e.g. SCMP_ACT_NOTIFY).
    #[error("unsupported seccomp feature: {0}")]
    Unsupported(String),
    /// libseccomp rejected the filter while building it.
    #[error("compiling seccomp filter: {what}: {source}")]
    Compile {
        what: String,
        #[source]
        source: libseccomp::error::SeccompError,
    },
    #[error("seccomp BPF program is invalid: {0}")]
    InvalidProgram(&'static str),
    #[error("seccomp cache {path}: {source}")]
    Cache {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{op}: {source}")]
    Io {
        op: &'static str,
        #[source]
        source: io::Error,
    },
    /// Loading the filter into the kernel failed (errno preserved, no allocation).
    #[error("installing seccomp filter: {0}")]
    Install(#[source] io::Error),
}

pub type Result<T> = std::result::Result<T, SeccompError>;
