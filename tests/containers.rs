//! Container lifecycle, naming, logs, exec, config, mounts, volumes and images through the
//! `pelagos` CLI. Root only; see tests/common/mod.rs.

mod common;

use common::{LineReader, Pelagos, lines, poll_until};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const SECS_5: Duration = Duration::from_secs(5);

// ---------------------------------------------------------------- run basics

#[test]
fn run_rm_prints_output_and_leaves_nothing() {
    let Some(p) = Pelagos::new() else { return };
    let o = p.out(&["run", "--rm", "busybox", "echo", "hi"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(o.stdout, "hi\n");
    // The monitor removes a --rm container after it exits; allow it to finish.
    assert!(
        poll_until(SECS_5, || p.all_ids().is_empty()),
        "container still listed: {:?}",
        p.all_ids()
    );
    assert!(p.container_dirs().is_empty(), "{:?}", p.container_dirs());
}

#[test]
fn run_rm_has_removed_the_container_when_it_returns() {
    let Some(p) = Pelagos::new() else { return };
    for i in 0..10 {
        let o = p.out(&["run", "--rm", "busybox", "true"]);
        assert_eq!(o.code, 0, "{o:?}");
        assert_eq!(
            p.all_ids(),
            Vec::<String>::new(),
            "iteration {i}: container still present after `run --rm` returned"
        );
    }
}

#[test]
fn exit_code_propagates() {
    let Some(p) = Pelagos::new() else { return };
    let o = p.sh("exit 3");
    assert_eq!(o.code, 3, "{o:?}");
    // PID 1 ignores signals sent from inside its own namespace (Docker's too), so the
    // signal exit code is checked with a kill from outside.
    let id = p
        .ok(&["run", "-d", "busybox", "sleep", "100"])
        .trim()
        .to_string();
    p.ok(&["kill", "-s", "KILL", &id]);
    assert_eq!(p.ok(&["wait", &id]).trim(), "137");
    p.ok(&["rm", &id]);
}

#[test]
fn command_not_found_is_127_and_not_executable_is_126() {
    let Some(p) = Pelagos::new() else { return };
    p.fails(
        &["run", "--rm", "busybox", "nosuchcmd"],
        127,
        "executable file not found in $PATH",
    );
    p.fails(
        &["run", "--rm", "busybox", "/etc/passwd"],
        126,
        "permission denied",
    );
}

#[test]
fn failed_start_leaves_created_container_without_process_or_cgroup() {
    let Some(p) = Pelagos::new() else { return };
    p.fails(
        &["run", "--name", "broken", "busybox", "nosuchcmd"],
        127,
        "executable file not found in $PATH",
    );
    let id = p.full_id("broken");
    assert_eq!(p.status("broken"), "created");
    assert_eq!(p.inspect("broken", "{{.State.Pid}}"), "0");
    assert!(
        p.inspect("broken", "{{.State.Error}}")
            .contains("executable file not found")
    );
    let st = p.state(&id);
    assert!(st["Cgroup"].is_null(), "cgroup recorded: {st}");
    assert_eq!(st["MonitorPid"], 0, "{st}");
    assert!(
        common::cgroup_dirs_named(&id).is_empty(),
        "cgroup left: {:?}",
        common::cgroup_dirs_named(&id)
    );
    // No process of the host runs from the container's rootfs.
    assert_eq!(p.ok(&["ps", "-q"]), "");
    // It can be removed without -f.
    p.ok(&["rm", "broken"]);
    assert!(p.all_ids().is_empty());
}

// ---------------------------------------------------------------- detached lifecycle

#[test]
fn detached_logs_stop_start_keeps_writable_layer() {
    let Some(p) = Pelagos::new() else { return };
    let id = p.detached(
        &["--name", "life"],
        "echo started; echo err >&2; exec sleep 1000",
    );
    assert!(poll_until(SECS_5, || p.ok(&["logs", "life"]) == "started\n"));
    let o = p.out(&["logs", "life"]);
    assert_eq!(o.stderr, "err\n");
    assert_eq!(p.status(&id), "running");
    p.ok(&["exec", "life", "sh", "-c", "echo kept > /data.txt"]);

    // sleep as PID 1 ignores SIGTERM: stop -t 1 escalates to SIGKILL after one second.
    let t0 = Instant::now();
    assert_eq!(p.ok(&["stop", "-t", "1", "life"]), "life\n");
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(8),
        "{took:?}"
    );
    assert_eq!(p.status("life"), "exited");
    assert_eq!(p.inspect("life", "{{.State.ExitCode}}"), "137");
    assert_eq!(p.ok(&["wait", "life"]), "137\n");

    p.ok(&["start", "life"]);
    assert_eq!(p.status("life"), "running");
    assert_eq!(p.ok(&["exec", "life", "cat", "/data.txt"]), "kept\n");
    assert!(poll_until(SECS_5, || p.ok(&["logs", "life"]) == "started\nstarted\n"));
    p.ok(&["rm", "-f", "life"]);
    assert!(p.all_ids().is_empty());
}

#[test]
fn stop_with_handled_sigterm_exits_with_the_script_code() {
    let Some(p) = Pelagos::new() else { return };
    p.detached(
        &["--name", "graceful"],
        "trap 'exit 0' TERM; echo ready; while true; do sleep 0.05; done",
    );
    assert!(poll_until(SECS_5, || p.ok(&["logs", "graceful"]) == "ready\n"));
    let t0 = Instant::now();
    p.ok(&["stop", "-t", "10", "graceful"]);
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    assert_eq!(p.inspect("graceful", "{{.State.ExitCode}}"), "0");
}

/// Restart policies, applied by the container's monitor: `on-failure:N` gives up after N
/// restarts with the last code, `always` restarts clean exits too (each run logged),
/// `stop` ends it at once even between runs, a later `start` counts from zero; bad
/// policies get Docker's errors and create nothing.
#[test]
fn restart_policies_restart_give_up_and_stop() {
    let Some(p) = Pelagos::new() else { return };
    let id = p.detached(
        &["--name", "flaky", "--restart", "on-failure:2"],
        "echo run; exit 3",
    );
    assert!(
        poll_until(SECS_5, || p.status(&id) == "exited"
            && p.inspect(&id, "{{.RestartCount}}") == "2"),
        "{} after {}",
        p.status(&id),
        p.inspect(&id, "{{.RestartCount}}")
    );
    assert_eq!(p.inspect(&id, "{{.State.ExitCode}}"), "3");
    assert_eq!(p.ok(&["logs", "flaky"]), "run\nrun\nrun\n");
    // Gave up for good: nothing runs it again.
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(p.inspect(&id, "{{.RestartCount}}"), "2");

    // `always` restarts a clean exit too, with growing delays (100, 200, 400 ms ...).
    let id = p.detached(
        &["--name", "looping", "--restart", "always"],
        "echo run; exit 0",
    );
    assert!(poll_until(SECS_5, || p
        .inspect(&id, "{{.RestartCount}}")
        .parse::<u32>()
        .unwrap_or(0)
        >= 3));
    // Stopped between runs or during one: it ends at once and stays down.
    let t0 = Instant::now();
    p.ok(&["stop", "looping"]);
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    assert_eq!(p.status(&id), "exited");
    let count = p.inspect(&id, "{{.RestartCount}}");
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(p.status(&id), "exited");
    assert_eq!(p.inspect(&id, "{{.RestartCount}}"), count);
    // A start is a new beginning: restarts again, counted from zero.
    p.ok(&["start", "looping"]);
    assert!(poll_until(SECS_5, || p.inspect(&id, "{{.RestartCount}}") == "1"));
    p.ok(&["rm", "-f", "looping"]);
    p.ok(&["rm", "flaky"]);

    // A long-running one that is killed by hand is not restarted either.
    let id = p.detached(
        &["--name", "killed", "--restart", "always"],
        "exec sleep 1000",
    );
    p.ok(&["kill", "killed"]);
    assert_eq!(p.status(&id), "exited");
    assert_eq!(p.inspect(&id, "{{.RestartCount}}"), "0");
    p.ok(&["rm", "killed"]);

    p.fails(
        &["run", "--rm", "--restart", "always", "busybox", "true"],
        125,
        "can't create 'AutoRemove' container with restart policy",
    );
    p.fails(
        &["run", "-d", "--restart", "always:3", "busybox", "true"],
        125,
        "restart policy",
    );
    assert!(p.all_ids().is_empty());
}

/// `pelagos build` with no daemon (the context used in place, a Dockerfile from outside
/// it) and `pelagos commit`.
#[test]
fn build_and_commit_without_a_daemon() {
    let Some(p) = Pelagos::new() else { return };
    let ctx = p.dir.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(ctx.join("msg"), "from the context\n").unwrap();
    let df = p.dir.path().join("Dockerfile.outside");
    std::fs::write(
        &df,
        "FROM busybox\nARG WHO\nCOPY msg /msg\nRUN echo \"built for $WHO\" >> /msg\nCMD [\"cat\", \"/msg\"]\n",
    )
    .unwrap();
    let out = p.ok(&[
        "build",
        "-t",
        "clibuilt:1",
        "-f",
        df.to_str().unwrap(),
        "--build-arg",
        "WHO=cli",
        ctx.to_str().unwrap(),
    ]);
    assert!(out.contains("Successfully tagged clibuilt:1"), "{out}");
    assert_eq!(
        p.ok(&["run", "--rm", "clibuilt:1"]),
        "from the context\nbuilt for cli\n"
    );
    p.detached(
        &["--name", "tocommit"],
        "echo changed > /msg; exec sleep 100",
    );
    assert!(poll_until(SECS_5, || p
        .out(&["exec", "tocommit", "cat", "/msg"])
        .stdout
        == "changed\n"));
    let id = p.ok(&["commit", "-c", "ENV C=1", "tocommit", "committed:cli"]);
    assert!(id.trim().starts_with("sha256:"), "{id}");
    assert_eq!(
        p.ok(&[
            "run",
            "--rm",
            "committed:cli",
            "sh",
            "-c",
            "cat /msg; echo $C"
        ]),
        "changed\n1\n"
    );
    p.ok(&["rm", "-f", "tocommit"]);
}

#[test]
fn duplicate_name_is_rejected() {
    let Some(p) = Pelagos::new() else { return };
    p.ok(&["create", "--name", "dup", "busybox", "true"]);
    p.fails(
        &["run", "--name", "dup", "busybox", "true"],
        125,
        "is already in use",
    );
    p.fails(
        &["create", "--name", "dup", "busybox", "true"],
        125,
        "is already in use",
    );
    assert_eq!(p.all_ids().len(), 1);
}

#[test]
fn name_id_and_unique_prefix_resolve() {
    let Some(p) = Pelagos::new() else { return };
    let id = p.ok(&["create", "--name", "resolveme", "busybox", "true"]);
    let id = id.trim();
    assert_eq!(id.len(), 64);
    assert_eq!(p.full_id("resolveme"), id);
    assert_eq!(p.full_id(id), id);
    assert_eq!(p.full_id(&id[..12]), id);
    assert_eq!(p.full_id(&id[..5]), id);
    assert_eq!(p.inspect(id, "{{.Name}}"), "/resolveme");
    p.fails(
        &["inspect", "nosuchthing"],
        1,
        "No such object: nosuchthing",
    );
}

#[test]
fn rename_moves_the_name() {
    let Some(p) = Pelagos::new() else { return };
    let id = p.ok(&["create", "--name", "before", "busybox", "true"]);
    p.ok(&["rename", "before", "after"]);
    assert_eq!(p.full_id("after"), id.trim());
    assert_eq!(p.inspect("after", "{{.Name}}"), "/after");
    p.fails(&["inspect", "before"], 1, "No such object: before");
    // The old name is free again.
    p.ok(&["create", "--name", "before", "busybox", "true"]);
}

#[test]
fn wait_returns_the_exit_code() {
    let Some(p) = Pelagos::new() else { return };
    let id = p.detached(&[], "exit 42");
    assert_eq!(p.ok(&["wait", &id]), "42\n");
    assert_eq!(p.status(&id), "exited");
    assert_eq!(p.inspect(&id, "{{.State.ExitCode}}"), "42");
}

#[test]
fn kill_sends_the_given_signal() {
    let Some(p) = Pelagos::new() else { return };
    p.detached(
        &["--name", "killme"],
        "trap 'echo got usr1; exit 7' USR1; echo ready; while true; do sleep 0.05; done",
    );
    assert!(poll_until(SECS_5, || p.ok(&["logs", "killme"]) == "ready\n"));
    assert_eq!(p.ok(&["kill", "-s", "USR1", "killme"]), "killme\n");
    assert_eq!(p.ok(&["wait", "killme"]), "7\n");
    assert_eq!(p.ok(&["logs", "killme"]), "ready\ngot usr1\n");
    // Killing a stopped container fails.
    p.fails(&["kill", "killme"], 1, "is not running");
}

#[test]
fn pause_freezes_and_unpause_thaws() {
    let Some(p) = Pelagos::new() else { return };
    let id = p.detached(&["--name", "pz"], "exec sleep 1000");
    assert_eq!(p.ok(&["pause", "pz"]), "pz\n");
    assert_eq!(p.status("pz"), "paused");
    let ps = p.ok(&["ps"]);
    assert!(ps.contains("(Paused)"), "{ps}");
    let st = p.state(&id);
    let freezer = if common::is_cgroup_v2(&st) {
        let v = common::read_trim(&common::cgroup_dir(&st, "").join("cgroup.freeze"));
        assert_eq!(v, "1");
        None
    } else {
        Some(common::cgroup_dir(&st, "freezer").join("freezer.state"))
    };
    if let Some(f) = &freezer {
        assert_eq!(common::read_trim(f), "FROZEN");
    }
    p.fails(&["pause", "pz"], 1, "is already paused");
    assert_eq!(p.ok(&["unpause", "pz"]), "pz\n");
    assert_eq!(p.status("pz"), "running");
    if let Some(f) = &freezer {
        assert_eq!(common::read_trim(f), "THAWED");
    }
    assert!(!p.ok(&["ps"]).contains("Paused"));
    assert_eq!(p.ok(&["exec", "pz", "echo", "alive"]), "alive\n");
    p.fails(&["unpause", "pz"], 1, "is not paused");
}

#[test]
fn rm_of_running_container_needs_force() {
    let Some(p) = Pelagos::new() else { return };
    let id = p.detached(&["--name", "busy"], "exec sleep 1000");
    p.fails(&["rm", "busy"], 1, "You cannot remove a running container");
    assert_eq!(p.status(&id), "running");
    assert_eq!(p.ok(&["rm", "-f", "busy"]), "busy\n");
    assert!(p.all_ids().is_empty());
    assert!(p.container_dirs().is_empty());
}

#[test]
fn rm_force_of_auto_remove_container_succeeds() {
    let Some(p) = Pelagos::new() else { return };
    let id = p
        .ok(&[
            "run", "-d", "--rm", "--name", "autorm", "busybox", "sleep", "1000",
        ])
        .trim()
        .to_string();
    assert_eq!(p.ok(&["rm", "-f", "autorm"]), "autorm\n");
    assert!(p.all_ids().is_empty());
    assert!(!p.container_dirs().contains(&id));
}

#[test]
fn container_prune_removes_only_stopped() {
    let Some(p) = Pelagos::new() else { return };
    let running = p.detached(&[], "exec sleep 1000");
    let exited = p.detached(&[], "true");
    p.ok(&["wait", &exited]);
    let created = p.ok(&["create", "busybox", "true"]).trim().to_string();
    let out = p.ok(&["container", "prune", "-f"]);
    assert!(out.contains(&exited), "{out}");
    assert!(out.contains(&created), "{out}");
    assert!(!out.contains(&running), "{out}");
    assert_eq!(p.all_ids(), vec![running]);
}

// ---------------------------------------------------------------- logs

#[test]
fn logs_tail_timestamps_and_since() {
    let Some(p) = Pelagos::new() else { return };
    p.detached(
        &["--name", "lg"],
        "for i in 1 2 3; do echo l$i; done; while [ ! -f /go ]; do sleep 0.02; done; echo l4; echo l5",
    );
    assert!(poll_until(SECS_5, || p.ok(&["logs", "lg"]) == "l1\nl2\nl3\n"));
    let between = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    p.ok(&["exec", "lg", "touch", "/go"]);
    assert_eq!(p.ok(&["wait", "lg"]), "0\n");

    assert_eq!(p.ok(&["logs", "lg"]), "l1\nl2\nl3\nl4\nl5\n");
    assert_eq!(p.ok(&["logs", "--tail", "2", "lg"]), "l4\nl5\n");
    assert_eq!(p.ok(&["logs", "-n", "0", "lg"]), "");

    let ts = p.ok(&["logs", "-t", "lg"]);
    let ts_lines = lines(&ts);
    assert_eq!(ts_lines.len(), 5, "{ts}");
    for (i, l) in ts_lines.iter().enumerate() {
        let (stamp, text) = l.split_once(' ').expect("timestamp then text");
        assert_eq!(text, format!("l{}", i + 1));
        assert_rfc3339_nanos(stamp);
    }

    let since = format!("{}.{:09}", between.as_secs(), between.subsec_nanos());
    assert_eq!(p.ok(&["logs", "--since", &since, "lg"]), "l4\nl5\n");
    assert_eq!(
        p.ok(&["logs", "--since", "1h", "lg"]),
        "l1\nl2\nl3\nl4\nl5\n"
    );
    // --since accepts an RFC 3339 stamp as printed by -t: from the 4th line on.
    let fourth = ts_lines[3].split_once(' ').unwrap().0;
    assert_eq!(p.ok(&["logs", "--since", fourth, "lg"]), "l4\nl5\n");
}

/// `2026-01-02T03:04:05.123456789Z`
fn assert_rfc3339_nanos(s: &str) {
    let b = s.as_bytes();
    let ok = b.len() == 30
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'.',
            29 => *c == b'Z',
            _ => c.is_ascii_digit(),
        });
    assert!(ok, "not an RFC 3339 nanosecond timestamp: {s:?}");
}

