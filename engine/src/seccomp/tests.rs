//! Tests for the seccomp pipeline: profile resolution, parsing, compiling, caching and a
//! real install in a forked child.

use oci_spec::runtime::{LinuxSeccomp, LinuxSeccompAction as Action, LinuxSyscall};

use super::*;
use crate::capabilities;

fn default_caps() -> Vec<String> {
    capabilities::resolve(&[], &[], false).expect("default caps")
}

fn with_caps(extra: &[&str]) -> Vec<String> {
    let add: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    capabilities::resolve(&add, &[], false).expect("caps")
}

fn resolve_for(caps: &[String], kernel: KernelVersion) -> LinuxSeccomp {
    to_oci_for_kernel(&default_profile(), caps, NativeArch::X86_64, Some(kernel))
        .expect("to_oci")
        .expect("profile enables seccomp")
}

const NEW_KERNEL: KernelVersion = KernelVersion::new(6, 18);

/// Rules of the OCI section that mention `name`.
fn rules_for<'a>(s: &'a LinuxSeccomp, name: &str) -> Vec<&'a LinuxSyscall> {
    s.syscalls()
        .iter()
        .flatten()
        .filter(|r| r.names().iter().any(|n| n == name))
        .collect()
}

fn allowed_unconditionally(s: &LinuxSeccomp, name: &str) -> bool {
    rules_for(s, name)
        .iter()
        .any(|r| r.action() == Action::ScmpActAllow && r.args().as_ref().is_none_or(Vec::is_empty))
}

fn allowed_with_args(s: &LinuxSeccomp, name: &str) -> bool {
    rules_for(s, name).iter().any(|r| {
        r.action() == Action::ScmpActAllow && r.args().as_ref().is_some_and(|a| !a.is_empty())
    })
}

#[test]
fn default_profile_shape() {
    let p = default_profile();
    assert_eq!(p.default_action, Some(Action::ScmpActErrno));
    assert_eq!(p.default_errno_ret, Some(libc::EPERM as u32));
    let s = resolve_for(&default_caps(), NEW_KERNEL);
    let arches: Vec<String> = s
        .architectures()
        .iter()
        .flatten()
        .map(|a| a.to_string())
        .collect();
    assert_eq!(
        arches,
        ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    );
    assert_eq!(s.default_errno_ret(), Some(1));
}

#[test]
fn default_caps_allow_ordinary_syscalls() {
    let s = resolve_for(&default_caps(), NEW_KERNEL);
    for name in [
        "read",
        "write",
        "openat",
        "execve",
        "getpid",
        "exit_group",
        "chown32",
    ] {
        assert!(
            allowed_unconditionally(&s, name),
            "{name} should be allowed"
        );
    }
    // x86_64-only groups
    assert!(allowed_unconditionally(&s, "arch_prctl"));
    assert!(allowed_unconditionally(&s, "modify_ldt"));
    assert!(!allowed_unconditionally(&s, "cacheflush"));
    // chroot is gated on CAP_SYS_CHROOT, which is a default capability.
    assert!(allowed_unconditionally(&s, "chroot"));
    // ptrace: allowed on kernels >= 4.8 even without CAP_SYS_PTRACE.
    assert!(allowed_unconditionally(&s, "ptrace"));
}

#[test]
fn default_caps_restrict_clone_socket_personality() {
    let s = resolve_for(&default_caps(), NEW_KERNEL);
    assert!(!allowed_unconditionally(&s, "clone"));
    assert!(allowed_with_args(&s, "clone"));
    let clone = rules_for(&s, "clone");
    assert_eq!(clone.len(), 1, "only the non-s390 clone rule");
    let arg = clone[0].args().as_ref().unwrap()[0];
    assert_eq!(arg.index(), 0);
    assert_eq!(arg.value(), 0x7E02_0000);
    assert_eq!(arg.value_two(), Some(0));

    let clone3 = rules_for(&s, "clone3");
    assert_eq!(clone3.len(), 1);
    assert_eq!(clone3[0].action(), Action::ScmpActErrno);
    assert_eq!(clone3[0].errno_ret(), Some(libc::ENOSYS as u32));

    assert!(!allowed_unconditionally(&s, "socket"));
    assert_eq!(rules_for(&s, "socket").len(), 3);
    assert_eq!(rules_for(&s, "personality").len(), 5);
}

