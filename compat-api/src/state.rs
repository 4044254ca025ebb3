//! What every handler shares: the engine and image store on the daemon's roots, the event
//! bus, exec sessions, and the daemon-side connections to container monitors.

use crate::events::Bus;
use crate::supervise::{PendingAttach, Writer};
use engine::{Engine, Roots};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

pub struct Daemon {
    pub roots: Roots,
    pub engine: Engine,
    pub images: registry::ImageStore,
    pub events: Bus,
    pub execs: Mutex<HashMap<String, Arc<crate::routes::exec::ExecEntry>>>,
    /// Attach requests for containers not started yet (`docker run` attaches first); the
    /// start hands them to the monitor as its first client.
    pub pending_attach: Mutex<HashMap<String, PendingAttach>>,
    /// Containers whose monitor this daemon is connected to (exit notification, and the
    /// writer for resize and stdin frames).
    pub watched: Mutex<HashMap<String, Writer>>,
    pub name: String,
    pub id: String,
    /// daemon.json's registry settings (insecure registries, mirrors).
    pub registry: registry::RegistrySettings,
}

pub type AppState = Arc<Daemon>;

impl Daemon {
    pub fn open(
        roots: Roots,
        registry: registry::RegistrySettings,
        net: network::NetSettings,
    ) -> Result<Self, crate::DaemonError> {
        let engine = Engine::open(roots.clone())?.with_net_settings(net);
        let images = registry::ImageStore::open(&roots.data)?;
        let name = nix::unistd::gethostname()
            .ok()
            .and_then(|h| h.into_string().ok())
            .unwrap_or_default();
        let id = daemon_id(&roots);
        let events =
            Bus::open(engine.containers.journal()).map_err(|source| crate::DaemonError::Io {
                context: "event journal".into(),
                source,
            })?;
        Ok(Daemon {
            roots,
            engine,
            images,
            events,
            execs: Mutex::new(HashMap::new()),
            pending_attach: Mutex::new(HashMap::new()),
            watched: Mutex::new(HashMap::new()),
            name,
            id,
            registry,
        })
    }
}

/// A stable daemon ID, made once and kept under the data root (Docker keeps one in
/// `engine-id`).
fn daemon_id(roots: &Roots) -> String {
    let path = roots.data.join("engine-id");
    if let Ok(s) = std::fs::read_to_string(&path)
        && !s.trim().is_empty()
    {
        return s.trim().to_string();
    }
    let id = engine::ids::new_id();
    let id = format!(
        "{}-{}-{}-{}-{}",
        &id[0..8],
        &id[8..12],
        &id[12..16],
        &id[16..20],
        &id[20..32]
    );
    let _ = std::fs::create_dir_all(&roots.data);
    let _ = std::fs::write(&path, &id);
    id
}
