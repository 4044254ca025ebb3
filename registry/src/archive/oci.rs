//! OCI image layout: `oci-layout`, `index.json`, `blobs/sha256/<hex>`. Names come from the
//! `io.containerd.image.name` annotation (full reference, what Docker writes) or from
//! `org.opencontainers.image.ref.name` when that holds a full reference rather than a bare
//! tag. Nested indexes (multi-platform) resolve to the host's platform.

use super::spool::SpooledArchive;
use super::{ArchiveImage, LayerSource, checked_image};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::reference::Reference;
use serde::Deserialize;
use std::collections::BTreeMap;

pub const INDEX: &str = "index.json";
const CONTAINERD_NAME: &str = "io.containerd.image.name";
const OCI_REF_NAME: &str = "org.opencontainers.image.ref.name";
const MAX_INDEX_DEPTH: usize = 4;

#[derive(Deserialize)]
struct Index {
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

#[derive(Deserialize, Clone)]
struct Descriptor {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: Digest,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(default)]
    platform: Option<Platform>,
}

#[derive(Deserialize, Clone)]
struct Platform {
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    os: String,
}

#[derive(Deserialize)]
struct Manifest {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Vec<Descriptor>,
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

fn blob_path(d: &Digest) -> String {
    format!("blobs/sha256/{}", d.hex())
}

fn read_blob(archive: &SpooledArchive, d: &Digest) -> Result<Vec<u8>> {
    let bytes = archive.read_small(&blob_path(d))?;
    let actual = Digest::of_bytes(&bytes);
    if &actual != d {
        return Err(Error::DigestMismatch {
            what: blob_path(d),
            expected: d.to_string(),
            actual: actual.to_string(),
        });
    }
    Ok(bytes)
}

fn is_index(media_type: &str) -> bool {
    media_type.ends_with("image.index.v1+json") || media_type.ends_with("manifest.list.v2+json")
}

/// Go's architecture names, which images use.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

fn tag_of(d: &Descriptor) -> Option<Reference> {
    if let Some(name) = d.annotations.get(CONTAINERD_NAME) {
        return Reference::parse(name).ok();
    }
    let name = d.annotations.get(OCI_REF_NAME)?;
    // A bare tag like `latest` names no repository; only a full reference can be a tag.
    if name.contains(['/', ':', '@']) {
        Reference::parse(name).ok()
    } else {
        None
    }
}

pub fn read(archive: &SpooledArchive) -> Result<Vec<ArchiveImage>> {
    let bytes = archive.read_small(INDEX)?;
    let index: Index =
        serde_json::from_slice(&bytes).map_err(|e| Error::archive(format!("{INDEX}: {e}")))?;
    // One image per manifest digest; Docker writes one descriptor per tag.
    let mut order: Vec<Digest> = Vec::new();
    let mut found: BTreeMap<Digest, (Vec<u8>, Vec<Reference>)> = BTreeMap::new();
    for desc in &index.manifests {
        let (digest, bytes) = resolve_manifest(archive, desc, 0)?;
        let entry = found.entry(digest.clone()).or_insert_with(|| {
            order.push(digest.clone());
            (bytes, Vec::new())
        });
        if let Some(tag) = tag_of(desc)
            && !entry.1.contains(&tag)
        {
            entry.1.push(tag);
        }
    }
    let mut images = Vec::new();
    for digest in order {
        let Some((bytes, tags)) = found.remove(&digest) else {
            continue;
        };
        let manifest: Manifest = serde_json::from_slice(&bytes)
            .map_err(|e| Error::archive(format!("manifest {digest}: {e}")))?;
        let config = manifest
            .config
            .ok_or_else(|| Error::archive(format!("manifest {digest} has no config")))?;
        let config_bytes = read_blob(archive, &config.digest)?;
        let layers = manifest
            .layers
            .iter()
            .map(|l| LayerSource {
                path: blob_path(&l.digest),
                blob_digest: Some(l.digest.clone()),
            })
            .collect();
        images.push(checked_image(
            config_bytes,
            config.digest,
            layers,
            tags,
            Some((digest, bytes)),
        )?);
    }
    Ok(images)
}

/// Follows a descriptor to an image manifest, choosing the host platform in indexes.
fn resolve_manifest(
    archive: &SpooledArchive,
    desc: &Descriptor,
    depth: usize,
) -> Result<(Digest, Vec<u8>)> {
    if depth > MAX_INDEX_DEPTH {
        return Err(Error::archive("image indexes nested too deeply"));
    }
    let bytes = read_blob(archive, &desc.digest)?;
    let parsed: Manifest = serde_json::from_slice(&bytes)
        .map_err(|e| Error::archive(format!("blob {}: {e}", desc.digest)))?;
    let nested = is_index(&desc.media_type)
        || is_index(&parsed.media_type)
        || (parsed.config.is_none() && !parsed.manifests.is_empty());
    if !nested {
        return Ok((desc.digest.clone(), bytes));
    }
    // Skip attestation manifests (platform unknown/unknown) and other platforms.
    let candidates: Vec<&Descriptor> = parsed
        .manifests
        .iter()
        .filter(|m| archive.contains(&blob_path(&m.digest)))
        .filter(|m| {
            m.platform
                .as_ref()
                .is_none_or(|p| p.os == "linux" && p.architecture == host_arch())
        })
        .collect();
    let chosen = candidates.first().ok_or_else(|| {
        Error::archive(format!(
            "index {} has no manifest for linux/{} in this archive",
            desc.digest,
            host_arch()
        ))
    })?;
    resolve_manifest(archive, chosen, depth + 1)
}
