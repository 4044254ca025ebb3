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

/// The value of `field` in a /proc/PID/status dump.
fn status_field(status: &str, field: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("no {field} in {status:?}"))
        .trim()
        .to_string()
}

#[test]
fn seccomp_is_on_by_default_and_configurable() {
    let Some(p) = Pelagos::new() else { return };
    let o = p.ok(&["run", "--rm", "busybox", "cat", "/proc/self/status"]);
    assert_eq!(status_field(&o, "Seccomp"), "2", "{o}");
    // Blocked by the default profile (and by missing CAP_SYS_ADMIN for mount).
    let o = p.sh("unshare -m true");
    assert_ne!(o.code, 0, "{o:?}");
    assert!(o.stderr.contains("Operation not permitted"), "{o:?}");
    let o = p.sh("mkdir /mnt2; mount -t tmpfs none /mnt2");
    assert_ne!(o.code, 0, "{o:?}");
    assert_eq!(p.sh("grep -c ' /mnt2 ' /proc/mounts").stdout.trim(), "0");
    let o = p.ok(&[
        "run",
        "--rm",
        "--security-opt",
        "seccomp=unconfined",
        "busybox",
        "cat",
        "/proc/self/status",
    ]);
    assert_eq!(status_field(&o, "Seccomp"), "0", "{o}");
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
    let o = p.ok(&["run", "--rm", "busybox", "cat", "/proc/self/status"]);
    assert_eq!(status_field(&o, "NoNewPrivs"), "0", "{o}");
    let o = p.ok(&[
        "run",
        "--rm",
        "--security-opt",
        "no-new-privileges",
        "busybox",
        "cat",
        "/proc/self/status",
    ]);
    assert_eq!(status_field(&o, "NoNewPrivs"), "1", "{o}");
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

/// runc CVE-2019-5736: pelagos code running inside a container (the --init reaper here)
/// is non-dumpable, so /proc/1/exe cannot be opened to reach the host binary; the binary
/// is unchanged afterwards. (The container is detached and killed by `rm -f`, so the
/// reaper never has to notice an exit; see containers.rs `init_container_exit_never_hangs`, a past bug.)
#[test]
fn host_binary_is_not_reachable_through_proc_exe() {
    let Some(p) = Pelagos::new() else { return };
    let bin = env!("CARGO_BIN_EXE_pelagos");
    let sha = || {
        let o = std::process::Command::new("sha256sum")
            .arg(bin)
            .output()
            .expect("sha256sum");
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    let before = sha();
    assert_eq!(before.len(), 64 + 2 + bin.len() + 1, "{before}");
    let id = p.detached(&["--init"], "exec sleep 1000");
    // PID 1 really is the pelagos binary (so the attack has a target).
    let pid = p.inspect(&id, "{{.State.Pid}}");
    let host_exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    assert_eq!(
        std::fs::canonicalize(host_exe).unwrap(),
        std::fs::canonicalize(bin).unwrap()
    );
    let o = p.out(&[
        "exec",
        &id,
        "sh",
        "-c",
        "cat /proc/1/exe > /dev/null && echo READ; echo x >> /proc/1/exe && echo WROTE; \
         readlink /proc/1/exe && echo LINK; (exec 3</proc/1/exe && echo FD); exit 0",
    ]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(o.stdout, "", "reached the host binary: {o:?}");
    assert!(o.stderr.contains("Permission denied"), "{o:?}");
    assert_eq!(sha(), before, "host binary changed");
    p.ok(&["rm", "-f", &id]);
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
    // A block device that exists on this host: only the device cgroup can refuse it.
    if let Some((major, minor, name)) = host_block_device() {
        let script = format!(
            "mknod /dev/hostdisk b {major} {minor} && echo MADE; \
             head -c 1 /dev/hostdisk > /dev/null && echo OPENED; exit 0"
        );
        let o = p.sh(&script);
        assert_eq!(o.stdout, "MADE\n", "{name} ({major}:{minor}): {o:?}");
        assert!(
            o.stderr.contains("Operation not permitted"),
            "{name}: {o:?}"
        );
    } else {
        println!("no host block device in /proc/partitions: real-device check not run");
    }
}

/// (major, minor, name) of the first whole disk in /proc/partitions.
fn host_block_device() -> Option<(u32, u32, String)> {
    let parts = std::fs::read_to_string("/proc/partitions").ok()?;
    parts.lines().skip(2).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        let (maj, min, name) = (f.first()?.parse().ok()?, f.get(1)?.parse().ok()?, f.get(3)?);
        // Skip loop (7), ram (1) and zram devices: they may have no backing.
        (maj != 7
            && maj != 1
            && !name.starts_with("zram")
            && std::path::Path::new(&format!("/sys/block/{name}")).exists())
        .then(|| (maj, min, name.to_string()))
    })
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
    let o = p.out(&[
        "run",
        "--rm",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "ls /sys/class/net | tr '\\n' ' '; cat /sys/class/net/lo/operstate",
    ]);
    assert_eq!(o.stdout, "lo unknown\n", "{o:?}");
    // The default network is Docker's `bridge`: eth0 besides loopback.
    let o = p.sh("ls /sys/class/net | tr '\\n' ' '");
    assert_eq!(o.stdout, "eth0 lo ", "{o:?}");
    let host_ns = std::fs::read_link("/proc/self/ns/mnt").unwrap();
    let o = p.sh("readlink /proc/self/ns/mnt");
    assert_ne!(o.stdout.trim(), host_ns.to_string_lossy(), "{o:?}");
}
