//! Map elements of our nftables table over nf_tables netlink, without running `nft`.
//!
//! Published ports are elements of two maps in our table (see `firewall.rs`); a container
//! that publishes ports adds its elements at start and deletes them at exit. Running the
//! `nft` binary for that cost ~20 ms per change; one netlink batch costs microseconds and
//! keeps the per-container path free of fork/exec. Whole-table rebuilds (network create /
//! remove, daemon start, and any failure here) still go through `nft -j`.
//!
//! Wire format (linux/netfilter/nfnetlink.h, nf_tables.h): a batch is
//! `NFNL_MSG_BATCH_BEGIN`, one `NFT_MSG_{NEW,DEL}SETELEM` per map, `NFNL_MSG_BATCH_END`,
//! each an nlmsghdr + nfgenmsg + attributes. Each element carries its key and data as
//! `NFTA_DATA_VALUE` blobs: concatenated fields, each padded to a 4-byte register.

use crate::error::{Error, Result};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

const NETLINK_NETFILTER: i32 = 12;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_DELSETELEM: u16 = 14;
const NFPROTO_IPV4: u8 = 2;

const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_CREATE: u16 = 0x400;
const NLMSG_ERROR: u16 = 0x2;
const NLA_F_NESTED: u16 = 0x8000;

const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_DATA: u16 = 2;
const NFTA_DATA_VALUE: u16 = 1;

/// One map element: key and data, already in register layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    pub key: Vec<u8>,
    pub data: Vec<u8>,
}

/// Add or delete elements of one map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapChange {
    pub map: String,
    pub add: bool,
    pub elements: Vec<Element>,
}

/// A concatenation builder: every field starts on a 4-byte boundary.
#[derive(Default)]
pub struct Concat(Vec<u8>);

impl Concat {
    pub fn field(mut self, bytes: &[u8]) -> Self {
        self.0.extend_from_slice(bytes);
        while !self.0.len().is_multiple_of(4) {
            self.0.push(0);
        }
        self
    }
    pub fn bytes(self) -> Vec<u8> {
        self.0
    }
}