#[test]
fn default_caps_deny_privileged_syscalls() {
    let s = resolve_for(&default_caps(), NEW_KERNEL);
    for name in [
        "mount",
        "umount2",
        "reboot",
        "keyctl",
        "add_key",
        "unshare",
        "setns",
        "init_module",
        "kexec_load",
        "bpf",
        "swapon",
        "acct",
        "settimeofday",
        "open_by_handle_at",
    ] {
        assert!(
            rules_for(&s, name).is_empty(),
            "{name} should be denied by default"
        );
    }
}

#[test]
fn old_kernel_denies_ptrace() {
    let s = resolve_for(&default_caps(), KernelVersion::new(4, 4));
    assert!(rules_for(&s, "ptrace").is_empty());
    let s = resolve_for(&with_caps(&["SYS_PTRACE"]), KernelVersion::new(4, 4));
    assert!(allowed_unconditionally(&s, "ptrace"));
}

#[test]
fn sys_admin_reallows_namespace_and_mount_syscalls() {
    let s = resolve_for(&with_caps(&["CAP_SYS_ADMIN"]), NEW_KERNEL);
    for name in [
        "mount",
        "umount2",
        "unshare",
        "setns",
        "clone",
        "clone3",
        "sethostname",
    ] {
        assert!(allowed_unconditionally(&s, name), "{name} with SYS_ADMIN");
    }
    // The restricted clone rule and the clone3 ENOSYS rule are gone.
    assert!(!allowed_with_args(&s, "clone"));
    assert!(
        rules_for(&s, "clone3")
            .iter()
            .all(|r| r.action() == Action::ScmpActAllow)
    );
    // Still denied: not gated on SYS_ADMIN.
    assert!(rules_for(&s, "reboot").is_empty());
    assert!(rules_for(&s, "init_module").is_empty());
}

#[test]
fn other_caps_reallow_their_groups() {
    let cases: &[(&str, &[&str])] = &[
        ("SYS_BOOT", &["reboot"]),
        (
            "SYS_MODULE",
            &["init_module", "finit_module", "delete_module"],
        ),
        ("SYS_TIME", &["settimeofday", "clock_settime"]),
        ("SYS_PTRACE", &["kcmp", "pidfd_getfd", "process_madvise"]),
        ("SYS_RAWIO", &["iopl", "ioperm"]),
        ("SYS_PACCT", &["acct"]),
        ("DAC_READ_SEARCH", &["open_by_handle_at"]),
        ("SYSLOG", &["syslog"]),
        ("BPF", &["bpf"]),
        ("PERFMON", &["perf_event_open"]),
        ("SYS_NICE", &["mbind"]),
        ("SYS_TTY_CONFIG", &["vhangup"]),
    ];
    for (cap, names) in cases {
        let s = resolve_for(&with_caps(&[cap]), NEW_KERNEL);
        for name in *names {
            assert!(allowed_unconditionally(&s, name), "{name} with {cap}");
        }
    }
    // Dropping SYS_CHROOT removes chroot.
    let caps = capabilities::resolve(&[], &["SYS_CHROOT".to_string()], false).unwrap();
    assert!(rules_for(&resolve_for(&caps, NEW_KERNEL), "chroot").is_empty());
}

#[test]
fn aarch64_and_s390x_resolution() {
    let p = default_profile();
    let s = to_oci_for_kernel(&p, &default_caps(), NativeArch::Aarch64, Some(NEW_KERNEL))
        .unwrap()
        .unwrap();
    let arches: Vec<String> = s
        .architectures()
        .iter()
        .flatten()
        .map(|a| a.to_string())
        .collect();
    assert_eq!(arches, ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]);
    assert!(allowed_unconditionally(&s, "cacheflush"));
    assert!(rules_for(&s, "arch_prctl").is_empty());

    let s = to_oci_for_kernel(&p, &default_caps(), NativeArch::S390x, Some(NEW_KERNEL))
        .unwrap()
        .unwrap();
    let clone = rules_for(&s, "clone");
    assert_eq!(clone.len(), 1);
    assert_eq!(clone[0].args().as_ref().unwrap()[0].index(), 1);
}

