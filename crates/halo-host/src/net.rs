//! The communication links: every `bcast`, `mcast`, `mcast6`, `ucast`, `ucast6` and `serial`
//! medium of `ha.cf`, opened once and then driven by the heartbeat thread's `poll(2)` loop.
//!
//! Media that share a link name form one logical link, as in Heartbeat, which names a link
//! after its interface (or serial device path): two `ucast eth0 <peer>` lines in a 3-node
//! cluster are one link `eth0` with one receive socket and two send targets. A link has one
//! receive socket per (address family, interface, port), each bound to its interface, and one
//! send socket per medium.
//!
//! Everything after [`Links::open`] is non-blocking: a full socket or tty buffer drops the
//! packet and counts it in [`LinkStats::tx_dropped`]; errors are returned per link and never
//! stop the other links. Opening may block briefly (peer name resolution), so do it before
//! the heartbeat loop starts.

pub mod ping;
mod serial;
mod sock;

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::{AsRawFd, RawFd};

use nix::errno::Errno;
use nix::sys::socket::MsgFlags;
use socket2::{SockAddr, Socket};

use crate::HostError;

/// One medium line of `ha.cf`: halo-host opens exactly what halo-config parsed.
///
/// For `ucast`/`ucast6`, PEER may also be `host:port` / `[addr]:port` (a halo extension,
/// not Heartbeat syntax), which lets several nodes share one machine in tests.
pub use halo_config::Medium as LinkSpec;

/// Counters of one logical link since [`Links::open`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Datagrams (or complete serial frames) received.
    pub rx_packets: u64,
    /// Bytes received (for serial: every byte read, frames or not).
    pub rx_bytes: u64,
    /// Datagrams (or serial frames) handed to the kernel.
    pub tx_packets: u64,
    /// Bytes handed to the kernel.
    pub tx_bytes: u64,
    /// Sends dropped because a socket or tty buffer was full.
    pub tx_dropped: u64,
    /// Sends that failed with an error (returned by [`Links::send_all`]).
    pub tx_errors: u64,
    /// Receive failures: errors, truncated datagrams, serial frames lost to resync.
    pub rx_errors: u64,
}

/// The largest datagram we accept; anything longer is truncated by the kernel and counted
/// as an error. UDP over IPv4 cannot carry more than 65,507 bytes anyway.
const MAX_DATAGRAM: usize = 65_536;

/// How many datagrams or reads one [`Links::recv`] call takes before returning, so a flood
/// on one link cannot starve the others (poll is level-triggered: the rest comes next round).
const MAX_BATCH: usize = 256;

/// One send destination of a link, with the socket configured for its medium.
struct Target {
    sock: Socket,
    dest: SockAddr,
    /// `ucast eth0 nodeb -> 10.0.0.2:694`, for error messages.
    what: String,
}

struct Link {
    name: String,
    kind: &'static str,
    targets: Vec<Target>,
    serial: Option<serial::Port>,
    stats: LinkStats,
}

/// A receive socket, shared by every medium of one link on one (family, port).
struct RxSock {
    link: usize,
    v6: bool,
    port: u16,
    sock: Socket,
    joined4: Vec<Ipv4Addr>,
    joined6: Vec<Ipv6Addr>,
}

/// Every communication link of this node, open and ready for the poll loop.
pub struct Links {
    links: Vec<Link>,
    rx: Vec<RxSock>,
    buf: Vec<u8>,
}

impl std::fmt::Debug for Links {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut l = f.debug_list();
        for link in &self.links {
            l.entry(&format_args!("{} {} ({} targets)", link.kind, link.name, link.targets.len()));
        }
        l.finish()
    }
}

impl Links {
    /// Opens every medium. Media that share a link name (e.g. two `ucast eth0 <peer>` lines in
    /// a 3-node cluster) form ONE logical link: one receive socket per (iface, port), several
    /// send targets. Link name = iface for IP media, the device path for serial (as Heartbeat
    /// names links). Identical media lines are opened once.
    ///
    /// May block while resolving `ucast` peer names; call it before the heartbeat loop.
    pub fn open(specs: &[LinkSpec], udpport: u16) -> Result<Links, HostError> {
        let mut links = Links { links: Vec::new(), rx: Vec::new(), buf: vec![0; MAX_DATAGRAM] };
        for (i, spec) in specs.iter().enumerate() {
            if specs[..i].contains(spec) {
                continue;
            }
            links.open_one(spec, udpport)?;
        }
        Ok(links)
    }

