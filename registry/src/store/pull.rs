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
        let auth = RegistryAuth::Anonymous;
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

    async fn fetch_layers(
        &self,
        client: &oci_client::Client,
        oref: &oci_client::Reference,
        layers: &[oci_client::manifest::OciDescriptor],
        diff_ids: &[Digest],
        created: &mut Vec<Digest>,
        on_event: &mut (dyn FnMut(PullEvent) + Send),
    ) -> Result<()> {
        for (desc, diff_id) in layers.iter().zip(diff_ids) {
            if self.layers.exists(diff_id) {
                on_event(PullEvent::LayerExists {
                    digest: desc.digest.clone(),
                });
                continue;
            }
            let tmp = self
                .root
                .join("tmp")
                .join(format!("pull-{}", super::fsutil::random_suffix()));
            let result = self.fetch_one(client, oref, desc, diff_id, &tmp).await;
            let _ = std::fs::remove_file(&tmp);
            let bytes = match result? {
                Some(b) => {
                    created.push(diff_id.clone());
                    b
                }
                None => 0,
            };
            on_event(PullEvent::LayerDownloaded {
                digest: desc.digest.clone(),
                bytes,
            });
        }
        Ok(())
    }

    /// Downloads one blob, verifying digest and size, and unpacks it (diff-id verified).
    async fn fetch_one(
        &self,
        client: &oci_client::Client,
        oref: &oci_client::Reference,
        desc: &oci_client::manifest::OciDescriptor,
        diff_id: &Digest,
        tmp: &std::path::Path,
    ) -> Result<Option<u64>> {
        let expected = Digest::parse(&desc.digest)?;
        let file = tokio::fs::File::create(tmp)
            .await
            .map_err(|e| Error::path(tmp, e))?;
        let mut hashing = HashingFile {
            file,
            hash: Sha256::new(),
            len: 0,
        };
        let mut buf = Vec::new();
        client
            .pull_blob(oref, desc, &mut buf)
            .await
            .map_err(|e| unavailable(&format!("blob {}", desc.digest), e))?;
        hashing.write(&buf).await.map_err(|e| Error::path(tmp, e))?;
        drop(buf);
        let (digest, len) = hashing.finish().await.map_err(|e| Error::path(tmp, e))?;
        if digest != expected || (desc.size >= 0 && len != desc.size as u64) {
            return Err(Error::DigestMismatch {
                what: format!("layer blob {}", desc.digest),
                expected: expected.to_string(),
                actual: format!("{digest} ({len} bytes)"),
            });
        }
        let f = std::fs::File::open(tmp).map_err(|e| Error::path(tmp, e))?;
        let made = self
            .layers
            .import(diff_id, std::io::BufReader::new(f), &desc.digest)?;
        Ok(made.then_some(len))
    }
}

struct HashingFile {
    file: tokio::fs::File,
    hash: Sha256,
    len: u64,
}

impl HashingFile {
    async fn write(&mut self, b: &[u8]) -> std::io::Result<()> {
        self.hash.update(b);
        self.len += b.len() as u64;
        self.file.write_all(b).await
    }

    async fn finish(mut self) -> std::io::Result<(Digest, u64)> {
        self.file.flush().await?;
        let hex = hex::encode(self.hash.finalize());
        Digest::from_hex(&hex)
            .map(|d| (d, self.len))
            .map_err(|e| std::io::Error::other(e.to_string()))
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
