//! Container networking: bridges, veth pairs, IPAM, NAT and published ports, embedded DNS.
//!
//! The engine takes a prepared network-namespace path, so this crate plugs in without the
//! engine knowing how the namespace was wired: [`Networks::setup`] makes and pins a
//! namespace, wires it to every requested network and publishes ports; the container's
//! monitor calls [`Networks::teardown`] when the container exits.
//!
//! Everything here is synchronous (netlink calls run on a private current-thread runtime)
//! so the CLI, the monitor and a future API daemon (from `spawn_blocking`) call it alike.
//!
//! State: network definitions under `<data-root>/networks` (persistent); live endpoints
//! (address leases), sandboxes and namespace pins under `<run-root>/net`, which a reboot
//! clears together with the kernel objects they describe.

pub mod config;
pub mod dns;
pub mod error;
pub mod firewall;
mod fsutil;
pub mod ipam;
pub mod ipnet;
pub mod model;
pub mod netlink;
pub mod nftnl;
pub mod ports;

pub use config::{NetConfig, NetSettings};
pub use error::{Error, Kind, Result};
pub use model::{
    Endpoint, EndpointConfig, EndpointIpamConfig, Ipam, IpamConfig, Network, NetworkContainer,
    PortMapping, Sandbox,
};

use firewall::{BridgeRules, Firewall, PortRule, Ruleset};
use fsutil::{Lock, read_json, remove_if_exists, write_json};
use ipnet::Ipv4Net;
use netlink::{Nl, NsTarget};
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

/// Host-wide lock for picking subnets and creating bridges: different data roots (test
/// runs, a second instance) must not pick the same free range at the same time.
const GLOBAL_LOCK: &str = "/run/pelagos-network.lock";

/// `network create` options (Docker's NetworkCreateRequest, flattened).
#[derive(Debug, Clone, Default)]
pub struct CreateRequest {
    pub name: String,
    /// `bridge` (default); `host`/`null` are built in and cannot be created.
    pub driver: String,
    pub subnet: Option<String>,
    pub gateway: Option<String>,
    pub ip_range: Option<String>,
    pub internal: bool,
    pub attachable: bool,
    pub labels: BTreeMap<String, String>,
    pub options: BTreeMap<String, String>,
}

/// The container a sandbox belongs to.
#[derive(Debug, Clone, Default)]
pub struct ContainerRef {
    pub id: String,
    pub name: String,
    /// The container's own `--dns` servers: on user networks its resolv.conf still names
    /// the embedded server (so container names resolve), which forwards the rest there.
    pub dns: Vec<String>,
}

/// What [`Networks::setup`] wires.
#[derive(Debug, Clone, Default)]
pub struct SandboxRequest {
    pub container: ContainerRef,
    /// Network name or ID with the container's settings for it, in attach order.
    pub networks: Vec<(String, EndpointConfig)>,
    pub ports: Vec<PortMapping>,
}

/// What the container needs to know after [`Networks::setup`].
#[derive(Debug, Clone, Default)]
pub struct SandboxInfo {
    pub sandbox: Sandbox,
    pub endpoints: Vec<Endpoint>,
    /// The embedded DNS server for resolv.conf (a user-defined network's gateway).
    pub dns_server: Option<Ipv4Addr>,
}

/// The network service of one data root.
pub struct Networks {
    pub cfg: NetConfig,
    fw: Box<dyn Firewall + Send + Sync>,
}

impl Networks {
    pub fn open(data_root: &Path, run_root: &Path, settings: &NetSettings) -> Result<Self> {
        Ok(Networks {
            cfg: NetConfig::load(data_root, run_root, settings)?,
            fw: Box::new(firewall::Nft),
        })
    }

    /// With another firewall backend (unit tests fake the kernel).
    #[cfg(test)]
    fn with_firewall(cfg: NetConfig, fw: Box<dyn Firewall + Send + Sync>) -> Self {
        Networks { cfg, fw }
    }

    fn net_file(&self, id: &str) -> PathBuf {
        self.cfg.networks_dir().join(format!("{id}.json"))
    }
    fn store_lock(&self) -> Result<Lock> {
        Lock::exclusive(&self.cfg.networks_dir().join(".lock"))
    }
    pub(crate) fn endpoints_dir(&self, net_id: &str) -> PathBuf {
        self.cfg.run_dir().join("endpoints").join(net_id)
    }
    fn endpoint_file(&self, net_id: &str, cid: &str) -> PathBuf {
        self.endpoints_dir(net_id).join(format!("{cid}.json"))
    }
    pub(crate) fn net_lock(&self, net_id: &str) -> Result<Lock> {
        Lock::exclusive(
            &self
                .cfg
                .run_dir()
                .join("endpoints")
                .join(format!("{net_id}.lock")),
        )
    }
    fn sandbox_file(&self, cid: &str) -> PathBuf {
        self.cfg
            .run_dir()
            .join("sandboxes")
            .join(format!("{cid}.json"))
    }
    /// Where a container's namespace is pinned (Docker's SandboxKey).
    pub fn netns_pin(&self, cid: &str) -> PathBuf {
        self.cfg.run_dir().join("netns").join(cid)
    }

    // ---- networks ------------------------------------------------------------------

