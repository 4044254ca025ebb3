//! Docker's default seccomp profile, built in code.
//!
//! Behaviour matches moby's `profiles/seccomp/default.json`: everything not listed fails with
//! EPERM; a large allow-list of ordinary syscalls; argument-restricted `socket`, `personality`
//! and `clone`; `clone3` answers ENOSYS (so libc falls back to the filterable `clone`) unless
//! the container has CAP_SYS_ADMIN; and capability-gated groups that re-allow privileged
//! syscalls when the container holds the matching capability.

use oci_spec::runtime::{LinuxSeccompAction as Action, LinuxSeccompOperator as Op};

use super::profile::{ArchMapEntry, ArgRule, Condition, KernelVersion, Profile, SyscallRule};

/// Syscalls allowed unconditionally.
// Kept as a dense table; one name per line would triple the file for no benefit.
#[rustfmt::skip]
const ALLOWED: &[&str] = &[
    "accept", "accept4", "access", "adjtimex", "alarm", "bind", "brk", "cachestat", "capget",
    "capset", "chdir", "chmod", "chown", "chown32", "clock_adjtime", "clock_adjtime64",
    "clock_getres", "clock_getres_time64", "clock_gettime", "clock_gettime64",
    "clock_nanosleep", "clock_nanosleep_time64", "close", "close_range", "connect",
    "copy_file_range", "creat", "dup", "dup2", "dup3", "epoll_create", "epoll_create1",
    "epoll_ctl", "epoll_ctl_old", "epoll_pwait", "epoll_pwait2", "epoll_wait",
    "epoll_wait_old", "eventfd", "eventfd2", "execve", "execveat", "exit", "exit_group",
    "faccessat", "faccessat2", "fadvise64", "fadvise64_64", "fallocate", "fanotify_mark",
    "fchdir", "fchmod", "fchmodat", "fchmodat2", "fchown", "fchown32", "fchownat", "fcntl",
    "fcntl64", "fdatasync", "fgetxattr", "flistxattr", "flock", "fork", "fremovexattr",
    "fsetxattr", "fstat", "fstat64", "fstatat64", "fstatfs", "fstatfs64", "fsync", "ftruncate",
    "ftruncate64", "futex", "futex_requeue", "futex_time64", "futex_wait", "futex_waitv",
    "futex_wake", "futimesat", "getcpu", "getcwd", "getdents", "getdents64", "getegid",
    "getegid32", "geteuid", "geteuid32", "getgid", "getgid32", "getgroups", "getgroups32",
    "getitimer", "getpeername", "getpgid", "getpgrp", "getpid", "getppid", "getpriority",
    "getrandom", "getresgid", "getresgid32", "getresuid", "getresuid32", "getrlimit",
    "get_robust_list", "getrusage", "getsid", "getsockname", "getsockopt", "get_thread_area",
    "gettid", "gettimeofday", "getuid", "getuid32", "getxattr", "getxattrat",
    "inotify_add_watch", "inotify_init", "inotify_init1", "inotify_rm_watch", "io_cancel",
    "ioctl", "io_destroy", "io_getevents", "io_pgetevents", "io_pgetevents_time64",
    "ioprio_get", "ioprio_set", "io_setup", "io_submit", "ipc", "kill", "landlock_add_rule",
    "landlock_create_ruleset", "landlock_restrict_self", "lchown", "lchown32", "lgetxattr",
    "link", "linkat", "listen", "listmount", "listxattr", "listxattrat", "llistxattr",
    "_llseek", "lremovexattr", "lseek", "lsetxattr", "lstat", "lstat64", "madvise",
    "map_shadow_stack", "membarrier", "memfd_create", "memfd_secret", "mincore", "mkdir",
    "mkdirat", "mknod", "mknodat", "mlock", "mlock2", "mlockall", "mmap", "mmap2", "mprotect",
    "mq_getsetattr", "mq_notify", "mq_open", "mq_timedreceive", "mq_timedreceive_time64",
    "mq_timedsend", "mq_timedsend_time64", "mq_unlink", "mremap", "mseal", "msgctl", "msgget",
    "msgrcv", "msgsnd", "msync", "munlock", "munlockall", "munmap", "name_to_handle_at",
    "nanosleep", "newfstatat", "_newselect", "open", "openat", "openat2", "pause",
    "pidfd_open", "pidfd_send_signal", "pipe", "pipe2", "pkey_alloc", "pkey_free",
    "pkey_mprotect", "poll", "ppoll", "ppoll_time64", "prctl", "pread64", "preadv", "preadv2",
    "prlimit64", "process_mrelease", "pselect6", "pselect6_time64", "pwrite64", "pwritev",
    "pwritev2", "read", "readahead", "readlink", "readlinkat", "readv", "recv", "recvfrom",
    "recvmmsg", "recvmmsg_time64", "recvmsg", "remap_file_pages", "removexattr",
    "removexattrat", "rename", "renameat", "renameat2", "restart_syscall", "riscv_hwprobe",
    "rmdir", "rseq", "rt_sigaction", "rt_sigpending", "rt_sigprocmask", "rt_sigqueueinfo",
    "rt_sigreturn", "rt_sigsuspend", "rt_sigtimedwait", "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo", "sched_getaffinity", "sched_getattr", "sched_getparam",
    "sched_get_priority_max", "sched_get_priority_min", "sched_getscheduler",
    "sched_rr_get_interval", "sched_rr_get_interval_time64", "sched_setaffinity",
    "sched_setattr", "sched_setparam", "sched_setscheduler", "sched_yield", "seccomp",
    "select", "semctl", "semget", "semop", "semtimedop", "semtimedop_time64", "send",
    "sendfile", "sendfile64", "sendmmsg", "sendmsg", "sendto", "setfsgid", "setfsgid32",
    "setfsuid", "setfsuid32", "setgid", "setgid32", "setgroups", "setgroups32", "setitimer",
    "setpgid", "setpriority", "setregid", "setregid32", "setresgid", "setresgid32",
    "setresuid", "setresuid32", "setreuid", "setreuid32", "setrlimit", "set_robust_list",
    "setsid", "setsockopt", "set_thread_area", "set_tid_address", "setuid", "setuid32",
    "setxattr", "setxattrat", "shmat", "shmctl", "shmdt", "shmget", "shutdown", "sigaltstack",
    "signalfd", "signalfd4", "sigprocmask", "sigreturn", "socketcall", "socketpair", "splice",
    "stat", "stat64", "statfs", "statfs64", "statmount", "statx", "symlink", "symlinkat",
    "sync", "sync_file_range", "syncfs", "sysinfo", "tee", "tgkill", "time", "timer_create",
    "timer_delete", "timer_getoverrun", "timer_gettime", "timer_gettime64", "timer_settime",
    "timer_settime64", "timerfd_create", "timerfd_gettime", "timerfd_gettime64",
    "timerfd_settime", "timerfd_settime64", "times", "tkill", "truncate", "truncate64",
    "ugetrlimit", "umask", "uname", "unlink", "unlinkat", "uretprobe", "utime", "utimensat",
    "utimensat_time64", "utimes", "vfork", "vmsplice", "wait4", "waitid", "waitpid", "write",
    "writev",
];

