//! Store tests on archives built in memory: load (both layouts), resolve, tag, rmi, GC.

use super::*;
use crate::ErrorKind;
use flate2::Compression;
use flate2::write::GzEncoder;
use serde_json::json;
use std::io::Write;

fn layer(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (path, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(1_700_000_000);
        b.append_data(&mut h, path, *data).unwrap();
    }
    b.into_inner().unwrap()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn config_for(layers: &[&[u8]], cmd: &str) -> Vec<u8> {
    let diff_ids: Vec<String> = layers
        .iter()
        .map(|l| Digest::of_bytes(l).to_string())
        .collect();
    serde_json::to_vec(&json!({
        "architecture": "amd64", "os": "linux", "created": "2024-01-02T03:04:05Z",
        "config": {"Env": ["PATH=/bin"], "Cmd": [cmd], "Healthcheck": {"Test": ["CMD", "true"]}},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap()
}

fn add(b: &mut tar::Builder<Vec<u8>>, path: &str, data: &[u8]) {
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    b.append_data(&mut h, path, data).unwrap();
}

/// A legacy `docker save` archive: `manifest.json`, `<hex>.json`, `<n>/layer.tar`.
/// (tags, layer tars, Cmd) of one image.
type TestImage<'a> = (&'a [&'a str], &'a [&'a [u8]], &'a str);

fn legacy_archive(images: &[TestImage<'_>]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut manifest = Vec::new();
    for (tags, layers, cmd) in images {
        let config = config_for(layers, cmd);
        let cfg_name = format!("{}.json", Digest::of_bytes(&config).hex());
        add(&mut b, &cfg_name, &config);
        let mut paths = Vec::new();
        for l in layers.iter() {
            let p = format!("{}/layer.tar", Digest::of_bytes(l).hex());
            add(&mut b, &p, l);
            paths.push(p);
        }
        manifest.push(json!({"Config": cfg_name, "RepoTags": tags, "Layers": paths}));
    }
    add(
        &mut b,
        "manifest.json",
        &serde_json::to_vec(&manifest).unwrap(),
    );
    b.into_inner().unwrap()
}

/// An OCI image layout with gzip layers and the annotations Docker 25 writes.
fn oci_archive(tag: &str, layers: &[&[u8]], cmd: &str) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let config = config_for(layers, cmd);
    let cfg_d = Digest::of_bytes(&config);
    add(&mut b, &format!("blobs/sha256/{}", cfg_d.hex()), &config);
    let mut descs = Vec::new();
    for l in layers {
        let gz = gzip(l);
        let d = Digest::of_bytes(&gz);
        add(&mut b, &format!("blobs/sha256/{}", d.hex()), &gz);
        descs.push(json!({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": d.to_string(), "size": gz.len()}));
    }
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg_d.to_string(), "size": config.len()},
        "layers": descs,
    }))
    .unwrap();
    let md = Digest::of_bytes(&manifest);
    add(&mut b, &format!("blobs/sha256/{}", md.hex()), &manifest);
    let index = json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md.to_string(), "size": manifest.len(),
        "annotations": {"io.containerd.image.name": tag, "org.opencontainers.image.ref.name": "latest"}}]});
    add(&mut b, "index.json", &serde_json::to_vec(&index).unwrap());
    add(&mut b, "oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#);
    b.into_inner().unwrap()
}

fn store() -> (tempfile::TempDir, ImageStore) {
    let dir = tempfile::tempdir().unwrap();
    let s = ImageStore::open(dir.path()).unwrap();
    (dir, s)
}

fn layer_count(s: &ImageStore) -> usize {
    std::fs::read_dir(s.root().join("layers")).unwrap().count()
}

fn nobody(_: &str) -> bool {
    false
}

#[test]
fn loads_legacy_archive() {
    let (_d, s) = store();
    let base = layer(&[("etc/motd", b"hi"), ("bin/sh", b"sh")]);
    let loaded = s
        .load_archive(&legacy_archive(&[(&["busybox:latest"], &[&base], "sh")])[..])
        .unwrap();
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0].tags[0].familiar(), "busybox:latest");
    let rec = s.resolve("busybox").unwrap();
    assert_eq!(rec.id, loaded[0].id);
    assert_eq!(rec.size, 4);
    assert_eq!(s.resolve(&rec.id.to_string()).unwrap().id, rec.id);
    assert_eq!(s.resolve(rec.id.hex()).unwrap().id, rec.id);
    assert_eq!(s.resolve(&rec.id.hex()[..8]).unwrap().id, rec.id);
    let cfg = s.config(&rec).unwrap();
    assert_eq!(cfg.config.cmd, Some(vec!["sh".to_string()]));
    assert_eq!(cfg.config.healthcheck.unwrap().test, ["CMD", "true"]);
    let dirs = s.layer_dirs(&rec).unwrap();
    assert_eq!(std::fs::read(dirs[0].join("etc/motd")).unwrap(), b"hi");
    let inspect = s.inspect(&rec).unwrap();
    assert_eq!(inspect["Id"], rec.id.to_string());
    assert_eq!(inspect["RepoTags"], json!(["busybox:latest"]));
    assert_eq!(
        inspect["RootFS"]["Layers"][0],
        Digest::of_bytes(&base).to_string()
    );
    assert_eq!(inspect["Config"]["Cmd"], json!(["sh"]));
    assert_eq!(inspect["Os"], "linux");
    assert_eq!(inspect["Created"], "2024-01-02T03:04:05Z");
    // Loading again is idempotent.
    s.load_archive(&legacy_archive(&[(&["busybox:latest"], &[&base], "sh")])[..])
        .unwrap();
    assert_eq!(s.list().unwrap().len(), 1);
}