#[test]
fn default_profile_json_roundtrip() {
    let p = default_profile();
    let json = serde_json::to_vec(&p).unwrap();
    assert_eq!(parse_profile(&json).unwrap(), p);
}

#[test]
fn parse_minimal_docker_profile() {
    let json = br#"{
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 1,
        "archMap": [
            {"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]},
            {"architecture": "SCMP_ARCH_RISCV64", "subArchitectures": null}
        ],
        "someFutureField": {"x": 1},
        "syscalls": [
            {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW", "args": null,
             "comment": "", "includes": {}, "excludes": {}},
            {"name": "mount", "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
            {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}],
             "includes": {"minKernel": "4.8"}},
            {"names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38,
             "excludes": {"arches": ["s390x"]}}
        ]
    }"#;
    let p = parse_profile(json).unwrap();
    assert_eq!(p.syscalls.len(), 4);
    assert_eq!(p.syscalls[1].name.as_deref(), Some("mount"));
    assert_eq!(
        p.syscalls[2].includes.as_ref().unwrap().min_kernel,
        Some(KernelVersion::new(4, 8))
    );
    let s = to_oci_for_kernel(&p, &default_caps(), NativeArch::X86_64, Some(NEW_KERNEL))
        .unwrap()
        .unwrap();
    let names: Vec<&str> = s
        .syscalls()
        .iter()
        .flatten()
        .flat_map(|r| r.names().iter().map(String::as_str))
        .collect();
    assert_eq!(names, ["read", "write", "clone", "kill"]);
    assert!(compile(&s).unwrap().len() > 4);
}

#[test]
fn parse_errors() {
    assert!(matches!(
        parse_profile(b"{\"defaultAction\": 5}"),
        Err(SeccompError::Decode(_))
    ));
    assert!(parse_profile(br#"{"syscalls":[{"names":["x"],"action":"SCMP_ACT_ALLOW","includes":{"minKernel":"4"}}]}"#).is_err());
    // Empty profile = seccomp disabled.
    let p = parse_profile(b"{}").unwrap();
    assert!(to_oci(&p, &[], NativeArch::X86_64).unwrap().is_none());
    // name and names together are rejected when resolving, as in Docker.
    let p = parse_profile(
        br#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"name":"a","names":["b"],"action":"SCMP_ACT_ERRNO"}]}"#,
    )
    .unwrap();
    assert!(matches!(
        to_oci(&p, &[], NativeArch::X86_64),
        Err(SeccompError::NameAndNames)
    ));
    let p = parse_profile(
        br#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86_64"],
             "archMap":[{"architecture":"SCMP_ARCH_X86_64"}]}"#,
    )
    .unwrap();
    assert!(matches!(
        to_oci(&p, &[], NativeArch::X86_64),
        Err(SeccompError::ArchitecturesAndArchMap)
    ));
}

#[test]
fn kernel_version_parsing() {
    assert_eq!(
        KernelVersion::from_release("6.18.0-1-amd64"),
        Some(KernelVersion::new(6, 18))
    );
    assert_eq!(
        KernelVersion::from_release("3.12-rc5"),
        Some(KernelVersion::new(3, 12))
    );
    assert!(KernelVersion::parse("0.0").is_err());
    assert!(KernelVersion::parse("4.8.1").is_err());
    assert!(KernelVersion::running().is_some());
}

#[test]
fn compile_default_profile() {
    let s = resolve_for(&default_caps(), NEW_KERNEL);
    let prog = compile(&s).unwrap();
    assert!(prog.len() > 50, "program has {} instructions", prog.len());
    assert!(prog.len() <= 4096);
    assert_eq!(prog.flags(), 0);
    let again = BpfProgram::from_bytes(&prog.to_bytes(), 0).unwrap();
    assert_eq!(again, prog);
    // SYS_ADMIN variant also compiles (different rules for clone/clone3).
    let admin = compile(&resolve_for(&with_caps(&["SYS_ADMIN"]), NEW_KERNEL)).unwrap();
    assert_ne!(admin, prog);
}

#[test]
fn compile_cached_hits_and_repairs() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("seccomp");
    let s = resolve_for(&default_caps(), NEW_KERNEL);
    let first = compile_cached(&s, &cache).unwrap();
    let path = cache_path(&cache, &cache_key(&s).unwrap());
    assert!(path.exists());
    let second = compile_cached(&s, &cache).unwrap();
    assert_eq!(first, second);

    // A different section gets a different key.
    let other = resolve_for(&with_caps(&["SYS_ADMIN"]), NEW_KERNEL);
    assert_ne!(cache_key(&other).unwrap(), cache_key(&s).unwrap());

    // A truncated file is detected and rewritten.
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 8]).unwrap();
    assert_eq!(compile_cached(&s, &cache).unwrap(), first);
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
    // No temporary files left behind.
    assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 1);
}

