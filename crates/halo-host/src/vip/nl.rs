//! A small, synchronous NETLINK_ROUTE client: just the messages halo's IPaddr needs
//! (links, addresses, routes) and the address-change multicast groups.
//!
//! Hand-written rather than built on netlink-packet-route: the handful of fixed kernel
//! structures used here (`nlmsghdr`, `ifaddrmsg`, `ifinfomsg`, `rtmsg`, `rtattr`) are stable
//! ABI, while the typed crates change their API at nearly every minor release and are slow
//! to compile. Every length the kernel sends is checked before it is used; a reply that does
//! not decode is an error, never a panic.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::socket::{
    self, sockopt, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType,
};
use nix::sys::time::TimeVal;

use super::VipError;

// linux/netlink.h
pub(super) const NLMSG_NOOP: u16 = 1;
pub(super) const NLMSG_ERROR: u16 = 2;
pub(super) const NLMSG_DONE: u16 = 3;
pub(super) const NLMSG_OVERRUN: u16 = 4;
pub(super) const NLM_F_REQUEST: u16 = 0x01;
pub(super) const NLM_F_ACK: u16 = 0x04;
pub(super) const NLM_F_DUMP_INTR: u16 = 0x10;
pub(super) const NLM_F_DUMP: u16 = 0x300;
pub(super) const NLM_F_EXCL: u16 = 0x200;
pub(super) const NLM_F_CREATE: u16 = 0x400;
/// In an NLMSG_ERROR: the original request is not echoed back past its header.
const NLM_F_CAPPED: u16 = 0x100;
/// In an NLMSG_ERROR or NLMSG_DONE: extended-ack attributes follow.
const NLM_F_ACK_TLVS: u16 = 0x200;
const NLMSGERR_ATTR_MSG: u16 = 1;
const NETLINK_CAP_ACK: libc::c_int = 10;
const NETLINK_EXT_ACK: libc::c_int = 11;
const NLA_TYPE_MASK: u16 = 0x3fff;

// linux/rtnetlink.h
pub(super) const RTM_NEWLINK: u16 = 16;
pub(super) const RTM_GETLINK: u16 = 18;
pub(super) const RTM_NEWADDR: u16 = 20;
pub(super) const RTM_DELADDR: u16 = 21;
pub(super) const RTM_GETADDR: u16 = 22;
pub(super) const RTM_NEWROUTE: u16 = 24;
pub(super) const RTM_GETROUTE: u16 = 26;
pub(super) const RTMGRP_IPV4_IFADDR: u32 = 0x10;
pub(super) const RTMGRP_IPV6_IFADDR: u32 = 0x100;
const RTA_DST: u16 = 1;
const RTA_OIF: u16 = 4;
const RTA_GATEWAY: u16 = 5;
const RTA_PRIORITY: u16 = 6;
const RTA_MULTIPATH: u16 = 9;
const RTA_TABLE: u16 = 15;
const RTA_VIA: u16 = 18;
pub(super) const RT_TABLE_MAIN: u32 = 254;
pub(super) const RTN_UNICAST: u8 = 1;
pub(super) const RT_SCOPE_UNIVERSE: u8 = 0;
pub(super) const RT_SCOPE_LINK: u8 = 253;
pub(super) const RT_SCOPE_HOST: u8 = 254;

// linux/if_addr.h
pub(super) const IFA_ADDRESS: u16 = 1;
pub(super) const IFA_LOCAL: u16 = 2;
pub(super) const IFA_LABEL: u16 = 3;
pub(super) const IFA_BROADCAST: u16 = 4;
pub(super) const IFA_CACHEINFO: u16 = 6;
pub(super) const IFA_FLAGS: u16 = 8;
pub(super) const IFA_F_NODAD: u32 = 0x02;
pub(super) const IFA_F_DADFAILED: u32 = 0x08;
pub(super) const IFA_F_TENTATIVE: u32 = 0x40;