#[test]
fn loads_oci_layout_with_gzip_layers() {
    let (_d, s) = store();
    let base = layer(&[("a", b"1")]);
    let top = layer(&[("b", b"22")]);
    let loaded = s
        .load_archive(&oci_archive("docker.io/library/app:1", &[&base, &top], "run")[..])
        .unwrap();
    assert_eq!(loaded[0].tags[0].familiar(), "app:1");
    let rec = s.resolve("app:1").unwrap();
    assert_eq!(rec.layers.len(), 2);
    assert!(rec.manifest_digest.is_some());
    let dirs = s.layer_dirs(&rec).unwrap();
    assert!(dirs[0].join("a").exists() && dirs[1].join("b").exists());
    // Also accepted when the whole archive is gzip'd.
    let (_d2, s2) = store();
    s2.load_archive(&gzip(&oci_archive("app:2", &[&base], "x"))[..])
        .unwrap();
    assert!(s2.resolve("app:2").is_ok());
}

#[test]
fn diff_id_mismatch_stores_nothing() {
    let (_d, s) = store();
    let good = layer(&[("a", b"1")]);
    let bad = layer(&[("b", b"2")]);
    let mut archive = legacy_archive(&[(&["x:1"], &[&good, &bad], "sh")]);
    // Swap the second layer's content for a different tar of the same length.
    let evil = layer(&[("c", b"3")]);
    let pos = archive
        .windows(bad.len())
        .position(|w| w == &bad[..])
        .unwrap();
    archive[pos..pos + evil.len()].copy_from_slice(&evil);
    let err = s.load_archive(&archive[..]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(err.to_string().contains("layer.tar"), "{err}");
    assert!(err.to_string().contains("diff-id"), "{err}");
    assert_eq!(layer_count(&s), 0, "no layer left behind");
    assert!(s.list().unwrap().is_empty());
    assert_eq!(std::fs::read_dir(s.root().join("tmp")).unwrap().count(), 0);
}

#[test]
fn layers_are_shared_and_collected() {
    let (_d, s) = store();
    let base = layer(&[("base", b"b")]);
    let top = layer(&[("top", b"t")]);
    s.load_archive(
        &legacy_archive(&[
            (&["base:1"], &[&base], "a"),
            (&["app:1"], &[&base, &top], "b"),
        ])[..],
    )
    .unwrap();
    assert_eq!(layer_count(&s), 2);
    let removed = s.remove("app:1", false, &nobody).unwrap();
    assert_eq!(removed[0].to_string(), "Untagged: app:1");
    assert!(matches!(removed[1], Removed::Deleted(_)));
    assert_eq!(removed.len(), 3, "image + its own top layer: {removed:?}");
    assert_eq!(layer_count(&s), 1, "base layer still used");
    s.remove("base:1", false, &nobody).unwrap();
    assert_eq!(layer_count(&s), 0);
    assert_eq!(
        std::fs::read_dir(s.root().join("blobs/sha256"))
            .unwrap()
            .count(),
        0
    );
}

#[test]
fn tag_and_untag_semantics() {
    let (_d, s) = store();
    let base = layer(&[("f", b"1")]);
    let loaded = s
        .load_archive(&legacy_archive(&[(&["busybox:latest"], &[&base], "sh")])[..])
        .unwrap();
    let id = loaded[0].id.clone();
    let t = s.tag("busybox", "localhost:5000/bb:v1").unwrap();
    assert_eq!(t.familiar(), "localhost:5000/bb:v1");
    s.tag(id.hex(), "other").unwrap();
    let rec = s.resolve("other:latest").unwrap();
    let tags: Vec<String> = rec.repo_tags.iter().map(|r| r.familiar()).collect();
    assert_eq!(
        tags,
        // Sorted by full name, as Docker's reference store does.
        ["busybox:latest", "other:latest", "localhost:5000/bb:v1"]
    );
    assert!(s.tag("busybox", &format!("x@{id}")).is_err());
    assert_eq!(
        s.tag("nope", "x").unwrap_err().to_string(),
        "No such image: nope:latest"
    );

    // By ID with several repositories: refused unless forced.
    let err = s.remove(id.hex(), false, &nobody).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert!(
        err.to_string()
            .contains("image is referenced in multiple repositories"),
        "{err}"
    );
    // By name: just untags while other names remain.
    let r = s.remove("other", false, &nobody).unwrap();
    assert_eq!(r, [Removed::Untagged(Reference::parse("other").unwrap())]);
    // A container blocks removing the last name unless forced.
    s.remove("localhost:5000/bb:v1", false, &nobody).unwrap();
    let used = |i: &str| i == id.to_string();
    let err = s.remove("busybox", false, &used).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict);
    assert!(
        err.to_string().starts_with(
            "conflict: unable to remove repository reference \"busybox\" (must force) - container"
        ),
        "{err}"
    );
    // A running container blocks even a forced removal by ID.
    let running = |i: &str| {
        (i == id.to_string()).then(|| ImageUser {
            container_id: "0123456789abcdef".into(),
            running: true,
        })
    };
    // Forced by name while running: untagged, but the image stays (dangling), as in Docker.
    let r = s.remove_with_users("busybox", true, &running).unwrap();
    assert_eq!(r.len(), 1);
    assert!(s.resolve(id.hex()).unwrap().is_dangling());
    let err = s.remove_with_users(id.hex(), true, &running).unwrap_err();
    assert!(
        err.to_string()
            .contains("(cannot be forced) - image is being used by running container 0123456789ab"),
        "{err}"
    );
    // A stopped container blocks unless forced; forced, the image goes (as in Docker).
    let err = s.remove(&id.to_string(), false, &used).unwrap_err();
    assert!(
        err.to_string()
            .contains("(must be forced) - image is being used by stopped container"),
        "{err}"
    );
    let r = s.remove(&id.to_string(), true, &used).unwrap();
    assert_eq!(r[0], Removed::Deleted(id));
    assert_eq!(layer_count(&s), 0);
}

