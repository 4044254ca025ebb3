//! NAT, published ports and isolation in nftables, in our own `ip` table only.
//!
//! Network-level changes (network create/remove, daemon start, a bridge recreated after a
//! reboot) rebuild the whole table from the state on disk in ONE `nft -j -f -`
//! transaction (add table, delete table, add table + chains + rules + map elements):
//! atomic, so a reader never sees half a ruleset, and idempotent, so stale rules of a
//! previous run (crash, reboot) disappear. Other tables are never read or flushed.
//!
//! Per container nothing is rebuilt and no process runs: published ports are elements of
//! four maps (see [`MAPS`]) that two static DNAT rules look up, and a container's start and
//! exit add and delete its elements in one nf_tables netlink batch (`nftnl.rs`). If that
//! fails (someone flushed our table, an element is stale), the caller rebuilds the table.
//!
//! Published ports use DNAT rather than a userland proxy: a daemonless CLI has no
//! long-lived process to run the proxy in (the per-container monitor is deliberately tiny
//! and single-threaded), DNAT costs nothing per connection, keeps the client's source
//! address, and handles UDP for free. Loopback works through `route_localnet` on our
//! bridges plus a masquerade of 127.0.0.0/8 sources leaving through them, the same trick
//! Docker uses without its proxy.

use crate::error::{Error, Result};
use crate::ipnet::Ipv4Net;
use serde_json::{Value, json};
use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

#[derive(Debug, Clone, PartialEq)]
pub struct BridgeRules {
    pub bridge: String,
    pub subnet: Ipv4Net,
    pub internal: bool,
    pub masquerade: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PortRule {
    pub proto: String,
    /// None: every local address.
    pub host_ip: Option<Ipv4Addr>,
    pub host_port: u16,
    pub target: Ipv4Addr,
    pub target_port: u16,
}

/// Everything our table should contain.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ruleset {
    pub bridges: Vec<BridgeRules>,
    pub ports: Vec<PortRule>,
    /// daemon.json `ip-forward: false`: containers reach each other, the host and
    /// published ports, but nothing is forwarded out of our bridges to other interfaces.
    /// Our bridges forward through their own per-interface flag (needed between bridges
    /// and for hairpinned published ports), which the kernel checks on the *incoming*
    /// interface only, so without this rule they would route outbound traffic even with
    /// the host's ip_forward off, unlike Docker with ip-forward false.
    pub no_outbound: bool,
}

/// The kernel boundary, so the rest is testable without root.
pub trait Firewall {
    /// Replaces our table's content with `rules` atomically.
    fn apply(&self, table: &str, rules: &Ruleset) -> Result<()>;
    /// Deletes our table (nothing else).
    fn remove(&self, table: &str) -> Result<()>;
    /// One container's published ports in or out of the port maps, without touching the
    /// rest. Any error leaves the table as it was; callers then rebuild with `apply`.
    fn update_ports(&self, table: &str, add: &[PortRule], remove: &[PortRule]) -> Result<()>;
}

/// Published ports live in four maps: the target address and the target port (one
/// lookup each: nft's JSON input takes no concatenated map data), for mappings on one host
/// address (key `ip daddr . meta l4proto . th dport`) and on every local address (key
/// `meta l4proto . th dport`).
pub const MAPS: [(&str, bool, bool); 4] = [
    // (name, keyed by host address, holds the address (else the port))
    ("ports_addr_ip", true, true),
    ("ports_addr_port", true, false),
    ("ports_any_ip", false, true),
    ("ports_any_port", false, false),
];

fn proto_number(proto: &str) -> u8 {
    match proto {
        "udp" => 17,
        "sctp" => 132,
        _ => 6,
    }
}

/// A mapping's elements in register layout, one per map it belongs to: (map, element).
pub fn port_elements(p: &PortRule) -> Vec<(&'static str, crate::nftnl::Element)> {
    use crate::nftnl::{Concat, Element};
    let mut key = Concat::default();
    if let Some(ip) = p.host_ip {
        key = key.field(&ip.octets());
    }
    let key = key
        .field(&[proto_number(&p.proto)])
        .field(&p.host_port.to_be_bytes())
        .bytes();
    MAPS.iter()
        .filter(|(_, by_addr, _)| *by_addr == p.host_ip.is_some())
        .map(|(name, _, holds_ip)| {
            // Map data is exactly the data type's size (4 or 2 bytes), unpadded.
            let data = if *holds_ip {
                p.target.octets().to_vec()
            } else {
                p.target_port.to_be_bytes().to_vec()
            };
            (
                *name,
                Element {
                    key: key.clone(),
                    data,
                },
            )
        })
        .collect()
}

