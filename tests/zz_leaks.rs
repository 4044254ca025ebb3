//! Runs last (cargo runs integration test binaries in name order): after the whole suite,
//! no mount, monitor process, container cgroup, network interface, nftables table or DNS
//! server of this run may remain.
//!
//! On a CI machine nothing else runs, but a shared development machine may run another
//! copy of the suite at the same time, so leftovers are attributed: this run's temp dirs
//! and CLI environment carry `common::run_token()`. Anything nobody can own any more (a
//! container cgroup with no live monitor behind it) is a leak whoever made it.

mod common;

use common::{all_pids, proc_ppid_state, proc_strings, run_token};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Whether `pid` is a live (non-zombie) pelagos container monitor: exec'd as
/// `__monitor`, or forked by a daemon's spawner; both name themselves.
fn is_monitor(pid: i32) -> bool {
    proc_ppid_state(pid).is_some_and(|(_, st)| st != 'Z')
        && std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .is_ok_and(|c| c.trim_end() == "pelagos-monitor")
}

/// Live spawners of this run, and exec helpers they forked: every daemon of the suite has
/// stopped, a spawner ends with its daemon, and a helper with its exec.
fn our_spawners(token: &str) -> Vec<String> {
    all_pids()
        .into_iter()
        .filter(|p| {
            proc_ppid_state(*p).is_some_and(|(_, s)| s != 'Z')
                && proc_strings(*p, "cmdline").iter().any(|a| a == "__spawner")
                && std::fs::read_to_string(format!("/proc/{p}/comm"))
                    .is_ok_and(|c| c.trim_end() != "pelagos-monitor")
                && monitor_is_ours(*p, token)
        })
        .map(|p| format!("{p}: {}", proc_strings(p, "environ").join(" ")))
        .collect()
}

/// Whether a monitor belongs to this test run (by the environment it inherited).
fn monitor_is_ours(pid: i32, token: &str) -> bool {
    let want = format!("{}={token}", common::RUN_TOKEN_VAR);
    let env = proc_strings(pid, "environ");
    env.contains(&want)
        || env.iter().any(|e| {
            e.strip_prefix("PELAGOS_DATA_ROOT=")
                .is_some_and(|d| d.contains(&format!("pelagos-test-{token}-")))
        })
}

fn our_monitors(token: &str) -> Vec<String> {
    all_pids()
        .into_iter()
        .filter(|p| is_monitor(*p) && monitor_is_ours(*p, token))
        .map(|p| format!("{p}: {}", proc_strings(p, "environ").join(" ")))
        .collect()
}

fn our_mounts(token: &str) -> Vec<String> {
    let needle = format!("pelagos-test-{token}-");
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter(|l| l.contains(&needle))
        .map(str::to_string)
        .collect()
}

/// Our own cgroup in each hierarchy: (mountpoint, path below it) from /proc/self/cgroup,
/// matched to the mounts by controller list (v1) or the empty one (v2).
fn own_pelagos_dirs() -> Vec<PathBuf> {
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap();
    let mut dirs = Vec::new();
    for (mp, fstype, opts) in common::cgroup_mounts() {
        let opts: BTreeSet<&str> = opts.split(',').collect();
        for l in own.lines() {
            let mut f = l.splitn(3, ':');
            let (_, ctrls, path) = (f.next(), f.next().unwrap_or(""), f.next().unwrap_or(""));
            let matches = if fstype == "cgroup2" {
                ctrls.is_empty()
            } else {
                !ctrls.is_empty() && ctrls.split(',').all(|c| opts.contains(c))
            };
            if matches {
                dirs.push(mp.join(path.trim_start_matches('/')).join("pelagos"));
            }
        }
    }
    dirs
}

