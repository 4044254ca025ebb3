//! Docker-equivalent security defaults, checked from inside real containers.

mod common;
use common::Pelagos;

fn cap_eff(p: &Pelagos, extra: &[&str]) -> String {
    let mut args = vec!["run", "--rm"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["busybox", "grep", "CapEff", "/proc/self/status"]);
    p.ok(&args)
        .split_whitespace()
        .nth(1)
        .unwrap_or("")
        .to_string()
}

#[test]
fn default_capabilities_match_docker() {
    let Some(p) = Pelagos::new() else { return };
    assert_eq!(cap_eff(&p, &[]), "00000000a80425fb");
    assert_eq!(cap_eff(&p, &["--cap-drop", "ALL"]), "0000000000000000");
    let with_admin = u64::from_str_radix(&cap_eff(&p, &["--cap-add", "SYS_ADMIN"]), 16).unwrap();
    assert_eq!(with_admin, 0xa80425fb | (1 << 21));
    let no_chown = u64::from_str_radix(&cap_eff(&p, &["--cap-drop", "chown"]), 16).unwrap();
    assert_eq!(no_chown, 0xa80425fb & !1);
    p.fails(
        &["run", "--rm", "--cap-add", "BOGUS", "busybox", "true"],
        125,
        "BOGUS",
    );
}

#[test]
fn seccomp_is_on_by_default_and_configurable() {
    let Some(p) = Pelagos::new() else { return };
    let o = p.sh("grep '^Seccomp:' /proc/self/status");
    assert!(o.stdout.contains("2"), "{o:?}");
    // Blocked by the default profile (and by missing CAP_SYS_ADMIN for mount).
    assert_ne!(p.sh("unshare -m true").code, 0);
    let o = p.sh("mkdir /mnt2; mount -t tmpfs none /mnt2");
    assert_ne!(o.code, 0, "{o:?}");
    let o = p.out(&[
        "run",
        "--rm",
        "--security-opt",
        "seccomp=unconfined",
        "busybox",
        "grep",
        "^Seccomp:",
        "/proc/self/status",
    ]);
    assert!(o.stdout.contains("0"), "{o:?}");
    // A custom Docker-format profile: allow everything but mkdir/mkdirat.
    let prof = p.dir.path().join("profile.json");
    std::fs::write(
        &prof,
        r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir","mkdirat"],"action":"SCMP_ACT_ERRNO"}]}"#,
    )
    .unwrap();
    let sopt = format!("seccomp={}", prof.display());
    let o = p.out(&[
        "run",
        "--rm",
        "--security-opt",
        &sopt,
        "busybox",
        "mkdir",
        "/x",
    ]);
    assert_ne!(o.code, 0, "{o:?}");
    assert!(o.stderr.contains("Operation not permitted"), "{o:?}");
    let o = p.out(&[
        "run",
        "--rm",
        "--security-opt",
        &sopt,
        "busybox",
        "touch",
        "/x",
    ]);
    assert_eq!(o.code, 0, "{o:?}");
}

#[test]
fn no_new_privileges_on_request() {
    let Some(p) = Pelagos::new() else { return };
    assert!(
        p.sh("grep NoNewPrivs /proc/self/status")
            .stdout
            .contains("0")
    );
    let o = p.ok(&[
        "run",
        "--rm",
        "--security-opt",
        "no-new-privileges",
        "busybox",
        "grep",
        "NoNewPrivs",
        "/proc/self/status",
    ]);
    assert!(o.contains('1'), "{o}");
}

#[test]
fn masked_and_readonly_proc_paths() {
    let Some(p) = Pelagos::new() else { return };
    // /proc/interrupts has content on every host; masked it reads as empty.
    assert!(
        !std::fs::read_to_string("/proc/interrupts")
            .unwrap_or_default()
            .is_empty()
    );
    assert_eq!(p.sh("cat /proc/interrupts | wc -c").stdout.trim(), "0");
    assert_eq!(p.sh("cat /proc/keys | wc -c").stdout.trim(), "0");
    assert_eq!(p.sh("ls -A /sys/firmware | wc -l").stdout.trim(), "0");
    let o = p.sh("echo 1 > /proc/sys/kernel/ns_last_pid");
    assert_ne!(o.code, 0, "{o:?}");
    assert!(o.stderr.contains("Read-only"), "{o:?}");
    let o = p.sh("touch /sys/x");
    assert_ne!(o.code, 0, "{o:?}");
}

