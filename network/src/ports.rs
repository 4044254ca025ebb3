//! Published ports: Docker's `-p` grammar and host-port allocation.

use crate::error::{Error, Result};
use crate::model::PortMapping;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, UdpSocket};

/// Parses `-p [ip:][hostPort:]containerPort[/proto]`, ranges included
/// (`8000-8001:80-81`). An empty or missing host port means "any free port".
pub fn parse_publish(spec: &str) -> Result<Vec<PortMapping>> {
    let bad = |why: &str| Error::invalid(format!("invalid port specification: \"{spec}\": {why}"));
    let (rest, proto) = match spec.rsplit_once('/') {
        Some((r, p)) => (r, p.to_ascii_lowercase()),
        None => (spec, "tcp".to_string()),
    };
    if !matches!(proto.as_str(), "tcp" | "udp") {
        return Err(Error::invalid(format!("invalid proto: {proto}")));
    }
    let parts: Vec<&str> = rest.split(':').collect();
    let (ip, host, ctr) = match parts.as_slice() {
        [c] => ("", "", *c),
        [h, c] => ("", *h, *c),
        [i, h, c] => (*i, *h, *c),
        _ => return Err(bad("too many colons")),
    };
    if !ip.is_empty() {
        ip.parse::<Ipv4Addr>()
            .map_err(|_| Error::invalid(format!("invalid IP address: {ip}")))?;
    }
    let (c0, c1) = parse_range(ctr).ok_or_else(|| bad("invalid containerPort"))?;
    if c0 == 0 {
        return Err(bad("invalid containerPort"));
    }
    let (h0, h1) = if host.is_empty() {
        (0, 0)
    } else {
        parse_range(host).ok_or_else(|| bad("invalid hostPort"))?
    };
    let n = c1 - c0;
    if host.is_empty() || h0 == 0 {
        return Ok((c0..=c1)
            .map(|c| PortMapping {
                proto: proto.clone(),
                container_port: c,
                host_ip: ip.to_string(),
                host_port: 0,
            })
            .collect());
    }
    if h1 - h0 != n {
        return Err(Error::invalid(format!(
            "invalid ranges specified for container and host Ports: {ctr} and {host}"
        )));
    }
    Ok((0..=n)
        .map(|i| PortMapping {
            proto: proto.clone(),
            container_port: c0 + i,
            host_ip: ip.to_string(),
            host_port: h0 + i,
        })
        .collect())
}

fn parse_range(s: &str) -> Option<(u16, u16)> {
    match s.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (a.parse().ok()?, b.parse().ok()?);
            (a <= b).then_some((a, b))
        }
        None => {
            let p = s.parse().ok()?;
            Some((p, p))
        }
    }
}

fn ip_of(m: &PortMapping) -> Ipv4Addr {
    m.host_ip.parse().unwrap_or(Ipv4Addr::UNSPECIFIED)
}

fn clashes(a: &PortMapping, b: &PortMapping) -> bool {
    let (x, y) = (ip_of(a), ip_of(b));
    a.proto == b.proto
        && a.host_port == b.host_port
        && (x == y || x.is_unspecified() || y.is_unspecified())
}

/// Binding the port on the host tells whether something else (a host service) owns it,
/// and with port 0 gets a free ephemeral port from the kernel.
fn probe(proto: &str, ip: Ipv4Addr, port: u16) -> std::io::Result<u16> {
    let addr = SocketAddrV4::new(ip, port);
    if proto == "udp" {
        Ok(UdpSocket::bind(addr)?.local_addr()?.port())
    } else {
        Ok(TcpListener::bind(addr)?.local_addr()?.port())
    }
}

/// Resolves every requested mapping to a concrete host port, refusing ports taken by
/// `taken` (other containers' mappings, which no socket holds under DNAT) or by a host
/// socket. All or nothing.
pub fn allocate(requested: &[PortMapping], taken: &[PortMapping]) -> Result<Vec<PortMapping>> {
    let mut out: Vec<PortMapping> = Vec::new();
    for r in requested {
        let ip = ip_of(r);
        let mut m = r.clone();
        if r.host_port == 0 {
            let mut found = None;
            for _ in 0..64 {
                let p = probe(&r.proto, ip, 0)
                    .map_err(|e| Error::io(format!("allocate a host port on {ip}"), e))?;
                m.host_port = p;
                if !taken.iter().chain(out.iter()).any(|t| clashes(t, &m)) {
                    found = Some(p);
                    break;
                }
            }
            m.host_port = found.ok_or_else(|| Error::Conflict("no free host port".into()))?;
        } else {
            let busy = taken.iter().chain(out.iter()).any(|t| clashes(t, &m))
                || probe(&r.proto, ip, r.host_port).is_err();
            if busy {
                return Err(Error::Conflict(format!(
                    "Bind for {ip}:{} failed: port is already allocated",
                    r.host_port
                )));
            }
        }
        out.push(m);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pm(proto: &str, c: u16, ip: &str, h: u16) -> PortMapping {
        PortMapping {
            proto: proto.into(),
            container_port: c,
            host_ip: ip.into(),
            host_port: h,
        }
    }

    #[test]
    fn publish_grammar() {
        assert_eq!(parse_publish("80").unwrap(), vec![pm("tcp", 80, "", 0)]);
        assert_eq!(
            parse_publish("8080:80").unwrap(),
            vec![pm("tcp", 80, "", 8080)]
        );
        assert_eq!(
            parse_publish("127.0.0.1:8080:80/udp").unwrap(),
            vec![pm("udp", 80, "127.0.0.1", 8080)]
        );
        assert_eq!(
            parse_publish("127.0.0.1::80").unwrap(),
            vec![pm("tcp", 80, "127.0.0.1", 0)]
        );
        assert_eq!(
            parse_publish("8000-8001:80-81").unwrap(),
            vec![pm("tcp", 80, "", 8000), pm("tcp", 81, "", 8001)]
        );
        assert!(parse_publish("8000-8002:80-81").is_err());
        assert!(parse_publish("80/sctpx").is_err());
        assert!(parse_publish("x:80").is_err());
        assert!(parse_publish("1.2.3:80:80").is_err());
        assert!(parse_publish("0").is_err());
    }

    #[test]
    fn allocation_refuses_clashes_and_fills_ephemeral_ports() {
        let taken = vec![pm("tcp", 80, "", 40123)];
        let e = allocate(&[pm("tcp", 80, "127.0.0.1", 40123)], &taken).unwrap_err();
        assert!(e.to_string().contains("port is already allocated"), "{e}");
        // Same number, other protocol: fine.
        assert!(allocate(&[pm("udp", 80, "127.0.0.1", 40123)], &taken).is_ok());
        let got = allocate(&[pm("tcp", 80, "127.0.0.1", 0)], &taken).unwrap();
        assert_ne!(got[0].host_port, 0);
        // A port a host socket holds.
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let p = l.local_addr().unwrap().port();
        assert!(allocate(&[pm("tcp", 80, "127.0.0.1", p)], &[]).is_err());
    }
}
