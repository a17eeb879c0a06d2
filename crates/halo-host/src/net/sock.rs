//! Socket setup for the IP media, after Heartbeat's `HBcomm` plugins (bcast.c, mcast.c,
//! ucast.c), adapted: every socket is bound to its interface and non-blocking.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, ToSocketAddrs};
use std::os::fd::AsRawFd;

use nix::net::if_::InterfaceFlags;
use nix::sys::socket::sockopt;
use socket2::{Domain, InterfaceIndexOrAddress, Protocol, SockAddr, Socket, Type};

use crate::HostError;

/// Receive buffer asked for every receive socket: room for a burst of status messages and
/// retransmissions while the heartbeat thread is busy.
const RCVBUF: usize = 1 << 20;

/// IPTOS_LOWDELAY, as Heartbeat's ucast sets it (seen as `45 10` in captured IP headers).
const TOS_LOWDELAY: u32 = 0x10;

pub(super) fn ifindex(iface: &str, medium: &str) -> Result<u32, HostError> {
    if iface.is_empty() || iface.len() >= libc::IFNAMSIZ || iface.contains(['/', '\0']) {
        return Err(HostError::medium(medium, "invalid interface name"));
    }
    match nix::net::if_::if_nametoindex(iface) {
        Ok(i) if i > 0 => Ok(i),
        _ => Err(HostError::medium(medium, "no such interface")),
    }
}

/// The IPv4 broadcast address of `iface` (Heartbeat uses SIOCGIFBRDADDR).
pub(super) fn broadcast_addr(iface: &str, medium: &str) -> Result<Ipv4Addr, HostError> {
    let addrs = nix::ifaddrs::getifaddrs().map_err(|e| HostError::io(medium, "getifaddrs", e))?;
    for a in addrs {
        if a.interface_name != iface || !a.flags.contains(InterfaceFlags::IFF_BROADCAST) {
            continue;
        }
        let is_v4 = a.address.as_ref().is_some_and(|s| s.as_sockaddr_in().is_some());
        if !is_v4 {
            continue;
        }
        let addr = a.address.as_ref().and_then(|s| s.as_sockaddr_in()).map(|s| s.ip());
        if let Some(b) = a.broadcast.as_ref().and_then(|s| s.as_sockaddr_in()) {
            let ip = b.ip();
            // An address added without `brd` has no broadcast address; glibc then reports
            // the address itself, and sending there would only reach ourselves.
            if !ip.is_unspecified() && Some(ip) != addr {
                return Ok(ip);
            }
        }
        if let (Some(ip), Some(mask)) = (addr, a.netmask.as_ref().and_then(|s| s.as_sockaddr_in())) {
            let mask = u32::from(mask.ip());
            if mask != u32::MAX {
                return Ok(Ipv4Addr::from(u32::from(ip) | !mask));
            }
        }
    }
    Err(HostError::medium(medium, "interface has no IPv4 broadcast address"))
}

fn udp(v6: bool, medium: &str) -> Result<Socket, HostError> {
    let domain = if v6 { Domain::IPV6 } else { Domain::IPV4 };
    // socket2 sets SOCK_CLOEXEC, so resource agents never inherit the links.
    Socket::new(domain, Type::DGRAM, Some(Protocol::UDP)).map_err(|e| HostError::io(medium, "socket", e))
}

fn bind_device(sock: &Socket, iface: &str, medium: &str) -> Result<(), HostError> {
    sock.bind_device(Some(iface.as_bytes())).map_err(|e| HostError::io(medium, "SO_BINDTODEVICE", e))
}

fn nonblocking(sock: &Socket, medium: &str) -> Result<(), HostError> {
    sock.set_nonblocking(true).map_err(|e| HostError::io(medium, "O_NONBLOCK", e))
}

fn any(v6: bool, port: u16) -> SockAddr {
    if v6 {
        SockAddr::from(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, port, 0, 0))
    } else {
        SockAddr::from(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port))
    }
}