#[test]
fn logs_follow_streams_until_exit() {
    let Some(p) = Pelagos::new() else { return };
    p.detached(
        &["--name", "fol"],
        "echo a; while [ ! -f /go ]; do sleep 0.02; done; echo b; echo c",
    );
    assert!(poll_until(SECS_5, || p.ok(&["logs", "fol"]) == "a\n"));
    let mut child = p.spawn(&["logs", "-f", "fol"]);
    let mut r = LineReader::new(child.stdout.take().unwrap());
    assert!(
        r.wait_for("a", SECS_5),
        "follow did not print a: {:?}",
        r.seen
    );
    // Still following: the container has not exited.
    assert!(child.try_wait().unwrap().is_none());
    p.ok(&["exec", "fol", "touch", "/go"]);
    assert!(r.wait_for("c", SECS_5), "{:?}", r.seen);
    assert!(
        r.drain(SECS_5),
        "logs -f did not end after the container exited"
    );
    let status = child.wait().unwrap();
    assert!(status.success());
    assert_eq!(r.seen, ["a", "b", "c"]);
}

#[test]
fn logs_burst_is_lossless() {
    // 25M lines of `seq` = 188,888,898 bytes, ~30 s in a debug build.
    const N: u64 = 25_000_000;
    let Some(p) = Pelagos::new() else { return };
    let id = p
        .ok(&["run", "-d", "busybox", "seq", "1", &N.to_string()])
        .trim()
        .to_string();
    assert_eq!(p.ok(&["wait", &id]), "0\n");
    let (count, last, code) = p.count_log_lines(&["logs", &id]);
    assert_eq!(code, 0);
    assert_eq!(count, N);
    assert_eq!(last, N.to_string());
    p.ok(&["rm", &id]);
}

