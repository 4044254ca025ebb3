//! `docker image inspect` output, built from the record and the raw config so fields we do
//! not model still come through verbatim.

use super::{ImageRecord, ImageStore};
use crate::error::{Error, Result};
use serde_json::{Value, json};

impl ImageStore {
    pub fn inspect(&self, record: &ImageRecord) -> Result<Value> {
        let raw = self.raw_config(record)?;
        let config: Value = serde_json::from_slice(&raw)
            .map_err(|e| Error::Internal(format!("stored config {}: {e}", record.id)))?;
        let field = |k: &str| config.get(k).cloned().unwrap_or(Value::Null);
        let string = |k: &str| {
            config
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        let dirs = self.layer_dirs(record)?;
        let mut graph = serde_json::Map::new();
        if let Some((top, lower)) = dirs.split_last() {
            graph.insert("UpperDir".into(), json!(top.display().to_string()));
            if !lower.is_empty() {
                // overlayfs lists lowerdirs top first.
                let joined: Vec<String> = lower
                    .iter()
                    .rev()
                    .map(|p| p.display().to_string())
                    .collect();
                graph.insert("LowerDir".into(), json!(joined.join(":")));
            }
        }
        let mut out = json!({
            "Id": record.id.to_string(),
            "RepoTags": record.repo_tags.iter().map(|r| r.familiar()).collect::<Vec<_>>(),
            "RepoDigests": record.repo_digests.iter().map(|r| r.familiar()).collect::<Vec<_>>(),
            "Parent": "",
            "Comment": string("comment"),
            "Created": string("created"),
            "DockerVersion": string("docker_version"),
            "Author": string("author"),
            "Config": field("config"),
            "Architecture": string("architecture"),
            "Os": string("os"),
            "Size": record.size,
            "GraphDriver": {"Name": "overlay2", "Data": Value::Object(graph)},
            "RootFS": {
                "Type": "layers",
                "Layers": record.layers.iter().map(|l| l.to_string()).collect::<Vec<_>>(),
            },
            "Metadata": {"LastTagTime": "0001-01-01T00:00:00Z"},
        });
        if let Value::Object(map) = &mut out {
            // Older Docker configs carry the build container's config; for the rest Docker
            // shows an empty one.
            let cc = config
                .get("container_config")
                .cloned()
                .unwrap_or_else(empty_container_config);
            map.insert("ContainerConfig".into(), cc);
            if let Some(v) = config.get("variant") {
                map.insert("Variant".into(), v.clone());
            }
        }
        Ok(out)
    }
}

fn empty_container_config() -> Value {
    json!({
        "Hostname": "", "Domainname": "", "User": "",
        "AttachStdin": false, "AttachStdout": false, "AttachStderr": false,
        "Tty": false, "OpenStdin": false, "StdinOnce": false,
        "Env": null, "Cmd": null, "Image": "", "Volumes": null,
        "WorkingDir": "", "Entrypoint": null, "OnBuild": null, "Labels": null,
    })
}