    fn stored(&self) -> Result<Vec<Network>> {
        let dir = self.cfg.networks_dir();
        let rd = match std::fs::read_dir(&dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
            Err(e) => return Err(Error::path(&dir, e)),
        };
        let mut out = Vec::new();
        for e in rd.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "json")
                && let Some(n) = read_json::<Network>(&p)?
            {
                out.push(n);
            }
        }
        Ok(out)
    }

    /// Built-in `host` and `none` networks: fixed per data root, never stored.
    /// `host` and `none` exist as long as the data root does; they take the default
    /// bridge's creation time (clients parse `Created`, so it must be a real timestamp).
    fn builtin(&self, name: &str, driver: &str, created: &str) -> Network {
        use sha2::Digest;
        let id = hex::encode(sha2::Sha256::digest(
            format!("{}:{name}", self.cfg.data_root.display()).as_bytes(),
        ));
        Network {
            name: name.into(),
            id,
            created: created.into(),
            scope: "local".into(),
            driver: driver.into(),
            ipam: Ipam {
                driver: "default".into(),
                ..Default::default()
            },
            attachable: false,
            ..Default::default()
        }
    }

    /// Every network, the built-in ones included, the default bridge made if missing.
    pub fn list(&self) -> Result<Vec<Network>> {
        self.ensure_default()?;
        let mut v = self.stored()?;
        let created = v
            .iter()
            .find(|n| n.is_default_bridge())
            .map(|n| n.created.clone())
            .unwrap_or_else(|| "0001-01-01T00:00:00Z".into());
        v.push(self.builtin("host", "host", &created));
        v.push(self.builtin("none", "null", &created));
        v.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(v)
    }

    /// By exact ID, exact name, or unique ID prefix (Docker's lookup order).
    pub fn find(&self, what: &str) -> Result<Network> {
        let all = self.list()?;
        if let Some(n) = all.iter().find(|n| n.id == what || n.name == what) {
            return Ok(n.clone());
        }
        let m: Vec<&Network> = all.iter().filter(|n| n.id.starts_with(what)).collect();
        match m.as_slice() {
            [one] if !what.is_empty() => Ok((*one).clone()),
            [] | [_] => Err(Error::NoSuchNetwork(what.to_string())),
            _ => Err(Error::invalid(format!(
                "network {what} is ambiguous ({} matches found based on ID prefix)",
                m.len()
            ))),
        }
    }

    /// With `Containers` filled from the live endpoints.
    pub fn inspect(&self, what: &str) -> Result<Network> {
        let mut n = self.find(what)?;
        for ep in self.network_endpoints(&n.id)? {
            n.containers.insert(
                ep.container_id.clone(),
                NetworkContainer {
                    name: ep.container_name.clone(),
                    endpoint_id: ep.endpoint_id.clone(),
                    mac_address: ep.mac_address.clone(),
                    ipv4_address: format!("{}/{}", ep.ip_address, ep.ip_prefix_len),
                    ipv6_address: String::new(),
                },
            );
        }
        Ok(n)
    }

    /// The default `bridge` network: stored on first use, its bridge made with it.
    fn ensure_default(&self) -> Result<()> {
        if self.stored()?.iter().any(|n| n.is_default_bridge()) {
            return Ok(());
        }
        let _g = Lock::exclusive(Path::new(GLOBAL_LOCK))?;
        self.make_default_if_missing()
    }

    /// Host routes plus every network of this root: what a new subnet must not overlap.
    fn taken_subnets(&self, nl: &Nl) -> Result<Vec<Ipv4Net>> {
        let mut taken = nl.host_routes()?;
        for n in self.stored()? {
            for c in &n.ipam.config {
                if let Ok(s) = c.subnet.parse() {
                    taken.push(s);
                }
            }
        }
        Ok(taken)
    }

    fn pick_subnet(&self, nl: &Nl) -> Result<Ipv4Net> {
        ipam::pick_subnet(&self.cfg.pools, &self.taken_subnets(nl)?)
    }

    /// `network create`. Docker's errors: duplicate name (409), overlapping pool, bad CIDR.
    pub fn create(&self, req: CreateRequest) -> Result<Network> {
        let driver = if req.driver.is_empty() {
            "bridge"
        } else {
            req.driver.as_str()
        };
        match driver {
            "bridge" => {}
            "host" | "null" => {
                return Err(Error::invalid(format!(
                    "only one instance of \"{driver}\" network is allowed"
                )));
            }
            other => {
                return Err(Error::NoSuchNetwork(format!(
                    "plugin \"{other}\" not found"
                )));
            }
        }
        validate_name(&req.name)?;
        if matches!(req.name.as_str(), "bridge" | "host" | "none" | "default") {
            return Err(Error::Conflict(format!(
                "network with name {} already exists",
                req.name
            )));
        }
        let subnet: Option<Ipv4Net> = req.subnet.as_deref().map(str::parse).transpose()?;
        let gateway: Option<Ipv4Addr> = req
            .gateway
            .as_deref()
            .map(|g| {
                g.parse()
                    .map_err(|_| Error::invalid(format!("invalid gateway address: {g}")))
            })
            .transpose()?;
        let range = match req.ip_range.as_deref() {
            Some(r) => Some(ipnet::parse_cidr_loose(r)?.1),
            None => None,
        };
        if subnet.is_none() && (gateway.is_some() || range.is_some()) {
            return Err(Error::invalid(
                "invalid pool request: --gateway and --ip-range require --subnet",
            ));
        }
        if let (Some(s), Some(g)) = (subnet, gateway)
            && !s.contains(g)
        {
            return Err(Error::invalid(format!(
                "invalid pool request: gateway {g} is not in subnet {s}"
            )));
        }
        if let (Some(s), Some(r)) = (subnet, range)
            && !s.contains_net(&r)
        {
            return Err(Error::invalid(format!(
                "invalid pool request: ip range {r} is not in subnet {s}"
            )));
        }
        let _g = Lock::exclusive(Path::new(GLOBAL_LOCK))?;
        self.make_default_if_missing()?;
        let _l = self.store_lock()?;
        let existing = self.stored()?;
        if existing.iter().any(|n| n.name == req.name) {
            return Err(Error::Conflict(format!(
                "network with name {} already exists",
                req.name
            )));
        }
        let nl = Nl::open()?;
        let subnet = match subnet {
            Some(s) => {
                let ours = existing
                    .iter()
                    .flat_map(|n| n.ipam.config.iter())
                    .filter_map(|c| c.subnet.parse::<Ipv4Net>().ok())
                    .find(|o| o.overlaps(&s));
                if let Some(o) = ours {
                    return Err(Error::Conflict(format!(
                        "invalid pool request: Pool overlaps with other one on this address space ({o})"
                    )));
                }
                if let Some(r) = nl.host_routes()?.into_iter().find(|r| r.overlaps(&s)) {
                    return Err(Error::Conflict(format!(
                        "invalid pool request: Pool overlaps with a route on this host ({r})"
                    )));
                }
                s
            }
            None => self.pick_subnet(&nl)?,
        };
        let gateway = match gateway {
            Some(g) => g,
            None => subnet
                .nth(1)
                .ok_or_else(|| Error::invalid(format!("subnet {subnet} is too small")))?,
        };
        let id = random_id();
        let mut options = req.options.clone();
        options
            .entry(model::OPT_BRIDGE_NAME.into())
            .or_insert_with(|| format!("br-{}", &id[..12]));
        let n = Network {
            name: req.name.clone(),
            id,
            created: now(),
            scope: "local".into(),
            driver: "bridge".into(),
            ipam: Ipam {
                driver: "default".into(),
                options: BTreeMap::new(),
                config: vec![IpamConfig {
                    subnet: subnet.to_string(),
                    ip_range: range.map(|r| r.to_string()).unwrap_or_default(),
                    gateway: gateway.to_string(),
                }],
            },
            internal: req.internal,
            attachable: req.attachable,
            labels: req.labels.clone(),
            options,
            ..Default::default()
        };
        // The bridge first: if the kernel refuses, nothing is stored.
        if let Err(e) = self.bring_up(&nl, &n) {
            if let Some(b) = n.bridge_name() {
                let _ = nl.delete_link(b);
            }
            return Err(e);
        }
        if let Err(e) = write_json(&self.net_file(&n.id), &n) {
            if let Some(b) = n.bridge_name() {
                let _ = nl.delete_link(b);
            }
            return Err(e);
        }
        if let Err(e) = self.sync_firewall() {
            let _ = remove_if_exists(&self.net_file(&n.id));
            if let Some(b) = n.bridge_name() {
                let _ = nl.delete_link(b);
            }
            let _ = self.sync_firewall();
            return Err(e);
        }
        Ok(n)
    }

    /// For callers holding the global lock.
    fn make_default_if_missing(&self) -> Result<()> {
        let l = self.store_lock()?;
        if self.stored()?.iter().any(|n| n.is_default_bridge()) {
            return Ok(());
        }
        let (gateway, subnet) = match self.cfg.bip {
            Some(b) => b,
            None => {
                let subnet = self.pick_subnet(&Nl::open()?)?;
                (subnet.nth(1).unwrap_or(subnet.addr()), subnet)
            }
        };
        let mut options = BTreeMap::new();
        options.insert(model::OPT_DEFAULT_BRIDGE.into(), "true".into());
        options.insert(
            model::OPT_BRIDGE_NAME.into(),
            self.cfg.default_bridge.clone(),
        );
        options.insert(model::OPT_ENABLE_ICC.into(), "true".into());
        options.insert(model::OPT_MASQUERADE.into(), "true".into());
        let n = Network {
            name: "bridge".into(),
            id: random_id(),
            created: now(),
            scope: "local".into(),
            driver: "bridge".into(),
            ipam: Ipam {
                driver: "default".into(),
                options: BTreeMap::new(),
                config: vec![IpamConfig {
                    subnet: subnet.to_string(),
                    ip_range: String::new(),
                    gateway: gateway.to_string(),
                }],
            },
            options,
            ..Default::default()
        };
        self.bring_up(&Nl::open()?, &n)?;
        write_json(&self.net_file(&n.id), &n)?;
        drop(l);
        self.sync_firewall()
    }

    /// Makes the network's bridge exist with its gateway address; a bridge made now (first
    /// use, or after a reboot) also gets its sysctls and a fresh firewall table.
    fn bring_up(&self, nl: &Nl, n: &Network) -> Result<u32> {
        let (bridge, gw, subnet) = bridge_params(n)?;
        let (idx, created) = nl.ensure_bridge(&bridge, gw, &subnet, &self.cfg.owner_tag)?;
        if created {
            // Our own interface's settings only: forwarding for traffic entering from the
            // bridge, route_localnet so DNAT from 127.0.0.1 to a container is routable.
            netlink::set_if_sysctl(&bridge, "forwarding", "1")?;
            netlink::set_if_sysctl(&bridge, "route_localnet", "1")?;
            if self.cfg.ip_forward && !n.internal {
                let p = Path::new("/proc/sys/net/ipv4/ip_forward");
                if std::fs::read_to_string(p).is_ok_and(|v| v.trim() != "1") {
                    std::fs::write(p, "1").map_err(|e| Error::path(p, e))?;
                }
            }
        }
        Ok(idx)
    }

    /// Before wiring, on the caller's (host-namespace) thread, since /proc/sys/net shows
    /// the namespace of whoever reads it: the bridge exists (it is gone after a reboot)
    /// and forwards. Checked per attach because writing net.ipv4.ip_forward (anyone may)
    /// resets every interface's forwarding flag, ours included.
    fn bridge_ready(&self, n: &Network) -> Result<()> {
        let (bridge, _, _) = bridge_params(n)?;
        match netlink::get_if_sysctl(&bridge, "forwarding") {
            None => {
                self.bring_up(&Nl::open()?, n)?;
                // The bridge was gone (a reboot): so is our table. Masquerade, isolation
                // and the no-outbound rule must be back before a container is wired.
                self.sync_firewall()?;
            }
            Some(v) if v != "1" => netlink::set_if_sysctl(&bridge, "forwarding", "1")?,
            Some(_) => {}
        }
        Ok(())
    }

    /// `network rm`: refuses built-in networks and networks with live endpoints.
    pub fn remove(&self, what: &str) -> Result<()> {
        let n = self.find(what)?;
        if n.driver != "bridge" || n.is_default_bridge() {
            return Err(Error::Forbidden(format!(
                "{} is a pre-defined network and cannot be removed",
                n.name
            )));
        }
        let _l = self.store_lock()?;
        let _nl = self.net_lock(&n.id)?;
        if !self.network_endpoints(&n.id)?.is_empty() {
            return Err(Error::Forbidden(format!(
                "error while removing network: network {} id {} has active endpoints",
                n.name, n.id
            )));
        }
        dns::stop(self, &n.id);
        remove_if_exists(&self.net_file(&n.id))?;
        let _ = std::fs::remove_dir(self.endpoints_dir(&n.id));
        let _ = remove_if_exists(
            &self
                .cfg
                .run_dir()
                .join("endpoints")
                .join(format!("{}.lock", n.id)),
        );
        if let Some(b) = n.bridge_name() {
            Nl::open()?.delete_link(b)?;
        }
        self.sync_firewall()
    }

    /// `network prune`: every user network without endpoints and not in `keep` (networks
    /// that stopped containers are configured for). Returns the removed names.
    /// Removes the user networks no endpoint uses, that are not in `keep` and that
    /// `admit` (the caller's prune filters) lets go.
    pub fn prune(
        &self,
        keep: &BTreeSet<String>,
        admit: &dyn Fn(&Network) -> bool,
    ) -> Result<Vec<String>> {
        let mut removed = Vec::new();
        for n in self.stored()? {
            if n.is_default_bridge() || keep.contains(&n.id) || keep.contains(&n.name) || !admit(&n)
            {
                continue;
            }
            if self.network_endpoints(&n.id)?.is_empty() && self.remove(&n.id).is_ok() {
                removed.push(n.name);
            }
        }
        Ok(removed)
    }

    /// Deletes every bridge and the firewall table of this data root, and the stored
    /// networks (uninstall, and the test harness's cleanup of private roots).
    pub fn destroy_all(&self) -> Result<()> {
        // Under the lock network creation takes, and DNS servers first: once a bridge
        // (and its route) is gone, a create elsewhere may pick the same subnet, and its
        // DNS server must find the gateway's port 53 free.
        let _g = Lock::exclusive(Path::new(GLOBAL_LOCK))?;
        let stored = self.stored()?;
        for n in &stored {
            dns::stop(self, &n.id);
        }
        let nl = Nl::open()?;
        for b in nl.links_with_alias(&self.cfg.owner_tag)? {
            nl.delete_link(&b)?;
        }
        for n in stored {
            if let Some(b) = n.bridge_name() {
                nl.delete_link(b)?;
            }
            remove_if_exists(&self.net_file(&n.id))?;
        }
        self.fw.remove(&self.cfg.nft_table)
    }

    // ---- firewall ------------------------------------------------------------------

    /// Rebuilds our nftables table from the stored networks and live sandboxes' ports.
    pub fn sync_firewall(&self) -> Result<()> {
        let _l = Lock::exclusive(&self.cfg.run_dir().join("firewall.lock"))?;
        let rules = self.ruleset()?;
        self.fw.apply(&self.cfg.nft_table, &rules)
    }

    fn ruleset(&self) -> Result<Ruleset> {
        let mut r = Ruleset {
            no_outbound: !self.cfg.ip_forward,
            ..Default::default()
        };
        for n in self.stored()? {
            if let Ok((bridge, _, subnet)) = bridge_params(&n) {
                r.bridges.push(BridgeRules {
                    bridge,
                    subnet,
                    internal: n.internal,
                    masquerade: n
                        .options
                        .get(model::OPT_MASQUERADE)
                        .is_none_or(|v| v != "false"),
                });
            }
        }
        for sb in self.sandboxes()? {
            r.ports.extend(port_rules(&sb));
        }
        Ok(r)
    }

    fn sandboxes(&self) -> Result<Vec<Sandbox>> {
        let dir = self.cfg.run_dir().join("sandboxes");
        let Ok(rd) = std::fs::read_dir(&dir) else {
            return Ok(vec![]);
        };
        let mut v = Vec::new();
        for e in rd.flatten() {
            let p = e.path();
            if p.extension().is_some_and(|x| x == "json")
                && let Ok(Some(s)) = read_json::<Sandbox>(&p)
            {
                v.push(s);
            }
        }
        Ok(v)
    }

    // ---- endpoints -----------------------------------------------------------------

    /// Live endpoints on a network.
    pub fn network_endpoints(&self, net_id: &str) -> Result<Vec<Endpoint>> {
        dns::read_endpoints(&self.endpoints_dir(net_id))
    }

    /// A container's sandbox, if it has one (running, or died without teardown).
    pub fn sandbox(&self, cid: &str) -> Result<Option<Sandbox>> {
        read_json(&self.sandbox_file(cid))
    }

    /// A container's live endpoints, in attach order.
    pub fn endpoints(&self, cid: &str) -> Result<Vec<Endpoint>> {
        let Some(sb) = self.sandbox(cid)? else {
            return Ok(vec![]);
        };
        let mut v = Vec::new();
        for nid in &sb.networks {
            if let Some(ep) = read_json::<Endpoint>(&self.endpoint_file(nid, cid))? {
                v.push(ep);
            }
        }
        Ok(v)
    }

    /// Makes and pins a network namespace for the container, attaches it to every
    /// requested network and publishes its ports. On failure nothing is left behind.
    pub fn setup(&self, req: &SandboxRequest) -> Result<SandboxInfo> {
        let cid = req.container.id.clone();
        let mut nets = Vec::new();
        for (name, cfg) in &req.networks {
            let n = self.find(name)?;
            if n.driver != "bridge" {
                return Err(Error::invalid(format!(
                    "container cannot be connected to network {} (driver {})",
                    n.name, n.driver
                )));
            }
            if nets
                .iter()
                .any(|(m, _): &(Network, EndpointConfig)| m.id == n.id)
            {
                continue;
            }
            nets.push((n, cfg.clone()));
        }
        let pin = self.netns_pin(&cid);
        // A pin left by a container that died without teardown.
        let _ = self.teardown(&cid);
        let mut sandbox = Sandbox {
            container_id: cid.clone(),
            netns_path: pin.display().to_string(),
            ..Default::default()
        };
        write_json(&self.sandbox_file(&cid), &sandbox)?;
        let result = self.setup_inner(req, &nets, &pin, &mut sandbox);
        if result.is_err() {
            let _ = self.teardown(&cid);
        }
        result
    }

    fn setup_inner(
        &self,
        req: &SandboxRequest,
        nets: &[(Network, EndpointConfig)],
        pin: &Path,
        sandbox: &mut Sandbox,
    ) -> Result<SandboxInfo> {
        let container = req.container.clone();
        let jobs: Vec<(Network, EndpointConfig, String, bool)> = {
            let mut default_route = true;
            nets.iter()
                .enumerate()
                .map(|(i, (n, c))| {
                    let route = default_route && !n.internal;
                    if route {
                        default_route = false;
                    }
                    (n.clone(), c.clone(), format!("eth{i}"), route)
                })
                .collect()
        };
        // Leases first (each under its network's lock), so concurrent starts never share
        // an address; then the kernel work in one helper thread.
        let mut endpoints = Vec::new();
        for (n, c, ifname, _) in &jobs {
            let ep = self.lease(n, c, &container, ifname)?;
            sandbox.networks.push(n.id.clone());
            write_json(&self.sandbox_file(&container.id), &*sandbox)?;
            endpoints.push(ep);
        }
        let work: Vec<(Network, Endpoint, bool)> = jobs
            .iter()
            .zip(endpoints.iter())
            .map(|((n, _, _, r), ep)| (n.clone(), ep.clone(), *r))
            .collect();
        for (n, _, _, _) in &jobs {
            self.bridge_ready(n)?;
        }
        let tag = self.cfg.owner_tag.clone();
        netlink::in_netns(NsTarget::New(pin), move |host, ns, fd| {
            ns.loopback_up()?;
            for (n, ep, route) in &work {
                wire(host, ns, fd, n, ep, *route, &tag)?;
            }
            Ok(())
        })?;
        if !req.ports.is_empty() {
            let target = endpoints
                .first()
                .map(|e| e.ip_address.clone())
                .ok_or_else(|| Error::invalid("published ports need a network (not none)"))?;
            let _l = Lock::exclusive(&self.cfg.run_dir().join("ports.lock"))?;
            let taken: Vec<PortMapping> = self
                .sandboxes()?
                .into_iter()
                .flat_map(|s| s.ports)
                .collect();
            sandbox.ports = ports::allocate(&req.ports, &taken)?;
            sandbox.port_target = target;
            // Recorded now (so no one else takes the ports); made live by
            // `publish_sandbox`, which the container's monitor calls.
            write_json(&self.sandbox_file(&container.id), &*sandbox)?;
        }
        let mut dns_server = None;
        for (n, _, _, _) in &jobs {
            if n.has_dns() {
                dns::ensure_running(self, n)?;
                if dns_server.is_none() {
                    dns_server = bridge_params(n).ok().map(|p| p.1);
                }
            }
        }
        Ok(SandboxInfo {
            sandbox: sandbox.clone(),
            endpoints,
            dns_server,
        })
    }

    /// Allocates the address and writes the endpoint record (the lease).
    fn lease(
        &self,
        n: &Network,
        c: &EndpointConfig,
        container: &ContainerRef,
        ifname: &str,
    ) -> Result<Endpoint> {
        let (_, gw, subnet) = bridge_params(n)?;
        let range = n
            .ipam
            .config
            .first()
            .filter(|c| !c.ip_range.is_empty())
            .and_then(|c| c.ip_range.parse::<Ipv4Net>().ok());
        let requested = match c.ipam_config.as_ref().map(|i| i.ipv4_address.as_str()) {
            Some(s) if !s.is_empty() => {
                if n.is_default_bridge() {
                    return Err(Error::invalid(
                        "user specified IP address is supported on user defined networks only",
                    ));
                }
                Some(
                    s.parse::<Ipv4Addr>()
                        .map_err(|_| Error::invalid(format!("invalid IPv4 address: {s}")))?,
                )
            }
            _ => None,
        };
        if n.is_default_bridge() && !c.aliases.is_empty() {
            return Err(Error::invalid(
                "network-scoped alias is supported only for containers in user defined networks",
            ));
        }
        let mac = if c.mac_address.is_empty() {
            None
        } else {
            Some(ipam::parse_mac(&c.mac_address)?)
        };
        let _l = self.net_lock(&n.id)?;
        let path = self.endpoint_file(&n.id, &container.id);
        if path.exists() {
            return Err(Error::Conflict(format!(
                "endpoint with name {} already exists in network {}",
                container.name, n.name
            )));
        }
        let used: BTreeSet<Ipv4Addr> = self
            .network_endpoints(&n.id)?
            .iter()
            .filter_map(|e| e.ip_address.parse().ok())
            .collect();
        let ip = ipam::allocate(&subnet, range.as_ref(), gw, &used, requested)?;
        let mac = mac.unwrap_or_else(|| ipam::mac_for(ip));
        let ep = Endpoint {
            network_id: n.id.clone(),
            network_name: n.name.clone(),
            endpoint_id: random_id(),
            container_id: container.id.clone(),
            container_name: container.name.clone(),
            upstream_dns: container.dns.clone(),
            aliases: c.aliases.clone(),
            ip_address: ip.to_string(),
            ip_prefix_len: subnet.prefix(),
            gateway: gw.to_string(),
            mac_address: ipam::format_mac(&mac),
            interface: ifname.to_string(),
            host_veth: format!("veth{}", &random_id()[..7]),
            config: c.clone(),
        };
        write_json(&path, &ep)?;
        Ok(ep)
    }

    /// `network connect` for a running container (its namespace pinned at `netns`).
    pub fn connect(
        &self,
        container: &ContainerRef,
        network: &str,
        cfg: &EndpointConfig,
    ) -> Result<Endpoint> {
        let n = self.find(network)?;
        if n.driver != "bridge" {
            return Err(Error::invalid(
                "container cannot be disconnected from host network or connected to host network",
            ));
        }
        let mut sb = self.sandbox(&container.id)?.ok_or_else(|| {
            Error::invalid(format!(
                "container {} has no network namespace",
                container.id
            ))
        })?;
        if sb.networks.contains(&n.id) {
            return Err(Error::Conflict(format!(
                "endpoint with name {} already exists in network {}",
                container.name, n.name
            )));
        }
        let used_if: BTreeSet<String> = self
            .endpoints(&container.id)?
            .into_iter()
            .map(|e| e.interface)
            .collect();
        let ifname = (0..)
            .map(|i| format!("eth{i}"))
            .find(|n| !used_if.contains(n))
            .unwrap_or_default();
        let ep = self.lease(&n, cfg, container, &ifname)?;
        let pin = PathBuf::from(&sb.netns_path);
        if let Err(e) = self.bridge_ready(&n) {
            let _ = remove_if_exists(&self.endpoint_file(&n.id, &container.id));
            return Err(e);
        }
        let (n2, ep2, tag) = (n.clone(), ep.clone(), self.cfg.owner_tag.clone());
        let route = sb.networks.is_empty() && !n.internal;
        let r = netlink::in_netns(NsTarget::Existing(&pin), move |host, ns, fd| {
            wire(host, ns, fd, &n2, &ep2, route, &tag)
        });
        if let Err(e) = r {
            let _ = remove_if_exists(&self.endpoint_file(&n.id, &container.id));
            if let Ok(nl) = Nl::open() {
                let _ = nl.delete_link(&ep.host_veth);
            }
            return Err(e);
        }
        sb.networks.push(n.id.clone());
        write_json(&self.sandbox_file(&container.id), &sb)?;
        if n.has_dns() {
            dns::ensure_running(self, &n)?;
        }
        Ok(ep)
    }

    /// `network disconnect` of a running container: its veth goes, the lease is released.
    pub fn disconnect(&self, cid: &str, network: &str) -> Result<()> {
        let n = self.find(network)?;
        let Some(mut sb) = self.sandbox(cid)? else {
            return Ok(());
        };
        let path = self.endpoint_file(&n.id, cid);
        let ep: Option<Endpoint> = read_json(&path)?;
        if let Some(ep) = ep {
            Nl::open()?.delete_link(&ep.host_veth)?;
            let _l = self.net_lock(&n.id)?;
            remove_if_exists(&path)?;
        }
        sb.networks.retain(|x| x != &n.id);
        write_json(&self.sandbox_file(cid), &sb)
    }

    /// Undoes [`setup`](Self::setup): releases leases, drops published ports and the
    /// namespace pin (the kernel then removes the veth pairs). Idempotent; no netlink, so
    /// the monitor calls it cheaply.
    pub fn teardown(&self, cid: &str) -> Result<()> {
        let sb = self.sandbox(cid)?;
        let had_ports = sb.as_ref().is_some_and(|s| !s.ports.is_empty());
        let nets: Vec<String> = match &sb {
            Some(s) => s.networks.clone(),
            None => vec![],
        };
        for nid in nets {
            let _l = self.net_lock(&nid)?;
            remove_if_exists(&self.endpoint_file(&nid, cid))?;
        }
        netlink::unpin(&self.netns_pin(cid))?;
        remove_if_exists(&self.sandbox_file(cid))?;
        if let Some(sb) = sb.as_ref().filter(|_| had_ports) {
            self.publish(&[], &port_rules(sb))?;
        }
        Ok(())
    }

    /// Makes the published ports recorded in a container's sandbox live.
    pub fn publish_sandbox(&self, cid: &str) -> Result<()> {
        match self.sandbox(cid)? {
            Some(sb) if !sb.ports.is_empty() => self.publish(&port_rules(&sb), &[]),
            _ => Ok(()),
        }
    }

    /// One container's published ports in (`add`) or out (`remove`) of the firewall: map
    /// elements over netlink, no `nft` process. The sandbox files on disk are already
    /// updated, so if the element change fails (say our table was flushed by someone),
    /// rebuilding the whole table from them gives the same result.
    fn publish(&self, add: &[PortRule], remove: &[PortRule]) -> Result<()> {
        let _l = Lock::exclusive(&self.cfg.run_dir().join("firewall.lock"))?;
        match self.fw.update_ports(&self.cfg.nft_table, add, remove) {
            Ok(()) => Ok(()),
            Err(e) => {
                tracing::debug!("port map update failed ({e}); rebuilding the table");
                let rules = self.ruleset()?;
                self.fw.apply(&self.cfg.nft_table, &rules)
            }
        }
    }
}

