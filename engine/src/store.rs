//! The on-disk set of containers: records, names, lookup by name / ID / unique ID prefix.
//!
//! Names are reserved with a symlink `names/<name> -> <id>`: symlink(2) either creates it or
//! fails with EEXIST, so two concurrent creates can never both get a name, without a global lock.

use crate::error::{Error, Result};
use crate::fsutil::{FileLock, read_json, remove_dir_all_if_exists, write_json_atomic};
use crate::ids;
use crate::model::ContainerRecord;
use crate::paths::{ContainerPaths, Roots};
use crate::state::ContainerState;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::mpsc::Sender;

/// Where a removed container's directory goes to be deleted off the caller's path, once the
/// daemon installs it ([`remove_in_background`]); without it (the CLI, monitors) it is
/// deleted in place.
static REMOVER: Mutex<Option<Sender<PathBuf>>> = Mutex::new(None);
/// The remover thread, joined by [`finish_background_removals`].
static REMOVER_THREAD: Mutex<Option<std::thread::JoinHandle<()>>> = Mutex::new(None);

/// A removed container is gone the moment its directory is renamed away and its name
/// released; deleting its files (an upper layer can be large; a small one is still a dozen
/// unlinks on the request's path) happens on a thread of this process from now on. The
/// thread first deletes what a crash left renamed but not deleted.
pub fn remove_in_background(roots: &Roots) {
    let Ok(mut remover) = REMOVER.lock() else {
        return;
    };
    if remover.is_some() {
        return;
    }
    let (tx, rx) = std::sync::mpsc::channel::<PathBuf>();
    let containers = roots.containers_dir();
    let spawned = std::thread::Builder::new()
        .name("remover".into())
        .spawn(move || {
            sweep_removed(&containers);
            for doomed in rx {
                if let Err(e) = remove_dir_all_if_exists(&doomed) {
                    tracing::warn!("remove {}: {e}", doomed.display());
                }
            }
        });
    match spawned {
        Ok(t) => {
            *remover = Some(tx);
            if let Ok(mut slot) = REMOVER_THREAD.lock() {
                *slot = Some(t);
            }
        }
        Err(e) => tracing::warn!("container remover thread: {e}"),
    }
}

/// Deletes what is still queued and stops the remover (the daemon, as it exits).
pub fn finish_background_removals() {
    if let Ok(mut r) = REMOVER.lock() {
        r.take();
    }
    let thread = REMOVER_THREAD.lock().ok().and_then(|mut t| t.take());
    if let Some(t) = thread {
        let _ = t.join();
    }
}