// ---------------------------------------------------------------- config

#[test]
fn env_precedence_workdir_and_entrypoint() {
    let Some(p) = Pelagos::with_config() else {
        return;
    };
    let img = "pelagos-test/config";
    let sh = |extra: &[&str], script: &str| {
        let mut a = vec!["run", "--rm", "--entrypoint", "sh"];
        a.extend_from_slice(extra);
        a.extend_from_slice(&[img, "-c", script]);
        p.ok(&a)
    };
    assert_eq!(sh(&[], "echo $FOO"), "bar\n");
    assert_eq!(sh(&["-e", "FOO=x"], "echo $FOO"), "x\n");
    assert_eq!(sh(&["-e", "NEW=1"], "echo $FOO$NEW"), "bar1\n");
    assert_eq!(
        p.ok(&["run", "--rm", "-w", "/new/dir", "busybox", "pwd"]),
        "/new/dir\n"
    );
    assert_eq!(
        p.ok(&[
            "run", "--rm", "-w", "/new/dir", "busybox", "stat", "-c", "%F", "."
        ]),
        "directory\n"
    );
    assert_eq!(
        p.ok(&["run", "--rm", "--entrypoint", "echo", "busybox", "a", "b"]),
        "a b\n"
    );
}

#[test]
fn image_defaults_apply() {
    let Some(p) = Pelagos::with_config() else {
        return;
    };
    let img = "pelagos-test/config";
    // Entrypoint ["echo","entrypoint"] + Cmd.
    assert_eq!(p.ok(&["run", "--rm", img]), "entrypoint default-cmd\n");
    // Args replace Cmd, not the entrypoint.
    assert_eq!(p.ok(&["run", "--rm", img, "x", "y"]), "entrypoint x y\n");
    let o = p.ok(&[
        "run",
        "--rm",
        "--entrypoint",
        "sh",
        img,
        "-c",
        "pwd; id -u; id -g",
    ]);
    assert_eq!(o, "/srv\n1000\n1000\n");
    // The whiteout of /etc/motd hides the lower file.
    p.fails(
        &["run", "--rm", "--entrypoint", "cat", img, "/etc/motd"],
        1,
        "No such file",
    );
}

