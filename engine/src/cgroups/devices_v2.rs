//! OCI device rules → a `BPF_PROG_TYPE_CGROUP_DEVICE` program (cgroup v2).
//!
//! cgroup v2 has no devices controller; the kernel instead runs the BPF
//! programs attached to a cgroup (and to its ancestors) on every mknod and
//! every open of a device node. Without one, a container holding CAP_MKNOD
//! could create and open host block devices, so on v2 this program is the
//! device policy.
//!
//! Semantics follow the v1 devices controller and runc/crun: the *last*
//! matching rule wins, decided separately for each requested access bit
//! (an `open(O_RDWR)` asks for read and write at once, and v1 merged the
//! access of equal rules, so `allow c 1:3 r` + `allow c 1:3 w` allows it).
//! Anything no rule decides is denied. Docker's list starts with a deny-all,
//! which then simply is that default.
//!
//! The program is assembled here from a handful of opcodes; there is no
//! dependency on libbpf or an LLVM toolchain.

use std::ffi::CStr;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

use super::error::{CgroupError, Result};

// ------------------------------------------------------------ kernel ABI

/// `bpf_cgroup_dev_ctx.access_type` low half: device type.
const DEV_BLOCK: u32 = 1;
const DEV_CHAR: u32 = 2;
/// `bpf_cgroup_dev_ctx.access_type` high half: requested access bits.
const ACC_MKNOD: u32 = 1;
const ACC_READ: u32 = 2;
const ACC_WRITE: u32 = 4;
const ACC_ALL: u32 = ACC_MKNOD | ACC_READ | ACC_WRITE;

const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_PROG_ATTACH: libc::c_long = 8;
const BPF_PROG_DETACH: libc::c_long = 9;
const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_PROG_QUERY: libc::c_long = 16;

const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
const BPF_CGROUP_DEVICE: u32 = 6;
/// Lets several programs coexist on one cgroup; all of them must allow.
/// We use it so a replacement can be attached before the old one goes,
/// leaving no unprotected window.
const BPF_F_ALLOW_MULTI: u32 = 2;

// Opcodes (class | op | source), from linux/bpf_common.h and linux/bpf.h.
const LDX_MEM_W: u8 = 0x61; // BPF_LDX | BPF_MEM | BPF_W
const ALU32_MOV_K: u8 = 0xb4; // BPF_ALU | BPF_MOV | BPF_K
const ALU32_MOV_X: u8 = 0xbc; // BPF_ALU | BPF_MOV | BPF_X
const ALU32_AND_K: u8 = 0x54; // BPF_ALU | BPF_AND | BPF_K
const ALU32_RSH_K: u8 = 0x74; // BPF_ALU | BPF_RSH | BPF_K
// 32-bit compares (BPF_JMP32): the ctx fields are u32, and a 64-bit compare
// would sign-extend an immediate >= 2^31 and never match.
const JMP32_JEQ_K: u8 = 0x16; // BPF_JMP32 | BPF_JEQ | BPF_K
const JMP32_JNE_K: u8 = 0x56; // BPF_JMP32 | BPF_JNE | BPF_K
const JMP_EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT

// Registers. R1 holds the ctx pointer on entry and is reused as scratch
// once the three fields are loaded.
const R0: u8 = 0;
const R1: u8 = 1;
/// Access bits still undecided.
const R_PENDING: u8 = 2;
const R_TYPE: u8 = 3;
const R_MAJOR: u8 = 4;
const R_MINOR: u8 = 5;

/// One eBPF instruction, laid out as the kernel's `struct bpf_insn`
/// (`dst_reg:4, src_reg:4` share a byte, dst in the low nibble).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

