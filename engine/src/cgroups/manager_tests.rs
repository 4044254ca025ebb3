//! Manager-level tests: `create` on a fake tree (which cgroups get
//! configured, which are left alone), and the v2 manager against the real
//! controller-less cgroup2 mount of a hybrid host when one is available.

use std::fs;
use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxResources;

use super::paths::Placement;
use super::v1::V1Manager;
use super::v2::V2Manager;
use super::*;

fn put(dir: &Path, file: &str, content: &str) {
    fs::create_dir_all(dir).unwrap();
    fs::write(dir.join(file), content).unwrap();
}

fn get(dir: &Path, file: &str) -> String {
    fs::read_to_string(dir.join(file)).unwrap()
}

fn placement(mount: &Path, parent_rel: &str, owned: bool, controllers: &[&str]) -> Placement {
    let parent = mount.join(parent_rel);
    Placement {
        controllers: controllers.iter().map(|c| c.to_string()).collect(),
        mountpoint: mount.to_path_buf(),
        path: parent.join("c1"),
        parent,
        parent_owned: owned,
    }
}

fn cpuset_tree(mount: &Path, levels: &[&str]) {
    put(mount, "cpuset.cpus", "0-3\n");
    put(mount, "cpuset.mems", "0\n");
    for l in levels {
        put(&mount.join(l), "cpuset.cpus", "");
        put(&mount.join(l), "cpuset.mems", "");
    }
}

#[test]
fn v1_create_copies_cpuset_into_our_levels() {
    let t = tempfile::tempdir().unwrap();
    let mount = t.path().join("cpuset");
    cpuset_tree(&mount, &["pelagos", "pelagos/c1"]);
    let m = V1Manager::new(vec![placement(&mount, "pelagos", true, &["cpuset"])]);
    m.create(&LinuxResources::default()).unwrap();
    for l in ["pelagos", "pelagos/c1"] {
        assert_eq!(get(&mount.join(l), "cpuset.cpus"), "0-3");
        assert_eq!(get(&mount.join(l), "cpuset.mems"), "0");
    }
}

#[test]
fn v1_create_leaves_foreign_parent_alone() {
    let t = tempfile::tempdir().unwrap();
    let mount = t.path().join("cpuset");
    cpuset_tree(&mount, &["foreign", "foreign/c1"]);
    let m = V1Manager::new(vec![placement(&mount, "foreign", false, &["cpuset"])]);
    m.create(&LinuxResources::default()).unwrap();
    assert_eq!(get(&mount.join("foreign"), "cpuset.cpus"), "");
    // The leaf is ours and inherits from the nearest configured ancestor.
    assert_eq!(get(&mount.join("foreign/c1"), "cpuset.cpus"), "0-3");
}

fn v2_tree(mount: &Path, parent: &str) {
    put(mount, "cgroup.controllers", "memory\n");
    put(mount, "cgroup.subtree_control", "");
    put(&mount.join(parent), "cgroup.controllers", "memory\n");
    put(&mount.join(parent), "cgroup.subtree_control", "");
    fs::create_dir_all(mount.join(parent).join("c1")).unwrap();
}

#[test]
fn v2_create_enables_controllers_in_root_and_our_parent_only() {
    let t = tempfile::tempdir().unwrap();
    let mount = t.path().to_path_buf();
    v2_tree(&mount, "pelagos");
    V2Manager::new(placement(&mount, "pelagos", true, &[]))
        .create(&LinuxResources::default())
        .unwrap();
    assert_eq!(get(&mount, "cgroup.subtree_control"), "+memory");
    assert_eq!(
        get(&mount.join("pelagos"), "cgroup.subtree_control"),
        "+memory"
    );

    let t = tempfile::tempdir().unwrap();
    let mount = t.path().to_path_buf();
    v2_tree(&mount, "foreign");
    V2Manager::new(placement(&mount, "foreign", false, &[]))
        .create(&LinuxResources::default())
        .unwrap();
    assert_eq!(get(&mount.join("foreign"), "cgroup.subtree_control"), "");
}

#[test]
fn destroy_of_missing_cgroup_is_ok() {
    let t = tempfile::tempdir().unwrap();
    let p = placement(t.path(), "pelagos", true, &["memory"]);
    open(CgroupPaths::V2 {
        placement: p.clone(),
    })
    .destroy()
    .unwrap();
    open(CgroupPaths::V1 {
        hierarchies: vec![p],
    })
    .destroy()
    .unwrap();
}

/// The controller-less cgroup2 mount of a hybrid host still has the core
/// v2 files (cgroup.procs, cgroup.freeze, cgroup.kill, cgroup.events), which
/// is enough to exercise the v2 manager's kernel interaction for real.
fn hybrid_unified_placement() -> Option<Placement> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let mountinfo = fs::read_to_string("/proc/self/mountinfo").ok()?;
    let CgroupLayout::Legacy {
        unified: Some(mount),
        ..
    } = detect::detect_from(&mountinfo, Path::new("/")).ok()?
    else {
        return None;
    };
    let own = detect::own_cgroups().ok()?;
    let parent: PathBuf =
        detect::dir_in_mount(&mount, "/", own.unified.as_deref()?).join("pelagos");
    let id = format!("test-v2-{}", std::process::id());
    Some(Placement {
        controllers: Vec::new(),
        mountpoint: mount,
        path: parent.join(id),
        parent,
        parent_owned: true,
    })
}

#[test]
#[ignore = "writes the host cgroup2 root's subtree_control and leaves /pelagos there on a hybrid host; run by hand on a throwaway machine"]
fn v2_manager_on_real_cgroup2_mount() {
    let Some(p) = hybrid_unified_placement() else {
        eprintln!("skipping: needs root and a hybrid cgroup2 mount");
        return;
    };
    let m = V2Manager::new(p.clone());
    m.create(&LinuxResources::default()).unwrap();
    // SAFETY: the child only calls pause (async-signal-safe).
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        loop {
            // SAFETY: pause has no preconditions.
            unsafe { libc::pause() };
        }
    }
    m.add_process(pid).unwrap();
    assert_eq!(m.pids().unwrap(), vec![pid]);
    m.freeze().unwrap();
    assert!(m.is_frozen().unwrap());
    m.thaw().unwrap();
    assert!(!m.is_frozen().unwrap());
    m.freeze().unwrap();
    m.destroy().unwrap();
    let mut status = 0;
    // SAFETY: pid is our child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert!(libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL);
    assert!(!p.path.exists());
    assert!(!m.oom_killed().unwrap());
    m.destroy().unwrap();
}
