//! `/etc/pelagos/daemon.json`: daemon-wide settings with Docker's key names. The file is
//! parsed once here; each crate reads its own keys from the parsed document (the registry
//! `insecure-registries`/`registry-mirrors`, the CLI `data-root`) and ignores the rest.

use crate::errors::{CliError, CliResult};
use std::path::{Path, PathBuf};

/// The parsed file; an empty object when it does not exist.
pub fn load(path: &Path) -> CliResult<serde_json::Value> {
    match std::fs::read(path) {
        Ok(bytes) => {
            let doc: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
                CliError::Usage(format!(
                    "unable to configure pelagos with file {}: {e}",
                    path.display()
                ))
            })?;
            if !doc.is_object() {
                return Err(CliError::Usage(format!(
                    "unable to configure pelagos with file {}: not a JSON object",
                    path.display()
                )));
            }
            Ok(doc)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(serde_json::json!({})),
        Err(e) => Err(CliError::Other(anyhow::anyhow!(
            "reading {}: {e}",
            path.display()
        ))),
    }
}

/// `data-root`, when set.
pub fn data_root(doc: &serde_json::Value) -> Option<PathBuf> {
    doc.get("data-root")
        .and_then(|v| v.as_str())
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
}