fn map_changes(rules: &[PortRule], add: bool) -> Vec<crate::nftnl::MapChange> {
    let all: Vec<(&str, crate::nftnl::Element)> = rules.iter().flat_map(port_elements).collect();
    MAPS.iter()
        .map(|(map, _, _)| crate::nftnl::MapChange {
            map: map.to_string(),
            add,
            elements: all
                .iter()
                .filter(|(m, _)| m == map)
                .map(|(_, e)| e.clone())
                .collect(),
        })
        .collect()
}

/// The real firewall: the `nft` binary in JSON mode.
pub struct Nft;

impl Nft {
    fn run(&self, batch: &Value) -> Result<()> {
        let mut child = Command::new("nft")
            .args(["-j", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                Error::Firewall(format!(
                    "cannot run nft ({e}); install the nftables package"
                ))
            })?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(batch.to_string().as_bytes())
                .map_err(|e| Error::Firewall(format!("write to nft: {e}")))?;
        }
        let out = child
            .wait_with_output()
            .map_err(|e| Error::Firewall(format!("nft: {e}")))?;
        if !out.status.success() {
            return Err(Error::Firewall(
                String::from_utf8_lossy(&out.stderr).trim().to_string(),
            ));
        }
        Ok(())
    }
}

impl Firewall for Nft {
    fn apply(&self, table: &str, rules: &Ruleset) -> Result<()> {
        self.run(&batch(table, rules))
    }
    fn remove(&self, table: &str) -> Result<()> {
        let t = json!({"family": "ip", "name": table});
        self.run(&json!({"nftables": [{"add": {"table": t}}, {"delete": {"table": t}}]}))
    }
    fn update_ports(&self, table: &str, add: &[PortRule], remove: &[PortRule]) -> Result<()> {
        let mut changes = map_changes(remove, false);
        changes.extend(map_changes(add, true));
        crate::nftnl::apply(table, &changes)
    }
}

fn m(left: Value, op: &str, right: Value) -> Value {
    json!({"match": {"op": op, "left": left, "right": right}})
}
fn meta(key: &str) -> Value {
    json!({"meta": {"key": key}})
}
fn payload(proto: &str, field: &str) -> Value {
    json!({"payload": {"protocol": proto, "field": field}})
}
fn prefix(n: &Ipv4Net) -> Value {
    json!({"prefix": {"addr": n.addr().to_string(), "len": n.prefix()}})
}

