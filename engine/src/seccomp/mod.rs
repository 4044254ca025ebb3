//! Seccomp: Docker default profile, Docker-format profile parsing, BPF compile + cache, install.
//!
//! Flow: [`default_profile`] or [`parse_profile`] gives a Docker-format [`Profile`];
//! [`to_oci`] resolves it for one container (capabilities, host arch, kernel) into the OCI
//! `linux.seccomp` section stored in config.json; at start, [`compile_cached`] turns that
//! section into a [`BpfProgram`] (normally a cache-file read) and the container init calls
//! [`install`] right before `execve`.

mod compile;
mod default_profile;
mod error;
mod install;
mod oci;
mod profile;

#[cfg(test)]
mod tests;

pub use compile::{
    BpfProgram, SockFilter, cache_key, cache_path, compile, compile_cached, filter_flags,
};
pub use error::{Result, SeccompError};
pub use install::{install, set_no_new_privs};
pub use oci::{NativeArch, to_oci, to_oci_for_kernel};
pub use profile::{ArchMapEntry, ArgRule, Condition, KernelVersion, Profile, SyscallRule};

/// Docker's default seccomp profile (moby `profiles/seccomp/default.json`).
pub fn default_profile() -> Profile {
    default_profile::build()
}

/// Parse a Docker-format seccomp profile (`--security-opt seccomp=<file>` contents).
pub fn parse_profile(bytes: &[u8]) -> Result<Profile> {
    Ok(serde_json::from_slice(bytes)?)
}