/// Fork, install the default filter in the child, and check real syscall outcomes there.
#[test]
fn installed_default_filter_blocks_unshare() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipping: needs root (CAP_SYS_ADMIN) to install without no_new_privs");
        return;
    }
    let s = resolve_for(&default_caps(), NEW_KERNEL);
    // Compiled before fork: the child of a multi-threaded test harness must not allocate.
    let prog = compile(&s).unwrap();

    // SAFETY: the child runs only raw syscalls and _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let code = child_checks(&prog);
        // SAFETY: leave the child without unwinding into the harness.
        unsafe { libc::_exit(code) };
    }
    let mut status = 0;
    // SAFETY: waiting for our own child.
    let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(waited, pid);
    assert!(libc::WIFEXITED(status), "child died: status {status:#x}");
    assert_eq!(libc::WEXITSTATUS(status), 0, "child check failed");
}

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Exit code 0 = all good; each failure has its own code for diagnosis.
fn child_checks(prog: &BpfProgram) -> i32 {
    if install(prog).is_err() {
        return 10;
    }
    // SAFETY: raw syscalls with integer arguments, in a throwaway child.
    unsafe {
        if libc::getpid() <= 0 {
            return 11;
        }
        if libc::unshare(libc::CLONE_NEWNS) != -1 || errno() != libc::EPERM {
            return 12;
        }
        // keyctl is not in the allow-list at all.
        if libc::syscall(libc::SYS_keyctl, 0, 0, 0, 0, 0) != -1 || errno() != libc::EPERM {
            return 13;
        }
        // clone3 answers ENOSYS so libc falls back to clone.
        if libc::syscall(libc::SYS_clone3, 0, 0) != -1 || errno() != libc::ENOSYS {
            return 14;
        }
        // clone with a namespace flag is refused ...
        let rc = libc::syscall(
            libc::SYS_clone,
            (libc::CLONE_NEWUTS | libc::SIGCHLD) as libc::c_ulong,
            0,
            0,
            0,
            0,
        );
        if rc == 0 {
            libc::_exit(0); // filter failed open: don't run further code in the grandchild
        }
        if rc != -1 || errno() != libc::EPERM {
            return 15;
        }
        // ... plain fork is allowed.
        let child = libc::fork();
        if child == 0 {
            libc::_exit(0);
        }
        if child < 0 {
            return 16;
        }
        let mut st = 0;
        libc::waitpid(child, &mut st, 0);
        // socket(AF_VSOCK) refused, AF_UNIX allowed.
        if libc::socket(libc::AF_VSOCK, libc::SOCK_STREAM, 0) != -1 || errno() != libc::EPERM {
            return 17;
        }
        let fd = libc::socket(libc::AF_UNIX, libc::SOCK_STREAM, 0);
        if fd < 0 {
            return 18;
        }
        libc::close(fd);
    }
    0
}