/// The JSON batch that makes `table` hold exactly `rules`.
pub fn batch(table: &str, rules: &Ruleset) -> Value {
    let t = json!({"family": "ip", "name": table});
    let mut cmds = vec![
        json!({"add": {"table": t}}),
        json!({"delete": {"table": t}}),
        json!({"add": {"table": t}}),
    ];
    let chain = |name: &str, kind: Option<(&str, &str, i32)>| {
        let mut c = json!({"family": "ip", "table": table, "name": name});
        if let Some((ty, hook, prio)) = kind {
            c["type"] = json!(ty);
            c["hook"] = json!(hook);
            c["prio"] = json!(prio);
            c["policy"] = json!("accept");
        }
        json!({"add": {"chain": c}})
    };
    cmds.push(chain("prerouting", Some(("nat", "prerouting", -100))));
    cmds.push(chain("output", Some(("nat", "output", -100))));
    cmds.push(chain("postrouting", Some(("nat", "postrouting", 100))));
    cmds.push(chain("forward", Some(("filter", "forward", 0))));
    cmds.push(chain("ports", None));
    let rule = |chain: &str, expr: Vec<Value>| json!({"add": {"rule": {"family": "ip", "table": table, "chain": chain, "expr": expr}}});
    let to_ports = vec![
        m(
            json!({"fib": {"result": "type", "flags": ["daddr"]}}),
            "==",
            json!("local"),
        ),
        json!({"jump": {"target": "ports"}}),
    ];
    cmds.push(rule("prerouting", to_ports.clone()));
    cmds.push(rule("output", to_ports));
    // Published ports are map elements, so a container adds and removes its own over
    // netlink (nftnl.rs) without rebuilding the table; these two rules never change.
    // An address-specific mapping wins over an every-address one.
    for by_addr in [true, false] {
        let mut key = Vec::new();
        if by_addr {
            key.push(payload("ip", "daddr"));
        }
        key.push(meta("l4proto"));
        key.push(payload("th", "dport"));
        let key = json!({"concat": key});
        let key_types = if by_addr {
            json!(["ipv4_addr", "inet_proto", "inet_service"])
        } else {
            json!(["inet_proto", "inet_service"])
        };
        let mut names = ("", "");
        for (name, _, holds_ip) in MAPS.iter().filter(|(_, b, _)| *b == by_addr) {
            if *holds_ip {
                names.0 = name;
            } else {
                names.1 = name;
            }
            cmds.push(json!({"add": {"map": {
                "family": "ip", "table": table, "name": name, "type": key_types.clone(),
                "map": if *holds_ip { "ipv4_addr" } else { "inet_service" }
            }}}));
            let elems: Vec<Value> = rules
                .ports
                .iter()
                .filter(|p| p.host_ip.is_some() == by_addr)
                .map(|p| {
                    let mut k = Vec::new();
                    if let Some(ip) = p.host_ip {
                        k.push(json!(ip.to_string()));
                    }
                    k.push(json!(p.proto));
                    k.push(json!(p.host_port));
                    let data = if *holds_ip {
                        json!(p.target.to_string())
                    } else {
                        json!(p.target_port)
                    };
                    json!([{"concat": k}, data])
                })
                .collect();
            if !elems.is_empty() {
                cmds.push(json!({"add": {"element": {
                    "family": "ip", "table": table, "name": name, "elem": elems
                }}}));
            }
        }
        cmds.push(rule(
            "ports",
            vec![json!({"dnat": {
                "family": "ip",
                "addr": {"map": {"key": key.clone(), "data": format!("@{}", names.0)}},
                "port": {"map": {"key": key, "data": format!("@{}", names.1)}}
            }})],
        ));
    }
    let ours: Vec<Value> = rules.bridges.iter().map(|b| json!(b.bridge)).collect();
    // Published ports are reachable from other networks through the host's address.
    cmds.push(rule(
        "forward",
        vec![
            m(json!({"ct": {"key": "status"}}), "in", json!("dnat")),
            json!({"accept": null}),
        ],
    ));
    for b in &rules.bridges {
        let subnet = prefix(&b.subnet);
        if b.masquerade && !b.internal {
            cmds.push(rule(
                "postrouting",
                vec![
                    m(payload("ip", "saddr"), "==", subnet.clone()),
                    m(meta("oifname"), "!=", json!(b.bridge)),
                    json!({"masquerade": null}),
                ],
            ));
        }
        // Published-port traffic from 127.0.0.1 (route_localnet) or hairpinned back into
        // the same bridge must come back through us: masquerade it.
        let loopback = prefix(&Ipv4Net::new(Ipv4Addr::new(127, 0, 0, 0), 8).unwrap_or(b.subnet));
        cmds.push(rule(
            "postrouting",
            vec![
                m(meta("oifname"), "==", json!(b.bridge)),
                m(payload("ip", "saddr"), "==", loopback),
                json!({"masquerade": null}),
            ],
        ));
        cmds.push(rule(
            "postrouting",
            vec![
                m(meta("oifname"), "==", json!(b.bridge)),
                m(payload("ip", "saddr"), "==", subnet.clone()),
                m(json!({"ct": {"key": "status"}}), "in", json!("dnat")),
                json!({"masquerade": null}),
            ],
        ));
        let others: Vec<Value> = ours
            .iter()
            .filter(|o| o.as_str() != Some(b.bridge.as_str()))
            .cloned()
            .collect();
        if !others.is_empty() {
            cmds.push(rule(
                "forward",
                vec![
                    m(meta("iifname"), "==", json!(b.bridge)),
                    m(meta("oifname"), "==", json!({"set": others})),
                    json!({"drop": null}),
                ],
            ));
        }
        if rules.no_outbound && !b.internal {
            cmds.push(rule(
                "forward",
                vec![
                    m(meta("iifname"), "==", json!(b.bridge)),
                    m(meta("oifname"), "!=", json!({"set": ours.clone()})),
                    json!({"drop": null}),
                ],
            ));
        }
        if b.internal {
            cmds.push(rule(
                "forward",
                vec![
                    m(meta("iifname"), "==", json!(b.bridge)),
                    m(meta("oifname"), "!=", json!(b.bridge)),
                    json!({"drop": null}),
                ],
            ));
            cmds.push(rule(
                "forward",
                vec![
                    m(meta("oifname"), "==", json!(b.bridge)),
                    m(meta("iifname"), "!=", json!(b.bridge)),
                    json!({"drop": null}),
                ],
            ));
        }
    }
    json!({ "nftables": cmds })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Ruleset {
        Ruleset {
            bridges: vec![
                BridgeRules {
                    bridge: "br-a".into(),
                    subnet: "10.1.0.0/16".parse().unwrap(),
                    internal: false,
                    masquerade: true,
                },
                BridgeRules {
                    bridge: "br-b".into(),
                    subnet: "10.2.0.0/16".parse().unwrap(),
                    internal: true,
                    masquerade: true,
                },
            ],
            ports: vec![PortRule {
                proto: "udp".into(),
                host_ip: Some("127.0.0.1".parse().unwrap()),
                host_port: 5353,
                target: "10.1.0.2".parse().unwrap(),
                target_port: 53,
            }],
            no_outbound: false,
        }
    }

    #[test]
    fn without_ip_forward_nothing_leaves_our_bridges() {
        let with = batch("t", &sample()).to_string();
        assert!(
            !with.contains(
                r#"{"match":{"left":{"meta":{"key":"oifname"}},"op":"!=","right":{"set""#
            )
        );
        let mut r = sample();
        r.no_outbound = true;
        let s = batch("t", &r).to_string();
        // Only for the non-internal bridge (an internal one is cut off already).
        assert_eq!(
            s.matches(r#"{"match":{"left":{"meta":{"key":"oifname"}},"op":"!=","right":{"set":["br-a","br-b"]}}}"#)
                .count(),
            1,
            "{s}"
        );
    }

    #[test]
    fn one_batch_replaces_only_our_table() {
        let b = batch("pelagos_t", &sample());
        let cmds = b["nftables"].as_array().unwrap();
        // Starts by recreating our table; nothing names another table.
        assert_eq!(cmds[1]["delete"]["table"]["name"], "pelagos_t");
        for c in cmds {
            let (_, v) = c.as_object().unwrap().iter().next().unwrap();
            let (kind, obj) = v.as_object().unwrap().iter().next().unwrap();
            let table = if kind == "table" {
                &obj["name"]
            } else {
                &obj["table"]
            };
            assert_eq!(table, "pelagos_t", "{c}");
        }
    }

    #[test]
    fn rules_cover_nat_ports_and_isolation() {
        let s = batch("t", &sample()).to_string();
        // The UDP port on 127.0.0.1 as elements of the by-address maps.
        assert!(
            s.contains(r#"[{"concat":["127.0.0.1","udp",5353]},"10.1.0.2"]"#),
            "{s}"
        );
        assert!(
            s.contains(r#"[{"concat":["127.0.0.1","udp",5353]},53]"#),
            "{s}"
        );
        assert_eq!(s.matches(r#"{"dnat":"#).count(), 2, "{s}");
        // Outbound masquerade only for the non-internal network.
        // (masquerade + hairpin for the first, hairpin only for the internal one)
        assert_eq!(s.matches(r#"{"addr":"10.1.0.0","len":16}"#).count(), 2);
        assert_eq!(s.matches(r#"{"addr":"10.2.0.0","len":16}"#).count(), 1);
        // Isolation between the two bridges, both ways.
        assert!(s.contains(r#""right":{"set":["br-b"]}"#));
        assert!(s.contains(r#""right":{"set":["br-a"]}"#));
    }

    #[test]
    fn empty_ruleset_still_has_base_chains() {
        let b = batch("t", &Ruleset::default());
        let n = b["nftables"].as_array().unwrap().len();
        // table x3, 5 chains, 2 jumps, 4 port maps, 2 map-driven dnat rules, 1 dnat-accept.
        assert_eq!(n, 17);
    }

    /// The batch is accepted by the real nft (root only; a private table, removed again).
    #[test]
    fn nft_accepts_the_batch() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 || Command::new("nft").arg("-v").output().is_err() {
            eprintln!("skipped: needs root and nft");
            return;
        }
        let table = format!("pelagos_unit_{}", std::process::id());
        let mut rules = sample();
        rules.no_outbound = true;
        Nft.apply(&table, &rules).unwrap();
        // Applying again replaces rather than appends.
        Nft.apply(&table, &rules).unwrap();
        let out = Command::new("nft")
            .args(["-j", "list", "table", "ip", &table])
            .output()
            .unwrap();
        let listed = String::from_utf8_lossy(&out.stdout).to_string();
        let list = || {
            let o = Command::new("nft")
                .args(["list", "table", "ip", &table])
                .output()
                .unwrap();
            String::from_utf8_lossy(&o.stdout).to_string()
        };
        // A container's ports in and out over netlink, next to the rebuilt ones.
        let extra = [
            PortRule {
                proto: "tcp".into(),
                host_ip: None,
                host_port: 18080,
                target: "10.1.0.7".parse().unwrap(),
                target_port: 80,
            },
            PortRule {
                proto: "tcp".into(),
                host_ip: Some("127.0.0.1".parse().unwrap()),
                host_port: 18081,
                target: "10.1.0.7".parse().unwrap(),
                target_port: 81,
            },
        ];
        Nft.update_ports(&table, &extra, &[]).unwrap();
        let with = list();
        // Adding the same again is harmless; deleting what is gone is an error (the
        // caller then rebuilds).
        Nft.update_ports(&table, &extra, &[]).unwrap();
        Nft.update_ports(&table, &[], &extra).unwrap();
        let without = list();
        let twice = Nft.update_ports(&table, &[], &extra);
        Nft.remove(&table).unwrap();
        assert_eq!(listed.matches("\"dnat\": {").count(), 2, "{listed}");
        assert!(with.contains("tcp . 18080 : 10.1.0.7"), "{with}");
        assert!(with.contains("tcp . 18080 : 80"), "{with}");
        assert!(with.contains("127.0.0.1 . tcp . 18081 : 81"), "{with}");
        assert!(with.contains("127.0.0.1 . udp . 5353 : 53"), "{with}");
        assert!(
            !without.contains("18080") && !without.contains("18081"),
            "{without}"
        );
        assert!(without.contains("127.0.0.1 . udp . 5353 : 53"), "{without}");
        assert!(twice.is_err());
        let gone = Command::new("nft")
            .args(["list", "table", "ip", &table])
            .output()
            .unwrap();
        assert!(!gone.status.success(), "table still there");
    }

    /// Every port map's elements as nft reads them back, sorted, per map name.
    fn listed_maps(table: &str) -> Vec<(String, Vec<String>)> {
        let out = Command::new("nft")
            .args(["-j", "list", "table", "ip", table])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        let mut maps: Vec<(String, Vec<String>)> = v["nftables"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|o| o.get("map"))
            .map(|m| {
                let mut elems: Vec<String> = m["elem"]
                    .as_array()
                    .map(|a| a.iter().map(|e| e.to_string()).collect())
                    .unwrap_or_default();
                elems.sort();
                (m["name"].as_str().unwrap().to_string(), elems)
            })
            .collect();
        maps.sort();
        maps
    }

    /// Elements added over netlink are exactly what the `nft -j` rebuild writes for the
    /// same ports (so either path can follow the other), and deleting them over netlink
    /// gives back the rebuild without them (root only; private tables, removed again).
    #[test]
    fn netlink_elements_agree_with_the_rebuild() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 || Command::new("nft").arg("-v").output().is_err() {
            eprintln!("skipped: needs root and nft");
            return;
        }
        let pid = std::process::id();
        let (inc, full) = (format!("pelagos_inc_{pid}"), format!("pelagos_full_{pid}"));
        let base = sample();
        let extra: Vec<PortRule> = [
            ("tcp", None, 18090, "10.1.0.7", 80),
            ("udp", None, 18091, "10.1.0.7", 53),
            ("tcp", Some("127.0.0.1"), 18092, "10.1.0.8", 8080),
            ("udp", Some("10.1.0.1"), 18093, "10.1.0.8", 5353),
        ]
        .iter()
        .map(|(proto, ip, hp, t, tp)| PortRule {
            proto: proto.to_string(),
            host_ip: ip.map(|i| i.parse().unwrap()),
            host_port: *hp,
            target: t.parse().unwrap(),
            target_port: *tp,
        })
        .collect();
        let mut with = base.clone();
        with.ports.extend(extra.iter().cloned());
        Nft.apply(&inc, &base).unwrap();
        Nft.apply(&full, &with).unwrap();
        let added = Nft.update_ports(&inc, &extra, &[]);
        let (inc_with, full_with) = (listed_maps(&inc), listed_maps(&full));
        let removed = Nft.update_ports(&inc, &[], &extra);
        let inc_without = listed_maps(&inc);
        Nft.apply(&full, &base).unwrap();
        let full_without = listed_maps(&full);
        Nft.remove(&inc).unwrap();
        Nft.remove(&full).unwrap();
        added.unwrap();
        removed.unwrap();
        assert_eq!(inc_with, full_with);
        assert_eq!(inc_without, full_without);
        assert_eq!(
            full_with.iter().map(|(_, e)| e.len()).sum::<usize>(),
            2 * (extra.len() + base.ports.len())
        );
    }
}