#[test]
fn user_app_has_supplementary_groups() {
    let Some(p) = Pelagos::new() else { return };
    assert_eq!(
        p.ok(&["run", "--rm", "-u", "app", "busybox", "id"]),
        "uid=1000(app) gid=1000(app) groups=2000(extra)\n"
    );
    assert_eq!(
        p.ok(&[
            "run",
            "--rm",
            "-u",
            "1000:2000",
            "busybox",
            "sh",
            "-c",
            "id -u; id -g"
        ]),
        "1000\n2000\n"
    );
}

#[test]
fn unknown_user_fails_and_leaves_nothing_running() {
    let Some(p) = Pelagos::new() else { return };
    p.fails(
        &[
            "run",
            "-u",
            "nosuchuser",
            "--name",
            "nouser",
            "busybox",
            "id",
        ],
        125,
        "unable to find user nosuchuser",
    );
    assert_eq!(p.ok(&["ps", "-q"]), "");
    assert_eq!(p.status("nouser"), "created");
    let id = p.full_id("nouser");
    assert!(common::cgroup_dirs_named(&id).is_empty());
}

#[test]
fn unknown_user_with_rm_removes_the_container() {
    let Some(p) = Pelagos::new() else { return };
    p.fails(
        &["run", "--rm", "-u", "nosuchuser", "busybox", "id"],
        125,
        "unable to find user nosuchuser",
    );
    assert_eq!(p.all_ids(), Vec::<String>::new());
}

