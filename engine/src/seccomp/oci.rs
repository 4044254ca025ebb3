//! Resolve a Docker-format profile into the OCI `linux.seccomp` section for one container
//! (what moby's `setupSeccomp` does): pick the architectures for the host, evaluate each
//! rule's `includes`/`excludes` against the container's capabilities, the host arch and the
//! running kernel, and drop the Docker-only fields.

use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompArg, LinuxSeccompArgBuilder, LinuxSyscall,
};

use super::error::{Result, SeccompError};
use super::profile::{Condition, KernelVersion, Profile, SyscallRule};

/// The host architectures we know how to name, both as Docker (`includes.arches`) and as
/// seccomp (`SCMP_ARCH_*`) spell them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NativeArch {
    X86_64,
    X86,
    Aarch64,
    Arm,
    Riscv64,
    S390x,
    Ppc64le,
    Loongarch64,
}

impl NativeArch {
    /// The architecture this binary was built for (= the container's, as we run natively).
    pub const fn current() -> Option<Self> {
        if cfg!(target_arch = "x86_64") {
            Some(Self::X86_64)
        } else if cfg!(target_arch = "x86") {
            Some(Self::X86)
        } else if cfg!(target_arch = "aarch64") {
            Some(Self::Aarch64)
        } else if cfg!(target_arch = "arm") {
            Some(Self::Arm)
        } else if cfg!(target_arch = "riscv64") {
            Some(Self::Riscv64)
        } else if cfg!(target_arch = "s390x") {
            Some(Self::S390x)
        } else if cfg!(all(target_arch = "powerpc64", target_endian = "little")) {
            Some(Self::Ppc64le)
        } else if cfg!(target_arch = "loongarch64") {
            Some(Self::Loongarch64)
        } else {
            None
        }
    }

    /// Name used in profile `includes.arches` / `excludes.arches`.
    pub const fn docker_name(self) -> &'static str {
        match self {
            Self::X86_64 => "amd64",
            Self::X86 => "x86",
            Self::Aarch64 => "arm64",
            Self::Arm => "arm",
            Self::Riscv64 => "riscv64",
            Self::S390x => "s390x",
            Self::Ppc64le => "ppc64le",
            Self::Loongarch64 => "loong64",
        }
    }

    /// Name used in `architectures` / `archMap`.
    pub const fn seccomp_name(self) -> &'static str {
        match self {
            Self::X86_64 => "SCMP_ARCH_X86_64",
            Self::X86 => "SCMP_ARCH_X86",
            Self::Aarch64 => "SCMP_ARCH_AARCH64",
            Self::Arm => "SCMP_ARCH_ARM",
            Self::Riscv64 => "SCMP_ARCH_RISCV64",
            Self::S390x => "SCMP_ARCH_S390X",
            Self::Ppc64le => "SCMP_ARCH_PPC64LE",
            Self::Loongarch64 => "SCMP_ARCH_LOONGARCH64",
        }
    }
}

/// Parse an `SCMP_ARCH_*` name with oci-spec's own names.
fn parse_arch(name: &str) -> Result<Arch> {
    serde_json::from_value(serde_json::Value::String(name.to_string()))
        .map_err(|_| SeccompError::UnknownArch(name.to_string()))
}

/// Capability names compare as Docker writes them (`CAP_SYS_ADMIN`), but tolerate a missing
/// prefix or lower case in either list.
fn cap_key(name: &str) -> String {
    let upper = name.trim().to_ascii_uppercase();
    match upper.strip_prefix("CAP_") {
        Some(bare) => bare.to_string(),
        None => upper,
    }
}

/// What the conditions are evaluated against.
struct Context<'a> {
    caps: &'a [String],
    arch: NativeArch,
    kernel: Option<KernelVersion>,
}

