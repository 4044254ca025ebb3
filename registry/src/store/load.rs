//! `docker load`: imports every image of an archive. Layers are unpacked and verified
//! without holding the store lock (they are immutable and keyed by content); the records
//! and tags are then committed under the lock. If anything fails, layers this call created
//! and nothing references are removed again, so a failed load leaves no trace.

use super::ImageStore;
use super::records::StoredImage;
use crate::archive::spool::SpooledArchive;
use crate::archive::{ArchiveImage, read_images};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::reference::Reference;
use std::collections::BTreeSet;
use std::io::Read;
use std::path::PathBuf;

/// What one image of a load produced.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedImage {
    pub id: Digest,
    /// Tags now pointing at the image (empty: Docker prints "Loaded image ID: <id>").
    pub tags: Vec<Reference>,
    /// Tags that moved here from another image: (tag, previous image ID). Docker prints
    /// "The image <tag> already exists, renaming the old one with ID <id> to empty string".
    pub replaced: Vec<(Reference, Digest)>,
}

/// What a load or pull added to the store, so a failure can take it back.
#[derive(Default)]
pub(super) struct Created {
    pub layers: Vec<Digest>,
    pub blobs: Vec<Digest>,
}

/// Deletes the spooled archive however the load ends.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl ImageStore {
    /// Imports a `docker save` archive (legacy or OCI layout, optionally gzip'd) or a plain
    /// OCI image-layout tar.
    pub fn load_archive<R: Read>(&self, reader: R) -> Result<Vec<LoadedImage>> {
        let spool_path = TempFile(self.root.join("tmp").join(format!(
            "{}.tar",
            super::fsutil::temp_name(super::SPOOL_PREFIX)
        )));
        let archive = SpooledArchive::new(reader, &spool_path.0)?;
        let mut images = read_images(&archive)?;
        let mut created = Created::default();
        let result = self
            .import_layers(&archive, &mut images, &mut created)
            .and_then(|()| self.commit(&images));
        match result {
            Ok(loaded) => Ok(loaded),
            Err(e) => {
                if let Err(cleanup) = self.discard_unreferenced(&created) {
                    tracing::warn!(error = %cleanup, "cleaning up after a failed load");
                }
                Err(e)
            }
        }
    }

    fn import_layers(
        &self,
        archive: &SpooledArchive,
        images: &mut [ArchiveImage],
        created: &mut Created,
    ) -> Result<()> {
        for image in images.iter_mut() {
            let mut blobs = Vec::with_capacity(image.layers.len());
            for (diff_id, source) in image.diff_ids.iter().zip(&image.layers) {
                if let Some(blob) = &source.blob_digest {
                    archive.verify(&source.path, blob)?;
                }
                // The blob is kept as it is in the archive, so a later push or save sends
                // the same bytes and the config's diff-ids stay true.
                let (digest, size) = match &source.blob_digest {
                    Some(d) if self.blobs.exists(d) => {
                        let size = std::fs::metadata(self.blobs.path(d))
                            .map(|m| m.len())
                            .map_err(|e| Error::path(self.blobs.path(d), e))?;
                        (d.clone(), size)
                    }
                    _ => {
                        let (d, size, new) = self.blobs.put_stream(archive.open(&source.path)?)?;
                        if new {
                            created.blobs.push(d.clone());
                        }
                        (d, size)
                    }
                };
                let media_type =
                    super::blobs::layer_media_type(&self.blobs.head(&digest)?).to_string();
                blobs.push(super::LayerBlob {
                    digest,
                    size,
                    media_type,
                });
                if self.layers.exists(diff_id) {
                    continue;
                }
                if self
                    .layers
                    .import(diff_id, archive.open(&source.path)?, &source.path)?
                {
                    created.layers.push(diff_id.clone());
                }
            }
            image.layer_blobs = blobs;
        }
        Ok(())
    }

    pub(super) fn commit(&self, images: &[ArchiveImage]) -> Result<Vec<LoadedImage>> {
        let _lock = self.lock()?;
        let mut index = self.load_index()?;
        let mut loaded = Vec::new();
        for image in images {
            let mut size = 0;
            for diff_id in &image.diff_ids {
                // An `rmi` in another process may have collected a layer we found present
                // before taking the lock.
                if !self.layers.exists(diff_id) {
                    return Err(Error::Conflict(format!(
                        "layer {diff_id} was removed by a concurrent operation; retry the load"
                    )));
                }
                size += self.layers.size(diff_id)?;
            }
            self.blobs.put(&image.config_digest, &image.config_bytes)?;
            if let Some((digest, bytes)) = &image.manifest {
                self.blobs.put(digest, bytes)?;
            }
            let previous = self.images.get(&image.config_digest)?;
            let stored = StoredImage {
                id: image.config_digest.clone(),
                layers: image.diff_ids.clone(),
                created: image.config.created.clone(),
                size,
                manifest_digest: image
                    .manifest
                    .as_ref()
                    .map(|(d, _)| d.clone())
                    .or_else(|| previous.as_ref().and_then(|p| p.manifest_digest.clone())),
                layer_blobs: if image.layer_blobs.len() == image.diff_ids.len() {
                    image.layer_blobs.clone()
                } else {
                    previous
                        .as_ref()
                        .map(|p| p.layer_blobs.clone())
                        .unwrap_or_default()
                },
                loaded_at: previous
                    .and_then(|p| p.loaded_at)
                    .or_else(|| Some(chrono::Utc::now().to_rfc3339())),
            };
            self.images.put(&stored)?;
            let mut replaced = Vec::new();
            for tag in &image.tags {
                if let Some(old) = index.set(tag, &image.config_digest) {
                    replaced.push((tag.clone(), old));
                }
            }
            loaded.push(LoadedImage {
                id: image.config_digest.clone(),
                tags: image.tags.clone(),
                replaced,
            });
        }
        index.save(&self.index_path())?;
        Ok(loaded)
    }

    /// Removes what a failed load or pull created and no image record references.
    pub(super) fn discard_unreferenced(&self, created: &Created) -> Result<()> {
        if created.layers.is_empty() && created.blobs.is_empty() {
            return Ok(());
        }
        let _lock = self.lock()?;
        let used = self.referenced_layers()?;
        for l in &created.layers {
            if !used.contains(l) {
                self.layers.remove(l)?;
            }
        }
        let used_blobs = self.referenced_blobs()?;
        for b in &created.blobs {
            if !used_blobs.contains(b) {
                self.blobs.remove(b)?;
            }
        }
        Ok(())
    }

    /// Every blob an image record names: configs, manifests and layer blobs.
    pub(super) fn referenced_blobs(&self) -> Result<BTreeSet<Digest>> {
        let mut out = BTreeSet::new();
        for i in self.images.all()? {
            out.insert(i.id.clone());
            out.extend(i.manifest_digest.clone());
            out.extend(i.layer_blobs.into_iter().map(|b| b.digest));
        }
        Ok(out)
    }

    pub(super) fn referenced_layers(&self) -> Result<BTreeSet<Digest>> {
        Ok(self
            .images
            .all()?
            .into_iter()
            .flat_map(|i| i.layers)
            .collect())
    }
}
