//! Images as containers see them: many layers, each docker-save layout, whiteouts.

mod common;
use common::Pelagos;

/// 151 layers: more than overlayfs' legacy one-page option string can name, so this only
/// works through the per-layer `lowerdir+` mount API (or an equivalent).
#[test]
fn image_with_151_layers_runs_with_every_layer_visible() {
    let Some(p) = Pelagos::with_images(&["layers.tar"]) else {
        return;
    };
    let o = p.ok(&[
        "run",
        "--rm",
        "pelagos-test/layers:150",
        "sh",
        "-c",
        "cat /layers/top; ls /layers | wc -l; cat /layers/0 /layers/149",
    ]);
    assert_eq!(common::lines(&o), vec!["149", "151", "0", "149"]);
    let layers = p.ok(&[
        "image",
        "inspect",
        "-f",
        "{{json .RootFS.Layers}}",
        "pelagos-test/layers:150",
    ]);
    let n = serde_json::from_str::<Vec<String>>(layers.trim())
        .unwrap()
        .len();
    assert_eq!(n, 151);
}

#[test]
fn every_archive_layout_runs_the_same_image() {
    for archive in ["busybox.tar", "busybox-legacy.tar", "busybox-oci.tar"] {
        let Some(p) = Pelagos::with_images(&[archive]) else {
            return;
        };
        let o = p.ok(&["run", "--rm", "busybox", "sh", "-c", "id -un; ls /bin/sh"]);
        assert_eq!(common::lines(&o), vec!["root", "/bin/sh"], "{archive}");
    }
}

#[test]
fn whiteout_hides_the_base_file_and_writes_stay_in_the_container() {
    let Some(p) = Pelagos::with_config() else {
        return;
    };
    assert!(
        !p.ok(&["run", "--rm", "busybox", "cat", "/etc/motd"])
            .is_empty()
    );
    let o = p.out(&[
        "run",
        "--rm",
        "--entrypoint",
        "cat",
        "pelagos-test/config",
        "/etc/motd",
    ]);
    assert_ne!(o.code, 0, "{o:?}");
    // A file deleted in one container is still in the image for the next one.
    p.ok(&["run", "--rm", "busybox", "rm", "/bin/ls"]);
    p.ok(&["run", "--rm", "busybox", "ls", "/bin/ls"]);
}

/// `save` writes the Docker >= 25 layout (OCI layout + manifest.json) from the stored
/// blobs: `pelagos load` gets the same image back, and skopeo reads the archive both as a
/// docker-archive and as an OCI archive, with the digests pelagos stored.
#[test]
fn save_load_round_trip_and_skopeo_reads_the_archive() {
    let Some(p) = Pelagos::with_config() else {
        return;
    };
    let out = p.dir.path().join("saved.tar");
    p.ok(&[
        "save",
        "-o",
        out.to_str().unwrap(),
        "busybox",
        "pelagos-test/config",
    ]);
    let mut names = Vec::new();
    let mut ar = tar::Archive::new(std::fs::File::open(&out).unwrap());
    for e in ar.entries().unwrap() {
        names.push(e.unwrap().path().unwrap().to_string_lossy().into_owned());
    }
    for want in ["manifest.json", "index.json", "oci-layout"] {
        assert!(names.iter().any(|n| n == want), "{want} missing: {names:?}");
    }
    // The shared busybox layer is written once.
    let unique: std::collections::BTreeSet<_> = names.iter().collect();
    assert_eq!(unique.len(), names.len(), "duplicate entries: {names:?}");

    let q = Pelagos::with_images(&[]).unwrap();
    q.ok(&["load", "-i", out.to_str().unwrap()]);
    for img in ["busybox", "pelagos-test/config"] {
        assert_eq!(q.inspect(img, "{{.Id}}"), p.inspect(img, "{{.Id}}"));
    }
    assert_eq!(
        q.ok(&["run", "--rm", "busybox", "echo", "saved"]).trim(),
        "saved"
    );

    if which("skopeo") {
        // One image, so the OCI ref name (the tag, as Docker writes it) is unambiguous.
        let single = p.dir.path().join("single.tar");
        p.ok(&["save", "-o", single.to_str().unwrap(), "busybox"]);
        for transport in ["docker-archive", "oci-archive"] {
            let reference = if transport == "docker-archive" {
                format!("{transport}:{}:busybox:latest", single.display())
            } else {
                format!("{transport}:{}:latest", single.display())
            };
            let o = std::process::Command::new("skopeo")
                .args(["inspect", "--config", &reference])
                .output()
                .unwrap();
            assert!(
                o.status.success(),
                "{transport}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            let cfg = String::from_utf8_lossy(&o.stdout);
            assert!(cfg.contains("\"architecture\""), "{cfg}");
        }
    }
    // Saving to a terminal-less stdout works too; an unknown image is an error and leaves
    // no file behind.
    let bad = p.dir.path().join("bad.tar");
    p.fails(
        &["save", "-o", bad.to_str().unwrap(), "nope:1"],
        1,
        "No such image",
    );
    assert!(!bad.exists());
    let left: Vec<_> = std::fs::read_dir(p.dir.path())
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(".pelagos-save"))
        .collect();
    assert!(left.is_empty(), "temp files left: {left:?}");
}