/// The firewall's view of a sandbox's published ports.
fn port_rules(sb: &Sandbox) -> Vec<PortRule> {
    let Ok(target) = sb.port_target.parse::<Ipv4Addr>() else {
        return vec![];
    };
    sb.ports
        .iter()
        .map(|p| PortRule {
            proto: p.proto.clone(),
            host_ip: p
                .host_ip
                .parse()
                .ok()
                .filter(|ip: &Ipv4Addr| !ip.is_unspecified()),
            host_port: p.host_port,
            target,
            target_port: p.container_port,
        })
        .collect()
}

/// Kernel side of one endpoint: the veth pair into the namespace, address, route.
fn wire(
    host: &Nl,
    ns: &Nl,
    fd: &std::os::fd::OwnedFd,
    n: &Network,
    ep: &Endpoint,
    default_route: bool,
    tag: &str,
) -> Result<()> {
    let (bridge, gw, subnet) = bridge_params(n)?;
    let idx = host
        .link_index(&bridge)?
        .ok_or_else(|| Error::Internal(format!("bridge {bridge} of network {} is gone", n.name)))?;
    let ip: Ipv4Addr = ep
        .ip_address
        .parse()
        .map_err(|_| Error::Internal(format!("bad endpoint address {}", ep.ip_address)))?;
    let mac = ipam::parse_mac(&ep.mac_address)?;
    host.create_veth(&ep.host_veth, &ep.interface, mac, fd, idx, tag)?;
    ns.configure_interface(
        &ep.interface,
        ip,
        subnet.prefix(),
        default_route.then_some(gw),
    )
}

