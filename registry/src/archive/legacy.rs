//! The `docker save` layout with `manifest.json`:
//! `[{"Config": "<hex>.json", "RepoTags": ["busybox:latest"], "Layers": ["<id>/layer.tar"]}]`.
//! Docker >= 25 writes the same file with `blobs/sha256/...` paths.

use super::spool::SpooledArchive;
use super::{ArchiveImage, LayerSource, checked_image};
use crate::digest::{Digest, is_full_hex};
use crate::error::{Error, Result};
use crate::reference::Reference;
use serde::Deserialize;

pub const MANIFEST: &str = "manifest.json";

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Entry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    #[serde(default)]
    layers: Option<Vec<String>>,
}

pub fn read(archive: &SpooledArchive) -> Result<Vec<ArchiveImage>> {
    let bytes = archive.read_small(MANIFEST)?;
    let entries: Vec<Entry> =
        serde_json::from_slice(&bytes).map_err(|e| Error::archive(format!("{MANIFEST}: {e}")))?;
    let mut images = Vec::new();
    for entry in entries {
        let config_bytes = archive.read_small(&entry.config)?;
        let digest = Digest::of_bytes(&config_bytes);
        // The config's file name is its digest in every layout Docker writes; a mismatch
        // means a corrupt or tampered archive.
        let stem = entry
            .config
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .trim_end_matches(".json");
        if is_full_hex(stem) && stem != digest.hex() {
            return Err(Error::DigestMismatch {
                what: format!("image config {}", entry.config),
                expected: format!("sha256:{stem}"),
                actual: digest.to_string(),
            });
        }
        let tags = entry
            .repo_tags
            .unwrap_or_default()
            .iter()
            .map(|t| Reference::parse(t))
            .collect::<Result<Vec<_>>>()?;
        let layers = entry
            .layers
            .unwrap_or_default()
            .into_iter()
            .map(|path| LayerSource {
                blob_digest: blob_digest_from_path(&path),
                path,
            })
            .collect();
        images.push(checked_image(config_bytes, digest, layers, tags, None)?);
    }
    Ok(images)
}

/// `blobs/sha256/<hex>` paths name their content's digest; worth checking when present.
fn blob_digest_from_path(path: &str) -> Option<Digest> {
    let hex = super::spool::clean(path)
        .strip_prefix("blobs/sha256/")?
        .to_string();
    Digest::from_hex(&hex).ok()
}
