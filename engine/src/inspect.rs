//! Docker-shaped views of a container (ContainerJSON for inspect, the `ps` summary), built
//! in one place for the CLI and the API.

use crate::paths::ContainerPaths;
use crate::spec::command_line;
use crate::state::Status;
use crate::store::Container;
use serde_json::{Value, json};

pub fn container_json(c: &Container, paths: &ContainerPaths) -> Value {
    let r = &c.record;
    let s = &c.state;
    let argv = command_line(r);
    let (path, args) = match argv.split_first() {
        Some((p, a)) => (p.clone(), a.to_vec()),
        None => (String::new(), vec![]),
    };
    let mut config = serde_json::to_value(&r.config).unwrap_or_default();
    // Docker shows null for unset lists.
    for k in ["Entrypoint", "Cmd"] {
        if config[k].as_array().is_some_and(|a| a.is_empty()) {
            config[k] = Value::Null;
        }
    }
    let mut host_config = serde_json::to_value(&r.host_config).unwrap_or_default();
    if let Some(o) = host_config.as_object_mut() {
        o.remove("Rootfs");
        o.remove("NetnsPath");
    }
    let lower: Vec<String> = r.layers.iter().rev().cloned().collect();
    let mounts: Vec<Value> = r
        .mounts
        .iter()
        .map(|m| {
            let mut v = serde_json::to_value(m).unwrap_or_default();
            if let Some(o) = v.as_object_mut() {
                o.remove("Anonymous");
            }
            v
        })
        .collect();
    let mut v = json!({
        "Id": r.id,
        "Created": r.created,
        "Path": path,
        "Args": args,
        "State": {
            "Status": s.status.as_str(),
            "Running": matches!(s.status, Status::Running | Status::Paused | Status::Restarting),
            "Paused": s.status == Status::Paused,
            "Restarting": s.status == Status::Restarting,
            "OOMKilled": s.oom_killed,
            "Dead": s.status == Status::Dead,
            "Pid": s.pid,
            "ExitCode": s.exit_code,
            "Error": s.error,
            "StartedAt": s.started_at,
            "FinishedAt": s.finished_at,
        },
        "Image": r.image,
        "ResolvConfPath": paths.resolv_conf(),
        "HostnamePath": paths.hostname(),
        "HostsPath": paths.hosts(),
        "LogPath": paths.log_file(),
        "Name": format!("/{}", r.name),
        "RestartCount": s.restart_count,
        "Driver": if r.host_config.rootfs.is_some() { "rootfs" } else { "overlay2" },
        "Platform": "linux",
        "MountLabel": "",
        "ProcessLabel": "",
        "AppArmorProfile": "",
        "ExecIDs": Value::Null,
        "HostConfig": host_config,
        "GraphDriver": {
            "Name": "overlay2",
            "Data": {
                "LowerDir": lower.join(":"),
                "UpperDir": paths.upper(),
                "WorkDir": paths.work(),
                "MergedDir": paths.rootfs(),
            }
        },
        "Mounts": mounts,
        "Config": config,
        "NetworkSettings": crate::netglue::settings_json(&paths.roots(), r, s.is_running()),
    });
    if let Some(h) = &c.health {
        v["State"]["Health"] = serde_json::to_value(h).unwrap_or_default();
    }
    v
}

/// Docker's human status column: "Up 5 minutes", "Exited (0) 2 seconds ago", "Created".
pub fn status_text(c: &Container, now: chrono::DateTime<chrono::Utc>) -> String {
    let s = &c.state;
    let since = |t: &str| {
        chrono::DateTime::parse_from_rfc3339(t)
            .map(|t| human_duration(now.signed_duration_since(t.with_timezone(&chrono::Utc))))
            .unwrap_or_default()
    };
    match s.status {
        Status::Running => match &c.health {
            Some(h) if h.status == "starting" => {
                format!("Up {} (health: starting)", since(&s.started_at))
            }
            Some(h) => format!("Up {} ({})", since(&s.started_at), h.status),
            None => format!("Up {}", since(&s.started_at)),
        },
        Status::Paused => format!("Up {} (Paused)", since(&s.started_at)),
        Status::Restarting => format!("Restarting ({}) {} ago", s.exit_code, since(&s.finished_at)),
        Status::Exited => format!("Exited ({}) {} ago", s.exit_code, since(&s.finished_at)),
        Status::Created => "Created".into(),
        Status::Removing => "Removal In Progress".into(),
        Status::Dead => "Dead".into(),
    }
}

/// Docker's units.HumanDuration.
pub fn human_duration(d: chrono::Duration) -> String {
    let secs = d.num_seconds().max(0);
    match secs {
        0 => "Less than a second".into(),
        1 => "1 second".into(),
        s if s < 60 => format!("{s} seconds"),
        s if s < 120 => "About a minute".into(),
        s if s < 3600 => format!("{} minutes", s / 60),
        s if s < 7200 => "About an hour".into(),
        s if s < 48 * 3600 => format!("{} hours", s / 3600),
        s if s < 7 * 24 * 3600 * 2 => format!("{} days", s / 86400),
        s if s < 30 * 24 * 3600 * 3 => format!("{} weeks", s / (7 * 86400)),
        s if s < 365 * 24 * 3600 * 2 => format!("{} months", s / (30 * 86400)),
        s => format!("{} years", s / (365 * 86400)),
    }
}

/// Whether a container passes a whole `ps`/`containers/json` filter set: Docker ANDs the
/// keys and ORs the values of one key, except `label`, whose values must all hold.
/// `before` and `since` name other containers, so callers apply them.
pub fn passes_filters(c: &Container, f: &std::collections::BTreeMap<String, Vec<String>>) -> bool {
    f.iter().all(|(key, vals)| {
        vals.is_empty()
            || if key == "label" {
                crate::filters::labels_match(vals, &c.record.config.labels)
            } else {
                vals.iter().any(|v| filter_matches(c, key, v))
            }
    })
}

/// One `ps`/`containers/json` filter term other than `label`. Unknown keys match nothing.
fn filter_matches(c: &Container, key: &str, v: &str) -> bool {
    match key {
        "name" => crate::filters::name_matches(v, &c.record.name),
        "status" => c.state.status.as_str() == v,
        "id" => c.record.id.starts_with(v),
        "exited" => {
            c.state.status == Status::Exited
                && v.parse::<i32>().is_ok_and(|n| n == c.state.exit_code)
        }
        "ancestor" => c.record.config.image == v || (!v.is_empty() && c.record.image.contains(v)),
        "network" => {
            let mode = &c.record.host_config.network_mode;
            mode == v || c.record.networks.contains_key(v) || (v == "none" && mode.is_empty())
        }
        "health" => match &c.health {
            None => v == "none",
            Some(h) => c.state.is_running() && h.status == v,
        },
        "volume" => c
            .record
            .mounts
            .iter()
            .any(|m| m.name == v || m.destination == v || m.source == v),
        "before" | "since" | "is-task" => true,
        _ => false,
    }
}
