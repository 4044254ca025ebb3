//! `pull`: fetch an image from a registry over the OCI distribution protocol (through
//! `oci-client`) into the store.
//!
//! - Manifest lists and OCI indexes (nested too) resolve to the requested platform.
//! - Every blob is checked against its digest and size; the config before anything else.
//! - Layers download at most [`MAX_PARALLEL`] at a time and are unpacked *while* they
//!   download (a blocking thread reads the bytes from a channel), while the compressed bytes
//!   are kept as a blob so a later push or save sends exactly what the registry had.
//! - An unpacked layer is renamed into place only after the compressed digest checked out:
//!   the unpacker's reader ends with an error instead of EOF when it did not.
//! - A per-blob lock makes two concurrent pulls of one layer fetch it once.
//! - Records are committed like a load; a failed pull takes back what it added.

use super::ImageStore;
use super::LayerBlob;
use super::fsutil::StoreLock;
use super::layers::LayerStore;
use super::load::{Created, LoadedImage};
use super::remote::{Remote, is_not_found, is_unauthorized, unavailable};
use crate::archive::ArchiveImage;
use crate::config::ImageConfig;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::platform::Platform;
use crate::reference::Reference;
use crate::settings::RegistrySettings;
use futures_util::StreamExt;
use oci_client::manifest::{
    IMAGE_MANIFEST_LIST_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE, OCI_IMAGE_INDEX_MEDIA_TYPE,
    OCI_IMAGE_MEDIA_TYPE, OciDescriptor, OciImageManifest,
};
use sha2::{Digest as _, Sha256};
use std::io::Write as _;
use std::sync::Mutex;

const MAX_PARALLEL: usize = 3;
/// Nested indexes deeper than this are refused rather than followed forever.
const MAX_INDEX_DEPTH: usize = 4;
/// Progress is reported at most this often per layer (bytes).
const PROGRESS_STEP: u64 = 512 * 1024;
const ACCEPTED: &[&str] = &[
    OCI_IMAGE_MEDIA_TYPE,
    IMAGE_MANIFEST_MEDIA_TYPE,
    OCI_IMAGE_INDEX_MEDIA_TYPE,
    IMAGE_MANIFEST_LIST_MEDIA_TYPE,
];

/// What the caller sees of a pull's progress, in the order Docker reports it.
#[derive(Debug, Clone, PartialEq)]
pub enum PullEvent {
    /// The reference resolved to this manifest digest (the index's, for a multi-platform
    /// image: what Docker prints as `Digest:`).
    Resolved { manifest: String },
    /// The layer is already in the store.
    LayerExists { digest: String },
    /// The layer will be fetched ("Pulling fs layer").
    LayerQueued { digest: String, size: u64 },
    Downloading {
        digest: String,
        current: u64,
        total: u64,
    },
    /// Downloaded, verified and unpacked ("Pull complete").
    LayerDownloaded { digest: String, bytes: u64 },
}

#[derive(Debug, Clone, Default)]
pub struct PullOptions {
    /// `--platform`; the host's when unset.
    pub platform: Option<Platform>,
    pub settings: RegistrySettings,
}

/// The result of a pull.
#[derive(Debug, Clone, PartialEq)]
pub struct Pulled {
    pub image: LoadedImage,
    /// The digest Docker shows and records in RepoDigests.
    pub digest: Digest,
    /// The tag already pointed at this image before the pull.
    pub up_to_date: bool,
}

/// Checks `user`/`password` against `host` the way `docker login` does: an authenticated
/// request must not be refused (a missing repository is fine, a 401 is not).
pub async fn check_login(
    host: &str,
    user: &str,
    password: &str,
    settings: &RegistrySettings,
) -> Result<()> {
    let mut remote = Remote::new(host, settings)?;
    remote.auth = oci_client::secrets::RegistryAuth::Basic(user.into(), password.into());
    let probe = Reference::parse(&format!("{host}/pelagos-login-check/probe:latest"))?;
    match remote
        .client
        .fetch_manifest_digest(&remote.oci_ref(&probe), &remote.auth)
        .await
    {
        Ok(_) => Ok(()),
        Err(e) if is_unauthorized(&e.to_string()) => Err(Error::Unauthorized(format!(
            "login to {host} failed: unauthorized: incorrect username or password"
        ))),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(e) => Err(Error::Unavailable(format!("login to {host}: {e}"))),
    }
}

