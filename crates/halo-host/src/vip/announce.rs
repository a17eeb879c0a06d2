//! Telling the segment where a virtual address now lives: gratuitous ARP the way
//! `send_arp` puts it on the wire (spec §6), and unsolicited IPv6 neighbour advertisements.
//!
//! Frames are built here byte by byte (42 bytes of Ethernet + ARP, 86 of Ethernet + IPv6 +
//! ICMPv6) and sent on an `AF_PACKET` socket bound to nothing it could receive, so the
//! announcement does not depend on the address's state in the kernel (an IPv6 address still
//! tentative, or not configured at all).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::thread;
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::socket::{self, AddressFamily, LinkAddr, MsgFlags, SockFlag, SockType, SockaddrLike};

use super::addr::get_link;
use super::nl;
use super::{Resolved, VipError};

const ETH_P_ARP: u16 = 0x0806;
const ETH_P_IPV6: u16 = 0x86dd;
const ARPHRD_ETHER: u16 = 1;
const BROADCAST_MAC: [u8; 6] = [0xff; 6];
/// The Ethernet address of ff02::1 (all nodes), RFC 2464 §7.
const ALL_NODES_MAC: [u8; 6] = [0x33, 0x33, 0, 0, 0, 1];
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);
pub(super) const ARP_REQUEST: u16 = 1;
pub(super) const ARP_REPLY: u16 = 2;
const ICMPV6: u8 = 58;
const NEIGHBOUR_ADVERT: u8 = 136;
/// The NA's "override" flag (RFC 4861 §4.4): replace whatever the neighbours cached.
const NA_OVERRIDE: u8 = 0x20;
const OPT_TARGET_LL: u8 = 2;

/// An ARP frame as `send_arp` sends it, to the Ethernet broadcast address:
/// request `op=1 sha=mac spa=ip tha=0 tpa=ip`, reply `op=2 sha=mac spa=ip tha=mac tpa=ip`.
pub(super) fn arp_frame(op: u16, mac: [u8; 6], ip: Ipv4Addr) -> [u8; 42] {
    let mut f = [0u8; 42];
    f[0..6].copy_from_slice(&BROADCAST_MAC);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&ETH_P_ARP.to_be_bytes());
    f[14..16].copy_from_slice(&ARPHRD_ETHER.to_be_bytes());
    f[16..18].copy_from_slice(&0x0800u16.to_be_bytes());
    f[18] = 6;
    f[19] = 4;
    f[20..22].copy_from_slice(&op.to_be_bytes());
    f[22..28].copy_from_slice(&mac);
    f[28..32].copy_from_slice(&ip.octets());
    if op == ARP_REPLY {
        f[32..38].copy_from_slice(&mac);
    }
    f[38..42].copy_from_slice(&ip.octets());
    f
}

/// An unsolicited neighbour advertisement for `ip` from `ip` to ff02::1: hop limit 255,
/// override flag, target link-layer address option (RFC 4861 §4.4, §7.2.6).
pub(super) fn neighbour_advert(mac: [u8; 6], ip: Ipv6Addr) -> [u8; 86] {
    let mut f = [0u8; 86];
    f[0..6].copy_from_slice(&ALL_NODES_MAC);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&ETH_P_IPV6.to_be_bytes());
    // IPv6 header.
    let ip6 = &mut f[14..54];
    ip6[0] = 0x60;
    ip6[4..6].copy_from_slice(&32u16.to_be_bytes());
    ip6[6] = ICMPV6;
    ip6[7] = 255;
    ip6[8..24].copy_from_slice(&ip.octets());
    ip6[24..40].copy_from_slice(&ALL_NODES.octets());
    // ICMPv6 neighbour advertisement with the target link-layer address option.
    let icmp = &mut f[54..86];
    icmp[0] = NEIGHBOUR_ADVERT;
    icmp[4] = NA_OVERRIDE;
    icmp[8..24].copy_from_slice(&ip.octets());
    icmp[24] = OPT_TARGET_LL;
    icmp[25] = 1; // in units of 8 bytes
    icmp[26..32].copy_from_slice(&mac);
    let sum = icmpv6_checksum(ip, ALL_NODES, &f[54..86]);
    f[56..58].copy_from_slice(&sum.to_be_bytes());
    f
}

