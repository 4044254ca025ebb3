//! Kernel links, addresses and routes through rtnetlink 0.24 (never `ip`).
//!
//! rtnetlink is async; each public call here runs on a private current-thread tokio runtime,
//! so callers stay synchronous and no thread pool is ever created (the CLI and the monitor
//! must stay single-threaded for their fork/clone work). Namespace-changing work runs on a
//! short-lived helper thread so the caller's own thread never leaves the host namespace.

use crate::error::{Error, Result};
use crate::ipnet::Ipv4Net;
use futures_util::TryStreamExt;
use rtnetlink::packet_route::link::{InfoData, InfoVeth, LinkAttribute};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteType};
use rtnetlink::{
    Handle, LinkBridge, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder,
};
use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

/// A netlink connection bound to the namespace of the thread that opened it, with the
/// runtime that drives it.
pub struct Nl {
    rt: tokio::runtime::Runtime,
    handle: Handle,
}

impl Nl {
    /// Opens a connection in the calling thread's current network namespace.
    pub fn open() -> Result<Self> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .map_err(|e| Error::io("tokio runtime", e))?;
        let (conn, handle, _) = {
            let _g = rt.enter();
            rtnetlink::new_connection().map_err(|e| Error::io("netlink socket", e))?
        };
        rt.spawn(conn);
        Ok(Nl { rt, handle })
    }

    pub fn link_index(&self, name: &str) -> Result<Option<u32>> {
        let h = self.handle.clone();
        let name = name.to_string();
        self.rt.block_on(async move {
            match h
                .link()
                .get()
                .match_name(name.clone())
                .execute()
                .try_next()
                .await
            {
                Ok(Some(m)) => Ok(Some(m.header.index)),
                Ok(None) => Ok(None),
                Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => Ok(None),
                Err(e) => Err(Error::netlink(format!("get link {name}"), e)),
            }
        })
    }

    /// Creates (if missing) and brings up a bridge carrying `gateway/prefix`. Returns its
    /// index and whether it was created now.
    pub fn ensure_bridge(
        &self,
        name: &str,
        gateway: Ipv4Addr,
        subnet: &Ipv4Net,
        alias: &str,
    ) -> Result<(u32, bool)> {
        if let Some(i) = self.link_index(name)? {
            return Ok((i, false));
        }
        let h = self.handle.clone();
        let msg = LinkBridge::new(name).build();
        let created = self
            .rt
            .block_on(async move { h.link().add(msg).execute().await });
        match created {
            Ok(()) => {}
            // A concurrent CLI made it first.
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::EEXIST => {}
            Err(e) => return Err(Error::netlink(format!("create bridge {name}"), e)),
        }
        self.set_alias(name, alias)?;
        let idx = self
            .link_index(name)?
            .ok_or_else(|| Error::Internal(format!("bridge {name} vanished")))?;
        let h = self.handle.clone();
        let prefix = subnet.prefix();
        let r = self.rt.block_on(async move {
            h.address()
                .add(idx, IpAddr::V4(gateway), prefix)
                .replace()
                .execute()
                .await
        });
        if let Err(e) = r {
            return Err(Error::netlink(format!("address {gateway} on {name}"), e));
        }
        Ok((idx, true))
    }

    pub fn delete_link(&self, name: &str) -> Result<()> {
        let Some(idx) = self.link_index(name)? else {
            return Ok(());
        };
        let h = self.handle.clone();
        self.rt.block_on(async move {
            match h.link().del(idx).execute().await {
                Ok(()) => Ok(()),
                Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => Ok(()),
                Err(e) => Err(Error::netlink("delete link", e)),
            }
        })
    }

    /// IPv4 destinations routed on this host (main and other tables, not `local`), default
    /// routes excluded: a new subnet must not overlap any of them.
    pub fn host_routes(&self) -> Result<Vec<Ipv4Net>> {
        let h = self.handle.clone();
        let msgs: Vec<_> = self.rt.block_on(async move {
            h.route()
                .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
                .execute()
                .try_collect()
                .await
                .map_err(|e| Error::netlink("list routes", e))
        })?;
        let mut out = Vec::new();
        for m in msgs {
            if m.header.table == 255 || m.header.destination_prefix_length == 0 {
                continue;
            }
            if !matches!(m.header.kind, RouteType::Unicast) {
                continue;
            }
            for a in &m.attributes {
                if let RouteAttribute::Destination(RouteAddress::Inet(ip)) = a
                    && let Ok(n) = Ipv4Net::new(*ip, m.header.destination_prefix_length)
                {
                    out.push(n);
                }
            }
        }
        Ok(out)
    }

    /// A veth pair: `host` enslaved to the bridge and up, its peer created directly inside
    /// the namespace `netns` as `peer` with `mac`.
    pub fn create_veth(
        &self,
        host: &str,
        peer: &str,
        mac: [u8; 6],
        netns: &OwnedFd,
        bridge: u32,
        alias: &str,
    ) -> Result<()> {
        let peer_msg = LinkMessageBuilder::<LinkUnspec>::new()
            .name(peer.to_string())
            .address(mac.to_vec())
            .setns_by_fd(netns.as_raw_fd())
            .build();
        let msg = LinkVeth::new(host, peer)
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer_msg)))
            .controller(bridge)
            .up()
            .build();
        let h = self.handle.clone();
        self.rt
            .block_on(async move { h.link().add(msg).execute().await })
            .map_err(|e| Error::netlink(format!("create veth {host}"), e))?;
        self.set_alias(host, alias)
    }

    /// IFLA_IFALIAS (the kernel ignores it in RTM_NEWLINK, so it is a separate set).
    pub fn set_alias(&self, name: &str, alias: &str) -> Result<()> {
        let h = self.handle.clone();
        let msg = LinkUnspec::new_with_name(name).alias(alias).build();
        self.rt
            .block_on(async move { h.link().set(msg).execute().await })
            .map_err(|e| Error::netlink(format!("alias of {name}"), e))
    }

    /// Inside the container: bring `lo` up.
    pub fn loopback_up(&self) -> Result<()> {
        let idx = self
            .link_index("lo")?
            .ok_or_else(|| Error::Internal("no lo".into()))?;
        let h = self.handle.clone();
        let msg = LinkUnspec::new_with_index(idx).up().build();
        self.rt
            .block_on(async move { h.link().set(msg).execute().await })
            .map_err(|e| Error::netlink("lo up", e))
    }

    /// Inside the container: address `ifname` and bring it up; with a gateway, add the
    /// default route through it.
    pub fn configure_interface(
        &self,
        ifname: &str,
        ip: Ipv4Addr,
        prefix: u8,
        gateway: Option<Ipv4Addr>,
    ) -> Result<()> {
        let idx = self
            .link_index(ifname)?
            .ok_or_else(|| Error::Internal(format!("no {ifname} in the container")))?;
        let h = self.handle.clone();
        self.rt.block_on(async move {
            h.address()
                .add(idx, IpAddr::V4(ip), prefix)
                .execute()
                .await
                .map_err(|e| Error::netlink(format!("address {ip}"), e))?;
            h.link()
                .set(LinkUnspec::new_with_index(idx).up().build())
                .execute()
                .await
                .map_err(|e| Error::netlink(format!("{ifname} up"), e))?;
            if let Some(gw) = gateway {
                let r = RouteMessageBuilder::<Ipv4Addr>::new()
                    .gateway(gw)
                    .output_interface(idx)
                    .build();
                match h.route().add(r).execute().await {
                    Ok(()) => {}
                    // A second network's default route: the first one stays.
                    Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::EEXIST => {}
                    Err(e) => return Err(Error::netlink("default route", e)),
                }
            }
            Ok(())
        })
    }

    /// Names of links whose IFLA_IFALIAS equals `alias` (our bridges for a data root).
    pub fn links_with_alias(&self, alias: &str) -> Result<Vec<String>> {
        let h = self.handle.clone();
        let msgs: Vec<_> = self.rt.block_on(async move {
            h.link()
                .get()
                .execute()
                .try_collect()
                .await
                .map_err(|e| Error::netlink("list links", e))
        })?;
        let mut out = Vec::new();
        for m in msgs {
            let mut name = None;
            let mut matches = false;
            for a in &m.attributes {
                match a {
                    LinkAttribute::IfName(n) => name = Some(n.clone()),
                    LinkAttribute::IfAlias(a) if a == alias => matches = true,
                    _ => {}
                }
            }
            if let (true, Some(n)) = (matches, name) {
                out.push(n);
            }
        }
        Ok(out)
    }
}