// linux/if_link.h, linux/if.h
const IFLA_ADDRESS: u16 = 1;
pub(super) const IFLA_IFNAME: u16 = 3;
pub(super) const IFF_UP: u32 = 0x1;
pub(super) const IFF_LOOPBACK: u32 = 0x8;

pub(super) const AF_INET: u8 = libc::AF_INET as u8;
pub(super) const AF_INET6: u8 = libc::AF_INET6 as u8;

const HDR_LEN: usize = 16;
/// Bigger than any datagram the kernel builds for a dump (it caps them at 32 KiB).
const RECV_BUF: usize = 64 * 1024;
/// How long a request waits for the kernel's answer before giving up; the kernel answers
/// in microseconds, so this only bounds a wedged kernel or a lost reply.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);
/// How many times a dump that the kernel marks inconsistent (changed while being dumped)
/// is restarted before the error is returned.
const DUMP_RETRIES: usize = 5;

const fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// One netlink message, header fields decoded, body copied out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Msg {
    pub ty: u16,
    pub flags: u16,
    pub seq: u32,
    pub body: Vec<u8>,
}

/// Splits one datagram into its messages.
pub(super) fn split(mut buf: &[u8]) -> Result<Vec<Msg>, String> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        if buf.len() < HDR_LEN {
            return Err(format!("{} trailing bytes, shorter than a message header", buf.len()));
        }
        let len = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        if len < HDR_LEN || len > buf.len() {
            return Err(format!("message length {len} with {} bytes left", buf.len()));
        }
        out.push(Msg {
            ty: u16::from_ne_bytes([buf[4], buf[5]]),
            flags: u16::from_ne_bytes([buf[6], buf[7]]),
            seq: u32::from_ne_bytes([buf[8], buf[9], buf[10], buf[11]]),
            body: buf[HDR_LEN..len].to_vec(),
        });
        buf = &buf[align4(len).min(buf.len())..];
    }
    Ok(out)
}

/// The attributes (type, payload) of a message body after its fixed header.
pub(super) fn attrs(mut buf: &[u8]) -> Result<Vec<(u16, &[u8])>, String> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        if buf.len() < 4 {
            return Err(format!("{} trailing bytes, shorter than an attribute header", buf.len()));
        }
        let len = u16::from_ne_bytes([buf[0], buf[1]]) as usize;
        let ty = u16::from_ne_bytes([buf[2], buf[3]]) & NLA_TYPE_MASK;
        if len < 4 || len > buf.len() {
            return Err(format!("attribute {ty} of length {len} with {} bytes left", buf.len()));
        }
        out.push((ty, &buf[4..len]));
        buf = &buf[align4(len).min(buf.len())..];
    }
    Ok(out)
}

fn find<'a>(attrs: &[(u16, &'a [u8])], ty: u16) -> Option<&'a [u8]> {
    attrs.iter().find(|(t, _)| *t == ty).map(|(_, p)| *p)
}

fn get_u32(p: &[u8], what: &str) -> Result<u32, String> {
    let b: [u8; 4] = p.try_into().map_err(|_| format!("{what} of {} bytes, expected 4", p.len()))?;
    Ok(u32::from_ne_bytes(b))
}

fn get_ip(family: u8, p: &[u8], what: &str) -> Result<IpAddr, String> {
    match family {
        AF_INET => {
            let b: [u8; 4] = p.try_into().map_err(|_| format!("{what} of {} bytes, expected 4", p.len()))?;
            Ok(IpAddr::V4(Ipv4Addr::from(b)))
        }
        _ => {
            let b: [u8; 16] =
                p.try_into().map_err(|_| format!("{what} of {} bytes, expected 16", p.len()))?;
            Ok(IpAddr::V6(Ipv6Addr::from(b)))
        }
    }
}

/// A NUL-terminated kernel string attribute.
fn get_str(p: &[u8]) -> String {
    let end = p.iter().position(|&b| b == 0).unwrap_or(p.len());
    String::from_utf8_lossy(&p[..end]).into_owned()
}

pub(super) fn family_of(addr: IpAddr) -> u8 {
    if addr.is_ipv4() {
        AF_INET
    } else {
        AF_INET6
    }
}