/// The receive socket of one (family, interface, port): bound to the wildcard address and
/// the interface, so it accepts from any source on that interface (as Heartbeat's ucast
/// read side does), and shared by every medium of the link on that port.
pub(super) fn rx_socket(v6: bool, iface: &str, port: u16, medium: &str) -> Result<Socket, HostError> {
    let sock = udp(v6, medium)?;
    sock.set_reuse_address(true).map_err(|e| HostError::io(medium, "SO_REUSEADDR", e))?;
    sock.set_reuse_port(true).map_err(|e| HostError::io(medium, "SO_REUSEPORT", e))?;
    if v6 {
        sock.set_only_v6(true).map_err(|e| HostError::io(medium, "IPV6_V6ONLY", e))?;
    }
    bind_device(&sock, iface, medium)?;
    // SO_RCVBUFFORCE passes rmem_max as root; otherwise take what SO_RCVBUF gives.
    if nix::sys::socket::setsockopt(&sock, sockopt::RcvBufForce, &RCVBUF).is_err() {
        let _ = sock.set_recv_buffer_size(RCVBUF);
    }
    nonblocking(&sock, medium)?;
    sock.bind(&any(v6, port)).map_err(|e| HostError::io(medium, "bind", e))?;
    Ok(sock)
}

/// A send socket bound to the device and to an ephemeral source port.
fn sender(v6: bool, iface: &str, medium: &str) -> Result<Socket, HostError> {
    let sock = udp(v6, medium)?;
    if v6 {
        sock.set_only_v6(true).map_err(|e| HostError::io(medium, "IPV6_V6ONLY", e))?;
    }
    bind_device(&sock, iface, medium)?;
    nonblocking(&sock, medium)?;
    sock.bind(&any(v6, 0)).map_err(|e| HostError::io(medium, "bind", e))?;
    Ok(sock)
}

pub(super) fn ucast_sender(v6: bool, iface: &str, medium: &str) -> Result<Socket, HostError> {
    let sock = sender(v6, iface, medium)?;
    let tos = if v6 { sock.set_tclass_v6(TOS_LOWDELAY) } else { sock.set_tos_v4(TOS_LOWDELAY) };
    tos.map_err(|e| HostError::io(medium, "IP_TOS", e))?;
    Ok(sock)
}

pub(super) fn bcast_sender(iface: &str, medium: &str) -> Result<Socket, HostError> {
    let sock = sender(false, iface, medium)?;
    sock.set_broadcast(true).map_err(|e| HostError::io(medium, "SO_BROADCAST", e))?;
    Ok(sock)
}

pub(super) fn mcast_sender(
    iface: &str,
    ifindex: u32,
    ttl: u8,
    looped: bool,
    medium: &str,
) -> Result<Socket, HostError> {
    let sock = sender(false, iface, medium)?;
    set_multicast_if_v4_index(&sock, ifindex).map_err(|e| HostError::io(medium, "IP_MULTICAST_IF", e))?;
    sock.set_multicast_ttl_v4(u32::from(ttl)).map_err(|e| HostError::io(medium, "IP_MULTICAST_TTL", e))?;
    sock.set_multicast_loop_v4(looped).map_err(|e| HostError::io(medium, "IP_MULTICAST_LOOP", e))?;
    Ok(sock)
}

pub(super) fn mcast6_sender(iface: &str, ifindex: u32, hops: u8, medium: &str) -> Result<Socket, HostError> {
    let sock = sender(true, iface, medium)?;
    sock.set_multicast_if_v6(ifindex).map_err(|e| HostError::io(medium, "IPV6_MULTICAST_IF", e))?;
    sock.set_multicast_hops_v6(u32::from(hops))
        .map_err(|e| HostError::io(medium, "IPV6_MULTICAST_HOPS", e))?;
    // Heartbeat's mcast6 never loops its packets back.
    sock.set_multicast_loop_v6(false).map_err(|e| HostError::io(medium, "IPV6_MULTICAST_LOOP", e))?;
    Ok(sock)
}

pub(super) fn join4(sock: &Socket, group: Ipv4Addr, ifindex: u32, medium: &str) -> Result<(), HostError> {
    sock.join_multicast_v4_n(&group, &InterfaceIndexOrAddress::Index(ifindex))
        .map_err(|e| HostError::io(medium, "IP_ADD_MEMBERSHIP", e))
}