/// Sets a per-interface IPv4 sysctl on one of our own interfaces.
pub fn set_if_sysctl(ifname: &str, key: &str, value: &str) -> Result<()> {
    let p = PathBuf::from(format!("/proc/sys/net/ipv4/conf/{ifname}/{key}"));
    std::fs::write(&p, value).map_err(|e| Error::path(&p, e))
}

pub fn get_if_sysctl(ifname: &str, key: &str) -> Option<String> {
    std::fs::read_to_string(format!("/proc/sys/net/ipv4/conf/{ifname}/{key}"))
        .ok()
        .map(|v| v.trim().to_string())
}

/// Which namespace a [`in_netns`] job runs in.
pub enum NsTarget<'a> {
    /// A fresh namespace, pinned by a bind mount at this path.
    New(&'a Path),
    /// An existing one (a pin or `/proc/PID/ns/net`).
    Existing(&'a Path),
}

/// Runs `job(host, ns, ns_fd)` on a helper thread that has two netlink connections: one
/// in the host namespace, one in the target. The caller's thread never changes namespace.
/// With [`NsTarget::New`], a failure unpins and so destroys the new namespace; the new
/// namespace comes from the pool (see [`enable_netns_pool`]) when it has one ready.
pub fn in_netns<T: Send + 'static>(
    target: NsTarget<'_>,
    job: impl FnOnce(&Nl, &Nl, &OwnedFd) -> Result<T> + Send + 'static,
) -> Result<T> {
    let path = match target {
        NsTarget::New(pin) => return in_new_netns(pin.to_path_buf(), job),
        NsTarget::Existing(p) => p.to_path_buf(),
    };
    let t = std::thread::Builder::new()
        .name("netns".into())
        .spawn(move || -> Result<T> {
            let host = Nl::open()?;
            let f = std::fs::File::open(&path).map_err(|e| Error::path(&path, e))?;
            nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| Error::io("join network namespace", e.into()))?;
            let (ns, ns_fd) = open_own_netns()?;
            job(&host, &ns, &ns_fd)
        })
        .map_err(|e| Error::io("spawn netns thread", e))?;
    t.join()
        .map_err(|_| Error::Internal("netns helper thread panicked".into()))?
}

