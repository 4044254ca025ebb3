//! Runs last (cargo runs integration test binaries in name order): after the whole suite,
//! no pelagos mount, monitor process or container cgroup may remain.

mod common;

#[test]
fn nothing_is_left_behind() {
    if common::fixtures().is_none() {
        eprintln!("skipped: needs root and PELAGOS_FIXTURES");
        return;
    }
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let leaked: Vec<&str> = mountinfo
        .lines()
        .filter(|l| l.contains("pelagos-test-"))
        .collect();
    assert!(leaked.is_empty(), "mounts left behind: {leaked:#?}");

    let mut monitors = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        let zombie = stat
            .rsplit_once(") ")
            .is_some_and(|(_, r)| r.starts_with('Z'));
        if !zombie && cmd.split(|b| *b == 0).any(|a| a == b"__monitor") {
            monitors.push(name);
        }
    }
    assert!(
        monitors.is_empty(),
        "monitor processes left running: {monitors:?}"
    );

    let mut cgroups = Vec::new();
    for (mp, _, _) in common::cgroup_mounts() {
        common::find_pelagos_children(&mp, 0, &mut |p| cgroups.push(p.to_path_buf()));
    }
    assert!(
        cgroups.is_empty(),
        "container cgroups left behind: {cgroups:#?}"
    );
}
