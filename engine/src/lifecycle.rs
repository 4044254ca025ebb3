//! The engine's container operations: create, start, stop, kill, restart, pause, remove,
//! wait. The CLI (and later the API) only translate their input into these calls.

use crate::error::{Error, Result};
use crate::fsutil::write_atomic;
use crate::ids;
use crate::model::{ContainerConfig, ContainerRecord, HostConfig};
use crate::mountspec;
use crate::paths::{ContainerPaths, Roots};
use crate::runtime::{self, AttachStreams, LogOptions, Prefill, RootfsPlan, StartRequest};
use crate::state::{ContainerState, Status};
use crate::store::{Container, ContainerStore};
use crate::volumes::VolumeStore;
use nix::sys::signal::Signal;
use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::time::Duration;

/// The image defaults a container inherits (Docker's image Config).
#[derive(Debug, Clone, Default)]
pub struct ImageDefaults {
    pub env: Vec<String>,
    pub cmd: Vec<String>,
    pub entrypoint: Vec<String>,
    pub working_dir: String,
    pub user: String,
    pub exposed_ports: BTreeMap<String, serde_json::Value>,
    pub volumes: BTreeMap<String, serde_json::Value>,
    pub stop_signal: Option<String>,
    pub healthcheck: Option<serde_json::Value>,
    pub labels: BTreeMap<String, String>,
    pub on_build: Option<Vec<String>>,
}

#[derive(Debug, Clone, Default)]
pub struct ImageInfo {
    /// Image ID (`sha256:...`).
    pub id: String,
    /// The reference as the user gave it (Docker's Config.Image).
    pub reference: String,
    /// Layer directories, bottom to top.
    pub layers: Vec<PathBuf>,
    pub defaults: ImageDefaults,
}

impl ImageInfo {
    /// Resolves `reference` in the image store: ID, layers and the config defaults a
    /// container inherits.
    pub fn from_store(store: &registry::ImageStore, reference: &str) -> Result<Self> {
        let rec = store.resolve(reference)?;
        let cfg = store.config(&rec)?;
        let layers = store.layer_dirs(&rec)?;
        let rc = cfg.config;
        Ok(ImageInfo {
            id: rec.id.to_string(),
            reference: reference.to_string(),
            layers,
            defaults: ImageDefaults {
                env: rc.env,
                cmd: rc.cmd.unwrap_or_default(),
                entrypoint: rc.entrypoint.unwrap_or_default(),
                working_dir: rc.working_dir.unwrap_or_default(),
                user: rc.user.unwrap_or_default(),
                exposed_ports: rc.exposed_ports,
                volumes: rc.volumes,
                stop_signal: rc.stop_signal,
                healthcheck: rc
                    .healthcheck
                    .map(|h| serde_json::to_value(h).unwrap_or_default()),
                labels: rc.labels,
                on_build: rc.on_build,
            },
        })
    }
}

#[derive(Debug, Clone, Default)]
pub struct CreateOptions {
    pub name: Option<String>,
    /// None with `--rootfs`.
    pub image: Option<ImageInfo>,
    /// What the user asked for; image defaults fill what is unset.
    pub config: ContainerConfig,
    /// `Some` when `--entrypoint` was given (even empty), which also drops the image's Cmd.
    pub entrypoint: Option<Vec<String>>,
    pub host_config: HostConfig,
    /// Docker's NetworkingConfig.EndpointsConfig: per-network aliases, address, MAC.
    pub networks: BTreeMap<String, network::EndpointConfig>,
}

#[derive(Debug, Clone)]
pub struct Engine {
    pub roots: Roots,
    pub containers: ContainerStore,
    pub volumes: VolumeStore,
    /// daemon.json's network keys, used when networks and the default bridge are made.
    pub net: network::NetSettings,
}

impl Engine {
    pub fn open(roots: Roots) -> Result<Self> {
        Ok(Engine {
            containers: ContainerStore::open(&roots)?,
            volumes: VolumeStore::open(&roots)?,
            roots,
            net: network::NetSettings::default(),
        })
    }

    /// The engine with daemon.json's network settings (`bip`, pools, `bridge`, `ip-forward`).
    pub fn with_net_settings(mut self, net: network::NetSettings) -> Self {
        self.net = net;
        self
    }

    pub fn paths(&self, id: &str) -> ContainerPaths {
        ContainerPaths::new(&self.roots, id)
    }