/// A job for a thread that sits in a fresh, not yet pinned namespace (or failed to make
/// one): the host connection, the namespace's connection and its fd.
type FreshJob = Box<dyn FnOnce(Result<(&Nl, &Nl, &OwnedFd)>) + Send>;

/// Fresh namespaces made ahead of time, for the daemon. Each is held by a parked thread
/// that has already unshared it and opened both netlink connections, and waits for one job.
/// Creating a namespace (`unshare`) and the two connections took 1 to 2 ms of every
/// container start. Nothing is pinned before a job claims it, so a daemon that dies leaves
/// nothing behind: the kernel frees an unpinned namespace with the thread in it.
struct NetnsPool {
    size: usize,
    ready: Vec<std::sync::mpsc::SyncSender<FreshJob>>,
}

static POOL: std::sync::Mutex<NetnsPool> = std::sync::Mutex::new(NetnsPool {
    size: 0,
    ready: Vec::new(),
});

/// Keeps `size` fresh namespaces ready for [`NsTarget::New`] jobs in this process. Only
/// for a long-running process (the daemon); the CLI makes each namespace when it needs it.
pub fn enable_netns_pool(size: usize) {
    let missing = match POOL.lock() {
        Ok(mut p) => {
            p.size = size;
            size.saturating_sub(p.ready.len())
        }
        Err(_) => 0,
    };
    for _ in 0..missing {
        park_fresh_netns();
    }
}

