//! Golden tests for the Docker-request -> OCI-spec translation: the output for fixed
//! inputs is checked in; `UPDATE_GOLDEN=1 cargo test -p pelagos-engine --test spec_golden`
//! rewrites the files after an intended change.

use engine::model::{ContainerConfig, ContainerRecord, HostConfig, MountPoint, Ulimit};
use engine::runtime::user::ResolvedUser;
use engine::spec::{SpecInputs, build};
use std::collections::BTreeMap;
use std::path::Path;

fn check(name: &str, record: &ContainerRecord, user: &ResolvedUser, caps: &[String]) {
    let spec = build(&SpecInputs {
        record,
        rootfs: Path::new("/var/lib/pelagos/containers/c0/rootfs"),
        hosts: Path::new("/var/lib/pelagos/containers/c0/hosts"),
        hostname_file: Path::new("/var/lib/pelagos/containers/c0/hostname"),
        resolv_conf: Path::new("/var/lib/pelagos/containers/c0/resolv.conf"),
        user,
        caps,
        seccomp: None,
    })
    .expect("spec builds");
    // oci-spec keeps capabilities in hash sets and sysctls in a hash map: normalise their
    // order (a Value's map is sorted) so the golden file is stable.
    let mut v = serde_json::to_value(&spec).unwrap();
    if let Some(caps) = v["process"]["capabilities"].as_object_mut() {
        for set in caps.values_mut() {
            if let Some(a) = set.as_array_mut() {
                a.sort_by(|x, y| x.as_str().cmp(&y.as_str()));
            }
        }
    }
    let got = serde_json::to_string_pretty(&v).unwrap() + "\n";
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/golden/{name}.json"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &got).unwrap();
    }
    let want = std::fs::read_to_string(&path).unwrap_or_default();
    assert_eq!(
        got, want,
        "golden {name} differs; rerun with UPDATE_GOLDEN=1 if intended"
    );
}

fn default_caps() -> Vec<String> {
    engine::capabilities::resolve(&[], &[], false).unwrap()
}

#[test]
fn plain_busybox() {
    let record = ContainerRecord {
        id: "c0".into(),
        name: "plain".into(),
        config: ContainerConfig {
            hostname: "c0c0c0c0c0c0".into(),
            cmd: vec!["sh".into()],
            env: vec!["PATH=/usr/bin:/bin".into()],
            image: "busybox".into(),
            ..Default::default()
        },
        host_config: HostConfig {
            network_mode: "none".into(),
            ..Default::default()
        },
        ..Default::default()
    };
    let user = ResolvedUser {
        home: "/root".into(),
        ..Default::default()
    };
    check("plain_busybox", &record, &user, &default_caps());
}

#[test]
fn everything_set() {
    let record = ContainerRecord {
        id: "c0".into(),
        name: "full".into(),
        config: ContainerConfig {
            hostname: "web".into(),
            domainname: "example.test".into(),
            tty: true,
            entrypoint: vec!["/entry".into()],
            cmd: vec!["serve".into(), "--port=80".into()],
            env: vec!["FOO=bar".into()],
            working_dir: "/srv".into(),
            ..Default::default()
        },
        host_config: HostConfig {
            network_mode: "host".into(),
            readonly_rootfs: true,
            memory: 64 << 20,
            nano_cpus: 1_500_000_000,
            cpu_shares: 512,
            cpuset_cpus: "0".into(),
            pids_limit: Some(100),
            blkio_weight: 300,
            shm_size: 1 << 20,
            oom_score_adj: 100,
            security_opt: vec!["no-new-privileges".into()],
            sysctls: BTreeMap::from([("net.ipv4.ip_forward".into(), "1".into())]),
            ulimits: vec![Ulimit {
                name: "nofile".into(),
                soft: 100,
                hard: 200,
            }],
            ..Default::default()
        },
        mounts: vec![
            MountPoint {
                kind: "bind".into(),
                source: "/host/data".into(),
                destination: "/data/sub".into(),
                rw: false,
                propagation: "rslave".into(),
                ..Default::default()
            },
            MountPoint {
                kind: "volume".into(),
                name: "v".into(),
                source: "/var/lib/pelagos/volumes/v/_data".into(),
                destination: "/data".into(),
                rw: true,
                ..Default::default()
            },
            MountPoint {
                kind: "tmpfs".into(),
                destination: "/run".into(),
                mode: "size=1048576".into(),
                rw: true,
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    let user = ResolvedUser {
        uid: 1000,
        gid: 1000,
        additional_gids: vec![2000],
        home: "/home/app".into(),
    };
    let caps = engine::capabilities::resolve(&[], &["ALL".into()], false).unwrap();
    check("everything_set", &record, &user, &caps);
}

#[test]
fn privileged_has_no_masks() {
    let record = ContainerRecord {
        id: "c0".into(),
        config: ContainerConfig {
            hostname: "p".into(),
            cmd: vec!["true".into()],
            ..Default::default()
        },
        host_config: HostConfig {
            privileged: true,
            ..Default::default()
        },
        ..Default::default()
    };
    let user = ResolvedUser::default();
    check("privileged", &record, &user, &default_caps());
}