pub(super) fn join6(sock: &Socket, group: Ipv6Addr, ifindex: u32, medium: &str) -> Result<(), HostError> {
    sock.join_multicast_v6(&group, ifindex).map_err(|e| HostError::io(medium, "IPV6_ADD_MEMBERSHIP", e))
}

/// IP_MULTICAST_IF by interface index (`struct ip_mreqn`), which socket2 only offers by
/// address; an index keeps working when the interface's address changes.
fn set_multicast_if_v4_index(sock: &Socket, ifindex: u32) -> io::Result<()> {
    let ifindex = libc::c_int::try_from(ifindex)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "interface index too large"))?;
    let mreqn = libc::ip_mreqn {
        imr_multiaddr: libc::in_addr { s_addr: 0 },
        imr_address: libc::in_addr { s_addr: 0 },
        imr_ifindex: ifindex,
    };
    // SAFETY: the pointer and length describe a live, initialised `ip_mreqn` for the whole
    // call, and the fd is owned by `sock`.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_MULTICAST_IF,
            (&mreqn as *const libc::ip_mreqn).cast::<libc::c_void>(),
            std::mem::size_of::<libc::ip_mreqn>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Resolves a `ucast`/`ucast6` peer once, at open time.
///
/// Accepted: a host name or address (port = `port`); `addr%scope` for IPv6 (scope = index
/// or interface name; a link-local address without scope gets the link's interface); and,
/// as a halo extension, an explicit `host:port` / `[v6]:port`.
pub(super) fn resolve_peer(
    peer: &str,
    port: u16,
    v6: bool,
    ifindex: u32,
    medium: &str,
) -> Result<SocketAddr, HostError> {
    let family_ok = |a: &SocketAddr| a.is_ipv6() == v6;
    let wrong_family = || {
        HostError::medium(
            medium,
            if v6 { "peer is not an IPv6 address" } else { "peer is not an IPv4 address" },
        )
    };
    let link_local_scope = |mut a: SocketAddr| {
        if let SocketAddr::V6(s) = &mut a {
            if s.scope_id() == 0 && (s.ip().segments()[0] & 0xffc0) == 0xfe80 {
                s.set_scope_id(ifindex);
            }
        }
        a
    };
    if let Ok(a) = peer.parse::<SocketAddr>() {
        return if family_ok(&a) { Ok(link_local_scope(a)) } else { Err(wrong_family()) };
    }
    // `name:port` (one colon: an IPv6 address has at least two).
    let (peer, port) = match peer.split_once(':') {
        Some((h, p)) if !p.contains(':') => match p.parse::<u16>() {
            Ok(p) if p != 0 => (h, p),
            _ => return Err(HostError::medium(medium, format!("bad port {p:?}"))),
        },
        _ => (peer, port),
    };
    let (host, scope) = match peer.split_once('%') {
        Some((h, s)) if v6 => (h, Some(s)),
        _ => (peer, None),
    };
    if let Ok(ip) = host.parse::<IpAddr>() {
        let a = match ip {
            IpAddr::V4(ip) if !v6 => SocketAddr::V4(SocketAddrV4::new(ip, port)),
            IpAddr::V6(ip) if v6 => {
                let scope_id = match scope {
                    None => 0,
                    Some(s) => match s.parse::<u32>() {
                        Ok(n) => n,
                        Err(_) => match nix::net::if_::if_nametoindex(s) {
                            Ok(n) => n,
                            Err(_) => {
                                return Err(HostError::medium(medium, format!("no such interface {s}")))
                            }
                        },
                    },
                };
                SocketAddr::V6(SocketAddrV6::new(ip, port, 0, scope_id))
            }
            _ => return Err(wrong_family()),
        };
        return Ok(link_local_scope(a));
    }
    if scope.is_some() {
        return Err(HostError::medium(medium, "a %scope needs a literal IPv6 address"));
    }
    let addrs =
        (host, port).to_socket_addrs().map_err(|e| HostError::io(medium, "cannot resolve peer", e))?;
    let mut any_addr = false;
    for a in addrs {
        any_addr = true;
        if family_ok(&a) {
            return Ok(link_local_scope(a));
        }
    }
    if any_addr {
        Err(wrong_family())
    } else {
        Err(HostError::medium(medium, "cannot resolve peer: no address"))
    }
}
