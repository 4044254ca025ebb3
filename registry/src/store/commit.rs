//! New images made here rather than pulled or loaded: `docker build` and `docker commit`.
//! A parent image's layers plus new layers (uncompressed tar files) and a config become
//! an image record like any other, so run, save, push and rmi treat it the same.

use super::load::Created;
use super::records::{LayerBlob, StoredImage};
use super::{ImageRecord, ImageStore};
use crate::config::ImageConfig;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::reference::Reference;
use std::path::PathBuf;

/// What a new image is made of.
pub struct NewImage {
    /// The image built upon, if any (`FROM scratch` has none).
    pub parent: Option<ImageRecord>,
    /// New layers on top of the parent's, bottom to top: uncompressed tar files whose
    /// sha256 is their diff-id (and, uncompressed, their blob digest too).
    pub layers: Vec<PathBuf>,
    /// The config; its `rootfs` is filled in here.
    pub config: ImageConfig,
    pub tags: Vec<Reference>,
}

impl ImageStore {
    /// Stores `new` and tags it. On failure nothing new stays behind.
    pub fn create_image(&self, new: NewImage) -> Result<ImageRecord> {
        let mut created = Created::default();
        let result = self.create_image_inner(new, &mut created);
        if result.is_err()
            && let Err(e) = self.discard_unreferenced(&created)
        {
            tracing::warn!(error = %e, "cleaning up after a failed image commit");
        }
        result
    }

    fn create_image_inner(&self, new: NewImage, created: &mut Created) -> Result<ImageRecord> {
        let (mut diff_ids, mut blobs) = match &new.parent {
            Some(p) => {
                let stored = self
                    .images
                    .get(&p.id)?
                    .ok_or_else(|| Error::NoSuchImage(p.id.to_string()))?;
                (stored.layers, stored.layer_blobs)
            }
            None => (Vec::new(), Vec::new()),
        };
        // Blobs are only meaningful when every layer has one.
        let mut blobs_complete = blobs.len() == diff_ids.len();
        for tar in &new.layers {
            let open = || std::fs::File::open(tar).map_err(|e| Error::path(tar, e));
            let (digest, size, fresh) = self.blobs.put_stream(open()?)?;
            if fresh {
                created.blobs.push(digest.clone());
            }
            let label = tar.display().to_string();
            if self.layers.import(&digest, open()?, &label)? {
                created.layers.push(digest.clone());
            }
            blobs.push(LayerBlob {
                digest: digest.clone(),
                size,
                media_type: super::blobs::layer_media_type(&self.blobs.head(&digest)?).to_string(),
            });
            diff_ids.push(digest);
        }
        blobs_complete &= blobs.len() == diff_ids.len();
        let mut config = new.config;
        config.rootfs.kind = "layers".into();
        config.rootfs.diff_ids = diff_ids.iter().map(|d| d.to_string()).collect();
        let bytes = serde_json::to_vec(&config)
            .map_err(|e| Error::Internal(format!("serialising an image config: {e}")))?;
        let id = Digest::of_bytes(&bytes);

        let _lock = self.lock()?;
        let mut size = 0;
        for d in &diff_ids {
            // An `rmi` elsewhere may have collected a parent layer meanwhile.
            if !self.layers.exists(d) {
                return Err(Error::Conflict(format!(
                    "layer {d} was removed by a concurrent operation; retry"
                )));
            }
            size += self.layers.size(d)?;
        }
        if !self.blobs.exists(&id) {
            created.blobs.push(id.clone());
        }
        self.blobs.put(&id, &bytes)?;
        self.images.put(&StoredImage {
            id: id.clone(),
            layers: diff_ids,
            created: config.created.clone(),
            size,
            manifest_digest: None,
            loaded_at: Some(chrono::Utc::now().to_rfc3339()),
            layer_blobs: if blobs_complete { blobs } else { Vec::new() },
        })?;
        let mut index = self.load_index()?;
        for t in &new.tags {
            index.set(t, &id);
        }
        index.save(&self.index_path())?;
        let stored = self
            .images
            .get(&id)?
            .ok_or_else(|| Error::Internal(format!("image {id} vanished after its commit")))?;
        Ok(self.record(stored, &index))
    }
}
