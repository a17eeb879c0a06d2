//! Connection counts per real server (`ActiveConn`/`InActConn` of `ipvsadm -L -n`) for the
//! nftables plane, from the kernel's connection tracking, read over ctnetlink (one dump of the
//! conntrack table of the caller's network namespace, IPv4 and IPv6).
//!
//! A connection the plane sent to a real server by NAT is a conntrack entry whose original
//! destination is the virtual service, whose status says it was destination-NATed, and whose
//! reply comes from the real server. IPVS counts a TCP connection in `ESTABLISHED` as active and
//! every other one (handshake, `FIN_WAIT`, `TIME_WAIT`, ..., and every UDP flow) as inactive;
//! so does [`count`].
//!
//! Direct routing is not counted here: the plane drops the original packet after duplicating
//! it to the real server, so conntrack never confirms a DR connection (see the dataplane's
//! module documentation); those real servers show 0, as before.
//!
//! [`dump`] blocks (a netlink round trip, under a receive timeout); [`parse`] and [`count`]
//! are pure and tested on bytes laid out as the kernel sends them.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use crate::dataplane::{Protocol, ServiceKey};

const NFNL_SUBSYS_CTNETLINK: u16 = 1;
const IPCTNL_MSG_CT_GET: u16 = 1;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_DUMP: u16 = 0x300;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLA_TYPE_MASK: u16 = 0x3fff;

const CTA_TUPLE_ORIG: u16 = 1;
const CTA_TUPLE_REPLY: u16 = 2;
const CTA_STATUS: u16 = 3;
const CTA_PROTOINFO: u16 = 4;
const CTA_TIMEOUT: u16 = 7;
const CTA_TUPLE_IP: u16 = 1;
const CTA_TUPLE_PROTO: u16 = 2;
const CTA_IP_V4_SRC: u16 = 1;
const CTA_IP_V4_DST: u16 = 2;
const CTA_IP_V6_SRC: u16 = 3;
const CTA_IP_V6_DST: u16 = 4;
const CTA_PROTO_NUM: u16 = 1;
const CTA_PROTO_SRC_PORT: u16 = 2;
const CTA_PROTO_DST_PORT: u16 = 3;
const CTA_PROTOINFO_TCP: u16 = 1;
const CTA_PROTOINFO_TCP_STATE: u16 = 1;

/// `IPS_DST_NAT`: the entry's destination was rewritten.
pub const IPS_DST_NAT: u32 = 1 << 5;
/// `TCP_CONNTRACK_ESTABLISHED`.
pub const TCP_ESTABLISHED: u8 = 3;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;

/// Most entries one dump reads: a bound on the work of one `halo lvs`, far above what a
/// director table tracks in the tests and benches (the kernel's default table holds 262,144).
pub const MAX_ENTRIES: usize = 4_000_000;

/// The part of one conntrack entry the counts need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    pub proto: u8,
    /// Original direction: the client and the address it asked for (the VIP).
    pub orig_src: SocketAddr,
    pub orig_dst: SocketAddr,
    /// Reply direction's source: who answers (the real server after DNAT).
    pub reply_src: SocketAddr,
    pub status: u32,
    /// TCP only.
    pub tcp_state: Option<u8>,
    /// Seconds until the entry expires.
    pub timeout: u32,
}

/// Active and inactive connections of one real server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Conns {
    pub active: u32,
    pub inactive: u32,
}

/// Per (virtual service, real server) of `services`: the NATed connections of `entries`.
pub fn count(entries: &[Entry], services: &[ServiceKey]) -> BTreeMap<(ServiceKey, SocketAddr), Conns> {
    let mut out: BTreeMap<(ServiceKey, SocketAddr), Conns> = BTreeMap::new();
    for e in entries.iter().filter(|e| e.status & IPS_DST_NAT != 0) {
        let proto = match e.proto {
            IPPROTO_TCP => Protocol::Tcp,
            IPPROTO_UDP => Protocol::Udp,
            _ => continue,
        };
        let key = ServiceKey::addr(proto, e.orig_dst);
        if !services.contains(&key) {
            continue;
        }
        let c = out.entry((key, e.reply_src)).or_default();
        if proto == Protocol::Tcp && e.tcp_state == Some(TCP_ESTABLISHED) {
            c.active = c.active.saturating_add(1);
        } else {
            c.inactive = c.inactive.saturating_add(1);
        }
    }
    out
}

/// Most connection entries [`connections`] lists (`halo lvs -c`): a bound on the answer's size.
pub const MAX_LISTED: usize = 65_536;

/// IPVS's name for a conntrack TCP state (`ip_vs_proto_tcp.c`'s `tcp_state_name_table`).
pub fn tcp_state_name(state: Option<u8>) -> &'static str {
    match state {
        Some(1) | Some(9) => "SYN_SENT",
        Some(2) => "SYN_RECV",
        Some(3) => "ESTABLISHED",
        Some(4) => "FIN_WAIT",
        Some(5) => "CLOSE_WAIT",
        Some(6) => "LAST_ACK",
        Some(7) => "TIME_WAIT",
        Some(8) => "CLOSE",
        _ => "NONE",
    }
}

/// The NATed connections of `services` as `ipvsadm -L -c` lists them (at most
/// [`MAX_LISTED`]), in the order of the dump.
pub fn connections(entries: &[Entry], services: &[ServiceKey]) -> Vec<crate::ipvsadm::Connection> {
    entries
        .iter()
        .filter(|e| e.status & IPS_DST_NAT != 0)
        .filter_map(|e| {
            let (protocol, state) = match e.proto {
                IPPROTO_TCP => (Protocol::Tcp, tcp_state_name(e.tcp_state)),
                IPPROTO_UDP => (Protocol::Udp, "UDP"),
                _ => return None,
            };
            let key = ServiceKey::addr(protocol, e.orig_dst);
            services.contains(&key).then(|| crate::ipvsadm::Connection {
                protocol: if protocol == Protocol::Tcp { "TCP" } else { "UDP" }.to_string(),
                source: e.orig_src,
                virtual_addr: e.orig_dst,
                destination: e.reply_src,
                state: state.to_string(),
                expires: e.timeout,
                pe: None,
            })
        })
        .take(MAX_LISTED)
        .collect()
}

