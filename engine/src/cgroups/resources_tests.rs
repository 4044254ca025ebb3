//! Fake-cgroupfs tests: control files are pre-created empty in a tempdir
//! (writes never create files, like cgroupfs) and read back afterwards.

use std::fs;
use std::path::Path;

use oci_spec::runtime::{
    LinuxBlockIoBuilder, LinuxCpuBuilder, LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResources,
    LinuxResourcesBuilder,
};

use super::*;

fn touch(dir: &Path, files: &[&str]) {
    fs::create_dir_all(dir).unwrap();
    for f in files {
        fs::write(dir.join(f), "").unwrap();
    }
}

fn get(dir: &Path, f: &str) -> String {
    fs::read_to_string(dir.join(f)).unwrap()
}

const MIB: i64 = 1024 * 1024;

fn full_resources() -> LinuxResources {
    LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .limit(64 * MIB)
                .swap(128 * MIB)
                .reservation(32 * MIB)
                .build()
                .unwrap(),
        )
        .cpu(
            LinuxCpuBuilder::default()
                .shares(1024u64)
                .quota(50_000i64)
                .period(100_000u64)
                .cpus("0-1")
                .mems("0")
                .build()
                .unwrap(),
        )
        .pids(LinuxPidsBuilder::default().limit(16i64).build().unwrap())
        .block_io(
            LinuxBlockIoBuilder::default()
                .weight(500u16)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap()
}

const V2_FILES: &[&str] = &[
    "memory.max",
    "memory.low",
    "memory.swap.max",
    "cpu.weight",
    "cpu.max",
    "cpuset.cpus",
    "cpuset.mems",
    "pids.max",
    "io.weight",
];

#[test]
fn shares_to_weight_formula() {
    assert_eq!(shares_to_weight(2), 1);
    assert_eq!(shares_to_weight(1024), 39);
    assert_eq!(shares_to_weight(262_144), 10_000);
    assert_eq!(shares_to_weight(100), 4);
    // Out-of-range shares are clamped like the kernel does for cpu.shares.
    assert_eq!(shares_to_weight(0), 1);
    assert_eq!(shares_to_weight(1 << 40), 10_000);
}

#[test]
fn blkio_weight_conversion() {
    assert_eq!(blkio_weight_to_io_weight(10), 1);
    assert_eq!(blkio_weight_to_io_weight(500), 4950);
    assert_eq!(blkio_weight_to_io_weight(1000), 10_000);
}

#[test]
fn v2_writes_every_resource() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    touch(d, V2_FILES);
    apply_v2(d, &full_resources()).unwrap();
    assert_eq!(get(d, "memory.max"), (64 * MIB).to_string());
    assert_eq!(
        get(d, "memory.swap.max"),
        (64 * MIB).to_string(),
        "swap = total - limit"
    );
    assert_eq!(get(d, "memory.low"), (32 * MIB).to_string());
    assert_eq!(get(d, "cpu.weight"), "39");
    assert_eq!(get(d, "cpu.max"), "50000 100000");
    assert_eq!(get(d, "cpuset.cpus"), "0-1");
    assert_eq!(get(d, "cpuset.mems"), "0");
    assert_eq!(get(d, "pids.max"), "16");
    assert_eq!(get(d, "io.weight"), "default 4950");
}

#[test]
fn v2_prefers_bfq_weight() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    touch(d, V2_FILES);
    touch(d, &["io.bfq.weight"]);
    apply_v2(d, &full_resources()).unwrap();
    assert_eq!(get(d, "io.bfq.weight"), "500");
    assert_eq!(get(d, "io.weight"), "");
}

#[test]
fn v2_unlimited_values() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    touch(d, V2_FILES);
    let r = LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .limit(-1)
                .swap(-1)
                .build()
                .unwrap(),
        )
        .cpu(
            LinuxCpuBuilder::default()
                .quota(-1i64)
                .period(20_000u64)
                .build()
                .unwrap(),
        )
        .pids(LinuxPidsBuilder::default().limit(0i64).build().unwrap())
        .build()
        .unwrap();
    apply_v2(d, &r).unwrap();
    assert_eq!(get(d, "memory.max"), "max");
    assert_eq!(get(d, "memory.swap.max"), "max");
    assert_eq!(get(d, "cpu.max"), "max 20000");
    assert_eq!(get(d, "pids.max"), "max");
}

#[test]
fn v2_period_only_keeps_quota() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    touch(d, V2_FILES);
    fs::write(d.join("cpu.max"), "30000 100000\n").unwrap();
    let r = LinuxResourcesBuilder::default()
        .cpu(
            LinuxCpuBuilder::default()
                .period(50_000u64)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    apply_v2(d, &r).unwrap();
    // cgroupfs replaces the value; our fake file is overwritten from offset 0.
    assert!(get(d, "cpu.max").starts_with("30000 50000"));
}

#[test]
fn v2_errors() {
    let t = tempfile::tempdir().unwrap();
    let d = t.path();
    touch(d, &["memory.max"]);
    let r = LinuxResourcesBuilder::default()
        .pids(LinuxPidsBuilder::default().limit(5i64).build().unwrap())
        .build()
        .unwrap();
    assert!(matches!(
        apply_v2(d, &r),
        Err(CgroupError::ControllerUnavailable {
            controller: "pids",
            ..
        })
    ));
    let r = LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .limit(64 * MIB)
                .swap(MIB)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    assert!(matches!(
        apply_v2(d, &r),
        Err(CgroupError::InvalidResource { .. })
    ));
    let mut r = LinuxResources::default();
    r.set_unified(Some([("../escape".to_string(), "1".to_string())].into()));
    assert!(matches!(
        apply_v2(d, &r),
        Err(CgroupError::InvalidResource { .. })
    ));
}

