//! The embedded DNS server of a user-defined network, like podman's aardvark-dns: one tiny
//! single-threaded process per network (`pelagos __dns`), listening on the network's
//! gateway address, port 53 (UDP and TCP), in the host namespace. It answers A queries for
//! container names, aliases and short IDs from the network's live endpoint records (read
//! per query: a handful of small files, so it can never serve stale data and needs no
//! reload protocol) and forwards every other query upstream (the asking container's
//! `--dns`, daemon.json `dns`, else the host's resolvers). The first container joining the
//! network starts it; it exits a moment after the network has no endpoints left.
//!
//! Uniqueness: the server holds an flock on its pid file for its whole life (see
//! `life_file`). Starting and the decision to exit both happen under the network's lock, so
//! a container joining while the server is leaving always ends up with a running server.

use crate::Networks;
use crate::error::{Error, Result};
use crate::fsutil::Lock;
use crate::model::{Endpoint, Network};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, UdpSocket};
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long a server with no endpoint left stays before it exits.
const LINGER: Duration = Duration::from_secs(2);

/// The argument that turns the pelagos binary into a network's DNS server.
pub const DNS_ARG: &str = "__dns";
const TTL: u32 = 600;

/// The binary run as DNS server: `PELAGOS_HELPER_EXE` (an API daemon that is not the
/// pelagos binary), else ourselves.
fn helper_exe() -> PathBuf {
    std::env::var_os("PELAGOS_HELPER_EXE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/proc/self/exe"))
}

/// Every endpoint record in a network's endpoint directory.
pub fn read_endpoints(dir: &Path) -> Result<Vec<Endpoint>> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(Error::path(dir, e)),
    };
    let mut v = Vec::new();
    for e in rd.flatten() {
        let p = e.path();
        let name = e.file_name();
        if name.to_string_lossy().starts_with('.') || p.extension().is_none_or(|x| x != "json") {
            continue;
        }
        // A record being replaced or removed right now is simply skipped.
        if let Ok(Some(ep)) = crate::fsutil::read_json::<Endpoint>(&p) {
            v.push(ep);
        }
    }
    v.sort_by(|a, b| a.container_id.cmp(&b.container_id));
    Ok(v)
}

fn gateway(n: &Network) -> Result<Ipv4Addr> {
    n.ipam
        .config
        .first()
        .and_then(|c| c.gateway.parse().ok())
        .ok_or_else(|| Error::Internal(format!("network {} has no gateway", n.name)))
}

/// The server's life lock: it holds an flock on this file (with its pid inside) for as long
/// as it serves, so "is it running" and "wait until it is gone" need no polling and a stale
/// pid can never be mistaken for a live server.
fn life_file(nets: &Networks, net_id: &str) -> std::path::PathBuf {
    nets.cfg.run_dir().join("dns").join(format!("{net_id}.pid"))
}

/// Starts the network's DNS server unless one is serving already.
pub fn ensure_running(nets: &Networks, n: &Network) -> Result<()> {
    let _l = nets.net_lock(&n.id)?;
    let Some(probe) = Lock::try_exclusive(&life_file(nets, &n.id))? else {
        return Ok(());
    };
    drop(probe);
    let status = std::process::Command::new(helper_exe())
        .arg(DNS_ARG)
        .arg(&nets.cfg.data_root)
        .arg(&nets.cfg.run_root)
        .arg(&n.id)
        .args(nets.cfg.dns.iter().map(|a| a.to_string()))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .output()
        .map_err(|e| Error::io("start DNS server", e))?;
    if !status.status.success() {
        return Err(Error::Internal(format!(
            "the DNS server of network {} failed to start: {}",
            n.name,
            String::from_utf8_lossy(&status.stderr).trim()
        )));
    }
    Ok(())
}

