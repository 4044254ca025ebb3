//! Tests for the v2 device program: encoding, semantics (through a small
//! interpreter checked against a direct model of the rules) and, as root,
//! the real kernel.

use std::ffi::CString;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceCgroupBuilder, LinuxDeviceType};

use super::*;
use crate::cgroups::detect::{CgroupVersion, dir_in_mount, own_cgroups, parse_mountinfo};

// ------------------------------------------------------------ helpers

fn rule(
    allow: bool,
    typ: LinuxDeviceType,
    major: Option<i64>,
    minor: Option<i64>,
    access: &str,
) -> LinuxDeviceCgroup {
    let mut b = LinuxDeviceCgroupBuilder::default()
        .allow(allow)
        .typ(typ)
        .access(access);
    if let Some(m) = major {
        b = b.major(m);
    }
    if let Some(m) = minor {
        b = b.minor(m);
    }
    b.build().unwrap()
}

fn deny_all() -> LinuxDeviceCgroup {
    LinuxDeviceCgroupBuilder::default()
        .allow(false)
        .access("rwm")
        .build()
        .unwrap()
}

fn privileged() -> Vec<LinuxDeviceCgroup> {
    vec![
        LinuxDeviceCgroupBuilder::default()
            .allow(true)
            .access("rwm")
            .build()
            .unwrap(),
    ]
}

fn c(major: i64, minor: Option<i64>, access: &str) -> LinuxDeviceCgroup {
    rule(true, LinuxDeviceType::C, Some(major), minor, access)
}

/// The device rules Docker puts in a default (unprivileged) spec.
fn docker_default() -> Vec<LinuxDeviceCgroup> {
    vec![
        deny_all(),
        rule(true, LinuxDeviceType::C, None, None, "m"),
        rule(true, LinuxDeviceType::B, None, None, "m"),
        c(1, Some(3), "rwm"),
        c(1, Some(8), ""),
        c(1, Some(7), ""),
        c(5, Some(0), ""),
        c(1, Some(5), ""),
        c(1, Some(9), ""),
        c(136, None, "rwm"),
        c(5, Some(2), "rwm"),
        c(10, Some(200), "rwm"),
    ]
}

impl Insn {
    fn dst(&self) -> u8 {
        self.regs & 0x0f
    }
    fn src(&self) -> u8 {
        self.regs >> 4
    }
}

const R: u32 = ACC_READ;
const W: u32 = ACC_WRITE;
const M: u32 = ACC_MKNOD;
const RW: u32 = ACC_READ | ACC_WRITE;

/// Runs `prog` the way the kernel would for one device access. Panics on
/// anything the generator should never produce (unknown opcode, backward
/// or out-of-range jump, ctx read other than the three u32 fields).
fn run(prog: &[Insn], typ: u32, access: u32, major: u32, minor: u32) -> bool {
    const CTX: u64 = 0xc7c7_0000_0000;
    let ctx = [(access << 16) | typ, major, minor];
    let mut reg = [0u64; 11];
    reg[1] = CTX;
    let mut pc = 0usize;
    loop {
        let i = prog
            .get(pc)
            .copied()
            .expect("ran off the end of the program");
        let (d, s) = (i.dst() as usize, i.src() as usize);
        let imm = i.imm as u32;
        let low = |r: u64| r as u32;
        let mut jump = |taken: bool| {
            assert!(i.off >= 0, "backward jump at {pc}");
            if taken {
                pc += i.off as usize;
            }
        };
        match i.code {
            LDX_MEM_W => {
                assert_eq!(reg[s], CTX, "load from a non-ctx register at {pc}");
                assert!(i.off >= 0 && i.off % 4 == 0 && i.off <= 8, "bad ctx offset");
                reg[d] = u64::from(ctx[i.off as usize / 4]);
            }
            ALU32_MOV_K => reg[d] = u64::from(imm),
            ALU32_MOV_X => reg[d] = u64::from(low(reg[s])),
            ALU32_AND_K => reg[d] = u64::from(low(reg[d]) & imm),
            ALU32_RSH_K => reg[d] = u64::from(low(reg[d]) >> imm),
            JMP32_JEQ_K => jump(low(reg[d]) == imm),
            JMP32_JNE_K => jump(low(reg[d]) != imm),
            JMP_EXIT => {
                let r0 = reg[0];
                assert!(r0 <= 1, "return value {r0}");
                return r0 == 1;
            }
            other => panic!("unknown opcode {other:#x} at {pc}"),
        }
        pc += 1;
    }
}

