//! Resource limits really apply (cgroup v2, or v1 on hybrid hosts like the CI VMs).

mod common;
use common::{Pelagos, cgroup_dir, cgroup_paths, is_cgroup_v2, read_trim};

#[test]
fn memory_hog_is_oom_killed() {
    let Some(p) = Pelagos::new() else { return };
    let o = p.out(&[
        "run",
        "--name",
        "hog",
        "-m",
        "16m",
        "busybox",
        "sh",
        "-c",
        "x=$(head -c 100000000 /dev/zero | tr '\\0' a); echo survived",
    ]);
    assert_eq!(o.code, 137, "{o:?}");
    assert!(!o.stdout.contains("survived"), "{o:?}");
    assert_eq!(p.inspect("hog", "{{.State.OOMKilled}}"), "true");
    assert_eq!(p.inspect("hog", "{{.State.ExitCode}}"), "137");
    p.ok(&["rm", "hog"]);
}

#[test]
fn pids_limit_stops_a_fork_bomb() {
    let Some(p) = Pelagos::new() else { return };
    let script = "for i in $(seq 30); do sleep 5 & done; echo all-started";
    let o = p.out(&[
        "run",
        "--rm",
        "--pids-limit",
        "10",
        "busybox",
        "sh",
        "-c",
        script,
    ]);
    assert_ne!(o.code, 0, "{o:?}");
    assert!(!o.stdout.contains("all-started"), "{o:?}");
    assert!(o.stderr.contains("can't fork"), "{o:?}");
    // The same script fits under a higher limit: the limit, nothing else, stopped it.
    let quick = "for i in $(seq 30); do sleep 0.1 & done; wait; echo all-started";
    let o = p.out(&[
        "run",
        "--rm",
        "--pids-limit",
        "64",
        "busybox",
        "sh",
        "-c",
        quick,
    ]);
    assert!(o.stdout.contains("all-started"), "{o:?}");
}

#[test]
fn cpu_memory_and_pids_limits_reach_the_cgroup() {
    let Some(p) = Pelagos::new() else { return };
    let id = p.detached(
        &[
            "--cpus",
            "0.5",
            "--cpu-shares",
            "512",
            "--cpuset-cpus",
            "0",
            "-m",
            "64m",
            "--memory-swap",
            "128m",
            "--pids-limit",
            "50",
        ],
        "sleep 100",
    );
    let st = p.state(&id);
    if is_cgroup_v2(&st) {
        let d = cgroup_dir(&st, "");
        assert_eq!(read_trim(&d.join("cpu.max")), "50000 100000");
        assert_eq!(read_trim(&d.join("memory.max")), (64u64 << 20).to_string());
        assert_eq!(
            read_trim(&d.join("memory.swap.max")),
            (64u64 << 20).to_string()
        );
        assert_eq!(read_trim(&d.join("pids.max")), "50");
        assert_eq!(read_trim(&d.join("cpuset.cpus")), "0");
    } else {
        let cpu = cgroup_dir(&st, "cpu");
        assert_eq!(read_trim(&cpu.join("cpu.cfs_quota_us")), "50000");
        assert_eq!(read_trim(&cpu.join("cpu.cfs_period_us")), "100000");
        assert_eq!(read_trim(&cpu.join("cpu.shares")), "512");
        let mem = cgroup_dir(&st, "memory");
        assert_eq!(
            read_trim(&mem.join("memory.limit_in_bytes")),
            (64u64 << 20).to_string()
        );
        if mem.join("memory.memsw.limit_in_bytes").exists() {
            assert_eq!(
                read_trim(&mem.join("memory.memsw.limit_in_bytes")),
                (128u64 << 20).to_string()
            );
        }
        assert_eq!(read_trim(&cgroup_dir(&st, "pids").join("pids.max")), "50");
        assert_eq!(
            read_trim(&cgroup_dir(&st, "cpuset").join("cpuset.cpus")),
            "0"
        );
        // Our container's processes are the ones in it.
        let procs = read_trim(&cgroup_dir(&st, "pids").join("cgroup.procs"));
        assert_eq!(procs, st["Pid"].to_string());
    }
    let stats = p.ok(&["stats", "--no-stream", &id]);
    assert!(stats.contains("64.00MiB"), "{stats}");
    let dirs = cgroup_paths(&st);
    assert!(!dirs.is_empty());
    p.ok(&["rm", "-f", &id]);
    for d in dirs {
        assert!(!d.exists(), "cgroup {} left behind", d.display());
    }
}

#[test]
fn cgroup_is_removed_when_the_container_exits() {
    let Some(p) = Pelagos::new() else { return };
    let id = p.detached(&[], "sleep 0.2");
    let dirs = cgroup_paths(&p.state(&id));
    assert!(!dirs.is_empty());
    assert_eq!(p.ok(&["wait", &id]).trim(), "0");
    for d in dirs {
        assert!(!d.exists(), "cgroup {} left behind", d.display());
    }
    p.ok(&["rm", &id]);
}

#[test]
fn exec_processes_join_every_cgroup_of_the_container() {
    let Some(p) = Pelagos::new() else { return };
    p.ok(&["run", "-d", "--name", "cg", "busybox", "sleep", "60"]);
    p.ok(&["exec", "-d", "cg", "sleep", "31"]);
    let init = p.inspect("cg", "{{.State.Pid}}");
    let init: i32 = init.trim().parse().unwrap();
    let find = || {
        common::all_pids().into_iter().find(|pid| {
            common::proc_strings(*pid, "cmdline") == ["sleep", "31"]
                && common::proc_ppid_state(*pid).is_some_and(|(_, s)| s != 'Z')
        })
    };
    let mut exec_pid = None;
    common::poll_until(std::time::Duration::from_secs(5), || {
        exec_pid = find();
        exec_pid.is_some()
    });
    let exec_pid = exec_pid.expect("exec'd process");
    // The same cgroup in every hierarchy (v1 joins through `tasks`, v2 `cgroup.procs`).
    let cg = |pid: i32| std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert_eq!(cg(exec_pid), cg(init));
    p.ok(&["rm", "-f", "cg"]);
}