/// Stops the network's DNS server, if any, and returns once it is gone (its address is
/// free again for a network made next with the same subnet).
pub fn stop(nets: &Networks, net_id: &str) {
    let path = life_file(nets, net_id);
    let Ok(pid) = std::fs::read_to_string(&path) else {
        return;
    };
    if let Ok(pid) = pid.trim().parse::<i32>()
        && pid > 1
    {
        // Opened before the lock check, so the pid cannot be recycled between the check
        // and the kill.
        let exited = pidfd(pid);
        if let Ok(None) = Lock::try_exclusive(&path) {
            // SAFETY: plain kill(2); the flock proves the pid is still our server.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            // Its lock goes with its first closed fds, but its sockets may be released
            // later in a slow exit (hundreds of ms while the kernel tears namespaces
            // down): only the exit itself says the address is free.
            match exited {
                Some(fd) => wait_readable(&fd),
                None => {
                    let _ = Lock::exclusive(&path);
                }
            }
        }
    }
    let _ = crate::fsutil::remove_if_exists(&path);
}

/// A pidfd on `pid` (readable once the process has exited and released its files).
fn pidfd(pid: i32) -> Option<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: pidfd_open with a pid and no flags.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    // SAFETY: a new descriptor we own.
    (fd >= 0).then(|| unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) })
}

fn wait_readable(fd: &std::os::fd::OwnedFd) {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // Bounded: a server stuck in its exit must not hang `network rm` forever.
    for _ in 0..100 {
        // SAFETY: one valid pollfd for the duration of the call.
        let rc = unsafe { libc::poll(&mut p, 1, 100) };
        if rc != 0
            && !(rc < 0
                && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted)
        {
            return;
        }
    }
}

/// Entry point of `pelagos __dns DATA RUN NETWORK-ID [UPSTREAM...]`. Binds, detaches (the
/// starter waits for our first process, which exits once the socket is bound), serves.
/// Never returns. Upstreams default to the host's resolv.conf.
pub fn main(args: &[String]) -> ! {
    let code = match args {
        [data, run, id, upstream @ ..] => {
            let upstream: Option<Vec<Ipv4Addr>> = upstream.iter().map(|a| a.parse().ok()).collect();
            match upstream {
                Some(u) => match start(Path::new(data), Path::new(run), id, u) {
                    Ok(()) => 0,
                    Err(e) => {
                        eprintln!("pelagos dns: {e}");
                        1
                    }
                },
                None => 2,
            }
        }
        _ => 2,
    };
    std::process::exit(code)
}

fn start(data: &Path, run: &Path, id: &str, upstream: Vec<Ipv4Addr>) -> Result<()> {
    // Only endpoint records are read here, which daemon.json does not affect.
    let nets = Networks::open(data, run, &crate::NetSettings::default())?;
    let n = nets.find(id)?;
    let life = Lock::try_exclusive(&life_file(&nets, &n.id))?
        .ok_or_else(|| Error::Internal("a DNS server for this network is running".into()))?;
    let addr = SocketAddrV4::new(gateway(&n)?, 53);
    let sock = UdpSocket::bind(addr).map_err(|e| Error::io("bind DNS socket", e))?;
    let tcp = TcpListener::bind(addr).map_err(|e| Error::io("bind DNS TCP socket", e))?;
    // SAFETY: single-threaded here (no runtime was started: `find` of a stored network does
    // no netlink work), so fork is safe; the parent only exits. The child inherits the
    // flocked file description, so the life lock passes to it.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Parent { .. }) => unsafe { libc::_exit(0) },
        Ok(nix::unistd::ForkResult::Child) => {}
        Err(e) => return Err(Error::io("fork", e.into())),
    }
    let _ = nix::unistd::setsid();
    // The starter reads our stderr until EOF for start-up errors: let go of it now.
    if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
        // SAFETY: dup2 onto our own standard descriptors.
        unsafe {
            libc::dup2(null.as_raw_fd(), 1);
            libc::dup2(null.as_raw_fd(), 2);
        }
    }
    {
        use std::io::{Seek, Write};
        let mut f = life.file();
        let _ = f.set_len(0);
        let _ = f.seek(std::io::SeekFrom::Start(0));
        let _ = write!(f, "{}", std::process::id());
    }
    let upstream = if upstream.is_empty() {
        upstreams()
    } else {
        upstream
    };
    serve(&nets, &n, sock, tcp, life, &upstream);
    Ok(())
}

