//! Reading image archives: `docker save` output (the legacy `manifest.json` layout and the
//! OCI layout Docker >= 25 writes) and plain OCI image-layout tars. This module only finds
//! and checks the pieces; the store imports them.

mod legacy;
mod oci;
pub mod spool;

use crate::config::ImageConfig;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::reference::Reference;
use spool::SpooledArchive;

/// One image found in an archive, with its config already parsed and checked.
#[derive(Debug, Clone)]
pub struct ArchiveImage {
    pub config_bytes: Vec<u8>,
    pub config_digest: Digest,
    pub config: ImageConfig,
    /// Diff-ids from the config, bottom to top, parallel to `layers`.
    pub diff_ids: Vec<Digest>,
    pub layers: Vec<LayerSource>,
    pub tags: Vec<Reference>,
    /// The OCI manifest, when the archive had one.
    pub manifest: Option<(Digest, Vec<u8>)>,
    /// The layer blobs kept in the store, parallel to `diff_ids`; filled by the importer.
    pub layer_blobs: Vec<crate::store::LayerBlob>,
}

/// Where a layer's blob sits in the archive.
#[derive(Debug, Clone)]
pub struct LayerSource {
    pub path: String,
    /// The compressed blob's digest, when the archive names one (OCI layout).
    pub blob_digest: Option<Digest>,
}

/// Finds every image in the archive. `manifest.json` wins when both layouts are present,
/// as in Docker: it carries the tags in their plain form.
pub fn read_images(archive: &SpooledArchive) -> Result<Vec<ArchiveImage>> {
    let images = if archive.contains(legacy::MANIFEST) {
        legacy::read(archive)?
    } else if archive.contains(oci::INDEX) {
        oci::read(archive)?
    } else {
        return Err(Error::archive(
            "neither manifest.json nor index.json found (not a docker save or OCI archive)",
        ));
    };
    if images.is_empty() {
        return Err(Error::archive("the archive contains no images"));
    }
    Ok(images)
}

/// Parses a config and checks it against the layers the manifest lists.
fn checked_image(
    config_bytes: Vec<u8>,
    config_digest: Digest,
    layers: Vec<LayerSource>,
    tags: Vec<Reference>,
    manifest: Option<(Digest, Vec<u8>)>,
) -> Result<ArchiveImage> {
    let config = ImageConfig::parse(&config_bytes)
        .map_err(|e| Error::archive(format!("image config {config_digest}: {e}")))?;
    if config.rootfs.kind != "layers" {
        return Err(Error::archive(format!(
            "image config {config_digest}: unsupported rootfs type {:?}",
            config.rootfs.kind
        )));
    }
    let diff_ids = config
        .rootfs
        .diff_ids
        .iter()
        .map(|d| Digest::parse(d))
        .collect::<Result<Vec<_>>>()
        .map_err(|e| Error::archive(format!("image config {config_digest}: {e}")))?;
    if diff_ids.len() != layers.len() {
        return Err(Error::archive(format!(
            "image {config_digest}: config lists {} layers but the manifest has {}",
            diff_ids.len(),
            layers.len()
        )));
    }
    Ok(ArchiveImage {
        config_bytes,
        config_digest,
        config,
        diff_ids,
        layers,
        tags,
        manifest,
        layer_blobs: Vec::new(),
    })
}