    /// Docker's merge of image defaults and user config.
    pub fn merge_config(opts: &CreateOptions, id: &str) -> ContainerConfig {
        let mut c = opts.config.clone();
        let d = opts
            .image
            .as_ref()
            .map(|i| i.defaults.clone())
            .unwrap_or_default();
        let mut env = d.env.clone();
        for e in &opts.config.env {
            let key = e.split('=').next().unwrap_or(e);
            env.retain(|x| x.split('=').next() != Some(key));
            env.push(e.clone());
        }
        c.env = env;
        match &opts.entrypoint {
            Some(ep) => c.entrypoint = ep.clone(),
            None => {
                c.entrypoint = d.entrypoint.clone();
                if c.cmd.is_empty() {
                    c.cmd = d.cmd.clone();
                }
            }
        }
        if c.working_dir.is_empty() {
            c.working_dir = d.working_dir.clone();
        }
        if c.user.is_empty() {
            c.user = d.user.clone();
        }
        let mut labels = d.labels.clone();
        labels.extend(opts.config.labels.clone());
        c.labels = labels;
        let mut ports = d.exposed_ports.clone();
        ports.extend(opts.config.exposed_ports.clone());
        c.exposed_ports = ports;
        if c.on_build.is_none() {
            c.on_build = d.on_build.clone().filter(|t| !t.is_empty());
        }
        let mut vols = d.volumes.clone();
        vols.extend(opts.config.volumes.clone());
        c.volumes = vols;
        if c.stop_signal.is_none() {
            c.stop_signal = d.stop_signal.clone();
        }
        if c.healthcheck.is_none() {
            c.healthcheck = d.healthcheck.clone();
        }
        if c.hostname.is_empty() {
            c.hostname = ids::short_id(id).to_string();
        }
        if let Some(img) = &opts.image {
            c.image = img.reference.clone();
        }
        c
    }

    /// Creates a container: record, name, writable layer, volumes, generated /etc files.
    /// On any failure nothing is left behind.
    pub fn create(&self, opts: CreateOptions) -> Result<ContainerRecord> {
        let id = ids::new_id();
        let config = Self::merge_config(&opts, &id);
        let mut hc = opts.host_config.clone();
        if config.entrypoint.is_empty() && config.cmd.is_empty() {
            return Err(Error::invalid("no command specified"));
        }
        validate_host_config(&hc)?;
        let mut networks = opts.networks.clone();
        crate::netglue::prepare(
            &self.roots,
            &self.net,
            &mut hc,
            &mut networks,
            &config.mac_address,
        )?;
        if let crate::netglue::Mode::Container(other) = crate::netglue::mode(&hc) {
            self.containers.resolve(other)?;
        }
        for l in &hc.links {
            let target = l.split(':').next().unwrap_or(l);
            self.containers.resolve(target)?;
        }
        let name = match &opts.name {
            Some(n) => {
                let n = ids::validate_name(n)?.to_string();
                self.containers.reserve_name(&n, &id)?;
                n
            }
            None => self.containers.reserve_random_name(&id)?,
        };
        let mut created_volumes: Vec<String> = Vec::new();
        let result = self.create_reserved(
            &id,
            &name,
            config,
            hc,
            networks,
            &opts,
            &mut created_volumes,
        );
        if let Ok(r) = &result {
            self.containers.journal().container("create", r, &[]);
        } else {
            self.containers.release_name(&name, &id);
            let _ = crate::fsutil::remove_dir_all_if_exists(&self.paths(&id).dir);
            for v in created_volumes {
                let _ = self.volumes.remove(&v, &[]);
            }
        }
        result
    }

    #[allow(clippy::too_many_arguments)]
    fn create_reserved(
        &self,
        id: &str,
        name: &str,
        config: ContainerConfig,
        hc: HostConfig,
        networks: BTreeMap<String, network::EndpointConfig>,
        opts: &CreateOptions,
        created_volumes: &mut Vec<String>,
    ) -> Result<ContainerRecord> {
        let mounts = mountspec::resolve(&hc, &config.volumes, &self.volumes, created_volumes)?;
        let record = ContainerRecord {
            id: id.to_string(),
            name: name.to_string(),
            created: crate::state::now_rfc3339(),
            image: opts
                .image
                .as_ref()
                .map(|i| i.id.clone())
                .unwrap_or_default(),
            config,
            host_config: hc,
            mounts,
            layers: opts
                .image
                .as_ref()
                .map(|i| i.layers.iter().map(|p| p.display().to_string()).collect())
                .unwrap_or_default(),
            networks,
        };
        if record.layers.is_empty() && record.host_config.rootfs.is_none() {
            return Err(Error::invalid("an image or --rootfs is required"));
        }
        self.containers.insert(&record)?;
        let p = self.paths(id);
        for d in [p.upper(), p.work(), p.rootfs(), p.log_dir()] {
            std::fs::create_dir_all(&d).map_err(|e| Error::path(&d, e))?;
        }
        write_etc_files(&record, &p)?;
        Ok(record)
    }

