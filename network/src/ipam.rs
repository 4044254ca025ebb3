//! Address allocation inside one network. The pure part lives here (unit-tested); the
//! caller holds the network's lock and passes the addresses in use, which are the live
//! endpoints on disk, so a lease is exactly an endpoint record and removing the endpoint
//! releases it.

use crate::error::{Error, Result};
use crate::ipnet::Ipv4Net;
use std::collections::BTreeSet;
use std::net::Ipv4Addr;

/// Picks an address: `requested` if free and valid, else the lowest free one in `range`
/// (the `--ip-range`, or the subnet), never the network, broadcast or gateway address.
pub fn allocate(
    subnet: &Ipv4Net,
    range: Option<&Ipv4Net>,
    gateway: Ipv4Addr,
    used: &BTreeSet<Ipv4Addr>,
    requested: Option<Ipv4Addr>,
) -> Result<Ipv4Addr> {
    let reserved = |ip: Ipv4Addr| {
        let n = u32::from(ip);
        ip == gateway || (subnet.prefix() < 31 && (n == subnet.first() || n == subnet.last()))
    };
    if let Some(ip) = requested {
        if !subnet.contains(ip) {
            return Err(Error::invalid(format!(
                "no available IPv4 address: {ip} is not in subnet {subnet}"
            )));
        }
        if reserved(ip) || used.contains(&ip) {
            return Err(Error::Conflict(format!("Address already in use: {ip}")));
        }
        return Ok(ip);
    }
    let r = range.copied().unwrap_or(*subnet);
    for n in r.first()..=r.last() {
        let ip = Ipv4Addr::from(n);
        if subnet.contains(ip) && !reserved(ip) && !used.contains(&ip) {
            return Ok(ip);
        }
    }
    Err(Error::Conflict(format!(
        "no available IPv4 addresses on this network's address pools: {subnet}"
    )))
}

/// Docker's MAC for an address: 02:42 followed by the IPv4 address.
pub fn mac_for(ip: Ipv4Addr) -> [u8; 6] {
    let o = ip.octets();
    [0x02, 0x42, o[0], o[1], o[2], o[3]]
}

pub fn format_mac(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

pub fn parse_mac(s: &str) -> Result<[u8; 6]> {
    let bad = || Error::invalid(format!("invalid MAC address: {s}"));
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 6 {
        return Err(bad());
    }
    let mut m = [0u8; 6];
    for (i, p) in parts.iter().enumerate() {
        if p.len() != 2 {
            return Err(bad());
        }
        m[i] = u8::from_str_radix(p, 16).map_err(|_| bad())?;
    }
    if m[0] & 1 == 1 {
        return Err(Error::invalid(format!(
            "invalid MAC address: {s} is multicast"
        )));
    }
    Ok(m)
}

/// Picks a subnet from the pools that overlaps neither a host route nor another network.
pub fn pick_subnet(pools: &[(Ipv4Net, u8)], taken: &[Ipv4Net]) -> Result<Ipv4Net> {
    for (base, size) in pools {
        for s in base.subnets(*size) {
            if !taken.iter().any(|t| t.overlaps(&s)) {
                return Ok(s);
            }
        }
    }
    Err(Error::invalid(
        "could not find an available, non-overlapping IPv4 address pool among the defaults to assign to the network",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }
    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn allocates_lowest_free_and_skips_reserved() {
        let s = net("10.5.0.0/24");
        let gw = ip("10.5.0.1");
        let mut used = BTreeSet::new();
        let a = allocate(&s, None, gw, &used, None).unwrap();
        assert_eq!(a, ip("10.5.0.2"));
        used.insert(a);
        assert_eq!(allocate(&s, None, gw, &used, None).unwrap(), ip("10.5.0.3"));
        // Released addresses are reused.
        used.clear();
        assert_eq!(allocate(&s, None, gw, &used, None).unwrap(), ip("10.5.0.2"));
    }

    #[test]
    fn requested_and_range() {
        let s = net("10.5.0.0/24");
        let gw = ip("10.5.0.1");
        let mut used = BTreeSet::new();
        used.insert(ip("10.5.0.9"));
        assert_eq!(
            allocate(&s, None, gw, &used, Some(ip("10.5.0.8"))).unwrap(),
            ip("10.5.0.8")
        );
        assert!(matches!(
            allocate(&s, None, gw, &used, Some(ip("10.5.0.9"))),
            Err(Error::Conflict(_))
        ));
        assert!(allocate(&s, None, gw, &used, Some(gw)).is_err());
        assert!(allocate(&s, None, gw, &used, Some(ip("10.6.0.9"))).is_err());
        let r = net("10.5.0.128/25");
        assert_eq!(
            allocate(&s, Some(&r), gw, &used, None).unwrap(),
            ip("10.5.0.128")
        );
    }

    #[test]
    fn exhaustion_is_an_error() {
        let s = net("10.5.0.0/30");
        let gw = ip("10.5.0.1");
        let mut used = BTreeSet::new();
        used.insert(allocate(&s, None, gw, &used, None).unwrap());
        assert!(allocate(&s, None, gw, &used, None).is_err());
    }

    #[test]
    fn subnet_picking_avoids_routes_and_networks() {
        let pools = crate::config::docker_default_pools();
        // A Docker daemon beside us owns 172.17.0.0/16.
        let taken = vec![net("172.17.0.0/16"), net("172.18.5.0/24")];
        assert_eq!(pick_subnet(&pools, &taken).unwrap(), net("172.19.0.0/16"));
        let all: Vec<Ipv4Net> = vec![net("172.16.0.0/12"), net("192.168.0.0/17")];
        assert_eq!(pick_subnet(&pools, &all).unwrap(), net("192.168.128.0/20"));
        assert!(pick_subnet(&pools, &[net("0.0.0.0/0")]).is_err());
    }

    #[test]
    fn macs() {
        assert_eq!(format_mac(&mac_for(ip("172.17.0.2"))), "02:42:ac:11:00:02");
        assert_eq!(
            parse_mac("02:42:ac:11:00:02").unwrap(),
            mac_for(ip("172.17.0.2"))
        );
        assert!(parse_mac("01:00:00:00:00:00").is_err());
        assert!(parse_mac("zz:00:00:00:00:00").is_err());
    }
}