fn allowed(rules: &[LinuxDeviceCgroup], typ: u32, access: u32, major: u32, minor: u32) -> bool {
    run(&build_program(rules).unwrap(), typ, access, major, minor)
}

/// The intended semantics, stated directly: each requested bit is decided
/// by the last rule that matches the device and names that bit; undecided
/// bits deny.
fn model(rules: &[LinuxDeviceCgroup], typ: u32, access: u32, major: u32, minor: u32) -> bool {
    let rules = parse_rules(rules).unwrap();
    [ACC_MKNOD, ACC_READ, ACC_WRITE]
        .into_iter()
        .filter(|b| access & b != 0)
        .all(|bit| {
            rules
                .iter()
                .rev()
                .find(|r| {
                    r.typ.is_none_or(|t| t == typ)
                        && r.major.is_none_or(|m| m == major)
                        && r.minor.is_none_or(|m| m == minor)
                        && r.access & bit != 0
                })
                .is_some_and(|r| r.allow)
        })
}

// ------------------------------------------------------------ encoding

#[test]
fn insn_encoding_matches_struct_bpf_insn() {
    assert_eq!(std::mem::size_of::<Insn>(), 8);
    let i = ldx_w(R_MAJOR, R1, 4);
    // SAFETY: Insn is repr(C), 8 bytes, no padding.
    let bytes: [u8; 8] = unsafe { std::mem::transmute(i) };
    assert_eq!(bytes, [0x61, 0x14, 4, 0, 0, 0, 0, 0]);
    let j = jne_k(R_TYPE, 0xfff0_0000, -2);
    // SAFETY: as above.
    let bytes: [u8; 8] = unsafe { std::mem::transmute(j) };
    assert_eq!(bytes, [0x56, 0x03, 0xfe, 0xff, 0x00, 0x00, 0xf0, 0xff]);
    assert_eq!((j.dst(), j.src()), (R_TYPE, 0));
    let m = mov_x(R1, R_PENDING);
    assert_eq!((m.dst(), m.src()), (R1, R_PENDING));
}

#[test]
fn program_structure_for_small_rule_set() {
    let rules = [
        deny_all(),
        c(1, Some(3), "rwm"),
        rule(false, LinuxDeviceType::C, Some(1), Some(3), "w"),
        rule(true, LinuxDeviceType::B, None, None, "m"),
    ];
    let prog = build_program(&rules).unwrap();
    let prologue = vec![
        ldx_w(R_PENDING, R1, 0),
        ldx_w(R_MAJOR, R1, 4),
        ldx_w(R_MINOR, R1, 8),
        mov_x(R_TYPE, R_PENDING),
        and_k(R_TYPE, 0xffff),
        rsh_k(R_PENDING, 16),
    ];
    let mut want = prologue;
    // Last rule first: allow b *:* m (type check only).
    want.extend([
        jne_k(R_TYPE, DEV_BLOCK, 4),
        and_k(R_PENDING, R | W),
        jne_k(R_PENDING, 0, 2),
        mov_k(R0, 1),
        exit(),
    ]);
    // deny c 1:3 w.
    want.extend([
        jne_k(R_TYPE, DEV_CHAR, 7),
        jne_k(R_MAJOR, 1, 6),
        jne_k(R_MINOR, 3, 5),
        mov_x(R1, R_PENDING),
        and_k(R1, W),
        jeq_k(R1, 0, 2),
        mov_k(R0, 0),
        exit(),
    ]);
    // allow c 1:3 rwm.
    want.extend([
        jne_k(R_TYPE, DEV_CHAR, 6),
        jne_k(R_MAJOR, 1, 5),
        jne_k(R_MINOR, 3, 4),
        and_k(R_PENDING, 0),
        jne_k(R_PENDING, 0, 2),
        mov_k(R0, 1),
        exit(),
    ]);
    // The leading deny-all is the fall-through verdict, not a block.
    want.extend([mov_k(R0, 0), exit()]);
    assert_eq!(prog, want);

    // Every jump lands inside the program and moves forward, so the
    // verifier sees a loop-free program that always reaches an exit.
    for (pc, i) in prog.iter().enumerate() {
        if matches!(i.code, JMP32_JEQ_K | JMP32_JNE_K) {
            assert!(i.off > 0);
            assert!(pc + 1 + (i.off as usize) < prog.len());
        }
    }
    assert_eq!(prog.last(), Some(&exit()));
}

