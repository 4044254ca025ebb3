//! Networking through the real CLI: bridges, user networks with embedded DNS, published
//! ports on 127.0.0.1, isolation, connect/disconnect, IPAM under concurrency and bad input.
//! Root only; see tests/common/mod.rs. Traffic only ever goes to loopback and to the
//! namespaces these tests create; no test resolves a name its network does not know (that
//! would be forwarded to the host's resolvers).

mod common;

use common::{Pelagos, poll_until};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::Duration;

const SECS_5: Duration = Duration::from_secs(5);

/// A web server answering "hello-<tag>" on port 80.
fn web_script(tag: &str) -> String {
    format!("mkdir -p /www && echo hello-{tag} > /www/index.html && exec httpd -f -p 80 -h /www")
}

fn networks_of(p: &Pelagos, ct: &str) -> Value {
    serde_json::from_str(&p.inspect(ct, "{{json .NetworkSettings.Networks}}")).unwrap()
}

fn ip_on(p: &Pelagos, ct: &str, net: &str) -> String {
    networks_of(p, ct)[net]["IPAddress"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// A user network with an automatically chosen subnet (tests run in parallel with other
/// data roots, so fixed subnets could clash).
fn net(p: &Pelagos, name: &str, extra: &[&str]) -> String {
    let mut args = vec!["network", "create"];
    args.extend_from_slice(extra);
    args.push(name);
    let id = p.ok(&args).trim().to_string();
    assert_eq!(id.len(), 64, "{id}");
    id
}

/// A /24 unlikely to be used by anyone else on this host at the same moment.
fn private_subnet() -> String {
    let n = std::process::id();
    format!("10.{}.{}.0/24", 100 + (n % 100), (n / 100) % 250)
}

fn http_get(port: u16) -> std::io::Result<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(SECS_5))?;
    s.write_all(b"GET / HTTP/1.0\r\nHost: x\r\n\r\n")?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

fn host_port(p: &Pelagos, ct: &str, spec: &str) -> u16 {
    let out = p.ok(&["port", ct, spec]);
    out.trim()
        .rsplit(':')
        .next()
        .and_then(|x| x.parse().ok())
        .unwrap_or_else(|| panic!("port {ct} {spec}: {out:?}"))
}

/// Host veths and bridges this harness's data root owns (tagged with IFLA_IFALIAS).
fn our_links(p: &Pelagos) -> Vec<String> {
    let tag = format!("pelagos:{}", p.data.display());
    let mut v = Vec::new();
    for e in std::fs::read_dir("/sys/class/net").unwrap().flatten() {
        let alias = std::fs::read_to_string(e.path().join("ifalias")).unwrap_or_default();
        if alias.trim() == tag {
            v.push(e.file_name().to_string_lossy().into_owned());
        }
    }
    v
}

fn veths(p: &Pelagos) -> Vec<String> {
    our_links(p)
        .into_iter()
        .filter(|l| l.starts_with("veth"))
        .collect()
}

// ---------------------------------------------------------------- default bridge

#[test]
fn default_bridge_addresses_the_container_and_reaches_the_gateway() {
    let Some(p) = Pelagos::new() else { return };
    let bridge: Value = serde_json::from_str(&p.ok(&["network", "inspect", "bridge"])).unwrap();
    let cfg = &bridge[0]["IPAM"]["Config"][0];
    let gw = cfg["Gateway"].as_str().unwrap().to_string();
    let subnet = cfg["Subnet"].as_str().unwrap().to_string();
    let o = p.sh(&format!(
        "ip -4 addr show eth0 | grep inet; ip route | grep default; ping -c1 -W2 {gw} >/dev/null && echo gw-ok"
    ));
    assert_eq!(o.code, 0, "{o:?}");
    let prefix = subnet
        .rsplit_once('.')
        .unwrap()
        .0
        .rsplit_once('.')
        .unwrap()
        .0;
    assert!(
        o.stdout.contains(&format!("inet {prefix}.")),
        "{o:?} vs {subnet}"
    );
    assert!(o.stdout.contains(&format!("default via {gw}")), "{o:?}");
    assert!(o.stdout.contains("gw-ok"), "{o:?}");
    // Docker's ls columns, with the built-in networks.
    let ls = p.ok(&["network", "ls"]);
    let head: Vec<&str> = ls.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(head, ["NETWORK", "ID", "NAME", "DRIVER", "SCOPE"]);
    for n in ["bridge", "host", "none"] {
        assert!(
            ls.lines().any(|l| l.split_whitespace().nth(1) == Some(n)),
            "{ls}"
        );
    }
    // The default subnet avoids every route that existed before it.
    assert!(!subnet.is_empty());
}

#[test]
fn inspect_shows_endpoint_settings_and_ports() {
    let Some(p) = Pelagos::new() else { return };
    let id = p.detached(&["-p", "127.0.0.1::80"], "sleep 60");
    let ns = &networks_of(&p, &id)["bridge"];
    assert!(ns["IPAddress"].as_str().unwrap().contains('.'), "{ns}");
    assert!(ns["Gateway"].as_str().unwrap().contains('.'), "{ns}");
    assert_eq!(ns["IPPrefixLen"].as_u64().unwrap(), 16, "{ns}");
    assert!(
        ns["MacAddress"].as_str().unwrap().starts_with("02:42:"),
        "{ns}"
    );
    assert_eq!(ns["NetworkID"].as_str().unwrap().len(), 64);
    assert_eq!(ns["EndpointID"].as_str().unwrap().len(), 64);
    let key = p.inspect(&id, "{{.NetworkSettings.SandboxKey}}");
    assert!(std::path::Path::new(&key).exists(), "{key}");
    let ports: Value =
        serde_json::from_str(&p.inspect(&id, "{{json .NetworkSettings.Ports}}")).unwrap();
    let b = &ports["80/tcp"][0];
    assert_eq!(b["HostIp"], "127.0.0.1");
    let port: u16 = b["HostPort"].as_str().unwrap().parse().unwrap();
    assert_eq!(host_port(&p, &id, "80/tcp"), port);
    assert!(port > 0);
    p.ok(&["rm", "-f", &id]);
    assert!(
        !std::path::Path::new(&key).exists(),
        "netns pin left: {key}"
    );
}

#[test]
fn network_none_and_host_modes_still_work() {
    let Some(p) = Pelagos::new() else { return };
    let o = p.out(&[
        "run",
        "--rm",
        "--network",
        "none",
        "busybox",
        "sh",
        "-c",
        "ls /sys/class/net",
    ]);
    assert_eq!(
        o.stdout.split_whitespace().collect::<Vec<_>>(),
        ["lo"],
        "{o:?}"
    );
    let o = p.out(&[
        "run",
        "--rm",
        "--network",
        "host",
        "busybox",
        "sh",
        "-c",
        "ls /sys/class/net",
    ]);
    assert!(
        o.stdout.contains("lo") && o.stdout.split_whitespace().count() > 1,
        "{o:?}"
    );
}

// ---------------------------------------------------------------- ports

#[test]
fn published_tcp_port_answers_on_loopback() {
    let Some(p) = Pelagos::new() else { return };
    let id = p.detached(&["-p", "127.0.0.1::80", "-p", "80"], &web_script("tcp"));
    let ports = p.ok(&["port", &id]);
    assert_eq!(ports.lines().count(), 2, "{ports}");
    for line in ports.lines() {
        let port: u16 = line.rsplit(':').next().unwrap().parse().unwrap();
        let mut last = String::new();
        let ok = poll_until(SECS_5, || match http_get(port) {
            Ok(body) => {
                last = body;
                last.contains("hello-tcp")
            }
            Err(e) => {
                last = e.to_string();
                false
            }
        });
        assert!(ok, "127.0.0.1:{port} ({line}): {last}");
    }
}

#[test]
fn published_udp_port_answers_on_loopback() {
    let Some(p) = Pelagos::new() else { return };
    let id = p.detached(&["-p", "127.0.0.1::5353/udp"], "sleep 60");
    let port = host_port(&p, &id, "5353/udp");
    // busybox has no UDP server: this test serves UDP inside the container's own network
    // namespace (which the test created) from a thread that joined it.
    let key = p.inspect(&id, "{{.NetworkSettings.SandboxKey}}");
    let (tx, rx) = std::sync::mpsc::channel();
    let server = std::thread::spawn(move || {
        let f = std::fs::File::open(&key).unwrap();
        // SAFETY: setns on this thread only, with a valid namespace fd.
        assert_eq!(unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) }, 0);
        let s = UdpSocket::bind("0.0.0.0:5353").unwrap();
        s.set_read_timeout(Some(SECS_5)).unwrap();
        tx.send(()).unwrap();
        let mut buf = [0u8; 64];
        let (n, from) = s.recv_from(&mut buf).unwrap();
        let mut reply = b"echo:".to_vec();
        reply.extend_from_slice(&buf[..n]);
        s.send_to(&reply, from).unwrap();
    });
    rx.recv().unwrap();
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    c.set_read_timeout(Some(SECS_5)).unwrap();
    c.send_to(b"ping", ("127.0.0.1", port)).unwrap();
    let mut buf = [0u8; 64];
    let (n, _) = c
        .recv_from(&mut buf)
        .expect("UDP reply through the published port");
    assert_eq!(&buf[..n], b"echo:ping");
    server.join().unwrap();
}