fn upstreams() -> Vec<Ipv4Addr> {
    std::fs::read_to_string("/etc/resolv.conf")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            (f.next() == Some("nameserver")).then(|| f.next()?.parse().ok())?
        })
        .collect()
}

fn serve(
    nets: &Networks,
    n: &Network,
    sock: UdpSocket,
    tcp: TcpListener,
    life: Lock,
    upstream: &[Ipv4Addr],
) {
    use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify};
    let dir = nets.endpoints_dir(&n.id);
    let _ = std::fs::create_dir_all(&dir);
    // Woken when an endpoint record goes away (container stopped, network removed), to
    // exit once nobody is left; no timer, no polling.
    let ino = Inotify::init(InitFlags::IN_CLOEXEC | InitFlags::IN_NONBLOCK).ok();
    if let Some(i) = &ino {
        let _ = i.add_watch(
            &dir,
            AddWatchFlags::IN_DELETE | AddWatchFlags::IN_MOVED_FROM | AddWatchFlags::IN_DELETE_SELF,
        );
    }
    let mut buf = [0u8; 1500];
    let mut idle_since: Option<Instant> = None;
    loop {
        let mut pfds = [
            libc::pollfd {
                fd: sock.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: tcp.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: ino.as_ref().map_or(-1, |i| i.as_fd().as_raw_fd()),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        // Idle: wait at most until the linger deadline; otherwise only for events.
        let timeout = idle_since.map_or(-1, |t| {
            LINGER
                .saturating_sub(t.elapsed())
                .as_millis()
                .clamp(1, i32::MAX as u128) as i32
        });
        // SAFETY: three valid pollfds (a negative fd is ignored by poll).
        let rc = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, timeout) };
        if rc == 0 && idle_since.is_some_and(|t| t.elapsed() >= LINGER) {
            // Decide under the lock a joining container takes to check for us.
            if let Ok(_l) = nets.net_lock(&n.id)
                && read_endpoints(&dir).is_ok_and(|v| v.is_empty())
            {
                drop(sock);
                drop(tcp);
                let _ = crate::fsutil::remove_if_exists(&life_file(nets, &n.id));
                drop(life);
                std::process::exit(0);
            }
            idle_since = None;
            continue;
        }
        if rc <= 0 {
            continue;
        }
        if pfds[0].revents & libc::POLLIN != 0
            && let Ok((len, from)) = sock.recv_from(&mut buf)
            && let Some(r) = respond(&dir, &buf[..len], from.ip(), upstream)
        {
            let _ = sock.send_to(&r, from);
        }
        if pfds[1].revents & libc::POLLIN != 0
            && let Ok((conn, from)) = tcp.accept()
        {
            serve_tcp(&dir, conn, from.ip(), upstream);
        }
        if pfds[2].revents & libc::POLLIN != 0 {
            if let Some(i) = &ino {
                let _ = i.read_events();
            }
            // The last endpoint gone: linger a moment, so a container that replaces it
            // right away (a `run --rm` loop, a restart) does not pay for a new server.
            idle_since = read_endpoints(&dir)
                .is_ok_and(|v| v.is_empty())
                .then(Instant::now);
        }
    }
}

/// The answer to one query: ours from the endpoint records, others from upstream: the
/// asking container's own `--dns` servers when it has some, else the network's.
fn respond(
    dir: &Path,
    query: &[u8],
    client: std::net::IpAddr,
    upstream: &[Ipv4Addr],
) -> Option<Vec<u8>> {
    let eps = read_endpoints(dir).unwrap_or_default();
    match answer(query, |name| lookup(&eps, name)) {
        Reply::Local(r) => Some(r),
        Reply::Forward => {
            let own: Vec<Ipv4Addr> = eps
                .iter()
                .find(|e| e.ip_address.parse::<std::net::IpAddr>().ok() == Some(client))
                .map(|e| {
                    e.upstream_dns
                        .iter()
                        .filter_map(|a| a.parse().ok())
                        .collect()
                })
                .unwrap_or_default();
            forward(query, if own.is_empty() { upstream } else { &own })
        }
        Reply::Drop => None,
    }
}