impl Insn {
    fn new(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Self {
        Insn {
            code,
            regs: (src << 4) | (dst & 0x0f),
            off,
            imm,
        }
    }
}

// The tiny assembler: one constructor per instruction form we emit.
fn ldx_w(dst: u8, src: u8, off: i16) -> Insn {
    Insn::new(LDX_MEM_W, dst, src, off, 0)
}
fn mov_k(dst: u8, imm: u32) -> Insn {
    Insn::new(ALU32_MOV_K, dst, 0, 0, imm as i32)
}
fn mov_x(dst: u8, src: u8) -> Insn {
    Insn::new(ALU32_MOV_X, dst, src, 0, 0)
}
fn and_k(dst: u8, imm: u32) -> Insn {
    Insn::new(ALU32_AND_K, dst, 0, 0, imm as i32)
}
fn rsh_k(dst: u8, imm: u32) -> Insn {
    Insn::new(ALU32_RSH_K, dst, 0, 0, imm as i32)
}
fn jne_k(dst: u8, imm: u32, off: i16) -> Insn {
    Insn::new(JMP32_JNE_K, dst, 0, off, imm as i32)
}
fn jeq_k(dst: u8, imm: u32, off: i16) -> Insn {
    Insn::new(JMP32_JEQ_K, dst, 0, off, imm as i32)
}
fn exit() -> Insn {
    Insn::new(JMP_EXIT, 0, 0, 0, 0)
}

// ------------------------------------------------------------ rules

/// An OCI rule reduced to what the program compares. `None` is a wildcard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Rule {
    typ: Option<u32>,
    major: Option<u32>,
    minor: Option<u32>,
    access: u32,
    allow: bool,
}

impl Rule {
    /// Matches every device and decides every access bit, so nothing listed
    /// before it can ever matter.
    fn is_total(&self) -> bool {
        self.typ.is_none() && self.major.is_none() && self.minor.is_none() && self.access == ACC_ALL
    }
}

fn invalid(field: &'static str, reason: String) -> CgroupError {
    CgroupError::InvalidResource { field, reason }
}

/// Validates and normalises the OCI rules. FIFO rules are dropped (the
/// kernel never asks about FIFOs); `u` (unbuffered char) is a char device.
fn parse_rules(rules: &[LinuxDeviceCgroup]) -> Result<Vec<Rule>> {
    let mut out = Vec::with_capacity(rules.len());
    for r in rules {
        let typ = match r.typ().unwrap_or(LinuxDeviceType::A) {
            LinuxDeviceType::A => None,
            LinuxDeviceType::B => Some(DEV_BLOCK),
            LinuxDeviceType::C | LinuxDeviceType::U => Some(DEV_CHAR),
            LinuxDeviceType::P => continue,
        };
        // An empty access string means "rwm", as in runc and in devices.rs.
        let access_str = r
            .access()
            .as_deref()
            .filter(|a| !a.is_empty())
            .unwrap_or("rwm");
        let mut access = 0;
        for c in access_str.chars() {
            access |= match c {
                'r' => ACC_READ,
                'w' => ACC_WRITE,
                'm' => ACC_MKNOD,
                _ => {
                    return Err(invalid(
                        "devices.access",
                        format!("{access_str:?} is not a subset of \"rwm\""),
                    ));
                }
            };
        }
        let num = |n: Option<i64>| -> Result<Option<u32>> {
            match n {
                None | Some(-1) => Ok(None),
                Some(v) => u32::try_from(v).map(Some).map_err(|_| {
                    invalid("devices.major/minor", format!("{v} is not a device number"))
                }),
            }
        };
        out.push(Rule {
            typ,
            major: num(r.major())?,
            minor: num(r.minor())?,
            access,
            allow: r.allow(),
        });
    }
    Ok(out)
}

/// Builds the program for `rules`.
///
/// Layout: load the ctx, then one block per rule from the last rule to the
/// first (so the first block that decides a bit is the last rule that
/// matches it), then the default verdict (deny unless a total rule such as
/// Docker's leading `a *:* rwm` says otherwise). `R_PENDING` holds the
/// requested access bits that no later rule has allowed yet:
/// - a matching deny rule that covers any pending bit returns 0;
/// - a matching allow rule clears its bits and returns 1 once none remain.
pub(crate) fn build_program(rules: &[LinuxDeviceCgroup]) -> Result<Vec<Insn>> {
    let rules = parse_rules(rules)?;
    // The last total rule decides whatever later rules leave open, so it
    // becomes the fall-through verdict and rules before it are dead. This
    // keeps the privileged program ([allow a rwm]) a plain "return 1".
    let (live, default_allow) = match rules.iter().rposition(Rule::is_total) {
        Some(i) => (&rules[i + 1..], rules[i].allow),
        None => (&rules[..], false),
    };

    let mut prog = vec![
        ldx_w(R_PENDING, R1, 0), // access_type
        ldx_w(R_MAJOR, R1, 4),
        ldx_w(R_MINOR, R1, 8),
        mov_x(R_TYPE, R_PENDING),
        and_k(R_TYPE, 0xffff),
        rsh_k(R_PENDING, 16),
    ];
    for rule in live.iter().rev() {
        emit_rule(&mut prog, rule)?;
    }
    prog.extend([mov_k(R0, u32::from(default_allow)), exit()]);
    Ok(prog)
}