    /// Starts a created or exited container. `attach` is the first attach client (a
    /// foreground `run`), connected before the process can write anything.
    pub fn start(&self, what: &str, attach: Option<(OwnedFd, AttachStreams)>) -> Result<i32> {
        let id = self.containers.resolve(what)?;
        let _lock = self.containers.lock(&id)?;
        let c = self.containers.load(&id)?;
        if c.state.is_running() {
            return Err(Error::NotModified(id, "started"));
        }
        let mut c = c;
        let prepared = self
            .prepare_network(&mut c)
            .and_then(|()| self.start_request(&c, attach.as_ref().map(|a| a.1)));
        let req = match prepared {
            Ok(r) => r,
            Err(e) => {
                crate::netglue::teardown(&self.roots, &self.net, &id);
                // A start that failed is an exit for waiters, as with Docker.
                self.containers.journal().container(
                    "die",
                    &c.record,
                    &[("exitCode", "128".into())],
                );
                // Docker removes an auto-remove container whose start failed.
                if c.record.host_config.auto_remove {
                    let _ = self.containers.delete(&c.record);
                    self.remove_anonymous_volumes(&c.record);
                }
                return Err(e);
            }
        };
        // A start after an exit begins a new run: reset what the last run recorded.
        let p = self.paths(&id);
        crate::runtime::restart::STOPPED_BY_USER.clear(&p);
        crate::runtime::restart::RESTARTING.clear(&p);
        std::fs::create_dir_all(&p.run_dir).map_err(|e| Error::path(&p.run_dir, e))?;
        let spec_bytes =
            serde_json::to_vec(&req.spec).map_err(|e| Error::Internal(e.to_string()))?;
        let started = write_atomic(&p.spec(), &spec_bytes)
            .and_then(|()| runtime::spawn::start(&req, attach.map(|a| a.0)));
        match &started {
            // The monitor publishes `start` (before the process can exit and it publishes
            // `die`) and its own failures; this covers not reaching it.
            Ok(_) => {}
            Err(Error::StartFailed { .. }) => {}
            Err(_) => {
                crate::netglue::teardown(&self.roots, &self.net, &id);
                self.containers.journal().container(
                    "die",
                    &c.record,
                    &[("exitCode", "128".into())],
                );
            }
        }
        started
    }

    /// Wires the container's network for this run and points the record (in memory) at
    /// the namespace to join; rewrites /etc/hosts and resolv.conf with what it got.
    fn prepare_network(&self, c: &mut Container) -> Result<()> {
        use crate::netglue::{self, Mode};
        let r = &c.record;
        let p = self.paths(&r.id);
        let (netns, info) = match netglue::mode(&r.host_config) {
            Mode::Host => return Ok(()),
            Mode::None => (None, None),
            Mode::Container(other) => {
                let o = self.containers.lookup(other)?;
                if !o.state.is_running() || o.state.pid <= 0 {
                    return Err(Error::Conflict(format!(
                        "cannot join network namespace of a non running container: container {} is exited",
                        o.record.id
                    )));
                }
                let pin = netglue::open(&self.roots, &self.net)?
                    .sandbox(&o.record.id)?
                    .map(|s| s.netns_path)
                    .filter(|p| !p.is_empty())
                    .unwrap_or_else(|| format!("/proc/{}/ns/net", o.state.pid));
                (Some(pin), None)
            }
            Mode::Networks => {
                let info = netglue::setup(&self.roots, &self.net, r)?;
                (Some(info.sandbox.netns_path.clone()), Some(info))
            }
        };
        let hosts = self.hosts_for(r, info.as_ref());
        let written = hosts.and_then(|h| write_atomic(&p.hosts(), h.as_bytes()));
        let written = written.and_then(|()| {
            let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
            let mut hc = r.host_config.clone();
            if hc.dns.is_empty() {
                // daemon.json `dns`: the default resolvers for every container.
                hc.dns = self.net.dns.clone();
            }
            let mut text = resolv_conf(&host_resolv, &hc);
            if let Some(dns) = info.as_ref().and_then(|i| i.dns_server) {
                // The network's embedded DNS server replaces the resolvers (the host's,
                // daemon.json's or the container's --dns); it forwards what it does not
                // know to them, as Docker's 127.0.0.11 does.
                let rest: String = text
                    .lines()
                    .filter(|l| !l.starts_with("nameserver"))
                    .map(|l| format!("{l}\n"))
                    .collect();
                text = format!("nameserver {dns}\n{rest}");
            }
            write_atomic(&p.resolv_conf(), text.as_bytes())
        });
        if let Err(e) = written {
            netglue::teardown(&self.roots, &self.net, &r.id);
            return Err(e);
        }
        c.record.host_config.netns_path = netns;
        Ok(())
    }

    /// /etc/hosts for this run: localhost lines, the container's own addresses, `--link`
    /// targets and `--add-host` entries (`host-gateway` is the default bridge's gateway).
    fn hosts_for(
        &self,
        r: &ContainerRecord,
        info: Option<&network::SandboxInfo>,
    ) -> Result<String> {
        let mut hosts = String::from(BASE_HOSTS);
        let hostname = &r.config.hostname;
        if let Some(i) = info {
            for ep in &i.endpoints {
                let mut names = vec![hostname.clone()];
                if !r.config.domainname.is_empty() {
                    names.insert(0, format!("{hostname}.{}", r.config.domainname));
                }
                hosts.push_str(&format!("{}\t{}\n", ep.ip_address, names.join(" ")));
            }
        }
        let mut nets: Option<network::Networks> = None;
        for l in &r.host_config.links {
            let (target, alias) = l.split_once(':').unwrap_or((l, l));
            let t = self.containers.lookup(target)?;
            if !t.state.is_running() {
                return Err(Error::invalid(format!(
                    "Cannot link to a non running container: /{} AS /{}/{alias}",
                    t.record.name, r.name
                )));
            }
            let n = match &nets {
                Some(n) => n,
                None => nets.insert(crate::netglue::open(&self.roots, &self.net)?),
            };
            if let Some(ep) = n.endpoints(&t.record.id)?.first() {
                let short = crate::ids::short_id(&t.record.id);
                let mut names = vec![alias.to_string()];
                for x in [t.record.name.as_str(), short] {
                    if !names.iter().any(|y| y == x) {
                        names.push(x.to_string());
                    }
                }
                hosts.push_str(&format!("{}\t{}\n", ep.ip_address, names.join(" ")));
            }
        }
        for h in &r.host_config.extra_hosts {
            let (name, ip) = split_extra_host(h)?;
            let ip = if ip == "host-gateway" {
                let n = match &nets {
                    Some(n) => n,
                    None => nets.insert(crate::netglue::open(&self.roots, &self.net)?),
                };
                let bridge = n.find("bridge")?;
                bridge
                    .ipam
                    .config
                    .first()
                    .map(|c| c.gateway.clone())
                    .unwrap_or_default()
            } else {
                ip.to_string()
            };
            hosts.push_str(&format!("{ip}\t{name}\n"));
        }
        Ok(hosts)
    }