/// DNS over TCP (RFC 1035 4.2.2: two-byte length prefix), for clients that retry over TCP
/// or use it by choice. One connection at a time, with short timeouts so a stalled client
/// cannot hold the server.
fn serve_tcp(
    dir: &Path,
    mut conn: std::net::TcpStream,
    client: std::net::IpAddr,
    upstream: &[Ipv4Addr],
) {
    use std::io::{Read, Write};
    let _ = conn.set_read_timeout(Some(Duration::from_secs(2)));
    let _ = conn.set_write_timeout(Some(Duration::from_secs(2)));
    // Clients may pipeline several queries on one connection.
    for _ in 0..16 {
        let mut len = [0u8; 2];
        if conn.read_exact(&mut len).is_err() {
            return;
        }
        let mut q = vec![0u8; u16::from_be_bytes(len) as usize];
        if conn.read_exact(&mut q).is_err() {
            return;
        }
        let Some(r) = respond(dir, &q, client, upstream) else {
            return;
        };
        let Ok(rlen) = u16::try_from(r.len()) else {
            return;
        };
        if conn.write_all(&rlen.to_be_bytes()).is_err() || conn.write_all(&r).is_err() {
            return;
        }
    }
}

fn forward(query: &[u8], upstream: &[Ipv4Addr]) -> Option<Vec<u8>> {
    for ns in upstream {
        let Ok(s) = UdpSocket::bind("0.0.0.0:0") else {
            continue;
        };
        // Connected, so an ICMP "port unreachable" ends the wait at once (ECONNREFUSED)
        // and only the upstream's own answers are accepted.
        if s.connect(SocketAddrV4::new(*ns, 53)).is_err() {
            continue;
        }
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        if s.send(query).is_err() {
            continue;
        }
        let mut buf = vec![0u8; 4096];
        if let Ok(n) = s.recv(&mut buf) {
            buf.truncate(n);
            return Some(buf);
        }
    }
    servfail(query)
}

/// Addresses for `name` on this network: container name, alias or short/full ID.
pub fn lookup(eps: &[Endpoint], name: &str) -> Option<Vec<Ipv4Addr>> {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    if name.is_empty() {
        return None;
    }
    let ips: Vec<Ipv4Addr> = eps
        .iter()
        .filter(|e| {
            e.container_name.eq_ignore_ascii_case(&name)
                || e.aliases.iter().any(|a| a.eq_ignore_ascii_case(&name))
                || (name.len() >= 12 && e.container_id.starts_with(&name))
        })
        .filter_map(|e| e.ip_address.parse().ok())
        .collect();
    (!ips.is_empty()).then_some(ips)
}

/// What to do with one query datagram.
#[derive(Debug, PartialEq)]
pub enum Reply {
    Local(Vec<u8>),
    Forward,
    Drop,
}