/// Namespace-creating clone flags: plain `clone` is allowed only without any of them.
const CLONE_NAMESPACE_FLAGS: u64 = (libc::CLONE_NEWNS
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUSER
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWNET
    | libc::CLONE_NEWCGROUP) as u64;

/// Address families denied to `socket`: AF_ALG (38, kernel crypto API, a recurring source of
/// exploits) and AF_VSOCK (40, host/guest channel). Docker allows everything around them.
const AF_ALG: u64 = 38;
const AF_VSOCK: u64 = 40;

/// `personality` values that are safe: PER_LINUX, UNAME26, PER_LINUX32,
/// PER_LINUX32|UNAME26 and the 0xffffffff query.
const PERSONALITY_ALLOWED: &[u64] = &[0x0, 0x8, 0x2_0000, 0x2_0008, 0xffff_ffff];

/// (capability, syscalls it re-allows). Order follows Docker's profile.
const CAP_GATED: &[(&str, &[&str])] = &[
    ("CAP_DAC_READ_SEARCH", &["open_by_handle_at"]),
    (
        "CAP_SYS_ADMIN",
        &[
            "bpf",
            "clone",
            "clone3",
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "lookup_dcookie",
            "lsm_get_self_attr",
            "lsm_list_modules",
            "lsm_set_self_attr",
            "mount",
            "mount_setattr",
            "move_mount",
            "open_tree",
            "perf_event_open",
            "quotactl",
            "quotactl_fd",
            "setdomainname",
            "sethostname",
            "setns",
            "syslog",
            "umount",
            "umount2",
            "unshare",
        ],
    ),
    ("CAP_SYS_BOOT", &["reboot"]),
    ("CAP_SYS_CHROOT", &["chroot"]),
    (
        "CAP_SYS_MODULE",
        &["delete_module", "init_module", "finit_module"],
    ),
    ("CAP_SYS_PACCT", &["acct"]),
    (
        "CAP_SYS_PTRACE",
        &[
            "kcmp",
            "pidfd_getfd",
            "process_madvise",
            "process_vm_readv",
            "process_vm_writev",
            "ptrace",
        ],
    ),
    ("CAP_SYS_RAWIO", &["iopl", "ioperm"]),
    (
        "CAP_SYS_TIME",
        &["settimeofday", "stime", "clock_settime", "clock_settime64"],
    ),
    ("CAP_SYS_TTY_CONFIG", &["vhangup"]),
    (
        "CAP_SYS_NICE",
        &[
            "get_mempolicy",
            "mbind",
            "set_mempolicy",
            "set_mempolicy_home_node",
        ],
    ),
    ("CAP_SYSLOG", &["syslog"]),
    ("CAP_BPF", &["bpf"]),
    ("CAP_PERFMON", &["perf_event_open"]),
];