#[test]
fn privileged_program_is_return_one() {
    let prog = build_program(&privileged()).unwrap();
    assert_eq!(prog.len(), 8);
    assert_eq!(&prog[6..], &[mov_k(R0, 1), exit()]);
}

#[test]
fn rules_before_a_total_rule_are_dropped() {
    let mut rules = docker_default();
    rules.push(deny_all());
    assert_eq!(build_program(&rules).unwrap().len(), 8);
}

// ------------------------------------------------------------ semantics

#[test]
fn docker_default_rules() {
    let rules = docker_default();
    let ok = |typ, acc, maj, min| allowed(&rules, typ, acc, maj, min);
    // /dev/null, /dev/zero, /dev/full, /dev/random, /dev/urandom, /dev/tty.
    for (maj, min) in [(1, 3), (1, 5), (1, 7), (1, 8), (1, 9), (5, 0)] {
        assert!(ok(DEV_CHAR, RW, maj, min), "c {maj}:{min} rw");
        assert!(ok(DEV_CHAR, R, maj, min));
        assert!(ok(DEV_CHAR, W, maj, min));
    }
    // Host disks stay closed, in any mode.
    for acc in [R, W, RW] {
        assert!(!ok(DEV_BLOCK, acc, 8, 0), "b 8:0 {acc}");
        assert!(!ok(DEV_BLOCK, acc, 254, 0));
    }
    // mknod of anything is allowed (`c *:* m`, `b *:* m`); opening is not.
    assert!(ok(DEV_BLOCK, M, 8, 0));
    assert!(ok(DEV_CHAR, M, 4, 1));
    assert!(!ok(DEV_CHAR, R, 4, 1));
    assert!(!ok(DEV_CHAR, M | R, 4, 1));
    // pts (any minor), ptmx, tun.
    assert!(ok(DEV_CHAR, RW, 136, 5));
    assert!(ok(DEV_CHAR, RW | M, 136, 0));
    assert!(ok(DEV_CHAR, RW, 5, 2));
    assert!(ok(DEV_CHAR, RW, 10, 200));
    // Neighbours of allowed devices are not allowed.
    assert!(!ok(DEV_CHAR, R, 1, 4));
    assert!(!ok(DEV_CHAR, R, 10, 201));
    assert!(!ok(DEV_BLOCK, R, 1, 3));
    assert!(!ok(DEV_BLOCK, R, 136, 5));
}

#[test]
fn privileged_allows_everything() {
    let rules = privileged();
    for typ in [DEV_BLOCK, DEV_CHAR] {
        for acc in 1..=7 {
            for (maj, min) in [(8, 0), (1, 3), (254, 0), (4095, 1_048_575)] {
                assert!(allowed(&rules, typ, acc, maj, min));
            }
        }
    }
}