/// Parses one query: names we know are answered here (A records; an empty NOERROR for
/// other types so clients do not fall through to upstream for our names), others forwarded.
pub fn answer(q: &[u8], lookup: impl Fn(&str) -> Option<Vec<Ipv4Addr>>) -> Reply {
    if q.len() < 12 || q[2] & 0x80 != 0 {
        return Reply::Drop;
    }
    let opcode = (q[2] >> 3) & 0x0f;
    let qdcount = u16::from_be_bytes([q[4], q[5]]);
    if opcode != 0 || qdcount != 1 {
        return Reply::Forward;
    }
    let mut i = 12;
    let mut labels = Vec::new();
    loop {
        let Some(&len) = q.get(i) else {
            return Reply::Drop;
        };
        i += 1;
        if len == 0 {
            break;
        }
        if len & 0xc0 != 0 {
            return Reply::Forward;
        }
        let Some(l) = q.get(i..i + len as usize) else {
            return Reply::Drop;
        };
        labels.push(String::from_utf8_lossy(l).into_owned());
        i += len as usize;
    }
    let Some(tail) = q.get(i..i + 4) else {
        return Reply::Drop;
    };
    let qtype = u16::from_be_bytes([tail[0], tail[1]]);
    let qclass = u16::from_be_bytes([tail[2], tail[3]]);
    let qend = i + 4;
    let name = labels.join(".");
    let Some(ips) = (if qclass == 1 { lookup(&name) } else { None }) else {
        return Reply::Forward;
    };
    let ips: Vec<Ipv4Addr> = if qtype == 1 || qtype == 255 {
        ips
    } else {
        vec![]
    };
    let mut r = Vec::with_capacity(qend + ips.len() * 16);
    r.extend_from_slice(&q[0..2]);
    // QR, same opcode, AA, RD copied, RA; NOERROR.
    r.push(0x80 | (q[2] & 0x79) | 0x04);
    r.push(0x80);
    r.extend_from_slice(&1u16.to_be_bytes());
    r.extend_from_slice(&(ips.len() as u16).to_be_bytes());
    r.extend_from_slice(&[0, 0, 0, 0]);
    r.extend_from_slice(&q[12..qend]);
    for ip in ips {
        r.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1]);
        r.extend_from_slice(&TTL.to_be_bytes());
        r.extend_from_slice(&[0, 4]);
        r.extend_from_slice(&ip.octets());
    }
    Reply::Local(r)
}

/// SERVFAIL for a query no upstream answered.
fn servfail(q: &[u8]) -> Option<Vec<u8>> {
    if q.len() < 12 {
        return None;
    }
    let mut r = q.to_vec();
    r[2] = 0x80 | (q[2] & 0x79);
    r[3] = 0x82;
    Some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str, qtype: u16) -> Vec<u8> {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for l in name.split('.') {
            q.push(l.len() as u8);
            q.extend_from_slice(l.as_bytes());
        }
        q.push(0);
        q.extend_from_slice(&qtype.to_be_bytes());
        q.extend_from_slice(&1u16.to_be_bytes());
        q
    }

    fn eps() -> Vec<Endpoint> {
        vec![Endpoint {
            container_id: "0123456789abcdef0123".into(),
            container_name: "web".into(),
            aliases: vec!["db".into()],
            ip_address: "10.9.0.2".into(),
            ..Default::default()
        }]
    }

    #[test]
    fn answers_names_aliases_and_short_ids() {
        let e = eps();
        for name in ["web", "WEB", "db", "0123456789ab"] {
            let Reply::Local(r) = answer(&query(name, 1), |n| lookup(&e, n)) else {
                panic!("{name} not answered locally");
            };
            assert_eq!(&r[0..2], &[0x12, 0x34]);
            assert_eq!(r[2] & 0x80, 0x80, "QR set");
            assert_eq!(r[3] & 0x0f, 0, "NOERROR");
            assert_eq!(u16::from_be_bytes([r[6], r[7]]), 1, "one answer");
            assert_eq!(&r[r.len() - 4..], &[10, 9, 0, 2]);
        }
    }

    #[test]
    fn aaaa_for_our_name_is_empty_and_others_forward() {
        let e = eps();
        let Reply::Local(r) = answer(&query("web", 28), |n| lookup(&e, n)) else {
            panic!("AAAA for a local name must not be forwarded");
        };
        assert_eq!(u16::from_be_bytes([r[6], r[7]]), 0);
        assert_eq!(
            answer(&query("example.org", 1), |n| lookup(&e, n)),
            Reply::Forward
        );
        // Too short / a response / truncated question.
        assert_eq!(answer(&[0; 5], |n| lookup(&e, n)), Reply::Drop);
        let mut resp = query("web", 1);
        resp[2] |= 0x80;
        assert_eq!(answer(&resp, |n| lookup(&e, n)), Reply::Drop);
        let q = query("web", 1);
        assert_eq!(answer(&q[..q.len() - 3], |n| lookup(&e, n)), Reply::Drop);
        assert!(lookup(&e, "0123").is_none(), "short prefixes are not IDs");
    }
}