    /// `network connect`: records the network for the next start and, on a running
    /// container, attaches it now.
    /// The network service with this engine's settings.
    pub fn networks(&self) -> Result<network::Networks> {
        crate::netglue::open(&self.roots, &self.net)
    }

    fn network_event(&self, action: &str, n: &network::Network, container: Option<&str>) {
        let mut attrs = vec![("name", n.name.clone()), ("type", n.driver.clone())];
        if let Some(c) = container {
            attrs.insert(0, ("container", c.to_string()));
        }
        self.containers
            .journal()
            .simple("network", action, &n.id, &attrs);
    }

    /// `network create`.
    pub fn network_create(&self, req: network::CreateRequest) -> Result<network::Network> {
        let n = self.networks()?.create(req)?;
        self.network_event("create", &n, None);
        Ok(n)
    }

    /// `network rm`: returns the network removed.
    pub fn network_remove(&self, what: &str) -> Result<network::Network> {
        let nets = self.networks()?;
        let n = nets.find(what)?;
        nets.remove(&n.id)?;
        self.network_event("destroy", &n, None);
        Ok(n)
    }

    /// `network prune`: user networks without endpoints that no container (running or
    /// not) is configured for. Returns the removed networks' names.
    /// Removes unused user networks that `admit` (prune filters) lets go.
    pub fn network_prune(&self, admit: &dyn Fn(&network::Network) -> bool) -> Result<Vec<String>> {
        let nets = self.networks()?;
        let mut keep = std::collections::BTreeSet::new();
        for c in self.containers.list()? {
            for k in c.record.networks.keys() {
                if let Ok(n) = nets.find(k) {
                    keep.insert(n.id);
                }
            }
        }
        let removed = nets.prune(&keep, admit)?;
        for name in &removed {
            self.containers
                .journal()
                .simple("network", "destroy", name, &[("name", name.clone())]);
        }
        Ok(removed)
    }

    pub fn network_connect(
        &self,
        network: &str,
        what: &str,
        cfg: network::EndpointConfig,
    ) -> Result<()> {
        let id = self.containers.resolve(what)?;
        let _lock = self.containers.lock(&id)?;
        let c = self.containers.load(&id)?;
        let nets = crate::netglue::open(&self.roots, &self.net)?;
        let n = nets.find(network)?;
        if crate::netglue::mode(&c.record.host_config) != crate::netglue::Mode::Networks {
            return Err(Error::invalid(format!(
                "container cannot be connected to network {}: it uses network mode {}",
                n.name, c.record.host_config.network_mode
            )));
        }
        let already = c
            .record
            .networks
            .keys()
            .any(|k| nets.find(k).is_ok_and(|m| m.id == n.id));
        if already {
            return Err(network::Error::Forbidden(format!(
                "endpoint with name {} already exists in network {}",
                c.record.name, n.name
            ))
            .into());
        }
        if n.is_default_bridge() && !cfg.aliases.is_empty() {
            return Err(Error::invalid(
                "network-scoped aliases are only supported for user-defined networks",
            ));
        }
        if c.state.is_running() {
            nets.connect(
                &network::ContainerRef {
                    id: c.record.id.clone(),
                    name: c.record.name.clone(),
                    dns: c.record.host_config.dns.clone(),
                },
                &n.id,
                &cfg,
            )?;
        }
        let mut rec = c.record.clone();
        rec.networks.insert(n.name.clone(), cfg);
        self.containers.save_record(&rec)?;
        self.network_event("connect", &n, Some(&rec.id));
        Ok(())
    }

    /// `network disconnect`.
    pub fn network_disconnect(&self, network: &str, what: &str) -> Result<()> {
        let id = self.containers.resolve(what)?;
        let _lock = self.containers.lock(&id)?;
        let c = self.containers.load(&id)?;
        let nets = crate::netglue::open(&self.roots, &self.net)?;
        let n = nets.find(network)?;
        let key = c
            .record
            .networks
            .keys()
            .find(|k| nets.find(k).is_ok_and(|m| m.id == n.id))
            .cloned()
            .ok_or_else(|| {
                Error::invalid(format!(
                    "container {} is not connected to network {}",
                    c.record.id, n.name
                ))
            })?;
        if c.state.is_running() {
            nets.disconnect(&c.record.id, &n.id)?;
        }
        let mut rec = c.record.clone();
        rec.networks.remove(&key);
        if rec.host_config.network_mode == key {
            // Docker keeps the mode; a container left on no network starts with none.
            rec.host_config.network_mode = match rec.networks.keys().next() {
                Some(k) => k.clone(),
                None => "none".into(),
            };
        }
        self.containers.save_record(&rec)?;
        self.network_event("disconnect", &n, Some(&rec.id));
        Ok(())
    }

