//! Virtual IP addresses: the building blocks of halo's built-in `IPaddr` / `IPaddr2`
//! (`spec/heartbeat.md` §4.1 and §6), done in-process over netlink and packet sockets
//! instead of `ifconfig`, `ip` and `send_arp`.
//!
//! * [`parse_ip_spec`] reads the haresources argument `ip[/bits[/iface[:label]][/broadcast]]`.
//! * [`resolve`] fills in what the operator left out the way resource-agents' `findif` does
//!   (the interface and prefix of the directly connected route that covers the address).
//! * [`add`], [`remove`], [`present`] and [`next_free_label`] manage the address itself
//!   (`RTM_NEWADDR` / `RTM_DELADDR` / `RTM_GETADDR`).
//! * [`announce`] / [`Announcer`] tell the segment where the address now lives:
//!   gratuitous ARP exactly as `send_arp` puts it on the wire, or an unsolicited IPv6
//!   neighbour advertisement.
//! * [`take_from_loopback`] / [`restore_loopback`] implement IPaddr2's `lvs_support`: a
//!   director that is also an LVS-DR real server keeps the VIP hidden on `lo` until it takes
//!   the VIP over, and gets it back there when it gives the VIP up.
//! * [`AddrWatch`] reports addresses added and removed behind halo's back (NetworkManager,
//!   an operator's `ip addr del`, the kernel dropping IPv6 addresses on link down).
//!
//! Everything here is synchronous and may block for a while (netlink round trips, the
//! announcer's pacing): call it from a worker thread, never from the heartbeat thread and
//! never from inside an async runtime's executor. Nothing here panics on what the kernel
//! sends back: a reply that cannot be decoded is a [`VipError::Malformed`].
//!
//! All functions act in the network namespace of the calling thread.

mod addr;
mod announce;
mod nl;
pub mod realserver;
mod spec;
mod watch;

#[cfg(test)]
mod tests;

use std::io;
use std::net::{IpAddr, Ipv4Addr};

pub use addr::{
    add, next_free_label, present, present_all, remove, resolve, restore_loopback, take_from_loopback,
    AddrInfo, LoopbackSave,
};
pub use announce::{announce, AnnounceStats, Announcer};
pub use spec::parse_ip_spec;
pub use watch::{AddrEvent, AddrWatch};

/// A virtual address as the operator wrote it (`10.0.0.5/24/eth0:web/10.0.0.255`), before
/// [`resolve`] fills in what was left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VipSpec {
    /// The address itself.
    pub addr: IpAddr,
    /// Prefix length (`bits`); a dotted IPv4 netmask is accepted and stored as its length.
    pub prefix: Option<u8>,
    /// Interface to put the address on (`nic`).
    pub iface: Option<String>,
    /// The part after `iface:` — the address gets the kernel label `iface:label`
    /// (IPv4 only, as `ip addr add ... label` and ifconfig aliases).
    pub label: Option<String>,
    /// IPv4 broadcast address (`brd`); when absent, [`resolve`] computes the network's.
    pub broadcast: Option<Ipv4Addr>,
}

/// A virtual address with everything needed to configure and announce it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// The address itself.
    pub addr: IpAddr,
    /// Prefix length of the configured address.
    pub prefix: u8,
    /// Interface name.
    pub iface: String,
    /// Interface index (as the kernel knew it when [`resolve`] ran).
    pub ifindex: u32,
    /// Full kernel label (`IFA_LABEL`, e.g. `eth0:0`), IPv4 only; `None` leaves the kernel's
    /// default (the interface name).
    pub label: Option<String>,
    /// IPv4 broadcast address; `None` for IPv6 and for /31 and /32 addresses.
    pub broadcast: Option<Ipv4Addr>,
}

/// Why a virtual-address operation failed. Messages name the address or interface and say
/// what was expected, so they can be logged as they are.
#[derive(Debug, thiserror::Error)]
pub enum VipError {
    /// The haresources IP spec could not be read.
    #[error("IP spec {input:?}: {expected}")]
    Spec {
        /// The spec as given.
        input: String,
        /// What was wrong, phrased as what was expected.
        expected: String,
    },
    /// No directly connected route covers the address, so the interface (or prefix) cannot
    /// be found (findif's "Unable to find nic or netmask").
    #[error("{addr}: no route covers it{}; give prefix and interface (ip/bits/iface)",
        .iface.as_deref().map(|i| format!(" on {i}")).unwrap_or_default())]
    NoRoute {
        /// The address looked up.
        addr: IpAddr,
        /// The interface the route had to go through, when one was given.
        iface: Option<String>,
    },
    /// The named interface does not exist (in this network namespace).
    #[error("interface {iface:?}: no such interface")]
    NoSuchInterface {
        /// The interface name.
        iface: String,
    },
    /// A system call failed or the kernel refused a request.
    #[error("{what}: {error}{}", .detail.as_deref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Os {
        /// What was being done, e.g. `add 10.0.0.5/24 on eth0`.
        what: String,
        /// The error.
        error: io::Error,
        /// The kernel's own explanation (netlink extended ack), when it gave one.
        detail: Option<String>,
    },
    /// The kernel's netlink reply could not be decoded.
    #[error("{what}: malformed netlink reply: {reason}")]
    Malformed {
        /// What was being done.
        what: String,
        /// What was wrong with the reply.
        reason: String,
    },
    /// The request cannot be carried out as asked (an IPv6 label, a non-Ethernet interface
    /// to announce on, a label too long for the kernel, ...).
    #[error("{what}: {reason}")]
    Unsupported {
        /// What was being done.
        what: String,
        /// Why it cannot be done.
        reason: String,
    },
}

impl VipError {
    /// The OS error number behind this error, if it is an [`VipError::Os`].
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            VipError::Os { error, .. } => error.raw_os_error(),
            _ => None,
        }
    }
}

/// `addr/prefix`, for messages.
fn cidr(addr: IpAddr, prefix: u8) -> String {
    format!("{addr}/{prefix}")
}
