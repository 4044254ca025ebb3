//! Linux capabilities: Docker default set, add/drop resolution, applying them in the container.
//!
//! Two halves with different constraints:
//!
//! * [`resolve`] / [`to_oci`] run in the daemon while building the OCI spec; they are pure
//!   (except that `privileged` asks the running kernel how many capabilities it knows).
//! * [`apply`] runs inside the forked, single-threaded container init right before `execve`.
//!
//! # Call order inside the container init
//!
//! The init starts as root with a full capability set and has to end up as the configured
//! user with the configured sets. `setuid(2)` from uid 0 to a non-zero uid clears the
//! permitted and effective sets unless `PR_SET_KEEPCAPS` is set, and the init still needs
//! `CAP_SETUID`/`CAP_SETGID` to switch user and `CAP_SETPCAP` to shrink the bounding set.
//! The intended sequence (same as runc) is therefore:
//!
//! 1. `prctl(PR_SET_KEEPCAPS, 1)` ([`set_keep_caps`]) — keep *permitted* across `setuid`;
//! 2. `setgroups`, `setgid`, `setuid` to the container user;
//! 3. [`apply`] — re-raises effective from the kept permitted set (so `CAP_SETPCAP` is
//!    usable again), shrinks the bounding set, then sets effective/permitted/inheritable
//!    in one `capset(2)` and finally the ambient set;
//! 4. install seccomp (see `crate::seccomp::install`) and `execve`.
//!
//! Docker's sets for the container process are bounding = effective = permitted = the
//! resolved list, inheritable and ambient empty (see [`to_oci`]). For a *non-root* user that
//! still means the program runs without capabilities: at `execve` the kernel computes the
//! new permitted set from file capabilities and the (empty) ambient set, so only binaries
//! with file capabilities regain any of them, bounded by the bounding set. That is the
//! behaviour Docker users expect, so we do not populate the ambient set.

use std::collections::BTreeSet;
use std::io;
use std::str::FromStr;

use oci_spec::runtime::{Capabilities, Capability, LinuxCapabilities};

/// Docker's default capability set for a non-privileged container (moby `DefaultCapabilities`).
pub const DEFAULT_CAPABILITIES: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Every capability we know, by kernel number (`include/uapi/linux/capability.h`).
/// Kept as our own table so name parsing, bitmasks and OCI conversion share one source.
const KNOWN: &[(&str, u8)] = &[
    ("CAP_CHOWN", 0),
    ("CAP_DAC_OVERRIDE", 1),
    ("CAP_DAC_READ_SEARCH", 2),
    ("CAP_FOWNER", 3),
    ("CAP_FSETID", 4),
    ("CAP_KILL", 5),
    ("CAP_SETGID", 6),
    ("CAP_SETUID", 7),
    ("CAP_SETPCAP", 8),
    ("CAP_LINUX_IMMUTABLE", 9),
    ("CAP_NET_BIND_SERVICE", 10),
    ("CAP_NET_BROADCAST", 11),
    ("CAP_NET_ADMIN", 12),
    ("CAP_NET_RAW", 13),
    ("CAP_IPC_LOCK", 14),
    ("CAP_IPC_OWNER", 15),
    ("CAP_SYS_MODULE", 16),
    ("CAP_SYS_RAWIO", 17),
    ("CAP_SYS_CHROOT", 18),
    ("CAP_SYS_PTRACE", 19),
    ("CAP_SYS_PACCT", 20),
    ("CAP_SYS_ADMIN", 21),
    ("CAP_SYS_BOOT", 22),
    ("CAP_SYS_NICE", 23),
    ("CAP_SYS_RESOURCE", 24),
    ("CAP_SYS_TIME", 25),
    ("CAP_SYS_TTY_CONFIG", 26),
    ("CAP_MKNOD", 27),
    ("CAP_LEASE", 28),
    ("CAP_AUDIT_WRITE", 29),
    ("CAP_AUDIT_CONTROL", 30),
    ("CAP_SETFCAP", 31),
    ("CAP_MAC_OVERRIDE", 32),
    ("CAP_MAC_ADMIN", 33),
    ("CAP_SYSLOG", 34),
    ("CAP_WAKE_ALARM", 35),
    ("CAP_BLOCK_SUSPEND", 36),
    ("CAP_AUDIT_READ", 37),
    ("CAP_PERFMON", 38),
    ("CAP_BPF", 39),
    ("CAP_CHECKPOINT_RESTORE", 40),
];

