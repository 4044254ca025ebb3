//! The local image store, rooted at `<data_root>/image`:
//!
//! ```text
//! image/
//!   blobs/sha256/<hex>      configs and manifests, content-addressed
//!   layers/<hex>/diff       each layer unpacked once, keyed by diff-id, shared by images
//!   layers/<hex>/meta.json  layer size
//!   imagedb/<hex>.json      one record per image ID (= config digest)
//!   repositories.json       tag index: name -> reference -> image ID
//!   lock                    flock serialising metadata updates across processes
//!   tmp/                    spooled archives during load
//!   locks/<hex>.lock        per-blob flock: concurrent pulls fetch a layer once
//! ```

mod blobs;
mod commit;
mod fsutil;
mod housekeeping;
mod inspect;
mod layers;
mod load;
mod manifest;
mod pull;
mod push;
mod records;
mod remote;
mod remove;
mod save;
mod tags;

pub use commit::NewImage;
pub use housekeeping::{HistoryEntry, ImageUsage, Pruned};
pub use load::LoadedImage;
pub use pull::{PullEvent, PullOptions, Pulled, check_login};
pub use push::{PushEvent, Pushed};
pub use records::LayerBlob;
pub use remove::{ImageUser, Removed};

use crate::config::ImageConfig;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::reference::Reference;
use blobs::BlobStore;
use chrono::{DateTime, Utc};
use fsutil::{StoreLock, create_dir_all};
use layers::LayerStore;
use records::{ImageDb, StoredImage};
use std::path::{Path, PathBuf};
use tags::TagIndex;

/// One image as the CLI sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageRecord {
    /// The image ID: the digest of its config blob.
    pub id: Digest,
    /// Layer diff-ids, bottom to top.
    pub layers: Vec<Digest>,
    pub repo_tags: Vec<Reference>,
    pub repo_digests: Vec<Reference>,
    /// Creation time from the config, as written there.
    pub created_raw: Option<String>,
    pub created: Option<DateTime<Utc>>,
    /// Sum of the layers' content sizes in bytes.
    pub size: u64,
    pub manifest_digest: Option<Digest>,
}

impl ImageRecord {
    /// The image ID is the config digest; this names the role where that reads better.
    pub fn config_digest(&self) -> &Digest {
        &self.id
    }

    /// True when no tag or digest reference points at the image (`<none>:<none>`).
    pub fn is_dangling(&self) -> bool {
        self.repo_tags.is_empty() && self.repo_digests.is_empty()
    }
}

/// Spooled archives of loads in progress, under `tmp/`.
const SPOOL_PREFIX: &str = "load-";

pub struct ImageStore {
    root: PathBuf,
    blobs: BlobStore,
    layers: LayerStore,
    images: ImageDb,
}