#[test]
fn hostname_and_extra_hosts() {
    let Some(p) = Pelagos::new() else { return };
    let o = p.ok(&[
        "run",
        "--rm",
        "--hostname",
        "myhost",
        "--add-host",
        "a.b:10.1.2.3",
        "busybox",
        "sh",
        "-c",
        "hostname; cat /etc/hostname; grep -v '^#' /etc/hosts",
    ]);
    let l = lines(&o);
    assert_eq!(&l[..2], ["myhost", "myhost"]);
    assert!(l.contains(&"127.0.0.1\tlocalhost"), "{o}");
    assert!(l.contains(&"10.1.2.3\ta.b"), "{o}");
    // Default hostname: the short ID.
    let id = p.ok(&["create", "busybox", "hostname"]).trim().to_string();
    p.ok(&["start", &id]);
    p.ok(&["wait", &id]);
    assert_eq!(p.ok(&["logs", &id]), format!("{}\n", &id[..12]));
}

#[test]
fn read_only_rootfs_with_tmpfs() {
    let Some(p) = Pelagos::new() else { return };
    p.fails(
        &["run", "--rm", "--read-only", "busybox", "touch", "/x"],
        1,
        "Read-only file system",
    );
    assert_eq!(
        p.ok(&[
            "run",
            "--rm",
            "--read-only",
            "--tmpfs",
            "/tmp",
            "busybox",
            "sh",
            "-c",
            "touch /tmp/x && echo ok && grep ' /tmp ' /proc/mounts | cut -d' ' -f3"
        ]),
        "ok\ntmpfs\n"
    );
    // Without --read-only the root is writable.
    assert_eq!(p.sh("touch /x && echo ok").stdout, "ok\n");
}

// ---------------------------------------------------------------- mounts and volumes