#[test]
fn published_port_reachable_from_another_container_through_the_host_address() {
    let Some(p) = Pelagos::new() else { return };
    let id = p.detached(&["-p", "80"], &web_script("hairpin"));
    let port = host_port(&p, &id, "80/tcp");
    let gw = networks_of(&p, &id)["bridge"]["Gateway"]
        .as_str()
        .unwrap()
        .to_string();
    // The gateway is one of the host's own addresses.
    let mut last = String::new();
    let ok = poll_until(SECS_5, || {
        let o = p.sh(&format!("wget -q -O- http://{gw}:{port}/"));
        last = format!("{o:?}");
        o.stdout.contains("hello-hairpin")
    });
    assert!(ok, "{last}");
    let o = p.out(&[
        "run",
        "--rm",
        "--network",
        &{
            net(&p, "other", &[]);
            "other".to_string()
        },
        "busybox",
        "wget",
        "-q",
        "-O-",
        &format!("http://{gw}:{port}/"),
    ]);
    assert!(
        o.stdout.contains("hello-hairpin"),
        "from another network: {o:?}"
    );
}

#[test]
fn port_already_taken_is_an_error_and_leaves_nothing() {
    let Some(p) = Pelagos::new() else { return };
    let l = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let busy = l.local_addr().unwrap().port();
    let spec = format!("{busy}:80");
    p.fails(
        &["run", "--rm", "-p", &spec, "busybox", "true"],
        125,
        "port is already allocated",
    );
    // Taken by another container's mapping (no socket holds a DNAT'd port).
    drop(l);
    let id = p.detached(&["-p", &spec], "sleep 60");
    p.fails(
        &["run", "--rm", "-p", &spec, "busybox", "true"],
        125,
        "port is already allocated",
    );
    assert!(
        poll_until(SECS_5, || p.all_ids() == vec![id.clone()]),
        "{:?}",
        p.all_ids()
    );
    let sandboxes = std::fs::read_dir(p.run_root.join("net/sandboxes"))
        .unwrap()
        .count();
    assert_eq!(sandboxes, 1, "a sandbox was left by the failed run");
    // The failed run's namespace (and veth) goes asynchronously.
    assert!(
        poll_until(SECS_5, || veths(&p).len() == 1),
        "{:?}",
        veths(&p)
    );
    p.fails(
        &["run", "-p", "1.2.3:80:80", "busybox", "true"],
        125,
        "invalid",
    );
}