/// The manifest a reference resolved to.
struct Resolved {
    remote: Remote,
    /// The image manifest's own reference (by digest).
    image_ref: oci_client::Reference,
    manifest: OciImageManifest,
    manifest_bytes: Vec<u8>,
    manifest_digest: Digest,
    /// The first manifest's digest (the index's, when there was one).
    top_digest: Digest,
}

type Events<'a> = Mutex<&'a mut (dyn FnMut(PullEvent) + Send)>;

fn emit(events: &Events<'_>, ev: PullEvent) {
    if let Ok(mut f) = events.lock() {
        f(ev)
    }
}

impl ImageStore {
    pub async fn pull(
        &self,
        reference: &str,
        opts: &PullOptions,
        on_event: &mut (dyn FnMut(PullEvent) + Send),
    ) -> Result<Pulled> {
        let ours = Reference::parse(reference)?;
        let platform = opts.platform.clone().unwrap_or_else(Platform::host);
        let r = self.resolve_remote(&ours, opts, &platform).await?;
        let events: Events<'_> = Mutex::new(on_event);
        emit(
            &events,
            PullEvent::Resolved {
                manifest: r.top_digest.to_string(),
            },
        );
        let config_bytes = fetch_config(&r).await?;
        let config_digest = Digest::of_bytes(&config_bytes);
        let config = ImageConfig::parse(&config_bytes)
            .map_err(|e| Error::InvalidArchive(format!("image config: {e}")))?;
        if opts.platform.is_some()
            && !platform.matches(&config.os, &config.architecture, config.variant.as_deref())
        {
            return Err(Error::NoSuchImage(format!(
                "image with reference {} was found but does not match the specified platform: wanted {platform}, actual: {}/{}",
                ours.familiar(),
                config.os,
                config.architecture
            )));
        }
        let diff_ids: Vec<Digest> = config
            .rootfs
            .diff_ids
            .iter()
            .map(|d| Digest::parse(d))
            .collect::<Result<_>>()?;
        if diff_ids.len() != r.manifest.layers.len() {
            return Err(Error::InvalidArchive(format!(
                "manifest has {} layers, config {}",
                r.manifest.layers.len(),
                diff_ids.len()
            )));
        }
        let previous = self.load_index()?.get(&ours).cloned();
        let created = Mutex::new(Created::default());
        let res = self
            .fetch_layers(&r, &diff_ids, &created, &events)
            .await
            .and_then(|layer_blobs| {
                let mut tags = Vec::new();
                if ours.digest().is_none() {
                    tags.push(ours.clone());
                }
                tags.push(ours.with_digest(r.top_digest.clone()));
                let image = ArchiveImage {
                    config_bytes: config_bytes.clone(),
                    config_digest: config_digest.clone(),
                    config,
                    diff_ids: diff_ids.clone(),
                    layers: Vec::new(),
                    tags,
                    manifest: Some((r.manifest_digest.clone(), r.manifest_bytes.clone())),
                    layer_blobs,
                };
                self.commit(std::slice::from_ref(&image))
            });
        let created = created.into_inner().unwrap_or_default();
        match res {
            Ok(mut loaded) => {
                let image = loaded
                    .pop()
                    .ok_or_else(|| Error::Internal("pull committed nothing".into()))?;
                Ok(Pulled {
                    up_to_date: previous.as_ref() == Some(&image.id),
                    image,
                    digest: r.top_digest,
                })
            }
            Err(e) => {
                let _ = self.discard_unreferenced(&created);
                Err(e)
            }
        }
    }

