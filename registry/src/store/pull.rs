//! `pull`: fetch an image from a registry over the OCI distribution protocol (through
//! `oci-client`) into the store. Manifest lists / indexes resolve to the host platform.
//! Every blob is checked against its digest before use; layers already present are not
//! fetched; records are committed like a load, so a failed pull leaves nothing behind.

use super::ImageStore;
use super::load::LoadedImage;
use crate::archive::ArchiveImage;
use crate::config::ImageConfig;
use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::reference::Reference;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use sha2::{Digest as _, Sha256};
use tokio::io::AsyncWriteExt;

/// How oci-client words a 401 in its errors.
fn is_unauthorized(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    t.contains("401") || t.contains("unauthorized") || t.contains("not authorized")
}

/// Checks `user`/`password` against `host` the way `docker login` does: an authenticated
/// request must not be refused (a missing repository is fine, a 401 is not).
pub async fn check_login(
    host: &str,
    user: &str,
    password: &str,
    insecure: &[String],
) -> Result<()> {
    let probe = format!("{host}/pelagos-login-check/probe:latest");
    let oref: oci_client::Reference = probe
        .parse()
        .map_err(|e| Error::InvalidReference(format!("{host}: {e}")))?;
    let protocol = if is_insecure(host, insecure) {
        ClientProtocol::HttpsExcept(vec![host.to_string()])
    } else {
        ClientProtocol::Https
    };
    let client = oci_client::Client::new(ClientConfig {
        protocol,
        ..Default::default()
    });
    let auth = RegistryAuth::Basic(user.to_string(), password.to_string());
    match client.fetch_manifest_digest(&oref, &auth).await {
        Ok(_) => Ok(()),
        Err(e) => {
            let text = e.to_string();
            if is_unauthorized(&text) {
                Err(Error::InvalidArgument(format!(
                    "login to {host} failed: unauthorized: incorrect username or password"
                )))
            } else if text.contains("manifest unknown")
                || text.contains("name unknown")
                || text.contains("404")
            {
                Ok(())
            } else {
                Err(Error::Unavailable(format!("login to {host}: {text}")))
            }
        }
    }
}

/// What the caller sees of a pull's progress.
#[derive(Debug, Clone, PartialEq)]
pub enum PullEvent {
    Resolved { manifest: String },
    LayerExists { digest: String },
    LayerDownloaded { digest: String, bytes: u64 },
}

/// Registries spoken to over plain HTTP: loopback always (Docker treats 127.0.0.0/8 as
/// insecure), plus the configured ones.
fn is_insecure(host: &str, extra: &[String]) -> bool {
    let name = host.rsplit_once(':').map_or(host, |(h, _)| h);
    name == "localhost"
        || name.starts_with("127.")
        || name == "[::1]"
        || extra.iter().any(|e| e == host)
}

fn unavailable(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Unavailable(format!("{what}: {e}"))
}

impl ImageStore {
    pub async fn pull(
        &self,
        reference: &str,
        insecure_registries: &[String],
        on_event: &mut (dyn FnMut(PullEvent) + Send),
    ) -> Result<LoadedImage> {
        let ours = Reference::parse(reference)?;
        let oref: oci_client::Reference = ours
            .to_string()
            .parse()
            .map_err(|e| Error::InvalidReference(format!("{reference}: {e}")))?;
        let host = ours.domain().to_string();
        let protocol = if is_insecure(&host, insecure_registries) {
            ClientProtocol::HttpsExcept(vec![host.clone()])
        } else {
            ClientProtocol::Https
        };
        let client = oci_client::Client::new(ClientConfig {
            protocol,
            ..Default::default()
        });
        let auth = match crate::auth::credentials_for(&host)? {
            Some((user, password)) => RegistryAuth::Basic(user, password),
            None => RegistryAuth::Anonymous,
        };
        let (manifest, manifest_digest, config_json) = client
            .pull_manifest_and_config(&oref, &auth)
            .await
            .map_err(|e| {
                let text = e.to_string();
                if matches!(
                    e,
                    oci_client::errors::OciDistributionError::ImageManifestNotFoundError(_)
                ) || text.contains("manifest unknown")
                    || text.contains("name unknown")
                {
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
                    unavailable(&format!("pull {}", ours.familiar()), text)
                }
            })?;
        on_event(PullEvent::Resolved {
            manifest: manifest_digest.clone(),
        });
        let config_bytes = config_json.into_bytes();
        let config_digest = Digest::of_bytes(&config_bytes);
        if config_digest.to_string() != manifest.config.digest {
            return Err(Error::DigestMismatch {
                what: "image config".into(),
                expected: manifest.config.digest.clone(),
                actual: config_digest.to_string(),
            });
        }
        let config = ImageConfig::parse(&config_bytes)
            .map_err(|e| Error::InvalidArchive(format!("image config: {e}")))?;
        let diff_ids: Vec<Digest> = config
            .rootfs
            .diff_ids
            .iter()
            .map(|d| Digest::parse(d))
            .collect::<Result<_>>()?;
        if diff_ids.len() != manifest.layers.len() {
            return Err(Error::InvalidArchive(format!(
                "manifest has {} layers, config {}",
                manifest.layers.len(),
                diff_ids.len()
            )));
        }
        let mut created = Vec::new();
        let res = self
            .fetch_layers(
                &client,
                &oref,
                &manifest.layers,
                &diff_ids,
                &mut created,
                on_event,
            )
            .await
            .and_then(|()| {
                let manifest_bytes =
                    serde_json::to_vec(&manifest).map_err(|e| Error::Internal(e.to_string()))?;
                let image = ArchiveImage {
                    config_bytes: config_bytes.clone(),
                    config_digest: config_digest.clone(),
                    config,
                    diff_ids: diff_ids.clone(),
                    layers: Vec::new(),
                    tags: vec![ours.clone()],
                    manifest: Some((Digest::of_bytes(&manifest_bytes), manifest_bytes)),
                };
                self.commit(std::slice::from_ref(&image))
            });
        match res {
            Ok(mut loaded) => loaded
                .pop()
                .ok_or_else(|| Error::Internal("pull committed nothing".into())),
            Err(e) => {
                let _ = self.discard_unreferenced(&created);
                Err(e)
            }
        }
    }