// ---------------------------------------------------------------- user networks

#[test]
fn containers_resolve_each_other_by_name_alias_and_short_id() {
    let Some(p) = Pelagos::new() else { return };
    net(&p, "appnet", &[]);
    let id = p.detached(
        &[
            "--network",
            "appnet",
            "--name",
            "web",
            "--network-alias",
            "db",
        ],
        &web_script("dns"),
    );
    let ip = ip_on(&p, "web", "appnet");
    let short = &id[..12];
    let o = p.out(&[
        "run", "--rm", "--network", "appnet", "busybox", "sh", "-c",
        &format!(
            "cat /etc/resolv.conf; for n in web db {short}; do nslookup $n | grep -A1 '^Name' | tail -1; done; \
             sleep 0.3; wget -q -O- http://web/ && wget -q -O- http://db/"
        ),
    ]);
    assert_eq!(o.code, 0, "{o:?}");
    let gw = networks_of(&p, "web")["appnet"]["Gateway"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(o.stdout.contains(&format!("nameserver {gw}")), "{o:?}");
    assert_eq!(
        o.stdout.matches(&format!("Address: {ip}")).count(),
        3,
        "{o:?}"
    );
    assert_eq!(o.stdout.matches("hello-dns").count(), 2, "{o:?}");
    // DNS over TCP too (the gateway is our own bridge's address).
    assert_eq!(tcp_dns_a(&gw, "db"), Some(ip.clone()));
    assert_eq!(tcp_dns_a(&gw, "WEB."), Some(ip.clone()));
    // The network lists its endpoint.
    let n: Value = serde_json::from_str(&p.ok(&["network", "inspect", "appnet"])).unwrap();
    assert_eq!(n[0]["Containers"][&id]["Name"], "web", "{n}");
    // One DNS server for the network, gone with the last endpoint.
    p.ok(&["rm", "-f", "web"]);
    assert!(
        poll_until(SECS_5, || dns_servers(&p).is_empty()),
        "{:?}",
        dns_servers(&p)
    );
}

/// One A query over TCP (two-byte length prefix) to `server`:53; the first address.
fn tcp_dns_a(server: &str, name: &str) -> Option<String> {
    let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in name.trim_end_matches('.').split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    let mut s = TcpStream::connect((server, 53)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(&(q.len() as u16).to_be_bytes()).ok()?;
    s.write_all(&q).ok()?;
    let mut len = [0u8; 2];
    s.read_exact(&mut len).ok()?;
    let mut r = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut r).ok()?;
    // Header id echoed, one answer at least; the answer follows the echoed question and
    // ends with the 4-byte address when it is an A record.
    if r.get(0..2)? != [0x12, 0x34] || u16::from_be_bytes([r[6], r[7]]) == 0 {
        return None;
    }
    let ans = &r[q.len()..];
    let rdlen = u16::from_be_bytes([*ans.get(10)?, *ans.get(11)?]) as usize;
    let addr = ans.get(12..12 + rdlen)?;
    (rdlen == 4).then(|| format!("{}.{}.{}.{}", addr[0], addr[1], addr[2], addr[3]))
}

/// Live `pelagos __dns` processes of this harness's data root.
fn dns_servers(p: &Pelagos) -> Vec<i32> {
    let root = p.data.display().to_string();
    common::all_pids()
        .into_iter()
        .filter(|pid| {
            let a = common::proc_strings(*pid, "cmdline");
            a.get(1).is_some_and(|x| x == "__dns")
                && a.get(2) == Some(&root)
                && common::proc_ppid_state(*pid).is_some_and(|(_, s)| s != 'Z')
        })
        .collect()
}

#[test]
fn default_bridge_has_no_name_resolution_but_links_and_add_host_work() {
    let Some(p) = Pelagos::new() else { return };
    let id = p.detached(&["--name", "target"], "sleep 60");
    let ip = ip_on(&p, &id, "bridge");
    let o = p.out(&[
        "run",
        "--rm",
        "--link",
        "target:tgt",
        "--add-host",
        "foo:10.1.2.3",
        "--add-host",
        "gw:host-gateway",
        "--hostname",
        "me",
        "busybox",
        "sh",
        "-c",
        "cat /etc/hosts; cat /etc/resolv.conf; ping -c1 -W2 tgt >/dev/null && echo link-ok",
    ]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stdout.contains(&format!("{ip}\ttgt target")), "{o:?}");
    assert!(o.stdout.contains("10.1.2.3\tfoo"), "{o:?}");
    let gw = networks_of(&p, &id)["bridge"]["Gateway"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(o.stdout.contains(&format!("{gw}\tgw")), "{o:?}");
    assert!(
        o.stdout.lines().any(|l| l.ends_with("\tme")),
        "own name: {o:?}"
    );
    assert!(o.stdout.contains("link-ok"), "{o:?}");
    assert!(
        !o.stdout.contains(&format!("nameserver {gw}")),
        "no embedded DNS: {o:?}"
    );
    // daemon.json `dns` (the harness's loopback-only resolver) is every container's default.
    assert!(o.stdout.contains("nameserver 127.0.0.1\n"), "{o:?}");
    // Aliases need a user-defined network, like Docker.
    p.fails(
        &["run", "--rm", "--network-alias", "x", "busybox", "true"],
        125,
        "user-defined",
    );
}

#[test]
fn networks_are_isolated_and_internal_networks_have_no_way_out() {
    let Some(p) = Pelagos::new() else { return };
    net(&p, "a", &[]);
    net(&p, "b", &[]);
    net(&p, "sealed", &["--internal"]);
    let ida = p.detached(&["--network", "a", "--name", "ca"], "sleep 60");
    let ipa = ip_on(&p, &ida, "a");
    let idi = p.detached(&["--network", "sealed", "--name", "ci"], "sleep 60");
    let ipi = ip_on(&p, &idi, "sealed");
    // Same network: reachable.
    let o = p.out(&[
        "run",
        "--rm",
        "--network",
        "a",
        "busybox",
        "ping",
        "-c1",
        "-W2",
        &ipa,
    ]);
    assert_eq!(o.code, 0, "same network: {o:?}");
    // Across networks: refused.
    let o = p.out(&[
        "run",
        "--rm",
        "--network",
        "b",
        "busybox",
        "ping",
        "-c1",
        "-W1",
        &ipa,
    ]);
    assert_ne!(o.code, 0, "b reached a: {o:?}");
    let o = p.out(&[
        "run",
        "--rm",
        "--network",
        "b",
        "busybox",
        "ping",
        "-c1",
        "-W1",
        &ipi,
    ]);
    assert_ne!(o.code, 0, "b reached sealed: {o:?}");
    // Internal: no default route, the other network unreachable, its own peers fine.
    let o = p.out(&[
        "run", "--rm", "--network", "sealed", "busybox", "sh", "-c",
        &format!("ip route; ping -c1 -W1 {ipa} && echo escaped; ping -c1 -W2 ci >/dev/null && echo peer-ok"),
    ]);
    assert!(!o.stdout.contains("default"), "{o:?}");
    assert!(!o.stdout.contains("escaped"), "{o:?}");
    assert!(o.stdout.contains("peer-ok"), "{o:?}");
    let internal = p.ok(&["network", "inspect", "-f", "{{.Internal}}", "sealed"]);
    assert_eq!(internal.trim(), "true");
}

#[test]
fn connect_and_disconnect_a_running_and_a_created_container() {
    let Some(p) = Pelagos::new() else { return };
    net(&p, "front", &[]);
    net(&p, "back", &[]);
    let id = p.detached(&["--network", "front", "--name", "svc"], "sleep 60");
    p.ok(&["network", "connect", "--alias", "api", "back", "svc"]);
    let ip_back = ip_on(&p, &id, "back");
    assert!(!ip_back.is_empty());
    let o = p.out(&["exec", "svc", "sh", "-c", "ip -4 addr | grep -c 'inet '"]);
    assert_eq!(o.stdout.trim(), "3", "lo, eth0, eth1: {o:?}");
    let o = p.out(&[
        "run",
        "--rm",
        "--network",
        "back",
        "busybox",
        "sh",
        "-c",
        "ping -c1 -W2 api >/dev/null && ping -c1 -W2 svc >/dev/null && echo both",
    ]);
    assert!(o.stdout.contains("both"), "{o:?}");
    // A peer already on `back` (so it cannot be given the released address itself).
    let peer = p.detached(&["--network", "back"], "sleep 60");
    let o = p.out(&["exec", &peer, "ping", "-c1", "-W2", &ip_back]);
    assert_eq!(o.code, 0, "before disconnect: {o:?}");
    p.ok(&["network", "disconnect", "back", "svc"]);
    let o = p.out(&["exec", &peer, "ping", "-c1", "-W1", &ip_back]);
    assert_ne!(o.code, 0, "still reachable after disconnect: {o:?}");
    assert!(networks_of(&p, &id).get("back").is_none());
    assert_eq!(
        veths(&p).len(),
        2,
        "svc's eth0 and the peer's: {:?}",
        veths(&p)
    );
    p.fails(
        &["network", "disconnect", "back", "svc"],
        1,
        "is not connected",
    );
    // A created container gets both networks when it starts.
    p.ok(&[
        "create",
        "--name",
        "later",
        "--network",
        "front",
        "busybox",
        "sleep",
        "60",
    ]);
    p.ok(&["network", "connect", "back", "later"]);
    p.ok(&["start", "later"]);
    let n = networks_of(&p, "later");
    assert!(
        n["front"]["IPAddress"].as_str().unwrap().contains('.'),
        "{n}"
    );
    assert!(
        n["back"]["IPAddress"].as_str().unwrap().contains('.'),
        "{n}"
    );
}

#[test]
fn concurrent_starts_on_one_network_get_distinct_addresses() {
    let Some(p) = Pelagos::new() else { return };
    net(&p, "busy", &[]);
    let children: Vec<_> = (0..8)
        .map(|_| p.spawn(&["run", "-d", "--network", "busy", "busybox", "sleep", "60"]))
        .collect();
    let mut ids = Vec::new();
    for c in children {
        let o = common::wait_output(c, common::CMD_TIMEOUT, &["run"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        ids.push(String::from_utf8_lossy(&o.stdout).trim().to_string());
    }
    let mut ips: Vec<String> = ids.iter().map(|id| ip_on(&p, id, "busy")).collect();
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 8, "{ips:?}");
    // Released on removal and reused.
    p.ok(&["rm", "-f", &ids[0]]);
    let again = p.detached(&["--network", "busy"], "sleep 60");
    let ip = ip_on(&p, &again, "busy");
    assert!(
        !ips.is_empty() && ips.contains(&ip),
        "{ip} not among {ips:?}"
    );
}

#[test]
fn static_ip_mac_and_ip_range() {
    let Some(p) = Pelagos::new() else { return };
    let subnet = private_subnet();
    let base = subnet.trim_end_matches("0/24");
    let range = format!("{base}128/25");
    net(
        &p,
        "fixed",
        &[
            "--subnet",
            &subnet,
            "--gateway",
            &format!("{base}254"),
            "--ip-range",
            &range,
        ],
    );
    let want = format!("{base}10");
    let id = p.detached(
        &[
            "--network",
            "fixed",
            "--ip",
            &want,
            "--mac-address",
            "02:11:22:33:44:55",
        ],
        "sleep 60",
    );
    let n = &networks_of(&p, &id)["fixed"];
    assert_eq!(n["IPAddress"], want.as_str(), "{n}");
    assert_eq!(n["MacAddress"], "02:11:22:33:44:55");
    assert_eq!(n["Gateway"], format!("{base}254").as_str());
    let o = p.out(&["exec", &id, "cat", "/sys/class/net/eth0/address"]);
    assert_eq!(o.stdout.trim(), "02:11:22:33:44:55");
    let other = p.detached(&["--network", "fixed"], "sleep 60");
    assert_eq!(
        ip_on(&p, &other, "fixed"),
        format!("{base}128"),
        "first of --ip-range"
    );
    p.fails(
        &[
            "run",
            "--rm",
            "--network",
            "fixed",
            "--ip",
            &want,
            "busybox",
            "true",
        ],
        125,
        "Address already in use",
    );
}

#[test]
fn container_mode_shares_the_namespace() {
    let Some(p) = Pelagos::new() else { return };
    let id = p.detached(&["--name", "owner"], "sleep 60");
    let ip = ip_on(&p, &id, "bridge");
    let o = p.out(&[
        "run",
        "--rm",
        "--network",
        "container:owner",
        "busybox",
        "ip",
        "-4",
        "addr",
    ]);
    assert!(o.stdout.contains(&ip), "{o:?}");
}

// ---------------------------------------------------------------- bad input

#[test]
fn bad_network_input_is_refused_with_docker_wording() {
    let Some(p) = Pelagos::new() else { return };
    let subnet = private_subnet();
    let id = net(&p, "dup", &["--subnet", &subnet]);
    p.fails(
        &["network", "create", "dup"],
        1,
        "network with name dup already exists",
    );
    p.fails(
        &["network", "create", "--subnet", &subnet, "over"],
        1,
        "overlaps",
    );
    p.fails(
        &["network", "create", "--subnet", "10.0.0.0/33", "bad"],
        1,
        "invalid CIDR",
    );
    p.fails(
        &["network", "create", "--subnet", "nonsense", "bad"],
        1,
        "invalid CIDR",
    );
    p.fails(
        &["network", "create", "--gateway", "10.9.9.9", "bad"],
        1,
        "require --subnet",
    );
    p.fails(&["network", "rm", "nosuch"], 1, "network nosuch not found");
    p.fails(
        &["run", "--rm", "--network", "nosuch", "busybox", "true"],
        125,
        "network nosuch not found",
    );
    p.fails(&["network", "connect", "nosuch", "x"], 1, "");
    p.fails(&["network", "rm", "bridge"], 1, "pre-defined");
    let ls = p.ok(&["network", "ls", "-q"]);
    assert_eq!(ls.lines().count(), 4, "nothing half-created: {ls}");
    // In use.
    let c = p.detached(&["--network", "dup"], "sleep 60");
    p.fails(
        &["network", "rm", "dup"],
        1,
        &format!("error while removing network: network dup id {id} has active endpoints"),
    );
    p.ok(&["rm", "-f", &c]);
    p.ok(&["network", "rm", "dup"]);
    p.fails(&["network", "inspect", "dup"], 1, "not found");
}

#[test]
fn prune_keeps_networks_in_use() {
    let Some(p) = Pelagos::new() else { return };
    net(&p, "unused", &[]);
    net(&p, "used", &[]);
    p.ok(&["create", "--network", "used", "busybox", "true"]);
    let out = p.ok(&["network", "prune", "-f"]);
    assert!(out.contains("unused") && !out.contains("\nused"), "{out}");
    let ls = p.ok(&["network", "ls"]);
    assert!(ls.contains(" used ") && !ls.contains("unused"), "{ls}");
}

// ---------------------------------------------------------------- cleanup

#[test]
fn removing_everything_leaves_no_veth_pin_rule_or_dns_server() {
    let Some(p) = Pelagos::new() else { return };
    let nid = net(&p, "tmp", &[]);
    let a = p.detached(&["--network", "tmp", "-p", "127.0.0.1::80"], "sleep 60");
    let b = p.detached(&["-p", "127.0.0.1::81/udp"], "sleep 60");
    assert_eq!(veths(&p).len(), 2);
    assert_eq!(dns_servers(&p).len(), 1);
    let table = nft_table_of(&p);
    // Each published port is an element of the port maps (two per mapping: address, port).
    let published = nft_list(&table);
    assert!(
        published.contains("127.0.0.1 . tcp . ") && published.contains("127.0.0.1 . udp . "),
        "{published}"
    );
    // ip-forward false (the harness's daemon.json): nothing is forwarded out of our bridges.
    assert!(
        nft_list(&table).contains("oifname != {") && nft_list(&table).contains("drop"),
        "{}",
        nft_list(&table)
    );
    p.ok(&["rm", "-f", &a, &b]);
    // The kernel destroys a namespace (and its veths) asynchronously.
    assert!(
        poll_until(SECS_5, || veths(&p).is_empty()),
        "{:?}",
        veths(&p)
    );
    assert!(
        poll_until(SECS_5, || dns_servers(&p).is_empty()),
        "{:?}",
        dns_servers(&p)
    );
    assert!(
        !nft_list(&table).contains("elements ="),
        "{}",
        nft_list(&table)
    );
    let pins = std::fs::read_dir(p.run_root.join("net/netns"))
        .unwrap()
        .count();
    assert_eq!(pins, 0);
    let leases = std::fs::read_dir(p.run_root.join("net/endpoints").join(&nid))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(leases, 0);
    // The network's bridge goes with it; the default bridge stays while its network does.
    p.ok(&["network", "rm", "tmp"]);
    let bridges = our_links(&p);
    assert_eq!(bridges.len(), 1, "{bridges:?}");
    // destroy-all (the harness's cleanup) removes the rest, our table included.
    p.ok(&["network", "destroy-all"]);
    assert!(our_links(&p).is_empty(), "{:?}", our_links(&p));
    assert!(
        std::process::Command::new("nft")
            .args(["list", "table", "ip", &table])
            .output()
            .map(|o| !o.status.success())
            .unwrap_or(true)
    );
}

/// Starts publishing ports at the same time as a network-level rebuild: every container's
/// port answers, the port maps hold exactly the live containers' elements, a network change
/// repairs elements lost or left stale behind our back, and concurrent removals empty them.
#[test]
fn concurrent_published_ports_stay_consistent_with_the_maps() {
    let Some(p) = Pelagos::new() else { return };
    const N: usize = 6;
    let scripts: Vec<String> = (0..N).map(|i| web_script(&format!("c{i}"))).collect();
    let mut children: Vec<_> = scripts
        .iter()
        .map(|s| p.spawn(&["run", "-d", "-p", "127.0.0.1::80", "busybox", "sh", "-c", s]))
        .collect();
    // A network create rebuilds the whole table in the middle of the starts.
    children.push(p.spawn(&["network", "create", "mid"]));
    let mut ids = Vec::new();
    for c in children {
        let o = common::wait_output(c, common::CMD_TIMEOUT, &["run"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        ids.push(String::from_utf8_lossy(&o.stdout).trim().to_string());
    }
    ids.pop(); // the network's ID
    let ports: Vec<u16> = ids.iter().map(|id| host_port(&p, id, "80/tcp")).collect();
    let answers = |i: usize| {
        let mut last = String::new();
        let ok = poll_until(SECS_5, || {
            last = http_get(ports[i]).unwrap_or_else(|e| e.to_string());
            last.contains(&format!("hello-c{i}"))
        });
        assert!(ok, "container {i} on 127.0.0.1:{}: {last}", ports[i]);
    };
    for i in 0..N {
        answers(i);
    }
    let table = nft_table_of(&p);
    let mut want = ports.clone();
    want.sort();
    for map in ["ports_addr_ip", "ports_addr_port"] {
        assert_eq!(map_ports(&table, map), want, "{map}");
    }
    assert!(map_ports(&table, "ports_any_ip").is_empty());
    // Behind our back: container 0's elements deleted, a stale element added.
    for (map, data) in [("ports_addr_ip", "10.255.255.1"), ("ports_addr_port", "1")] {
        let lost = format!("{{ 127.0.0.1 . tcp . {} }}", ports[0]);
        let stale = format!("{{ 127.0.0.1 . tcp . 1 : {data} }}");
        for (verb, elem) in [("delete", lost), ("add", stale)] {
            let ok = std::process::Command::new("nft")
                .args([verb, "element", "ip", &table, map, &elem])
                .status()
                .unwrap();
            assert!(ok.success(), "nft {verb} element {map} {elem}");
        }
    }
    assert!(!map_ports(&table, "ports_addr_ip").contains(&ports[0]));
    // The next network-level change rebuilds from the sandboxes on disk.
    p.ok(&["network", "rm", "mid"]);
    for map in ["ports_addr_ip", "ports_addr_port"] {
        assert_eq!(map_ports(&table, map), want, "{map} after the rebuild");
    }
    answers(0);
    let removals: Vec<_> = ids.iter().map(|id| p.spawn(&["rm", "-f", id])).collect();
    for c in removals {
        let o = common::wait_output(c, common::CMD_TIMEOUT, &["rm"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    for map in [
        "ports_addr_ip",
        "ports_addr_port",
        "ports_any_ip",
        "ports_any_port",
    ] {
        assert!(
            map_ports(&table, map).is_empty(),
            "{map}: {}",
            nft_list(&table)
        );
    }
}

/// Host ports of a port map's elements (the key's last field), sorted.
fn map_ports(table: &str, map: &str) -> Vec<u16> {
    let out = std::process::Command::new("nft")
        .args(["-j", "list", "map", "ip", table, map])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut ports: Vec<u16> = v["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o.get("map"))
        .flat_map(|m| m["elem"].as_array().cloned().unwrap_or_default())
        .filter_map(|e| e[0]["concat"].as_array()?.last()?.as_u64())
        .map(|p| p as u16)
        .collect();
    ports.sort();
    ports
}

fn nft_table_of(p: &Pelagos) -> String {
    // Derived from the data root exactly as the network crate does.
    use std::process::Command;
    let out = Command::new("nft")
        .args(["-j", "list", "tables"])
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let bridge = our_links(p)
        .into_iter()
        .find(|l| l.starts_with("pl"))
        .expect("default bridge");
    let want = format!("pelagos_{}", &bridge[2..]);
    assert!(
        v["nftables"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["table"]["name"] == want.as_str()),
        "{v}"
    );
    want
}

fn nft_list(table: &str) -> String {
    let out = std::process::Command::new("nft")
        .args(["list", "table", "ip", table])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// After a reboot the bridges and our nftables table are gone while the networks are still
/// stored: the first container brings both back, isolation and NAT rules included.
#[test]
fn bridges_and_rules_come_back_after_a_reboot() {
    let Some(p) = Pelagos::new() else { return };
    net(&p, "rb", &[]);
    let table = nft_table_of(&p);
    // What a reboot leaves: no bridge, no table (this root's objects only).
    let del = std::process::Command::new("nft")
        .args(["delete", "table", "ip", &table])
        .status()
        .unwrap();
    assert!(del.success());
    for l in our_links(&p) {
        let ok = std::process::Command::new("ip")
            .args(["link", "del", &l])
            .status()
            .unwrap();
        assert!(ok.success(), "ip link del {l}");
    }
    assert!(our_links(&p).is_empty());
    let o = p.out(&["run", "--rm", "--network", "rb", "busybox", "true"]);
    assert_eq!(o.code, 0, "{o:?}");
    let rules = nft_list(&table);
    assert!(rules.contains("masquerade"), "{rules}");
    assert!(rules.contains("oifname != {"), "{rules}");
    assert!(
        our_links(&p).iter().any(|l| l.starts_with("br-")),
        "{:?}",
        our_links(&p)
    );
}

/// `--dns` on a user network: resolv.conf still names the embedded server (container names
/// keep resolving) and the other names go to the container's own servers. The "upstream"
/// is a fake resolver on host loopback that answers every A query with 10.9.9.9.
#[test]
fn dns_option_on_a_user_network_keeps_names_and_forwards_the_rest() {
    let Some(p) = Pelagos::new() else { return };
    let upstream = UdpSocket::bind("127.0.0.77:53").expect("bind 127.0.0.77:53");
    upstream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let fake = std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
            let Ok((n, from)) = upstream.recv_from(&mut buf) else {
                continue;
            };
            if n < 12 {
                continue;
            }
            // Header: same id, a response with one answer; the question as asked.
            let mut r = buf[..n].to_vec();
            r[2] = 0x81;
            r[3] = 0x80;
            r[6..8].copy_from_slice(&[0, 1]);
            r[8..12].copy_from_slice(&[0, 0, 0, 0]);
            let qtype = u16::from_be_bytes([r[n - 4], r[n - 3]]);
            if qtype != 1 {
                r[6..8].copy_from_slice(&[0, 0]);
            } else {
                r.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 9, 9, 9]);
            }
            let _ = upstream.send_to(&r, from);
        }
    });
    net(&p, "dnsnet", &[]);
    p.detached(&["--network", "dnsnet", "--name", "peer"], "sleep 60");
    let peer_ip = ip_on(&p, "peer", "dnsnet");
    let o = p.out(&[
        "run",
        "--rm",
        "--network",
        "dnsnet",
        "--dns",
        "127.0.0.77",
        "busybox",
        "sh",
        "-c",
        "cat /etc/resolv.conf; nslookup peer; nslookup elsewhere.test",
    ]);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = fake.join();
    let gw = networks_of(&p, "peer")["dnsnet"]["Gateway"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(o.stdout.contains(&format!("nameserver {gw}\n")), "{o:?}");
    assert!(!o.stdout.contains("nameserver 127.0.0.77"), "{o:?}");
    assert!(o.stdout.contains(&format!("Address: {peer_ip}")), "{o:?}");
    assert!(o.stdout.contains("Address: 10.9.9.9"), "{o:?}");
}
