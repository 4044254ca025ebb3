//! Content-addressed blobs (`blobs/sha256/<hex>`): image configs and manifests.

use super::fsutil::write_atomic;
use crate::digest::Digest;
use crate::error::{Error, Result};
use std::fs;
use std::path::PathBuf;

pub struct BlobStore {
    dir: PathBuf,
}

impl BlobStore {
    pub fn new(dir: PathBuf) -> Self {
        BlobStore { dir }
    }

    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.dir.join(digest.hex())
    }

    /// Stores `bytes`, which must hash to `expected`. Writing an existing blob again is a
    /// no-op: same digest, same content.
    pub fn put(&self, expected: &Digest, bytes: &[u8]) -> Result<()> {
        let actual = Digest::of_bytes(bytes);
        if &actual != expected {
            return Err(Error::DigestMismatch {
                what: "blob".into(),
                expected: expected.to_string(),
                actual: actual.to_string(),
            });
        }
        let path = self.path(expected);
        if path.exists() {
            return Ok(());
        }
        write_atomic(&path, bytes)
    }

    /// Reads a blob and re-verifies it, so on-disk corruption surfaces as an error rather
    /// than a wrong config.
    pub fn get(&self, digest: &Digest) -> Result<Vec<u8>> {
        let path = self.path(digest);
        let bytes = fs::read(&path).map_err(|e| Error::path(&path, e))?;
        let actual = Digest::of_bytes(&bytes);
        if &actual != digest {
            return Err(Error::DigestMismatch {
                what: format!("stored blob {}", path.display()),
                expected: digest.to_string(),
                actual: actual.to_string(),
            });
        }
        Ok(bytes)
    }

    pub fn remove(&self, digest: &Digest) -> Result<()> {
        let path = self.path(digest);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::path(&path, e)),
        }
    }
}