/// The ICMPv6 checksum (RFC 4443 §2.3) of `msg` (checksum field zero) over the IPv6
/// pseudo-header.
fn icmpv6_checksum(src: Ipv6Addr, dst: Ipv6Addr, msg: &[u8]) -> u16 {
    let mut sum: u64 = 0;
    let mut add = |bytes: &[u8]| {
        for c in bytes.chunks(2) {
            let hi = u64::from(c[0]) << 8;
            sum += hi | c.get(1).map_or(0, |&b| u64::from(b));
        }
    };
    add(&src.octets());
    add(&dst.octets());
    add(&u32::try_from(msg.len()).unwrap_or(u32::MAX).to_be_bytes());
    add(&[0, 0, 0, ICMPV6]);
    add(msg);
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// What an announcement put on the wire.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AnnounceStats {
    /// Gratuitous ARP requests sent.
    pub arp_requests: u32,
    /// Gratuitous ARP replies sent.
    pub arp_replies: u32,
    /// Unsolicited neighbour advertisements sent.
    pub neighbour_adverts: u32,
    /// Frames the kernel refused (link down, buffer full, ...).
    pub failed: u32,
    /// Why the first refused frame was refused.
    pub first_error: Option<String>,
}

impl AnnounceStats {
    /// Frames sent, all kinds together.
    pub fn sent(&self) -> u32 {
        self.arp_requests + self.arp_replies + self.neighbour_adverts
    }
}

/// One announcement in progress, paced by its caller: [`Announcer::send_next`] sends one
/// frame and says how long to wait before the next, so a worker can interleave several
/// announcements or stop one early. [`announce`] is the simple blocking loop over it.
///
/// IPv4: `count` pairs, a request then half an `interval` later a reply, one frame every
/// `interval / 2` (send_arp's pattern: IPaddr2's 5 × 200 ms, IPaddr's 10 × 500 ms).
/// IPv6: `count` neighbour advertisements, one every `interval`.
#[derive(Debug)]
pub struct Announcer {
    sock: OwnedFd,
    dest: LinkAddr,
    /// The cycle of frames (request, reply for IPv4; the advertisement for IPv6).
    frames: Vec<Vec<u8>>,
    total: u32,
    next: u32,
    gap: Duration,
    mac: [u8; 6],
    what: String,
    stats: AnnounceStats,
}

impl Announcer {
    /// Prepares `count` announcements of `r.addr` on `r.iface` every `interval`: looks up the
    /// interface's MAC address and opens the packet socket. The interface must be Ethernet
    /// (an address on `lo` has no one to announce it to).
    pub fn open(r: &Resolved, count: u32, interval: Duration) -> Result<Announcer, VipError> {
        let what = format!("announce {} on {}", r.addr, r.iface);
        let mut nls = nl::Socket::request().map_err(|e| e.context(what.clone()))?;
        let link = get_link(&mut nls, r.ifindex).map_err(|e| e.context(what.clone()))?;
        let unsupported = |reason: String| VipError::Unsupported { what: what.clone(), reason };
        if link.link_type != ARPHRD_ETHER {
            return Err(unsupported(format!("not an Ethernet interface (link type {})", link.link_type)));
        }
        let mac: [u8; 6] = match link.hwaddr.as_deref().map(<[u8; 6]>::try_from) {
            Some(Ok(m)) => m,
            _ => return Err(unsupported("the interface has no 6-byte hardware address".into())),
        };
        let (ethertype, dest_mac, frames, total, gap) = match r.addr {
            IpAddr::V4(a) => (
                ETH_P_ARP,
                BROADCAST_MAC,
                vec![arp_frame(ARP_REQUEST, mac, a).to_vec(), arp_frame(ARP_REPLY, mac, a).to_vec()],
                count.saturating_mul(2),
                interval / 2,
            ),
            IpAddr::V6(a) => {
                (ETH_P_IPV6, ALL_NODES_MAC, vec![neighbour_advert(mac, a).to_vec()], count, interval)
            }
        };
        let dest = link_addr(r.ifindex, ethertype, dest_mac)
            .ok_or_else(|| unsupported("bad link address".into()))?;
        // Protocol 0: this socket sends only, it never queues received frames.
        let sock =
            socket::socket(AddressFamily::Packet, SockType::Raw, SockFlag::SOCK_CLOEXEC, None).map_err(
                |e| VipError::Os { what: format!("{what}: packet socket"), error: e.into(), detail: None },
            )?;
        Ok(Announcer { sock, dest, frames, total, next: 0, gap, mac, what, stats: AnnounceStats::default() })
    }

