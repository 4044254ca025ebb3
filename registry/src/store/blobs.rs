//! Content-addressed blobs (`blobs/sha256/<hex>`): image configs, manifests and the layer
//! blobs as they arrived (so push and save reproduce the same digests).

use super::fsutil::{clean_temps, temp_name, write_atomic};
use crate::digest::{Digest, HashingWriter};
use crate::error::{Error, Result};
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

pub const MEDIA_OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
pub const MEDIA_OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const MEDIA_OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";

/// The OCI layer media type matching the blob's first bytes.
pub fn layer_media_type(head: &[u8]) -> &'static str {
    if head.starts_with(&[0x1f, 0x8b]) {
        MEDIA_OCI_LAYER_GZIP
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        MEDIA_OCI_LAYER_ZSTD
    } else {
        MEDIA_OCI_LAYER
    }
}

const TEMP_PREFIX: &str = ".in-";

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

    pub fn exists(&self, digest: &Digest) -> bool {
        self.path(digest).is_file()
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

    /// Moves an already verified file (same filesystem) into place as blob `digest`;
    /// returns whether the blob is new.
    pub fn adopt(&self, digest: &Digest, file: &Path) -> Result<bool> {
        let target = self.path(digest);
        if target.exists() {
            let _ = fs::remove_file(file);
            return Ok(false);
        }
        fs::rename(file, &target).map_err(|e| Error::path(&target, e))?;
        Ok(true)
    }

    /// Copies a stream into the store, hashing it on the way; returns its digest, size and
    /// whether the blob is new.
    pub fn put_stream(&self, mut reader: impl Read) -> Result<(Digest, u64, bool)> {
        let tmp = self.dir.join(temp_name(TEMP_PREFIX));
        let mut copy = || -> std::io::Result<(Digest, u64)> {
            let mut w = HashingWriter::new(std::io::BufWriter::new(fs::File::create(&tmp)?));
            let n = std::io::copy(&mut reader, &mut w)?;
            let (mut inner, digest) = w.finish();
            inner.flush()?;
            Ok((digest, n))
        };
        match copy() {
            Ok((digest, n)) => {
                let new = self.adopt(&digest, &tmp)?;
                Ok((digest, n, new))
            }
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                Err(Error::path(&tmp, e))
            }
        }
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

    pub fn open(&self, digest: &Digest) -> Result<fs::File> {
        let path = self.path(digest);
        fs::File::open(&path).map_err(|e| Error::path(&path, e))
    }

    /// The first bytes of a blob (enough to tell its compression).
    pub fn head(&self, digest: &Digest) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; 8];
        let mut f = self.open(digest)?;
        let mut n = 0;
        while n < buf.len() {
            match f.read(&mut buf[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) => return Err(Error::path(self.path(digest), e)),
            }
        }
        buf.truncate(n);
        Ok(buf)
    }

    pub fn remove(&self, digest: &Digest) -> Result<()> {
        let path = self.path(digest);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::path(&path, e)),
        }
    }

    /// Path for a blob being written (same filesystem, so [`adopt`](Self::adopt) renames).
    pub fn temp_path(&self) -> PathBuf {
        self.dir.join(temp_name(TEMP_PREFIX))
    }

    /// Temp files of crashed or killed writers (and any older than a day).
    pub fn clean_stale(&self) {
        clean_temps(
            &self.dir,
            TEMP_PREFIX,
            std::time::Duration::from_secs(24 * 3600),
        );
    }
}
