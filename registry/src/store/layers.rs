//! Unpacked layers, one directory per diff-id (`layers/<hex>/diff` plus `meta.json`),
//! shared by every image that contains the layer.
//!
//! A layer is unpacked into `layers/.tmp-*` (same filesystem) and renamed into place only
//! after its diff-id checked out, so a crash or a bad layer never leaves a half-written
//! directory under a real name. Two processes importing the same layer race harmlessly:
//! the second rename fails because the target exists, and the loser deletes its copy.

use super::fsutil::{
    create_dir_all, read_json, remove_tree_atomically, temp_name, temp_owner_is_dead,
    write_json_atomic,
};
use crate::digest::{Digest, HashingReader};
use crate::error::{Error, Result};
use crate::unpack::unpack_layer;
use flate2::read::MultiGzDecoder;
use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];
const TMP_PREFIX: &str = ".tmp-";
/// Temp dirs older than this belong to a crashed import, not a running one.
const STALE_TMP_AFTER: Duration = Duration::from_secs(24 * 3600);
/// Doomed dirs older than this belong to a crashed `rmi`.
const STALE_DEL_AFTER: Duration = Duration::from_secs(3600);
/// Must match the prefix `remove_tree_atomically` uses.
const DEL_PREFIX: &str = ".del-";

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct LayerMeta {
    diff_id: Digest,
    /// Bytes of regular-file content in the layer.
    size: u64,
}

pub struct LayerStore {
    dir: PathBuf,
}

impl LayerStore {
    pub fn new(dir: PathBuf) -> Self {
        LayerStore { dir }
    }

    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }

    fn layer_dir(&self, diff_id: &Digest) -> PathBuf {
        self.dir.join(diff_id.hex())
    }

    pub fn diff_dir(&self, diff_id: &Digest) -> PathBuf {
        self.layer_dir(diff_id).join("diff")
    }

    pub fn exists(&self, diff_id: &Digest) -> bool {
        self.layer_dir(diff_id).join("meta.json").is_file()
    }

    pub fn size(&self, diff_id: &Digest) -> Result<u64> {
        let meta: LayerMeta = read_json(&self.layer_dir(diff_id).join("meta.json"))?;
        Ok(meta.size)
    }

    /// Unpacks the layer blob `raw` (plain, gzip or zstd tar) unless the layer is already
    /// present, verifying its diff-id. Returns whether this call created the layer.
    /// `label` names the layer in errors (its path in the archive).
    pub fn import(&self, diff_id: &Digest, raw: impl Read, label: &str) -> Result<bool> {
        if self.exists(diff_id) {
            return Ok(false);
        }
        let tmp = self.dir.join(temp_name(TMP_PREFIX));
        let result = self.unpack_into(&tmp, diff_id, raw, label);
        if let Err(e) = result {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e);
        }
        let target = self.layer_dir(diff_id);
        match fs::rename(&tmp, &target) {
            Ok(()) => Ok(true),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EEXIST) | Some(libc::ENOTEMPTY)) => {
                // Another import of the same layer won the race; theirs is as good as ours.
                let _ = fs::remove_dir_all(&tmp);
                Ok(false)
            }
            Err(e) => {
                let _ = fs::remove_dir_all(&tmp);
                Err(Error::path(&target, e))
            }
        }
    }

    fn unpack_into(
        &self,
        tmp: &std::path::Path,
        diff_id: &Digest,
        raw: impl Read,
        label: &str,
    ) -> Result<()> {
        let diff = tmp.join("diff");
        create_dir_all(&diff)?;
        let mut buffered = BufReader::new(raw);
        let head = buffered
            .fill_buf()
            .map_err(|e| Error::io(format!("reading layer {label}"), e))?;
        let decompressed: Box<dyn Read> = if head.starts_with(GZIP_MAGIC) {
            Box::new(MultiGzDecoder::new(buffered))
        } else if head.starts_with(ZSTD_MAGIC) {
            Box::new(ZstdFrames::new(buffered))
        } else {
            Box::new(buffered)
        };
        let mut hashing = HashingReader::new(decompressed);
        let stats = unpack_layer(&mut hashing, &diff).map_err(|e| match e {
            Error::UnsafeEntry { path, reason } => Error::UnsafeEntry {
                path: format!("{label}: {path}"),
                reason,
            },
            Error::Io { context, source } => Error::Io {
                context: format!("layer {label}: {context}"),
                source,
            },
            other => other,
        })?;
        let (actual, _) = hashing
            .finish()
            .map_err(|e| Error::io(format!("reading layer {label}"), e))?;
        if &actual != diff_id {
            return Err(Error::DigestMismatch {
                what: format!("layer {label} (diff-id)"),
                expected: diff_id.to_string(),
                actual: actual.to_string(),
            });
        }
        write_json_atomic(
            &tmp.join("meta.json"),
            &LayerMeta {
                diff_id: diff_id.clone(),
                size: stats.size,
            },
        )
    }

    pub fn remove(&self, diff_id: &Digest) -> Result<()> {
        remove_tree_atomically(&self.layer_dir(diff_id))
    }

    /// Deletes temp and half-deleted directories left by crashed processes: a `.tmp-*`
    /// whose process is gone, and any old ones (a fresh `.tmp-*` of a live process is an
    /// import in progress, and a fresh `.del-*` another process's `rmi` still deleting).
    pub fn clean_stale(&self) {
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let limit = if name.starts_with(TMP_PREFIX) {
                STALE_TMP_AFTER
            } else if name.starts_with(DEL_PREFIX) {
                STALE_DEL_AFTER
            } else {
                continue;
            };
            let stale = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| SystemTime::now().duration_since(t).ok())
                .is_some_and(|age| age > limit);
            // A killed pull or load leaves its unpack dir; its pid says it is not coming back.
            if stale || temp_owner_is_dead(&name, TMP_PREFIX) {
                let _ = fs::remove_dir_all(entry.path());
            }
        }
    }
}

/// Decodes a zstd stream of one or more frames (ruzstd's decoder stops after one frame;
/// `zstd` and `skopeo` may write several, and skippable frames for zstd:chunked).
struct ZstdFrames<R: BufRead> {
    decoder: Option<ruzstd::decoding::StreamingDecoder<R, ruzstd::decoding::FrameDecoder>>,
    source: Option<R>,
}

impl<R: BufRead> ZstdFrames<R> {
    fn new(source: R) -> Self {
        ZstdFrames {
            decoder: None,
            source: Some(source),
        }
    }
}

impl<R: BufRead> Read for ZstdFrames<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            if let Some(d) = &mut self.decoder {
                let n = d.read(buf)?;
                if n > 0 || buf.is_empty() {
                    return Ok(n);
                }
                // This frame is done; the next one (if any) starts right after it.
                if let Some(d) = self.decoder.take() {
                    self.source = Some(d.into_inner());
                }
            }
            let Some(mut src) = self.source.take() else {
                return Ok(0);
            };
            if src.fill_buf()?.is_empty() {
                return Ok(0);
            }
            let d = ruzstd::decoding::StreamingDecoder::new(src)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
            self.decoder = Some(d);
        }
    }
}
