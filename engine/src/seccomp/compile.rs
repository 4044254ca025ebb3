//! Compile an OCI `linux.seccomp` section into a classic-BPF program with libseccomp, and
//! cache the result on disk.
//!
//! Compiling Docker's default profile takes milliseconds, more than a whole container start
//! is allowed to cost, so the start path uses [`compile_cached`]: one hash of the section
//! plus one small file read. Compiling happens only the first time a given section is seen.

use std::io::{Read, Seek, SeekFrom, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use libseccomp::{
    ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterAttr, ScmpFilterContext,
    ScmpSyscall,
};
use oci_spec::runtime::{
    Arch, LinuxSeccomp, LinuxSeccompAction, LinuxSeccompFilterFlag, LinuxSeccompOperator,
    LinuxSyscall,
};
use sha2::{Digest, Sha256};

use super::error::{Result, SeccompError};

/// One classic-BPF instruction, layout-compatible with the kernel's `struct sock_filter`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SockFilter {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

const INSN_SIZE: usize = std::mem::size_of::<SockFilter>();
/// The kernel refuses longer programs (BPF_MAXINSNS).
const MAX_INSNS: usize = 4096;

/// A compiled filter ready for `seccomp(SECCOMP_SET_MODE_FILTER, flags, prog)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BpfProgram {
    insns: Vec<SockFilter>,
    flags: u32,
}

impl BpfProgram {
    /// Build from raw `sock_filter` bytes in native byte order (libseccomp's export format).
    pub fn from_bytes(bytes: &[u8], flags: u32) -> Result<Self> {
        if bytes.is_empty() || !bytes.len().is_multiple_of(INSN_SIZE) {
            return Err(SeccompError::InvalidProgram(
                "length is not a positive multiple of 8",
            ));
        }
        if bytes.len() / INSN_SIZE > MAX_INSNS {
            return Err(SeccompError::InvalidProgram("more than 4096 instructions"));
        }
        let insns = bytes
            .chunks_exact(INSN_SIZE)
            .map(|c| SockFilter {
                code: u16::from_ne_bytes([c[0], c[1]]),
                jt: c[2],
                jf: c[3],
                k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]),
            })
            .collect();
        Ok(Self { insns, flags })
    }

    /// The raw `sock_filter` bytes (native byte order).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.insns.len() * INSN_SIZE);
        for i in &self.insns {
            out.extend_from_slice(&i.code.to_ne_bytes());
            out.push(i.jt);
            out.push(i.jf);
            out.extend_from_slice(&i.k.to_ne_bytes());
        }
        out
    }

    pub fn instructions(&self) -> &[SockFilter] {
        &self.insns
    }

    pub fn len(&self) -> usize {
        self.insns.len()
    }

    pub fn is_empty(&self) -> bool {
        self.insns.is_empty()
    }

    /// `SECCOMP_FILTER_FLAG_*` bits to pass to seccomp(2).
    pub fn flags(&self) -> u32 {
        self.flags
    }
}

/// `SECCOMP_FILTER_FLAG_*` values from `linux/seccomp.h`.
const FLAG_TSYNC: u32 = 1;
const FLAG_LOG: u32 = 2;
const FLAG_SPEC_ALLOW: u32 = 4;
const FLAG_WAIT_KILLABLE_RECV: u32 = 32;

/// The seccomp(2) flags requested by the section. They are applied at load time, so they
/// are not part of the BPF code.
pub fn filter_flags(seccomp: &LinuxSeccomp) -> u32 {
    seccomp
        .flags()
        .iter()
        .flatten()
        .map(|f| match f {
            LinuxSeccompFilterFlag::SeccompFilterFlagTsync => FLAG_TSYNC,
            LinuxSeccompFilterFlag::SeccompFilterFlagLog => FLAG_LOG,
            LinuxSeccompFilterFlag::SeccompFilterFlagSpecAllow => FLAG_SPEC_ALLOW,
            LinuxSeccompFilterFlag::SeccompFilterFlagWaitKillableRecv => FLAG_WAIT_KILLABLE_RECV,
        })
        .fold(0, |acc, f| acc | f)
}

fn lib_err(
    what: impl Into<String>,
) -> impl FnOnce(libseccomp::error::SeccompError) -> SeccompError {
    let what = what.into();
    move |source| SeccompError::Compile { what, source }
}