#[test]
fn access_bits_are_decided_separately() {
    // v1 merged these into "c 1:3 rw"; an O_RDWR open must pass.
    let rules = [deny_all(), c(1, Some(3), "r"), c(1, Some(3), "w")];
    assert!(allowed(&rules, DEV_CHAR, RW, 1, 3));
    assert!(!allowed(&rules, DEV_CHAR, RW | M, 1, 3));
    // A later deny of one bit beats an earlier allow of all three.
    let rules = [
        deny_all(),
        c(1, Some(3), "rwm"),
        rule(false, LinuxDeviceType::C, Some(1), Some(3), "w"),
    ];
    assert!(allowed(&rules, DEV_CHAR, R | M, 1, 3));
    assert!(!allowed(&rules, DEV_CHAR, W, 1, 3));
    assert!(!allowed(&rules, DEV_CHAR, RW, 1, 3));
    // ...and a later allow beats an earlier deny.
    let rules = [
        rule(false, LinuxDeviceType::C, Some(1), Some(3), "w"),
        c(1, Some(3), "rwm"),
    ];
    assert!(allowed(&rules, DEV_CHAR, RW, 1, 3));
}

#[test]
fn allow_all_then_deny_is_a_blacklist() {
    let rules = [
        privileged()[0].clone(),
        rule(false, LinuxDeviceType::B, Some(8), None, "rw"),
    ];
    assert!(!allowed(&rules, DEV_BLOCK, R, 8, 16));
    assert!(allowed(&rules, DEV_BLOCK, M, 8, 16));
    assert!(allowed(&rules, DEV_BLOCK, RW, 9, 0));
    assert!(allowed(&rules, DEV_CHAR, RW, 8, 0));
}

#[test]
fn no_rules_deny_everything() {
    assert!(!allowed(&[], DEV_CHAR, R, 1, 3));
    assert!(!allowed(&[], DEV_BLOCK, M, 8, 0));
}

#[test]
fn fifo_rules_are_ignored_and_u_is_char() {
    let rules = [
        deny_all(),
        rule(true, LinuxDeviceType::P, Some(1), Some(3), "rwm"),
        rule(true, LinuxDeviceType::U, Some(4), Some(1), "r"),
    ];
    assert!(!allowed(&rules, DEV_CHAR, R, 1, 3));
    assert!(allowed(&rules, DEV_CHAR, R, 4, 1));
    assert!(!allowed(&rules, DEV_BLOCK, R, 4, 1));
}

#[test]
fn large_device_numbers_compare_as_u32() {
    // Above i32::MAX the immediate is negative; 32-bit compares still match.
    let big = 3_000_000_000i64;
    let rules = [deny_all(), c(big, Some(7), "r")];
    assert!(allowed(&rules, DEV_CHAR, R, big as u32, 7));
    assert!(!allowed(&rules, DEV_CHAR, R, 7, 7));
}

