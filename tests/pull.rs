//! `pull` against a real registry (Debian's docker-registry on loopback, started by
//! `make test-root`); images are pushed into it with skopeo, a third-party client.

mod common;
use common::Pelagos;
use std::process::Command;

fn registry() -> Option<String> {
    let r = std::env::var("PELAGOS_TEST_REGISTRY")
        .ok()
        .filter(|r| !r.is_empty());
    if r.is_none() {
        println!("skipped: PELAGOS_TEST_REGISTRY is not set (run `make test-root`)");
    }
    r
}

/// Copies an image into the test registry with skopeo (`src` in skopeo's transport
/// syntax), optionally as an authenticated user.
fn skopeo_copy(src: &str, dest: &str, creds: Option<&str>) {
    let mut cmd = Command::new("skopeo");
    cmd.args(["copy", "--dest-tls-verify=false"]);
    if let Some(c) = creds {
        cmd.args(["--dest-creds", c]);
    }
    let out = cmd
        .arg(src)
        .arg(format!("docker://{dest}"))
        .output()
        .expect("run skopeo");
    assert!(
        out.status.success(),
        "skopeo: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Pushes a fixture archive to the test registry.
fn skopeo_push(p: &Pelagos, archive: &str, dest: &str) {
    let src = format!("docker-archive:{}", p.fixtures.join(archive).display());
    skopeo_copy(&src, dest, None);
}

fn fixture_id(p: &Pelagos, name: &str) -> String {
    let f: serde_json::Value =
        serde_json::from_slice(&std::fs::read(p.fixtures.join("fixtures.json")).unwrap()).unwrap();
    f[name]["id"].as_str().unwrap().to_string()
}

#[test]
fn pull_from_a_registry_gives_the_same_image_and_runs() {
    let Some(reg) = registry() else { return };
    let Some(p) = Pelagos::with_images(&[]) else {
        return;
    };
    let name = format!("{reg}/pelagos-test/busybox:{}", std::process::id());
    skopeo_push(&p, "busybox-legacy.tar", &name);
    let out = p.ok(&["pull", &name]);
    assert!(out.contains("Pull complete"), "{out}");
    assert!(out.contains("Status: Downloaded newer image"), "{out}");
    // Same config digest as the archive it came from.
    assert_eq!(p.inspect(&name, "{{.Id}}"), fixture_id(&p, "busybox"));
    assert_eq!(
        p.ok(&["run", "--rm", &name, "echo", "from-registry"])
            .trim(),
        "from-registry"
    );
    // Second pull: nothing to fetch.
    let out = p.ok(&["pull", &name]);
    assert!(out.contains("Image is up to date"), "{out}");
    // A second image sharing the base layer fetches only its own layer.
    let cfg = format!("{reg}/pelagos-test/config:{}", std::process::id());
    skopeo_push(&p, "config.tar", &cfg);
    let out = p.ok(&["pull", &cfg]);
    assert!(out.contains("Already exists"), "{out}");
    assert_eq!(out.matches("Pull complete").count(), 1, "{out}");
    assert_eq!(p.inspect(&cfg, "{{.Id}}"), fixture_id(&p, "config"));
}

#[test]
fn pull_errors_are_clear_and_store_nothing() {
    let Some(reg) = registry() else { return };
    let Some(p) = Pelagos::with_images(&[]) else {
        return;
    };
    p.fails(
        &["pull", &format!("{reg}/pelagos-test/does-not-exist:1")],
        1,
        "not found",
    );
    // Nothing listens on port 1 of loopback.
    p.fails(&["pull", "127.0.0.1:1/x/y:1"], 1, "127.0.0.1:1");
    p.fails(&["pull", "UPPER/Case"], 1, "invalid reference format");
    assert_eq!(p.ok(&["images", "-q"]).trim(), "");
}

/// Builds an image archive from layer tars with the fixtures' mkimage.py.
fn mkimage(p: &Pelagos, layers: &[&std::path::Path], tag: &str, arch: &str) -> std::path::PathBuf {
    let archive = p
        .dir
        .path()
        .join(format!("{}.tar", tag.replace(['/', ':'], "-")));
    let mut cmd = Command::new("python3");
    cmd.arg(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/integration/fixtures/mkimage.py"
    ))
    .arg("rootfs");
    for l in layers {
        cmd.arg("--layer").arg(l);
    }
    let out = cmd
        .args(["--tag", tag, "--arch", arch, "--out"])
        .arg(&archive)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    archive
}

/// Builds a unique one-layer image (its only file holds a fresh marker, so no other test
/// shares its blob) for `arch`, pushes it with skopeo as `{reg}/{repo}:{tag}`; returns the
/// reference and the marker.
fn unique_image(p: &Pelagos, reg: &str, repo: &str, tag: &str, arch: &str) -> (String, String) {
    unique_image_with(p, reg, repo, tag, arch, &[])
}

/// [`unique_image`] with extra `skopeo copy` flags (e.g. zstd compression).
fn unique_image_with(
    p: &Pelagos,
    reg: &str,
    repo: &str,
    tag: &str,
    arch: &str,
    skopeo_flags: &[&str],
) -> (String, String) {
    let marker = format!(
        "{repo}-{tag}-{}-{:?}",
        std::process::id(),
        std::time::SystemTime::now()
    );
    let layer = p.dir.path().join(format!("layer-{tag}.tar"));
    {
        let mut b = tar::Builder::new(std::fs::File::create(&layer).unwrap());
        let mut h = tar::Header::new_gnu();
        h.set_size(marker.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, "marker", marker.as_bytes()).unwrap();
        b.finish().unwrap();
    }
    let archive = mkimage(p, &[&layer], &format!("{repo}:{tag}"), arch);
    let name = format!("{reg}/{repo}:{tag}");
    let out = Command::new("skopeo")
        .args(["copy", "--dest-tls-verify=false"])
        .args(skopeo_flags)
        .arg(format!("docker-archive:{}", archive.display()))
        .arg(format!("docker://{name}"))
        .output()
        .expect("run skopeo");
    assert!(
        out.status.success(),
        "skopeo: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (name, marker)
}

fn registry_dir() -> std::path::PathBuf {
    std::env::var("REGISTRY_DIR")
        .unwrap_or_else(|_| "/tmp/pelagos-test-registry".into())
        .into()
}

/// The registry's storage file of the layer blob holding `marker` (skopeo may have
/// gzip'd it).
fn registry_blob_with(marker: &str) -> std::path::PathBuf {
    let mut stack = vec![registry_dir().join("data")];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = e.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.file_name().is_none_or(|n| n != "data") {
                continue;
            }
            let raw = std::fs::read(&path).unwrap_or_default();
            let mut plain = Vec::new();
            let content = if raw.starts_with(&[0x1f, 0x8b]) {
                use std::io::Read;
                let _ = flate2::read::GzDecoder::new(&raw[..]).read_to_end(&mut plain);
                &plain
            } else {
                &raw
            };
            if content
                .windows(marker.len())
                .any(|w| w == marker.as_bytes())
            {
                return path;
            }
        }
    }
    panic!("no blob with {marker} in the registry's storage");
}