/// (Docker arch names, syscalls allowed only there).
const ARCH_GATED: &[(&[&str], &[&str])] = &[
    (&["ppc64le"], &["sync_file_range2", "swapcontext"]),
    (
        &["arm", "arm64"],
        &[
            "arm_fadvise64_64",
            "arm_sync_file_range",
            "sync_file_range2",
            "breakpoint",
            "cacheflush",
            "set_tls",
        ],
    ),
    (&["amd64", "x32"], &["arch_prctl"]),
    (&["amd64", "x32", "x86"], &["modify_ldt"]),
    (
        &["s390", "s390x"],
        &[
            "s390_pci_mmio_read",
            "s390_pci_mmio_write",
            "s390_runtime_instr",
        ],
    ),
    (&["riscv64"], &["riscv_flush_icache"]),
];

/// (native arch, sub-arches) — which ABIs a filter on that host also has to cover.
const ARCH_MAP: &[(&str, &[&str])] = &[
    ("SCMP_ARCH_X86_64", &["SCMP_ARCH_X86", "SCMP_ARCH_X32"]),
    ("SCMP_ARCH_AARCH64", &["SCMP_ARCH_ARM"]),
    (
        "SCMP_ARCH_MIPS64",
        &["SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64N32"],
    ),
    (
        "SCMP_ARCH_MIPS64N32",
        &["SCMP_ARCH_MIPS", "SCMP_ARCH_MIPS64"],
    ),
    (
        "SCMP_ARCH_MIPSEL64",
        &["SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64N32"],
    ),
    (
        "SCMP_ARCH_MIPSEL64N32",
        &["SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64"],
    ),
    ("SCMP_ARCH_S390X", &["SCMP_ARCH_S390"]),
    ("SCMP_ARCH_RISCV64", &[]),
    ("SCMP_ARCH_LOONGARCH64", &[]),
];

fn strings(names: &[&str]) -> Vec<String> {
    names.iter().map(|n| (*n).to_string()).collect()
}