fn emit_rule(prog: &mut Vec<Insn>, rule: &Rule) -> Result<()> {
    let body: Vec<Insn> = if rule.allow {
        vec![
            and_k(R_PENDING, !rule.access & ACC_ALL),
            jne_k(R_PENDING, 0, 2),
            mov_k(R0, 1),
            exit(),
        ]
    } else {
        vec![
            mov_x(R1, R_PENDING),
            and_k(R1, rule.access),
            jeq_k(R1, 0, 2),
            mov_k(R0, 0),
            exit(),
        ]
    };
    // Each compare that fails jumps over the remaining compares and the body.
    let checks: Vec<(u8, u32)> = [
        (R_TYPE, rule.typ),
        (R_MAJOR, rule.major),
        (R_MINOR, rule.minor),
    ]
    .into_iter()
    .filter_map(|(reg, v)| v.map(|v| (reg, v)))
    .collect();
    for (i, (reg, v)) in checks.iter().enumerate() {
        let skip = checks.len() - i - 1 + body.len();
        let off = i16::try_from(skip)
            .map_err(|_| invalid("devices", "rule block too large for a jump".to_string()))?;
        prog.push(jne_k(*reg, *v, off));
    }
    prog.extend(body);
    Ok(())
}

// ------------------------------------------------------------ bpf(2)

/// `union bpf_attr` for BPF_PROG_LOAD, up to `expected_attach_type`. The
/// kernel accepts a shorter attr than its own and zero-fills the rest.
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// `union bpf_attr` for BPF_PROG_ATTACH / BPF_PROG_DETACH.
#[repr(C)]
#[derive(Default)]
struct AttachAttr {
    target_fd: u32,
    attach_bpf_fd: u32,
    attach_type: u32,
    attach_flags: u32,
}

/// `union bpf_attr` for BPF_PROG_QUERY.
#[repr(C)]
#[derive(Default)]
struct QueryAttr {
    target_fd: u32,
    attach_type: u32,
    query_flags: u32,
    attach_flags: u32,
    prog_ids: u64,
    prog_cnt: u32,
    _pad: u32,
}

/// `union bpf_attr` for BPF_PROG_GET_FD_BY_ID.
#[repr(C)]
#[derive(Default)]
struct GetFdAttr {
    prog_id: u32,
    next_id: u32,
    open_flags: u32,
}

fn sys_bpf<T>(cmd: libc::c_long, attr: &mut T) -> std::io::Result<libc::c_long> {
    // SAFETY: attr is a live, fully initialised bpf_attr prefix of the size
    // passed; the kernel reads (and for QUERY writes) only within it, and
    // any pointers inside it point at buffers the caller keeps alive.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut T,
            std::mem::size_of::<T>() as libc::c_uint,
        )
    };
    if r < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn owned_fd(r: libc::c_long) -> OwnedFd {
    // SAFETY: the kernel just returned this fd to us; nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(r as RawFd) }
}

const LICENSE: &CStr = c"Apache";
const PROG_NAME: &[u8] = b"pelagos_devices";
/// Verifier logs for our straight-line programs are small; this is ample.
const LOG_SIZE: usize = 256 * 1024;