/// Capability errors.
#[derive(Debug, thiserror::Error)]
pub enum CapError {
    /// A name in `--cap-add`/`--cap-drop` is not a capability. `field` is `CapAdd`/`CapDrop`,
    /// so the message reads like Docker's.
    #[error("invalid {field}: unknown capability: {name:?}")]
    Unknown { field: &'static str, name: String },
    /// A capability in an OCI spec that this engine has no kernel number for.
    #[error("unsupported capability in spec: {0}")]
    Unsupported(String),
    /// A capability-changing syscall failed inside the container init.
    #[error("{op} failed: {source}")]
    Syscall {
        op: &'static str,
        #[source]
        source: io::Error,
    },
}

pub type Result<T> = std::result::Result<T, CapError>;

/// Canonical `CAP_XXX` spelling: upper case, `CAP_` prefix added when missing.
fn canonical(name: &str) -> String {
    let upper = name.trim().to_ascii_uppercase();
    if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    }
}

/// Kernel number of a canonical capability name.
fn number_of(canonical_name: &str) -> Option<u8> {
    KNOWN
        .iter()
        .find(|(n, _)| *n == canonical_name)
        .map(|&(_, nr)| nr)
}

/// Marker used by Docker for "every capability".
const ALL: &str = "ALL";

/// One normalised entry of a `--cap-add`/`--cap-drop` list.
#[derive(Debug, PartialEq, Eq)]
enum Entry {
    All,
    Cap(String),
}

fn normalize(list: &[String], field: &'static str) -> Result<Vec<Entry>> {
    list.iter()
        .map(|raw| {
            let upper = raw.trim().to_ascii_uppercase();
            // Docker accepts both "ALL" and "CAP_ALL".
            if upper == ALL || upper == "CAP_ALL" {
                return Ok(Entry::All);
            }
            let name = canonical(&upper);
            if number_of(&name).is_none() {
                return Err(CapError::Unknown { field, name });
            }
            Ok(Entry::Cap(name))
        })
        .collect()
}

/// The highest capability number the running kernel supports.
///
/// `/proc/sys/kernel/cap_last_cap` is authoritative; when /proc is unavailable we probe the
/// bounding set with `PR_CAPBSET_READ`, which fails with EINVAL past the last capability.
pub fn kernel_last_cap() -> u8 {
    if let Ok(text) = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        && let Ok(n) = text.trim().parse::<u8>()
    {
        return n;
    }
    let mut last = 0u8;
    for nr in 0u8..64 {
        // SAFETY: PR_CAPBSET_READ only reads process state.
        let rc = unsafe { libc::prctl(libc::PR_CAPBSET_READ, libc::c_ulong::from(nr), 0, 0, 0) };
        if rc < 0 {
            break;
        }
        last = nr;
    }
    last
}

/// Every capability name known to both us and the running kernel, sorted.
pub fn all_capabilities() -> Vec<String> {
    let last = kernel_last_cap();
    let mut all: Vec<String> = KNOWN
        .iter()
        .filter(|(_, nr)| *nr <= last)
        .map(|(n, _)| (*n).to_string())
        .collect();
    all.sort();
    all
}

/// Resolve Docker's `--cap-add`/`--cap-drop`/`--privileged` into the container's capability
/// list (sorted, deduplicated `CAP_XXX` names).
///
/// Semantics follow moby's `TweakCapabilities`:
/// * privileged: every capability the kernel knows, add/drop ignored;
/// * `ALL` in add: everything except what is dropped;
/// * `ALL` in drop (and not in add): only what is added;
/// * otherwise: defaults minus drops plus adds.
///
/// Names are validated even when they would not change the result, as Docker does.
pub fn resolve(cap_add: &[String], cap_drop: &[String], privileged: bool) -> Result<Vec<String>> {
    if privileged {
        return Ok(all_capabilities());
    }
    let adds = normalize(cap_add, "CapAdd")?;
    let drops = normalize(cap_drop, "CapDrop")?;
    let dropped = |name: &str| {
        drops
            .iter()
            .any(|d| matches!(d, Entry::Cap(c) if c == name))
    };

    let mut out: BTreeSet<String> = BTreeSet::new();
    if adds.contains(&Entry::All) {
        out.extend(all_capabilities().into_iter().filter(|c| !dropped(c)));
    } else {
        if !drops.contains(&Entry::All) {
            out.extend(
                DEFAULT_CAPABILITIES
                    .iter()
                    .filter(|c| !dropped(c))
                    .map(|c| (*c).to_string()),
            );
        }
        out.extend(adds.into_iter().filter_map(|e| match e {
            Entry::Cap(c) => Some(c),
            Entry::All => None,
        }));
    }
    Ok(out.into_iter().collect())
}