/// Processes in the cgroup directory `d`.
fn procs(d: &Path) -> Vec<i32> {
    std::fs::read_to_string(d.join("cgroup.procs"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// The nearest live monitor among `pid`'s ancestors.
fn monitor_of(mut pid: i32) -> Option<i32> {
    for _ in 0..16 {
        let (ppid, _) = proc_ppid_state(pid)?;
        if ppid <= 1 {
            return None;
        }
        if is_monitor(ppid) {
            return Some(ppid);
        }
        pid = ppid;
    }
    None
}

/// Container cgroups that are leaks: no process (nothing will ever remove it), or
/// processes none of which has a live monitor, or processes supervised by our monitors.
fn leaked_cgroups(token: &str) -> Vec<String> {
    let mut out = Vec::new();
    for parent in own_pelagos_dirs() {
        let Ok(rd) = std::fs::read_dir(&parent) else {
            continue;
        };
        for e in rd.flatten() {
            if !e.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let d = e.path();
            let ps = procs(&d);
            let monitors: Vec<i32> = ps.iter().filter_map(|p| monitor_of(*p)).collect();
            let why = if ps.is_empty() {
                Some("no processes".to_string())
            } else if monitors.is_empty() {
                Some(format!("processes {ps:?} without a monitor"))
            } else if monitors.iter().any(|m| monitor_is_ours(*m, token)) {
                Some(format!(
                    "processes {ps:?} of this run's monitors {monitors:?}"
                ))
            } else {
                None
            };
            if let Some(why) = why {
                out.push(format!("{}: {why}", d.display()));
            }
        }
    }
    out
}

/// Bridges and veths carry their data root in IFLA_IFALIAS (`pelagos:<root>`).
fn our_links(token: &str) -> Vec<String> {
    let needle = format!("pelagos-test-{token}-");
    let Ok(rd) = std::fs::read_dir("/sys/class/net") else {
        return vec![];
    };
    rd.flatten()
        .filter_map(|e| {
            let alias = std::fs::read_to_string(e.path().join("ifalias")).unwrap_or_default();
            alias
                .contains(&needle)
                .then(|| format!("{}: {}", e.file_name().to_string_lossy(), alias.trim()))
        })
        .collect()
}

/// A private root's table is `pelagos_<tag>` and its default bridge `pl<tag>`: a table
/// whose bridge is gone has no owner left (whoever made it).
fn orphan_nft_tables() -> Vec<String> {
    let out = std::process::Command::new("nft")
        .args(["list", "tables"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    out.lines()
        .filter_map(|l| l.strip_prefix("table ip pelagos_"))
        .filter(|tag| !Path::new(&format!("/sys/class/net/pl{tag}")).exists())
        .map(|tag| format!("pelagos_{tag}"))
        .collect()
}

fn our_dns_servers(token: &str) -> Vec<String> {
    let needle = format!("pelagos-test-{token}-");
    all_pids()
        .into_iter()
        .filter(|p| {
            let a = proc_strings(*p, "cmdline");
            a.get(1).is_some_and(|x| x == "__dns" || x == "__health")
                && a.get(2).is_some_and(|d| d.contains(&needle))
                && proc_ppid_state(*p).is_some_and(|(_, s)| s != 'Z')
        })
        .map(|p| format!("{p}: {}", proc_strings(p, "cmdline").join(" ")))
        .collect()
}

#[test]
fn nothing_is_left_behind() {
    if common::fixtures().is_none() {
        return;
    }
    let token = run_token();
    // Sanity of the attribution: this process sees the token the harness uses.
    assert!(token.contains('.'), "{token}");
    let dirs = own_pelagos_dirs();
    assert!(
        !dirs.is_empty() || common::cgroup_mounts().is_empty(),
        "could not locate our own cgroups"
    );

    // Leftovers must be gone, not just going: a cgroup of another run that is being set
    // up or torn down right now is empty for an instant, so a leak has to last.
    let stable = |f: &dyn Fn() -> Vec<String>| {
        let mut last = f();
        common::poll_until(Duration::from_secs(3), || {
            last = f();
            last.is_empty()
        });
        last
    };
    let mounts = stable(&|| our_mounts(&token));
    assert!(mounts.is_empty(), "mounts left behind: {mounts:#?}");
    let monitors = stable(&|| our_monitors(&token));
    assert!(
        monitors.is_empty(),
        "monitor processes left running: {monitors:#?}"
    );
    let spawners = stable(&|| our_spawners(&token));
    assert!(
        spawners.is_empty(),
        "spawners (or exec helpers they forked) left running: {spawners:#?}"
    );
    let cgroups = stable(&|| leaked_cgroups(&token));
    assert!(
        cgroups.is_empty(),
        "container cgroups left behind: {cgroups:#?}"
    );
    let links = stable(&|| our_links(&token));
    assert!(links.is_empty(), "interfaces left behind: {links:#?}");
    let tables = stable(&orphan_nft_tables);
    assert!(
        tables.is_empty(),
        "nftables tables left behind: {tables:#?}"
    );
    let dns = stable(&|| our_dns_servers(&token));
    assert!(
        dns.is_empty(),
        "DNS servers or health runners left running: {dns:#?}"
    );
}