fn which(cmd: &str) -> bool {
    std::process::Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `history` lists the config's history newest first with the image ID on top; `image
/// prune` removes only dangling images by default and every unused one with `-a`, never
/// one a container uses; `system df` counts images, containers and volumes.
#[test]
fn history_prune_and_system_df() {
    let Some(p) = Pelagos::with_config() else {
        return;
    };
    let hist = p.ok(&["history", "busybox"]);
    let mut lines = hist.lines();
    assert!(lines.next().unwrap().starts_with("IMAGE"), "{hist}");
    let top = lines.next().unwrap();
    let id = p.inspect("busybox", "{{.Id}}");
    assert!(
        top.starts_with(&id["sha256:".len()..]["".len()..12 + "".len()]),
        "{hist}"
    );
    assert!(
        hist.contains("mkimage.py") || hist.contains("<missing>"),
        "{hist}"
    );
    assert_eq!(
        p.ok(&["history", "-q", "busybox"])
            .lines()
            .next()
            .unwrap()
            .trim(),
        &id["sha256:".len().."sha256:".len() + 12]
    );

    // A dangling image: untag config (busybox shares its base layer).
    let config_id = p.inspect("pelagos-test/config", "{{.Id}}");
    p.ok(&["tag", "pelagos-test/config", "keep:me"]);
    p.ok(&["rmi", "pelagos-test/config"]);
    let out = p.ok(&["image", "prune", "-f"]);
    assert!(out.contains("Total reclaimed space"), "{out}");
    assert!(!out.contains(&config_id), "tagged image pruned: {out}");
    p.ok(&["rmi", "keep:me"]);
    assert!(p.ok(&["images", "-q"]).lines().count() == 1);

    // In use by a (stopped) container: `prune -a` keeps it.
    p.ok(&["create", "--name", "user", "busybox", "true"]);
    p.ok(&["volume", "create", "dfvol"]);
    let df = p.ok(&["system", "df"]);
    for want in [
        "TYPE",
        "Images",
        "Containers",
        "Local Volumes",
        "Build Cache",
    ] {
        assert!(df.contains(want), "{want} missing: {df}");
    }
    let images_row = df.lines().find(|l| l.starts_with("Images")).unwrap();
    let cols: Vec<&str> = images_row.split_whitespace().collect();
    assert_eq!(&cols[1..3], &["1", "1"], "{df}");
    let vol_row = df.lines().find(|l| l.starts_with("Local Volumes")).unwrap();
    assert_eq!(vol_row.split_whitespace().nth(2), Some("1"), "{df}");
    let out = p.ok(&["image", "prune", "-a", "-f"]);
    assert!(!out.contains("deleted:"), "{out}");
    assert_eq!(p.ok(&["images", "-q"]).lines().count(), 1);
    p.ok(&["rm", "user"]);
    let out = p.ok(&["image", "prune", "-a", "-f"]);
    assert!(out.contains(&format!("deleted: {id}")), "{out}");
    assert_eq!(p.ok(&["images", "-q"]).trim(), "");
    let layers = std::fs::read_dir(p.data.join("image/layers"))
        .unwrap()
        .count();
    let blobs = std::fs::read_dir(p.data.join("image/blobs/sha256"))
        .unwrap()
        .count();
    assert_eq!((layers, blobs), (0, 0), "store not empty after prune -a");
}