/// After a failed pull: no image, layer, blob or temp file.
fn assert_store_empty(p: &Pelagos) {
    assert_eq!(p.ok(&["images", "-q"]).trim(), "");
    for sub in ["image/layers", "image/tmp", "image/blobs/sha256"] {
        let left: Vec<_> = std::fs::read_dir(p.data.join(sub))
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(
            left.is_empty(),
            "{sub} not empty after a failed pull: {left:?}"
        );
    }
}

/// A registry serving a blob whose bytes do not match its digest, a truncated blob, and a
/// manifest naming a blob the registry lost: each pull fails naming the blob, and nothing
/// (image, layer, blob, temp file) is stored.
#[test]
fn tampered_truncated_and_missing_blobs_store_nothing() {
    let Some(reg) = registry() else { return };
    let Some(p) = Pelagos::with_images(&[]) else {
        return;
    };
    let pid = std::process::id().to_string();
    let (name, marker) = unique_image(&p, &reg, "pelagos-test/tampered", &pid, "amd64");
    let blob = registry_blob_with(&marker);
    let mut bytes = std::fs::read(&blob).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&blob, &bytes).unwrap();
    let err = p.fails(&["pull", &name], 1, "digest mismatch");
    assert!(err.contains("layer blob sha256:"), "{err}");
    assert_store_empty(&p);

    let (name, marker) = unique_image(&p, &reg, "pelagos-test/truncated", &pid, "amd64");
    let blob = registry_blob_with(&marker);
    let bytes = std::fs::read(&blob).unwrap();
    std::fs::write(&blob, &bytes[..bytes.len() / 2]).unwrap();
    let err = p.fails(&["pull", &name], 1, "sha256:");
    assert!(err.contains("mismatch") || err.contains("blob"), "{err}");
    assert_store_empty(&p);

    let (name, marker) = unique_image(&p, &reg, "pelagos-test/lostblob", &pid, "amd64");
    std::fs::remove_file(registry_blob_with(&marker)).unwrap();
    let err = p.fails(&["pull", &name], 1, "blob sha256:");
    assert!(!err.contains("panicked"), "{err}");
    assert_store_empty(&p);
}