pub(super) fn ip_bytes(addr: IpAddr) -> Vec<u8> {
    match addr {
        IpAddr::V4(a) => a.octets().to_vec(),
        IpAddr::V6(a) => a.octets().to_vec(),
    }
}

/// An address as the kernel reports it (`RTM_NEWADDR` / `RTM_DELADDR`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct AddrMsg {
    pub addr: IpAddr,
    pub prefix: u8,
    /// IFA_F_* (from IFA_FLAGS when present: the u8 field cannot hold them all).
    pub flags: u32,
    pub scope: u8,
    pub ifindex: u32,
    pub label: Option<String>,
    pub broadcast: Option<Ipv4Addr>,
}

/// Decodes an `ifaddrmsg` body; `None` for families other than IPv4 and IPv6.
pub(super) fn parse_addr(body: &[u8]) -> Result<Option<AddrMsg>, String> {
    if body.len() < 8 {
        return Err(format!("address message of {} bytes, expected at least 8", body.len()));
    }
    let family = body[0];
    if family != AF_INET && family != AF_INET6 {
        return Ok(None);
    }
    let prefix = body[1];
    let max = if family == AF_INET { 32 } else { 128 };
    if prefix > max {
        return Err(format!("prefix length {prefix} for a family whose addresses have {max} bits"));
    }
    let ifindex = u32::from_ne_bytes([body[4], body[5], body[6], body[7]]);
    let a = attrs(&body[8..])?;
    let addr = match find(&a, IFA_LOCAL).or_else(|| find(&a, IFA_ADDRESS)) {
        Some(p) => get_ip(family, p, "IFA_ADDRESS")?,
        None => return Err("address message without IFA_LOCAL or IFA_ADDRESS".into()),
    };
    let flags = match find(&a, IFA_FLAGS) {
        Some(p) => get_u32(p, "IFA_FLAGS")?,
        None => u32::from(body[2]),
    };
    let broadcast = match find(&a, IFA_BROADCAST) {
        Some(p) if family == AF_INET => match get_ip(AF_INET, p, "IFA_BROADCAST")? {
            IpAddr::V4(b) => Some(b),
            IpAddr::V6(_) => None,
        },
        _ => None,
    };
    Ok(Some(AddrMsg {
        addr,
        prefix,
        flags,
        scope: body[3],
        ifindex,
        label: find(&a, IFA_LABEL).map(get_str),
        broadcast,
    }))
}

/// A network interface as the kernel reports it (`RTM_NEWLINK`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct LinkMsg {
    pub ifindex: u32,
    /// ARPHRD_* (1 = Ethernet, 772 = loopback).
    pub link_type: u16,
    /// IFF_*.
    pub flags: u32,
    pub name: Option<String>,
    pub hwaddr: Option<Vec<u8>>,
}

pub(super) fn parse_link(body: &[u8]) -> Result<LinkMsg, String> {
    if body.len() < 16 {
        return Err(format!("link message of {} bytes, expected at least 16", body.len()));
    }
    let a = attrs(&body[16..])?;
    Ok(LinkMsg {
        ifindex: u32::from_ne_bytes([body[4], body[5], body[6], body[7]]),
        link_type: u16::from_ne_bytes([body[2], body[3]]),
        flags: u32::from_ne_bytes([body[8], body[9], body[10], body[11]]),
        name: find(&a, IFLA_IFNAME).map(get_str),
        hwaddr: find(&a, IFLA_ADDRESS).map(<[u8]>::to_vec),
    })
}

/// A route as the kernel reports it (`RTM_NEWROUTE`), only what findif looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct RouteMsg {
    pub family: u8,
    pub dst_len: u8,
    pub table: u32,
    pub scope: u8,
    pub kind: u8,
    pub dst: Option<IpAddr>,
    pub oif: Option<u32>,
    /// Goes through a gateway (RTA_GATEWAY, RTA_VIA) or several next hops (RTA_MULTIPATH):
    /// not a directly connected network.
    pub via_gateway: bool,
    pub priority: u32,
}