#[test]
fn not_found_and_invalid() {
    let (_d, s) = store();
    let e = s.resolve("nothing").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert_eq!(e.to_string(), "No such image: nothing:latest");
    let e = s.resolve("deadbeef").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::NotFound);
    let e = s.resolve("Bad:Ref").unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidArgument);
    assert!(s.load_archive(&b""[..]).is_err());
    let e = s.load_archive(&layer(&[("x", b"1")])[..]).unwrap_err();
    assert!(e.to_string().contains("manifest.json"), "{e}");
}

#[test]
fn moving_a_tag_reports_the_old_image() {
    let (_d, s) = store();
    let a = layer(&[("a", b"1")]);
    let first = s
        .load_archive(&legacy_archive(&[(&["x:1"], &[&a], "one")])[..])
        .unwrap();
    let second = s
        .load_archive(&legacy_archive(&[(&["x:1"], &[&a], "two")])[..])
        .unwrap();
    assert_eq!(
        second[0].replaced,
        [(Reference::parse("x:1").unwrap(), first[0].id.clone())]
    );
    assert!(s.resolve(first[0].id.hex()).unwrap().is_dangling());
    assert_eq!(s.list().unwrap().len(), 2);
}

#[test]
fn concurrent_loads_of_the_same_layers() {
    let (_d, s) = store();
    let base = layer(&[("shared", b"s")]);
    let archive = legacy_archive(&[(&["one:1"], &[&base], "a")]);
    let archive2 = legacy_archive(&[(&["two:1"], &[&base], "b")]);
    std::thread::scope(|scope| {
        let a = scope.spawn(|| s.load_archive(&archive[..]));
        let b = scope.spawn(|| s.load_archive(&archive2[..]));
        a.join().unwrap().unwrap();
        b.join().unwrap().unwrap();
    });
    assert_eq!(layer_count(&s), 1);
    assert_eq!(s.list().unwrap().len(), 2);
    let names: Vec<_> = std::fs::read_dir(s.root().join("layers"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(names.iter().all(|n| !n.starts_with('.')), "{names:?}");
}