/// Why the table could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConntrackError {
    #[error("conntrack netlink socket: {0}")]
    Socket(#[source] nix::Error),
    #[error("conntrack dump: {0}")]
    Io(#[source] nix::Error),
    #[error("conntrack dump refused by the kernel: {0}")]
    Kernel(nix::Error),
    #[error("conntrack dump: malformed message: {0}")]
    Malformed(&'static str),
}

/// Dumps the IPv4 conntrack table of this network namespace (blocks; each read waits at most
/// `timeout`).
pub fn dump(timeout: Duration) -> Result<Vec<Entry>, ConntrackError> {
    use nix::sys::socket::{
        recv, sendto, setsockopt, socket, sockopt, AddressFamily, MsgFlags, NetlinkAddr, SockFlag,
        SockProtocol, SockType,
    };
    use nix::sys::time::TimeVal;
    let fd =
        socket(AddressFamily::Netlink, SockType::Raw, SockFlag::SOCK_CLOEXEC, SockProtocol::NetlinkNetFilter)
            .map_err(ConntrackError::Socket)?;
    let tv = TimeVal::new(
        i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX),
        i64::from(timeout.subsec_micros()),
    );
    setsockopt(&fd, sockopt::ReceiveTimeout, &tv).map_err(ConntrackError::Socket)?;
    // A dump arrives in many datagrams; a large buffer keeps the kernel from dropping them.
    let _ = setsockopt(&fd, sockopt::RcvBuf, &(1 << 20));
    let seq: u32 = 1;
    sendto(std::os::fd::AsRawFd::as_raw_fd(&fd), &request(seq), &NetlinkAddr::new(0, 0), MsgFlags::empty())
        .map_err(ConntrackError::Io)?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut entries = Vec::new();
    loop {
        let n = recv(std::os::fd::AsRawFd::as_raw_fd(&fd), &mut buf, MsgFlags::empty())
            .map_err(ConntrackError::Io)?;
        if n == 0 {
            return Err(ConntrackError::Malformed("the socket closed before the end of the dump"));
        }
        if parse(&buf[..n], seq, &mut entries)? || entries.len() >= MAX_ENTRIES {
            return Ok(entries);
        }
    }
}

/// The dump request: `IPCTNL_MSG_CT_GET` with `NLM_F_DUMP`, family AF_UNSPEC (IPv4 and
/// IPv6 entries).
pub fn request(seq: u32) -> Vec<u8> {
    let mut m = Vec::with_capacity(20);
    m.extend_from_slice(&20u32.to_ne_bytes());
    m.extend_from_slice(&((NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET).to_ne_bytes());
    m.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    // nfgenmsg: family, version (NFNETLINK_V0), res_id (big endian).
    m.extend_from_slice(&[0, 0, 0, 0]);
    m
}

fn af_of(ip: IpAddr) -> u8 {
    let af = if ip.is_ipv4() {
        nix::sys::socket::AddressFamily::Inet
    } else {
        nix::sys::socket::AddressFamily::Inet6
    };
    af as i32 as u8
}

/// Reads the netlink messages of one datagram into `out`; true at the end of the dump.
pub fn parse(mut buf: &[u8], seq: u32, out: &mut Vec<Entry>) -> Result<bool, ConntrackError> {
    while buf.len() >= 16 {
        let len = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        let kind = u16::from_ne_bytes([buf[4], buf[5]]);
        let mseq = u32::from_ne_bytes([buf[8], buf[9], buf[10], buf[11]]);
        if len < 16 || len > buf.len() {
            return Err(ConntrackError::Malformed("a message longer than its datagram"));
        }
        let payload = &buf[16..len];
        if mseq == seq {
            match kind {
                NLMSG_DONE => return Ok(true),
                NLMSG_ERROR => {
                    let code = payload
                        .get(..4)
                        .map(|b| i32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
                        .ok_or(ConntrackError::Malformed("a short error message"))?;
                    if code != 0 {
                        return Err(ConntrackError::Kernel(nix::Error::from_raw(-code)));
                    }
                }
                _ if kind >> 8 == NFNL_SUBSYS_CTNETLINK => {
                    if let Some(e) = payload.get(4..).and_then(entry) {
                        out.push(e);
                    }
                }
                _ => {}
            }
        }
        buf = &buf[align(len).min(buf.len())..];
    }
    Ok(false)
}

fn align(n: usize) -> usize {
    (n + 3) & !3
}

/// The attributes of `buf`: (type without flags, payload).
fn attrs(mut buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if buf.len() < 4 {
            return None;
        }
        let len = u16::from_ne_bytes([buf[0], buf[1]]) as usize;
        let kind = u16::from_ne_bytes([buf[2], buf[3]]) & NLA_TYPE_MASK;
        if len < 4 || len > buf.len() {
            return None;
        }
        let payload = &buf[4..len];
        buf = &buf[align(len).min(buf.len())..];
        Some((kind, payload))
    })
}

fn attr(buf: &[u8], kind: u16) -> Option<&[u8]> {
    attrs(buf).find(|(k, _)| *k == kind).map(|(_, p)| p)
}

/// (proto, source, destination) of a `CTA_TUPLE_*`.
fn tuple(buf: &[u8]) -> Option<(u8, SocketAddr, SocketAddr)> {
    let ip = attr(buf, CTA_TUPLE_IP)?;
    let v4 = |k| -> Option<IpAddr> {
        let b: [u8; 4] = attr(ip, k)?.try_into().ok()?;
        Some(IpAddr::V4(Ipv4Addr::from(b)))
    };
    let v6 = |k| -> Option<IpAddr> {
        let b: [u8; 16] = attr(ip, k)?.try_into().ok()?;
        Some(IpAddr::V6(Ipv6Addr::from(b)))
    };
    let (src, dst) = match (v4(CTA_IP_V4_SRC), v4(CTA_IP_V4_DST)) {
        (Some(s), Some(d)) => (s, d),
        _ => (v6(CTA_IP_V6_SRC)?, v6(CTA_IP_V6_DST)?),
    };
    let proto = attr(buf, CTA_TUPLE_PROTO)?;
    let num = *attr(proto, CTA_PROTO_NUM)?.first()?;
    let port = |k| -> u16 {
        attr(proto, k).and_then(|b| <[u8; 2]>::try_from(b).ok()).map(u16::from_be_bytes).unwrap_or(0)
    };
    Some((
        num,
        SocketAddr::new(src, port(CTA_PROTO_SRC_PORT)),
        SocketAddr::new(dst, port(CTA_PROTO_DST_PORT)),
    ))
}

fn entry(buf: &[u8]) -> Option<Entry> {
    let (proto, orig_src, orig_dst) = tuple(attr(buf, CTA_TUPLE_ORIG)?)?;
    let (_, reply_src, _) = tuple(attr(buf, CTA_TUPLE_REPLY)?)?;
    let status = attr(buf, CTA_STATUS).and_then(|b| <[u8; 4]>::try_from(b).ok()).map(u32::from_be_bytes)?;
    let tcp_state = attr(buf, CTA_PROTOINFO)
        .and_then(|p| attr(p, CTA_PROTOINFO_TCP))
        .and_then(|t| attr(t, CTA_PROTOINFO_TCP_STATE))
        .and_then(|s| s.first().copied());
    let timeout = attr(buf, CTA_TIMEOUT).and_then(|b| <[u8; 4]>::try_from(b).ok()).map(u32::from_be_bytes);
    Some(Entry { proto, orig_src, orig_dst, reply_src, status, tcp_state, timeout: timeout.unwrap_or(0) })
}

// ------------------------------------------------------------------------------------------
// Synced NAT connections: read on the active director, created on the new one

/// One LVS-NAT connection as the director sync carries it: the client, the virtual service it
/// asked for, the real server it was sent to (by DNAT), and how long it had left.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct NatConn {
    pub proto: Protocol,
    pub client: SocketAddr,
    /// The virtual service's address and port (the original destination).
    pub vip: SocketAddr,
    /// The real server the connection is bound to.
    pub real: SocketAddr,
    /// Seconds the entry had left when read.
    pub timeout_s: u32,
}