    fn start_request(&self, c: &Container, attach: Option<AttachStreams>) -> Result<StartRequest> {
        let r = &c.record;
        let p = self.paths(&r.id);
        let plan = match &r.host_config.rootfs {
            Some(dir) => RootfsPlan::Dir(PathBuf::from(dir)),
            None => RootfsPlan::Overlay {
                lowers: r.layers.iter().rev().map(PathBuf::from).collect(),
                upper: p.upper(),
                work: p.work(),
                // Its writable layer goes when it exits: every exit would otherwise sync
                // the whole filesystem under it (the overlay's unmount syncs the upper).
                volatile: r.host_config.auto_remove,
            },
        };
        let passwd = runtime::user::read_rootfs_file(&plan, "etc/passwd");
        let group = runtime::user::read_rootfs_file(&plan, "etc/group");
        let user = runtime::user::resolve(
            &r.config.user,
            &r.host_config.group_add,
            passwd.as_deref(),
            group.as_deref(),
        )?;
        let caps = crate::capabilities::resolve(
            &r.host_config.cap_add,
            &r.host_config.cap_drop,
            r.host_config.privileged,
        )
        .map_err(|e| Error::invalid(e.to_string()))?;
        // A container cannot hold what the engine itself lacks (a sandboxed engine may be
        // missing e.g. CAP_SYS_RESOURCE): keep only capabilities in our bounding set.
        let caps = within_own_bounding_set(caps);
        let seccomp = crate::security::seccomp_for(r, &caps)?;
        let bpf = match &seccomp {
            Some(s) => Some(crate::security::compiled_filter(
                s,
                &self.roots.seccomp_cache_dir(),
            )?),
            None => None,
        };
        let spec = crate::spec::build(&crate::spec::SpecInputs {
            record: r,
            rootfs: &p.rootfs(),
            hosts: &p.hosts(),
            hostname_file: &p.hostname(),
            resolv_conf: &p.resolv_conf(),
            user: &user,
            caps: &caps,
            seccomp: seccomp.as_ref(),
        })
        .map_err(|e| Error::Internal(format!("build spec: {e}")))?;
        let prefill = r
            .mounts
            .iter()
            .filter(|m| m.kind == "volume" && !m.mode.contains("nocopy"))
            .map(|m| Prefill {
                container_path: m.destination.clone(),
                volume_dir: PathBuf::from(&m.source),
            })
            .collect();
        Ok(StartRequest {
            id: r.id.clone(),
            roots: self.roots.clone(),
            spec,
            rootfs: plan,
            seccomp_bpf: bpf,
            prefill,
            log: log_options(&r.host_config)?,
            tty: r.config.tty,
            open_stdin: r.config.open_stdin,
            stdin_once: r.config.stdin_once,
            auto_remove: r.host_config.auto_remove,
            init: r.host_config.init,
            netns_path: r.host_config.netns_path.as_ref().map(PathBuf::from),
            net: self.net.clone(),
            health: crate::runtime::health::config(r.config.healthcheck.as_ref()).is_some(),
            cgroup_parent: None,
            initial_attach: attach,
        })
    }

    /// Sends a signal to the container's main process.
    pub fn kill(&self, what: &str, signal: Option<&str>) -> Result<()> {
        let c = self.containers.lookup(what)?;
        if !c.state.is_running() {
            return Err(Error::Conflict(format!(
                "Container {} is not running",
                c.record.id
            )));
        }
        let sig = parse_signal(signal.unwrap_or("SIGKILL"))?;
        // Killing with SIGKILL or the stop signal ends the restart policy, as in Docker.
        let stop_sig = parse_signal(c.record.config.stop_signal.as_deref().unwrap_or("SIGTERM"))?;
        if sig == Signal::SIGKILL || sig == stop_sig {
            crate::runtime::restart::STOPPED_BY_USER.set(&self.paths(&c.record.id));
        }
        if c.state.pid <= 0 {
            // Between runs: the mark alone ends it; wait for the monitor to record that.
            if let Some(m) = MonitorHandle::open(&c.state) {
                m.wait(Some(Duration::from_secs(10)));
            }
            return Ok(());
        }
        // Docker waits for a SIGKILLed container to be gone (its exit recorded, `die`
        // published) before answering; other signals return once sent.
        let monitor = (sig == Signal::SIGKILL)
            .then(|| MonitorHandle::open(&c.state))
            .flatten();
        send_signal(c.state.pid, sig)?;
        self.kill_event(&c, sig);
        if let Some(m) = monitor {
            m.wait(Some(Duration::from_secs(10)));
        }
        Ok(())
    }

    /// Docker's `kill` event names the signal by number.
    fn kill_event(&self, c: &Container, sig: Signal) {
        self.containers.journal().container(
            "kill",
            &c.record,
            &[("signal", (sig as i32).to_string())],
        );
    }

