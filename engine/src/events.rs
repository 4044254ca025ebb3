//! The event journal behind `docker events`.
//!
//! State changes happen in many processes: the `pelagos` CLI, the daemon, each
//! container's monitor (exits), each health runner (health changes). Each appends
//! Docker-shaped events, one JSON line per `write(2)`, to one file under the run root, and
//! the daemon tails that file. So `docker events` sees a `pelagos stop` as well as a
//! `docker stop`, a `die` is published by the process that saw the exit (once, whoever
//! watches), and events made while no daemon ran are there for `since` replays.
//!
//! Appends are `O_APPEND` writes under a shared `flock`; the file is rotated (renamed to
//! `.1`) past [`ROTATE_AT`] under an exclusive one, so a reader that takes the exclusive
//! lock on the renamed file has seen every line written to it: a writer re-checks after
//! locking that its descriptor is still the file the path names.

use crate::model::ContainerRecord;
use crate::paths::Roots;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Rotation threshold: a few thousand container lifecycles, then the older half goes.
pub const ROTATE_AT: u64 = 4 << 20;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Actor {
    #[serde(rename = "ID")]
    pub id: String,
    #[serde(rename = "Attributes", default)]
    pub attributes: BTreeMap<String, String>,
}

/// Docker's event message; `status`/`id`/`from` are the legacy fields devcontainers needs.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Event {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub status: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub from: String,
    #[serde(rename = "Type")]
    pub kind: String,
    #[serde(rename = "Action")]
    pub action: String,
    #[serde(rename = "Actor")]
    pub actor: Actor,
    #[serde(default)]
    pub scope: String,
    #[serde(default)]
    pub time: i64,
    #[serde(rename = "timeNano", default)]
    pub time_nano: i64,
    /// The reader's position of this event in the journal (not on the wire): what
    /// replays and live streams deduplicate by.
    #[serde(skip)]
    pub seq: u64,
}

impl Event {
    /// An event of `kind` stamped now. Container events carry the legacy fields.
    pub fn new(
        kind: &str,
        action: &str,
        id: &str,
        from: &str,
        attributes: BTreeMap<String, String>,
    ) -> Event {
        let nanos = crate::logs::now_nanos();
        let legacy = kind == "container";
        let pick = |s: &str| if legacy { s.to_string() } else { String::new() };
        Event {
            status: pick(action),
            id: pick(id),
            from: pick(from),
            kind: kind.to_string(),
            action: action.to_string(),
            actor: Actor {
                id: id.to_string(),
                attributes,
            },
            scope: "local".into(),
            time: nanos / 1_000_000_000,
            time_nano: nanos,
            seq: 0,
        }
    }

    /// A container event: attributes hold every label plus `image` and `name`.
    pub fn container(action: &str, r: &ContainerRecord, extra: &[(&str, String)]) -> Event {
        let mut attributes = r.config.labels.clone();
        attributes.insert("image".into(), r.config.image.clone());
        attributes.insert("name".into(), r.name.clone());
        for (k, v) in extra {
            attributes.insert(k.to_string(), v.clone());
        }
        Event::new("container", action, &r.id, &r.config.image, attributes)
    }

    /// An image, network or volume event with these attributes.
    pub fn simple(kind: &str, action: &str, id: &str, attrs: &[(&str, String)]) -> Event {
        let attributes = attrs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        Event::new(kind, action, id, "", attributes)
    }
}

/// Where events of one run root are appended.
#[derive(Debug, Clone)]
pub struct Journal {
    path: PathBuf,
}