    /// Sends the next frame. Returns how long to wait before calling again, or `None` when
    /// that was the last one (or nothing was left to send). A frame the kernel refuses is
    /// counted in [`AnnounceStats::failed`] and the announcement goes on.
    pub fn send_next(&mut self) -> Option<Duration> {
        if self.next >= self.total {
            return None;
        }
        let i = (self.next as usize) % self.frames.len();
        self.next += 1;
        let frame = &self.frames[i];
        let sent = loop {
            match socket::sendto(self.sock.as_raw_fd(), frame, &self.dest, MsgFlags::empty()) {
                Err(Errno::EINTR) => continue,
                r => break r,
            }
        };
        match sent {
            Ok(_) => match (frame.len(), i) {
                (42, 0) => self.stats.arp_requests += 1,
                (42, _) => self.stats.arp_replies += 1,
                _ => self.stats.neighbour_adverts += 1,
            },
            Err(e) => {
                self.stats.failed += 1;
                if self.stats.first_error.is_none() {
                    self.stats.first_error = Some(format!("{}: {e}", self.what));
                }
            }
        }
        (self.next < self.total).then_some(self.gap)
    }

    /// True once every frame has been sent (or refused).
    pub fn done(&self) -> bool {
        self.next >= self.total
    }

    /// What was sent so far.
    pub fn stats(&self) -> &AnnounceStats {
        &self.stats
    }

    /// The interface's MAC address, as put in the frames.
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }
}

/// Where frames go: the interface, the EtherType, the destination MAC.
fn link_addr(ifindex: u32, ethertype: u16, dest: [u8; 6]) -> Option<LinkAddr> {
    // SAFETY: sockaddr_ll is plain old data, for which all-zero bytes are valid.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as libc::c_ushort;
    sll.sll_protocol = ethertype.to_be();
    sll.sll_ifindex = i32::try_from(ifindex).ok()?;
    sll.sll_halen = 6;
    sll.sll_addr[..6].copy_from_slice(&dest);
    let len = std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t;
    // SAFETY: the pointer is to a fully initialised sockaddr_ll of `len` bytes that outlives
    // the call; from_raw copies it and checks the family.
    unsafe { LinkAddr::from_raw((&sll as *const libc::sockaddr_ll).cast(), Some(len)) }
}