fn to_scmp_action(action: LinuxSeccompAction, errno_ret: Option<u32>) -> Result<ScmpAction> {
    Ok(match action {
        LinuxSeccompAction::ScmpActKill | LinuxSeccompAction::ScmpActKillThread => {
            ScmpAction::KillThread
        }
        LinuxSeccompAction::ScmpActKillProcess => ScmpAction::KillProcess,
        LinuxSeccompAction::ScmpActTrap => ScmpAction::Trap,
        // OCI: errnoRet defaults to EPERM.
        LinuxSeccompAction::ScmpActErrno => {
            ScmpAction::Errno(errno_ret.map_or(libc::EPERM, |e| e as i32))
        }
        LinuxSeccompAction::ScmpActTrace => {
            ScmpAction::Trace(errno_ret.map_or(libc::EPERM as u16, |e| e as u16))
        }
        LinuxSeccompAction::ScmpActLog => ScmpAction::Log,
        LinuxSeccompAction::ScmpActAllow => ScmpAction::Allow,
        // Needs a listener fd handed to an agent; not implemented.
        LinuxSeccompAction::ScmpActNotify => {
            return Err(SeccompError::Unsupported("SCMP_ACT_NOTIFY".into()));
        }
    })
}

fn to_scmp_arch(arch: Arch) -> Result<ScmpArch> {
    Ok(match arch {
        Arch::ScmpArchNative => ScmpArch::Native,
        Arch::ScmpArchX86 => ScmpArch::X86,
        Arch::ScmpArchX86_64 => ScmpArch::X8664,
        Arch::ScmpArchX32 => ScmpArch::X32,
        Arch::ScmpArchArm => ScmpArch::Arm,
        Arch::ScmpArchAarch64 => ScmpArch::Aarch64,
        Arch::ScmpArchMips => ScmpArch::Mips,
        Arch::ScmpArchMips64 => ScmpArch::Mips64,
        Arch::ScmpArchMips64n32 => ScmpArch::Mips64N32,
        Arch::ScmpArchMipsel => ScmpArch::Mipsel,
        Arch::ScmpArchMipsel64 => ScmpArch::Mipsel64,
        Arch::ScmpArchMipsel64n32 => ScmpArch::Mipsel64N32,
        Arch::ScmpArchPpc => ScmpArch::Ppc,
        Arch::ScmpArchPpc64 => ScmpArch::Ppc64,
        Arch::ScmpArchPpc64le => ScmpArch::Ppc64Le,
        Arch::ScmpArchS390 => ScmpArch::S390,
        Arch::ScmpArchS390x => ScmpArch::S390X,
        Arch::ScmpArchParisc => ScmpArch::Parisc,
        Arch::ScmpArchParisc64 => ScmpArch::Parisc64,
        Arch::ScmpArchRiscv64 => ScmpArch::Riscv64,
        Arch::ScmpArchLoongarch64 => ScmpArch::Loongarch64,
        Arch::ScmpArchM68k => ScmpArch::M68k,
        Arch::ScmpArchSh => ScmpArch::Sh,
        Arch::ScmpArchSheb => ScmpArch::Sheb,
    })
}

fn to_compare(arg: &oci_spec::runtime::LinuxSeccompArg) -> ScmpArgCompare {
    let index = arg.index() as u32;
    let op = match arg.op() {
        LinuxSeccompOperator::ScmpCmpNe => ScmpCompareOp::NotEqual,
        LinuxSeccompOperator::ScmpCmpLt => ScmpCompareOp::Less,
        LinuxSeccompOperator::ScmpCmpLe => ScmpCompareOp::LessOrEqual,
        LinuxSeccompOperator::ScmpCmpEq => ScmpCompareOp::Equal,
        LinuxSeccompOperator::ScmpCmpGe => ScmpCompareOp::GreaterEqual,
        LinuxSeccompOperator::ScmpCmpGt => ScmpCompareOp::Greater,
        // OCI: value is the mask, valueTwo the expected result.
        LinuxSeccompOperator::ScmpCmpMaskedEq => {
            return ScmpArgCompare::new(
                index,
                ScmpCompareOp::MaskedEqual(arg.value()),
                arg.value_two().unwrap_or(0),
            );
        }
    };
    ScmpArgCompare::new(index, op, arg.value())
}

