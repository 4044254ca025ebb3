//! The event bus behind `GET /events`: handlers publish what they did, subscribers get it
//! from the moment they subscribe, and a bounded backlog serves `since` replays.

use serde::Serialize;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use tokio::sync::broadcast;

#[derive(Debug, Clone, Serialize)]
pub struct Actor {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Attributes")]
    pub attributes: BTreeMap<String, String>,
}

/// Docker's event message; `status`/`id`/`from` are the legacy fields devcontainers needs.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub status: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub id: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub from: String,
    #[serde(rename = "Type")]
    pub kind: String,
    #[serde(rename = "Action")]
    pub action: String,
    #[serde(rename = "Actor")]
    pub actor: Actor,
    pub scope: String,
    pub time: i64,
    #[serde(rename = "timeNano")]
    pub time_nano: i64,
}

const BACKLOG: usize = 1024;

pub struct Bus {
    tx: broadcast::Sender<Event>,
    backlog: Mutex<VecDeque<Event>>,
}

impl Default for Bus {
    fn default() -> Self {
        Bus {
            tx: broadcast::channel(BACKLOG).0,
            backlog: Mutex::new(VecDeque::with_capacity(64)),
        }
    }
}

impl Bus {
    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.tx.subscribe()
    }

    /// Events already published, oldest first.
    pub fn backlog(&self) -> Vec<Event> {
        self.backlog
            .lock()
            .map(|b| b.iter().cloned().collect())
            .unwrap_or_default()
    }

    pub fn publish(&self, e: Event) {
        if let Ok(mut b) = self.backlog.lock() {
            if b.len() >= BACKLOG {
                b.pop_front();
            }
            b.push_back(e.clone());
        }
        let _ = self.tx.send(e);
    }

    /// A container event: attributes hold every label plus `image` and `name`.
    pub fn container(
        &self,
        action: &str,
        id: &str,
        image: &str,
        name: &str,
        labels: &BTreeMap<String, String>,
        extra: &[(&str, String)],
    ) {
        let mut attributes = labels.clone();
        attributes.insert("image".into(), image.to_string());
        attributes.insert("name".into(), name.to_string());
        for (k, v) in extra {
            attributes.insert(k.to_string(), v.clone());
        }
        self.publish(make("container", action, id, image, attributes, true));
    }

    pub fn simple(&self, kind: &str, action: &str, id: &str, attrs: &[(&str, String)]) {
        let attributes = attrs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        self.publish(make(kind, action, id, "", attributes, false));
    }
}

fn make(
    kind: &str,
    action: &str,
    id: &str,
    from: &str,
    attributes: BTreeMap<String, String>,
    legacy: bool,
) -> Event {
    let nanos = engine::logs::now_nanos();
    Event {
        status: if legacy {
            action.to_string()
        } else {
            String::new()
        },
        id: if legacy {
            id.to_string()
        } else {
            String::new()
        },
        from: if legacy {
            from.to_string()
        } else {
            String::new()
        },
        kind: kind.to_string(),
        action: action.to_string(),
        actor: Actor {
            id: id.to_string(),
            attributes,
        },
        scope: "local".into(),
        time: nanos / 1_000_000_000,
        time_nano: nanos,
    }
}

/// Whether `e` passes Docker's event filters (type, event/action, container, label, ...).
pub fn matches(e: &Event, f: &BTreeMap<String, Vec<String>>) -> bool {
    f.iter().all(|(k, vals)| {
        vals.is_empty()
            || vals.iter().any(|v| match k.as_str() {
                "type" => &e.kind == v,
                "event" => &e.action == v || e.action.split(':').next() == Some(v.as_str()),
                "container" | "image" | "volume" | "network" => {
                    (e.kind == *k || (k == "image" && e.kind == "container"))
                        && (e.actor.id.starts_with(v.as_str())
                            || e.actor.attributes.get("name") == Some(v)
                            || (k == "image" && e.actor.attributes.get("image") == Some(v)))
                }
                "label" => match v.split_once('=') {
                    Some((lk, lv)) => e.actor.attributes.get(lk).is_some_and(|x| x == lv),
                    None => e.actor.attributes.contains_key(v.as_str()),
                },
                "scope" => &e.scope == v,
                _ => true,
            })
    })
}