fn attr(out: &mut Vec<u8>, ty: u16, payload: &[u8]) {
    let len = 4 + payload.len();
    out.extend_from_slice(&(len as u16).to_ne_bytes());
    out.extend_from_slice(&ty.to_ne_bytes());
    out.extend_from_slice(payload);
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

fn nested(out: &mut Vec<u8>, ty: u16, inner: impl FnOnce(&mut Vec<u8>)) {
    let mut body = Vec::new();
    inner(&mut body);
    attr(out, ty | NLA_F_NESTED, &body);
}

fn cstr(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

fn message(ty: u16, flags: u16, seq: u32, family: u8, res_id: u16, attrs: &[u8]) -> Vec<u8> {
    let len = 16 + 4 + attrs.len();
    let mut m = Vec::with_capacity(len);
    m.extend_from_slice(&(len as u32).to_ne_bytes());
    m.extend_from_slice(&ty.to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    // nfgenmsg: family, version (NFNETLINK_V0), resource id (big endian).
    m.push(family);
    m.push(0);
    m.extend_from_slice(&res_id.to_be_bytes());
    m.extend_from_slice(attrs);
    m
}

/// The batch for `changes` to maps of `table` (family ip); sequence numbers start at
/// `seq`. Returns the bytes and the sequence numbers that must be acknowledged.
pub fn encode(table: &str, changes: &[MapChange], seq: u32) -> (Vec<u8>, Vec<u32>) {
    let mut out = message(
        NFNL_MSG_BATCH_BEGIN,
        NLM_F_REQUEST,
        seq,
        0,
        NFNL_SUBSYS_NFTABLES,
        &[],
    );
    let mut acks = Vec::new();
    let mut s = seq;
    for c in changes.iter().filter(|c| !c.elements.is_empty()) {
        s += 1;
        let mut attrs = Vec::new();
        attr(&mut attrs, NFTA_SET_ELEM_LIST_TABLE, &cstr(table));
        attr(&mut attrs, NFTA_SET_ELEM_LIST_SET, &cstr(&c.map));
        nested(&mut attrs, NFTA_SET_ELEM_LIST_ELEMENTS, |list| {
            for e in &c.elements {
                nested(list, NFTA_LIST_ELEM, |el| {
                    nested(el, NFTA_SET_ELEM_KEY, |k| attr(k, NFTA_DATA_VALUE, &e.key));
                    if c.add {
                        nested(el, NFTA_SET_ELEM_DATA, |d| {
                            attr(d, NFTA_DATA_VALUE, &e.data)
                        });
                    }
                });
            }
        });
        let (ty, flags) = if c.add {
            (NFT_MSG_NEWSETELEM, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE)
        } else {
            (NFT_MSG_DELSETELEM, NLM_F_REQUEST | NLM_F_ACK)
        };
        out.extend(message(
            (NFNL_SUBSYS_NFTABLES << 8) | ty,
            flags,
            s,
            NFPROTO_IPV4,
            0,
            &attrs,
        ));
        acks.push(s);
    }
    s += 1;
    out.extend(message(
        NFNL_MSG_BATCH_END,
        NLM_F_REQUEST,
        s,
        0,
        NFNL_SUBSYS_NFTABLES,
        &[],
    ));
    (out, acks)
}

/// Applies `changes` in one transaction: all or nothing. An error (missing table or map,
/// an element that already exists with other data, one that is gone) leaves the table as
/// it was; the caller then rebuilds the whole table.
pub fn apply(table: &str, changes: &[MapChange]) -> Result<()> {
    let seq = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(1)
        & 0x3fff_ffff;
    let (bytes, mut pending) = encode(table, changes, seq);
    if pending.is_empty() {
        return Ok(());
    }
    let sock = match CACHED.lock().ok().and_then(|mut c| c.take()) {
        Some(s) => s,
        None => open_socket()?,
    };
    // SAFETY: an all-zero sockaddr_nl is valid; nl_pid 0 addresses the kernel.
    let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    kernel.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    // SAFETY: sending our buffer to the kernel address.
    let sent = unsafe {
        libc::sendto(
            sock.as_raw_fd(),
            bytes.as_ptr().cast(),
            bytes.len(),
            0,
            (&kernel as *const libc::sockaddr_nl).cast(),
            std::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t,
        )
    };
    if sent < 0 || sent as usize != bytes.len() {
        return Err(Error::io(
            "nf_tables netlink send",
            std::io::Error::last_os_error(),
        ));
    }
    let mut buf = vec![0u8; 16 * 1024];
    let acked = read_acks(&sock, &mut buf, &mut pending);
    if acked.is_ok()
        && let Ok(mut c) = CACHED.lock()
    {
        *c = Some(sock);
    }
    acked
}

/// The process's one nf_tables netlink socket, reused by every batch and closed only at
/// process exit. Why: releasing such a socket right after a commit blocks for an RCU grace
/// period (~10 ms here; the release notifier flushes the commit's pending cleanup, which
/// waits for readers). The monitor, which publishes and withdraws a container's ports,
/// exits after it has reported the container's exit, so nobody waits for that release.
/// A socket that saw an error is closed instead of kept, so the next batch starts clean.
static CACHED: std::sync::Mutex<Option<OwnedFd>> = std::sync::Mutex::new(None);

fn open_socket() -> Result<OwnedFd> {
    // SAFETY: plain socket(2); the fd is owned at once.
    let raw = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            NETLINK_NETFILTER,
        )
    };
    if raw < 0 {
        return Err(Error::io(
            "nf_tables netlink socket",
            std::io::Error::last_os_error(),
        ));
    }
    // SAFETY: raw is a fresh descriptor nobody else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    let tv = libc::timeval {
        tv_sec: 2,
        tv_usec: 0,
    };
    // SAFETY: setsockopt with a properly sized timeval.
    unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    Ok(sock)
}