    fn open_one(&mut self, spec: &LinkSpec, udpport: u16) -> Result<(), HostError> {
        let medium = spec.describe();
        let name = spec.link_name();
        let link = match self.links.iter().position(|l| l.name == name) {
            Some(i) => i,
            None => {
                self.links.push(Link {
                    name,
                    kind: spec.kind(),
                    targets: Vec::new(),
                    serial: None,
                    stats: LinkStats::default(),
                });
                self.links.len() - 1
            }
        };
        match spec {
            LinkSpec::Serial { device, baud } => {
                if self.links[link].serial.is_some() {
                    return Err(HostError::medium(&medium, "device given twice"));
                }
                self.links[link].serial = Some(serial::Port::open(device, *baud, &medium)?);
            }
            LinkSpec::Bcast { iface } => {
                let port = nonzero_port(udpport, &medium)?;
                sock::ifindex(iface, &medium)?;
                let bcast = sock::broadcast_addr(iface, &medium)?;
                self.rx_socket(link, false, iface, port, &medium)?;
                let dest = SocketAddr::V4(SocketAddrV4::new(bcast, port));
                let sock = sock::bcast_sender(iface, &medium)?;
                self.add_target(link, sock, dest, &medium);
            }
            LinkSpec::Mcast { iface, group, port, ttl, looped } => {
                let port = nonzero_port(*port, &medium)?;
                if !group.is_multicast() {
                    return Err(HostError::medium(&medium, "not a multicast group"));
                }
                let ifindex = sock::ifindex(iface, &medium)?;
                let rx = self.rx_socket(link, false, iface, port, &medium)?;
                if !self.rx[rx].joined4.contains(group) {
                    sock::join4(&self.rx[rx].sock, *group, ifindex, &medium)?;
                    self.rx[rx].joined4.push(*group);
                }
                let sock = sock::mcast_sender(iface, ifindex, *ttl, *looped, &medium)?;
                let dest = SocketAddr::V4(SocketAddrV4::new(*group, port));
                self.add_target(link, sock, dest, &medium);
            }
            LinkSpec::Mcast6 { iface, group, port, hops } => {
                let port = nonzero_port(*port, &medium)?;
                if !group.is_multicast() {
                    return Err(HostError::medium(&medium, "not a multicast group"));
                }
                let ifindex = sock::ifindex(iface, &medium)?;
                let rx = self.rx_socket(link, true, iface, port, &medium)?;
                if !self.rx[rx].joined6.contains(group) {
                    sock::join6(&self.rx[rx].sock, *group, ifindex, &medium)?;
                    self.rx[rx].joined6.push(*group);
                }
                let sock = sock::mcast6_sender(iface, ifindex, *hops, &medium)?;
                let dest = SocketAddr::V6(SocketAddrV6::new(*group, port, 0, ifindex));
                self.add_target(link, sock, dest, &medium);
            }
            LinkSpec::Ucast { iface, peer } | LinkSpec::Ucast6 { iface, peer } => {
                let v6 = matches!(spec, LinkSpec::Ucast6 { .. });
                let port = nonzero_port(udpport, &medium)?;
                let ifindex = sock::ifindex(iface, &medium)?;
                let dest = sock::resolve_peer(peer, port, v6, ifindex, &medium)?;
                self.rx_socket(link, v6, iface, port, &medium)?;
                let sock = sock::ucast_sender(v6, iface, &medium)?;
                self.add_target(link, sock, dest, &medium);
            }
        }
        Ok(())
    }

    /// The receive socket of `link` for (family, port), created on first use.
    fn rx_socket(
        &mut self,
        link: usize,
        v6: bool,
        iface: &str,
        port: u16,
        medium: &str,
    ) -> Result<usize, HostError> {
        if let Some(i) = self.rx.iter().position(|r| r.link == link && r.v6 == v6 && r.port == port) {
            return Ok(i);
        }
        let sock = sock::rx_socket(v6, iface, port, medium)?;
        self.rx.push(RxSock { link, v6, port, sock, joined4: Vec::new(), joined6: Vec::new() });
        Ok(self.rx.len() - 1)
    }

    fn add_target(&mut self, link: usize, sock: Socket, dest: SocketAddr, medium: &str) {
        self.links[link].targets.push(Target {
            sock,
            dest: SockAddr::from(dest),
            what: format!("{medium} -> {dest}"),
        });
    }

    /// Number of logical links.
    pub fn len(&self) -> usize {
        self.links.len()
    }

    /// True when no medium was configured.
    pub fn is_empty(&self) -> bool {
        self.links.is_empty()
    }

    /// Whether any link is a serial line (only those need the classic text encoding).
    pub fn has_serial(&self) -> bool {
        self.links.iter().any(|l| l.serial.is_some())
    }

    /// The link's name (interface, or serial device path); "" for an unknown index.
    pub fn name(&self, link: usize) -> &str {
        self.links.get(link).map_or("", |l| l.name.as_str())
    }

