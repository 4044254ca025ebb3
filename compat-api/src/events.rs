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
use std::io::{Read, Seek, SeekFrom};
use std::sync::{Arc, Mutex};
use tokio::sync::broadcast;

const BACKLOG: usize = 1024;

struct Inner {
    tx: broadcast::Sender<Event>,
    /// Replayable events, oldest first, with the sequence numbers live events continue.
    backlog: Mutex<VecDeque<Event>>,
    /// Set once the tailer has loaded the journal's history into the backlog.
    loaded: tokio::sync::watch::Sender<bool>,
    listeners: std::sync::atomic::AtomicUsize,
}

/// An `/events` client being counted; see [`Bus::listener`].
pub struct ListenerGuard(Arc<Inner>);

impl Drop for ListenerGuard {
    fn drop(&mut self) {
        self.0
            .listeners
            .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
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
            loaded: tokio::sync::watch::channel(false).0,
            listeners: Default::default(),
        });
        let mut tailer = Tailer::open(&journal, inner.clone())?;
        // The history is loaded by the tailer's thread, off the daemon's start; replays
        // wait for it.
        std::thread::Builder::new()
            .name("events-tailer".into())
            .spawn(move || {
                // Replays are released however the load ends, a panic included.
                struct Loaded(Arc<Inner>);
                impl Drop for Loaded {
                    fn drop(&mut self) {
                        self.0.loaded.send_replace(true);
                    }
                }
                let loaded = Loaded(tailer.inner.clone());
                if let Err(e) = tailer.load_history() {
                    tracing::warn!("event journal history: {e}");
                    // Whatever failed, what came before the start is not broadcast.
                    let _ = (&tailer.file).seek(SeekFrom::Start(tailer.history_end));
                }
                drop(loaded);
                tailer.run()
            })?;
        Ok(Bus { journal, inner })
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.inner.tx.subscribe()
    }

    /// Clients following `/events` now (`docker info`'s NEventsListener); other
    /// subscribers (`wait`) are not counted.
    pub fn listeners(&self) -> usize {
        self.inner
            .listeners
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Counts an `/events` client for as long as the guard lives.
    pub fn listener(&self) -> ListenerGuard {
        self.inner
            .listeners
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        ListenerGuard(self.inner.clone())
    }

    /// Events already published, oldest first.
    pub async fn backlog(&self) -> Vec<Event> {
        let _ = self.inner.loaded.subscribe().wait_for(|l| *l).await;
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
    /// The journal's length when the daemon opened it: what is before is history, what
    /// is after was published while serving, and is broadcast.
    history_end: u64,
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
        let history_end = file.metadata()?.len();
        Ok(Tailer {
            journal: journal.clone(),
            inner,
            ino,
            file,
            partial: Vec::new(),
            seq: 0,
            history_end,
        })
    }

    fn load_history(&mut self) -> std::io::Result<()> {
        let t = self;
        // What is on disk already is history: replayable, not broadcast. Only the last
        // BACKLOG events are kept, so only the files' tails are read: parsing a full
        // journal (4 MiB, and as much rotated) took ~30 ms of the daemon's start and left
        // ~10 MiB of heap behind.
        let (mut current, resume) = tail_lines(&t.file, t.history_end, BACKLOG)?;
        let current = take_lines(&mut current);
        // (Unless the journal was rotated since it was opened: then `previous` is the
        // file just read.)
        if current.len() < BACKLOG
            && let Ok(old) = std::fs::File::open(t.journal.previous())
            && !same_inode(&old, &t.file)
        {
            let old_end = old.metadata()?.len();
            let (mut older, _) = tail_lines(&old, old_end, BACKLOG - current.len())?;
            let evs = take_lines(&mut older);
            t.deliver(evs, false);
        }
        t.deliver(current, false);
        // Reading goes on after the last complete line of the history (a line being
        // appended then is read whole next time, with what came after).
        (&t.file).seek(SeekFrom::Start(resume))?;
        Ok(())
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

fn same_inode(a: &std::fs::File, b: &std::fs::File) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (a.metadata(), b.metadata()) {
        (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
        _ => false,
    }
}

/// The last `want` complete lines of `f` before byte `end`, read backwards in chunks, and
/// the offset just after the last complete line.
fn tail_lines(f: &std::fs::File, end: u64, want: usize) -> std::io::Result<(Vec<u8>, u64)> {
    use std::os::unix::fs::FileExt;
    const CHUNK: u64 = 64 << 10;
    let mut buf: Vec<u8> = Vec::new();
    let mut start = end;
    let mut newlines = 0;
    // One newline more than wanted: the first line of what was read may be cut.
    while start > 0 && newlines <= want {
        let n = CHUNK.min(start);
        start -= n;
        let mut chunk = vec![0u8; n as usize];
        f.read_exact_at(&mut chunk, start)?;
        newlines += chunk.iter().filter(|&&b| b == b'\n').count();
        chunk.extend_from_slice(&buf);
        buf = chunk;
    }
    let Some(last) = buf.iter().rposition(|&b| b == b'\n') else {
        return Ok((Vec::new(), start));
    };
    buf.truncate(last + 1);
    let resume = start + last as u64 + 1;
    // The last `want` lines begin after the want-th newline before the final one. Without
    // that many, everything read is kept, less a first line the read's start may have cut.
    let nth_start = buf[..last]
        .iter()
        .enumerate()
        .rev()
        .filter(|&(_, &b)| b == b'\n')
        .map(|(i, _)| i + 1)
        .nth(want.saturating_sub(1));
    let keep_from = match nth_start {
        _ if want == 0 => buf.len(),
        Some(i) => i,
        None if start == 0 => 0,
        None => buf
            .iter()
            .position(|&b| b == b'\n')
            .map_or(buf.len(), |i| i + 1),
    };
    buf.drain(..keep_from);
    Ok((buf, resume))
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

#[cfg(test)]
mod tests {
    use super::tail_lines;
    use std::io::Write;

    fn file_with(text: &str) -> std::fs::File {
        let path = std::env::temp_dir().join(format!(
            "pelagos-tail-{}-{}",
            std::process::id(),
            text.len()
        ));
        let mut f = std::fs::File::create(&path).unwrap();
        f.write_all(text.as_bytes()).unwrap();
        let f = std::fs::File::open(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        f
    }

    #[test]
    fn tails_keep_the_last_complete_lines_and_resume_after_them() {
        let f = file_with("a\nbb\nccc\npartial");
        let (b, resume) = tail_lines(&f, 16, 2).unwrap();
        assert_eq!(b, b"bb\nccc\n");
        assert_eq!(resume, 9);
        let (b, _) = tail_lines(&f, 16, 10).unwrap();
        assert_eq!(b, b"a\nbb\nccc\n");
        let f = file_with("no newline yet");
        assert_eq!(tail_lines(&f, 14, 5).unwrap(), (Vec::new(), 0));
        // Longer than one read-back chunk: lines cut by a chunk boundary are whole.
        let lines: Vec<String> = (0..20000).map(|i| format!("line {i:06}")).collect();
        let text = lines.join("\n") + "\n";
        let f = file_with(&text);
        let (b, resume) = tail_lines(&f, text.len() as u64, 9000).unwrap();
        let got = String::from_utf8(b).unwrap();
        assert_eq!(got, lines[11000..].join("\n") + "\n");
        assert_eq!(resume, text.len() as u64);
    }
}