struct V1Fake {
    _t: tempfile::TempDir,
    dirs: V1Dirs,
}

fn v1_fake(with_memsw: bool, blkio_files: &[&str]) -> V1Fake {
    let t = tempfile::tempdir().unwrap();
    let mut dirs = V1Dirs::new();
    let mut add = |c: &str, files: &[&str]| {
        let d = t.path().join(c).join("pelagos/c1");
        touch(&d, files);
        dirs.insert(c.to_string(), d);
    };
    let mut mem = vec![
        "memory.limit_in_bytes",
        "memory.soft_limit_in_bytes",
        "memory.swappiness",
    ];
    if with_memsw {
        mem.push("memory.memsw.limit_in_bytes");
    }
    add("memory", &mem);
    add(
        "cpu",
        &["cpu.shares", "cpu.cfs_quota_us", "cpu.cfs_period_us"],
    );
    add("cpuset", &["cpuset.cpus", "cpuset.mems"]);
    add("pids", &["pids.max"]);
    add("blkio", blkio_files);
    V1Fake { _t: t, dirs }
}

#[test]
fn v1_writes_every_resource() {
    let f = v1_fake(true, &["blkio.bfq.weight"]);
    apply_v1(&f.dirs, &full_resources()).unwrap();
    let d = |c: &str| f.dirs[c].clone();
    assert_eq!(
        get(&d("memory"), "memory.limit_in_bytes"),
        (64 * MIB).to_string()
    );
    assert_eq!(
        get(&d("memory"), "memory.memsw.limit_in_bytes"),
        (128 * MIB).to_string(),
        "v1 memsw is memory+swap, as in OCI"
    );
    assert_eq!(
        get(&d("memory"), "memory.soft_limit_in_bytes"),
        (32 * MIB).to_string()
    );
    assert_eq!(get(&d("cpu"), "cpu.shares"), "1024");
    assert_eq!(get(&d("cpu"), "cpu.cfs_quota_us"), "50000");
    assert_eq!(get(&d("cpu"), "cpu.cfs_period_us"), "100000");
    assert_eq!(get(&d("cpuset"), "cpuset.cpus"), "0-1");
    assert_eq!(get(&d("cpuset"), "cpuset.mems"), "0");
    assert_eq!(get(&d("pids"), "pids.max"), "16");
    assert_eq!(get(&d("blkio"), "blkio.bfq.weight"), "500");
}

#[test]
fn v1_optional_files_are_skipped() {
    // No memsw accounting and no blkio weight file: limits that can be
    // applied are, the rest is ignored without error.
    let f = v1_fake(false, &[]);
    apply_v1(&f.dirs, &full_resources()).unwrap();
    assert_eq!(
        get(&f.dirs["memory"], "memory.limit_in_bytes"),
        (64 * MIB).to_string()
    );
    assert!(
        !f.dirs["memory"]
            .join("memory.memsw.limit_in_bytes")
            .exists()
    );
    assert!(!f.dirs["blkio"].join("blkio.weight").exists());
}

#[test]
fn v1_prefers_cfq_weight_and_unlimited_values() {
    let f = v1_fake(true, &["blkio.weight", "blkio.bfq.weight"]);
    let r = LinuxResourcesBuilder::default()
        .memory(
            LinuxMemoryBuilder::default()
                .limit(-1)
                .swap(-1)
                .build()
                .unwrap(),
        )
        .cpu(LinuxCpuBuilder::default().quota(-1i64).build().unwrap())
        .pids(LinuxPidsBuilder::default().limit(-1i64).build().unwrap())
        .block_io(
            LinuxBlockIoBuilder::default()
                .weight(300u16)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    apply_v1(&f.dirs, &r).unwrap();
    assert_eq!(get(&f.dirs["memory"], "memory.limit_in_bytes"), "-1");
    assert_eq!(get(&f.dirs["memory"], "memory.memsw.limit_in_bytes"), "-1");
    assert_eq!(get(&f.dirs["cpu"], "cpu.cfs_quota_us"), "-1");
    assert_eq!(get(&f.dirs["pids"], "pids.max"), "max");
    assert_eq!(get(&f.dirs["blkio"], "blkio.weight"), "300");
    assert_eq!(get(&f.dirs["blkio"], "blkio.bfq.weight"), "");
}

#[test]
fn v1_errors() {
    let mut f = v1_fake(true, &[]);
    f.dirs.remove("memory");
    let r = LinuxResourcesBuilder::default()
        .memory(LinuxMemoryBuilder::default().limit(MIB).build().unwrap())
        .build()
        .unwrap();
    assert!(matches!(
        apply_v1(&f.dirs, &r),
        Err(CgroupError::ControllerUnavailable {
            controller: "memory",
            ..
        })
    ));
    let mut r = LinuxResources::default();
    r.set_unified(Some([("memory.high".to_string(), "1".to_string())].into()));
    assert!(matches!(
        apply_v1(&f.dirs, &r),
        Err(CgroupError::InvalidResource { .. })
    ));
}