    /// Downloads the missing layers, at most `MAX_PARALLEL` at a time, then unpacks them
    /// (diff-id verified) in order.
    async fn fetch_layers(
        &self,
        client: &oci_client::Client,
        oref: &oci_client::Reference,
        layers: &[oci_client::manifest::OciDescriptor],
        diff_ids: &[Digest],
        created: &mut Vec<Digest>,
        on_event: &mut (dyn FnMut(PullEvent) + Send),
    ) -> Result<()> {
        const MAX_PARALLEL: usize = 3;
        let mut wanted = Vec::new();
        for (desc, diff_id) in layers.iter().zip(diff_ids) {
            if self.layers.exists(diff_id) {
                on_event(PullEvent::LayerExists {
                    digest: desc.digest.clone(),
                });
            } else if !wanted
                .iter()
                .any(|(_, d, _): &(_, &Digest, _)| *d == diff_id)
            {
                let tmp = TempPath(
                    self.root
                        .join("tmp")
                        .join(format!("pull-{}", super::fsutil::random_suffix())),
                );
                wanted.push((desc, diff_id, tmp));
            }
        }
        for chunk in wanted.chunks(MAX_PARALLEL) {
            let downloads = chunk
                .iter()
                .map(|(desc, _, tmp)| download(client, oref, desc, &tmp.0));
            for r in futures_join_all(downloads).await {
                r?;
            }
        }
        for (desc, diff_id, tmp) in &wanted {
            let f = std::fs::File::open(&tmp.0).map_err(|e| Error::path(&tmp.0, e))?;
            let bytes = f.metadata().map(|m| m.len()).unwrap_or(0);
            if self
                .layers
                .import(diff_id, std::io::BufReader::new(f), &desc.digest)?
            {
                created.push((*diff_id).clone());
            }
            on_event(PullEvent::LayerDownloaded {
                digest: desc.digest.clone(),
                bytes,
            });
        }
        Ok(())
    }
}

/// A temp file removed however the pull ends.
struct TempPath(std::path::PathBuf);

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Polls futures concurrently on the current task and returns their results in order.
async fn futures_join_all<F: std::future::Future>(futs: impl Iterator<Item = F>) -> Vec<F::Output> {
    let mut pinned: Vec<std::pin::Pin<Box<F>>> = futs.map(Box::pin).collect();
    let mut out: Vec<Option<F::Output>> = pinned.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (f, slot) in pinned.iter_mut().zip(out.iter_mut()) {
            if slot.is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => *slot = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().flatten().collect()
}

/// Streams one blob into `path`, hashing as it goes; a wrong digest or size is an error
/// naming the blob.
async fn download(
    client: &oci_client::Client,
    oref: &oci_client::Reference,
    desc: &oci_client::manifest::OciDescriptor,
    path: &std::path::Path,
) -> Result<()> {
    let expected = Digest::parse(&desc.digest)?;
    let file = tokio::fs::File::create(path)
        .await
        .map_err(|e| Error::path(path, e))?;
    let mut w = HashingFile {
        file,
        hash: Sha256::new(),
        len: 0,
    };
    client.pull_blob(oref, desc, &mut w).await.map_err(|e| {
        let text = e.to_string();
        if text.contains("Digest error") || text.contains("digest") {
            // The registry served other bytes than the manifest names.
            Error::Unavailable(format!(
                "digest mismatch for layer blob {}: {text}",
                desc.digest
            ))
        } else {
            unavailable(&format!("blob {}", desc.digest), text)
        }
    })?;
    let (digest, len) = w.finish().await.map_err(|e| Error::path(path, e))?;
    if digest != expected || (desc.size >= 0 && len != desc.size as u64) {
        return Err(Error::DigestMismatch {
            what: format!("layer blob {}", desc.digest),
            expected: format!("{expected} ({} bytes)", desc.size),
            actual: format!("{digest} ({len} bytes)"),
        });
    }
    Ok(())
}

struct HashingFile {
    file: tokio::fs::File,
    hash: Sha256,
    len: u64,
}

impl HashingFile {
    async fn finish(mut self) -> std::io::Result<(Digest, u64)> {
        self.file.flush().await?;
        let hex = hex::encode(self.hash.finalize());
        Digest::from_hex(&hex)
            .map(|d| (d, self.len))
            .map_err(|e| std::io::Error::other(e.to_string()))
    }
}

/// Hashes exactly the bytes the file accepted.
impl tokio::io::AsyncWrite for HashingFile {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = &mut *self;
        match std::pin::Pin::new(&mut this.file).poll_write(cx, buf) {
            std::task::Poll::Ready(Ok(n)) => {
                this.hash.update(&buf[..n]);
                this.len += n as u64;
                std::task::Poll::Ready(Ok(n))
            }
            other => other,
        }
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.file).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.file).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_registries_are_insecure() {
        assert!(is_insecure("127.0.0.1:5000", &[]));
        assert!(is_insecure("localhost:5000", &[]));
        assert!(!is_insecure("registry.example.com", &[]));
        assert!(is_insecure("reg.lan:5000", &["reg.lan:5000".to_string()]));
    }
}