    /// Docker's stop: the stop signal, then SIGKILL after the timeout; waits for the exit.
    /// The stop half of a restart: like `stop`, but an `--rm` container's monitor keeps the
    /// container through this exit (Docker starts it again). The next `start` clears that.
    pub fn stop_for_restart(&self, what: &str, timeout: Option<i64>) -> Result<()> {
        let id = self.containers.resolve(what)?;
        let p = self.paths(&id);
        crate::runtime::restart::RESTARTING.set(&p);
        let stopped = self.stop(&id, timeout);
        if matches!(stopped, Err(ref e) if !matches!(e, Error::NotModified(..))) {
            crate::runtime::restart::RESTARTING.clear(&p);
        }
        stopped
    }

    pub fn stop(&self, what: &str, timeout: Option<i64>) -> Result<()> {
        let c = self.containers.lookup(what)?;
        if !c.state.is_running() {
            return Err(Error::NotModified(c.record.id, "stopped"));
        }
        let timeout = timeout.or(c.record.config.stop_timeout).unwrap_or(10);
        let sig = parse_signal(c.record.config.stop_signal.as_deref().unwrap_or("SIGTERM"))?;
        if c.state.status == Status::Paused {
            let _ = self.set_paused(&c, false);
        }
        // Before any signal: the exit it causes must not restart the container.
        crate::runtime::restart::STOPPED_BY_USER.set(&self.paths(&c.record.id));
        let monitor = MonitorHandle::open(&c.state);
        let stopped = || {
            self.containers.journal().container("stop", &c.record, &[]);
            Ok(())
        };
        if sig != Signal::SIGKILL && timeout != 0 {
            let _ = send_signal(c.state.pid, sig);
            self.kill_event(&c, sig);
            let wait = if timeout < 0 {
                None
            } else {
                Some(Duration::from_secs(timeout as u64))
            };
            if monitor.as_ref().is_none_or(|m| m.wait(wait)) {
                return stopped();
            }
        }
        let _ = send_signal(c.state.pid, Signal::SIGKILL);
        self.kill_event(&c, Signal::SIGKILL);
        if let Some(m) = monitor {
            m.wait(Some(Duration::from_secs(30)));
        }
        stopped()
    }

    /// At daemon start: starts the stopped containers their restart policy brings back
    /// (Docker's restore). Returns the containers that failed to start, with why.
    pub fn start_by_restart_policy(&self) -> Result<Vec<(String, Error)>> {
        use crate::runtime::restart;
        let mut failed = Vec::new();
        for c in self.containers.list()? {
            let st = &c.state;
            let ran_before = st.started_at != crate::state::ZERO_TIME;
            let by_user = restart::STOPPED_BY_USER.is_set(&self.paths(&c.record.id));
            let policy = &c.record.host_config.restart_policy;
            if st.is_running()
                || !ran_before
                || !restart::restart_on_daemon_start(
                    policy,
                    st.exit_code,
                    by_user,
                    st.restart_count,
                )
            {
                continue;
            }
            if let Err(e) = self.start(&c.record.id, None) {
                failed.push((c.record.id, e));
            }
        }
        Ok(failed)
    }

    pub fn restart(&self, what: &str, timeout: Option<i64>) -> Result<()> {
        let id = self.containers.resolve(what)?;
        match self.stop_for_restart(&id, timeout) {
            Ok(()) | Err(Error::NotModified(..)) => {}
            Err(e) => return Err(e),
        }
        self.start(&id, None)?;
        if let Ok(c) = self.containers.lookup(&id) {
            self.containers
                .journal()
                .container("restart", &c.record, &[]);
        }
        Ok(())
    }

    /// Blocks until the container is not running; returns its exit code.
    pub fn wait(&self, what: &str) -> Result<i32> {
        let c = self.containers.lookup(what)?;
        if c.state.is_running()
            && let Some(m) = MonitorHandle::open(&c.state)
        {
            m.wait(None);
        }
        Ok(self.containers.load(&c.record.id)?.state.exit_code)
    }

    pub fn pause(&self, what: &str) -> Result<()> {
        let c = self.containers.lookup(what)?;
        match c.state.status {
            Status::Running => self.set_paused(&c, true),
            Status::Paused => Err(Error::Conflict(format!(
                "Container {} is already paused",
                c.record.id
            ))),
            _ => Err(Error::Conflict(format!(
                "Container {} is not running",
                c.record.id
            ))),
        }
    }

    pub fn unpause(&self, what: &str) -> Result<()> {
        let c = self.containers.lookup(what)?;
        if c.state.status != Status::Paused {
            return Err(Error::Conflict(format!(
                "Container {} is not paused",
                c.record.id
            )));
        }
        self.set_paused(&c, false)
    }

    fn set_paused(&self, c: &Container, paused: bool) -> Result<()> {
        let _lock = self.containers.lock(&c.record.id)?;
        let cg = crate::cgroups_glue::ContainerCgroup::from_state(&c.state)?;
        if paused {
            cg.freeze()?
        } else {
            cg.thaw()?
        }
        let p = self.paths(&c.record.id);
        let mut st = ContainerState::load(&p.state())?;
        if st.is_running() {
            st.status = if paused {
                Status::Paused
            } else {
                Status::Running
            };
            st.save(&p.state())?;
        }
        let action = if paused { "pause" } else { "unpause" };
        self.containers.journal().container(action, &c.record, &[]);
        Ok(())
    }