impl Journal {
    pub fn new(roots: &Roots) -> Journal {
        Journal {
            path: roots.run.join("events").join("journal.jsonl"),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The rotated, older file.
    pub fn previous(&self) -> PathBuf {
        self.path.with_extension("jsonl.1")
    }

    /// Appends one event. Best effort: an event that cannot be written is logged, never a
    /// reason to fail the action it describes.
    pub fn append(&self, e: &Event) {
        if let Err(err) = self.try_append(e) {
            tracing::warn!("event journal {}: {err}", self.path.display());
        }
    }

    pub fn container(&self, action: &str, r: &ContainerRecord, extra: &[(&str, String)]) {
        self.append(&Event::container(action, r, extra));
    }

    pub fn simple(&self, kind: &str, action: &str, id: &str, attrs: &[(&str, String)]) {
        self.append(&Event::simple(kind, action, id, attrs));
    }

    fn try_append(&self, e: &Event) -> std::io::Result<()> {
        let mut line = serde_json::to_vec(e)?;
        line.push(b'\n');
        let mut f = self.open_locked()?;
        // One write: O_APPEND places it whole at the end, whatever else appends.
        f.write_all(&line)?;
        if f.metadata()?.len() > ROTATE_AT {
            self.rotate(&f)?;
        }
        Ok(())
    }

    /// The current journal, open for appending under a shared lock, and still the file
    /// the path names (not one a rotation renamed away after we opened it).
    fn open_locked(&self) -> std::io::Result<File> {
        for _ in 0..8 {
            let f = match self.open() {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    std::fs::create_dir_all(self.path.parent().unwrap_or(Path::new("/")))?;
                    self.open()?
                }
                r => r?,
            };
            lock(&f, libc::LOCK_SH)?;
            if same_file(&f, &self.path) {
                return Ok(f);
            }
        }
        Err(std::io::Error::other("journal kept being rotated"))
    }

    fn open(&self) -> std::io::Result<File> {
        OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .custom_flags(libc::O_CLOEXEC)
            .open(&self.path)
    }

    fn rotate(&self, f: &File) -> std::io::Result<()> {
        // Converting the lock lets every other appender finish first; whoever converts
        // first renames, the others find the path moved on.
        lock(f, libc::LOCK_EX)?;
        if same_file(f, &self.path) && f.metadata()?.len() > ROTATE_AT {
            std::fs::rename(&self.path, self.previous())?;
        }
        Ok(())
    }
}

pub fn lock(f: &File, op: libc::c_int) -> std::io::Result<()> {
    loop {
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(f.as_raw_fd(), op) } == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Whether `path` still names the file `f` has open.
pub fn same_file(f: &File, path: &Path) -> bool {
    match (f.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
        _ => false,
    }
}

/// Complete lines of `buf` parsed as events; the incomplete tail (a write still being
/// copied in) stays in `buf` for the next read. Lines that do not parse are skipped.
pub fn take_lines(buf: &mut Vec<u8>) -> Vec<Event> {
    let Some(end) = buf.iter().rposition(|&b| b == b'\n') else {
        return Vec::new();
    };
    let out = buf[..end]
        .split(|&b| b == b'\n')
        .filter(|l| !l.is_empty())
        .filter_map(|l| serde_json::from_slice(l).ok())
        .collect();
    buf.drain(..=end);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn sample(i: usize) -> Event {
        Event::simple(
            "volume",
            "create",
            &format!("v{i}"),
            &[("driver", "local".into())],
        )
    }

    #[test]
    fn appends_parse_back_in_order_and_keep_partial_lines() {
        let d = tempfile::tempdir().unwrap();
        let j = Journal::new(&Roots::new(d.path().join("data"), d.path().join("run")));
        for i in 0..3 {
            j.append(&sample(i));
        }
        let mut buf = std::fs::read(j.path()).unwrap();
        buf.extend_from_slice(b"{\"Type\":\"volu");
        let evs = take_lines(&mut buf);
        assert_eq!(
            evs.iter().map(|e| e.actor.id.as_str()).collect::<Vec<_>>(),
            ["v0", "v1", "v2"]
        );
        assert_eq!(evs[0].actor.attributes["driver"], "local");
        assert_eq!(evs[0].status, "", "legacy fields are for containers only");
        assert_eq!(buf, b"{\"Type\":\"volu");
    }

    /// Concurrent appenders across a rotation: every line lands whole in one of the two
    /// files, none lost, none torn.
    #[test]
    fn concurrent_appends_across_rotation_lose_nothing() {
        let d = tempfile::tempdir().unwrap();
        let j = Journal::new(&Roots::new(d.path().join("data"), d.path().join("run")));
        let big = "x".repeat(2000);
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let j = j.clone();
                let big = big.clone();
                std::thread::spawn(move || {
                    for i in 0..700 {
                        j.simple(
                            "volume",
                            "create",
                            &format!("{t}-{i}"),
                            &[("pad", big.clone())],
                        );
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let mut buf = Vec::new();
        for p in [j.previous(), j.path().to_path_buf()] {
            File::open(&p).unwrap().read_to_end(&mut buf).unwrap();
        }
        let lines = buf.split(|&b| b == b'\n').filter(|l| !l.is_empty()).count();
        let evs = take_lines(&mut buf);
        assert_eq!(lines, evs.len(), "a torn line");
        // 2800 lines of ~2.1 KB overflow 4 MiB once: the two files hold them all.
        let current = std::fs::read(j.path()).unwrap().len() as u64;
        assert!(current < ROTATE_AT + 4096, "not rotated: {current}");
        assert_eq!(evs.len(), 2800);
        let last: Vec<_> = (0..4)
            .map(|t| evs.iter().any(|e| e.actor.id == format!("{t}-699")))
            .collect();
        assert_eq!(last, [true; 4], "the newest events are in the current file");
    }
}