/// Decodes an `rtmsg` body; `None` for families other than IPv4 and IPv6.
pub(super) fn parse_route(body: &[u8]) -> Result<Option<RouteMsg>, String> {
    if body.len() < 12 {
        return Err(format!("route message of {} bytes, expected at least 12", body.len()));
    }
    let family = body[0];
    if family != AF_INET && family != AF_INET6 {
        return Ok(None);
    }
    let dst_len = body[1];
    let max = if family == AF_INET { 32 } else { 128 };
    if dst_len > max {
        return Err(format!("route prefix length {dst_len} for a family whose addresses have {max} bits"));
    }
    let a = attrs(&body[12..])?;
    let table = match find(&a, RTA_TABLE) {
        Some(p) => get_u32(p, "RTA_TABLE")?,
        None => u32::from(body[4]),
    };
    let dst = find(&a, RTA_DST).map(|p| get_ip(family, p, "RTA_DST")).transpose()?;
    let oif = find(&a, RTA_OIF).map(|p| get_u32(p, "RTA_OIF")).transpose()?;
    let priority = find(&a, RTA_PRIORITY).map(|p| get_u32(p, "RTA_PRIORITY")).transpose()?.unwrap_or(0);
    Ok(Some(RouteMsg {
        family,
        dst_len,
        table,
        scope: body[6],
        kind: body[7],
        dst,
        oif,
        via_gateway: [RTA_GATEWAY, RTA_VIA, RTA_MULTIPATH].iter().any(|t| find(&a, *t).is_some()),
        priority,
    }))
}

/// `struct ifaddrmsg`.
pub(super) fn ifaddrmsg(family: u8, prefix: u8, flags: u8, scope: u8, ifindex: u32) -> Vec<u8> {
    let mut b = vec![family, prefix, flags, scope];
    b.extend_from_slice(&ifindex.to_ne_bytes());
    b
}

/// `struct ifinfomsg`.
pub(super) fn ifinfomsg(ifindex: u32, flags: u32, change: u32) -> Vec<u8> {
    let mut b = vec![libc::AF_UNSPEC as u8, 0, 0, 0];
    b.extend_from_slice(&ifindex.to_ne_bytes());
    b.extend_from_slice(&flags.to_ne_bytes());
    b.extend_from_slice(&change.to_ne_bytes());
    b
}

/// `struct rtmsg` for a dump of one family.
pub(super) fn rtmsg(family: u8) -> Vec<u8> {
    let mut b = vec![family, 0, 0, 0, 0, 0, 0, 0];
    b.extend_from_slice(&0u32.to_ne_bytes());
    b
}

/// A request being built: header, fixed body, attributes.
#[derive(Debug, Clone)]
pub(super) struct Request {
    buf: Vec<u8>,
}

impl Request {
    pub fn new(ty: u16, flags: u16, fixed: &[u8]) -> Request {
        let mut buf = vec![0u8; HDR_LEN];
        buf[4..6].copy_from_slice(&ty.to_ne_bytes());
        buf[6..8].copy_from_slice(&(flags | NLM_F_REQUEST).to_ne_bytes());
        buf.extend_from_slice(fixed);
        buf.resize(align4(buf.len()), 0);
        Request { buf }
    }

    pub fn attr(mut self, ty: u16, payload: &[u8]) -> Request {
        // Attributes here are addresses, labels and u32s: far below u16::MAX.
        let len = u16::try_from(4 + payload.len()).unwrap_or(u16::MAX);
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(payload);
        self.buf.resize(align4(self.buf.len()), 0);
        self
    }

    /// A NUL-terminated string attribute.
    pub fn attr_str(self, ty: u16, s: &str) -> Request {
        let mut p = s.as_bytes().to_vec();
        p.push(0);
        self.attr(ty, &p)
    }