/// The entries of `entries` worth carrying to a standby director: destination-NATed to one of
/// `reals` (per virtual service, its real servers), TCP ones in `ESTABLISHED` (a handshake or
/// a closing connection is not worth a new entry: the client retries or is done) and UDP ones
/// that saw a reply.
pub fn nat_conns(entries: &[Entry], reals: &[(ServiceKey, SocketAddr)]) -> Vec<NatConn> {
    entries
        .iter()
        .filter(|e| e.status & IPS_DST_NAT != 0 && e.timeout > 0)
        .filter_map(|e| {
            let proto = match (e.proto, e.tcp_state) {
                (IPPROTO_TCP, Some(TCP_ESTABLISHED)) => Protocol::Tcp,
                (IPPROTO_UDP, _) if e.status & IPS_SEEN_REPLY != 0 => Protocol::Udp,
                _ => return None,
            };
            let key = ServiceKey::addr(proto, e.orig_dst);
            reals.contains(&(key, e.reply_src)).then_some(NatConn {
                proto,
                client: e.orig_src,
                vip: e.orig_dst,
                real: e.reply_src,
                timeout_s: e.timeout,
            })
        })
        .collect()
}

const IPCTNL_MSG_CT_NEW: u16 = 0;
const NLM_F_ACK: u16 = 4;
const NLM_F_EXCL: u16 = 0x200;
const NLM_F_CREATE: u16 = 0x400;
const NLA_F_NESTED: u16 = 0x8000;
const CTA_NAT_DST: u16 = 13;
const CTA_NAT_V4_MINIP: u16 = 1;
const CTA_NAT_V4_MAXIP: u16 = 2;
const CTA_NAT_V6_MINIP: u16 = 4;
const CTA_NAT_V6_MAXIP: u16 = 5;
const CTA_NAT_PROTO: u16 = 3;
const CTA_PROTONAT_PORT_MIN: u16 = 1;
const CTA_PROTONAT_PORT_MAX: u16 = 2;
const CTA_PROTOINFO_TCP_FLAGS_ORIGINAL: u16 = 4;
const CTA_PROTOINFO_TCP_FLAGS_REPLY: u16 = 5;
/// `IP_CT_TCP_FLAG_BE_LIBERAL`: the new director never saw the connection's windows.
const IP_CT_TCP_FLAG_BE_LIBERAL: u8 = 0x08;
/// `IPS_SEEN_REPLY`, `IPS_ASSURED`, `IPS_CONFIRMED`.
pub const IPS_SEEN_REPLY: u32 = 1 << 1;
pub const IPS_ASSURED: u32 = 1 << 2;
pub const IPS_CONFIRMED: u32 = 1 << 3;

/// Appends one attribute (padded to 4 bytes).
fn put(m: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    m.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
    m.extend_from_slice(&kind.to_ne_bytes());
    m.extend_from_slice(payload);
    m.resize(align(m.len()), 0);
}

