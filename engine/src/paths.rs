//! Where the engine keeps things. Data (kept across reboots) lives under the data root,
//! runtime state (sockets, generated specs) under the run root, which a reboot clears.

use std::path::PathBuf;

pub const DEFAULT_DATA_ROOT: &str = "/var/lib/pelagos";
pub const DEFAULT_RUN_ROOT: &str = "/run/pelagos";

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Roots {
    pub data: PathBuf,
    pub run: PathBuf,
}

impl Roots {
    pub fn new(data: impl Into<PathBuf>, run: impl Into<PathBuf>) -> Self {
        Roots {
            data: data.into(),
            run: run.into(),
        }
    }

    pub fn containers_dir(&self) -> PathBuf {
        self.data.join("containers")
    }
    pub fn container_dir(&self, id: &str) -> PathBuf {
        self.containers_dir().join(id)
    }
    pub fn container_run_dir(&self, id: &str) -> PathBuf {
        self.run.join("containers").join(id)
    }
    pub fn names_dir(&self) -> PathBuf {
        self.data.join("names")
    }
    pub fn volumes_dir(&self) -> PathBuf {
        self.data.join("volumes")
    }
    pub fn seccomp_cache_dir(&self) -> PathBuf {
        self.data.join("cache").join("seccomp")
    }
}

/// Paths inside one container's data directory.
pub struct ContainerPaths {
    pub dir: PathBuf,
    pub run_dir: PathBuf,
}

impl ContainerPaths {
    /// The roots these paths were made from (`new` puts them two levels up).
    pub fn roots(&self) -> Roots {
        let up2 = |p: &std::path::Path| {
            p.parent()
                .and_then(|p| p.parent())
                .map(std::path::Path::to_path_buf)
                .unwrap_or_default()
        };
        Roots::new(up2(&self.dir), up2(&self.run_dir))
    }
    pub fn new(roots: &Roots, id: &str) -> Self {
        ContainerPaths {
            dir: roots.container_dir(id),
            run_dir: roots.container_run_dir(id),
        }
    }
    pub fn record(&self) -> PathBuf {
        self.dir.join("container.json")
    }
    pub fn state(&self) -> PathBuf {
        self.dir.join("state.json")
    }
    pub fn upper(&self) -> PathBuf {
        self.dir.join("upper")
    }
    pub fn work(&self) -> PathBuf {
        self.dir.join("work")
    }
    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }
    pub fn hosts(&self) -> PathBuf {
        self.dir.join("hosts")
    }
    pub fn hostname(&self) -> PathBuf {
        self.dir.join("hostname")
    }
    pub fn resolv_conf(&self) -> PathBuf {
        self.dir.join("resolv.conf")
    }
    pub fn log_dir(&self) -> PathBuf {
        self.dir.join("logs")
    }
    pub fn log_file(&self) -> PathBuf {
        self.log_dir().join("container.log")
    }
    pub fn spec(&self) -> PathBuf {
        self.run_dir.join("config.json")
    }
    pub fn attach_socket(&self) -> PathBuf {
        self.run_dir.join("attach.sock")
    }
}