    fn finish(&mut self, extra_flags: u16, seq: u32) -> &[u8] {
        let len = u32::try_from(self.buf.len()).unwrap_or(u32::MAX);
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        let flags = u16::from_ne_bytes([self.buf[6], self.buf[7]]) | extra_flags;
        self.buf[6..8].copy_from_slice(&flags.to_ne_bytes());
        self.buf[8..12].copy_from_slice(&seq.to_ne_bytes());
        &self.buf
    }
}

/// Why a netlink exchange failed, before it is given its context.
#[derive(Debug)]
pub(super) enum NlError {
    /// The kernel answered with an error.
    Kernel { errno: i32, detail: Option<String> },
    /// The socket failed (`what` names the operation).
    Io { what: &'static str, error: io::Error },
    /// The answer did not decode.
    Malformed(String),
}

impl NlError {
    pub fn errno(&self) -> Option<i32> {
        match self {
            NlError::Kernel { errno, .. } => Some(*errno),
            _ => None,
        }
    }

    /// Gives the error its context: `what` says what halo was doing.
    pub fn context(self, what: impl Into<String>) -> VipError {
        let what = what.into();
        match self {
            NlError::Kernel { errno, detail } => {
                VipError::Os { what, error: io::Error::from_raw_os_error(errno), detail }
            }
            NlError::Io { what: op, error } => {
                VipError::Os { what: format!("{what}: {op}"), error, detail: None }
            }
            NlError::Malformed(reason) => VipError::Malformed { what, reason },
        }
    }
}

impl From<String> for NlError {
    fn from(s: String) -> NlError {
        NlError::Malformed(s)
    }
}

/// Decodes the body of an NLMSG_ERROR (errno 0 = acknowledgement) or NLMSG_DONE: the
/// (positive) errno and the kernel's extended-ack message if any.
fn parse_status(ty: u16, flags: u16, body: &[u8]) -> Result<(i32, Option<String>), String> {
    if body.len() < 4 {
        if ty == NLMSG_DONE {
            return Ok((0, None));
        }
        return Err(format!("error message of {} bytes, expected at least 4", body.len()));
    }
    let err = i32::from_ne_bytes([body[0], body[1], body[2], body[3]]);
    let errno = err.checked_neg().unwrap_or(i32::MAX);
    if flags & NLM_F_ACK_TLVS == 0 {
        return Ok((errno, None));
    }
    let tlv_at = if ty == NLMSG_DONE {
        4
    } else {
        // The echoed request: its header, plus its body unless capped.
        if body.len() < 4 + HDR_LEN {
            return Err(format!("error message of {} bytes, too short for the echoed header", body.len()));
        }
        let orig_len = u32::from_ne_bytes([body[4], body[5], body[6], body[7]]) as usize;
        if flags & NLM_F_CAPPED != 0 {
            4 + HDR_LEN
        } else {
            4 + align4(orig_len)
        }
    };
    let tlvs =
        body.get(tlv_at..).ok_or_else(|| format!("extended ack past the end ({tlv_at} > {})", body.len()))?;
    let msg = find(&attrs(tlvs)?, NLMSGERR_ATTR_MSG).map(get_str).filter(|m| !m.is_empty());
    Ok((errno, msg))
}

/// A NETLINK_ROUTE socket.
#[derive(Debug)]
pub(super) struct Socket {
    fd: OwnedFd,
    seq: u32,
    buf: Vec<u8>,
}

impl Socket {
    /// A socket for requests: blocking, with a bounded wait for each answer.
    pub fn request() -> Result<Socket, NlError> {
        let s = Socket::open(SockFlag::empty(), 0)?;
        let tv = TimeVal::new(REPLY_TIMEOUT.as_secs() as _, 0);
        socket::setsockopt(&s.fd, sockopt::ReceiveTimeout, &tv)
            .map_err(|e| NlError::Io { what: "netlink SO_RCVTIMEO", error: e.into() })?;
        // Ask for the kernel's error text ("Invalid prefix length", ...) without the echo of
        // the whole request. Older kernels lack these options; errors are then bare errnos.
        for opt in [NETLINK_EXT_ACK, NETLINK_CAP_ACK] {
            let one: libc::c_int = 1;
            // SAFETY: a plain int option on a socket we own.
            unsafe {
                libc::setsockopt(
                    s.fd.as_raw_fd(),
                    libc::SOL_NETLINK,
                    opt,
                    (&one as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as libc::socklen_t,
                );
            }
        }
        Ok(s)
    }

    /// A non-blocking socket subscribed to the multicast `groups` (RTMGRP_*).
    pub fn multicast(groups: u32) -> Result<Socket, NlError> {
        Socket::open(SockFlag::SOCK_NONBLOCK, groups)
    }

    fn open(flags: SockFlag, groups: u32) -> Result<Socket, NlError> {
        let fd = socket::socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC | flags,
            SockProtocol::NetlinkRoute,
        )
        .map_err(|e| NlError::Io { what: "netlink socket", error: e.into() })?;
        socket::bind(fd.as_raw_fd(), &NetlinkAddr::new(0, groups))
            .map_err(|e| NlError::Io { what: "netlink bind", error: e.into() })?;
        Ok(Socket { fd, seq: 0, buf: vec![0; RECV_BUF] })
    }