fn octets(ip: IpAddr) -> Vec<u8> {
    match ip {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

fn put_tuple(m: &mut Vec<u8>, kind: u16, proto: u8, src: SocketAddr, dst: SocketAddr) {
    let mut ip = Vec::new();
    let (ks, kd) =
        if src.is_ipv4() { (CTA_IP_V4_SRC, CTA_IP_V4_DST) } else { (CTA_IP_V6_SRC, CTA_IP_V6_DST) };
    put(&mut ip, ks, &octets(src.ip()));
    put(&mut ip, kd, &octets(dst.ip()));
    let mut pr = Vec::new();
    put(&mut pr, CTA_PROTO_NUM, &[proto]);
    put(&mut pr, CTA_PROTO_SRC_PORT, &src.port().to_be_bytes());
    put(&mut pr, CTA_PROTO_DST_PORT, &dst.port().to_be_bytes());
    let mut t = Vec::new();
    put(&mut t, CTA_TUPLE_IP | NLA_F_NESTED, &ip);
    put(&mut t, CTA_TUPLE_PROTO | NLA_F_NESTED, &pr);
    put(m, kind | NLA_F_NESTED, &t);
}

/// The `IPCTNL_MSG_CT_NEW` request (`NLM_F_CREATE|NLM_F_EXCL`, acknowledged) that makes `c`'s
/// entry as conntrackd does on a new primary: the original tuple (client → VIP), the reply
/// tuple before NAT (VIP → client), the DNAT binding to the real server (`CTA_NAT_DST`, so the
/// kernel rewrites the connection's packets as the old director did), its timeout, the status
/// of an established, assured connection and, for TCP, state `ESTABLISHED` with liberal window
/// tracking in both directions (the windows are not synced; the kernel learns them again).
pub fn create_request(c: &NatConn, seq: u32) -> Vec<u8> {
    let proto = match c.proto {
        Protocol::Tcp => IPPROTO_TCP,
        Protocol::Udp => IPPROTO_UDP,
    };
    let mut body = vec![af_of(c.vip.ip()), 0, 0, 0];
    put_tuple(&mut body, CTA_TUPLE_ORIG, proto, c.client, c.vip);
    // The reply tuple before NAT (the original one inverted, as conntrackd's
    // NFCT_SOPT_SETUP_REPLY makes it): the kernel derives the connection's current tuple from
    // it, sees that CTA_NAT_DST changes its destination, sets IPS_DST_NAT and rewrites the
    // reply tuple to come from the real server. Given the real server's tuple here, it would
    // see nothing to change and leave the entry without its NAT bit: no packet rewritten.
    put_tuple(&mut body, CTA_TUPLE_REPLY, proto, c.vip, c.client);
    let mut nat = Vec::new();
    let (kmin, kmax) = if c.real.is_ipv4() {
        (CTA_NAT_V4_MINIP, CTA_NAT_V4_MAXIP)
    } else {
        (CTA_NAT_V6_MINIP, CTA_NAT_V6_MAXIP)
    };
    put(&mut nat, kmin, &octets(c.real.ip()));
    put(&mut nat, kmax, &octets(c.real.ip()));
    let mut ports = Vec::new();
    put(&mut ports, CTA_PROTONAT_PORT_MIN, &c.real.port().to_be_bytes());
    put(&mut ports, CTA_PROTONAT_PORT_MAX, &c.real.port().to_be_bytes());
    put(&mut nat, CTA_NAT_PROTO | NLA_F_NESTED, &ports);
    put(&mut body, CTA_NAT_DST | NLA_F_NESTED, &nat);
    put(&mut body, CTA_TIMEOUT, &c.timeout_s.max(1).to_be_bytes());
    // CONFIRMED too: the kernel sets it on a created entry before it applies CTA_STATUS and
    // refuses a status that would clear it.
    put(&mut body, CTA_STATUS, &(IPS_CONFIRMED | IPS_SEEN_REPLY | IPS_ASSURED).to_be_bytes());
    if c.proto == Protocol::Tcp {
        let liberal = [IP_CT_TCP_FLAG_BE_LIBERAL, IP_CT_TCP_FLAG_BE_LIBERAL];
        let mut tcp = Vec::new();
        put(&mut tcp, CTA_PROTOINFO_TCP_STATE, &[TCP_ESTABLISHED]);
        put(&mut tcp, CTA_PROTOINFO_TCP_FLAGS_ORIGINAL, &liberal);
        put(&mut tcp, CTA_PROTOINFO_TCP_FLAGS_REPLY, &liberal);
        let mut info = Vec::new();
        put(&mut info, CTA_PROTOINFO_TCP | NLA_F_NESTED, &tcp);
        put(&mut body, CTA_PROTOINFO | NLA_F_NESTED, &info);
    }
    let mut m = Vec::with_capacity(16 + body.len());
    m.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
    m.extend_from_slice(&((NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW).to_ne_bytes());
    m.extend_from_slice(&(NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL | NLM_F_ACK).to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend(body);
    m
}

/// What [`create`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Created {
    pub created: usize,
    pub failed: usize,
    /// The first failure: the connection and the kernel's answer.
    pub first_error: Option<String>,
}

/// Creates the conntrack entries of `conns` in this network namespace (blocks: one netlink
/// round trip per entry, each read waiting at most `timeout`). An entry the kernel refuses
/// (`EEXIST`: the connection is tracked already, ...) is counted in `failed`, the first such
/// answer kept; the others are still tried. `Err` only when there is no netlink socket.
pub fn create(conns: &[NatConn], timeout: Duration) -> Result<Created, ConntrackError> {
    use nix::sys::socket::{
        recv, sendto, setsockopt, socket, sockopt, AddressFamily, MsgFlags, NetlinkAddr, SockFlag,
        SockProtocol, SockType,
    };
    use nix::sys::time::TimeVal;
    use std::os::fd::AsRawFd;
    let mut out = Created::default();
    if conns.is_empty() {
        return Ok(out);
    }
    let fd =
        socket(AddressFamily::Netlink, SockType::Raw, SockFlag::SOCK_CLOEXEC, SockProtocol::NetlinkNetFilter)
            .map_err(ConntrackError::Socket)?;
    let tv = TimeVal::new(
        i64::try_from(timeout.as_secs()).unwrap_or(i64::MAX),
        i64::from(timeout.subsec_micros()),
    );
    setsockopt(&fd, sockopt::ReceiveTimeout, &tv).map_err(ConntrackError::Socket)?;
    let mut buf = vec![0u8; 8192];
    for (i, c) in conns.iter().enumerate() {
        let seq = (i as u32).wrapping_add(1);
        // EAGAIN: the kernel had to load its NAT module first; once more then.
        let mut res = Err(nix::Error::EAGAIN);
        for _ in 0..2 {
            res = sendto(fd.as_raw_fd(), &create_request(c, seq), &NetlinkAddr::new(0, 0), MsgFlags::empty())
                .and_then(|_| loop {
                    let n = recv(fd.as_raw_fd(), &mut buf, MsgFlags::empty())?;
                    if let Some(code) = ack(&buf[..n], seq) {
                        break if code == 0 { Ok(()) } else { Err(nix::Error::from_raw(-code)) };
                    }
                });
            if res != Err(nix::Error::EAGAIN) {
                break;
            }
        }
        match res {
            Ok(()) => out.created += 1,
            Err(e) => {
                out.failed += 1;
                if out.first_error.is_none() {
                    out.first_error = Some(format!(
                        "{} {} -> {} via {}: {e}",
                        if c.proto == Protocol::Tcp { "TCP" } else { "UDP" },
                        c.client,
                        c.vip,
                        c.real
                    ));
                }
            }
        }
    }
    Ok(out)
}

/// The error code of the acknowledgement of request `seq` in one datagram (0: done).
fn ack(mut buf: &[u8], seq: u32) -> Option<i32> {
    while buf.len() >= 16 {
        let len = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        let kind = u16::from_ne_bytes([buf[4], buf[5]]);
        let mseq = u32::from_ne_bytes([buf[8], buf[9], buf[10], buf[11]]);
        if len < 16 || len > buf.len() {
            return None;
        }
        if mseq == seq && kind == NLMSG_ERROR && len >= 20 {
            return Some(i32::from_ne_bytes([buf[16], buf[17], buf[18], buf[19]]));
        }
        buf = &buf[align(len).min(buf.len())..];
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One attribute (nested when `nested`), padded.
    fn nla(kind: u16, nested: bool, payload: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend_from_slice(&((4 + payload.len()) as u16).to_ne_bytes());
        v.extend_from_slice(&(kind | if nested { 0x8000 } else { 0 }).to_ne_bytes());
        v.extend_from_slice(payload);
        while v.len() % 4 != 0 {
            v.push(0);
        }
        v
    }

    fn tuple_attr(kind: u16, proto: u8, src: SocketAddr, dst: SocketAddr) -> Vec<u8> {
        let (ks, kd) =
            if src.is_ipv4() { (CTA_IP_V4_SRC, CTA_IP_V4_DST) } else { (CTA_IP_V6_SRC, CTA_IP_V6_DST) };
        let ip = [nla(ks, false, &octets(src.ip())), nla(kd, false, &octets(dst.ip()))].concat();
        let pr = [
            nla(CTA_PROTO_NUM, false, &[proto]),
            nla(CTA_PROTO_SRC_PORT, false, &src.port().to_be_bytes()),
            nla(CTA_PROTO_DST_PORT, false, &dst.port().to_be_bytes()),
        ]
        .concat();
        nla(kind, true, &[nla(CTA_TUPLE_IP, true, &ip), nla(CTA_TUPLE_PROTO, true, &pr)].concat())
    }

    fn message(seq: u32, e: &Entry) -> Vec<u8> {
        let mut body = vec![2, 0, 0, 0];
        body.extend(tuple_attr(CTA_TUPLE_ORIG, e.proto, e.orig_src, e.orig_dst));
        // The reply goes from the real server back to the client.
        body.extend(tuple_attr(CTA_TUPLE_REPLY, e.proto, e.reply_src, e.orig_src));
        body.extend(nla(CTA_STATUS, false, &e.status.to_be_bytes()));
        body.extend(nla(CTA_TIMEOUT, false, &e.timeout.to_be_bytes()));
        if let Some(s) = e.tcp_state {
            let tcp = nla(CTA_PROTOINFO_TCP, true, &nla(CTA_PROTOINFO_TCP_STATE, false, &[s]));
            body.extend(nla(CTA_PROTOINFO, true, &tcp));
        }
        let mut m = Vec::new();
        m.extend_from_slice(&((16 + body.len()) as u32).to_ne_bytes());
        m.extend_from_slice(&(NFNL_SUBSYS_CTNETLINK << 8).to_ne_bytes());
        m.extend_from_slice(&2u16.to_ne_bytes());
        m.extend_from_slice(&seq.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend(body);
        m
    }

    fn done(seq: u32) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&20u32.to_ne_bytes());
        m.extend_from_slice(&NLMSG_DONE.to_ne_bytes());
        m.extend_from_slice(&2u16.to_ne_bytes());
        m.extend_from_slice(&seq.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(&0i32.to_ne_bytes());
        m
    }

    /// The NAT services of the conntrack fixtures: TCP and UDP on 10.81.1.100, ports 80 and 53.
    fn web_and_dns() -> (ServiceKey, ServiceKey) {
        (
            ServiceKey::addr(Protocol::Tcp, a("10.81.1.100:80")),
            ServiceKey::addr(Protocol::Udp, a("10.81.1.100:53")),
        )
    }

    fn a(s: &str) -> SocketAddr {
        s.parse().expect("address")
    }

    fn e(proto: u8, dst: &str, real: &str, status: u32, tcp_state: Option<u8>) -> Entry {
        Entry {
            proto,
            orig_src: a("10.81.1.9:40000"),
            orig_dst: a(dst),
            reply_src: a(real),
            status,
            tcp_state,
            timeout: 431999,
        }
    }

    #[test]
    fn parses_the_kernels_layout_and_counts_like_ipvs() {
        let nat = IPS_DST_NAT | 0x8 | 0x4 | 0x2;
        let entries = [
            e(6, "10.81.1.100:80", "10.81.0.11:80", nat, Some(TCP_ESTABLISHED)),
            e(6, "10.81.1.100:80", "10.81.0.11:80", nat, Some(TCP_ESTABLISHED)),
            e(6, "10.81.1.100:80", "10.81.0.11:80", nat, Some(7)), // TIME_WAIT
            e(6, "10.81.1.100:80", "10.81.0.12:80", nat, Some(1)), // SYN_SENT
            e(17, "10.81.1.100:53", "10.81.0.12:53", nat, None),
            // Not the director's: not NATed, another address, another protocol.
            e(6, "10.81.1.100:80", "10.81.1.100:80", 0x8, Some(TCP_ESTABLISHED)),
            e(6, "10.81.1.200:80", "10.81.0.11:80", nat, Some(TCP_ESTABLISHED)),
            e(1, "10.81.1.100:0", "10.81.0.11:0", nat, None),
        ];
        let mut dgram = Vec::new();
        for x in &entries[..5] {
            dgram.extend(message(7, x));
        }
        let mut got = Vec::new();
        assert!(!parse(&dgram, 7, &mut got).expect("parses"), "no end yet");
        let mut dgram2: Vec<u8> = entries[5..].iter().flat_map(|x| message(7, x)).collect();
        dgram2.extend(done(7));
        assert!(parse(&dgram2, 7, &mut got).expect("parses"), "the end");
        assert_eq!(got, entries.to_vec());

        let (web, dns) = web_and_dns();
        let c = count(&got, &[web, dns]);
        assert_eq!(c.get(&(web, a("10.81.0.11:80"))), Some(&Conns { active: 2, inactive: 1 }));
        assert_eq!(c.get(&(web, a("10.81.0.12:80"))), Some(&Conns { active: 0, inactive: 1 }));
        assert_eq!(c.get(&(dns, a("10.81.0.12:53"))), Some(&Conns { active: 0, inactive: 1 }));
        assert_eq!(c.len(), 3);

        let m = crate::ipvsadm::Model {
            connections: connections(&got, &[web, dns]),
            ..crate::ipvsadm::Model::default()
        };
        assert_eq!(
            crate::ipvsadm::list_conn(&m),
            "IPVS connection entries\n\
             pro expire state       source             virtual            destination\n\
             TCP 7199:59 ESTABLISHED 10.81.1.9:40000    10.81.1.100:80     10.81.0.11:80\n\
             TCP 7199:59 ESTABLISHED 10.81.1.9:40000    10.81.1.100:80     10.81.0.11:80\n\
             TCP 7199:59 TIME_WAIT   10.81.1.9:40000    10.81.1.100:80     10.81.0.11:80\n\
             TCP 7199:59 SYN_SENT    10.81.1.9:40000    10.81.1.100:80     10.81.0.12:80\n\
             UDP 7199:59 UDP         10.81.1.9:40000    10.81.1.100:53     10.81.0.12:53\n"
        );
    }

    #[test]
    fn ipv6_entries_parse_and_count_for_ipv6_services() {
        let nat = IPS_DST_NAT | 0x8 | 0x4 | 0x2;
        let mut x = e(6, "[2001:db8:81::100]:80", "[2001:db8:80::11]:80", nat, Some(TCP_ESTABLISHED));
        x.orig_src = a("[2001:db8:81::9]:40000");
        let v4 = e(6, "10.81.1.100:80", "10.81.0.11:80", nat, Some(TCP_ESTABLISHED));
        let mut dgram = [message(4, &x), message(4, &v4)].concat();
        dgram.extend(done(4));
        let mut got = Vec::new();
        assert!(parse(&dgram, 4, &mut got).expect("parses"));
        assert_eq!(got, vec![x, v4]);
        let web6 = ServiceKey::addr(Protocol::Tcp, a("[2001:db8:81::100]:80"));
        let c = count(&got, &[web6]);
        assert_eq!(c.get(&(web6, a("[2001:db8:80::11]:80"))), Some(&Conns { active: 1, inactive: 0 }));
        assert_eq!(c.len(), 1, "the IPv4 entry is not the IPv6 service's");
        let conns = nat_conns(&got, &[(web6, a("[2001:db8:80::11]:80"))]);
        assert_eq!(conns.len(), 1);
        // The request that recreates it on a new director: family AF_INET6, IPv6 addresses.
        let m = create_request(&conns[0], 1);
        assert_eq!(m[16], 10, "nfgenmsg family AF_INET6");
        let body = &m[20..];
        let orig = attr(body, CTA_TUPLE_ORIG).expect("orig tuple");
        assert_eq!(tuple(orig), Some((6, conns[0].client, conns[0].vip)));
        let nat_dst = attr(body, CTA_NAT_DST).expect("nat");
        assert_eq!(attr(nat_dst, CTA_NAT_V6_MINIP), Some(&octets(conns[0].real.ip())[..]));
    }

    #[test]
    fn kernel_errors_and_garbage_are_errors_not_panics() {
        let mut m = done(3);
        m[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        m[16..20].copy_from_slice(&(-1i32).to_ne_bytes());
        assert!(matches!(parse(&m, 3, &mut Vec::new()), Err(ConntrackError::Kernel(_))));
        let mut m = done(3);
        m[0..4].copy_from_slice(&400u32.to_ne_bytes());
        assert!(matches!(parse(&m, 3, &mut Vec::new()), Err(ConntrackError::Malformed(_))));
        // Messages of another request are skipped; truncated attributes give no entry.
        let x = e(6, "10.81.1.100:80", "10.81.0.11:80", IPS_DST_NAT, Some(3));
        let mut got = Vec::new();
        assert!(!parse(&message(9, &x), 3, &mut got).expect("parses"));
        let mut short = message(3, &x);
        let n = short.len();
        short.truncate(n - 32);
        short[0..4].copy_from_slice(&((n - 32) as u32).to_ne_bytes());
        assert!(!parse(&short, 3, &mut got).expect("parses"));
        assert!(got.is_empty());
        assert_eq!(request(5).len(), 20);
    }
    /// Host-order u16/u32 as the kernel reads netlink headers (tests run little endian).
    fn h16(v: u16) -> [u8; 2] {
        v.to_ne_bytes()
    }

    #[test]
    fn create_request_is_laid_out_as_ctnetlink_expects() {
        let c = NatConn {
            proto: Protocol::Tcp,
            client: a("10.81.1.9:40000"),
            vip: a("10.81.1.100:7000"),
            real: a("10.81.0.12:7001"),
            timeout_s: 431990,
        };
        let m = create_request(&c, 7);
        // Written out by hand from linux/netfilter/nfnetlink_conntrack.h.
        let mut want: Vec<u8> = Vec::new();
        let hdr = |w: &mut Vec<u8>, len: u16, kind: u16| {
            w.extend_from_slice(&h16(len));
            w.extend_from_slice(&h16(kind));
        };
        // nlmsghdr: length, type (NFNL_SUBSYS_CTNETLINK << 8 | IPCTNL_MSG_CT_NEW = 0x100),
        // flags REQUEST|ACK|EXCL|CREATE = 0x605, seq 7, pid 0; nfgenmsg AF_INET, v0, res 0.
        want.extend_from_slice(&(m.len() as u32).to_ne_bytes());
        want.extend_from_slice(&h16(0x100));
        want.extend_from_slice(&h16(0x605));
        want.extend_from_slice(&7u32.to_ne_bytes());
        want.extend_from_slice(&0u32.to_ne_bytes());
        want.extend_from_slice(&[2, 0, 0, 0]);
        // CTA_TUPLE_ORIG (1|NESTED), 52 bytes: CTA_TUPLE_IP (20): SRC 10.81.1.9, DST
        // 10.81.1.100; CTA_TUPLE_PROTO (28): NUM 6 (padded), SRC_PORT 40000, DST_PORT 7000
        // (big endian, padded).
        for (kind, s, d, sp, dp) in [
            (0x8001u16, [10, 81, 1, 9], [10, 81, 1, 100], 40000u16, 7000u16),
            // CTA_TUPLE_REPLY (2|NESTED): before NAT, the original inverted (VIP → client).
            (0x8002u16, [10, 81, 1, 100], [10, 81, 1, 9], 7000, 40000),
        ] {
            hdr(&mut want, 52, kind);
            hdr(&mut want, 20, 0x8001);
            hdr(&mut want, 8, 1);
            want.extend_from_slice(&s);
            hdr(&mut want, 8, 2);
            want.extend_from_slice(&d);
            hdr(&mut want, 28, 0x8002);
            hdr(&mut want, 5, 1);
            want.extend_from_slice(&[6, 0, 0, 0]);
            hdr(&mut want, 6, 2);
            want.extend_from_slice(&sp.to_be_bytes());
            want.extend_from_slice(&[0, 0]);
            hdr(&mut want, 6, 3);
            want.extend_from_slice(&dp.to_be_bytes());
            want.extend_from_slice(&[0, 0]);
        }
        // CTA_NAT_DST (13|NESTED), 40: V4_MINIP, V4_MAXIP 10.81.0.12, CTA_NAT_PROTO (3|NESTED,
        // 20): PORT_MIN, PORT_MAX 7001.
        hdr(&mut want, 40, 0x800d);
        hdr(&mut want, 8, 1);
        want.extend_from_slice(&[10, 81, 0, 12]);
        hdr(&mut want, 8, 2);
        want.extend_from_slice(&[10, 81, 0, 12]);
        hdr(&mut want, 20, 0x8003);
        hdr(&mut want, 6, 1);
        want.extend_from_slice(&[0x1b, 0x59, 0, 0]);
        hdr(&mut want, 6, 2);
        want.extend_from_slice(&[0x1b, 0x59, 0, 0]);
        // CTA_TIMEOUT (7) 431990 big endian; CTA_STATUS (3) CONFIRMED|ASSURED|SEEN_REPLY = 0xe.
        hdr(&mut want, 8, 7);
        want.extend_from_slice(&[0x00, 0x06, 0x97, 0x76]);
        hdr(&mut want, 8, 3);
        want.extend_from_slice(&[0, 0, 0, 0x0e]);
        // CTA_PROTOINFO (4|NESTED, 32) > CTA_PROTOINFO_TCP (1|NESTED, 28) > STATE 3 (padded),
        // FLAGS_ORIGINAL and FLAGS_REPLY {flags BE_LIBERAL 0x08, mask 0x08} (padded).
        hdr(&mut want, 32, 0x8004);
        hdr(&mut want, 28, 0x8001);
        hdr(&mut want, 5, 1);
        want.extend_from_slice(&[3, 0, 0, 0]);
        hdr(&mut want, 6, 4);
        want.extend_from_slice(&[8, 8, 0, 0]);
        hdr(&mut want, 6, 5);
        want.extend_from_slice(&[8, 8, 0, 0]);
        assert_eq!(m.len(), 20 + 52 + 52 + 40 + 8 + 8 + 32);
        assert_eq!(m, want);

        // UDP: no protocol info; the rest the same shape.
        let u = create_request(&NatConn { proto: Protocol::Udp, ..c }, 8);
        assert_eq!(u.len(), m.len() - 32);
        assert_eq!(u[20 + 52 - 8 - 8 - 8 + 4], 17, "protocol number in the original tuple");

        // The acknowledgement of request 8: an NLMSG_ERROR with the code (0: created).
        let mut ackmsg = done(8);
        ackmsg[4..6].copy_from_slice(&NLMSG_ERROR.to_ne_bytes());
        ackmsg[16..20].copy_from_slice(&(-17i32).to_ne_bytes());
        assert_eq!(ack(&ackmsg, 8), Some(-17));
        assert_eq!(ack(&ackmsg, 9), None);
    }

    #[test]
    fn nat_conns_keeps_established_connections_of_the_named_real_servers() {
        let nat = IPS_DST_NAT | IPS_CONFIRMED | IPS_ASSURED | IPS_SEEN_REPLY;
        let entries = [
            e(6, "10.81.1.100:80", "10.81.0.11:80", nat, Some(TCP_ESTABLISHED)),
            e(6, "10.81.1.100:80", "10.81.0.11:80", nat, Some(7)), // TIME_WAIT
            e(6, "10.81.1.100:80", "10.81.0.13:80", nat, Some(TCP_ESTABLISHED)), // not a real
            e(6, "10.81.1.100:80", "10.81.0.11:80", 0x8, Some(TCP_ESTABLISHED)), // no DNAT
            e(17, "10.81.1.100:53", "10.81.0.12:53", nat, None),
            e(17, "10.81.1.100:53", "10.81.0.12:53", IPS_DST_NAT, None), // no reply yet
        ];
        let (web, dns) = web_and_dns();
        let reals = [(web, a("10.81.0.11:80")), (web, a("10.81.0.12:80")), (dns, a("10.81.0.12:53"))];
        let got = nat_conns(&entries, &reals);
        assert_eq!(
            got,
            vec![
                NatConn {
                    proto: Protocol::Tcp,
                    client: a("10.81.1.9:40000"),
                    vip: a("10.81.1.100:80"),
                    real: a("10.81.0.11:80"),
                    timeout_s: 431999
                },
                NatConn {
                    proto: Protocol::Udp,
                    client: a("10.81.1.9:40000"),
                    vip: a("10.81.1.100:53"),
                    real: a("10.81.0.12:53"),
                    timeout_s: 431999
                },
            ]
        );
    }
    /// Against the running kernel, in a network namespace of its own (root only; skipped with
    /// a note otherwise, a failure under `HALO_REQUIRE_ROOT=1`): the kernel takes the request,
    /// the entry it makes is destination-NATed to the real server (what the director's packets
    /// are rewritten by), established and assured; the same entry again is refused (EEXIST),
    /// counted, and does not stop the next one.
    /// Whether a kernel test can run: root, else skipped with a note (a failure under
    /// `HALO_REQUIRE_ROOT=1`).
    fn as_root(test: &str) -> bool {
        if !nix::unistd::geteuid().is_root() {
            assert_ne!(std::env::var("HALO_REQUIRE_ROOT").as_deref(), Ok("1"), "{test} needs root");
            eprintln!("note: {test} skipped: needs root");
            return false;
        }
        true
    }

    /// Runs `f` on a thread of its own in a new network namespace (its own conntrack table).
    fn in_new_netns<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::spawn(move || {
            nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET).expect("a network namespace");
            f()
        })
        .join()
        .expect("thread")
    }

    #[test]
    fn create_makes_a_dnat_entry_in_the_kernel() {
        if !as_root("create_makes_a_dnat_entry_in_the_kernel") {
            return;
        }
        let tcp = NatConn {
            proto: Protocol::Tcp,
            client: a("10.81.1.9:40000"),
            vip: a("10.81.1.100:7000"),
            real: a("10.81.0.12:7001"),
            timeout_s: 3000,
        };
        let udp = NatConn {
            proto: Protocol::Udp,
            client: a("10.81.1.9:5353"),
            vip: a("10.81.1.100:53"),
            real: a("10.81.0.11:53"),
            timeout_s: 100,
        };
        let (first, again, entries) = in_new_netns(move || {
            let first = create(&[tcp, udp], Duration::from_secs(2)).expect("netlink");
            let again =
                create(&[tcp, NatConn { client: a("10.81.1.9:40001"), ..tcp }], Duration::from_secs(2))
                    .expect("netlink");
            (first, again, dump(Duration::from_secs(2)).expect("dump"))
        });
        assert_eq!(first, Created { created: 2, failed: 0, first_error: None });
        assert_eq!((again.created, again.failed), (1, 1), "{again:?}");
        let why = again.first_error.unwrap_or_default();
        assert!(why.contains("10.81.1.9:40000") && why.contains("EEXIST"), "{why}");
        assert_eq!(entries.len(), 3, "{entries:?}");
        let e = entries.iter().find(|e| e.orig_src == tcp.client).expect("the TCP entry");
        assert_eq!((e.proto, e.orig_dst, e.reply_src), (6, tcp.vip, tcp.real), "{e:?}");
        assert_ne!(e.status & IPS_DST_NAT, 0, "destination-NATed: {:#x}", e.status);
        assert_eq!(e.status & (IPS_ASSURED | IPS_SEEN_REPLY), IPS_ASSURED | IPS_SEEN_REPLY);
        assert_eq!(e.tcp_state, Some(TCP_ESTABLISHED));
        assert!(e.timeout > 2900 && e.timeout <= 3000, "{}", e.timeout);
        let u = entries.iter().find(|e| e.proto == 17).expect("the UDP entry");
        assert_eq!((u.orig_src, u.orig_dst, u.reply_src), (udp.client, udp.vip, udp.real));
        assert_ne!(u.status & IPS_DST_NAT, 0);
        // What the next director sends on: the same connections.
        let web = ServiceKey::addr(Protocol::Tcp, SocketAddr::new(tcp.vip.ip(), 7000));
        let dns = ServiceKey::addr(Protocol::Udp, SocketAddr::new(udp.vip.ip(), 53));
        let mut back = nat_conns(&entries, &[(web, tcp.real), (dns, udp.real)]);
        back.sort();
        assert_eq!(
            back.iter().map(|c| (c.proto, c.client, c.real)).collect::<Vec<_>>(),
            vec![
                (Protocol::Tcp, tcp.client, tcp.real),
                (Protocol::Tcp, a("10.81.1.9:40001"), tcp.real),
                (Protocol::Udp, udp.client, udp.real),
            ]
        );
    }

    /// The same for IPv6: an AF_INET6 entry with its DNAT to an IPv6 real server, read back
    /// from the same dump as the IPv4 ones.
    #[test]
    fn create_makes_an_ipv6_dnat_entry_in_the_kernel() {
        if !as_root("create_makes_an_ipv6_dnat_entry_in_the_kernel") {
            return;
        }
        let six = NatConn {
            proto: Protocol::Tcp,
            client: a("[2001:db8:81::9]:40000"),
            vip: a("[2001:db8:81::100]:80"),
            real: a("[2001:db8:80::12]:8080"),
            timeout_s: 3000,
        };
        let four = NatConn {
            proto: Protocol::Tcp,
            client: a("10.81.1.9:40000"),
            vip: a("10.81.1.100:80"),
            real: a("10.81.0.12:8080"),
            timeout_s: 3000,
        };
        let (made, entries) = in_new_netns(move || {
            let made = create(&[six, four], Duration::from_secs(2)).expect("netlink");
            (made, dump(Duration::from_secs(2)).expect("dump"))
        });
        assert_eq!(made, Created { created: 2, failed: 0, first_error: None });
        assert_eq!(entries.len(), 2, "both families in one dump: {entries:?}");
        let e = entries.iter().find(|e| e.orig_src == six.client).expect("the IPv6 entry");
        assert_eq!((e.orig_dst, e.reply_src), (six.vip, six.real), "{e:?}");
        assert_ne!(e.status & IPS_DST_NAT, 0, "destination-NATed: {:#x}", e.status);
        let web6 = ServiceKey::addr(Protocol::Tcp, SocketAddr::new(six.vip.ip(), 80));
        let back = nat_conns(&entries, &[(web6, six.real)]);
        assert_eq!(
            back.iter().map(|c| (c.client, c.vip, c.real)).collect::<Vec<_>>(),
            vec![(six.client, six.vip, six.real)]
        );
    }
}