fn allow(names: &[&str]) -> SyscallRule {
    SyscallRule {
        name: None,
        names: strings(names),
        action: Action::ScmpActAllow,
        errno_ret: None,
        args: Vec::new(),
        comment: None,
        includes: None,
        excludes: None,
    }
}

fn arg(index: u32, op: Op, value: u64, value_two: u64) -> ArgRule {
    ArgRule {
        index,
        value,
        value_two,
        op,
    }
}

fn caps(names: &[&str]) -> Option<Condition> {
    Some(Condition {
        caps: strings(names),
        ..Condition::default()
    })
}

fn arches(names: &[&str]) -> Option<Condition> {
    Some(Condition {
        arches: strings(names),
        ..Condition::default()
    })
}

/// Build Docker's default profile.
pub fn build() -> Profile {
    let mut rules = vec![allow(ALLOWED)];

    // ptrace & co. became safe to allow once kernel 4.8 fixed the seccomp bypass via ptrace.
    rules.push(SyscallRule {
        includes: Some(Condition {
            min_kernel: Some(KernelVersion::new(4, 8)),
            ..Condition::default()
        }),
        ..allow(&["process_vm_readv", "process_vm_writev", "ptrace"])
    });

    // socket(): any family except AF_ALG and AF_VSOCK. Rules for one syscall are OR-ed.
    for (op, family) in [
        (Op::ScmpCmpLt, AF_ALG),
        (Op::ScmpCmpEq, AF_ALG + 1),
        (Op::ScmpCmpGt, AF_VSOCK),
    ] {
        rules.push(SyscallRule {
            args: vec![arg(0, op, family, 0)],
            ..allow(&["socket"])
        });
    }

    for &value in PERSONALITY_ALLOWED {
        rules.push(SyscallRule {
            args: vec![arg(0, Op::ScmpCmpEq, value, 0)],
            ..allow(&["personality"])
        });
    }

    for &(arch_names, names) in ARCH_GATED {
        rules.push(SyscallRule {
            includes: arches(arch_names),
            ..allow(names)
        });
    }

    for &(cap, names) in CAP_GATED {
        rules.push(SyscallRule {
            includes: caps(&[cap]),
            ..allow(names)
        });
        // Docker's file lists the unprivileged clone/clone3 rules right after the
        // CAP_SYS_ADMIN group; keep that order so the generated OCI section matches.
        if cap == "CAP_SYS_ADMIN" {
            rules.extend(clone_rules());
        }
    }

    Profile {
        default_action: Some(Action::ScmpActErrno),
        default_errno_ret: Some(libc::EPERM as u32),
        arch_map: ARCH_MAP
            .iter()
            .map(|&(arch, subs)| ArchMapEntry {
                architecture: arch.to_string(),
                sub_architectures: strings(subs),
            })
            .collect(),
        syscalls: rules,
        ..Profile::default()
    }
}

/// Without CAP_SYS_ADMIN: `clone` only without namespace flags (flags are argument 0, or
/// argument 1 on s390 where the ABI swaps them), and `clone3` — whose flags live in a
/// struct seccomp cannot inspect — fails with ENOSYS so libc falls back to `clone`.
fn clone_rules() -> Vec<SyscallRule> {
    let no_ns = |index| vec![arg(index, Op::ScmpCmpMaskedEq, CLONE_NAMESPACE_FLAGS, 0)];
    vec![
        SyscallRule {
            args: no_ns(0),
            excludes: Some(Condition {
                caps: strings(&["CAP_SYS_ADMIN"]),
                arches: strings(&["s390", "s390x"]),
                min_kernel: None,
            }),
            ..allow(&["clone"])
        },
        SyscallRule {
            args: no_ns(1),
            comment: Some("s390 parameter ordering for clone is different".to_string()),
            includes: arches(&["s390", "s390x"]),
            excludes: caps(&["CAP_SYS_ADMIN"]),
            ..allow(&["clone"])
        },
        SyscallRule {
            action: Action::ScmpActErrno,
            errno_ret: Some(libc::ENOSYS as u32),
            excludes: caps(&["CAP_SYS_ADMIN"]),
            ..allow(&["clone3"])
        },
    ]
}