    /// Sends a request that changes something or gets one object, and waits for the
    /// kernel's acknowledgement; returns the messages that came before it.
    pub fn ack(&mut self, mut req: Request) -> Result<Vec<Msg>, NlError> {
        let seq = self.send(&mut req, NLM_F_ACK)?;
        self.collect(seq, false).map(|(msgs, _)| msgs)
    }

    /// Dumps a table (links, addresses, routes). A dump the kernel marks inconsistent
    /// (changed while it was being read) is restarted.
    pub fn dump(&mut self, req: Request) -> Result<Vec<Msg>, NlError> {
        let mut tries = 0;
        loop {
            let mut r = req.clone();
            let seq = self.send(&mut r, NLM_F_DUMP)?;
            let (msgs, interrupted) = self.collect(seq, true)?;
            tries += 1;
            if !interrupted {
                return Ok(msgs);
            }
            if tries >= DUMP_RETRIES {
                return Err(NlError::Malformed(format!("dump still inconsistent after {tries} tries")));
            }
        }
    }

    fn send(&mut self, req: &mut Request, extra_flags: u16) -> Result<u32, NlError> {
        self.seq = self.seq.wrapping_add(1).max(1);
        let seq = self.seq;
        let bytes = req.finish(extra_flags, seq);
        loop {
            match socket::sendto(self.fd.as_raw_fd(), bytes, &NetlinkAddr::new(0, 0), MsgFlags::empty()) {
                Ok(_) => return Ok(seq),
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(NlError::Io { what: "netlink send", error: e.into() }),
            }
        }
    }

    /// Reads answers to `seq` until the acknowledgement (or end of dump).
    fn collect(&mut self, seq: u32, dump: bool) -> Result<(Vec<Msg>, bool), NlError> {
        let mut out = Vec::new();
        let mut interrupted = false;
        loop {
            let Some(msgs) = self.recv()? else {
                return Err(NlError::Io {
                    what: "netlink receive",
                    error: io::Error::new(io::ErrorKind::TimedOut, "no answer from the kernel"),
                });
            };
            for m in msgs {
                if m.seq != seq {
                    continue; // a late answer to an earlier, abandoned request
                }
                interrupted |= m.flags & NLM_F_DUMP_INTR != 0;
                match m.ty {
                    NLMSG_NOOP => {}
                    NLMSG_ERROR | NLMSG_DONE => {
                        let (errno, detail) = parse_status(m.ty, m.flags, &m.body)?;
                        if errno != 0 {
                            return Err(NlError::Kernel { errno, detail });
                        }
                        if m.ty == NLMSG_ERROR || dump {
                            return Ok((out, interrupted));
                        }
                    }
                    NLMSG_OVERRUN => return Err(NlError::Malformed("kernel reported an overrun".into())),
                    _ => out.push(m),
                }
            }
        }
    }

