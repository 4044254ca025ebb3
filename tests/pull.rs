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

/// A registry serving a blob whose bytes do not match its digest: the pull fails naming
/// the blob, and nothing (image, layer, temp file) is stored.
#[test]
fn tampered_blob_is_rejected_and_nothing_is_stored() {
    let Some(reg) = registry() else { return };
    let Some(p) = Pelagos::with_images(&[]) else {
        return;
    };
    // A unique one-layer image, so no other test shares the blob we corrupt.
    let marker = format!("{}-{:?}", std::process::id(), std::time::SystemTime::now());
    let layer = p.dir.path().join("layer.tar");
    {
        let mut b = tar::Builder::new(std::fs::File::create(&layer).unwrap());
        let mut h = tar::Header::new_gnu();
        h.set_size(marker.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, "marker", marker.as_bytes()).unwrap();
        b.finish().unwrap();
    }
    let archive = p.dir.path().join("img.tar");
    let name = format!("{reg}/pelagos-test/tampered:{}", std::process::id());
    let out = Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/integration/fixtures/mkimage.py"
        ))
        .args(["rootfs", "--layer"])
        .arg(&layer)
        .args(["--tag", "pelagos-test/tampered:1", "--out"])
        .arg(&archive)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    skopeo_copy(
        &format!("docker-archive:{}", archive.display()),
        &name,
        None,
    );
    // Corrupt our layer's blob in the registry's storage, found by its unique content
    // (skopeo may have gzip'd it).
    let dir = std::env::var("REGISTRY_DIR").unwrap_or_else(|_| "/tmp/pelagos-test-registry".into());
    let mut found: Option<std::path::PathBuf> = None;
    let mut stack = vec![std::path::PathBuf::from(dir).join("data")];
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
                found = Some(path);
            }
        }
    }
    let blob = found.expect("our layer blob in the registry's storage");
    let mut bytes = std::fs::read(&blob).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&blob, &bytes).unwrap();

    let err = p.fails(&["pull", &name], 1, "digest mismatch");
    assert!(err.contains("layer blob sha256:"), "{err}");
    assert_eq!(p.ok(&["images", "-q"]).trim(), "");
    let layers = p.data.join("image/layers");
    let n = std::fs::read_dir(&layers).map(|d| d.count()).unwrap_or(0);
    assert_eq!(n, 0, "layers stored after a failed pull");
    let tmp = std::fs::read_dir(p.data.join("image/tmp"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(tmp, 0, "temp files left behind");
    let blobs: Vec<_> = std::fs::read_dir(p.data.join("image/blobs/sha256"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(blobs.is_empty(), "blobs left behind: {blobs:?}");
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