/// `skopeo inspect` of a reference, as JSON.
fn skopeo_inspect(what: &str, raw: bool) -> String {
    let mut cmd = Command::new("skopeo");
    cmd.args(["inspect", "--tls-verify=false"]);
    if raw {
        cmd.arg("--raw");
    }
    let out = cmd.arg(what).output().expect("run skopeo");
    assert!(
        out.status.success(),
        "skopeo inspect {what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn pushed_digest(out: &str) -> String {
    out.lines()
        .find_map(|l| l.split(" digest: ").nth(1))
        .and_then(|r| r.split_whitespace().next())
        .unwrap_or_else(|| panic!("no digest in push output: {out}"))
        .to_string()
}

/// Push uploads the stored blobs; a second push finds them all; skopeo sees the digest
/// pelagos printed and copies the image out intact; pulled back into an empty store it is
/// the same image; pushing to another repository of the registry mounts the blobs; and a
/// pulled image pushes again with the digest it was pulled with.
#[test]
fn push_pull_round_trip_agrees_with_skopeo() {
    let Some(reg) = registry() else { return };
    let Some(p) = Pelagos::with_images(&["busybox.tar"]) else {
        return;
    };
    let pid = std::process::id();
    // A repository of its own, so no earlier run has the blobs there.
    let unique = format!(
        "{pid}-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let name = format!("{reg}/pelagos-test/pushed-{unique}:{pid}");
    p.ok(&["tag", "busybox", &name]);
    let out = p.ok(&["push", &name]);
    assert!(
        out.contains(&format!(
            "The push refers to repository [{reg}/pelagos-test/pushed-{unique}]"
        )),
        "{out}"
    );
    assert!(out.contains(": Pushed"), "{out}");
    let digest = pushed_digest(&out);
    let again = p.ok(&["push", &name]);
    assert!(again.contains("Layer already exists"), "{again}");
    assert!(!again.contains(": Pushed"), "{again}");
    assert_eq!(pushed_digest(&again), digest);
    assert!(
        p.inspect(&name, "{{json .RepoDigests}}")
            .contains(&format!("pelagos-test/pushed-{unique}@{digest}")),
        "RepoDigests lack the pushed digest"
    );

    // skopeo: same digest, same config, and a full copy (which verifies every blob).
    let remote: serde_json::Value =
        serde_json::from_str(&skopeo_inspect(&format!("docker://{name}"), false)).unwrap();
    assert_eq!(remote["Digest"], digest.as_str());
    let oci_dir = p.dir.path().join("skopeo-oci");
    let out = Command::new("skopeo")
        .args(["copy", "--preserve-digests", "--src-tls-verify=false"])
        .arg(format!("docker://{name}"))
        .arg(format!("oci:{}:copied", oci_dir.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let copied: serde_json::Value = serde_json::from_str(&skopeo_inspect(
        &format!("oci:{}:copied", oci_dir.display()),
        false,
    ))
    .unwrap();
    assert_eq!(copied["Digest"], digest.as_str());
    assert_eq!(copied["Layers"], remote["Layers"]);

    // Pulled back into an empty store: the same image, recorded under the same digest.
    let q = Pelagos::with_images(&[]).unwrap();
    let out = q.ok(&["pull", &name]);
    assert!(out.contains(&format!("Digest: {digest}")), "{out}");
    assert_eq!(q.inspect(&name, "{{.Id}}"), p.inspect("busybox", "{{.Id}}"));
    assert_eq!(
        q.ok(&["run", "--rm", &name, "echo", "round-trip"]).trim(),
        "round-trip"
    );

    // The pulled image pushes to another repository with the same manifest digest, its
    // blobs mounted from the repository they came from.
    let other = format!("{reg}/pelagos-test/pushed-copy-{unique}:{pid}");
    q.ok(&["tag", &name, &other]);
    let out = q.ok(&["push", &other]);
    assert_eq!(pushed_digest(&out), digest, "{out}");
    assert!(
        out.contains(&format!("Mounted from pelagos-test/pushed-{unique}")),
        "{out}"
    );
    assert!(
        !out.contains(": Pushed"),
        "blobs were uploaded again: {out}"
    );

    // Pushing a digest or an unknown tag is refused before any upload.
    p.fails(
        &["push", &format!("{reg}/pelagos-test/nothing:here")],
        1,
        "does not exist locally",
    );
}

/// zstd-compressed layers (skopeo writes them) pull and run; an OCI index with two
/// platforms resolves to the host's or to `--platform`'s entry; a platform the index does
/// not list is Docker's "no matching manifest" error.
#[test]
fn zstd_layers_and_platform_selection() {
    let Some(reg) = registry() else { return };
    let Some(p) = Pelagos::with_images(&[]) else {
        return;
    };
    let pid = std::process::id();
    // A unique image, so skopeo cannot substitute a gzip blob it has seen before.
    let (zstd, marker) = unique_image_with(
        &p,
        &reg,
        "pelagos-test/multi",
        &format!("zstd-{pid}"),
        "amd64",
        &["--format", "oci", "--dest-compress-format", "zstd"],
    );
    let raw = skopeo_inspect(&format!("docker://{zstd}"), true);
    assert!(
        raw.contains("tar+zstd"),
        "skopeo did not write zstd layers: {raw}"
    );
    p.ok(&["pull", &zstd]);
    let layers: Vec<String> =
        serde_json::from_str(&p.inspect(&zstd, "{{json .RootFS.Layers}}")).unwrap();
    let diff_id = &layers[0];
    let unpacked = p
        .data
        .join("image/layers")
        .join(diff_id.trim_start_matches("sha256:"))
        .join("diff/marker");
    assert_eq!(std::fs::read_to_string(&unpacked).unwrap(), marker);

    // An arm64 image in the same repository, then an index over both.
    let (arm, _) = unique_image(
        &p,
        &reg,
        "pelagos-test/multi",
        &format!("arm-{pid}"),
        "arm64",
    );
    let arm_raw = skopeo_inspect(&format!("docker://{arm}"), true);
    let digest_of = |raw: &str| {
        use sha2::Digest as _;
        format!(
            "sha256:{}",
            hex::encode(sha2::Sha256::digest(raw.as_bytes()))
        )
    };
    let entry = |raw: &str, arch: &str| {
        let m: serde_json::Value = serde_json::from_str(raw).unwrap();
        serde_json::json!({
            "mediaType": m["mediaType"].as_str().unwrap_or("application/vnd.oci.image.manifest.v1+json"),
            "digest": digest_of(raw), "size": raw.len(),
            "platform": {"os": "linux", "architecture": arch}
        })
    };
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [entry(&arm_raw, "arm64"), entry(&raw, "amd64")]
    });
    let multi = format!("{reg}/pelagos-test/multi:index-{pid}");
    let out = Command::new("curl")
        .args([
            "-sf",
            "-X",
            "PUT",
            "-H",
            "Content-Type: application/vnd.oci.image.index.v1+json",
            "--data-binary",
        ])
        .arg(index.to_string())
        .arg(format!(
            "http://{reg}/v2/pelagos-test/multi/manifests/index-{pid}"
        ))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "PUT index: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let q = Pelagos::with_images(&[]).unwrap();
    let out = q.ok(&["pull", &multi]);
    assert!(
        out.contains(&format!("Digest: {}", digest_of(&index.to_string()))),
        "{out}"
    );
    assert_eq!(q.inspect(&multi, "{{.Architecture}}"), "amd64");
    q.ok(&["pull", "--platform", "linux/arm64", &multi]);
    assert_eq!(q.inspect(&multi, "{{.Architecture}}"), "arm64");
    q.fails(
        &["pull", "--platform", "linux/s390x", &multi],
        1,
        "no matching manifest for linux/s390x",
    );
    q.fails(
        &["pull", "--platform", "linux", &multi],
        1,
        "invalid platform",
    );
}

/// Two pulls of the same new image at once both succeed, and the registry served the
/// layer blob once (the per-blob lock): its access log counts the GETs.
#[test]
fn concurrent_pulls_fetch_a_layer_once() {
    let Some(reg) = registry() else { return };
    let Some(p) = Pelagos::with_images(&[]) else {
        return;
    };
    let (name, marker) = unique_image(
        &p,
        &reg,
        "pelagos-test/concurrent",
        &std::process::id().to_string(),
        "amd64",
    );
    let blob = registry_blob_with(&marker);
    let hex = blob
        .parent()
        .and_then(|d| d.file_name())
        .unwrap()
        .to_string_lossy()
        .into_owned();
    let a = p.spawn(&["pull", "-q", &name]);
    let b = p.spawn(&["pull", "-q", &name]);
    for c in [a, b] {
        let out = c.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let log = std::fs::read_to_string(registry_dir().join("open.log")).unwrap();
    let gets = log
        .lines()
        .filter(|l| {
            l.contains(&format!(
                "\"GET /v2/pelagos-test/concurrent/blobs/sha256:{hex}"
            ))
        })
        .count();
    assert_eq!(gets, 1, "layer blob fetched {gets} times");
    assert_eq!(p.ok(&["images", "-q"]).lines().count(), 1);
}

/// daemon.json: `registry-mirrors` serve docker.io images (docker.io itself is never
/// asked: HTTPS goes to a dead loopback proxy, so a fallback would fail the test), and
/// `data-root` moves the store when no flag or environment variable names one.
#[test]
fn daemon_json_mirrors_and_data_root() {
    let Some(reg) = registry() else { return };
    let Some(p) = Pelagos::with_images(&[]) else {
        return;
    };
    let pid = std::process::id();
    skopeo_push(
        &p,
        "busybox-legacy.tar",
        &format!("{reg}/library/mirrored:{pid}"),
    );
    let data_root = p.dir.path().join("from-daemon-json");
    let config = p.dir.path().join("daemon.json");
    std::fs::write(
        &config,
        serde_json::json!({
            "registry-mirrors": [format!("http://{reg}")],
            "data-root": data_root,
            "ip-forward": false,
            "dns": ["127.0.0.1"],
            "log-driver": "ignored-by-pelagos"
        })
        .to_string(),
    )
    .unwrap();
    let run = |args: &[&str]| {
        let mut c = p.cmd(args);
        c.env_remove("PELAGOS_DATA_ROOT")
            .env("PELAGOS_CONFIG", &config)
            .env("HTTPS_PROXY", "http://127.0.0.1:1")
            .env("https_proxy", "http://127.0.0.1:1")
            .env("NO_PROXY", "127.0.0.1,localhost")
            .env("no_proxy", "127.0.0.1,localhost");
        let out = c.output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let (code, out) = run(&["pull", &format!("mirrored:{pid}")]);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("docker.io/library/mirrored:{pid}")),
        "{out}"
    );
    let (code, out) = run(&["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("mirrored:{pid}")), "{out}");
    assert!(
        data_root.join("image/imagedb").is_dir(),
        "data-root not used"
    );
    // The harness's own root did not get the image.
    assert_eq!(p.ok(&["images", "-q"]).trim(), "");
    std::fs::write(&config, "{not json").unwrap();
    let (code, out) = run(&["images"]);
    assert_eq!(code, 125, "{out}");
    assert!(out.contains("daemon.json"), "{out}");
}

/// A registry with basic auth: anonymous pulls are refused, `login` checks and stores the
/// credentials in the docker CLI's config.json format, pulls then work, `logout` forgets.
#[test]
fn login_pull_logout_with_basic_auth() {
    let Some(reg) = registry() else { return };
    let Some(p) = Pelagos::with_images(&[]) else {
        return;
    };
    let (host, port) = reg.rsplit_once(':').unwrap();
    let auth_reg = format!("{host}:{}", port.parse::<u16>().unwrap() + 1);
    let name = format!("{auth_reg}/pelagos-test/private:{}", std::process::id());
    let src = format!(
        "docker-archive:{}",
        p.fixtures.join("busybox.tar").display()
    );
    skopeo_copy(&src, &name, Some("pelagos:pelagos-secret"));
    // Private docker config for this test.
    let cfg_dir = p.dir.path().join("docker-config");
    let with_cfg = |args: &[&str]| {
        let out = p.cmd(args).env("DOCKER_CONFIG", &cfg_dir).output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, _, err) = with_cfg(&["pull", &name]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("authentication required"), "{err}");
    let (code, _, err) = with_cfg(&["login", "-u", "pelagos", "-p", "wrong", &auth_reg]);
    assert_ne!(code, 0);
    assert!(err.contains("incorrect username or password"), "{err}");
    assert!(!cfg_dir.join("config.json").exists());
    let (code, out, err) = with_cfg(&["login", "-u", "pelagos", "-p", "pelagos-secret", &auth_reg]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("Login Succeeded"), "{out}");
    let cfg: serde_json::Value =
        serde_json::from_slice(&std::fs::read(cfg_dir.join("config.json")).unwrap()).unwrap();
    assert!(cfg["auths"][&auth_reg]["auth"].is_string(), "{cfg}");
    let (code, out, err) = with_cfg(&["pull", &name]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, _) = with_cfg(&["logout", &auth_reg]);
    assert_eq!(code, 0);
    assert!(out.contains("Removing login credentials"), "{out}");
    // Like docker, a pull always asks the registry for the manifest: refused again.
    let (code, _, err) = with_cfg(&["pull", &name]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("authentication required"), "{err}");
}

/// A pull killed mid-download leaves the store consistent: no image, and the next run
/// (any command opening the store) removes the dead pull's temp files; pulling again then
/// works from scratch.
#[test]
fn killed_pull_leaves_a_consistent_store_and_the_next_pull_works() {
    let Some(reg) = registry() else { return };
    let Some(p) = Pelagos::with_images(&[]) else {
        return;
    };
    // 40 MB of random data: incompressible, so the download takes a while on loopback.
    let layer = p.dir.path().join("big.tar");
    {
        use std::io::Read;
        let mut data = Vec::new();
        std::fs::File::open("/dev/urandom")
            .unwrap()
            .take(40 << 20)
            .read_to_end(&mut data)
            .unwrap();
        let mut b = tar::Builder::new(std::fs::File::create(&layer).unwrap());
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, "random.bin", &data[..]).unwrap();
        b.finish().unwrap();
    }
    let archive = mkimage(&p, &[&layer], "pelagos-test/big:1", "amd64");
    let name = format!("{reg}/pelagos-test/big:{}", std::process::id());
    skopeo_copy(
        &format!("docker-archive:{}", archive.display()),
        &name,
        None,
    );

    let mut child = p.spawn(&["pull", "-q", &name]);
    let blobs = p.data.join("image/blobs/sha256");
    let in_flight = || {
        std::fs::read_dir(&blobs)
            .into_iter()
            .flatten()
            .flatten()
            .any(|e| {
                e.file_name().to_string_lossy().starts_with(".in-")
                    && e.metadata().is_ok_and(|m| m.len() > 0)
            })
    };
    let caught = common::poll_until(std::time::Duration::from_secs(20), in_flight);
    child.kill().unwrap();
    let _ = child.wait();
    assert!(caught, "the pull never started downloading");
    // The dead pull's leftovers are still there until the store is next opened.
    assert_eq!(
        p.ok(&["images", "-q"]).trim(),
        "",
        "a killed pull stored an image"
    );
    let leftovers = |sub: &str, prefix: &str| -> Vec<String> {
        std::fs::read_dir(p.data.join(sub))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with(prefix))
            .collect()
    };
    assert!(
        leftovers("image/blobs/sha256", ".in-").is_empty(),
        "blob temp left"
    );
    assert!(
        leftovers("image/layers", ".tmp-").is_empty(),
        "unpack dir left"
    );
    let out = p.ok(&["pull", &name]);
    assert!(out.contains("Pull complete"), "{out}");
    assert_eq!(p.ok(&["images", "-q"]).lines().count(), 1);
}

/// A registry with anonymous bearer-token auth, as Docker Hub works (the registry answers
/// 401 with `WWW-Authenticate: Bearer realm=...`; integration/token_server.py issues JWTs):
/// pull and push both go through the token flow without any login.
#[test]
fn bearer_token_registry_pull_and_push() {
    let Some(reg) = registry() else { return };
    let Some(p) = Pelagos::with_images(&[]) else {
        return;
    };
    let (host, port) = reg.rsplit_once(':').unwrap();
    let token_reg = format!("{host}:{}", port.parse::<u16>().unwrap() + 2);
    let pid = std::process::id();
    // Anonymous requests are refused with a bearer challenge.
    let out = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-D", "-"])
        .arg(format!("http://{token_reg}/v2/"))
        .output()
        .unwrap();
    let headers = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
    assert!(
        headers.contains("401") && headers.contains("bearer realm"),
        "{headers}"
    );

    let name = format!("{token_reg}/pelagos-test/tokened:{pid}");
    skopeo_push(&p, "busybox-legacy.tar", &name);
    let out = p.ok(&["pull", &name]);
    assert!(out.contains("Pull complete"), "{out}");
    assert_eq!(p.inspect(&name, "{{.Id}}"), fixture_id(&p, "busybox"));
    let other = format!("{token_reg}/pelagos-test/tokened-push:{pid}");
    p.ok(&["tag", &name, &other]);
    let out = p.ok(&["push", &other]);
    assert!(out.contains("digest: sha256:"), "{out}");
    let q = Pelagos::with_images(&[]).unwrap();
    q.ok(&["pull", &other]);
    assert_eq!(q.inspect(&other, "{{.Id}}"), fixture_id(&p, "busybox"));
}

/// A registry serving a layer that tries to climb out with `../`: the pull is refused
/// naming the entry, nothing is written outside the store, and nothing is stored.
#[test]
fn hostile_layer_from_a_registry_is_refused() {
    let Some(reg) = registry() else { return };
    let Some(p) = Pelagos::with_images(&[]) else {
        return;
    };
    let pid = std::process::id();
    let escape = format!("pelagos-escape-{pid}");
    let layer = p.dir.path().join("hostile.tar");
    // Python's tarfile writes `..` names as given (Rust's tar crate refuses to).
    let script = format!(
        "import tarfile,io\n\
         t=tarfile.open({:?},'w',format=tarfile.GNU_FORMAT)\n\
         for n in ['ok', '../../../../../../tmp/{escape}']:\n    \
             i=tarfile.TarInfo(n); d=b'x'; i.size=len(d); t.addfile(i, io.BytesIO(d))\n\
         t.close()\n",
        layer.display().to_string()
    );
    let out = Command::new("python3")
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let archive = mkimage(&p, &[&layer], "pelagos-test/hostile:1", "amd64");
    let name = format!("{reg}/pelagos-test/hostile:{pid}");
    skopeo_copy(
        &format!("docker-archive:{}", archive.display()),
        &name,
        None,
    );
    let err = p.fails(&["pull", &name], 1, "unsafe layer entry");
    assert!(err.contains("escape"), "{err}");
    assert!(!std::path::Path::new(&format!("/tmp/{escape}")).exists());
    assert_store_empty(&p);
}

/// A layer already unpacked from a load, pulled again as a differently compressed blob: the
/// pull keeps the registry's blob too (without unpacking again), so the pulled image can be
/// pushed and saved byte-exactly.
#[test]
fn loaded_then_pulled_image_can_be_pushed() {
    let Some(reg) = registry() else { return };
    let Some(p) = Pelagos::with_images(&[]) else {
        return;
    };
    let pid = std::process::id();
    // The archive holds the layer as a plain tar; skopeo gzips it for the registry, so the
    // registry's blob is not the one the load kept.
    let (name, _) = unique_image(&p, &reg, "pelagos-test/reloaded", &pid.to_string(), "amd64");
    let archive = p
        .dir
        .path()
        .join(format!("pelagos-test-reloaded-{pid}.tar"));
    p.ok(&["load", "-i", archive.to_str().unwrap()]);
    let layers_before = std::fs::read_dir(p.data.join("image/layers"))
        .unwrap()
        .count();
    let out = p.ok(&["pull", &name]);
    assert!(out.contains("Pull complete"), "{out}");
    assert_eq!(
        std::fs::read_dir(p.data.join("image/layers"))
            .unwrap()
            .count(),
        layers_before,
        "the layer was unpacked twice"
    );
    let other = format!("{reg}/pelagos-test/reloaded-push:{pid}");
    p.ok(&["tag", &name, &other]);
    let out = p.ok(&["push", &other]);
    let remote: serde_json::Value =
        serde_json::from_str(&skopeo_inspect(&format!("docker://{name}"), false)).unwrap();
    assert_eq!(pushed_digest(&out), remote["Digest"].as_str().unwrap());
    let saved = p.dir.path().join("reloaded.tar");
    p.ok(&["save", "-o", saved.to_str().unwrap(), &other]);
}
