//! Loads the archives built by `integration/fixtures/build-images.sh` (and `debian.sh`).
//! Runs only as root with `PELAGOS_FIXTURES` pointing at the built directory; otherwise
//! each test prints "skipped" and passes.

use registry::{ImageStore, Removed};
use serde_json::Value;
use std::fs::{self, File};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

fn fixtures() -> Option<PathBuf> {
    let Some(dir) = std::env::var_os("PELAGOS_FIXTURES") else {
        println!("skipped: PELAGOS_FIXTURES is not set");
        return None;
    };
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        println!("skipped: needs root (layers keep ownership and whiteout devices)");
        return None;
    }
    Some(PathBuf::from(dir))
}

fn described(dir: &Path, name: &str) -> Value {
    let text = fs::read_to_string(dir.join("fixtures.json")).expect("fixtures.json");
    let all: Value = serde_json::from_str(&text).expect("fixtures.json is JSON");
    all[name].clone()
}

fn store() -> (tempfile::TempDir, ImageStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(dir.path()).unwrap();
    (dir, store)
}

fn load(store: &ImageStore, path: &Path) -> Vec<registry::LoadedImage> {
    store
        .load_archive(File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .unwrap_or_else(|e| panic!("loading {}: {e}", path.display()))
}

fn layer_count(store: &ImageStore) -> usize {
    fs::read_dir(store.root().join("layers")).unwrap().count()
}

fn no_users(_: &str) -> bool {
    false
}

#[test]
fn busybox_in_every_layout() {
    let Some(dir) = fixtures() else { return };
    for name in ["busybox", "busybox-legacy", "busybox-oci"] {
        let desc = described(&dir, name);
        let (_d, store) = store();
        let loaded = load(&store, &dir.join(desc["archive"].as_str().unwrap()));
        assert_eq!(loaded.len(), 1, "{name}");
        assert_eq!(loaded[0].id.to_string(), desc["id"], "{name}: image ID");
        let tags: Vec<String> = loaded[0].tags.iter().map(|t| t.familiar()).collect();
        assert_eq!(tags, ["busybox:latest"], "{name}");

        let rec = store.resolve("busybox").unwrap();
        let cfg = store.config(&rec).unwrap();
        assert_eq!(
            cfg.config.env,
            ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"]
        );
        assert_eq!(cfg.config.cmd, Some(vec!["sh".to_string()]));
        assert_eq!(
            (cfg.architecture.as_str(), cfg.os.as_str()),
            ("amd64", "linux")
        );

        let dirs = store.layer_dirs(&rec).unwrap();
        assert_eq!(dirs.len(), 1);
        let root = &dirs[0];
        let bb = fs::metadata(root.join("bin/busybox")).unwrap();
        assert_eq!(bb.permissions().mode() & 0o777, 0o755);
        assert_eq!(fs::metadata(root.join("bin/sh")).unwrap().ino(), bb.ino());
        if let Some(applets) = desc["applets"].as_array() {
            for a in applets {
                let p = root.join("bin").join(a.as_str().unwrap());
                assert!(
                    fs::symlink_metadata(&p).is_ok(),
                    "{name}: applet {}",
                    p.display()
                );
            }
        }
        let passwd = fs::read_to_string(root.join("etc/passwd")).unwrap();
        assert!(passwd.contains("app:x:1000:1000:"), "{passwd}");
        let group = fs::read_to_string(root.join("etc/group")).unwrap();
        assert!(group.contains("extra:x:2000:app"), "{group}");
        assert_eq!(
            fs::metadata(root.join("tmp")).unwrap().permissions().mode() & 0o7777,
            0o1777
        );
        let home = fs::metadata(root.join("home/app")).unwrap();
        assert_eq!((home.uid(), home.gid()), (1000, 1000));

        let inspect = store.inspect(&rec).unwrap();
        assert_eq!(inspect["RepoTags"], serde_json::json!(["busybox:latest"]));
        assert_eq!(inspect["RootFS"]["Layers"], desc["diff_ids"]);
        assert!(inspect["Size"].as_u64().unwrap() > 100_000);

        let removed = store.remove("busybox", false, &no_users).unwrap();
        assert_eq!(removed[0].to_string(), "Untagged: busybox:latest");
        assert!(removed.contains(&Removed::Deleted(rec.id.clone())));
        assert!(store.list().unwrap().is_empty());
        assert_eq!(layer_count(&store), 0, "{name}: layers collected");
    }
}

#[test]
fn config_image_fields_whiteout_and_shared_base() {
    let Some(dir) = fixtures() else { return };
    let (_d, store) = store();
    load(&store, &dir.join("busybox.tar"));
    let desc = described(&dir, "config");
    let loaded = load(&store, &dir.join("config.tar"));
    assert_eq!(loaded[0].id.to_string(), desc["id"]);
    assert_eq!(loaded[0].tags[0].familiar(), "pelagos-test/config:latest");
    assert_eq!(layer_count(&store), 2, "base layer shared with busybox");

    let rec = store.resolve("pelagos-test/config").unwrap();
    let c = store.config(&rec).unwrap().config;
    assert_eq!(
        c.entrypoint,
        Some(vec!["/bin/echo".into(), "entrypoint".into()])
    );
    assert_eq!(c.cmd, Some(vec!["default-cmd".into()]));
    assert_eq!(c.working_dir.as_deref(), Some("/srv"));
    assert_eq!(c.user.as_deref(), Some("app"));
    assert!(c.env.contains(&"FOO=bar".to_string()));
    assert!(c.exposed_ports.contains_key("8080/tcp"));
    assert!(c.volumes.contains_key("/data"));
    assert_eq!(c.stop_signal.as_deref(), Some("SIGUSR1"));
    assert_eq!(
        c.labels.get("org.pelagos.fixture").map(String::as_str),
        Some("config")
    );
    let hc = c.healthcheck.expect("healthcheck");
    assert_eq!(hc.test, ["CMD-SHELL", "test -f /data/seed.txt"]);
    assert_eq!((hc.interval, hc.retries), (Some(5_000_000_000), Some(3)));

    let dirs = store.layer_dirs(&rec).unwrap();
    assert_eq!(dirs.len(), 2);
    assert_eq!(
        dirs[0],
        store
            .layer_dirs(&store.resolve("busybox").unwrap())
            .unwrap()[0]
    );
    assert!(dirs[0].join("etc/motd").is_file());
    let wh = fs::symlink_metadata(dirs[1].join("etc/motd")).unwrap();
    assert!(
        wh.file_type().is_char_device() && wh.rdev() == 0,
        "whiteout for /etc/motd"
    );
    assert_eq!(fs::read(dirs[1].join("data/seed.txt")).unwrap(), b"seed\n");
    let srv = fs::metadata(dirs[1].join("srv")).unwrap();
    assert_eq!((srv.uid(), srv.gid()), (1000, 1000));

    // Removing the config image keeps the shared base layer; removing busybox then
    // collects it.
    let removed = store
        .remove("pelagos-test/config:latest", false, &no_users)
        .unwrap();
    assert_eq!(removed.len(), 3, "untag, image, top layer: {removed:?}");
    assert_eq!(layer_count(&store), 1);
    store.remove("busybox:latest", false, &no_users).unwrap();
    assert_eq!(layer_count(&store), 0);
}

#[test]
fn debian_bookworm() {
    let Some(dir) = fixtures() else { return };
    let path = dir.join("debian.tar");
    if !path.exists() {
        println!("skipped: {} not built (run debian.sh)", path.display());
        return;
    }
    let (_d, store) = store();
    let loaded = load(&store, &path);
    assert_eq!(loaded[0].tags[0].familiar(), "debian:bookworm");
    let rec = store.resolve("debian:bookworm").unwrap();
    let root = &store.layer_dirs(&rec).unwrap()[0];
    assert!(fs::symlink_metadata(root.join("usr/bin/bash")).is_ok());
    assert!(root.join("etc/debian_version").is_file());
    store.remove("debian:bookworm", false, &no_users).unwrap();
    assert_eq!(layer_count(&store), 0);
}
