//! `push`: upload an image to a registry. Blobs the registry already has are skipped after
//! a HEAD check; a blob the image also has under another repository of the same registry
//! is cross-mounted instead of uploaded; the manifest goes last. The bytes sent are the
//! stored blobs and manifest, so pushing twice (or pushing a pulled image) keeps digests.

use super::ImageStore;
use super::remote::{Remote, is_unauthorized, unavailable};
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::reference::Reference;
use crate::settings::RegistrySettings;
use std::sync::Mutex;
use tokio::io::AsyncReadExt;

const MAX_PARALLEL: usize = 3;
const CHUNK: usize = 1 << 20;

#[derive(Debug, Clone, PartialEq)]
pub enum PushEvent {
    /// Layer blob about to be checked ("Preparing").
    Preparing {
        digest: String,
    },
    LayerExists {
        digest: String,
    },
    /// Cross-repository mount from `from` (a repository path on the same registry).
    Mounted {
        digest: String,
        from: String,
    },
    Pushed {
        digest: String,
        bytes: u64,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Pushed {
    pub tag: String,
    pub digest: Digest,
    /// Size of the manifest in bytes (what Docker prints).
    pub size: u64,
}

type Events<'a> = Mutex<&'a mut (dyn FnMut(PushEvent) + Send)>;

fn emit(events: &Events<'_>, ev: PushEvent) {
    if let Ok(mut f) = events.lock() {
        f(ev)
    }
}

impl ImageStore {
    pub async fn push(
        &self,
        reference: &str,
        settings: &RegistrySettings,
        on_event: &mut (dyn FnMut(PushEvent) + Send),
    ) -> Result<Pushed> {
        let ours = Reference::parse(reference)?;
        if ours.digest().is_some() {
            return Err(Error::InvalidArgument(format!(
                "cannot push a digest reference ({}); push a tag",
                ours.familiar()
            )));
        }
        let index = self.load_index()?;
        let id = index.get(&ours).cloned().ok_or_else(|| {
            Error::NoSuchImage(format!(
                "An image does not exist locally with the tag: {}",
                ours.familiar_name()
            ))
        })?;
        let stored = self
            .images
            .get(&id)?
            .ok_or_else(|| Error::NoSuchImage(ours.familiar()))?;
        let manifest = self.manifest_for(&stored, &ours.familiar())?;
        // Repositories on the same registry that hold this image: blobs can be mounted
        // from them instead of uploaded.
        let mount_sources: Vec<String> = index
            .refs_for(&id)
            .into_iter()
            .filter(|r| r.domain() == ours.domain() && r.path() != ours.path())
            .map(|r| r.path().to_string())
            .collect();
        let remote = Remote::new(ours.domain(), settings)?;
        let oref = remote.oci_ref(&ours);
        // oci-client caches a token per operation: the HEAD checks need a pull token, the
        // uploads a push token (one scope request each, as in the bearer-token flow).
        for op in [
            oci_client::RegistryOperation::Pull,
            oci_client::RegistryOperation::Push,
        ] {
            remote
                .client
                .auth(&oref, &remote.auth, op)
                .await
                .map_err(|e| push_error(&ours, e))?;
        }
        let events: Events<'_> = Mutex::new(on_event);
        let mut blobs: Vec<(Digest, u64, bool)> = stored
            .layer_blobs
            .iter()
            .map(|b| (b.digest.clone(), b.size, true))
            .collect();
        blobs.dedup_by(|a, b| a.0 == b.0);
        for (d, _, _) in &blobs {
            emit(
                &events,
                PushEvent::Preparing {
                    digest: d.to_string(),
                },
            );
        }
        let config_size = std::fs::metadata(self.blobs.path(&id))
            .map_err(|e| Error::path(self.blobs.path(&id), e))?
            .len();
        blobs.push((id.clone(), config_size, false));
        let permits = tokio::sync::Semaphore::new(MAX_PARALLEL);
        let jobs = blobs.iter().map(|(digest, size, is_layer)| async {
            let _permit = permits
                .acquire()
                .await
                .map_err(|e| Error::Internal(e.to_string()))?;
            self.push_blob(
                &remote,
                &oref,
                &ours,
                digest,
                *size,
                *is_layer,
                &mount_sources,
                &events,
            )
            .await
        });
        for res in futures_util::future::join_all(jobs).await {
            res?;
        }
        let content_type = http::HeaderValue::from_str(&manifest.media_type)
            .map_err(|e| Error::Internal(format!("manifest media type: {e}")))?;
        remote
            .client
            .push_manifest_raw(&oref, manifest.bytes.clone(), content_type)
            .await
            .map_err(|e| push_error(&ours, e))?;
        // Like Docker: the pushed digest becomes a RepoDigest, and a generated manifest
        // is kept so the next push sends the same one.
        {
            let _lock = self.lock()?;
            self.blobs.put(&manifest.digest, &manifest.bytes)?;
            if let Some(mut s) = self.images.get(&id)?
                && s.manifest_digest.as_ref() != Some(&manifest.digest)
            {
                s.manifest_digest = Some(manifest.digest.clone());
                self.images.put(&s)?;
            }
            let mut index = self.load_index()?;
            index.set(&ours.with_digest(manifest.digest.clone()), &id);
            index.save(&self.index_path())?;
        }
        Ok(Pushed {
            tag: ours.tag().unwrap_or("latest").to_string(),
            size: manifest.bytes.len() as u64,
            digest: manifest.digest,
        })
    }

    #[allow(clippy::too_many_arguments)]
    async fn push_blob(
        &self,
        remote: &Remote,
        oref: &oci_client::Reference,
        ours: &Reference,
        digest: &Digest,
        size: u64,
        is_layer: bool,
        mount_sources: &[String],
        events: &Events<'_>,
    ) -> Result<()> {
        let d = digest.to_string();
        let exists = remote
            .client
            .blob_exists(oref, &d)
            .await
            .map_err(|e| push_error(ours, e))?;
        if exists {
            if is_layer {
                emit(events, PushEvent::LayerExists { digest: d });
            }
            return Ok(());
        }
        for from in mount_sources {
            let source =
                oci_client::Reference::with_tag(remote.host.clone(), from.clone(), "latest".into());
            if remote.client.mount_blob(oref, &source, &d).await.is_ok()
                && remote.client.blob_exists(oref, &d).await.unwrap_or(false)
            {
                if is_layer {
                    emit(
                        events,
                        PushEvent::Mounted {
                            digest: d,
                            from: from.clone(),
                        },
                    );
                }
                return Ok(());
            }
        }
        let file = tokio::fs::File::from_std(self.blobs.open(digest)?);
        let stream = futures_util::stream::unfold(file, |mut f| async move {
            let mut buf = vec![0u8; CHUNK];
            match f.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some((Ok(bytes::Bytes::from(buf)), f))
                }
                Err(e) => Some((Err(oci_client::errors::OciDistributionError::IoError(e)), f)),
            }
        });
        remote
            .client
            .push_blob_stream(oref, stream, &d, Some(size))
            .await
            .map_err(|e| push_error(ours, e))?;
        if is_layer {
            emit(
                events,
                PushEvent::Pushed {
                    digest: d,
                    bytes: size,
                },
            );
        }
        Ok(())
    }
}

fn push_error(ours: &Reference, e: oci_client::errors::OciDistributionError) -> Error {
    let text = e.to_string();
    if is_unauthorized(&text) {
        Error::Unavailable(format!(
            "push access denied for {}: authentication required (pelagos login {})",
            ours.familiar_name(),
            ours.domain()
        ))
    } else {
        unavailable(&format!("push {}", ours.familiar()), text)
    }
}