fn read_acks(sock: &OwnedFd, buf: &mut [u8], pending: &mut Vec<u32>) -> Result<()> {
    while !pending.is_empty() {
        // SAFETY: reading into our own buffer.
        let n = unsafe { libc::recv(sock.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(Error::io(
                "nf_tables netlink ack",
                std::io::Error::last_os_error(),
            ));
        }
        // A datagram socket never reads 0 unless something is badly off; waiting again
        // would spin, so it counts as a failed batch (the caller rebuilds the table).
        if n == 0 {
            return Err(Error::Firewall(
                "nf_tables: empty netlink reply before every ACK".into(),
            ));
        }
        let mut msgs = &buf[..n as usize];
        while msgs.len() >= 16 {
            let len = u32::from_ne_bytes([msgs[0], msgs[1], msgs[2], msgs[3]]) as usize;
            let ty = u16::from_ne_bytes([msgs[4], msgs[5]]);
            let seq = u32::from_ne_bytes([msgs[8], msgs[9], msgs[10], msgs[11]]);
            if len < 16 || len > msgs.len() {
                break;
            }
            if ty == NLMSG_ERROR && len >= 20 {
                let code = i32::from_ne_bytes([msgs[16], msgs[17], msgs[18], msgs[19]]);
                if code != 0 {
                    return Err(Error::Firewall(format!(
                        "nf_tables: {}",
                        std::io::Error::from_raw_os_error(-code)
                    )));
                }
                pending.retain(|s| *s != seq);
            }
            let step = len.next_multiple_of(4).min(msgs.len());
            msgs = &msgs[step..];
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::firewall::{PortRule, port_elements};

    /// A decoded netlink attribute: type without flags, nested flag, payload.
    #[derive(Debug)]
    struct Attr {
        ty: u16,
        nested: bool,
        payload: Vec<u8>,
    }

    fn attrs(mut b: &[u8]) -> Vec<Attr> {
        let mut v = Vec::new();
        while !b.is_empty() {
            assert!(b.len() >= 4, "attribute header cut: {b:?}");
            let len = u16::from_ne_bytes([b[0], b[1]]) as usize;
            let ty = u16::from_ne_bytes([b[2], b[3]]);
            assert!(
                len >= 4 && len <= b.len(),
                "attribute length {len} of {}",
                b.len()
            );
            v.push(Attr {
                ty: ty & !NLA_F_NESTED,
                nested: ty & NLA_F_NESTED != 0,
                payload: b[4..len].to_vec(),
            });
            b = &b[len.next_multiple_of(4).min(b.len())..];
        }
        v
    }

    /// One netlink message: (type, flags, seq, nfgenmsg family, res_id, attribute bytes).
    fn messages(mut b: &[u8]) -> Vec<(u16, u16, u32, u8, u16, Vec<u8>)> {
        let mut v = Vec::new();
        while !b.is_empty() {
            let len = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize;
            assert!(
                len >= 20 && len <= b.len() && len.is_multiple_of(4),
                "message length {len}"
            );
            let ty = u16::from_ne_bytes([b[4], b[5]]);
            let flags = u16::from_ne_bytes([b[6], b[7]]);
            let seq = u32::from_ne_bytes([b[8], b[9], b[10], b[11]]);
            assert_eq!(&b[12..16], &[0, 0, 0, 0], "port id is the kernel's to fill");
            assert_eq!(b[17], 0, "NFNETLINK_V0");
            let res_id = u16::from_be_bytes([b[18], b[19]]);
            v.push((ty, flags, seq, b[16], res_id, b[20..len].to_vec()));
            b = &b[len..];
        }
        v
    }

    fn port(proto: &str, host_ip: Option<&str>, host_port: u16, target: &str, to: u16) -> PortRule {
        PortRule {
            proto: proto.into(),
            host_ip: host_ip.map(|i| i.parse().unwrap()),
            host_port,
            target: target.parse().unwrap(),
            target_port: to,
        }
    }

    #[test]
    fn concatenations_pad_every_field_to_a_register() {
        let k = Concat::default()
            .field(&[17])
            .field(&5353u16.to_be_bytes())
            .bytes();
        // What `nft --debug=netlink` shows for `udp . 5353`: 00000011 0000e914.
        assert_eq!(k, [17, 0, 0, 0, 0x14, 0xe9, 0, 0]);
    }

    /// The element list must be byte for byte what nft itself sends. Reference: nftables
    /// 1.0.6, `nft --debug=mnl add element ip t ports_addr_port { 127.0.0.1 . udp . 5353 :
    /// 53 }` (and `ports_any_ip { tcp . 8080 : 10.1.0.7 }`) against maps declared as
    /// ours are; nft adds NFTA_SET_ELEM_LIST_SET_ID, which a set found by name ignores.
    #[test]
    fn elements_match_what_nft_sends() {
        let table_attr = [6u8, 0, 1, 0, b't', 0, 0, 0];
        let cases = [
            (
                port("udp", Some("127.0.0.1"), 5353, "10.1.0.2", 53),
                "ports_addr_port",
                vec![
                    40u8, 0, 3, 0x80, // NFTA_SET_ELEM_LIST_ELEMENTS, nested
                    36, 0, 1, 0x80, // NFTA_LIST_ELEM
                    20, 0, 1, 0x80, // NFTA_SET_ELEM_KEY
                    16, 0, 1, 0, // NFTA_DATA_VALUE: 127.0.0.1 . udp . 5353
                    0x7f, 0, 0, 1, 0x11, 0, 0, 0, 0x14, 0xe9, 0, 0, //
                    12, 0, 2, 0x80, // NFTA_SET_ELEM_DATA
                    6, 0, 1, 0, 0, 0x35, 0, 0, // NFTA_DATA_VALUE: 53 (2 bytes, padded)
                ],
            ),
            (
                port("tcp", None, 8080, "10.1.0.7", 80),
                "ports_any_ip",
                vec![
                    36u8, 0, 3, 0x80, //
                    32, 0, 1, 0x80, //
                    16, 0, 1, 0x80, //
                    12, 0, 1, 0, 6, 0, 0, 0, 0x1f, 0x90, 0, 0, // tcp . 8080
                    12, 0, 2, 0x80, //
                    8, 0, 1, 0, 10, 1, 0, 7, // 10.1.0.7
                ],
            ),
        ];
        for (rule, map, want_elements) in cases {
            let elements: Vec<Element> = port_elements(&rule)
                .into_iter()
                .filter(|(m, _)| *m == map)
                .map(|(_, e)| e)
                .collect();
            assert_eq!(elements.len(), 1, "{map}");
            let change = MapChange {
                map: map.into(),
                add: true,
                elements,
            };
            let (bytes, _) = encode("t", &[change], 7);
            let msgs = messages(&bytes);
            let (ty, flags, _, family, _, body) = &msgs[1];
            assert_eq!(
                *ty, 0x0a0c,
                "NFNL_SUBSYS_NFTABLES << 8 | NFT_MSG_NEWSETELEM"
            );
            assert_eq!(
                *flags, 0x405,
                "REQUEST | ACK | CREATE (no EXCL: re-adding is fine)"
            );
            assert_eq!(*family, 2, "NFPROTO_IPV4");
            let mut set_attr = vec![0u8, 0, 2, 0];
            set_attr.extend_from_slice(map.as_bytes());
            set_attr.push(0);
            set_attr[0] = set_attr.len() as u8;
            while !set_attr.len().is_multiple_of(4) {
                set_attr.push(0);
            }
            let mut want = table_attr.to_vec();
            want.extend(set_attr);
            want.extend(want_elements);
            assert_eq!(body, &want, "{map}");
        }
    }

    /// Decodes a whole batch: framing, sequence numbers, which messages ask for ACKs, and
    /// every element's key and data where they belong (deletes carry keys only).
    #[test]
    fn batch_decodes_back_to_the_changes() {
        let web = port("tcp", None, 18080, "172.18.0.5", 80);
        let dns = port("udp", Some("127.0.0.1"), 5353, "172.18.0.5", 53);
        let mut add: Vec<MapChange> = Vec::new();
        for (map, by_addr, _) in crate::firewall::MAPS {
            let rule = if by_addr { &dns } else { &web };
            add.push(MapChange {
                map: map.into(),
                add: true,
                elements: port_elements(rule)
                    .into_iter()
                    .filter(|(m, _)| *m == map)
                    .map(|(_, e)| e)
                    .collect(),
            });
        }
        let mut changes = vec![MapChange {
            map: "ports_any_port".into(),
            add: false,
            elements: port_elements(&port("tcp", None, 9, "172.18.0.9", 9))
                .into_iter()
                .filter(|(m, _)| *m == "ports_any_port")
                .map(|(_, e)| e)
                .collect(),
        }];
        changes.extend(add);
        changes.push(MapChange {
            map: "nothing_to_do".into(),
            add: true,
            elements: vec![],
        });
        let (bytes, acks) = encode("pelagos_x", &changes, 1000);
        let msgs = messages(&bytes);
        // begin, 1 delete, 4 adds, end; the empty change sends nothing.
        assert_eq!(msgs.len(), 7);
        let seqs: Vec<u32> = msgs.iter().map(|m| m.2).collect();
        assert_eq!(seqs, (1000..1007).collect::<Vec<_>>());
        assert_eq!(acks, (1001..1006).collect::<Vec<_>>());
        for m in [&msgs[0], &msgs[6]] {
            // Batch delimiters: AF_UNSPEC, resource id = the nf_tables subsystem.
            assert_eq!((m.3, m.4), (0, NFNL_SUBSYS_NFTABLES));
            assert_eq!(m.1, NLM_F_REQUEST);
            assert!(m.5.is_empty());
        }
        assert_eq!(msgs[0].0, NFNL_MSG_BATCH_BEGIN);
        assert_eq!(msgs[6].0, NFNL_MSG_BATCH_END);
        for (i, m) in msgs[1..6].iter().enumerate() {
            let change = &changes[i];
            let want_ty = if change.add {
                NFT_MSG_NEWSETELEM
            } else {
                NFT_MSG_DELSETELEM
            };
            assert_eq!(m.0, (NFNL_SUBSYS_NFTABLES << 8) | want_ty);
            assert_ne!(m.1 & NLM_F_ACK, 0, "every change is acknowledged");
            let top = attrs(&m.5);
            assert_eq!(top.len(), 3);
            assert_eq!((top[0].ty, &top[0].payload[..]), (1, &b"pelagos_x\0"[..]));
            assert_eq!(top[1].payload, cstr(&change.map));
            assert!(top[2].nested && top[2].ty == NFTA_SET_ELEM_LIST_ELEMENTS);
            let list = attrs(&top[2].payload);
            assert_eq!(list.len(), change.elements.len());
            for (el, want) in list.iter().zip(&change.elements) {
                assert!(el.nested && el.ty == NFTA_LIST_ELEM);
                let parts = attrs(&el.payload);
                assert_eq!(parts.len(), if change.add { 2 } else { 1 });
                assert!(parts[0].nested && parts[0].ty == NFTA_SET_ELEM_KEY);
                let key = attrs(&parts[0].payload);
                assert_eq!((key[0].ty, &key[0].payload), (NFTA_DATA_VALUE, &want.key));
                assert!(
                    key[0].payload.len().is_multiple_of(4),
                    "keys are whole registers"
                );
                if change.add {
                    assert!(parts[1].nested && parts[1].ty == NFTA_SET_ELEM_DATA);
                    let data = attrs(&parts[1].payload);
                    assert_eq!(
                        (data[0].ty, &data[0].payload),
                        (NFTA_DATA_VALUE, &want.data)
                    );
                }
            }
        }
        // The by-address key: address, protocol, port, each in its own register.
        let addr_key = &changes[1].elements[0].key;
        assert_eq!(addr_key, &[127, 0, 0, 1, 17, 0, 0, 0, 0x14, 0xe9, 0, 0]);
    }

    #[test]
    fn nothing_to_change_sends_nothing() {
        let (_, acks) = encode("t", &[], 1);
        assert!(acks.is_empty());
        assert!(apply("t", &[]).is_ok());
    }
}
