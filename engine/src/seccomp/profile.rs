//! Docker's seccomp profile JSON format (the `--security-opt seccomp=<file>` format).
//!
//! It extends the OCI `linux.seccomp` section with an architecture map and conditional
//! rules (`includes`/`excludes` on capabilities, the host arch and the kernel version) that
//! are resolved per container by [`super::oci::to_oci`]. Unknown fields are ignored and
//! `null` is accepted wherever Docker's Go decoder accepts it, so profiles written for
//! Docker load unchanged.

use std::fmt;

use oci_spec::runtime::{LinuxSeccompAction, LinuxSeccompFilterFlag, LinuxSeccompOperator};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::error::SeccompError;

/// A Docker-format seccomp profile.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    /// `None` (absent or `""`) together with no syscalls means "seccomp disabled".
    #[serde(
        default,
        deserialize_with = "empty_action_as_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub default_action: Option<LinuxSeccompAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_errno_ret: Option<u32>,
    /// Explicit `SCMP_ARCH_*` list; mutually exclusive with `arch_map`. Kept as strings so
    /// a profile naming an arch we do not know still parses; it is checked when used.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub architectures: Vec<String>,
    /// Per native arch, the arches the filter also covers (e.g. x86_64 -> x86, x32).
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub arch_map: Vec<ArchMapEntry>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub flags: Vec<LinuxSeccompFilterFlag>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener_metadata: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub syscalls: Vec<SyscallRule>,
}

/// One `archMap` entry.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArchMapEntry {
    /// `SCMP_ARCH_*` name of the native arch this entry applies to.
    pub architecture: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub sub_architectures: Vec<String>,
}

/// A group of syscalls sharing an action, optional argument conditions and
/// optional include/exclude conditions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SyscallRule {
    /// Legacy single-name form; mutually exclusive with `names`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub names: Vec<String>,
    pub action: LinuxSeccompAction,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errno_ret: Option<u32>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub args: Vec<ArgRule>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub includes: Option<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub excludes: Option<Condition>,
}

/// A condition on a syscall argument. For `SCMP_CMP_MASKED_EQ`, `value` is the mask and
/// `value_two` the expected masked value (OCI semantics).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArgRule {
    pub index: u32,
    pub value: u64,
    #[serde(default)]
    pub value_two: u64,
    pub op: LinuxSeccompOperator,
}

/// `includes`/`excludes`: a rule is included only if all non-empty include conditions hold
/// and no non-empty exclude condition holds (see [`super::oci`] for the exact semantics).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub caps: Vec<String>,
    /// Docker/libseccomp native arch names: `amd64`, `x86`, `x32`, `arm64`, `arm`, ...
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub arches: Vec<String>,
    #[serde(
        default,
        deserialize_with = "empty_kernel_as_none",
        skip_serializing_if = "Option::is_none"
    )]
    pub min_kernel: Option<KernelVersion>,
}

impl Condition {
    pub fn is_empty(&self) -> bool {
        self.caps.is_empty() && self.arches.is_empty() && self.min_kernel.is_none()
    }
}

/// `<kernel>.<major>` as used by `minKernel`; minor revisions and suffixes are ignored
/// when matching, like Docker does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KernelVersion {
    pub kernel: u32,
    pub major: u32,
}

impl KernelVersion {
    pub const fn new(kernel: u32, major: u32) -> Self {
        Self { kernel, major }
    }

    /// Parse a profile `minKernel` value: exactly `<kernel>.<major>`, not `0.0`.
    pub fn parse(text: &str) -> Result<Self, SeccompError> {
        let bad = || SeccompError::KernelVersion(text.to_string());
        let (k, m) = text.split_once('.').ok_or_else(bad)?;
        let v = Self {
            kernel: k.parse().map_err(|_| bad())?,
            major: m.parse().map_err(|_| bad())?,
        };
        if v == Self::new(0, 0) {
            return Err(bad());
        }
        Ok(v)
    }

    /// Parse a kernel release such as `6.18.0-1-amd64` (only the first two numbers count).
    pub fn from_release(release: &str) -> Option<Self> {
        let mut parts = release.split(|c: char| !c.is_ascii_digit());
        let kernel = parts.next()?.parse().ok()?;
        let major = parts.next()?.parse().ok()?;
        Some(Self { kernel, major })
    }

    /// The running kernel, from `uname(2)`.
    pub fn running() -> Option<Self> {
        // SAFETY: utsname is plain old data; uname fills it.
        let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
        // SAFETY: valid pointer to a utsname.
        if unsafe { libc::uname(&mut uts) } != 0 {
            return None;
        }
        // SAFETY: uname NUL-terminates release.
        let release = unsafe { std::ffi::CStr::from_ptr(uts.release.as_ptr()) };
        Self::from_release(&release.to_string_lossy())
    }
}

impl fmt::Display for KernelVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.kernel, self.major)
    }
}

impl Serialize for KernelVersion {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for KernelVersion {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Go's decoder turns `null` into the zero value; do the same for collections.
fn null_as_default<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// Docker treats `"defaultAction": ""` as unset.
fn empty_action_as_none<'de, D>(d: D) -> Result<Option<LinuxSeccompAction>, D::Error>
where
    D: Deserializer<'de>,
{
    match Option::<String>::deserialize(d)? {
        None => Ok(None),
        Some(s) if s.is_empty() => Ok(None),
        Some(s) => serde_json::from_value(serde_json::Value::String(s))
            .map(Some)
            .map_err(serde::de::Error::custom),
    }
}

/// Docker treats `"minKernel": ""` as unset.
fn empty_kernel_as_none<'de, D>(d: D) -> Result<Option<KernelVersion>, D::Error>
where
    D: Deserializer<'de>,
{
    match Option::<String>::deserialize(d)? {
        None => Ok(None),
        Some(s) if s.is_empty() => Ok(None),
        Some(s) => KernelVersion::parse(&s)
            .map(Some)
            .map_err(serde::de::Error::custom),
    }
}