impl Context<'_> {
    fn has_cap(&self, cap: &str) -> bool {
        let key = cap_key(cap);
        self.caps.iter().any(|c| cap_key(c) == key)
    }

    fn is_arch(&self, arches: &[String]) -> bool {
        arches.iter().any(|a| a == self.arch.docker_name())
    }

    /// Docker fails the container when it cannot read the kernel version; `uname` does not
    /// fail in practice, so an unknown kernel is simply treated as recent.
    fn kernel_at_least(&self, min: KernelVersion) -> bool {
        self.kernel.is_none_or(|k| k >= min)
    }

    /// Excluded if *any* exclude condition matches.
    fn excluded(&self, c: &Condition) -> bool {
        (!c.arches.is_empty() && self.is_arch(&c.arches))
            || c.caps.iter().any(|cap| self.has_cap(cap))
            || c.min_kernel.is_some_and(|m| self.kernel_at_least(m))
    }

    /// Included only if *every* non-empty include condition matches (all caps required).
    fn included(&self, c: &Condition) -> bool {
        (c.arches.is_empty() || self.is_arch(&c.arches))
            && c.caps.iter().all(|cap| self.has_cap(cap))
            && c.min_kernel.is_none_or(|m| self.kernel_at_least(m))
    }

    fn keeps(&self, rule: &SyscallRule) -> bool {
        !rule.excludes.as_ref().is_some_and(|c| self.excluded(c))
            && rule.includes.as_ref().is_none_or(|c| self.included(c))
    }
}

fn to_oci_syscall(rule: &SyscallRule) -> Result<LinuxSyscall> {
    let names = match (&rule.name, rule.names.is_empty()) {
        (Some(_), false) => return Err(SeccompError::NameAndNames),
        (Some(name), true) => vec![name.clone()],
        (None, _) => rule.names.clone(),
    };
    let args: Vec<LinuxSeccompArg> = rule
        .args
        .iter()
        .map(|a| {
            LinuxSeccompArgBuilder::default()
                .index(a.index as usize)
                .value(a.value)
                .value_two(a.value_two)
                .op(a.op)
                .build()
        })
        .collect::<std::result::Result<_, _>>()?;
    let mut out = LinuxSyscall::default();
    out.set_names(names);
    out.set_action(rule.action);
    out.set_errno_ret(rule.errno_ret);
    out.set_args((!args.is_empty()).then_some(args));
    Ok(out)
}

/// Resolve `profile` for a container with capability set `caps` (its bounding set, as
/// `CAP_XXX` names) on `arch`, against the running kernel.
///
/// Returns `None` when the profile disables seccomp (no default action and no rules),
/// as Docker does for such a profile.
pub fn to_oci(
    profile: &Profile,
    caps: &[String],
    arch: NativeArch,
) -> Result<Option<LinuxSeccomp>> {
    to_oci_for_kernel(profile, caps, arch, KernelVersion::running())
}

/// [`to_oci`] with an explicit kernel version (`None` = unknown, treated as recent).
pub fn to_oci_for_kernel(
    profile: &Profile,
    caps: &[String],
    arch: NativeArch,
    kernel: Option<KernelVersion>,
) -> Result<Option<LinuxSeccomp>> {
    let Some(default_action) = profile.default_action else {
        if profile.syscalls.is_empty() {
            return Ok(None);
        }
        return Err(SeccompError::MissingDefaultAction);
    };
    if !profile.architectures.is_empty() && !profile.arch_map.is_empty() {
        return Err(SeccompError::ArchitecturesAndArchMap);
    }

    let mut arches: Vec<Arch> = profile
        .architectures
        .iter()
        .map(|a| parse_arch(a))
        .collect::<Result<_>>()?;
    if let Some(entry) = profile
        .arch_map
        .iter()
        .find(|e| e.architecture == arch.seccomp_name())
    {
        arches.push(parse_arch(&entry.architecture)?);
        for sub in &entry.sub_architectures {
            arches.push(parse_arch(sub)?);
        }
    }

    let ctx = Context { caps, arch, kernel };
    let syscalls: Vec<LinuxSyscall> = profile
        .syscalls
        .iter()
        .filter(|rule| ctx.keeps(rule))
        .map(to_oci_syscall)
        .collect::<Result<_>>()?;

    let mut out = LinuxSeccomp::default();
    out.set_default_action(default_action);
    out.set_default_errno_ret(profile.default_errno_ret);
    out.set_architectures((!arches.is_empty()).then_some(arches));
    out.set_flags((!profile.flags.is_empty()).then(|| profile.flags.clone()));
    out.set_listener_path(profile.listener_path.as_ref().map(Into::into));
    out.set_listener_metadata(profile.listener_metadata.clone());
    out.set_syscalls(Some(syscalls));
    Ok(Some(out))
}