    /// Finds the image manifest for `ours`: through the docker.io mirrors first when
    /// configured (falling back to docker.io), then through indexes to the platform's entry.
    async fn resolve_remote(
        &self,
        ours: &Reference,
        opts: &PullOptions,
        platform: &Platform,
    ) -> Result<Resolved> {
        let mut hosts: Vec<String> = Vec::new();
        if ours.domain() == "docker.io" {
            hosts.extend(opts.settings.registry_mirrors.iter().cloned());
        }
        hosts.push(ours.domain().to_string());
        let mut last = None;
        for (i, host) in hosts.iter().enumerate() {
            let remote = Remote::new(host, &opts.settings)?;
            match resolve_at(remote, ours, platform).await {
                Ok(r) => return Ok(r),
                Err(e) if i + 1 < hosts.len() => {
                    tracing::info!(mirror = %host, error = %e, "mirror failed; trying the next source");
                    last = Some(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last.unwrap_or_else(|| Error::Internal("no registry to pull from".into())))
    }

    /// Fetches every layer not yet in the store; returns the layer blobs, bottom to top.
    async fn fetch_layers(
        &self,
        r: &Resolved,
        diff_ids: &[Digest],
        created: &Mutex<Created>,
        events: &Events<'_>,
    ) -> Result<Vec<LayerBlob>> {
        let mut blobs = Vec::new();
        let mut wanted: Vec<(&OciDescriptor, &Digest)> = Vec::new();
        for (desc, diff_id) in r.manifest.layers.iter().zip(diff_ids) {
            blobs.push(LayerBlob {
                digest: Digest::parse(&desc.digest)?,
                size: u64::try_from(desc.size).unwrap_or(0),
                media_type: desc.media_type.clone(),
            });
            // A layer unpacked from another source (a load, or the same content compressed
            // differently) still needs this blob, or the image could not be pushed or saved
            // byte-exactly; fetching it then only verifies and keeps it (nothing unpacks).
            let blob = blobs.last().map(|b: &LayerBlob| &b.digest);
            if self.layers.exists(diff_id) && blob.is_some_and(|b| self.blobs.exists(b)) {
                emit(
                    events,
                    PullEvent::LayerExists {
                        digest: desc.digest.clone(),
                    },
                );
            } else if !wanted.iter().any(|(_, d)| *d == diff_id) {
                emit(
                    events,
                    PullEvent::LayerQueued {
                        digest: desc.digest.clone(),
                        size: u64::try_from(desc.size).unwrap_or(0),
                    },
                );
                wanted.push((desc, diff_id));
            }
        }
        let permits = tokio::sync::Semaphore::new(MAX_PARALLEL);
        let jobs = wanted.iter().map(|(desc, diff_id)| async {
            let _permit = permits
                .acquire()
                .await
                .map_err(|e| Error::Internal(e.to_string()))?;
            self.fetch_layer(r, desc, diff_id, created, events).await
        });
        // Every job runs to its end (even after another failed) so none leaves a thread
        // or temp file behind; the first error wins.
        let mut first_err = None;
        for res in futures_util::future::join_all(jobs).await {
            if let Err(e) = res {
                first_err.get_or_insert(e);
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(blobs),
        }
    }

    async fn fetch_layer(
        &self,
        r: &Resolved,
        desc: &OciDescriptor,
        diff_id: &Digest,
        created: &Mutex<Created>,
        events: &Events<'_>,
    ) -> Result<()> {
        let expected = Digest::parse(&desc.digest)?;
        // Lock files stay (deleting a lock file others may wait on breaks flock); they are
        // empty and one per blob ever pulled.
        let lock_path = self
            .root
            .join("locks")
            .join(format!("{}.lock", expected.hex()));
        let _lock = tokio::task::spawn_blocking(move || StoreLock::acquire(&lock_path))
            .await
            .map_err(|e| Error::Internal(e.to_string()))??;
        if self.layers.exists(diff_id) && self.blobs.exists(&expected) {
            // A concurrent pull fetched it while we waited for the lock.
            emit(
                events,
                PullEvent::LayerExists {
                    digest: desc.digest.clone(),
                },
            );
            return Ok(());
        }
        let tmp = TempPath(self.blobs.temp_path());
        let file = std::fs::File::create(&tmp.0).map_err(|e| Error::path(&tmp.0, e))?;
        let (tx, rx) = tokio::sync::mpsc::channel::<std::result::Result<bytes::Bytes, String>>(64);
        let mut tee = TeeReader {
            rx,
            cur: bytes::Bytes::new(),
            out: std::io::BufWriter::with_capacity(1 << 20, file),
            hash: Sha256::new(),
            len: 0,
            expected: expected.clone(),
            size: u64::try_from(desc.size).unwrap_or(0),
            failure: None,
            verified: false,
        };
        let layers = LayerStore::new(self.layers.dir().to_path_buf());
        let (id, label) = (diff_id.clone(), desc.digest.clone());
        // The blocking side writes the blob, hashes it and unpacks it in one pass; the
        // async side only moves bytes off the socket.
        let unpack = tokio::task::spawn_blocking(move || {
            let imported = layers.import(&id, &mut tee, &label).and_then(|new| {
                // import returns early when a concurrent load created the layer; the blob
                // must still be complete and verified.
                std::io::copy(&mut tee, &mut std::io::sink())
                    .map_err(|e| Error::io(format!("layer blob {label}"), e))?;
                Ok(new)
            });
            let flushed = std::io::Write::flush(&mut tee.out);
            match (tee.failure.take(), imported, flushed) {
                (Some(e), _, _) => Err(e),
                (None, Err(e), _) => Err(e),
                (None, Ok(_), Err(e)) => Err(Error::io(format!("writing blob {label}"), e)),
                (None, Ok(new), Ok(())) => Ok((new, tee.len)),
            }
        });
        let downloaded = download(r, desc, tx, events).await;
        let unpacked = unpack
            .await
            .map_err(|e| Error::Internal(format!("unpack task: {e}")));
        let bytes = match (downloaded, unpacked) {
            (Err(e), _) => return Err(e),
            (Ok(()), Err(e)) | (Ok(()), Ok(Err(e))) => return Err(e),
            (Ok(()), Ok(Ok((new_layer, bytes)))) => {
                if new_layer && let Ok(mut c) = created.lock() {
                    c.layers.push(diff_id.clone());
                }
                bytes
            }
        };
        if self.blobs.adopt(&expected, &tmp.0)?
            && let Ok(mut c) = created.lock()
        {
            c.blobs.push(expected.clone());
        }
        emit(
            events,
            PullEvent::LayerDownloaded {
                digest: desc.digest.clone(),
                bytes,
            },
        );
        Ok(())
    }
}

async fn resolve_at(remote: Remote, ours: &Reference, platform: &Platform) -> Result<Resolved> {
    let mut current = remote.oci_ref(ours);
    let mut top: Option<Digest> = None;
    for _ in 0..MAX_INDEX_DEPTH {
        let (bytes, _) = remote
            .client
            .pull_manifest_raw(&current, &remote.auth, ACCEPTED)
            .await
            .map_err(|e| manifest_error(&e, ours, &remote.host))?;
        let digest = Digest::of_bytes(&bytes);
        if let Some(want) = current.digest()
            && want != digest.to_string()
        {
            return Err(Error::DigestMismatch {
                what: format!("manifest of {}", ours.familiar()),
                expected: want.to_string(),
                actual: digest.to_string(),
            });
        }
        top.get_or_insert_with(|| digest.clone());
        let doc: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|e| Error::InvalidArchive(format!("manifest of {}: {e}", ours.familiar())))?;
        if doc.get("manifests").is_some() {
            let entry = select_platform(&doc, platform).ok_or_else(|| {
                Error::NoSuchImage(format!(
                    "no matching manifest for {platform} in the manifest list entries"
                ))
            })?;
            current = remote.by_digest(ours, &entry);
            continue;
        }
        if doc.get("schemaVersion").and_then(|v| v.as_u64()) == Some(1) {
            return Err(Error::InvalidArchive(format!(
                "{}: Docker schema 1 manifests are not supported",
                ours.familiar()
            )));
        }
        let manifest: OciImageManifest = serde_json::from_slice(&bytes)
            .map_err(|e| Error::InvalidArchive(format!("manifest of {}: {e}", ours.familiar())))?;
        return Ok(Resolved {
            image_ref: current,
            manifest,
            manifest_bytes: bytes.to_vec(),
            manifest_digest: digest.clone(),
            top_digest: top.unwrap_or(digest),
            remote,
        });
    }
    Err(Error::InvalidArchive(format!(
        "{}: image indexes nested deeper than {MAX_INDEX_DEPTH}",
        ours.familiar()
    )))
}

/// The digest of the index entry for `platform`; attestation entries (`unknown/unknown`)
/// never match.
fn select_platform(index: &serde_json::Value, platform: &Platform) -> Option<String> {
    index
        .get("manifests")?
        .as_array()?
        .iter()
        .find(|m| {
            let p = &m["platform"];
            platform.matches(
                p["os"].as_str().unwrap_or(""),
                p["architecture"].as_str().unwrap_or(""),
                p["variant"].as_str(),
            )
        })
        .and_then(|m| m["digest"].as_str().map(str::to_string))
}

fn manifest_error(
    e: &oci_client::errors::OciDistributionError,
    ours: &Reference,
    host: &str,
) -> Error {
    let text = e.to_string();
    if is_not_found(e) {
        // Docker's wording for a missing tag or repository.
        Error::NoSuchImage(format!(
            "manifest for {} not found: manifest unknown",
            ours.familiar()
        ))
    } else if is_unauthorized(&text) {
        Error::Unavailable(format!(
            "pull access denied for {}: authentication required (pelagos login {host})",
            ours.familiar()
        ))
    } else {
        unavailable(&format!("pull {} from {host}", ours.familiar()), text)
    }
}

async fn fetch_config(r: &Resolved) -> Result<Vec<u8>> {
    let mut bytes: Vec<u8> = Vec::new();
    r.remote
        .client
        .pull_blob(&r.image_ref, &r.manifest.config, &mut bytes)
        .await
        .map_err(|e| unavailable(&format!("image config {}", r.manifest.config.digest), e))?;
    let actual = Digest::of_bytes(&bytes);
    if actual.to_string() != r.manifest.config.digest {
        return Err(Error::DigestMismatch {
            what: "image config".into(),
            expected: r.manifest.config.digest.clone(),
            actual: actual.to_string(),
        });
    }
    Ok(bytes)
}

/// Moves one blob's bytes from the registry into the unpacker's channel. Network errors
/// go down the channel too, so the unpacker never commits a layer from a partial stream.
async fn download(
    r: &Resolved,
    desc: &OciDescriptor,
    tx: tokio::sync::mpsc::Sender<std::result::Result<bytes::Bytes, String>>,
    events: &Events<'_>,
) -> Result<()> {
    let total = u64::try_from(desc.size).unwrap_or(0);
    let mut stream = match r.remote.client.pull_blob_stream(&r.image_ref, desc).await {
        Ok(s) => s,
        Err(e) => {
            let _ = tx.send(Err(e.to_string())).await;
            return Err(unavailable(&format!("blob {}", desc.digest), e));
        }
    };
    let mut len: u64 = 0;
    let mut reported: u64 = 0;
    while let Some(chunk) = stream.next().await {
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                let text = e.to_string();
                let _ = tx.send(Err(text.clone())).await;
                return Err(if text.to_ascii_lowercase().contains("digest") {
                    Error::DigestMismatch {
                        what: format!("layer blob {}", desc.digest),
                        expected: desc.digest.clone(),
                        actual: text,
                    }
                } else {
                    unavailable(&format!("blob {}", desc.digest), text)
                });
            }
        };
        len += chunk.len() as u64;
        if tx.send(Ok(chunk)).await.is_err() {
            // The unpacker stopped (bad layer or bad digest); its error is the one to report.
            return Ok(());
        }
        if total > 0 && len > total {
            // More bytes than the manifest promised: the unpacker sees the size mismatch.
            return Ok(());
        }
        if len - reported >= PROGRESS_STEP || len == total {
            reported = len;
            emit(
                events,
                PullEvent::Downloading {
                    digest: desc.digest.clone(),
                    current: len,
                    total,
                },
            );
        }
    }
    Ok(())
}

/// The unpacker's view of a download: the chunks as they arrive, each also written to the
/// blob file and hashed. At the end of the stream it checks digest and size and returns
/// EOF only if both are right; otherwise an error, so the unpacked layer is never renamed
/// into place.
struct TeeReader {
    rx: tokio::sync::mpsc::Receiver<std::result::Result<bytes::Bytes, String>>,
    cur: bytes::Bytes,
    out: std::io::BufWriter<std::fs::File>,
    hash: Sha256,
    len: u64,
    expected: Digest,
    size: u64,
    /// Why the stream was refused, for the caller (the unpacker only sees an io error).
    failure: Option<Error>,
    /// The stream ended and verified; later reads are plain EOF.
    verified: bool,
}

impl TeeReader {
    fn fail(&mut self, e: Error) -> std::io::Error {
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string());
        self.failure.get_or_insert(e);
        io
    }
}