/// Add one OCI syscall rule. Like runc: names libseccomp does not know (newer than the
/// installed library) are skipped — they then get the default action; a rule whose action
/// equals the default is redundant and libseccomp would reject it.
fn add_syscall_rule(
    ctx: &mut ScmpFilterContext,
    rule: &LinuxSyscall,
    default: ScmpAction,
) -> Result<()> {
    let action = to_scmp_action(rule.action(), rule.errno_ret())?;
    if action == default {
        return Ok(());
    }
    let conds: Vec<ScmpArgCompare> = rule.args().iter().flatten().map(to_compare).collect();
    // Conditions on distinct arguments are AND-ed in one rule. Several conditions on the
    // same argument cannot be AND-ed by libseccomp, so runc turns them into separate
    // rules, i.e. OR — we keep that interpretation for compatibility.
    let mut seen = [false; 6];
    let same_arg_twice = rule.args().iter().flatten().any(|a| {
        let i = a.index().min(5);
        std::mem::replace(&mut seen[i], true)
    });

    for name in rule.names() {
        let Ok(syscall) = ScmpSyscall::from_name(name) else {
            tracing::debug!(syscall = %name, "seccomp: syscall unknown to libseccomp, skipped");
            continue;
        };
        let what = || format!("rule for {name}");
        if conds.is_empty() {
            ctx.add_rule(action, syscall).map_err(lib_err(what()))?;
        } else if same_arg_twice {
            for c in &conds {
                ctx.add_rule_conditional(action, syscall, std::slice::from_ref(c))
                    .map_err(lib_err(what()))?;
            }
        } else {
            ctx.add_rule_conditional(action, syscall, &conds)
                .map_err(lib_err(what()))?;
        }
    }
    Ok(())
}

/// Build the libseccomp filter for an OCI section.
fn build_filter(seccomp: &LinuxSeccomp) -> Result<ScmpFilterContext> {
    if seccomp.listener_path().is_some() {
        return Err(SeccompError::Unsupported("seccomp listenerPath".into()));
    }
    let default = to_scmp_action(seccomp.default_action(), seccomp.default_errno_ret())?;
    let mut ctx = ScmpFilterContext::new(default).map_err(lib_err("creating filter"))?;
    // The runtime sets no_new_privs itself at the right moment; libseccomp must not.
    ctx.set_ctl_nnp(false).map_err(lib_err("disabling NNP"))?;
    // Binary-tree syscall dispatch: same semantics, fewer instructions executed per
    // syscall for a big allow-list. Older libseccomp lacks it; the linear filter is fine.
    let _ = ctx.set_filter_attr(ScmpFilterAttr::CtlOptimize, 2);

    for arch in seccomp.architectures().iter().flatten() {
        let arch = to_scmp_arch(*arch)?;
        let present = ctx
            .is_arch_present(arch)
            .map_err(lib_err(format!("checking arch {arch:?}")))?;
        if !present {
            ctx.add_arch(arch)
                .map_err(lib_err(format!("adding arch {arch:?}")))?;
        }
    }
    for rule in seccomp.syscalls().iter().flatten() {
        add_syscall_rule(&mut ctx, rule, default)?;
    }
    Ok(ctx)
}

fn io_err(op: &'static str) -> impl FnOnce(std::io::Error) -> SeccompError {
    move |source| SeccompError::Io { op, source }
}

/// Compile a section into a BPF program (milliseconds; use [`compile_cached`] on hot paths).
pub fn compile(seccomp: &LinuxSeccomp) -> Result<BpfProgram> {
    let ctx = build_filter(seccomp)?;

    // libseccomp < 2.6 can only export to a file descriptor; an anonymous memfd avoids
    // touching the filesystem.
    // SAFETY: memfd_create with a NUL-terminated name; the fd is owned right away.
    let fd = unsafe { libc::memfd_create(c"pelagos-seccomp".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(io_err("memfd_create")(std::io::Error::last_os_error()));
    }
    // SAFETY: fd is a freshly created descriptor nobody else owns.
    let mut file = std::fs::File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    ctx.export_bpf(&file).map_err(lib_err("exporting BPF"))?;
    file.seek(SeekFrom::Start(0))
        .map_err(io_err("rewinding memfd"))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)
        .map_err(io_err("reading memfd"))?;
    BpfProgram::from_bytes(&bytes, filter_flags(seccomp))
}