#[test]
fn bind_mounts_rw_and_ro() {
    let Some(p) = Pelagos::new() else { return };
    let host = p.dir.path().join("share");
    std::fs::create_dir(&host).unwrap();
    std::fs::write(host.join("in"), "from host\n").unwrap();
    let rw = format!("{}:/h", host.display());
    assert_eq!(
        p.ok(&[
            "run",
            "--rm",
            "-v",
            &rw,
            "busybox",
            "sh",
            "-c",
            "cat /h/in; echo from c > /h/out"
        ]),
        "from host\n"
    );
    assert_eq!(
        std::fs::read_to_string(host.join("out")).unwrap(),
        "from c\n"
    );
    let ro = format!("{}:/h:ro", host.display());
    p.fails(
        &[
            "run",
            "--rm",
            "-v",
            &ro,
            "busybox",
            "sh",
            "-c",
            "cat /h/in; echo x > /h/out2",
        ],
        1,
        "Read-only file system",
    );
    assert!(!host.join("out2").exists());
    let mnt = format!("type=bind,source={},target=/m,readonly", host.display());
    assert_eq!(
        p.ok(&["run", "--rm", "--mount", &mnt, "busybox", "cat", "/m/in"]),
        "from host\n"
    );
}

#[test]
fn bind_mount_of_missing_source_fails() {
    let Some(p) = Pelagos::new() else { return };
    p.fails(
        &[
            "run",
            "--rm",
            "--mount",
            "type=bind,source=/nonexistent-pelagos-src,target=/x",
            "busybox",
            "true",
        ],
        125,
        "bind source path does not exist",
    );
    assert!(p.all_ids().is_empty());
}

#[test]
fn named_volume_is_prefilled_and_persists() {
    let Some(p) = Pelagos::with_config() else {
        return;
    };
    let o = p.ok(&[
        "run",
        "--rm",
        "-v",
        "v1:/data",
        "--entrypoint",
        "sh",
        "pelagos-test/config",
        "-c",
        "cat /data/seed.txt; echo more > /data/more",
    ]);
    assert_eq!(o, "seed\n");
    assert_eq!(
        p.ok(&[
            "run",
            "--rm",
            "-v",
            "v1:/data",
            "busybox",
            "sh",
            "-c",
            "ls /data; cat /data/more"
        ]),
        "more\nseed.txt\nmore\n"
    );
    assert_eq!(p.ok(&["volume", "ls", "-q"]), "v1\n");
    let mp = p.ok(&["volume", "inspect", "v1"]);
    let v: serde_json::Value = serde_json::from_str(&mp).unwrap();
    let dir = v[0]["Mountpoint"].as_str().unwrap();
    assert_eq!(
        std::fs::read_to_string(format!("{dir}/more")).unwrap(),
        "more\n"
    );
}

#[test]
fn anonymous_volumes_follow_rm_flags() {
    let Some(p) = Pelagos::with_config() else {
        return;
    };
    let img = "pelagos-test/config";
    // Kept without --rm; the image's /data was copied in.
    let id = p
        .ok(&["create", "--entrypoint", "true", img])
        .trim()
        .to_string();
    p.ok(&["start", &id]);
    p.ok(&["wait", &id]);
    let vols = p.ok(&["volume", "ls", "-q"]);
    let vols = lines(&vols);
    assert_eq!(vols.len(), 1, "{vols:?}");
    assert_eq!(vols[0].len(), 64, "anonymous volume name: {vols:?}");
    p.ok(&["rm", "-v", &id]);
    assert_eq!(p.ok(&["volume", "ls", "-q"]), "");

    // Removed with --rm once the container is gone.
    p.ok(&["run", "--rm", "--entrypoint", "true", img]);
    assert!(poll_until(SECS_5, || p.all_ids().is_empty()));
    assert_eq!(p.ok(&["volume", "ls", "-q"]), "");
}

#[test]
fn volume_commands() {
    let Some(p) = Pelagos::new() else { return };
    assert_eq!(p.ok(&["volume", "create", "vv"]), "vv\n");
    assert_eq!(p.ok(&["volume", "ls", "-q"]), "vv\n");
    let v: serde_json::Value = serde_json::from_str(&p.ok(&["volume", "inspect", "vv"])).unwrap();
    assert_eq!(v[0]["Name"], "vv");
    assert_eq!(v[0]["Driver"], "local");
    assert!(std::path::Path::new(v[0]["Mountpoint"].as_str().unwrap()).is_dir());
    p.detached(&["--name", "user", "-v", "vv:/v"], "exec sleep 1000");
    p.fails(&["volume", "rm", "vv"], 1, "volume is in use");
    assert_eq!(p.ok(&["volume", "ls", "-q"]), "vv\n");
    p.ok(&["rm", "-f", "user"]);
    assert_eq!(p.ok(&["volume", "rm", "vv"]), "vv\n");
    assert_eq!(p.ok(&["volume", "ls", "-q"]), "");
    p.fails(&["volume", "inspect", "vv"], 1, "vv");
}

// ---------------------------------------------------------------- exec

