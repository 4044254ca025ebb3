//! The image manifest push and save send: the one the image came with when it still
//! describes the stored blobs (so its digest does not change), else a fresh OCI manifest.

use super::ImageStore;
use super::records::StoredImage;
use crate::digest::Digest;
use crate::error::{Error, Result};

pub const MEDIA_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MEDIA_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

pub struct ImageManifest {
    pub bytes: Vec<u8>,
    pub digest: Digest,
    pub media_type: String,
}

impl ImageStore {
    /// Checks that every blob of `stored` is present (images recorded before blobs were
    /// kept cannot be pushed or saved byte-exactly) and returns its manifest.
    pub(super) fn manifest_for(&self, stored: &StoredImage, name: &str) -> Result<ImageManifest> {
        if stored.layer_blobs.len() != stored.layers.len()
            || stored
                .layer_blobs
                .iter()
                .any(|b| !self.blobs.exists(&b.digest))
        {
            return Err(Error::InvalidArgument(format!(
                "image {name} has no stored layer blobs (it was stored by an older pelagos); pull or load it again"
            )));
        }
        if let Some(md) = &stored.manifest_digest
            && let Ok(bytes) = self.blobs.get(md)
            && let Some(media_type) = describes(&bytes, stored)
        {
            return Ok(ImageManifest {
                bytes,
                digest: md.clone(),
                media_type,
            });
        }
        let config_size = std::fs::metadata(self.blobs.path(&stored.id))
            .map_err(|e| Error::path(self.blobs.path(&stored.id), e))?
            .len();
        let layers: Vec<serde_json::Value> = stored
            .layer_blobs
            .iter()
            .map(|b| {
                serde_json::json!({
                    "mediaType": b.media_type,
                    "digest": b.digest.to_string(),
                    "size": b.size,
                })
            })
            .collect();
        let doc = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_OCI_MANIFEST,
            "config": {
                "mediaType": MEDIA_OCI_CONFIG,
                "digest": stored.id.to_string(),
                "size": config_size,
            },
            "layers": layers,
        });
        // serde_json's map keeps keys sorted, so the same image always gets the same bytes
        // (and digest).
        let bytes = serde_json::to_vec(&doc).map_err(|e| Error::Internal(e.to_string()))?;
        Ok(ImageManifest {
            digest: Digest::of_bytes(&bytes),
            bytes,
            media_type: MEDIA_OCI_MANIFEST.into(),
        })
    }
}

/// The manifest's media type if it is an image manifest naming exactly this image's
/// config and layer blobs.
fn describes(bytes: &[u8], stored: &StoredImage) -> Option<String> {
    let doc: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    if doc["config"]["digest"].as_str()? != stored.id.to_string() {
        return None;
    }
    let layers = doc["layers"].as_array()?;
    if layers.len() != stored.layer_blobs.len()
        || layers
            .iter()
            .zip(&stored.layer_blobs)
            .any(|(l, b)| l["digest"].as_str() != Some(&b.digest.to_string()))
    {
        return None;
    }
    Some(
        doc["mediaType"]
            .as_str()
            .unwrap_or(MEDIA_OCI_MANIFEST)
            .to_string(),
    )
}
