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