/// Deletes `.removing-*` directories renamed away over a minute ago: a process that died
/// between the rename and the end of the deletion left them. Younger ones may still be
/// being deleted by whoever renamed them.
fn sweep_removed(containers: &Path) {
    use std::os::unix::fs::MetadataExt;
    let Ok(entries) = fs::read_dir(containers) else {
        return;
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    for e in entries.flatten() {
        let stale = e.file_name().to_string_lossy().starts_with(".removing-")
            // The rename set the directory's ctime.
            && e.metadata().is_ok_and(|m| m.is_dir() && now - m.ctime() > 60);
        if stale {
            let _ = remove_dir_all_if_exists(&e.path());
        }
    }
}

#[derive(Debug, Clone)]
pub struct ContainerStore {
    roots: Roots,
}

/// A container as listed: its record plus its reconciled state.
#[derive(Debug, Clone)]
pub struct Container {
    pub record: ContainerRecord,
    pub state: ContainerState,
    /// Docker's State.Health, when the container has a healthcheck.
    pub health: Option<crate::runtime::health::Health>,
}

impl ContainerStore {
    pub fn open(roots: &Roots) -> Result<Self> {
        // The roots' own subdirectories (containers/, names/, net/, ...) spread too, so
        // what we create never lands in a group another program just churned (the
        // directory the roots live in, say /tmp after a test suite).
        for root in [&roots.data, &roots.run] {
            fs::create_dir_all(root).map_err(|e| Error::path(root, e))?;
            crate::fsutil::spread_subdirectories(root);
        }
        for d in [
            roots.containers_dir(),
            roots.names_dir(),
            roots.run.join("containers"),
        ] {
            fs::create_dir_all(&d).map_err(|e| Error::path(&d, e))?;
        }
        crate::fsutil::spread_subdirectories(&roots.containers_dir());
        crate::fsutil::spread_subdirectories(&roots.run.join("containers"));
        Ok(ContainerStore {
            roots: roots.clone(),
        })
    }

    /// Where this store's events go.
    pub fn journal(&self) -> crate::events::Journal {
        crate::events::Journal::new(&self.roots)
    }

    pub fn roots(&self) -> &Roots {
        &self.roots
    }

    pub fn paths(&self, id: &str) -> ContainerPaths {
        ContainerPaths::new(&self.roots, id)
    }

    /// Reserves `name` for `id`. Fails with Docker's conflict message if taken.
    pub fn reserve_name(&self, name: &str, id: &str) -> Result<()> {
        let link = self.roots.names_dir().join(name);
        match std::os::unix::fs::symlink(id, &link) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let owner = fs::read_link(&link)
                    .map(|p| p.to_string_lossy().into_owned())
                    .unwrap_or_default();
                // A name whose container directory is gone is stale (crash mid-removal).
                if !owner.is_empty() && !self.roots.container_dir(&owner).exists() {
                    let _ = fs::remove_file(&link);
                    return self.reserve_name(name, id);
                }
                Err(Error::Conflict(format!(
                    "The container name \"/{name}\" is already in use by container \"{owner}\". \
                     You have to remove (or rename) that container to be able to reuse that name."
                )))
            }
            Err(e) => Err(Error::path(link, e)),
        }
    }

    pub fn release_name(&self, name: &str, id: &str) {
        let link = self.roots.names_dir().join(name);
        if fs::read_link(&link).is_ok_and(|p| p.as_os_str() == id) {
            let _ = fs::remove_file(link);
        }
    }

    /// Picks a free generated name and reserves it.
    pub fn reserve_random_name(&self, id: &str) -> Result<String> {
        for attempt in 0..64 {
            let mut name = ids::random_name();
            if attempt > 8 {
                name = format!("{name}{attempt}");
            }
            match self.reserve_name(&name, id) {
                Ok(()) => return Ok(name),
                Err(Error::Conflict(_)) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(Error::Internal(
            "could not find a free container name".into(),
        ))
    }

    /// Writes a new container's record and initial state. The name must already be reserved.
    pub fn insert(&self, record: &ContainerRecord) -> Result<()> {
        let p = self.paths(&record.id);
        fs::create_dir(&p.dir).map_err(|e| Error::path(&p.dir, e))?;
        let res = (|| {
            write_json_atomic(&p.record(), record)?;
            ContainerState::default().save(&p.state())
        })();
        if res.is_err() {
            let _ = remove_dir_all_if_exists(&p.dir);
        }
        res
    }

    pub fn save_record(&self, record: &ContainerRecord) -> Result<()> {
        write_json_atomic(&self.paths(&record.id).record(), record)
    }

    pub fn load(&self, id: &str) -> Result<Container> {
        let p = self.paths(id);
        let record: ContainerRecord = match read_json(&p.record()) {
            Ok(r) => r,
            Err(Error::Path { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                return Err(Error::NoSuchContainer(id.to_string()));
            }
            Err(e) => return Err(e),
        };
        let state = match ContainerState::load_reconciled(&p.state()) {
            Ok(s) => s,
            Err(Error::Path { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                return Err(Error::NoSuchContainer(id.to_string()));
            }
            Err(e) => return Err(e),
        };
        let health = crate::runtime::health::config(record.config.healthcheck.as_ref())
            .map(|_| crate::runtime::health::read(&p));
        Ok(Container {
            record,
            state,
            health,
        })
    }

    pub fn ids(&self) -> Result<Vec<String>> {
        let dir = self.roots.containers_dir();
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).map_err(|e| Error::path(&dir, e))? {
            let entry = entry.map_err(|e| Error::path(&dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if ids::is_full_id(&name) {
                out.push(name);
            }
        }
        Ok(out)
    }

    /// Every container, newest first (Docker's `ps` order). Containers removed while we
    /// list are skipped.
    pub fn list(&self) -> Result<Vec<Container>> {
        let mut out = Vec::new();
        for id in self.ids()? {
            match self.load(&id) {
                Ok(c) => out.push(c),
                Err(Error::NoSuchContainer(_)) => {}
                Err(e) => return Err(e),
            }
        }
        out.sort_by(|a, b| b.record.created.cmp(&a.record.created));
        Ok(out)
    }

    /// Resolves a name, full ID or unique ID prefix to a full ID, as Docker does: exact ID
    /// first, then exact name, then ID prefix (ambiguous prefix is an error).
    pub fn resolve(&self, what: &str) -> Result<String> {
        let what = what.strip_prefix('/').unwrap_or(what);
        if what.is_empty() {
            return Err(Error::NoSuchContainer(what.to_string()));
        }
        if ids::is_full_id(what)
            && self
                .roots
                .container_dir(what)
                .join("container.json")
                .exists()
        {
            return Ok(what.to_string());
        }
        if !what.contains('/')
            && let Ok(target) = fs::read_link(self.roots.names_dir().join(what))
        {
            let id = target.to_string_lossy().into_owned();
            if self.roots.container_dir(&id).exists() {
                return Ok(id);
            }
        }
        if what.bytes().all(|b| b.is_ascii_hexdigit()) {
            let mut found: Option<String> = None;
            for id in self.ids()? {
                if id.starts_with(what) {
                    if found.is_some() {
                        return Err(Error::invalid(format!(
                            "multiple IDs found with provided prefix: {what}"
                        )));
                    }
                    found = Some(id);
                }
            }
            if let Some(id) = found {
                return Ok(id);
            }
        }
        Err(Error::NoSuchContainer(what.to_string()))
    }

    pub fn lookup(&self, what: &str) -> Result<Container> {
        let id = self.resolve(what)?;
        self.load(&id)
    }

    /// Takes the container's lock (start/stop/remove transitions serialise on it).
    pub fn lock(&self, id: &str) -> Result<FileLock> {
        let p = self.paths(id);
        FileLock::directory(&p.dir).map_err(|e| match e {
            Error::Path { ref source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                Error::NoSuchContainer(id.to_string())
            }
            e => e,
        })
    }

    /// Deletes the container's files and name. The caller has checked it is not running.
    pub fn delete(&self, record: &ContainerRecord) -> Result<()> {
        let p = self.paths(&record.id);
        self.release_name(&record.name, &record.id);
        remove_dir_all_if_exists(&p.run_dir)?;
        // Rename first so a half-deleted directory never looks like a container.
        let doomed: PathBuf = self
            .roots
            .containers_dir()
            .join(format!(".removing-{}", record.id));
        match fs::rename(&p.dir, &doomed) {
            Ok(()) => {
                // Whoever renamed the record away removed the container: one `destroy`.
                self.journal().container("destroy", record, &[]);
                let queued = REMOVER
                    .lock()
                    .ok()
                    .and_then(|r| r.as_ref().map(|tx| tx.send(doomed.clone()).is_ok()))
                    .unwrap_or(false);
                if queued {
                    Ok(())
                } else {
                    remove_dir_all_if_exists(&doomed)
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::path(&p.dir, e)),
        }
    }

    pub fn rename(&self, id: &str, new_name: &str) -> Result<()> {
        let _lock = self.lock(id)?;
        let mut c = self.load(id)?;
        let new_name = ids::validate_name(new_name)?.to_string();
        if c.record.name == new_name {
            return Err(Error::invalid(
                "Renaming a container with the same name as its current name".to_string(),
            ));
        }
        self.reserve_name(&new_name, id)?;
        let old = std::mem::replace(&mut c.record.name, new_name.clone());
        if let Err(e) = self.save_record(&c.record) {
            self.release_name(&new_name, id);
            return Err(e);
        }
        self.release_name(&old, id);
        self.journal()
            .container("rename", &c.record, &[("oldName", format!("/{old}"))]);
        Ok(())
    }
}
