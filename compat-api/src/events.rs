//! The event bus behind `GET /events`, fed by the run root's event journal.
//!
//! Handlers do not broadcast what they did: they append to the journal (as the `pelagos`
//! CLI, container monitors and health runners do), and one tailer thread reads the journal
//! back and broadcasts every line. So subscribers see every process's events in journal
//! order, and a bounded backlog, loaded from the journal at start, serves `since` replays.

pub use engine::events::Event;
use engine::events::{Journal, take_lines};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
use std::collections::{BTreeMap, VecDeque};
use std::io::Read;
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;

const BACKLOG: usize = 1024;

struct Inner {
    tx: broadcast::Sender<Event>,
    /// Replayable events, oldest first, with the sequence numbers live events continue.
    backlog: Mutex<VecDeque<Event>>,
}

pub struct Bus {
    journal: Journal,
    inner: Arc<Inner>,
}

impl Bus {
    /// The bus of this journal, with its tailer thread running.
    pub fn open(journal: Journal) -> std::io::Result<Bus> {
        let inner = Arc::new(Inner {
            tx: broadcast::channel(BACKLOG).0,
            backlog: Mutex::new(VecDeque::with_capacity(BACKLOG)),
        });
        let tailer = Tailer::open(&journal, inner.clone())?;
        std::thread::Builder::new()
            .name("events-tailer".into())
            .spawn(move || tailer.run())?;
        Ok(Bus { journal, inner })
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.inner.tx.subscribe()
    }

    /// Events already published, oldest first.
    pub fn backlog(&self) -> Vec<Event> {
        self.inner
            .backlog
            .lock()
            .map(|b| b.iter().cloned().collect())
            .unwrap_or_default()
    }

    pub fn publish(&self, e: Event) {
        self.journal.append(&e);
    }

    /// A container event: attributes hold every label plus `image` and `name`.
    pub fn container(
        &self,
        action: &str,
        record: &engine::model::ContainerRecord,
        extra: &[(&str, String)],
    ) {
        self.publish(Event::container(action, record, extra));
    }

    pub fn simple(&self, kind: &str, action: &str, id: &str, attrs: &[(&str, String)]) {
        self.publish(Event::simple(kind, action, id, attrs));
    }
}

/// Follows the journal: inotify on its directory wakes it for appends and for the
/// rotation that renames the file away.
struct Tailer {
    journal: Journal,
    inner: Arc<Inner>,
    ino: Inotify,
    file: std::fs::File,
    partial: Vec<u8>,
    seq: u64,
}

impl Tailer {
    fn open(journal: &Journal, inner: Arc<Inner>) -> std::io::Result<Tailer> {
        let dir = journal
            .path()
            .parent()
            .map(|p| p.to_path_buf())
            .unwrap_or_default();
        std::fs::create_dir_all(&dir)?;
        // Watch before reading: nothing appended in between goes unnoticed.
        let ino = Inotify::init(InitFlags::IN_CLOEXEC)?;
        ino.add_watch(
            &dir,
            AddWatchFlags::IN_MODIFY | AddWatchFlags::IN_CREATE | AddWatchFlags::IN_MOVED_FROM,
        )?;
        let file = open_current(journal)?;
        let mut t = Tailer {
            journal: journal.clone(),
            inner,
            ino,
            file,
            partial: Vec::new(),
            seq: 0,
        };
        // What is on disk already is history: replayable, not broadcast.
        if let Ok(mut old) = std::fs::File::open(journal.previous()) {
            let mut buf = Vec::new();
            let _ = old.read_to_end(&mut buf);
            let evs = take_lines(&mut buf);
            t.deliver(evs, false);
        }
        let evs = t.read_new();
        t.deliver(evs, false);
        Ok(t)
    }

    fn run(mut self) {
        loop {
            match self.ino.read_events() {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => {
                    tracing::error!("event journal: inotify: {e}; events stop");
                    return;
                }
            }
            let evs = self.read_new();
            self.deliver(evs, true);
            if !engine::events::same_file(&self.file, self.journal.path()) {
                self.follow_rotation();
            }
        }
    }

    /// Finishes the renamed file (its appenders are done once we hold its lock
    /// exclusively) and moves on to the new one.
    fn follow_rotation(&mut self) {
        let _ = engine::events::lock(&self.file, libc::LOCK_EX);
        let evs = self.read_new();
        self.deliver(evs, true);
        match open_current(&self.journal) {
            Ok(f) => {
                self.file = f;
                self.partial.clear();
                let evs = self.read_new();
                self.deliver(evs, true);
            }
            Err(e) => tracing::error!("event journal: {e}"),
        }
    }

    fn read_new(&mut self) -> Vec<Event> {
        let _ = (&self.file).read_to_end(&mut self.partial);
        take_lines(&mut self.partial)
    }

    fn deliver(&mut self, evs: Vec<Event>, live: bool) {
        if evs.is_empty() {
            return;
        }
        let Ok(mut backlog) = self.inner.backlog.lock() else {
            return;
        };
        for mut e in evs {
            self.seq += 1;
            e.seq = self.seq;
            if backlog.len() >= BACKLOG {
                backlog.pop_front();
            }
            backlog.push_back(e.clone());
            if live {
                // Under the backlog lock: a subscriber that takes the backlog after
                // subscribing sees each event in one of the two, never neither.
                let _ = self.inner.tx.send(e);
            }
        }
    }
}

fn open_current(journal: &Journal) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .mode(0o600)
        .open(journal.path())
}

/// Whether `e` passes Docker's event filters (type, event/action, container, label, ...).
pub fn matches(e: &Event, f: &BTreeMap<String, Vec<String>>) -> bool {
    f.iter().all(|(k, vals)| {
        vals.is_empty()
            || (k == "label" && engine::filters::labels_match(vals, &e.actor.attributes))
            || (k != "label"
                && vals.iter().any(|v| match k.as_str() {
                    "type" => &e.kind == v,
                    "event" => &e.action == v || e.action.split(':').next() == Some(v.as_str()),
                    "container" | "image" | "volume" | "network" => {
                        (e.kind == *k || (k == "image" && e.kind == "container"))
                            && (e.actor.id.starts_with(v.as_str())
                                || e.actor.attributes.get("name") == Some(v)
                                || (k == "image" && e.actor.attributes.get("image") == Some(v)))
                    }
                    "scope" => &e.scope == v,
                    _ => true,
                }))
    })
}
