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

/// Pushes a fixture archive to the test registry with skopeo.
fn skopeo_push(p: &Pelagos, archive: &str, dest: &str) {
    let src = format!("docker-archive:{}", p.fixtures.join(archive).display());
    let out = Command::new("skopeo")
        .args([
            "copy",
            "--dest-tls-verify=false",
            &src,
            &format!("docker://{dest}"),
        ])
        .output()
        .expect("run skopeo");
    assert!(
        out.status.success(),
        "skopeo: {}",
        String::from_utf8_lossy(&out.stderr)
    );
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
    p.fails(&["pull", "UPPER/Case"], 125, "invalid reference format");
    assert_eq!(p.ok(&["images", "-q"]).trim(), "");
}