/// (bridge name, gateway, subnet) of a bridge network.
fn bridge_params(n: &Network) -> Result<(String, Ipv4Addr, Ipv4Net)> {
    let bridge = n
        .bridge_name()
        .ok_or_else(|| Error::Internal(format!("network {} has no bridge", n.name)))?
        .to_string();
    let c = n
        .ipam
        .config
        .first()
        .ok_or_else(|| Error::Internal(format!("network {} has no subnet", n.name)))?;
    let subnet: Ipv4Net = c.subnet.parse()?;
    let gw: Ipv4Addr = c
        .gateway
        .parse()
        .map_err(|_| Error::Internal(format!("network {} has a bad gateway", n.name)))?;
    Ok((bridge, gw, subnet))
}

fn validate_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(format!(
            "invalid network name {name:?}: only [a-zA-Z0-9][a-zA-Z0-9_.-] are allowed"
        )))
    }
}

fn random_id() -> String {
    let mut b = [0u8; 32];
    let _ = getrandom::fill(&mut b);
    hex::encode(b)
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    /// The port maps as the kernel would hold them: key (host ip, proto, host port) ->
    /// (target, target port). Element updates behave like nf_tables': re-adding the same
    /// element is fine, re-adding a key with other data or deleting a missing key fails
    /// and changes nothing; `apply` replaces everything.
    /// (host address, protocol, host port) -> (target, target port).
    type PortMap = BTreeMap<(Option<Ipv4Addr>, String, u16), (Ipv4Addr, u16)>;

    #[derive(Default)]
    struct FakeState {
        table: Mutex<Option<PortMap>>,
        updates: AtomicUsize,
        rebuilds: AtomicUsize,
        /// Set while a call runs: two at once means the lock did not serialise them.
        busy: AtomicBool,
        overlaps: AtomicUsize,
    }

    struct Fake(Arc<FakeState>);

    fn key(p: &PortRule) -> (Option<Ipv4Addr>, String, u16) {
        (p.host_ip, p.proto.clone(), p.host_port)
    }

    impl FakeState {
        fn enter(&self) {
            if self.busy.swap(true, Ordering::SeqCst) {
                self.overlaps.fetch_add(1, Ordering::SeqCst);
            }
            // Widen the window in which an unserialised caller would overlap.
            std::thread::sleep(std::time::Duration::from_micros(300));
        }
        fn leave(&self) {
            self.busy.store(false, Ordering::SeqCst);
        }
        fn elements(&self) -> Vec<(Option<Ipv4Addr>, String, u16, Ipv4Addr, u16)> {
            let t = self.table.lock().unwrap();
            t.iter()
                .flat_map(|m| m.iter())
                .map(|((ip, pr, hp), (t, tp))| (*ip, pr.clone(), *hp, *t, *tp))
                .collect()
        }
    }

    impl Firewall for Fake {
        fn apply(&self, _: &str, rules: &Ruleset) -> Result<()> {
            self.0.enter();
            let m = rules
                .ports
                .iter()
                .map(|p| (key(p), (p.target, p.target_port)))
                .collect();
            *self.0.table.lock().unwrap() = Some(m);
            self.0.rebuilds.fetch_add(1, Ordering::SeqCst);
            self.0.leave();
            Ok(())
        }
        fn remove(&self, _: &str) -> Result<()> {
            *self.0.table.lock().unwrap() = None;
            Ok(())
        }
        fn update_ports(&self, _: &str, add: &[PortRule], remove: &[PortRule]) -> Result<()> {
            self.0.enter();
            self.0.updates.fetch_add(1, Ordering::SeqCst);
            let mut guard = self.0.table.lock().unwrap();
            let r = (|| {
                let mut t = guard
                    .clone()
                    .ok_or(Error::Firewall("No such file".into()))?;
                for p in remove {
                    t.remove(&key(p))
                        .ok_or(Error::Firewall("No such file or directory".into()))?;
                }
                for p in add {
                    let data = (p.target, p.target_port);
                    if t.insert(key(p), data).is_some_and(|old| old != data) {
                        return Err(Error::Firewall("Device or resource busy".into()));
                    }
                }
                *guard = Some(t);
                Ok(())
            })();
            drop(guard);
            self.0.leave();
            r
        }
    }

    fn service(d: &Path) -> (Networks, Arc<FakeState>) {
        let cfg = NetConfig::load(&d.join("data"), &d.join("run"), &NetSettings::default())
            .expect("config");
        let state = Arc::new(FakeState::default());
        (
            Networks::with_firewall(cfg, Box::new(Fake(state.clone()))),
            state,
        )
    }

    /// A sandbox with published ports, as `setup` records it before the monitor publishes.
    fn sandbox(n: &Networks, cid: &str, target: &str, ports: &[(&str, &str, u16, u16)]) {
        let sb = Sandbox {
            container_id: cid.into(),
            netns_path: n.netns_pin(cid).display().to_string(),
            networks: vec![],
            ports: ports
                .iter()
                .map(|(proto, ip, host, ctr)| PortMapping {
                    proto: proto.to_string(),
                    container_port: *ctr,
                    host_ip: ip.to_string(),
                    host_port: *host,
                })
                .collect(),
            port_target: target.into(),
        };
        write_json(&n.sandbox_file(cid), &sb).unwrap();
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn ports_come_and_go_as_elements_without_a_rebuild() {
        let d = tempfile::tempdir().unwrap();
        let (n, fw) = service(d.path());
        n.sync_firewall().unwrap();
        assert_eq!(fw.rebuilds.load(Ordering::SeqCst), 1);
        sandbox(&n, "a", "172.18.0.2", &[("tcp", "127.0.0.1", 8080, 80)]);
        sandbox(
            &n,
            "b",
            "172.18.0.3",
            &[("udp", "", 5353, 53), ("tcp", "0.0.0.0", 81, 81)],
        );
        n.publish_sandbox("a").unwrap();
        n.publish_sandbox("b").unwrap();
        let mut want = vec![
            (None, "tcp".to_string(), 81, ip("172.18.0.3"), 81),
            (None, "udp".to_string(), 5353, ip("172.18.0.3"), 53),
            (
                Some(ip("127.0.0.1")),
                "tcp".to_string(),
                8080,
                ip("172.18.0.2"),
                80,
            ),
        ];
        assert_eq!(fw.elements(), want);
        n.teardown("a").unwrap();
        want.pop();
        assert_eq!(fw.elements(), want);
        n.teardown("b").unwrap();
        // A second teardown has nothing left to withdraw.
        n.teardown("b").unwrap();
        assert!(fw.elements().is_empty());
        assert_eq!(fw.updates.load(Ordering::SeqCst), 4);
        // The element path never ran the whole-table rebuild.
        assert_eq!(fw.rebuilds.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn element_errors_fall_back_to_a_rebuild_from_disk() {
        let d = tempfile::tempdir().unwrap();
        let (n, fw) = service(d.path());
        // No table at all (flushed by someone, or never built): the update fails and the
        // rebuild brings every recorded container's ports, not only this one's.
        sandbox(&n, "a", "172.18.0.2", &[("tcp", "", 8080, 80)]);
        sandbox(&n, "b", "172.18.0.3", &[("tcp", "", 8081, 80)]);
        n.publish_sandbox("a").unwrap();
        assert_eq!(fw.rebuilds.load(Ordering::SeqCst), 1);
        assert_eq!(fw.elements().len(), 2);
        // Someone deleted a's elements behind our back: a's teardown cannot delete them,
        // so the table is rebuilt from what is left on disk (b).
        fw.table
            .lock()
            .unwrap()
            .as_mut()
            .unwrap()
            .retain(|k, _| k.2 != 8080);
        n.teardown("a").unwrap();
        assert_eq!(fw.rebuilds.load(Ordering::SeqCst), 2);
        assert_eq!(
            fw.elements(),
            vec![(None, "tcp".to_string(), 8081, ip("172.18.0.3"), 80)]
        );
    }

    #[test]
    fn a_network_level_rebuild_repairs_stale_and_missing_elements() {
        let d = tempfile::tempdir().unwrap();
        let (n, fw) = service(d.path());
        n.sync_firewall().unwrap();
        // A crash: the monitor of "gone" died after publishing (its sandbox file was
        // removed, its elements stayed), and "new" recorded ports that never went live.
        Fake(fw.clone())
            .update_ports(
                "t",
                &[PortRule {
                    proto: "tcp".into(),
                    host_ip: None,
                    host_port: 9000,
                    target: ip("172.18.0.9"),
                    target_port: 80,
                }],
                &[],
            )
            .unwrap();
        sandbox(&n, "new", "172.18.0.4", &[("udp", "127.0.0.1", 9001, 53)]);
        n.sync_firewall().unwrap();
        assert_eq!(
            fw.elements(),
            vec![(
                Some(ip("127.0.0.1")),
                "udp".to_string(),
                9001,
                ip("172.18.0.4"),
                53
            )]
        );
    }

    /// Starts and stops publishing ports while network-level rebuilds run: every firewall
    /// call is serialised by firewall.lock, and the table ends exactly as the disk says.
    #[test]
    fn concurrent_publishes_and_rebuilds_end_consistent() {
        let d = tempfile::tempdir().unwrap();
        let (n, fw) = service(d.path());
        let n = Arc::new(n);
        n.sync_firewall().unwrap();
        let workers: Vec<_> = (0..6u16)
            .map(|i| {
                let n = n.clone();
                std::thread::spawn(move || {
                    for round in 0..5u16 {
                        let cid = format!("c{i}");
                        let port = 20000 + i * 10 + round;
                        sandbox(
                            &n,
                            &cid,
                            &format!("172.18.0.{}", i + 2),
                            &[("tcp", "", port, 80)],
                        );
                        n.publish_sandbox(&cid).unwrap();
                        if round < 4 {
                            n.teardown(&cid).unwrap();
                        }
                    }
                })
            })
            .collect();
        let rebuilder = {
            let n = n.clone();
            std::thread::spawn(move || {
                for _ in 0..10 {
                    n.sync_firewall().unwrap();
                }
            })
        };
        for w in workers {
            w.join().unwrap();
        }
        rebuilder.join().unwrap();
        assert_eq!(
            fw.overlaps.load(Ordering::SeqCst),
            0,
            "firewall calls overlapped"
        );
        // The last round of each worker is still running: exactly those ports are live.
        let live: Vec<u16> = fw.elements().iter().map(|e| e.2).collect();
        let want: Vec<u16> = (0..6u16).map(|i| 20000 + i * 10 + 4).collect();
        assert_eq!(live, want);
        let from_disk: Vec<u16> = n
            .ruleset()
            .unwrap()
            .ports
            .iter()
            .map(|p| p.host_port)
            .collect();
        let mut from_disk = from_disk;
        from_disk.sort();
        assert_eq!(from_disk, want);
    }
}
