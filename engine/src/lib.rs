//! Containers: the Docker-level container model, the pure translation to an OCI runtime
//! spec, and the low-level runtime (namespaces, rootfs, mounts, cgroups, seccomp,
//! capabilities, the per-container monitor, logs and exec).

pub use registry::ErrorKind;

pub mod build;
pub mod capabilities;
pub mod cgroups;
pub mod cgroups_glue;
pub mod error;
pub mod events;
pub mod filters;
pub mod fsutil;
pub mod ids;
pub mod inspect;
pub mod layerview;
pub mod lifecycle;
pub mod logs;
pub mod logstream;
pub mod model;
pub mod mountspec;
pub mod netglue;
pub mod paths;
pub mod runtime;
pub mod seccomp;
pub mod security;
pub mod spec;
pub mod state;
pub mod store;
pub mod top;
pub mod units;
pub mod update;
pub mod volumes;

pub use error::{Error, Result};
pub use lifecycle::{CreateOptions, Engine, ImageDefaults, ImageInfo};
pub use paths::Roots;