impl std::io::Read for TeeReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.cur.is_empty() {
            if self.verified {
                return Ok(0);
            }
            match self.rx.blocking_recv() {
                Some(Ok(b)) => {
                    self.out.write_all(&b)?;
                    self.hash.update(&b);
                    self.len += b.len() as u64;
                    if self.size > 0 && self.len > self.size {
                        let e = self.mismatch("more bytes than the manifest says".into());
                        return Err(self.fail(e));
                    }
                    self.cur = b;
                }
                Some(Err(m)) => {
                    let e = Error::Unavailable(format!("blob {}: {m}", self.expected));
                    return Err(self.fail(e));
                }
                None => {
                    let actual = hex::encode(std::mem::take(&mut self.hash).finalize());
                    if actual != self.expected.hex() || (self.size > 0 && self.len != self.size) {
                        let e = self.mismatch(format!("sha256:{actual} ({} bytes)", self.len));
                        return Err(self.fail(e));
                    }
                    self.verified = true;
                    return Ok(0);
                }
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur.split_to(n));
        Ok(n)
    }
}

impl TeeReader {
    fn mismatch(&self, actual: String) -> Error {
        Error::DigestMismatch {
            what: format!("layer blob {}", self.expected),
            expected: format!("{} ({} bytes)", self.expected, self.size),
            actual,
        }
    }
}

/// A temp file removed however the pull ends (after a successful adopt it is gone already).
struct TempPath(std::path::PathBuf);

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn platform_selection_skips_attestations() {
        let index = serde_json::json!({"manifests": [
            {"digest": "sha256:aa", "platform": {"os": "unknown", "architecture": "unknown"}},
            {"digest": "sha256:bb", "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
            {"digest": "sha256:cc", "platform": {"os": "linux", "architecture": "amd64"}}
        ]});
        let arm = Platform::parse("linux/arm64").unwrap();
        assert_eq!(select_platform(&index, &arm).as_deref(), Some("sha256:bb"));
        let amd = Platform::parse("linux/amd64").unwrap();
        assert_eq!(select_platform(&index, &amd).as_deref(), Some("sha256:cc"));
        let s390 = Platform::parse("linux/s390x").unwrap();
        assert_eq!(select_platform(&index, &s390), None);
    }
}