    /// The link's medium type (that of its first medium): "ucast" | "bcast" | "mcast" |
    /// "mcast6" | "ucast6" | "serial"; "" for an unknown index.
    pub fn kind(&self, link: usize) -> &'static str {
        self.links.get(link).map_or("", |l| l.kind)
    }

    /// The link's counters (all zero for an unknown index).
    pub fn stats(&self, link: usize) -> LinkStats {
        self.links.get(link).map_or_else(LinkStats::default, |l| l.stats)
    }

    /// (link index, fd) for every descriptor to poll for `POLLIN`.
    pub fn poll_fds(&self) -> Vec<(usize, RawFd)> {
        let mut fds: Vec<(usize, RawFd)> = self.rx.iter().map(|r| (r.link, r.sock.as_raw_fd())).collect();
        for (i, link) in self.links.iter().enumerate() {
            if let Some(port) = &link.serial {
                fds.push((i, port.fd()));
            }
        }
        fds
    }

    /// Send one message on every link: IP links get `datagram` (netstring bytes), serial
    /// links get `classic` (classic text bytes). Errors are returned per link (at most one
    /// per link, the first), never panic; a full socket buffer (EAGAIN) counts as a dropped
    /// send, not an error that stops others.
    pub fn send_all(&mut self, datagram: &[u8], classic: &[u8]) -> Vec<(usize, io::Error)> {
        let mut errors = Vec::new();
        for link in 0..self.links.len() {
            if let Err(e) = self.send_link(link, datagram, classic) {
                errors.push((link, e));
            }
        }
        errors
    }

    /// Send one message on one link only (e.g. to forward a packet around a serial ring).
    /// Returns the first error; every target is tried regardless.
    pub fn send_link(&mut self, link: usize, datagram: &[u8], classic: &[u8]) -> io::Result<()> {
        let Some(l) = self.links.get_mut(link) else {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, format!("no link {link}")));
        };
        let mut first: Option<io::Error> = None;
        for t in &l.targets {
            match send_datagram(&t.sock, datagram, &t.dest) {
                Ok(()) => {
                    l.stats.tx_packets += 1;
                    l.stats.tx_bytes += datagram.len() as u64;
                }
                Err(e) if is_full(&e) => l.stats.tx_dropped += 1,
                Err(e) => {
                    l.stats.tx_errors += 1;
                    if first.is_none() {
                        first = Some(io::Error::new(e.kind(), format!("{}: {e}", t.what)));
                    }
                }
            }
        }
        if let Some(port) = &mut l.serial {
            match port.send(classic) {
                Ok(true) => {
                    l.stats.tx_packets += 1;
                    l.stats.tx_bytes += classic.len() as u64;
                }
                Ok(false) => l.stats.tx_dropped += 1,
                Err(e) => {
                    l.stats.tx_errors += 1;
                    if first.is_none() {
                        first = Some(io::Error::new(e.kind(), format!("serial {}: {e}", l.name)));
                    }
                }
            }
        }
        match first {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Drain everything readable on that fd without blocking; push each received message's
    /// bytes (one UDP datagram, or one complete serial frame `">>>\n...<<<\n"`) into `out`,
    /// tagged with its link index. Takes at most a batch per call so one busy link cannot
    /// starve the others; the poll loop comes back for the rest.
    ///
    /// A serial hangup is reported as `UnexpectedEof`; messages received before an error are
    /// still in `out`.
    pub fn recv(&mut self, fd: RawFd, out: &mut Vec<(usize, Vec<u8>)>) -> io::Result<()> {
        if let Some(i) = self.rx.iter().position(|r| r.sock.as_raw_fd() == fd) {
            return self.recv_udp(i, out);
        }
        if let Some(link) = self.links.iter().position(|l| l.serial.as_ref().is_some_and(|p| p.fd() == fd)) {
            let l = &mut self.links[link];
            if let Some(port) = &mut l.serial {
                return port
                    .recv(link, &mut l.stats, out)
                    .map_err(|e| io::Error::new(e.kind(), format!("serial {}: {e}", l.name)));
            }
        }
        Err(io::Error::new(io::ErrorKind::InvalidInput, format!("fd {fd} is not a link descriptor")))
    }

    fn recv_udp(&mut self, i: usize, out: &mut Vec<(usize, Vec<u8>)>) -> io::Result<()> {
        let rx = &self.rx[i];
        let link = rx.link;
        let stats = &mut self.links[link].stats;
        for _ in 0..MAX_BATCH {
            let flags = MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_TRUNC;
            match nix::sys::socket::recv(rx.sock.as_raw_fd(), &mut self.buf, flags) {
                Ok(n) if n > self.buf.len() => stats.rx_errors += 1,
                Ok(0) => {}
                Ok(n) => {
                    stats.rx_packets += 1;
                    stats.rx_bytes += n as u64;
                    out.push((link, self.buf[..n].to_vec()));
                }
                Err(Errno::EAGAIN) => return Ok(()),
                Err(Errno::EINTR) => {}
                Err(e) => {
                    stats.rx_errors += 1;
                    return Err(io::Error::new(
                        io::Error::from(e).kind(),
                        format!("{} {} port {}: {e}", self.links[link].kind, self.links[link].name, rx.port),
                    ));
                }
            }
        }
        Ok(())
    }
}

fn nonzero_port(port: u16, medium: &str) -> Result<u16, HostError> {
    if port == 0 {
        Err(HostError::medium(medium, "port 0 is not usable"))
    } else {
        Ok(port)
    }
}

fn send_datagram(sock: &Socket, buf: &[u8], dest: &SockAddr) -> io::Result<()> {
    loop {
        match sock.send_to(buf, dest) {
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// A send that failed only because a queue was full: the packet is dropped, the link is fine.
fn is_full(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock || e.raw_os_error() == Some(libc::ENOBUFS)
}

#[cfg(test)]
mod tests;