/// Convert a canonical name to oci-spec's enum (its parser accepts the `CAP_` prefix).
fn to_oci_cap(name: &str) -> Option<Capability> {
    let bare = canonical(name);
    let bare = bare.strip_prefix("CAP_").unwrap_or(&bare);
    Capability::from_str(bare).ok()
}

/// Docker's OCI capability section for a resolved list: bounding = effective = permitted =
/// `names`, inheritable and ambient empty (moby dropped inheritable after CVE-2022-24769).
/// Names oci-spec does not know are skipped; [`resolve`] never produces such names.
pub fn to_oci(names: &[String]) -> LinuxCapabilities {
    let set: Capabilities = names.iter().filter_map(|n| to_oci_cap(n)).collect();
    let mut caps = LinuxCapabilities::default();
    caps.set_bounding(Some(set.clone()));
    caps.set_effective(Some(set.clone()));
    caps.set_permitted(Some(set));
    caps.set_inheritable(Some(Capabilities::new()));
    caps.set_ambient(Some(Capabilities::new()));
    caps
}

/// Capability names (`CAP_XXX`) in an OCI set, sorted. Used by the seccomp profile
/// evaluation, which keys its capability-gated rules on the bounding set.
pub fn names_of(set: &Capabilities) -> Vec<String> {
    let mut names: Vec<String> = set.iter().map(|c| format!("CAP_{c}")).collect();
    names.sort();
    names
}

/// Bitmask of an optional OCI set (absent = empty, as runc treats it).
fn mask_of(set: Option<&Capabilities>) -> Result<u64> {
    let mut mask = 0u64;
    for cap in set.into_iter().flatten() {
        let name = format!("CAP_{cap}");
        let nr = number_of(&name).ok_or(CapError::Unsupported(name))?;
        mask |= 1u64 << nr;
    }
    Ok(mask)
}

/// The five OCI sets as kernel bitmasks.
///
/// Build it with [`CapSets::from_oci`] *before* forking the container init, then call
/// [`CapSets::apply`] in the child: applying does no allocation, so it is safe in a child
/// forked from a multi-threaded process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CapSets {
    bounding: u64,
    effective: u64,
    permitted: u64,
    inheritable: u64,
    ambient: u64,
}

impl CapSets {
    /// Convert OCI sets to bitmasks; fails on capabilities without a kernel number.
    pub fn from_oci(caps: &LinuxCapabilities) -> Result<Self> {
        Ok(Self {
            bounding: mask_of(caps.bounding().as_ref())?,
            effective: mask_of(caps.effective().as_ref())?,
            permitted: mask_of(caps.permitted().as_ref())?,
            inheritable: mask_of(caps.inheritable().as_ref())?,
            ambient: mask_of(caps.ambient().as_ref())?,
        })
    }
}

fn syscall_err(op: &'static str) -> CapError {
    CapError::Syscall {
        op,
        source: io::Error::last_os_error(),
    }
}

/// `prctl(PR_SET_KEEPCAPS)`: keep the permitted set across the init's `setuid`.
pub fn set_keep_caps(keep: bool) -> Result<()> {
    // SAFETY: plain prctl with integer arguments.
    let rc = unsafe { libc::prctl(libc::PR_SET_KEEPCAPS, libc::c_ulong::from(keep), 0, 0, 0) };
    if rc < 0 {
        return Err(syscall_err("prctl(PR_SET_KEEPCAPS)"));
    }
    Ok(())
}

// Raw capget/capset ABI (version 3: two 32-bit words per set). libc does not wrap these.
const CAP_V3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