/// Starts a thread that makes a fresh namespace, joins the pool once it is ready, and then
/// runs the one job it is given.
fn park_fresh_netns() {
    let spawned = std::thread::Builder::new().name("netns".into()).spawn(|| {
        let Ok((host, ns, ns_fd)) = enter_fresh_netns() else {
            return;
        };
        // Shows which threads hold a ready namespace.
        let _ = nix::sys::prctl::set_name(c"netns-pool");
        let (tx, rx) = std::sync::mpsc::sync_channel::<FreshJob>(1);
        match POOL.lock() {
            Ok(mut p) if p.ready.len() < p.size => p.ready.push(tx),
            _ => return,
        }
        if let Ok(job) = rx.recv() {
            job(Ok((&host, &ns, &ns_fd)));
        }
    });
    if let Err(e) = spawned {
        tracing::debug!("netns pool thread: {e}");
    }
}

/// In the calling thread: a host connection, then a new namespace and a connection in it.
fn enter_fresh_netns() -> Result<(Nl, Nl, OwnedFd)> {
    let host = Nl::open()?;
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
        .map_err(|e| Error::io("unshare network namespace", e.into()))?;
    let (ns, ns_fd) = open_own_netns()?;
    Ok((host, ns, ns_fd))
}

fn open_own_netns() -> Result<(Nl, OwnedFd)> {
    let ns_fd: OwnedFd = std::fs::File::open("/proc/thread-self/ns/net")
        .map_err(|e| Error::io("open own netns", e))?
        .into();
    Ok((Nl::open()?, ns_fd))
}

fn in_new_netns<T: Send + 'static>(
    pin: PathBuf,
    job: impl FnOnce(&Nl, &Nl, &OwnedFd) -> Result<T> + Send + 'static,
) -> Result<T> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<Result<T>>(1);
    // Pins the namespace, runs the job, and unpins again if the job fails.
    let fresh: FreshJob = Box::new(move |env| {
        let r = env.and_then(|(host, ns, ns_fd)| {
            pin_current(&pin)?;
            let r = job(host, ns, ns_fd);
            if r.is_err() {
                let _ = unpin(&pin);
            }
            r
        });
        let _ = tx.send(r);
    });
    let parked = POOL.lock().ok().and_then(|mut p| p.ready.pop());
    let pooled = parked.is_some();
    let fresh = match parked {
        Some(slot) => match slot.send(fresh) {
            Ok(()) => None,
            // Its thread is gone; run the job on a thread of its own.
            Err(std::sync::mpsc::SendError(f)) => Some(f),
        },
        None => Some(fresh),
    };
    if let Some(fresh) = fresh {
        std::thread::Builder::new()
            .name("netns".into())
            .spawn(move || match enter_fresh_netns() {
                Ok((host, ns, ns_fd)) => fresh(Ok((&host, &ns, &ns_fd))),
                Err(e) => fresh(Err(e)),
            })
            .map_err(|e| Error::io("spawn netns thread", e))?;
    }
    let result = rx
        .recv()
        .map_err(|_| Error::Internal("network namespace helper thread died".into()))?;
    if pooled {
        park_fresh_netns();
    }
    result
}

/// Bind-mounts the calling thread's network namespace onto `pin` (created empty).
fn pin_current(pin: &Path) -> Result<()> {
    if let Some(d) = pin.parent() {
        std::fs::create_dir_all(d).map_err(|e| Error::path(d, e))?;
    }
    std::fs::File::create(pin).map_err(|e| Error::path(pin, e))?;
    nix::mount::mount(
        Some("/proc/thread-self/ns/net"),
        pin,
        None::<&str>,
        nix::mount::MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|e| {
        let _ = std::fs::remove_file(pin);
        Error::io(
            format!("pin network namespace at {}", pin.display()),
            e.into(),
        )
    })
}

/// Drops a namespace pin; the kernel destroys the namespace (and the veth ends in it, which
/// takes their host peers with them) once no process uses it.
pub fn unpin(pin: &Path) -> Result<()> {
    match nix::mount::umount2(pin, nix::mount::MntFlags::MNT_DETACH) {
        Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => {}
        Err(e) => return Err(Error::io(format!("unmount {}", pin.display()), e.into())),
    }
    crate::fsutil::remove_if_exists(pin)
}