#[test]
fn program_agrees_with_model() {
    let sets: Vec<Vec<LinuxDeviceCgroup>> = vec![
        docker_default(),
        privileged(),
        vec![],
        vec![
            c(1, None, "r"),
            rule(false, LinuxDeviceType::A, Some(1), Some(3), "m"),
            rule(true, LinuxDeviceType::B, Some(8), Some(0), "rw"),
            rule(false, LinuxDeviceType::A, None, Some(0), "w"),
            c(5, Some(0), "wm"),
        ],
        vec![
            privileged()[0].clone(),
            rule(false, LinuxDeviceType::C, Some(136), None, "rw"),
            c(136, Some(5), "r"),
        ],
    ];
    for rules in &sets {
        for typ in [DEV_BLOCK, DEV_CHAR] {
            for acc in 1..=7 {
                for maj in [0, 1, 5, 8, 10, 136, 254] {
                    for min in [0, 3, 5, 7, 200] {
                        assert_eq!(
                            allowed(rules, typ, acc, maj, min),
                            model(rules, typ, acc, maj, min),
                            "type {typ} access {acc} {maj}:{min} rules {rules:?}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn invalid_rules_are_rejected() {
    assert!(build_program(&[c(1, Some(3), "rwx")]).is_err());
    assert!(build_program(&[c(-2, Some(3), "r")]).is_err());
    assert!(build_program(&[c(1, Some(1 << 40), "r")]).is_err());
    // -1 is the OCI spelling of a wildcard.
    assert!(build_program(&[c(-1, Some(-1), "r")]).is_ok());
}

// ------------------------------------------------------------ real kernel

/// Our own cgroup2 directory plus a fresh child `pelagos-bpftest-<pid>-<tag>`
/// in it, or None (skip) without root or a cgroup2 mount. Only this child is
/// ever written; the guard kills what is left in it and removes it.
struct TestCgroup {
    dir: PathBuf,
}

impl TestCgroup {
    fn new(tag: &str) -> Option<TestCgroup> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipping: needs root");
            return None;
        }
        let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
        let mounts = parse_mountinfo(&info, Path::new("/")).ok()?;
        let Some(v2) = mounts.iter().find(|m| m.version == CgroupVersion::V2) else {
            eprintln!("skipping: no cgroup2 mount");
            return None;
        };
        let own = own_cgroups().ok()?.unified?;
        let base = dir_in_mount(&v2.mountpoint, &v2.mount_root, &own);
        let dir = base.join(format!("pelagos-bpftest-{}-{tag}", std::process::id()));
        std::fs::create_dir(&dir).unwrap();
        Some(TestCgroup { dir })
    }
}

impl Drop for TestCgroup {
    fn drop(&mut self) {
        remove_cgroup(&self.dir);
    }
}

/// Kills what is left in cgroup `dir` and removes it with its child cgroups
/// (a failed assertion can leave the manager test's leaf behind).
fn remove_cgroup(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup(&e.path());
            }
        }
    }
    if let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) {
        for pid in procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()) {
            // SAFETY: only pids inside our own test cgroup get signalled.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
    // A killed task leaves the cgroup asynchronously; retry briefly.
    for _ in 0..100 {
        if std::fs::remove_dir(dir).is_ok() || !dir.exists() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Forks a child, moves it into `cg` before it does anything, runs `body`
/// there and returns the child's exit code. `body` must only make
/// async-signal-safe calls (no allocation): the test harness has threads.
fn run_in_cgroup(cg: &Path, body: impl FnOnce() -> i32) -> i32 {
    let mut fds = [0; 2];
    // SAFETY: fds has room for two descriptors.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: the child only reads the pipe, runs `body` and _exits.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let mut b = 0u8;
        // SAFETY: one byte into a valid buffer; then leave without unwinding.
        unsafe {
            libc::close(fds[1]);
            if libc::read(fds[0], (&mut b as *mut u8).cast(), 1) != 1 {
                libc::_exit(99);
            }
            libc::_exit(body())
        }
    }
    // SAFETY: closing our copy of the read end.
    unsafe { libc::close(fds[0]) };
    let moved = std::fs::write(cg.join("cgroup.procs"), pid.to_string());
    // SAFETY: releasing the child (or, if the move failed, letting it exit
    // via the short read) and closing our end.
    unsafe {
        if moved.is_ok() {
            libc::write(fds[1], b"x".as_ptr().cast(), 1);
        }
        libc::close(fds[1]);
    }
    let mut status = 0;
    // SAFETY: pid is our child; status is a valid out-pointer.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    moved.unwrap();
    assert!(libc::WIFEXITED(status), "child status {status:#x}");
    libc::WEXITSTATUS(status)
}

fn errno() -> i32 {
    // SAFETY: reading this thread's errno.
    unsafe { *libc::__errno_location() }
}

/// Child-side checks under Docker's default rules. Exit codes say which
/// step failed.
fn default_rules_child(dev_null: &CString, chr: &CString, blk: &CString) -> i32 {
    // SAFETY: plain syscalls on NUL-terminated paths built before fork.
    unsafe {
        let fd = libc::open(dev_null.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC);
        if fd < 0 {
            return 10;
        }
        libc::close(fd);
        // A char node for 1:3 on the same filesystem proves device nodes
        // work there at all, so the block-node EPERM below is the program's.
        if libc::mknod(chr.as_ptr(), libc::S_IFCHR | 0o600, libc::makedev(1, 3)) != 0 {
            return 11;
        }
        let fd = libc::open(chr.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC);
        if fd < 0 {
            return 12;
        }
        libc::close(fd);
        if libc::mknod(blk.as_ptr(), libc::S_IFBLK | 0o600, libc::makedev(8, 0)) != 0 {
            return 13;
        }
        let fd = libc::open(blk.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
        if fd >= 0 {
            libc::close(fd);
            return 14;
        }
        if errno() != libc::EPERM {
            return 15;
        }
        0
    }
}

#[test]
fn kernel_enforces_default_rules_and_replacement() {
    let Some(cg) = TestCgroup::new("rules") else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let path = |n: &str| CString::new(tmp.path().join(n).as_os_str().as_encoded_bytes()).unwrap();
    let (dev_null, chr, blk) = (c"/dev/null".to_owned(), path("null"), path("sda"));

    apply_v2_devices(&cg.dir, &docker_default()).unwrap();
    let file = open_cgroup(&cg.dir).unwrap();
    let first = query_attached(&file).unwrap();
    assert_eq!(first.len(), 1, "attached: {first:?}");

    let code = run_in_cgroup(&cg.dir, || default_rules_child(&dev_null, &chr, &blk));
    assert_eq!(code, 0, "default-rules child failed at step {code}");

    // Replacing (docker update / privileged): exactly one program remains,
    // and the block node is no longer refused by the cgroup (a missing
    // disk gives ENXIO, an existing one opens; never EPERM).
    apply_v2_devices(&cg.dir, &privileged()).unwrap();
    let second = query_attached(&file).unwrap();
    assert_eq!(second.len(), 1, "attached: {second:?}");
    assert_ne!(first, second);
    let code = run_in_cgroup(&cg.dir, || {
        // SAFETY: open/close on a path built before fork.
        unsafe {
            let fd = libc::open(blk.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
            if fd >= 0 {
                libc::close(fd);
                0
            } else if errno() == libc::EPERM {
                20
            } else {
                0
            }
        }
    });
    assert_eq!(code, 0, "privileged child was refused the block device");

    drop(file);
    let dir = cg.dir.clone();
    drop(cg);
    assert!(!dir.exists(), "{} still exists", dir.display());
}

/// The V2Manager wiring: create() installs the program, destroy() removes
/// the cgroup. The placement's "mountpoint" is our own test directory, so
/// create() configures nothing above it (it writes the subtree_control of
/// the mountpoint and of dirs it created, which are all ours here).
#[test]
fn v2_manager_create_installs_device_program() {
    use crate::cgroups::{CgroupManager, Placement, v2::V2Manager};
    use oci_spec::runtime::LinuxResourcesBuilder;

    let Some(cg) = TestCgroup::new("mgr") else {
        return;
    };
    let leaf = cg.dir.join("ctr");
    let m = V2Manager::new(Placement {
        controllers: vec![],
        mountpoint: cg.dir.clone(),
        parent: cg.dir.clone(),
        parent_owned: false,
        path: leaf.clone(),
    });
    let res = LinuxResourcesBuilder::default()
        .devices(docker_default())
        .build()
        .unwrap();
    m.create(&res).unwrap();
    let ids = query_attached(&open_cgroup(&leaf).unwrap()).unwrap();
    assert_eq!(ids.len(), 1);
    // An update without device rules leaves the program alone.
    m.apply(&LinuxResourcesBuilder::default().build().unwrap())
        .unwrap();
    assert_eq!(query_attached(&open_cgroup(&leaf).unwrap()).unwrap(), ids);

    let tmp = tempfile::tempdir().unwrap();
    let blk = CString::new(tmp.path().join("sda").as_os_str().as_encoded_bytes()).unwrap();
    let code = run_in_cgroup(&leaf, || {
        // SAFETY: mknod/open/close on a path built before fork.
        unsafe {
            if libc::mknod(blk.as_ptr(), libc::S_IFBLK | 0o600, libc::makedev(8, 0)) != 0 {
                return 1;
            }
            let fd = libc::open(blk.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
            if fd >= 0 {
                libc::close(fd);
                return 2;
            }
            if errno() == libc::EPERM { 0 } else { 3 }
        }
    });
    assert_eq!(code, 0, "manager child failed at step {code}");
    m.destroy().unwrap();
    assert!(!leaf.exists());
    let dir = cg.dir.clone();
    drop(cg);
    assert!(!dir.exists());
}