/// Loads `prog`. On failure it loads again with the verifier log enabled,
/// so the error says *why* (the first attempt stays log-free because a too
/// small log buffer is itself an error).
pub(crate) fn load_program(prog: &[Insn]) -> std::io::Result<OwnedFd> {
    let insn_cnt =
        u32::try_from(prog.len()).map_err(|_| std::io::Error::other("device program too long"))?;
    let mut attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_CGROUP_DEVICE,
        insn_cnt,
        insns: prog.as_ptr() as u64,
        license: LICENSE.as_ptr() as u64,
        expected_attach_type: BPF_CGROUP_DEVICE,
        ..Default::default()
    };
    attr.prog_name[..PROG_NAME.len()].copy_from_slice(PROG_NAME);
    let first = match sys_bpf(BPF_PROG_LOAD, &mut attr) {
        Ok(fd) => return Ok(owned_fd(fd)),
        Err(e) => e,
    };
    let mut log = vec![0u8; LOG_SIZE];
    attr.log_level = 1;
    attr.log_size = LOG_SIZE as u32;
    attr.log_buf = log.as_mut_ptr() as u64;
    if let Ok(fd) = sys_bpf(BPF_PROG_LOAD, &mut attr) {
        // Transient first failure (e.g. EAGAIN); the retry worked.
        return Ok(owned_fd(fd));
    }
    let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
    let text = String::from_utf8_lossy(&log[..end]);
    let text = text.trim();
    if text.is_empty() {
        Err(first)
    } else {
        Err(std::io::Error::new(
            first.kind(),
            format!("{first}; verifier: {text}"),
        ))
    }
}

/// Ids of the device programs attached directly to `cgroup`.
pub(crate) fn query_attached(cgroup: &File) -> std::io::Result<Vec<u32>> {
    let mut ids = vec![0u32; 64];
    loop {
        let mut attr = QueryAttr {
            target_fd: cgroup.as_raw_fd() as u32,
            attach_type: BPF_CGROUP_DEVICE,
            prog_ids: ids.as_mut_ptr() as u64,
            prog_cnt: ids.len() as u32,
            ..Default::default()
        };
        match sys_bpf(BPF_PROG_QUERY, &mut attr) {
            Ok(_) => {
                ids.truncate(attr.prog_cnt as usize);
                return Ok(ids);
            }
            // ENOSPC: more programs than room; prog_cnt says how many.
            Err(e) if e.raw_os_error() == Some(libc::ENOSPC) && ids.len() < 1 << 16 => {
                let want = (attr.prog_cnt as usize).max(ids.len() * 2);
                ids = vec![0; want];
            }
            Err(e) => return Err(e),
        }
    }
}

fn attach(cgroup: &File, prog: &OwnedFd) -> std::io::Result<()> {
    let mut attr = AttachAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: BPF_F_ALLOW_MULTI,
    };
    sys_bpf(BPF_PROG_ATTACH, &mut attr).map(|_| ())
}

fn detach_id(cgroup: &File, id: u32) -> std::io::Result<()> {
    let mut get = GetFdAttr {
        prog_id: id,
        ..Default::default()
    };
    let prog = match sys_bpf(BPF_PROG_GET_FD_BY_ID, &mut get) {
        Ok(fd) => owned_fd(fd),
        // Already gone (detached concurrently): nothing to do.
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(()),
        Err(e) => return Err(e),
    };
    let mut attr = AttachAttr {
        target_fd: cgroup.as_raw_fd() as u32,
        attach_bpf_fd: prog.as_raw_fd() as u32,
        attach_type: BPF_CGROUP_DEVICE,
        attach_flags: 0,
    };
    match sys_bpf(BPF_PROG_DETACH, &mut attr) {
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        other => other.map(|_| ()),
    }
}

fn open_cgroup(dir: &Path) -> Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(dir)
        .map_err(|e| CgroupError::io("open", dir, e))
}

/// Installs the device program for `rules` on the v2 cgroup `dir`,
/// replacing any device program attached there before (`docker update`,
/// or a repeated create). The new program is attached first and the old
/// ones detached after, so the cgroup is never without a policy; while
/// both are attached the kernel requires both to allow, which is only
/// stricter.
pub(crate) fn apply_v2_devices(dir: &Path, rules: &[LinuxDeviceCgroup]) -> Result<()> {
    let prog = build_program(rules)?;
    let cgroup = open_cgroup(dir)?;
    let bpf_err = |op, e| CgroupError::io(op, dir, e);
    let old = query_attached(&cgroup).map_err(|e| bpf_err("bpf query device programs", e))?;
    let fd = load_program(&prog).map_err(|e| bpf_err("bpf load device program", e))?;
    attach(&cgroup, &fd).map_err(|e| bpf_err("bpf attach device program", e))?;
    // The attachment holds its own reference; our fd is no longer needed.
    drop(fd);
    for id in old {
        detach_id(&cgroup, id).map_err(|e| bpf_err("bpf detach old device program", e))?;
    }
    Ok(())
}

#[cfg(test)]
#[path = "devices_v2_tests.rs"]
mod tests;
