//! Containers: the Docker-level container model, the pure translation to an OCI runtime
//! spec, and the low-level runtime (namespaces, rootfs, mounts, cgroups, seccomp,
//! capabilities, the per-container monitor, logs and exec).

pub use registry::ErrorKind;

pub mod capabilities;
pub mod cgroups;
pub mod seccomp;