    /// One datagram's messages; `None` when nothing is there (non-blocking socket) or the
    /// wait for an answer ran out (request socket).
    pub fn recv(&mut self) -> Result<Option<Vec<Msg>>, NlError> {
        loop {
            match socket::recv(self.fd.as_raw_fd(), &mut self.buf, MsgFlags::MSG_TRUNC) {
                Ok(n) if n > self.buf.len() => {
                    return Err(NlError::Malformed(format!(
                        "datagram of {n} bytes, more than the {} bytes read",
                        self.buf.len()
                    )))
                }
                Ok(n) => return split(&self.buf[..n]).map(Some).map_err(NlError::Malformed),
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => return Ok(None),
                Err(e) => return Err(NlError::Io { what: "netlink receive", error: e.into() }),
            }
        }
    }
}

impl AsFd for Socket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdr(len: u32, ty: u16, flags: u16, seq: u32) -> Vec<u8> {
        let mut b = len.to_ne_bytes().to_vec();
        b.extend_from_slice(&ty.to_ne_bytes());
        b.extend_from_slice(&flags.to_ne_bytes());
        b.extend_from_slice(&seq.to_ne_bytes());
        b.extend_from_slice(&0u32.to_ne_bytes());
        b
    }

    #[test]
    fn request_layout() {
        let mut r = Request::new(RTM_NEWADDR, NLM_F_CREATE, &ifaddrmsg(AF_INET, 24, 0, 0, 7))
            .attr(IFA_LOCAL, &[192, 0, 2, 10])
            .attr_str(IFA_LABEL, "eth0:1");
        let b = r.finish(NLM_F_ACK, 9).to_vec();
        // header 16 + ifaddrmsg 8 + (4+4) + (4+7 → 12)
        assert_eq!(b.len(), 16 + 8 + 8 + 12);
        assert_eq!(u32::from_ne_bytes([b[0], b[1], b[2], b[3]]) as usize, b.len());
        assert_eq!(u16::from_ne_bytes([b[4], b[5]]), RTM_NEWADDR);
        assert_eq!(u16::from_ne_bytes([b[6], b[7]]), NLM_F_REQUEST | NLM_F_CREATE | NLM_F_ACK);
        assert_eq!(u32::from_ne_bytes([b[8], b[9], b[10], b[11]]), 9);
        let body = &b[16..];
        assert_eq!(&body[..4], &[AF_INET, 24, 0, 0]);
        assert_eq!(u32::from_ne_bytes([body[4], body[5], body[6], body[7]]), 7);
        let a = attrs(&body[8..]).expect("attrs");
        assert_eq!(a, vec![(IFA_LOCAL, &[192u8, 0, 2, 10][..]), (IFA_LABEL, &b"eth0:1\0"[..])]);
        let parsed = parse_addr(body).expect("parse").expect("inet");
        assert_eq!(parsed.addr, "192.0.2.10".parse::<IpAddr>().expect("ip"));
        assert_eq!((parsed.prefix, parsed.ifindex, parsed.label.as_deref()), (24, 7, Some("eth0:1")));
    }

    #[test]
    fn split_rejects_bad_lengths() {
        let mut two = hdr(20, 99, 0, 1);
        two.extend_from_slice(&[1, 2, 3, 4]);
        two.extend(hdr(16, 98, 0, 2));
        let msgs = split(&two).expect("two messages");
        assert_eq!(msgs.len(), 2);
        assert_eq!((msgs[0].ty, msgs[0].body.as_slice()), (99, &[1u8, 2, 3, 4][..]));
        assert_eq!((msgs[1].ty, msgs[1].seq), (98, 2));

        assert!(split(&hdr(15, 1, 0, 0)).is_err(), "length below the header");
        assert!(split(&hdr(64, 1, 0, 0)).is_err(), "length past the datagram");
        assert!(split(&[0u8; 7]).is_err(), "truncated header");
        assert!(split(&[]).expect("empty").is_empty());
    }