/// Announces `r.addr` on `r.iface`, blocking until done (about `count × interval`): the
/// gratuitous ARP request/reply pairs of `send_arp`, or unsolicited neighbour
/// advertisements for IPv6 (see [`Announcer`]). Fails if the announcement cannot be set up
/// or if not a single frame could be sent; otherwise the stats say what went out.
pub fn announce(r: &Resolved, count: u32, interval: Duration) -> Result<AnnounceStats, VipError> {
    let mut a = Announcer::open(r, count, interval)?;
    while let Some(wait) = a.send_next() {
        thread::sleep(wait);
    }
    let stats = a.stats.clone();
    if stats.sent() == 0 && stats.failed > 0 {
        let first = stats.first_error.unwrap_or_default();
        return Err(VipError::Unsupported {
            what: a.what,
            reason: format!("no frame could be sent ({} refused; first: {first})", stats.failed),
        });
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use etherparse::icmpv6::NdpOptionSlice;
    use etherparse::{
        ArpOperation, EtherType, Icmpv6Slice, Icmpv6Type, Ipv6Slice, LinkSlice, NetSlice, SlicedPacket,
    };

    const MAC: [u8; 6] = [0x02, 0x00, 0x5e, 0x10, 0x20, 0x30];

    #[test]
    fn arp_frames_as_send_arp() {
        let ip: Ipv4Addr = "192.0.2.10".parse().expect("ip");
        for (op, tha) in [(ARP_REQUEST, [0u8; 6]), (ARP_REPLY, MAC)] {
            let f = arp_frame(op, MAC, ip);
            let p = SlicedPacket::from_ethernet(&f).expect("parses");
            let Some(LinkSlice::Ethernet2(eth)) = p.link else { panic!("ethernet") };
            assert_eq!((eth.destination(), eth.source(), eth.ether_type()), ([0xff; 6], MAC, EtherType::ARP));
            let Some(NetSlice::Arp(arp)) = p.net else { panic!("arp") };
            let arp = arp.to_packet().try_eth_ipv4().expect("eth/ipv4 arp");
            assert_eq!(arp.operation, ArpOperation::from(op));
            assert_eq!((arp.sender_mac, arp.sender_ipv4), (MAC, ip.octets()));
            assert_eq!((arp.target_mac, arp.target_ipv4), (tha, ip.octets()));
        }
        // The request of capture 02, byte for byte after the MAC addresses.
        let f = arp_frame(ARP_REQUEST, MAC, ip);
        assert_eq!(&f[12..22], &[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    }

    #[test]
    fn neighbour_advert_fields_and_checksum() {
        let ip: Ipv6Addr = "2001:db8:77::10".parse().expect("ip");
        let f = neighbour_advert(MAC, ip);
        let p = SlicedPacket::from_ethernet(&f).expect("parses");
        let Some(LinkSlice::Ethernet2(eth)) = p.link else { panic!("ethernet") };
        assert_eq!(
            (eth.destination(), eth.source(), eth.ether_type()),
            (ALL_NODES_MAC, MAC, EtherType::IPV6)
        );
        let ip6 = Ipv6Slice::from_slice(&f[14..]).expect("ipv6");
        let h = ip6.header();
        assert_eq!((h.source_addr(), h.destination_addr(), h.hop_limit()), (ip, ALL_NODES, 255));
        assert_eq!((h.payload_length(), h.next_header().0), (32, ICMPV6));
        let icmp = Icmpv6Slice::from_slice(&f[54..]).expect("icmpv6");
        assert!(icmp.is_checksum_valid(ip.octets(), ALL_NODES.octets()), "checksum");
        let Icmpv6Type::NeighborAdvertisement(na) = icmp.icmp_type() else { panic!("NA") };
        assert!(na.r#override && !na.solicited && !na.router);
        let payload = etherparse::icmpv6::NeighborAdvertisementPayloadSlice::from_slice(icmp.payload())
            .expect("NA payload");
        assert_eq!(payload.target_address(), ip);
        let opts: Vec<_> = payload.options_iterator().collect();
        assert_eq!(opts.len(), 1);
        let Ok(NdpOptionSlice::TargetLinkLayerAddress(tll)) = &opts[0] else { panic!("TLLA {opts:?}") };
        assert_eq!(tll.link_layer_address(), &MAC);
    }

    #[test]
    fn checksum_verifies_to_zero() {
        // Odd length, and enough ones to carry several times.
        let a: Ipv6Addr = "fe80::1".parse().expect("ip");
        let mut msg = [0x88u8, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xab];
        let sum = icmpv6_checksum(a, ALL_NODES, &msg);
        msg[2..4].copy_from_slice(&sum.to_be_bytes());
        assert_eq!(icmpv6_checksum(a, ALL_NODES, &msg), 0);
    }
}
