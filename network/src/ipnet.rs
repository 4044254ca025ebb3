//! IPv4 prefixes: parsing, containment, overlap and host enumeration. Small enough to own
//! rather than pull a crate for.

use crate::error::{Error, Result};
use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// An IPv4 network in canonical form (host bits cleared).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Ipv4Net {
    addr: Ipv4Addr,
    prefix: u8,
}

impl Ipv4Net {
    /// The network containing `addr` with this prefix length.
    pub fn new(addr: Ipv4Addr, prefix: u8) -> Result<Self> {
        if prefix > 32 {
            return Err(Error::invalid(format!("invalid prefix length /{prefix}")));
        }
        Ok(Ipv4Net {
            addr: Ipv4Addr::from(u32::from(addr) & mask(prefix)),
            prefix,
        })
    }
    pub fn addr(&self) -> Ipv4Addr {
        self.addr
    }
    pub fn prefix(&self) -> u8 {
        self.prefix
    }
    pub fn first(&self) -> u32 {
        u32::from(self.addr)
    }
    pub fn last(&self) -> u32 {
        self.first() | !mask(self.prefix)
    }
    pub fn size(&self) -> u64 {
        1u64 << (32 - self.prefix as u32)
    }
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        u32::from(ip) & mask(self.prefix) == self.first()
    }
    pub fn contains_net(&self, other: &Ipv4Net) -> bool {
        other.prefix >= self.prefix && self.contains(other.addr)
    }
    pub fn overlaps(&self, other: &Ipv4Net) -> bool {
        self.contains_net(other) || other.contains_net(self)
    }
    /// The `n`th address of the network (0 is the network address).
    pub fn nth(&self, n: u32) -> Option<Ipv4Addr> {
        (u64::from(n) < self.size()).then(|| Ipv4Addr::from(self.first() + n))
    }
    /// The subnets of length `size` inside this network, in order.
    pub fn subnets(&self, size: u8) -> impl Iterator<Item = Ipv4Net> + '_ {
        let count = if size < self.prefix || size > 32 {
            0
        } else {
            1u64 << (size - self.prefix)
        };
        let step = 1u64 << (32 - size as u32);
        (0..count).map(move |i| Ipv4Net {
            addr: Ipv4Addr::from((u64::from(self.first()) + i * step) as u32),
            prefix: size,
        })
    }
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix as u32)
    }
}

impl FromStr for Ipv4Net {
    type Err = Error;
    /// `a.b.c.d/n`; host bits must be clear (Docker refuses `10.1.2.3/24` as a subnet too,
    /// but accepts it as `--ip-range`, so callers wanting that use [`parse_cidr_loose`]).
    fn from_str(s: &str) -> Result<Self> {
        let (ip, p) = parse_parts(s)?;
        let n = Ipv4Net::new(ip, p)?;
        if n.addr != ip {
            return Err(Error::invalid(format!(
                "invalid subnet {s}: it should be {n}"
            )));
        }
        Ok(n)
    }
}

/// `a.b.c.d/n` allowing host bits (returns the address and its network).
pub fn parse_cidr_loose(s: &str) -> Result<(Ipv4Addr, Ipv4Net)> {
    let (ip, p) = parse_parts(s)?;
    Ok((ip, Ipv4Net::new(ip, p)?))
}

fn parse_parts(s: &str) -> Result<(Ipv4Addr, u8)> {
    let bad = || Error::invalid(format!("invalid CIDR address: {s}"));
    let (ip, p) = s.split_once('/').ok_or_else(bad)?;
    let ip: Ipv4Addr = ip.parse().map_err(|_| bad())?;
    let p: u8 = p.parse().map_err(|_| bad())?;
    if p > 32 {
        return Err(bad());
    }
    Ok((ip, p))
}

impl fmt::Display for Ipv4Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_and_contain() {
        let n: Ipv4Net = "10.1.0.0/16".parse().unwrap();
        assert!(n.contains("10.1.255.3".parse().unwrap()));
        assert!(!n.contains("10.2.0.1".parse().unwrap()));
        assert_eq!(n.nth(1), Some("10.1.0.1".parse().unwrap()));
        assert_eq!(n.size(), 65536);
        assert!("10.1.0.1/16".parse::<Ipv4Net>().is_err());
        assert!("10.1.0.0/33".parse::<Ipv4Net>().is_err());
        assert!("nonsense".parse::<Ipv4Net>().is_err());
        assert!("10.1.0.0".parse::<Ipv4Net>().is_err());
        let m: Ipv4Net = "10.1.2.0/24".parse().unwrap();
        assert!(n.overlaps(&m) && m.overlaps(&n));
        assert!(!m.overlaps(&"10.1.3.0/24".parse().unwrap()));
        let (ip, net) = parse_cidr_loose("10.1.2.3/24").unwrap();
        assert_eq!(
            (ip.to_string(), net.to_string()),
            ("10.1.2.3".into(), m.to_string())
        );
    }

    #[test]
    fn subnets_split_a_pool() {
        let pool: Ipv4Net = "192.168.0.0/16".parse().unwrap();
        let s: Vec<String> = pool.subnets(20).take(2).map(|n| n.to_string()).collect();
        assert_eq!(s, ["192.168.0.0/20", "192.168.16.0/20"]);
        assert_eq!(pool.subnets(20).count(), 16);
        assert_eq!(pool.subnets(8).count(), 0);
    }
}