#[test]
fn exec_output_code_user_env_workdir() {
    let Some(p) = Pelagos::new() else { return };
    p.detached(&["--name", "ex", "-e", "BASE=1"], "exec sleep 1000");
    assert_eq!(p.ok(&["exec", "ex", "echo", "hi"]), "hi\n");
    let o = p.out(&["exec", "ex", "sh", "-c", "echo out; echo err >&2; exit 5"]);
    assert_eq!(
        (o.code, o.stdout.as_str(), o.stderr.as_str()),
        (5, "out\n", "err\n")
    );
    assert_eq!(
        p.ok(&["exec", "-u", "app", "ex", "id"]),
        "uid=1000(app) gid=1000(app) groups=2000(extra)\n"
    );
    assert_eq!(
        p.ok(&["exec", "-e", "A=b", "ex", "sh", "-c", "echo $A$BASE"]),
        "b1\n"
    );
    assert_eq!(p.ok(&["exec", "-w", "/tmp", "ex", "pwd"]), "/tmp\n");
    p.fails(
        &["exec", "ex", "nosuchcmd"],
        127,
        "executable file not found in $PATH",
    );
    // The exec'd process is in the container's pid namespace.
    let o = p.ok(&[
        "exec",
        "ex",
        "sh",
        "-c",
        "cat /proc/1/cmdline | tr '\\0' ' '",
    ]);
    assert_eq!(o, "sleep 1000 ");
}

#[test]
fn exec_into_stopped_container_fails() {
    let Some(p) = Pelagos::new() else { return };
    let id = p.detached(&[], "true");
    p.ok(&["wait", &id]);
    p.fails(&["exec", &id, "true"], 1, "is not running");
    let created = p.ok(&["create", "busybox", "true"]).trim().to_string();
    p.fails(&["exec", &created, "true"], 1, "is not running");
}

// ---------------------------------------------------------------- stdio

#[test]
fn stdin_is_piped_only_with_i() {
    let Some(p) = Pelagos::new() else { return };
    let o = p.run_input(&["run", "-i", "--rm", "busybox", "cat"], Some(b"x\ny\n"));
    assert!(o.status.success(), "{o:?}");
    assert_eq!(String::from_utf8_lossy(&o.stdout), "x\ny\n");
    let o = p.run_input(&["run", "--rm", "busybox", "cat"], Some(b"x\n"));
    assert!(o.status.success(), "{o:?}");
    assert_eq!(String::from_utf8_lossy(&o.stdout), "");
}

#[test]
fn tty_allocates_a_pty() {
    let Some(p) = Pelagos::new() else { return };
    let script = format!(
        "PELAGOS_DATA_ROOT={} PELAGOS_RUN_ROOT={} PELAGOS_CONFIG={} {}={} {} run --rm -t busybox tty",
        p.data.display(),
        p.run_root.display(),
        p.config_file().display(),
        common::RUN_TOKEN_VAR,
        common::run_token(),
        common::BIN
    );
    let o = std::process::Command::new("script")
        .args(["-qec", &script, "/dev/null"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("script(1) from util-linux");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{o:?}");
    assert_eq!(out.trim(), "/dev/pts/0");
    // Without -t there is no terminal.
    let o = p.out(&["run", "--rm", "busybox", "tty"]);
    assert_eq!((o.code, o.stdout.as_str()), (1, "not a tty\n"));
}

// ---------------------------------------------------------------- init, top, stats

#[test]
fn init_is_pid1_and_reaps_orphans() {
    let Some(p) = Pelagos::new() else { return };
    let ps = |name: &str| p.ok(&["exec", name, "ps", "-o", "pid,stat,comm"]);
    let zombies = |name: &str| {
        ps(name)
            .lines()
            .filter(|l| {
                l.split_whitespace()
                    .nth(1)
                    .is_some_and(|s| s.starts_with('Z'))
            })
            .count()
    };
    // An orphan is reparented to PID 1: without --init, `sleep` (PID 1) never reaps it.
    let script = "(sleep 0.1 &); echo forked; exec sleep 1000";
    p.detached(&["--name", "noinit"], script);
    assert!(
        poll_until(SECS_5, || zombies("noinit") == 1),
        "control: no zombie without --init:\n{}",
        ps("noinit")
    );
    let first = ps("noinit");
    assert!(
        first
            .lines()
            .any(|l| l.split_whitespace().eq(["1", "S", "sleep"])),
        "{first}"
    );
    p.detached(&["--name", "withinit", "--init"], script);
    assert!(poll_until(SECS_5, || p.ok(&["logs", "withinit"]) == "forked\n"));
    let out = ps("withinit");
    // The command is PID 2, PID 1 is the reaper.
    assert!(
        out.lines()
            .any(|l| l.split_whitespace().eq(["2", "S", "sleep"])),
        "{out}"
    );
    assert!(
        !out.lines()
            .any(|l| l.split_whitespace().next() == Some("1") && l.ends_with("sleep")),
        "{out}"
    );
    // Over the time the control needed to show a zombie (orphan lives 0.1 s), none stays.
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_millis(600) {
        assert_eq!(
            zombies("withinit"),
            0,
            "zombie under --init:\n{}",
            ps("withinit")
        );
    }
    // The reaper forwards signals: SIGTERM reaches sleep (PID 2), which dies of it, and
    // the reaper exits with the command's status.
    let t0 = Instant::now();
    p.ok(&["stop", "-t", "10", "withinit"]);
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    assert_eq!(p.inspect("withinit", "{{.State.ExitCode}}"), "143");
}

// Regression test: the reaper once missed its child's exit now and then (the command a
// zombie, the reaper asleep in rt_sigtimedwait, `run` hanging forever), ~1 run in 50-100.
#[test]
fn init_container_exit_never_hangs() {
    let Some(p) = Pelagos::new() else { return };
    for i in 0..150 {
        let child = p.spawn(&["run", "--rm", "--init", "busybox", "sh", "-c", "echo $$"]);
        let o = common::wait_output(
            child,
            Duration::from_secs(10),
            &["run --init", &i.to_string()],
        );
        assert_eq!(String::from_utf8_lossy(&o.stdout), "2\n", "iteration {i}");
    }
}

#[test]
fn top_and_stats_show_the_container() {
    let Some(p) = Pelagos::new() else { return };
    let id = p.detached(&["--name", "tops"], "exec sleep 1000");
    let pid = p.inspect("tops", "{{.State.Pid}}");
    let top = p.ok(&["top", "tops"]);
    assert!(
        top.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() >= 5 && f[1] == pid && f[4..] == ["sleep", "1000"]
        }),
        "pid {pid} not in top:\n{top}"
    );
    let stats = p.ok(&["stats", "--no-stream"]);
    let row = stats
        .lines()
        .find(|l| l.starts_with(&id[..12]))
        .unwrap_or_else(|| panic!("{stats}"));
    assert!(row.contains("tops"), "{row}");
    assert!(row.contains("unlimited"), "{row}");
    p.ok(&["stop", "-t", "0", "tops"]);
    p.fails(&["top", "tops"], 1, "is not running");
}