/// runc CVE-2024-21626: no descriptor of the engine reaches the container, and its cwd
/// is inside the container.
#[test]
fn no_host_fd_leaks_into_containers_or_execs() {
    let Some(p) = Pelagos::new() else { return };
    // `ls` itself holds fd 3 for the directory it lists.
    let o = p.sh("ls /proc/self/fd | tr '\\n' ' '; echo; readlink /proc/self/cwd");
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(common::lines(&o.stdout), vec!["0 1 2 3 ", "/"], "{o:?}");
    let id = p.detached(&[], "sleep 100");
    let o = p.out(&["exec", &id, "sh", "-c", "ls /proc/self/fd | tr '\\n' ' '"]);
    assert_eq!(o.stdout.trim(), "0 1 2 3", "{o:?}");
    // PID 1's descriptors too (stdio only).
    let o = p.out(&["exec", &id, "ls", "/proc/1/fd"]);
    assert_eq!(common::lines(&o.stdout), vec!["0", "1", "2"], "{o:?}");
    p.ok(&["rm", "-f", &id]);
}

/// runc CVE-2019-5736: pelagos code running inside a container (the --init reaper here,
/// and exec's setup) is non-dumpable, so /proc/PID/exe cannot be opened to reach the host
/// binary; the binary is unchanged afterwards.
#[test]
fn host_binary_is_not_reachable_through_proc_exe() {
    let Some(p) = Pelagos::new() else { return };
    let bin = env!("CARGO_BIN_EXE_pelagos");
    let before = std::fs::read(bin).unwrap();
    let o = p.out(&[
        "run",
        "--rm",
        "--init",
        "busybox",
        "sh",
        "-c",
        "cat /proc/1/exe > /dev/null && echo READ; echo x >> /proc/1/exe && echo WROTE; \
         ls -l /proc/1/exe 2>&1; exit 0",
    ]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(!o.stdout.contains("READ"), "read the host binary: {o:?}");
    assert!(!o.stdout.contains("WROTE"), "wrote the host binary: {o:?}");
    assert_eq!(std::fs::read(bin).unwrap(), before, "host binary changed");
}

#[test]
fn device_nodes_and_device_cgroup() {
    let Some(p) = Pelagos::new() else { return };
    let o = p.sh("ls /dev | tr '\\n' ' '");
    for d in [
        "null", "zero", "full", "random", "urandom", "tty", "pts", "shm", "mqueue",
    ] {
        assert!(o.stdout.split(' ').any(|x| x == d), "/dev lacks {d}: {o:?}");
    }
    // CAP_MKNOD lets it make the node; the device cgroup refuses to open it.
    let o = p.sh(
        "mknod /dev/sdx b 8 0 && echo MADE; head -c 1 /dev/sdx > /dev/null && echo OPENED; exit 0",
    );
    assert!(o.stdout.contains("MADE"), "{o:?}");
    assert!(!o.stdout.contains("OPENED"), "{o:?}");
    assert!(o.stderr.contains("Operation not permitted"), "{o:?}");
    assert_eq!(p.sh("head -c 4 /dev/urandom | wc -c").stdout.trim(), "4");
}

#[test]
fn own_namespaces() {
    let Some(p) = Pelagos::new() else { return };
    let o = p.sh("cat /proc/self/cgroup");
    for l in common::lines(&o.stdout) {
        assert!(l.ends_with(":/"), "cgroup namespace not private: {l}");
    }
    assert_eq!(p.sh("echo $$").stdout.trim(), "1");
    // Network `none`: only loopback, and it is up.
    let o = p.sh("ls /sys/class/net | tr '\\n' ' '; cat /sys/class/net/lo/operstate");
    assert!(o.stdout.starts_with("lo "), "{o:?}");
    let host_ns = std::fs::read_link("/proc/self/ns/mnt").unwrap();
    let o = p.sh("readlink /proc/self/ns/mnt");
    assert_ne!(o.stdout.trim(), host_ns.to_string_lossy(), "{o:?}");
}