    /// `rm`: refuses a running container unless forced; `volumes` also removes its
    /// anonymous volumes.
    pub fn remove(&self, what: &str, force: bool, volumes: bool) -> Result<()> {
        let c = self.containers.lookup(what)?;
        if c.state.is_running() {
            if !force {
                return Err(Error::Conflict(format!(
                    "You cannot remove a running container {}. Stop the container before attempting removal or force remove",
                    c.record.id
                )));
            }
            if c.state.status == Status::Paused {
                let _ = self.set_paused(&c, false);
            }
            crate::runtime::restart::STOPPED_BY_USER.set(&self.paths(&c.record.id));
            let monitor = MonitorHandle::open(&c.state);
            if send_signal(c.state.pid, Signal::SIGKILL).is_ok() {
                self.kill_event(&c, Signal::SIGKILL);
            }
            if let Some(m) = monitor {
                m.wait(Some(Duration::from_secs(30)));
            }
        }
        // An auto-remove container may have been deleted by its monitor meanwhile: then
        // there is nothing left to do, as with Docker.
        let _lock = match self.containers.lock(&c.record.id) {
            Ok(l) => l,
            Err(Error::NoSuchContainer(_)) if c.record.host_config.auto_remove => return Ok(()),
            Err(e) => return Err(e),
        };
        if c.record.host_config.auto_remove && !self.paths(&c.record.id).record().exists() {
            return Ok(());
        }
        // Normally the monitor has removed the cgroup; if it died, whatever still runs in
        // the cgroup is killed and the cgroup removed here, so nothing outlives `rm`.
        if let Some(paths) = c.state.cgroup.clone() {
            crate::cgroups_glue::ContainerCgroup::from_paths(paths).destroy()?;
        }
        crate::netglue::teardown(&self.roots, &self.net, &c.record.id);
        self.containers.delete(&c.record)?;
        if volumes {
            self.remove_anonymous_volumes(&c.record);
        }
        Ok(())
    }

    fn remove_anonymous_volumes(&self, r: &ContainerRecord) {
        for m in r
            .mounts
            .iter()
            .filter(|m| m.kind == "volume" && m.anonymous)
        {
            let _ = self.volumes.remove(&m.name, &[]);
        }
    }

    /// Containers whose mounts use the named volume.
    pub fn volume_users(&self, name: &str) -> Result<Vec<String>> {
        Ok(self
            .containers
            .list()?
            .into_iter()
            .filter(|c| {
                c.record
                    .mounts
                    .iter()
                    .any(|m| m.kind == "volume" && m.name == name)
            })
            .map(|c| c.record.id)
            .collect())
    }
}

/// Called by the monitor after a `--rm` container exits (or fails to start).
pub fn remove_after_exit(roots: &Roots, net: &network::NetSettings, id: &str) -> Result<()> {
    let e = Engine::open(roots.clone())?;
    let c = e.containers.load(id)?;
    let _lock = e.containers.lock(id)?;
    crate::netglue::teardown(roots, net, id);
    e.containers.delete(&c.record)?;
    e.remove_anonymous_volumes(&c.record);
    Ok(())
}

fn within_own_bounding_set(caps: Vec<String>) -> Vec<String> {
    let Ok(own) = caps::read(None, caps::CapSet::Bounding) else {
        return caps;
    };
    caps.into_iter()
        .filter(|name| {
            name.parse::<caps::Capability>()
                .map(|c| own.contains(&c))
                .unwrap_or(true)
        })
        .collect()
}

fn validate_host_config(hc: &HostConfig) -> Result<()> {
    if hc.memory != 0 && hc.memory < 6 * 1024 * 1024 {
        return Err(Error::invalid("Minimum memory limit allowed is 6MB"));
    }
    if hc.memory_swap > 0 && hc.memory > 0 && hc.memory_swap < hc.memory {
        return Err(Error::invalid(
            "Minimum memoryswap limit should be larger than memory limit, see usage",
        ));
    }
    if hc.nano_cpus < 0 {
        return Err(Error::invalid(
            "Range of CPUs is from 0.01 to the number of CPUs",
        ));
    }
    for u in &hc.ulimits {
        if !crate::spec::is_valid_ulimit(&u.name) {
            return Err(Error::invalid(format!("invalid ulimit type: {}", u.name)));
        }
        if u.soft > u.hard {
            return Err(Error::invalid(format!(
                "ulimit soft limit must be less than or equal to hard limit: {} > {}",
                u.soft, u.hard
            )));
        }
    }
    for h in &hc.extra_hosts {
        split_extra_host(h)?;
    }
    crate::runtime::restart::validate(&hc.restart_policy, hc.auto_remove)
}

const BASE_HOSTS: &str = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n";

/// `--add-host name:ip` (or `name=ip`); the ip may be `host-gateway`.
fn split_extra_host(h: &str) -> Result<(&str, &str)> {
    let (name, ip) = h
        .split_once('=')
        .or_else(|| h.split_once(':'))
        .ok_or_else(|| Error::invalid(format!("invalid argument \"{h}\" for \"--add-host\"")))?;
    if ip != "host-gateway" && ip.parse::<std::net::IpAddr>().is_err() {
        return Err(Error::invalid(format!(
            "invalid argument \"{h}\" for \"--add-host\": invalid IP address in add-host: \"{ip}\""
        )));
    }
    Ok((name, ip))
}