fn capget_self() -> Result<(u64, u64, u64)> {
    let mut hdr = CapHeader {
        version: CAP_V3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: header and a two-element data array, as the v3 ABI requires.
    let rc = unsafe { libc::syscall(libc::SYS_capget, &mut hdr, data.as_mut_ptr()) };
    if rc < 0 {
        return Err(syscall_err("capget"));
    }
    let join = |lo: u32, hi: u32| u64::from(lo) | (u64::from(hi) << 32);
    Ok((
        join(data[0].effective, data[1].effective),
        join(data[0].permitted, data[1].permitted),
        join(data[0].inheritable, data[1].inheritable),
    ))
}

/// Set effective, permitted and inheritable in one call: setting them one by one (as the
/// `caps` crate does) fails whenever an intermediate state violates effective ⊆ permitted.
fn capset_self(effective: u64, permitted: u64, inheritable: u64) -> Result<()> {
    let mut hdr = CapHeader {
        version: CAP_V3,
        pid: 0,
    };
    // Truncation to the low/high 32-bit words is the ABI.
    let split = |m: u64| (m as u32, (m >> 32) as u32);
    let (e0, e1) = split(effective);
    let (p0, p1) = split(permitted);
    let (i0, i1) = split(inheritable);
    let data = [
        CapData {
            effective: e0,
            permitted: p0,
            inheritable: i0,
        },
        CapData {
            effective: e1,
            permitted: p1,
            inheritable: i1,
        },
    ];
    // SAFETY: header and a two-element data array, as the v3 ABI requires.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &mut hdr, data.as_ptr()) };
    if rc < 0 {
        return Err(syscall_err("capset"));
    }
    Ok(())
}

/// Apply the OCI capability sets to the calling process. Call it in the container init
/// after switching user (see the module docs for the full order) and before seccomp.
///
/// Steps:
/// 1. raise effective to the current permitted set — after a `setuid` with keep-caps the
///    effective set is empty, and dropping bounding capabilities needs `CAP_SETPCAP`;
/// 2. drop every bounding capability not requested, up to the kernel's last capability
///    (including ones newer than our table, which are never requested);
/// 3. `capset` effective/permitted/inheritable at once;
/// 4. clear the ambient set and raise the requested ambient capabilities.
pub fn apply(caps: &LinuxCapabilities) -> Result<()> {
    CapSets::from_oci(caps)?.apply()
}

impl CapSets {
    /// The allocation-free part of [`apply`]; see there for the steps.
    pub fn apply(&self) -> Result<()> {
        apply_masks(self)
    }
}

fn apply_masks(want: &CapSets) -> Result<()> {
    let (_, permitted, inheritable) = capget_self()?;
    capset_self(permitted, permitted, inheritable)?;

    for nr in 0u8..64 {
        let arg = libc::c_ulong::from(nr);
        // SAFETY: prctl with integer arguments only.
        let present = unsafe { libc::prctl(libc::PR_CAPBSET_READ, arg, 0, 0, 0) };
        if present < 0 {
            // EINVAL: past the kernel's last capability.
            break;
        }
        if present == 1 && want.bounding & (1u64 << nr) == 0 {
            // SAFETY: as above.
            let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, arg, 0, 0, 0) };
            if rc < 0 {
                return Err(syscall_err("prctl(PR_CAPBSET_DROP)"));
            }
        }
    }

    capset_self(want.effective, want.permitted, want.inheritable)?;

    // SAFETY: prctl with integer arguments only.
    let rc = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    // Kernels without ambient support (< 4.3) reject the call; only an error if we need it.
    if rc < 0 && want.ambient != 0 {
        return Err(syscall_err("prctl(PR_CAP_AMBIENT_CLEAR_ALL)"));
    }
    for nr in 0u8..64 {
        if want.ambient & (1u64 << nr) == 0 {
            continue;
        }
        // SAFETY: prctl with integer arguments only.
        let rc = unsafe {
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                libc::c_ulong::from(nr),
                0,
                0,
            )
        };
        if rc < 0 {
            return Err(syscall_err("prctl(PR_CAP_AMBIENT_RAISE)"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    fn sorted_defaults() -> Vec<String> {
        let mut d = s(DEFAULT_CAPABILITIES);
        d.sort();
        d
    }

    #[test]
    fn no_tweaks_gives_sorted_defaults() {
        let caps = resolve(&[], &[], false).unwrap();
        assert_eq!(caps, sorted_defaults());
        assert_eq!(caps.len(), 14);
    }

    #[test]
    fn add_and_drop_accept_any_case_and_prefix() {
        let caps = resolve(
            &s(&["sys_admin", "CAP_net_admin"]),
            &s(&["cap_chown", "KILL"]),
            false,
        )
        .unwrap();
        assert!(caps.contains(&"CAP_SYS_ADMIN".to_string()));
        assert!(caps.contains(&"CAP_NET_ADMIN".to_string()));
        assert!(!caps.contains(&"CAP_CHOWN".to_string()));
        assert!(!caps.contains(&"CAP_KILL".to_string()));
        assert_eq!(caps.len(), 14);
    }

    #[test]
    fn adding_a_default_does_not_duplicate() {
        let caps = resolve(&s(&["CHOWN"]), &[], false).unwrap();
        assert_eq!(caps, sorted_defaults());
    }

    #[test]
    fn drop_all_then_add_specific() {
        let caps = resolve(&s(&["NET_BIND_SERVICE"]), &s(&["ALL"]), false).unwrap();
        assert_eq!(caps, s(&["CAP_NET_BIND_SERVICE"]));
        let none = resolve(&[], &s(&["all"]), false).unwrap();
        assert!(none.is_empty());
    }

    #[test]
    fn add_all_minus_drops() {
        let caps = resolve(&s(&["ALL"]), &s(&["SYS_ADMIN"]), false).unwrap();
        assert!(!caps.contains(&"CAP_SYS_ADMIN".to_string()));
        assert!(caps.contains(&"CAP_SYS_PTRACE".to_string()));
        assert_eq!(caps.len(), all_capabilities().len() - 1);
        // ALL in add wins over ALL in drop, as in moby.
        let all = resolve(&s(&["ALL"]), &s(&["ALL"]), false).unwrap();
        assert_eq!(all, all_capabilities());
    }

    #[test]
    fn privileged_is_everything_the_kernel_knows() {
        let caps = resolve(&[], &s(&["ALL"]), true).unwrap();
        assert_eq!(caps, all_capabilities());
        assert_eq!(caps.len(), usize::from(kernel_last_cap().min(40)) + 1);
        let mut sorted = caps.clone();
        sorted.sort();
        assert_eq!(caps, sorted);
    }

    #[test]
    fn unknown_capability_is_rejected_even_when_privileged_is_false() {
        let err = resolve(&s(&["FOO"]), &[], false).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"invalid CapAdd: unknown capability: "CAP_FOO""#
        );
        let err = resolve(&[], &s(&["cap_bar"]), false).unwrap_err();
        assert_eq!(
            err.to_string(),
            r#"invalid CapDrop: unknown capability: "CAP_BAR""#
        );
    }

    #[test]
    fn to_oci_sets_docker_sets_and_roundtrips_names() {
        let names = resolve(&[], &[], false).unwrap();
        let oci = to_oci(&names);
        let bounding = oci.bounding().as_ref().unwrap();
        assert_eq!(names_of(bounding), names);
        assert_eq!(oci.effective(), oci.bounding());
        assert_eq!(oci.permitted(), oci.bounding());
        assert!(oci.inheritable().as_ref().unwrap().is_empty());
        assert!(oci.ambient().as_ref().unwrap().is_empty());
        let masks = CapSets::from_oci(&oci).unwrap();
        assert_eq!(masks.bounding.count_ones(), 14);
        assert_eq!(masks.ambient, 0);
    }

    #[test]
    fn every_known_name_maps_to_oci_and_back() {
        for (name, _) in KNOWN {
            let cap = to_oci_cap(name).unwrap_or_else(|| panic!("{name} unknown to oci-spec"));
            assert_eq!(format!("CAP_{cap}"), *name);
        }
    }

    /// Applying the default set in a forked child must leave exactly those capabilities.
    #[test]
    fn apply_in_forked_child() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipping: needs root");
            return;
        }
        let oci = to_oci(&resolve(&[], &[], false).unwrap());
        // Prepared before fork: the child must not allocate (the harness is multi-threaded).
        let want = CapSets::from_oci(&oci).unwrap();
        // SAFETY: the child only runs async-signal-safe-enough code then _exit.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let code = match want.apply() {
                Err(_) => 10,
                Ok(()) => match capget_self() {
                    Ok((e, p, i)) if e == want.effective && p == want.permitted && i == 0 => {
                        // SAFETY: PR_CAPBSET_READ only reads state.
                        let sys_admin =
                            unsafe { libc::prctl(libc::PR_CAPBSET_READ, 21 as libc::c_ulong) };
                        if sys_admin == 0 { 0 } else { 12 }
                    }
                    _ => 11,
                },
            };
            // SAFETY: terminate the child without running the test harness' destructors.
            unsafe { libc::_exit(code) };
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        unsafe { libc::waitpid(pid, &mut status, 0) };
        assert!(libc::WIFEXITED(status));
        assert_eq!(libc::WEXITSTATUS(status), 0);
    }
}
