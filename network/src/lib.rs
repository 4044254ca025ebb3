//! Container networking: bridges, veth pairs, IPAM, NAT and published ports, embedded DNS.
//!
//! The engine takes a prepared network-namespace path, so this crate plugs in without the
//! engine knowing how the namespace was wired. The bridge driver lands with the network issue.
