//! `docker rmi`, following Docker's rules: removing by name untags first and deletes the
//! image only when no reference is left; removing by ID deletes the image (untagging its
//! references when they all belong to one repository, or when forced). Containers that use
//! the image block it with Docker's conflict messages.

use super::ImageStore;
use super::tags::TagIndex;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::reference::Reference;
use std::collections::BTreeSet;
use std::fmt;

/// One line of `docker rmi` output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removed {
    Untagged(Reference),
    /// An image ID, or the diff-id of a layer that was garbage-collected with it.
    Deleted(Digest),
}

impl fmt::Display for Removed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Removed::Untagged(r) => write!(f, "Untagged: {}", r.familiar()),
            Removed::Deleted(d) => write!(f, "Deleted: {d}"),
        }
    }
}

/// A container that uses an image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageUser {
    pub container_id: String,
    pub running: bool,
}

fn short(id: &str) -> &str {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    &hex[..hex.len().min(12)]
}

/// Docker's test for "all references are one repository's": at most one tag, and digest
/// references only of that same repository.
fn is_single_reference(refs: &[Reference]) -> bool {
    if refs.len() <= 1 {
        return refs.len() == 1;
    }
    let mut single: Option<&Reference> = None;
    let mut canonical: BTreeSet<String> = BTreeSet::new();
    for r in refs {
        if r.digest().is_some() {
            canonical.insert(r.name());
        } else if single.is_none() {
            single = Some(r);
        } else {
            return false;
        }
    }
    let single = single.unwrap_or(&refs[0]);
    canonical.len() == 1 && canonical.contains(&single.name())
}

impl ImageStore {
    /// `docker rmi` with a yes/no "is a container using this image ID" callback. Such a
    /// container is treated like a stopped one: it blocks unless `force`.
    pub fn remove(
        &self,
        reference: &str,
        force: bool,
        in_use: &dyn Fn(&str) -> bool,
    ) -> Result<Vec<Removed>> {
        self.remove_with_users(reference, force, &|id| {
            in_use(id).then(|| ImageUser {
                container_id: String::new(),
                running: false,
            })
        })
    }

    /// `docker rmi` with a callback that names a container using the image ID, so errors
    /// can say which, and a running container blocks even a forced removal by ID.
    pub fn remove_with_users(
        &self,
        reference: &str,
        force: bool,
        user_of: &dyn Fn(&str) -> Option<ImageUser>,
    ) -> Result<Vec<Removed>> {
        let _lock = self.lock()?;
        let mut index = self.load_index()?;
        let (id, named) = self.resolve_in(&index, reference)?;
        let id_str = id.to_string();
        let mut out = Vec::new();
        let mut refs = index.refs_for(&id);
        let by_id = match &named {
            None => true,
            Some(_) => id.hex().starts_with(reference) || id_str.starts_with(reference),
        };
        let mut untagged_last = false;
        match named.filter(|_| !by_id) {
            Some(r) => {
                if !force
                    && is_single_reference(&refs)
                    && let Some(user) = user_of(&id_str)
                {
                    return Err(Error::Conflict(format!(
                        "conflict: unable to remove repository reference \"{reference}\" (must force) - container {} is using its referenced image {}",
                        container_label(&user),
                        id.short()
                    )));
                }
                index.remove(&r);
                out.push(Removed::Untagged(r.clone()));
                refs = index.refs_for(&id);
                // Untagging the last tag of a repository also drops that repository's
                // digest references, which would otherwise keep the image alive alone.
                if r.digest().is_none()
                    && !refs
                        .iter()
                        .any(|x| x.digest().is_none() && x.name() == r.name())
                {
                    for d in refs
                        .iter()
                        .filter(|x| x.digest().is_some() && x.name() == r.name())
                    {
                        index.remove(d);
                        out.push(Removed::Untagged(d.clone()));
                    }
                    refs = index.refs_for(&id);
                }
                if !refs.is_empty() {
                    index.save(&self.index_path())?;
                    return Ok(out);
                }
                untagged_last = true;
            }
            None => {
                if !force && refs.len() > 1 && !is_single_reference(&refs) {
                    return Err(Error::Conflict(format!(
                        "conflict: unable to delete {} (must be forced) - image is referenced in multiple repositories",
                        id.short()
                    )));
                }
                if is_single_reference(&refs) {
                    self.check_users(&id, force, user_of)?;
                    for r in &refs {
                        index.remove(r);
                        out.push(Removed::Untagged(r.clone()));
                    }
                }
            }
        }
        if let Err(e) = self.check_users(&id, force, user_of) {
            if untagged_last {
                // Docker keeps a used image as a dangling one after untagging its last
                // name rather than failing the untag.
                index.save(&self.index_path())?;
                return Ok(out);
            }
            return Err(e);
        }
        self.delete_image(&id, &mut index, &mut out)?;
        index.save(&self.index_path())?;
        Ok(out)
    }

    /// A running container blocks always; a stopped one unless `force`.
    fn check_users(
        &self,
        id: &Digest,
        force: bool,
        user_of: &dyn Fn(&str) -> Option<ImageUser>,
    ) -> Result<()> {
        let Some(user) = user_of(&id.to_string()) else {
            return Ok(());
        };
        if user.running {
            return Err(Error::Conflict(format!(
                "conflict: unable to delete {} (cannot be forced) - image is being used by running container {}",
                id.short(),
                container_label(&user)
            )));
        }
        if !force {
            return Err(Error::Conflict(format!(
                "conflict: unable to delete {} (must be forced) - image is being used by stopped container {}",
                id.short(),
                container_label(&user)
            )));
        }
        Ok(())
    }

    /// Drops every reference, the record, the config blob and now-unused layers.
    fn delete_image(
        &self,
        id: &Digest,
        index: &mut TagIndex,
        out: &mut Vec<Removed>,
    ) -> Result<()> {
        for r in index.refs_for(id) {
            index.remove(&r);
            out.push(Removed::Untagged(r));
        }
        let stored = self.images.get(id)?;
        self.images.remove(id)?;
        out.push(Removed::Deleted(id.clone()));
        let Some(stored) = stored else {
            return Ok(());
        };
        let still_used = self.referenced_layers()?;
        let blobs_used = self.referenced_blobs()?;
        let mine = std::iter::once(id.clone())
            .chain(stored.manifest_digest.clone())
            .chain(stored.layer_blobs.iter().map(|b| b.digest.clone()));
        for blob in mine {
            if !blobs_used.contains(&blob) {
                self.blobs.remove(&blob)?;
            }
        }
        let mut seen = BTreeSet::new();
        for layer in stored.layers.iter().rev() {
            if !still_used.contains(layer) && seen.insert(layer.clone()) {
                self.layers.remove(layer)?;
                out.push(Removed::Deleted(layer.clone()));
            }
        }
        Ok(())
    }
}

fn container_label(user: &ImageUser) -> String {
    if user.container_id.is_empty() {
        "(unknown)".to_string()
    } else {
        short(&user.container_id).to_string()
    }
}
