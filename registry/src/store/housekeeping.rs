//! `image history`, `image prune` and the numbers `system df` shows.

use super::{ImageRecord, ImageStore, ImageUser, Removed};
use crate::digest::Digest;
use crate::error::Result;
use std::collections::{BTreeMap, BTreeSet};

/// One row of `docker history`, newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryEntry {
    /// The image ID on the top row; `None` (`<missing>`) below, as Docker prints for
    /// layers that are not images of their own.
    pub id: Option<Digest>,
    pub created: Option<String>,
    pub created_by: String,
    pub size: u64,
    pub comment: String,
}

/// What `image prune` removed.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Pruned {
    pub removed: Vec<Removed>,
    pub reclaimed: u64,
}

/// Image figures for `system df`.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct ImageUsage {
    pub total: usize,
    pub active: usize,
    /// Unique layer bytes of all images.
    pub size: u64,
    /// Bytes of layers no in-use image shares.
    pub reclaimable: u64,
}

impl ImageStore {
    pub fn history(&self, record: &ImageRecord) -> Result<Vec<HistoryEntry>> {
        let config = self.config(record)?;
        let mut sizes = record.layers.iter();
        let mut rows = Vec::new();
        if config.history.is_empty() {
            // No history in the config: one row per layer, as Docker shows.
            for l in &record.layers {
                rows.push(HistoryEntry {
                    id: None,
                    created: record.created_raw.clone(),
                    created_by: String::new(),
                    size: self.layers.size(l).unwrap_or(0),
                    comment: String::new(),
                });
            }
        } else {
            for h in &config.history {
                let size = if h.empty_layer {
                    0
                } else {
                    sizes
                        .next()
                        .map(|l| self.layers.size(l).unwrap_or(0))
                        .unwrap_or(0)
                };
                rows.push(HistoryEntry {
                    id: None,
                    created: h.created.clone(),
                    created_by: h.created_by.clone().unwrap_or_default(),
                    size,
                    comment: h.comment.clone().unwrap_or_default(),
                });
            }
        }
        rows.reverse();
        if let Some(top) = rows.first_mut() {
            top.id = Some(record.id.clone());
        }
        Ok(rows)
    }

    /// Removes dangling images (with `all`: every image) that no container uses.
    /// `admit` is the caller's prune filters (labels, age).
    pub fn prune(
        &self,
        all: bool,
        user_of: &dyn Fn(&str) -> Option<ImageUser>,
        admit: &dyn Fn(&ImageRecord) -> bool,
    ) -> Result<Pruned> {
        let mut sizes: BTreeMap<Digest, u64> = BTreeMap::new();
        let mut out = Pruned::default();
        for rec in self.list()? {
            if (!all && !rec.is_dangling())
                || user_of(&rec.id.to_string()).is_some()
                || !admit(&rec)
            {
                continue;
            }
            for l in &rec.layers {
                if let Ok(s) = self.layers.size(l) {
                    sizes.insert(l.clone(), s);
                }
            }
            // By full ID, so every tag goes with it; a concurrent removal is not an error.
            match self.remove_with_users(&rec.id.to_string(), true, user_of) {
                Ok(removed) => {
                    for r in &removed {
                        if let Removed::Deleted(d) = r
                            && let Some(s) = sizes.get(d)
                        {
                            out.reclaimed += s;
                        }
                    }
                    out.removed.extend(removed);
                }
                Err(e) if e.kind() == crate::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// `system df` figures; `in_use` says whether a container uses an image ID.
    pub fn usage(&self, in_use: &dyn Fn(&str) -> bool) -> Result<ImageUsage> {
        let images = self.list()?;
        let mut used_layers = BTreeSet::new();
        let mut all_layers = BTreeSet::new();
        let mut usage = ImageUsage {
            total: images.len(),
            ..Default::default()
        };
        for rec in &images {
            let active = in_use(&rec.id.to_string());
            if active {
                usage.active += 1;
                used_layers.extend(rec.layers.iter().cloned());
            }
            all_layers.extend(rec.layers.iter().cloned());
        }
        for l in &all_layers {
            let s = self.layers.size(l).unwrap_or(0);
            usage.size += s;
            if !used_layers.contains(l) {
                usage.reclaimable += s;
            }
        }
        Ok(usage)
    }
}