// ---------------------------------------------------------------- invalid input, images

/// Runs the CLI with stdout on a pipe whose reader is already gone (`pelagos ps | head -0`).
fn run_into_closed_pipe(p: &Pelagos, args: &[&str]) -> common::Out {
    use std::os::fd::{FromRawFd, OwnedFd};
    let mut fds = [0; 2];
    // SAFETY: pipe2 fills two fresh descriptors we then own.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: both are ours; the read end is dropped at once.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(r);
    let o = p
        .cmd(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::from(w))
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    common::Out {
        code: o.status.code().unwrap_or(-1),
        stdout: String::new(),
        stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
    }
}

#[test]
fn closed_stdout_pipe_is_not_a_panic() {
    let Some(p) = Pelagos::new() else { return };
    let id = p.ok(&["create", "busybox", "true"]).trim().to_string();
    for args in [
        vec!["ps", "-a"],
        vec!["images"],
        vec!["inspect", &id],
        vec!["logs", &id],
    ] {
        let o = run_into_closed_pipe(&p, &args);
        assert!(
            !o.stderr.contains("panicked") && o.code != 101,
            "`pelagos {}` into a closed pipe: {o:?}",
            args.join(" ")
        );
    }
}

#[test]
fn invalid_memory_creates_nothing() {
    let Some(p) = Pelagos::new() else { return };
    p.fails(
        &["run", "-m", "abc", "busybox", "true"],
        125,
        "invalid size",
    );
    p.fails(
        &["create", "-m", "abc", "busybox", "true"],
        125,
        "invalid size",
    );
    assert!(p.all_ids().is_empty());
    assert!(p.container_dirs().is_empty());
}

#[test]
fn load_of_garbage_fails_cleanly() {
    let Some(p) = Pelagos::new() else { return };
    let before = p.ok(&["images", "-q"]);
    let garbage = p.dir.path().join("garbage.tar");
    let bytes: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&garbage, bytes).unwrap();
    let o = p.out(&["load", "-i", garbage.to_str().unwrap()]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stderr.starts_with("pelagos: error:"), "{}", o.stderr);
    assert!(!o.stderr.contains("panicked"), "{}", o.stderr);
    assert_eq!(p.ok(&["images", "-q"]), before);
}

#[test]
fn load_of_missing_file_exits_1() {
    let Some(p) = Pelagos::new() else { return };
    p.fails(&["load", "-i", "/nonexistent.tar"], 1, "nonexistent.tar");
}

#[test]
fn images_tag_rmi() {
    let Some(p) = Pelagos::new() else { return };
    let id = p.ok(&["images", "-q"]);
    assert_eq!(lines(&id).len(), 1);
    let listing = p.ok(&["images"]);
    assert!(
        listing
            .lines()
            .any(|l| l.split_whitespace().take(2).eq(["busybox", "latest"])),
        "{listing}"
    );
    p.ok(&["tag", "busybox", "mytag:v1"]);
    let listing = p.ok(&["images"]);
    let short = id.trim();
    assert!(
        listing
            .lines()
            .any(|l| l.split_whitespace().take(3).eq(["mytag", "v1", short])),
        "{listing}"
    );
    let cid = p.ok(&["create", "mytag:v1", "true"]).trim().to_string();
    // Another tag remains: rmi only untags.
    assert!(p.ok(&["rmi", "mytag:v1"]).contains("Untagged: mytag:v1"));
    // The last reference of an image used by a container needs -f.
    p.fails(&["rmi", "busybox"], 1, "must force");
    assert_eq!(lines(&p.ok(&["images", "-q"])).len(), 1);
    p.ok(&["rmi", "-f", "busybox"]);
    assert!(!p.ok(&["images"]).contains("busybox"));
    p.ok(&["rm", &cid]);
    p.fails(&["rmi", "nosuch:tag"], 1, "No such image");
}