/// Bump when the cache file format or the compile logic changes meaning.
const CACHE_VERSION: &str = "pelagos-seccomp-bpf-v1";
const CACHE_MAGIC: &[u8; 8] = b"PLGSBPF1";
const HEADER_LEN: usize = 8 + 4 + 32;

/// Cache key: sha256 over the canonical JSON of the section plus everything else that
/// changes the generated code (our format version, libseccomp version, host arch).
pub fn cache_key(seccomp: &LinuxSeccomp) -> Result<String> {
    let json = serde_json::to_vec(seccomp)?;
    let lib = libseccomp::ScmpVersion::current()
        .map(|v| format!("{}.{}.{}", v.major, v.minor, v.micro))
        .unwrap_or_default();
    let mut h = Sha256::new();
    h.update(CACHE_VERSION.as_bytes());
    h.update(b"\n");
    h.update(lib.as_bytes());
    h.update(b"\n");
    h.update(std::env::consts::ARCH.as_bytes());
    h.update(b"\n");
    h.update(&json);
    Ok(hex::encode(h.finalize()))
}

/// Cache file: magic, instruction count (LE u32), sha256 of the payload, payload. The
/// checksum makes a torn or truncated file (crash, full disk) detectable — loading a
/// half-written filter would silently change the container's security policy.
fn encode_cache(prog: &BpfProgram) -> Vec<u8> {
    let payload = prog.to_bytes();
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    out.extend_from_slice(CACHE_MAGIC);
    out.extend_from_slice(&(prog.len() as u32).to_le_bytes());
    out.extend_from_slice(&Sha256::digest(&payload));
    out.extend_from_slice(&payload);
    out
}

fn decode_cache(bytes: &[u8], flags: u32) -> Option<BpfProgram> {
    let (header, payload) = bytes.split_at_checked(HEADER_LEN)?;
    let (magic, rest) = header.split_at(8);
    let (count, digest) = rest.split_at(4);
    let count = u32::from_le_bytes(count.try_into().ok()?) as usize;
    if magic != CACHE_MAGIC
        || payload.len() != count * INSN_SIZE
        || Sha256::digest(payload).as_slice() != digest
    {
        return None;
    }
    BpfProgram::from_bytes(payload, flags).ok()
}

/// Path of the cache file for a key.
pub fn cache_path(cache_dir: &Path, key: &str) -> PathBuf {
    cache_dir.join(format!("{key}.bpf"))
}

/// Compile with an on-disk cache in `cache_dir` (created if missing). A hit costs a hash
/// and one read; a miss compiles and publishes the file atomically (tmp + rename), so
/// concurrent starts never see a partial file. Invalid cache files are recompiled.
pub fn compile_cached(seccomp: &LinuxSeccomp, cache_dir: &Path) -> Result<BpfProgram> {
    let key = cache_key(seccomp)?;
    let path = cache_path(cache_dir, &key);
    let flags = filter_flags(seccomp);
    if let Ok(bytes) = std::fs::read(&path) {
        if let Some(prog) = decode_cache(&bytes, flags) {
            return Ok(prog);
        }
        tracing::warn!(path = %path.display(), "seccomp cache entry corrupt, recompiling");
    }

    let prog = compile(seccomp)?;
    let cache_err = |source| SeccompError::Cache {
        path: path.clone(),
        source,
    };
    std::fs::create_dir_all(cache_dir).map_err(cache_err)?;
    // pid + counter: unique across processes and across threads of this one.
    static TMP_SEQ: AtomicU64 = AtomicU64::new(0);
    let seq = TMP_SEQ.fetch_add(1, Ordering::Relaxed);
    let tmp = cache_dir.join(format!(".{key}.{}.{seq}.tmp", std::process::id()));
    let written = std::fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(&encode_cache(&prog)))
        .and_then(|()| std::fs::rename(&tmp, &path));
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(cache_err(e));
    }
    Ok(prog)
}