    #[test]
    fn attrs_reject_bad_lengths() {
        assert!(attrs(&[3, 0, 1, 0]).is_err(), "length below the attribute header");
        assert!(attrs(&[9, 0, 1, 0, 1, 2, 3, 4]).is_err(), "length past the end");
        assert!(attrs(&[8, 0]).is_err(), "truncated header");
        // The last attribute's padding may be missing.
        assert_eq!(attrs(&[5, 0, 1, 0, 7]).expect("ok"), vec![(1, &[7u8][..])]);
        // Nested/byte-order flags are masked off the type.
        assert_eq!(attrs(&[4, 0, 2, 0x80]).expect("ok"), vec![(2, &[][..])]);
    }

    #[test]
    fn malformed_bodies_are_errors() {
        assert!(parse_addr(&[AF_INET, 24, 0]).is_err());
        assert!(parse_addr(&[AF_INET, 33, 0, 0, 1, 0, 0, 0]).is_err(), "prefix too long");
        assert!(parse_addr(&[AF_INET, 24, 0, 0, 1, 0, 0, 0]).is_err(), "no address");
        let mut wrong_len = ifaddrmsg(AF_INET6, 64, 0, 0, 1);
        wrong_len.extend_from_slice(&[8, 0, 1, 0, 1, 2, 3, 4]);
        assert!(parse_addr(&wrong_len).expect_err("4-byte IPv6 address").contains("expected 16"));
        assert_eq!(parse_addr(&[17, 0, 0, 0, 1, 0, 0, 0]).expect("other family"), None);
        assert!(parse_link(&[0; 15]).is_err());
        assert!(parse_route(&[AF_INET, 0, 0]).is_err());
        let mut bad_oif = rtmsg(AF_INET);
        bad_oif.extend_from_slice(&[6, 0, RTA_OIF as u8, 0, 1, 2, 0, 0]);
        assert!(parse_route(&bad_oif).expect_err("2-byte oif").contains("RTA_OIF"));
    }

    #[test]
    fn status_messages() {
        // Plain ack.
        assert_eq!(parse_status(NLMSG_ERROR, 0, &[0, 0, 0, 0]).expect("ack"), (0, None));
        // EEXIST with a capped echo and an extended-ack message.
        let mut body = (-libc::EEXIST).to_ne_bytes().to_vec();
        body.extend(hdr(40, RTM_NEWADDR, 0, 3));
        body.extend_from_slice(&[10, 0, NLMSGERR_ATTR_MSG as u8, 0, b'n', b'o', b'p', b'e', 0, 0, 0, 0]);
        assert_eq!(
            parse_status(NLMSG_ERROR, NLM_F_CAPPED | NLM_F_ACK_TLVS, &body).expect("err"),
            (libc::EEXIST, Some("nope".into()))
        );
        // Uncapped: the TLVs come after the whole echoed request.
        let mut body = (-libc::EINVAL).to_ne_bytes().to_vec();
        body.extend(hdr(20, RTM_NEWADDR, 0, 3));
        body.extend_from_slice(&[0, 0, 0, 0]);
        body.extend_from_slice(&[8, 0, NLMSGERR_ATTR_MSG as u8, 0, b'x', b'y', b'z', 0]);
        assert_eq!(
            parse_status(NLMSG_ERROR, NLM_F_ACK_TLVS, &body).expect("err"),
            (libc::EINVAL, Some("xyz".into()))
        );
        // Echo length pointing past the end.
        let mut body = (-libc::EINVAL).to_ne_bytes().to_vec();
        body.extend(hdr(400, RTM_NEWADDR, 0, 3));
        assert!(parse_status(NLMSG_ERROR, NLM_F_ACK_TLVS, &body).is_err());
        assert!(parse_status(NLMSG_ERROR, 0, &[0, 0]).is_err());
        assert_eq!(parse_status(NLMSG_DONE, 0, &[]).expect("done"), (0, None));
        assert_eq!(
            parse_status(NLMSG_DONE, 0, &(-libc::EBUSY).to_ne_bytes()).expect("done"),
            (libc::EBUSY, None)
        );
        assert_eq!(parse_status(NLMSG_ERROR, 0, &i32::MIN.to_ne_bytes()).expect("min").0, i32::MAX);
    }
}
