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

    #[test]
    fn concatenations_pad_every_field_to_a_register() {
        let k = Concat::default()
            .field(&[17])
            .field(&5353u16.to_be_bytes())
            .bytes();
        // What `nft --debug=netlink` shows for `udp . 5353`: 00000011 0000e914.
        assert_eq!(k, [17, 0, 0, 0, 0x14, 0xe9, 0, 0]);
    }

    #[test]
    fn batch_is_framed_and_acked_per_map() {
        let change = MapChange {
            map: "ports_any".into(),
            add: true,
            elements: vec![Element {
                key: vec![6, 0, 0, 0, 0x1f, 0x90, 0, 0],
                data: vec![172, 17, 0, 2, 0, 80, 0, 0],
            }],
        };
        let empty = MapChange {
            map: "ports4".into(),
            add: true,
            elements: vec![],
        };
        let (b, acks) = encode("pelagos", &[change, empty], 100);
        assert_eq!(acks, vec![101]);
        // begin (20) + one message + end (20); lengths add up.
        let first = u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize;
        assert_eq!(first, 20);
        assert_eq!(u16::from_ne_bytes([b[4], b[5]]), NFNL_MSG_BATCH_BEGIN);
        let second = u32::from_ne_bytes([b[20], b[21], b[22], b[23]]) as usize;
        assert_eq!(
            u16::from_ne_bytes([b[24], b[25]]),
            (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWSETELEM
        );
        assert_eq!(b.len(), 20 + second + 20);
        let body = &b[20..20 + second];
        assert!(body.windows(8).any(|w| w == b"pelagos\0"));
        assert!(body.windows(10).any(|w| w == b"ports_any\0"));
        assert!(body.windows(8).any(|w| w == [172, 17, 0, 2, 0, 80, 0, 0]));
    }
}
