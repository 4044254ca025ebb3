//! `system df`: disk usage of images, containers and volumes.

use super::Ctx;
use super::images::human_size;
use crate::errors::CliResult;
use crate::format;
use serde_json::json;
use std::collections::BTreeSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

pub fn df(ctx: &Ctx, verbose: bool) -> CliResult<i32> {
    let store = ctx.images()?;
    let engine = ctx.engine()?;
    let containers = engine.containers.list()?;
    let used_images: BTreeSet<String> = containers.iter().map(|c| c.record.image.clone()).collect();
    let images = store.usage(&|id| used_images.contains(id))?;

    let mut ct_size = 0u64;
    let mut ct_reclaim = 0u64;
    let mut ct_active = 0usize;
    let mut ct_rows = Vec::new();
    for c in &containers {
        let size = dir_size(&engine.paths(&c.record.id).upper());
        ct_size += size;
        if c.state.is_running() {
            ct_active += 1;
        } else {
            ct_reclaim += size;
        }
        ct_rows.push(json!({"ID": &c.record.id[..12.min(c.record.id.len())],
            "Image": c.record.config.image, "Size": human_size(size),
            "Status": c.state.status.as_str(), "Names": c.record.name.trim_start_matches('/')}));
    }

    let volumes = engine.volumes.list()?;
    let mut vol_size = 0u64;
    let mut vol_reclaim = 0u64;
    let mut vol_active = 0usize;
    let mut vol_rows = Vec::new();
    for v in &volumes {
        let size = dir_size(Path::new(&v.mountpoint));
        let users = engine.volume_users(&v.name)?.len();
        vol_size += size;
        if users > 0 {
            vol_active += 1;
        } else {
            vol_reclaim += size;
        }
        vol_rows
            .push(json!({"Name": v.name, "Links": users.to_string(), "Size": human_size(size)}));
    }

    let pct = |part: u64, whole: u64| match (part * 100).checked_div(whole) {
        Some(p) => format!("{} ({p}%)", human_size(part)),
        None => human_size(part),
    };
    let rows = vec![
        json!({"Type": "Images", "Total": images.total.to_string(), "Active": images.active.to_string(),
               "Size": human_size(images.size), "Reclaimable": pct(images.reclaimable, images.size)}),
        json!({"Type": "Containers", "Total": containers.len().to_string(), "Active": ct_active.to_string(),
               "Size": human_size(ct_size), "Reclaimable": pct(ct_reclaim, ct_size)}),
        json!({"Type": "Local Volumes", "Total": volumes.len().to_string(), "Active": vol_active.to_string(),
               "Size": human_size(vol_size), "Reclaimable": pct(vol_reclaim, vol_size)}),
        // pelagos has no builder yet, so there is no build cache to count.
        json!({"Type": "Build Cache", "Total": "0", "Active": "0", "Size": "0B", "Reclaimable": "0B"}),
    ];
    format::print_rows(
        &[
            ("TYPE", "Type"),
            ("TOTAL", "Total"),
            ("ACTIVE", "Active"),
            ("SIZE", "Size"),
            ("RECLAIMABLE", "Reclaimable"),
        ],
        &rows,
    );
    if verbose {
        println!("\nContainers space usage:\n");
        format::print_rows(
            &[
                ("CONTAINER ID", "ID"),
                ("IMAGE", "Image"),
                ("SIZE", "Size"),
                ("STATUS", "Status"),
                ("NAMES", "Names"),
            ],
            &ct_rows,
        );
        println!("\nLocal Volumes space usage:\n");
        format::print_rows(
            &[
                ("VOLUME NAME", "Name"),
                ("LINKS", "Links"),
                ("SIZE", "Size"),
            ],
            &vol_rows,
        );
    }
    Ok(0)
}

/// Apparent size of the regular files under `dir` (hard links counted once), without
/// following symlinks or crossing into other filesystems.
pub fn dir_size(dir: &Path) -> u64 {
    let Ok(root) = std::fs::symlink_metadata(dir) else {
        return 0;
    };
    let dev = root.dev();
    let mut seen = BTreeSet::new();
    let mut total = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.is_dir() {
                if m.dev() == dev {
                    stack.push(e.path());
                }
            } else if m.is_file() && (m.nlink() == 1 || seen.insert((m.dev(), m.ino()))) {
                total += m.len();
            }
        }
    }
    total
}