fn log_options(hc: &HostConfig) -> Result<LogOptions> {
    let max_size = match hc.log_config.config.get("max-size") {
        Some(s) => crate::units::parse_size(s)?,
        None => 0,
    };
    let max_file = match hc.log_config.config.get("max-file") {
        Some(s) => s
            .parse::<u32>()
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| Error::invalid(format!("invalid value for max-file: {s}")))?,
        None => 1,
    };
    Ok(LogOptions { max_size, max_file })
}

fn write_etc_files(r: &ContainerRecord, p: &ContainerPaths) -> Result<()> {
    let c = &r.config;
    let hc = &r.host_config;
    write_atomic(&p.hostname(), format!("{}\n", c.hostname).as_bytes())?;
    // Checked here, so a bad --add-host fails the create; `host-gateway` resolves at start.
    let mut hosts = String::from(BASE_HOSTS);
    for h in &hc.extra_hosts {
        let (name, ip) = split_extra_host(h)?;
        if ip != "host-gateway" {
            hosts.push_str(&format!("{ip}\t{name}\n"));
        }
    }
    // Every other network mode writes both files at each start, with that run's
    // addresses; writing them here as well only made and freed two more inodes.
    if !matches!(crate::netglue::mode(hc), crate::netglue::Mode::Host) {
        return Ok(());
    }
    write_atomic(&p.hosts(), hosts.as_bytes())?;
    let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    write_atomic(&p.resolv_conf(), resolv_conf(&host_resolv, hc).as_bytes())
}

/// The container's resolv.conf: the host's, minus loopback resolvers the container cannot
/// reach from its own network namespace, with --dns/--dns-search/--dns-option applied.
pub fn resolv_conf(host: &str, hc: &HostConfig) -> String {
    let mut ns: Vec<String> = Vec::new();
    let mut search: Vec<String> = Vec::new();
    let mut options: Vec<String> = Vec::new();
    for line in host.lines() {
        let mut f = line.split_whitespace();
        match f.next() {
            Some("nameserver") => {
                if let Some(a) = f.next()
                    && (hc.network_mode == "host" || !(a.starts_with("127.") || a == "::1"))
                {
                    ns.push(a.to_string());
                }
            }
            Some("search") | Some("domain") => search = f.map(str::to_string).collect(),
            Some("options") => options = f.map(str::to_string).collect(),
            _ => {}
        }
    }
    if !hc.dns.is_empty() {
        ns = hc.dns.clone();
    }
    if !hc.dns_search.is_empty() {
        search = hc
            .dns_search
            .iter()
            .filter(|s| *s != ".")
            .cloned()
            .collect();
    }
    if !hc.dns_options.is_empty() {
        options = hc.dns_options.clone();
    }
    let mut out = String::new();
    for n in ns {
        out.push_str(&format!("nameserver {n}\n"));
    }
    if !search.is_empty() {
        out.push_str(&format!("search {}\n", search.join(" ")));
    }
    if !options.is_empty() {
        out.push_str(&format!("options {}\n", options.join(" ")));
    }
    out
}

pub fn parse_signal(s: &str) -> Result<Signal> {
    let t = s.trim();
    if let Ok(n) = t.parse::<i32>() {
        return Signal::try_from(n).map_err(|_| Error::invalid(format!("Invalid signal: {s}")));
    }
    let up = t.to_ascii_uppercase();
    let name = if up.starts_with("SIG") {
        up
    } else {
        format!("SIG{up}")
    };
    name.parse::<Signal>()
        .map_err(|_| Error::invalid(format!("Invalid signal: {s}")))
}

fn send_signal(pid: i32, sig: Signal) -> Result<()> {
    // A container between runs (restarting) has no process; kill(0) would signal us.
    if pid <= 0 {
        return Err(Error::Conflict(format!("no process to signal (pid {pid})")));
    }
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig)
        .map_err(|e| Error::io(format!("signal {sig} to {pid}"), e.into()))
}

/// A pidfd on a container's monitor: readable when the monitor exits, so waiting for a
/// container's end needs no polling of the state file.
struct MonitorHandle {
    fd: OwnedFd,
}

impl MonitorHandle {
    fn open(st: &ContainerState) -> Option<Self> {
        if st.monitor_pid <= 0 {
            return None;
        }
        // SAFETY: pidfd_open with a pid and no flags.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, st.monitor_pid, 0) };
        if fd < 0 {
            return None;
        }
        // SAFETY: the kernel returned a fresh fd we own.
        let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd as i32) };
        // Opened after reading the state: check the pid still names our monitor.
        if !crate::state::monitor_alive(st.monitor_pid, st.monitor_start_time, &st.boot_id) {
            return None;
        }
        Some(MonitorHandle { fd })
    }

    /// Waits for the monitor to exit; true if it did within `timeout`.
    fn wait(&self, timeout: Option<Duration>) -> bool {
        use std::os::fd::AsRawFd;
        let ms = timeout.map_or(-1, |d| d.as_millis().min(i32::MAX as u128) as i32);
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        loop {
            // SAFETY: one valid pollfd.
            let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
            if rc < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return rc > 0;
        }
    }
}