impl ImageStore {
    /// Opens (creating if needed) the store under `<data_root>/image`.
    pub fn open(data_root: &Path) -> Result<Self> {
        let root = data_root.join("image");
        for sub in ["blobs/sha256", "layers", "imagedb", "tmp", "locks"] {
            create_dir_all(&root.join(sub))?;
        }
        let store = ImageStore {
            blobs: BlobStore::new(root.join("blobs/sha256")),
            layers: LayerStore::new(root.join("layers")),
            images: ImageDb::new(root.join("imagedb")),
            root,
        };
        store.layers.clean_stale();
        store.blobs.clean_stale();
        fsutil::clean_temps(
            &store.root.join("tmp"),
            SPOOL_PREFIX,
            std::time::Duration::from_secs(24 * 3600),
        );
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn lock(&self) -> Result<StoreLock> {
        StoreLock::acquire(&self.root.join("lock"))
    }

    fn index_path(&self) -> PathBuf {
        self.root.join("repositories.json")
    }

    fn load_index(&self) -> Result<TagIndex> {
        TagIndex::load(&self.index_path())
    }

    fn record(&self, stored: StoredImage, index: &TagIndex) -> ImageRecord {
        let refs = index.refs_for(&stored.id);
        let (repo_digests, repo_tags) = refs.into_iter().partition(|r| r.digest().is_some());
        let created = stored
            .created
            .as_deref()
            .and_then(|c| DateTime::parse_from_rfc3339(c).ok())
            .map(|c| c.with_timezone(&Utc));
        ImageRecord {
            id: stored.id,
            layers: stored.layers,
            repo_tags,
            repo_digests,
            created_raw: stored.created,
            created,
            size: stored.size,
            manifest_digest: stored.manifest_digest,
        }
    }

    /// Every image, newest first (the order `docker images` prints).
    pub fn list(&self) -> Result<Vec<ImageRecord>> {
        let index = self.load_index()?;
        let mut out: Vec<ImageRecord> = self
            .images
            .all()?
            .into_iter()
            .map(|s| self.record(s, &index))
            .collect();
        out.sort_by(|a, b| b.created.cmp(&a.created).then_with(|| a.id.cmp(&b.id)));
        Ok(out)
    }

    /// Finds an image by reference (`busybox`, `busybox:1`, `x@sha256:..`), full ID
    /// (`sha256:<hex>` or `<hex>`) or unique ID prefix, in Docker's order.
    pub fn resolve(&self, s: &str) -> Result<ImageRecord> {
        let index = self.load_index()?;
        let (id, _) = self.resolve_in(&index, s)?;
        let stored = self
            .images
            .get(&id)?
            .ok_or_else(|| Error::NoSuchImage(s.to_string()))?;
        Ok(self.record(stored, &index))
    }

    /// Resolves `s` to an image ID; the reference is returned when `s` matched a tag or
    /// digest reference (as opposed to an ID).
    fn resolve_in(&self, index: &TagIndex, s: &str) -> Result<(Digest, Option<Reference>)> {
        let full_id = s.strip_prefix("sha256:").unwrap_or(s).to_string();
        if crate::digest::is_full_hex(&full_id) {
            let id = Digest::from_hex(&full_id)?;
            return match self.images.get(&id)? {
                Some(_) => Ok((id, None)),
                None => Err(Error::NoSuchImage(s.to_string())),
            };
        }
        let parsed = Reference::parse(s);
        if let Ok(r) = &parsed
            && let Some(id) = index.get(r)
        {
            return Ok((id.clone(), Some(r.clone())));
        }
        if let Some(id) = self.search_prefix(s)? {
            return Ok((id, None));
        }
        match parsed {
            Ok(r) => Err(Error::NoSuchImage(r.familiar())),
            // Not a reference and not an ID: say why the reference was invalid, unless it
            // looked like an ID attempt.
            Err(e) if !s.starts_with("sha256:") => Err(e),
            Err(_) => Err(Error::NoSuchImage(s.to_string())),
        }
    }

    /// A unique image whose ID starts with `s` (hex, optionally after `sha256:`).
    fn search_prefix(&self, s: &str) -> Result<Option<Digest>> {
        let prefix = s.strip_prefix("sha256:").unwrap_or(s);
        if prefix.is_empty()
            || !prefix
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        {
            return Ok(None);
        }
        let matches: Vec<Digest> = self
            .images
            .ids()?
            .into_iter()
            .filter(|id| id.hex().starts_with(prefix))
            .collect();
        match matches.len() {
            0 => Ok(None),
            1 => Ok(matches.into_iter().next()),
            _ => Err(Error::InvalidArgument(format!(
                "image ID prefix {s} is ambiguous: it matches {} images",
                matches.len()
            ))),
        }
    }

    /// `docker tag SOURCE TARGET`: points TARGET (a tag; `:latest` by default) at the
    /// image SOURCE resolves to. A tag that pointed elsewhere moves.
    pub fn tag(&self, source: &str, target: &str) -> Result<Reference> {
        let target = Reference::parse(target)?;
        if target.digest().is_some() {
            return Err(Error::InvalidArgument(
                "refusing to create a tag with a digest reference".into(),
            ));
        }
        let _lock = self.lock()?;
        let mut index = self.load_index()?;
        let (id, _) = self.resolve_in(&index, source)?;
        if self.images.get(&id)?.is_none() {
            return Err(Error::NoSuchImage(source.to_string()));
        }
        index.set(&target, &id);
        index.save(&self.index_path())?;
        Ok(target)
    }

    /// The parsed config blob.
    pub fn config(&self, record: &ImageRecord) -> Result<ImageConfig> {
        let bytes = self.raw_config(record)?;
        ImageConfig::parse(&bytes)
            .map_err(|e| Error::Internal(format!("stored config {}: {e}", record.id)))
    }

    /// The config blob as stored (its sha256 is the image ID).
    pub fn raw_config(&self, record: &ImageRecord) -> Result<Vec<u8>> {
        self.blobs.get(&record.id)
    }

    /// The unpacked layer directories, bottom to top, ready to be overlayfs lowerdirs.
    pub fn layer_dirs(&self, record: &ImageRecord) -> Result<Vec<PathBuf>> {
        record
            .layers
            .iter()
            .map(|l| {
                if self.layers.exists(l) {
                    Ok(self.layers.diff_dir(l))
                } else {
                    Err(Error::Internal(format!(
                        "image {} is missing its layer {l}",
                        record.id
                    )))
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests;
