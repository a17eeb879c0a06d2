//! The IPVS data plane: the kernel's own load balancer (`ip_vs`), driven over generic netlink
//! the way `ipvsadm` 1.31 drives it, for kernels that have it.
//!
//! [`IpvsDataPlane::apply`] takes the same [`Desired`] state as the nftables plane, reads the
//! kernel's table back (`IPVS_CMD_GET_SERVICE` / `IPVS_CMD_GET_DEST` dumps), compares, and
//! sends only the difference: `NEW_SERVICE` / `SET_SERVICE` / `DEL_SERVICE` and `NEW_DEST` /
//! `SET_DEST` / `DEL_DEST`, one per service or real server that differs. It never flushes and
//! never replays: a real server whose weight changes is edited in place, so its connections,
//! its persistence templates and the counters `ipvsadm --stats` shows survive, and every
//! other real server is not touched at all. [`IpvsDataPlane::apply_services`] takes the
//! richer [`ipvsadm::Service`] model instead (fwmark services, IPv6, `ipip` tunnelling,
//! scheduler flags, thresholds), which is what the common [`Desired`] model maps into.
//!
//! Which services are halo's: those it was asked to run (in this process, by this plane or a
//! clone), plus those passed to [`IpvsDataPlane::adopt`] (a restart that finds a table left by
//! a killed daemon). A service someone else added with `ipvsadm` is left alone, as
//! ldirectord leaves it alone, unless its key is one halo wants: then halo makes it what it
//! wants.
//!
//! Reading back: [`IpvsDataPlane::model`] returns the kernel's table as the
//! [`ipvsadm::Model`] `halo lvs` prints (version and table size from `IPVS_CMD_GET_INFO`,
//! every service and real server with its ActiveConn/InActConn/persistent counts, 64-bit
//! counters and rate estimates, and the connection entries of `/proc/net/ip_vs_conn`), so
//! `halo lvs` prints exactly what `ipvsadm -L -n` prints for the same kernel.
//!
//! The sync daemon (`ipvsadm --start-daemon master|backup`, with `--mcast-group`,
//! `--mcast-port`, `--mcast-ttl`, `--sync-maxlen`): [`IpvsDataPlane::start_daemon`],
//! [`IpvsDataPlane::stop_daemon`], [`IpvsDataPlane::daemons`]. A master multicasts each
//! connection once it is established (and on later state changes); a standby director's
//! backup daemon puts them in its own table, so that when it takes the VIP the established
//! connections carry on to the same real servers (shown in `crates/halo/tests/ipvs_vm.rs`,
//! which also runs the real daemon's director on this plane).
//!
//! Everything works in the network namespace of the calling thread (the socket is made
//! there; the connection table is read from `/proc/thread-self/net`).
//!
//! The netlink client is hand-written over a plain `NETLINK_GENERIC` socket (nix), as
//! halo-host's route client is: the socket is bound with port id 0, so the kernel picks a
//! unique one and any number of sockets can coexist in a process (the `nlrs` crate binds
//! `getpid()`, which allows one). The kernel structures used are stable ABI
//! (`linux/ip_vs.h`, `linux/genetlink.h`); every length the kernel sends is checked before use.
//!
//! [`PlaneChoice`] and [`DataPlane`] pick and drive either plane: `auto` takes IPVS when the
//! generic netlink family `IPVS` resolves (or `/proc/net/ip_vs` exists), else nftables.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::socket::{
    self, sockopt, AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType,
};
use nix::sys::time::TimeVal;

use super::{nft, Desired, Forward, InvalidDesired, Protocol, RealStats, ServiceKey};
use crate::ipvsadm;
use crate::scheduler::Netmask;

/// The generic netlink family of IPVS.
pub const FAMILY_NAME: &str = "IPVS";
/// Where a kernel with IPVS lists its connections.
pub const PROC_CONN: &str = "/proc/net/ip_vs_conn";
/// The same for the calling thread's network namespace (`/proc/net` is the process's main
/// thread's view; a thread that entered another namespace sees its own only here).
pub const PROC_CONN_THREAD: &str = "/proc/thread-self/net/ip_vs_conn";
/// Present when the kernel has IPVS (loaded).
pub const PROC_IPVS: &str = "/proc/net/ip_vs";

// linux/netlink.h
const NLMSG_NOOP: u16 = 1;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLMSG_OVERRUN: u16 = 4;
const NLM_F_REQUEST: u16 = 0x01;
const NLM_F_ACK: u16 = 0x04;
const NLM_F_DUMP_INTR: u16 = 0x10;
const NLM_F_DUMP: u16 = 0x300;
const NLA_TYPE_MASK: u16 = 0x3fff;
const HDR_LEN: usize = 16;
const GENL_HDR_LEN: usize = 4;

// linux/genetlink.h
const GENL_ID_CTRL: u16 = 0x10;
const CTRL_CMD_GETFAMILY: u8 = 3;
const CTRL_ATTR_FAMILY_ID: u16 = 1;
const CTRL_ATTR_FAMILY_NAME: u16 = 2;

// linux/ip_vs.h
const IPVS_GENL_VERSION: u8 = 1;
const CMD_NEW_SERVICE: u8 = 1;
const CMD_SET_SERVICE: u8 = 2;
const CMD_DEL_SERVICE: u8 = 3;
const CMD_GET_SERVICE: u8 = 4;
const CMD_NEW_DEST: u8 = 5;
const CMD_SET_DEST: u8 = 6;
const CMD_DEL_DEST: u8 = 7;
const CMD_GET_DEST: u8 = 8;
const CMD_NEW_DAEMON: u8 = 9;
const CMD_DEL_DAEMON: u8 = 10;
const CMD_GET_DAEMON: u8 = 11;
const CMD_GET_INFO: u8 = 15;

const CMD_ATTR_SERVICE: u16 = 1;
const CMD_ATTR_DEST: u16 = 2;
const CMD_ATTR_DAEMON: u16 = 3;

const SVC_ATTR_AF: u16 = 1;
const SVC_ATTR_PROTOCOL: u16 = 2;
const SVC_ATTR_ADDR: u16 = 3;
const SVC_ATTR_PORT: u16 = 4;
const SVC_ATTR_FWMARK: u16 = 5;
const SVC_ATTR_SCHED_NAME: u16 = 6;
const SVC_ATTR_FLAGS: u16 = 7;
const SVC_ATTR_TIMEOUT: u16 = 8;
const SVC_ATTR_NETMASK: u16 = 9;
const SVC_ATTR_STATS: u16 = 10;
const SVC_ATTR_PE_NAME: u16 = 11;
const SVC_ATTR_STATS64: u16 = 12;

const DEST_ATTR_ADDR: u16 = 1;
const DEST_ATTR_PORT: u16 = 2;
const DEST_ATTR_FWD_METHOD: u16 = 3;
const DEST_ATTR_WEIGHT: u16 = 4;
const DEST_ATTR_U_THRESH: u16 = 5;
const DEST_ATTR_L_THRESH: u16 = 6;
const DEST_ATTR_ACTIVE_CONNS: u16 = 7;
const DEST_ATTR_INACT_CONNS: u16 = 8;
const DEST_ATTR_PERSIST_CONNS: u16 = 9;
const DEST_ATTR_STATS: u16 = 10;
const DEST_ATTR_ADDR_FAMILY: u16 = 11;
const DEST_ATTR_STATS64: u16 = 12;
const DEST_ATTR_TUN_TYPE: u16 = 13;
const DEST_ATTR_TUN_PORT: u16 = 14;
const DEST_ATTR_TUN_FLAGS: u16 = 15;

const DAEMON_ATTR_STATE: u16 = 1;
const DAEMON_ATTR_MCAST_IFN: u16 = 2;
const DAEMON_ATTR_SYNC_ID: u16 = 3;
const DAEMON_ATTR_SYNC_MAXLEN: u16 = 4;
const DAEMON_ATTR_MCAST_GROUP: u16 = 5;
const DAEMON_ATTR_MCAST_GROUP6: u16 = 6;
const DAEMON_ATTR_MCAST_PORT: u16 = 7;
const DAEMON_ATTR_MCAST_TTL: u16 = 8;

const STATS_ATTR_CONNS: u16 = 1;
const STATS_ATTR_INPKTS: u16 = 2;
const STATS_ATTR_OUTPKTS: u16 = 3;
const STATS_ATTR_INBYTES: u16 = 4;
const STATS_ATTR_OUTBYTES: u16 = 5;
const STATS_ATTR_CPS: u16 = 6;
const STATS_ATTR_INPPS: u16 = 7;
const STATS_ATTR_OUTPPS: u16 = 8;
const STATS_ATTR_INBPS: u16 = 9;
const STATS_ATTR_OUTBPS: u16 = 10;

const INFO_ATTR_VERSION: u16 = 1;
const INFO_ATTR_CONN_TAB_SIZE: u16 = 2;

const SVC_F_PERSISTENT: u32 = 0x0001;
const SVC_F_ONEPACKET: u32 = 0x0004;
const SVC_F_SCHED1: u32 = 0x0008;
const SVC_F_SCHED2: u32 = 0x0010;
const SVC_F_SCHED3: u32 = 0x0020;

const CONN_F_MASQ: u32 = 0;
const CONN_F_LOCALNODE: u32 = 1;
const CONN_F_TUNNEL: u32 = 2;
const CONN_F_DROUTE: u32 = 3;
const CONN_F_FWD_MASK: u32 = 7;

const TUN_TYPE_IPIP: u8 = 0;
const TUN_TYPE_GUE: u8 = 1;
const TUN_TYPE_GRE: u8 = 2;
const TUN_F_CSUM: u16 = 1;
const TUN_F_REMCSUM: u16 = 2;

/// `IP_VS_STATE_MASTER`, `IP_VS_STATE_BACKUP`.
const STATE_MASTER: u32 = 1;
const STATE_BACKUP: u32 = 2;

const AF_INET: u16 = nix::libc::AF_INET as u16;
const AF_INET6: u16 = nix::libc::AF_INET6 as u16;

/// The kernel caps a dump datagram far below this.
const RECV_BUF: usize = 64 * 1024;
/// The kernel answers in microseconds; this only bounds a wedged kernel or a lost reply.
const REPLY_TIMEOUT: Duration = Duration::from_secs(5);
/// How often a dump the kernel marks inconsistent is restarted before giving up.
const DUMP_RETRIES: usize = 5;
/// The longest scheduler name the kernel takes (`IP_VS_SCHEDNAME_MAXLEN` 16, with its NUL).
const SCHED_NAME_MAX: usize = 15;
/// `IP_VS_IFNAME_MAXLEN` with its NUL.
const IFNAME_MAX: usize = 15;

/// What went wrong, with what halo was doing.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "IPVS is not available in this kernel ({why}): load the ip_vs module (`modprobe ip_vs`) or \
         use the nftables data plane"
    )]
    Unavailable { why: String },
    #[error("{what}: {error}")]
    Os { what: String, error: io::Error },
    #[error("{what}: the kernel's answer does not decode: {reason}")]
    Malformed { what: String, reason: String },
    #[error("{0}")]
    Refused(String),
    #[error(transparent)]
    Invalid(#[from] InvalidDesired),
}

impl Error {
    /// The kernel's errno, when the kernel refused.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Os { error, .. } => error.raw_os_error(),
            _ => None,
        }
    }
}

/// One difference [`IpvsDataPlane::apply`] found, and the one command that removed it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Change {
    ServiceAdded(String),
    /// Scheduler, flags, persistence or netmask changed in place (`SET_SERVICE`).
    ServiceEdited(String),
    ServiceRemoved(String),
    DestAdded {
        service: String,
        dest: String,
    },
    /// Weight, forwarding method or thresholds changed in place (`SET_DEST`).
    DestEdited {
        service: String,
        dest: String,
        what: String,
    },
    DestRemoved {
        service: String,
        dest: String,
    },
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Change::ServiceAdded(s) => write!(f, "service {s} added"),
            Change::ServiceEdited(s) => write!(f, "service {s} edited"),
            Change::ServiceRemoved(s) => write!(f, "service {s} removed"),
            Change::DestAdded { service, dest } => write!(f, "real server {dest} of {service} added"),
            Change::DestEdited { service, dest, what } => {
                write!(f, "real server {dest} of {service} edited ({what})")
            }
            Change::DestRemoved { service, dest } => write!(f, "real server {dest} of {service} removed"),
        }
    }
}

/// A connection-sync daemon the kernel runs (`ipvsadm --start-daemon`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Daemon {
    /// Master (sends the connections) or backup (receives them).
    pub master: bool,
    /// The interface the sync messages go out of / come in on.
    pub interface: String,
    /// The sync id (`--syncid`): a backup takes only a master's of the same id.
    pub sync_id: u32,
    /// The multicast group (`--mcast-group`; the kernel's default 224.0.0.81). Read back
    /// from the kernel always set; `None` asks for the default.
    pub group: Option<IpAddr>,
    /// The UDP port (`--mcast-port`; default 8848).
    pub port: Option<u16>,
    /// The multicast TTL (`--mcast-ttl`; default 1).
    pub ttl: Option<u8>,
    /// The largest sync message payload (`--sync-maxlen`; default from the interface MTU).
    pub maxlen: Option<u16>,
}

impl Daemon {
    /// A daemon with the kernel's defaults for group, port, TTL and message size.
    pub fn new(master: bool, interface: &str, sync_id: u32) -> Daemon {
        Daemon {
            master,
            interface: interface.to_string(),
            sync_id,
            group: None,
            port: None,
            ttl: None,
            maxlen: None,
        }
    }

    /// Whether `running` (read back from the kernel) is this daemon: same state, interface
    /// and id, and every option this one sets.
    pub fn is_running_as(&self, running: &Daemon) -> bool {
        fn same<T: PartialEq>(want: Option<T>, have: Option<T>) -> bool {
            want.is_none() || want == have
        }
        self.master == running.master
            && self.interface == running.interface
            && self.sync_id == running.sync_id
            && same(self.group, running.group)
            && same(self.port, running.port)
            && same(self.ttl, running.ttl)
            && same(self.maxlen, running.maxlen)
    }
}

/// The name ipvsadm prints for a service: `TCP 192.0.2.10:80`, `FWM 7`.
pub fn service_name(key: &ipvsadm::ServiceKey) -> String {
    match key {
        ipvsadm::ServiceKey::Addr { protocol, addr } => format!("{} {addr}", protocol.name()),
        ipvsadm::ServiceKey::Fwmark { mark, ipv6: false } => format!("FWM {mark}"),
        ipvsadm::ServiceKey::Fwmark { mark, ipv6: true } => format!("FWM {mark} IPv6"),
    }
}

/// The IPVS key of a service: `TCP 192.0.2.10:80`, or `FWM 7` (`FWM 7 IPv6`).
pub fn ipvs_key(k: &ServiceKey) -> ipvsadm::ServiceKey {
    if k.fwmark != 0 {
        return ipvsadm::ServiceKey::Fwmark { mark: k.fwmark, ipv6: k.vip.is_ipv6() };
    }
    let protocol = match k.protocol {
        Protocol::Tcp => ipvsadm::Protocol::Tcp,
        Protocol::Udp => ipvsadm::Protocol::Udp,
    };
    ipvsadm::ServiceKey::Addr { protocol, addr: k.socket() }
}

/// The service an IPVS key stands for ([`ipvs_key`] undone); None for SCTP, which halo does
/// not run.
pub fn key_of(k: &ipvsadm::ServiceKey) -> Option<ServiceKey> {
    Some(match *k {
        ipvsadm::ServiceKey::Fwmark { mark, ipv6 } => {
            let vip =
                if ipv6 { IpAddr::V6(Ipv6Addr::UNSPECIFIED) } else { IpAddr::V4(Ipv4Addr::UNSPECIFIED) };
            ServiceKey { protocol: Protocol::Tcp, vip, port: 0, fwmark: mark }
        }
        ipvsadm::ServiceKey::Addr { protocol, addr } => {
            let protocol = match protocol {
                ipvsadm::Protocol::Tcp => Protocol::Tcp,
                ipvsadm::Protocol::Udp => Protocol::Udp,
                ipvsadm::Protocol::Sctp => return None,
            };
            ServiceKey::addr(protocol, addr)
        }
    })
}

/// How IPVS forwards to a real server of a service forwarded by `f`.
pub fn ipvs_forward(f: Forward) -> ipvsadm::Forward {
    match f {
        Forward::Masq => ipvsadm::Forward::Masq,
        Forward::Gate => ipvsadm::Forward::Route,
        Forward::Ipip => ipvsadm::Forward::Tunnel(ipvsadm::Tunnel::default()),
    }
}

/// The IPVS services that stand for a [`Desired`] state: DR is `Route`, NAT `Masq`, ipip
/// `Tunnel`; a firewall-mark service is an `FWM` one.
pub fn services_of(desired: &Desired) -> Vec<ipvsadm::Service> {
    desired
        .services
        .iter()
        .map(|s| {
            let mut svc = ipvsadm::Service::new(ipvs_key(&s.key), &s.scheduler);
            svc.persistent =
                s.persistence.map(|p| ipvsadm::Persistent { timeout: p.timeout_s, netmask: p.netmask });
            let forward = ipvs_forward(s.forward);
            svc.dests = s
                .reals
                .iter()
                .map(|r| {
                    // Weights above i32::MAX are refused by the kernel; validate() bounds them.
                    let w = i32::try_from(r.weight).unwrap_or(i32::MAX);
                    ipvsadm::Destination::new(r.addr, forward, w)
                })
                .collect();
            svc
        })
        .collect()
}

/// Checks what the kernel would refuse, with a message naming the service: scheduler names,
/// weights, duplicate keys, port 0, persistence timeouts, netmasks of the wrong family.
pub fn validate_services(services: &[ipvsadm::Service]) -> Result<(), Error> {
    let mut keys = BTreeSet::new();
    for s in services {
        let name = service_name(&s.key);
        if !keys.insert(key_sort(&s.key)) {
            return Err(Error::Refused(format!("virtual service {name} appears twice")));
        }
        if s.scheduler.is_empty() || s.scheduler.len() > SCHED_NAME_MAX || !s.scheduler.is_ascii() {
            return Err(Error::Refused(format!(
                "virtual service {name}: scheduler name {:?} (expected 1 to {SCHED_NAME_MAX} ASCII characters)",
                s.scheduler
            )));
        }
        if let ipvsadm::ServiceKey::Addr { addr, .. } = s.key {
            if addr.port() == 0 {
                return Err(Error::Refused(format!("virtual service {name}: port 0")));
            }
        }
        if let ipvsadm::ServiceKey::Fwmark { mark: 0, .. } = s.key {
            return Err(Error::Refused(format!("virtual service {name}: firewall mark 0")));
        }
        if let Some(p) = s.persistent {
            if p.timeout == 0 {
                return Err(Error::Refused(format!(
                    "virtual service {name}: a persistence timeout of 0 seconds"
                )));
            }
        }
        let mut dests = BTreeSet::new();
        for d in &s.dests {
            let addr = dest_addr(&s.key, d);
            if !dests.insert(addr) {
                return Err(Error::Refused(format!(
                    "virtual service {name}: real server {addr} appears twice"
                )));
            }
            if d.weight < 0 {
                return Err(Error::Refused(format!(
                    "virtual service {name}: real server {addr}: negative weight {}",
                    d.weight
                )));
            }
            if d.l_threshold > d.u_threshold && d.u_threshold != 0 {
                return Err(Error::Refused(format!(
                    "virtual service {name}: real server {addr}: lower threshold {} above upper {}",
                    d.l_threshold, d.u_threshold
                )));
            }
            if let ipvsadm::ServiceKey::Addr { addr: vaddr, .. } = s.key {
                if vaddr.is_ipv4() != addr.is_ipv4() && !matches!(d.forward, ipvsadm::Forward::Tunnel(_)) {
                    return Err(Error::Refused(format!(
                        "virtual service {name}: real server {addr} is of another address family (only \
                         tunnelling may cross families)"
                    )));
                }
            }
        }
    }
    Ok(())
}

/// Sort key of a service key, usable in ordered sets.
/// A service key in a form that orders (fwmark, family, protocol, address, port).
type KeySort = (u32, bool, u8, IpAddr, u16);

fn key_sort(k: &ipvsadm::ServiceKey) -> KeySort {
    match *k {
        ipvsadm::ServiceKey::Addr { protocol, addr } => {
            (0, addr.is_ipv6(), protocol.number(), addr.ip(), addr.port())
        }
        ipvsadm::ServiceKey::Fwmark { mark, ipv6 } => (mark, ipv6, 0, IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
    }
}

/// The address IPVS keeps for a real server: ipvsadm gives DR and tunnelled real servers of a
/// port service the virtual port (the packet is not rewritten, so no other port can work).
fn dest_addr(key: &ipvsadm::ServiceKey, d: &ipvsadm::Destination) -> SocketAddr {
    match (key, d.forward) {
        (_, ipvsadm::Forward::Masq) => d.addr,
        (ipvsadm::ServiceKey::Addr { addr, .. }, _) => SocketAddr::new(d.addr.ip(), addr.port()),
        (ipvsadm::ServiceKey::Fwmark { .. }, _) => d.addr,
    }
}

/// Service flags as the kernel keeps them (without `HASHED`).
fn service_flags(s: &ipvsadm::Service) -> u32 {
    let mut f = 0;
    if s.persistent.is_some() {
        f |= SVC_F_PERSISTENT;
    }
    if s.ops {
        f |= SVC_F_ONEPACKET;
    }
    if s.sched_flags.flag1 {
        f |= SVC_F_SCHED1;
    }
    if s.sched_flags.flag2 {
        f |= SVC_F_SCHED2;
    }
    if s.sched_flags.flag3 {
        f |= SVC_F_SCHED3;
    }
    f
}

const SVC_F_KNOWN: u32 = SVC_F_PERSISTENT | SVC_F_ONEPACKET | SVC_F_SCHED1 | SVC_F_SCHED2 | SVC_F_SCHED3;

/// What of a service differs between `want` and `have` (empty: nothing).
fn service_diff(want: &ipvsadm::Service, have: &ipvsadm::Service) -> Vec<String> {
    let mut d = Vec::new();
    if want.scheduler != have.scheduler {
        d.push(format!("scheduler {} -> {}", have.scheduler, want.scheduler));
    }
    // Persistence is compared below, with its timeout and netmask.
    let mask = SVC_F_KNOWN & !SVC_F_PERSISTENT;
    if service_flags(want) & mask != service_flags(have) & mask {
        d.push("flags".to_string());
    }
    let v6 = matches!(want.key, ipvsadm::ServiceKey::Addr { addr: SocketAddr::V6(_), .. })
        || matches!(want.key, ipvsadm::ServiceKey::Fwmark { ipv6: true, .. });
    match (want.persistent, have.persistent) {
        (Some(w), Some(h)) => {
            if w.timeout != h.timeout {
                d.push(format!("persistence {} -> {} s", h.timeout, w.timeout));
            }
            let same_mask = if v6 {
                w.netmask.v6_prefix() == h.netmask.v6_prefix()
            } else {
                w.netmask.v4_mask() == h.netmask.v4_mask()
            };
            if !same_mask {
                d.push("netmask".to_string());
            }
        }
        (None, None) => {}
        _ => d.push("persistence".to_string()),
    }
    if want.pe_name.as_deref().unwrap_or("") != have.pe_name.as_deref().unwrap_or("") {
        d.push("persistence engine".to_string());
    }
    d
}

/// What of a real server differs between `want` and `have` (empty: nothing).
fn dest_diff(want: &ipvsadm::Destination, have: &ipvsadm::Destination) -> Vec<String> {
    let mut d = Vec::new();
    if want.weight != have.weight {
        d.push(format!("weight {} -> {}", have.weight, want.weight));
    }
    // The kernel shows a real server that is this host as Local whatever it was given.
    let fwd_same = match (want.forward, have.forward) {
        (_, ipvsadm::Forward::Local) | (ipvsadm::Forward::Local, _) => true,
        (w, h) => w == h,
    };
    if !fwd_same {
        d.push(format!("forwarding {} -> {}", have.forward.name(), want.forward.name()));
    }
    if want.u_threshold != have.u_threshold || want.l_threshold != have.l_threshold {
        d.push("thresholds".to_string());
    }
    d
}

/// One generic netlink message being built.
struct Msg {
    buf: Vec<u8>,
    nests: Vec<usize>,
}

const fn align4(n: usize) -> usize {
    (n + 3) & !3
}

impl Msg {
    fn new(family: u16, cmd: u8, version: u8) -> Msg {
        let mut buf = vec![0u8; HDR_LEN];
        buf[4..6].copy_from_slice(&family.to_ne_bytes());
        buf.extend_from_slice(&[cmd, version, 0, 0]);
        Msg { buf, nests: Vec::new() }
    }

    fn attr(&mut self, ty: u16, payload: &[u8]) -> &mut Msg {
        // Attributes here are addresses, names and integers: far below u16::MAX.
        let len = u16::try_from(4 + payload.len()).unwrap_or(u16::MAX);
        self.buf.extend_from_slice(&len.to_ne_bytes());
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self.buf.extend_from_slice(payload);
        self.buf.resize(align4(self.buf.len()), 0);
        self
    }

    fn u16(&mut self, ty: u16, v: u16) -> &mut Msg {
        self.attr(ty, &v.to_ne_bytes())
    }

    fn be16(&mut self, ty: u16, v: u16) -> &mut Msg {
        self.attr(ty, &v.to_be_bytes())
    }

    fn u32(&mut self, ty: u16, v: u32) -> &mut Msg {
        self.attr(ty, &v.to_ne_bytes())
    }

    fn str(&mut self, ty: u16, s: &str) -> &mut Msg {
        let mut p = s.as_bytes().to_vec();
        p.push(0);
        self.attr(ty, &p)
    }

    /// `union nf_inet_addr`: 16 bytes, an IPv4 address in the first 4.
    fn addr(&mut self, ty: u16, ip: IpAddr) -> &mut Msg {
        let mut b = [0u8; 16];
        match ip {
            IpAddr::V4(a) => b[..4].copy_from_slice(&a.octets()),
            IpAddr::V6(a) => b.copy_from_slice(&a.octets()),
        }
        self.attr(ty, &b)
    }

    fn begin(&mut self, ty: u16) -> &mut Msg {
        self.nests.push(self.buf.len());
        self.buf.extend_from_slice(&[0, 0]);
        self.buf.extend_from_slice(&ty.to_ne_bytes());
        self
    }

    fn end(&mut self) -> &mut Msg {
        if let Some(at) = self.nests.pop() {
            let len = u16::try_from(self.buf.len() - at).unwrap_or(u16::MAX);
            self.buf[at..at + 2].copy_from_slice(&len.to_ne_bytes());
        }
        self
    }

    fn finish(&mut self, flags: u16, seq: u32) -> &[u8] {
        let len = u32::try_from(self.buf.len()).unwrap_or(u32::MAX);
        self.buf[0..4].copy_from_slice(&len.to_ne_bytes());
        self.buf[6..8].copy_from_slice(&(flags | NLM_F_REQUEST).to_ne_bytes());
        self.buf[8..12].copy_from_slice(&seq.to_ne_bytes());
        &self.buf
    }
}

/// The attributes (type, payload) of a buffer.
fn attrs(mut buf: &[u8]) -> Result<Vec<(u16, &[u8])>, String> {
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

struct Attrs<'a>(Vec<(u16, &'a [u8])>);

impl<'a> Attrs<'a> {
    fn parse(buf: &'a [u8]) -> Result<Attrs<'a>, String> {
        attrs(buf).map(Attrs)
    }

    fn get(&self, ty: u16) -> Option<&'a [u8]> {
        self.0.iter().find(|(t, _)| *t == ty).map(|(_, p)| *p)
    }

    fn need(&self, ty: u16, what: &str) -> Result<&'a [u8], String> {
        self.get(ty).ok_or_else(|| format!("no {what} attribute"))
    }

    fn u16(&self, ty: u16, what: &str) -> Result<u16, String> {
        let p = self.need(ty, what)?;
        let b: [u8; 2] = p.get(..2).and_then(|s| s.try_into().ok()).ok_or_else(|| short(what, p.len(), 2))?;
        Ok(u16::from_ne_bytes(b))
    }

    fn be16(&self, ty: u16, what: &str) -> Result<u16, String> {
        self.u16(ty, what).map(u16::from_be)
    }

    fn u32(&self, ty: u16, what: &str) -> Result<u32, String> {
        let p = self.need(ty, what)?;
        let b: [u8; 4] = p.get(..4).and_then(|s| s.try_into().ok()).ok_or_else(|| short(what, p.len(), 4))?;
        Ok(u32::from_ne_bytes(b))
    }

    fn u32_or(&self, ty: u16, what: &str, default: u32) -> Result<u32, String> {
        if self.get(ty).is_some() {
            self.u32(ty, what)
        } else {
            Ok(default)
        }
    }

    fn string(&self, ty: u16) -> Option<String> {
        self.get(ty).map(|p| {
            let end = p.iter().position(|&b| b == 0).unwrap_or(p.len());
            String::from_utf8_lossy(&p[..end]).into_owned()
        })
    }
}

fn short(what: &str, got: usize, want: usize) -> String {
    format!("{what} of {got} bytes, expected {want}")
}

fn ip_of(af: u16, p: &[u8], what: &str) -> Result<IpAddr, String> {
    match af {
        AF_INET => {
            let b: [u8; 4] =
                p.get(..4).and_then(|s| s.try_into().ok()).ok_or_else(|| short(what, p.len(), 4))?;
            Ok(IpAddr::V4(Ipv4Addr::from(b)))
        }
        AF_INET6 => {
            let b: [u8; 16] =
                p.get(..16).and_then(|s| s.try_into().ok()).ok_or_else(|| short(what, p.len(), 16))?;
            Ok(IpAddr::V6(Ipv6Addr::from(b)))
        }
        other => Err(format!("{what}: address family {other}")),
    }
}

fn af_of(ip: IpAddr) -> u16 {
    if ip.is_ipv4() {
        AF_INET
    } else {
        AF_INET6
    }
}

/// Counters (`*_STATS64`, or the 32-bit `*_STATS` of older kernels) and rate estimates.
fn parse_stats(p: &[u8]) -> Result<(ipvsadm::Stats, ipvsadm::Rates), String> {
    let a = Attrs::parse(p)?;
    let num = |ty: u16| -> u64 {
        match a.get(ty) {
            Some(p) if p.len() >= 8 => u64::from_ne_bytes([p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7]]),
            Some(p) if p.len() >= 4 => u64::from(u32::from_ne_bytes([p[0], p[1], p[2], p[3]])),
            _ => 0,
        }
    };
    Ok((
        ipvsadm::Stats {
            conns: num(STATS_ATTR_CONNS),
            inpkts: num(STATS_ATTR_INPKTS),
            outpkts: num(STATS_ATTR_OUTPKTS),
            inbytes: num(STATS_ATTR_INBYTES),
            outbytes: num(STATS_ATTR_OUTBYTES),
        },
        ipvsadm::Rates {
            cps: num(STATS_ATTR_CPS),
            inpps: num(STATS_ATTR_INPPS),
            outpps: num(STATS_ATTR_OUTPPS),
            inbps: num(STATS_ATTR_INBPS),
            outbps: num(STATS_ATTR_OUTBPS),
        },
    ))
}

fn stats_of(a: &Attrs<'_>, v64: u16, v32: u16) -> Result<(ipvsadm::Stats, ipvsadm::Rates), String> {
    match a.get(v64).or_else(|| a.get(v32)) {
        Some(p) => parse_stats(p),
        None => Ok(Default::default()),
    }
}

/// Decodes the nested `IPVS_CMD_ATTR_SERVICE` of a dump answer (without real servers).
fn parse_service(p: &[u8]) -> Result<ipvsadm::Service, String> {
    let a = Attrs::parse(p)?;
    let af = a.u16(SVC_ATTR_AF, "IPVS_SVC_ATTR_AF")?;
    let fwmark = a.u32_or(SVC_ATTR_FWMARK, "IPVS_SVC_ATTR_FWMARK", 0)?;
    let key = if fwmark != 0 {
        ipvsadm::ServiceKey::Fwmark { mark: fwmark, ipv6: af == AF_INET6 }
    } else {
        let protocol = match a.u16(SVC_ATTR_PROTOCOL, "IPVS_SVC_ATTR_PROTOCOL")? {
            6 => ipvsadm::Protocol::Tcp,
            17 => ipvsadm::Protocol::Udp,
            132 => ipvsadm::Protocol::Sctp,
            other => return Err(format!("service protocol {other}")),
        };
        let ip = ip_of(af, a.need(SVC_ATTR_ADDR, "IPVS_SVC_ATTR_ADDR")?, "IPVS_SVC_ATTR_ADDR")?;
        let port = a.be16(SVC_ATTR_PORT, "IPVS_SVC_ATTR_PORT")?;
        ipvsadm::ServiceKey::Addr { protocol, addr: SocketAddr::new(ip, port) }
    };
    let sched = a.string(SVC_ATTR_SCHED_NAME).unwrap_or_default();
    let mut s = ipvsadm::Service::new(key, &sched);
    let flags = match a.get(SVC_ATTR_FLAGS) {
        Some(p) if p.len() >= 4 => u32::from_ne_bytes([p[0], p[1], p[2], p[3]]),
        Some(p) => return Err(short("IPVS_SVC_ATTR_FLAGS", p.len(), 8)),
        None => 0,
    };
    s.ops = flags & SVC_F_ONEPACKET != 0;
    s.sched_flags = ipvsadm::SchedFlags {
        flag1: flags & SVC_F_SCHED1 != 0,
        flag2: flags & SVC_F_SCHED2 != 0,
        flag3: flags & SVC_F_SCHED3 != 0,
    };
    if flags & SVC_F_PERSISTENT != 0 {
        let timeout = a.u32_or(SVC_ATTR_TIMEOUT, "IPVS_SVC_ATTR_TIMEOUT", 0)?;
        let raw = a.get(SVC_ATTR_NETMASK).filter(|p| p.len() >= 4);
        let netmask = match raw {
            None => Netmask::HOST,
            Some(p) if af == AF_INET6 => {
                let plen = u32::from_ne_bytes([p[0], p[1], p[2], p[3]]);
                Netmask::v6(u8::try_from(plen).unwrap_or(128)).unwrap_or(Netmask::HOST)
            }
            // An IPv4 mask travels in network order, as it is in memory.
            Some(p) => Netmask::v4(Ipv4Addr::new(p[0], p[1], p[2], p[3])),
        };
        s.persistent = Some(ipvsadm::Persistent { timeout, netmask });
    }
    s.pe_name = a.string(SVC_ATTR_PE_NAME).filter(|n| !n.is_empty());
    (s.stats, s.rates) = stats_of(&a, SVC_ATTR_STATS64, SVC_ATTR_STATS)?;
    Ok(s)
}

/// Decodes the nested `IPVS_CMD_ATTR_DEST` of a dump answer; `svc_af` is the service's
/// family (kernels before 4.x do not say the real server's own).
fn parse_dest(p: &[u8], svc_af: u16) -> Result<ipvsadm::Destination, String> {
    let a = Attrs::parse(p)?;
    let af = if a.get(DEST_ATTR_ADDR_FAMILY).is_some() {
        a.u16(DEST_ATTR_ADDR_FAMILY, "IPVS_DEST_ATTR_ADDR_FAMILY")?
    } else {
        svc_af
    };
    let ip = ip_of(af, a.need(DEST_ATTR_ADDR, "IPVS_DEST_ATTR_ADDR")?, "IPVS_DEST_ATTR_ADDR")?;
    let port = a.be16(DEST_ATTR_PORT, "IPVS_DEST_ATTR_PORT")?;
    let fwd = a.u32(DEST_ATTR_FWD_METHOD, "IPVS_DEST_ATTR_FWD_METHOD")? & CONN_F_FWD_MASK;
    let forward = match fwd {
        CONN_F_MASQ => ipvsadm::Forward::Masq,
        CONN_F_LOCALNODE => ipvsadm::Forward::Local,
        CONN_F_TUNNEL => {
            let kind = match a.get(DEST_ATTR_TUN_TYPE).and_then(|p| p.first().copied()) {
                Some(TUN_TYPE_GUE) => {
                    let port = if a.get(DEST_ATTR_TUN_PORT).is_some() {
                        a.be16(DEST_ATTR_TUN_PORT, "IPVS_DEST_ATTR_TUN_PORT")?
                    } else {
                        0
                    };
                    ipvsadm::TunnelKind::Gue { port }
                }
                Some(TUN_TYPE_GRE) => ipvsadm::TunnelKind::Gre,
                _ => ipvsadm::TunnelKind::Ipip,
            };
            let tf = if a.get(DEST_ATTR_TUN_FLAGS).is_some() {
                a.u16(DEST_ATTR_TUN_FLAGS, "IPVS_DEST_ATTR_TUN_FLAGS")?
            } else {
                0
            };
            let csum = if tf & TUN_F_REMCSUM != 0 {
                ipvsadm::TunnelCsum::RemCsum
            } else if tf & TUN_F_CSUM != 0 {
                ipvsadm::TunnelCsum::Csum
            } else {
                ipvsadm::TunnelCsum::NoCsum
            };
            ipvsadm::Forward::Tunnel(ipvsadm::Tunnel { kind, csum })
        }
        CONN_F_DROUTE => ipvsadm::Forward::Route,
        other => return Err(format!("forwarding method {other}")),
    };
    let weight = a.u32(DEST_ATTR_WEIGHT, "IPVS_DEST_ATTR_WEIGHT")? as i32;
    let mut d = ipvsadm::Destination::new(SocketAddr::new(ip, port), forward, weight);
    d.u_threshold = a.u32_or(DEST_ATTR_U_THRESH, "IPVS_DEST_ATTR_U_THRESH", 0)?;
    d.l_threshold = a.u32_or(DEST_ATTR_L_THRESH, "IPVS_DEST_ATTR_L_THRESH", 0)?;
    d.active = a.u32_or(DEST_ATTR_ACTIVE_CONNS, "IPVS_DEST_ATTR_ACTIVE_CONNS", 0)?;
    d.inactive = a.u32_or(DEST_ATTR_INACT_CONNS, "IPVS_DEST_ATTR_INACT_CONNS", 0)?;
    d.persist = a.u32_or(DEST_ATTR_PERSIST_CONNS, "IPVS_DEST_ATTR_PERSIST_CONNS", 0)?;
    (d.stats, d.rates) = stats_of(&a, DEST_ATTR_STATS64, DEST_ATTR_STATS)?;
    Ok(d)
}

fn parse_daemon(p: &[u8]) -> Result<Daemon, String> {
    let a = Attrs::parse(p)?;
    Ok(Daemon {
        master: a.u32(DAEMON_ATTR_STATE, "IPVS_DAEMON_ATTR_STATE")? == STATE_MASTER,
        interface: a.string(DAEMON_ATTR_MCAST_IFN).unwrap_or_default(),
        sync_id: a.u32_or(DAEMON_ATTR_SYNC_ID, "IPVS_DAEMON_ATTR_SYNC_ID", 0)?,
        group: match (a.get(DAEMON_ATTR_MCAST_GROUP6), a.get(DAEMON_ATTR_MCAST_GROUP)) {
            (Some(p), _) => Some(ip_of(AF_INET6, p, "IPVS_DAEMON_ATTR_MCAST_GROUP6")?),
            (None, Some(p)) => Some(ip_of(AF_INET, p, "IPVS_DAEMON_ATTR_MCAST_GROUP")?),
            (None, None) => None,
        },
        port: a
            .get(DAEMON_ATTR_MCAST_PORT)
            .map(|_| a.u16(DAEMON_ATTR_MCAST_PORT, "IPVS_DAEMON_ATTR_MCAST_PORT"))
            .transpose()?,
        ttl: a.get(DAEMON_ATTR_MCAST_TTL).and_then(|p| p.first().copied()),
        maxlen: a
            .get(DAEMON_ATTR_SYNC_MAXLEN)
            .map(|_| a.u16(DAEMON_ATTR_SYNC_MAXLEN, "IPVS_DAEMON_ATTR_SYNC_MAXLEN"))
            .transpose()?,
    })
}

/// A service's identity attributes (what `GET_DEST`, `DEL_SERVICE` and dest commands name).
fn put_service_id(m: &mut Msg, key: &ipvsadm::ServiceKey) {
    match *key {
        ipvsadm::ServiceKey::Addr { protocol, addr } => {
            m.u16(SVC_ATTR_AF, af_of(addr.ip()))
                .u16(SVC_ATTR_PROTOCOL, u16::from(protocol.number()))
                .addr(SVC_ATTR_ADDR, addr.ip())
                .be16(SVC_ATTR_PORT, addr.port());
        }
        ipvsadm::ServiceKey::Fwmark { mark, ipv6 } => {
            m.u16(SVC_ATTR_AF, if ipv6 { AF_INET6 } else { AF_INET }).u32(SVC_ATTR_FWMARK, mark);
        }
    }
}

/// A whole service, as `NEW_SERVICE` and `SET_SERVICE` need it.
fn put_service(m: &mut Msg, s: &ipvsadm::Service) {
    put_service_id(m, &s.key);
    let v6 = match s.key {
        ipvsadm::ServiceKey::Addr { addr, .. } => addr.is_ipv6(),
        ipvsadm::ServiceKey::Fwmark { ipv6, .. } => ipv6,
    };
    let mut flags = [0u8; 8];
    flags[..4].copy_from_slice(&service_flags(s).to_ne_bytes());
    flags[4..].copy_from_slice(&u32::MAX.to_ne_bytes());
    m.str(SVC_ATTR_SCHED_NAME, &s.scheduler).attr(SVC_ATTR_FLAGS, &flags);
    let (timeout, netmask) = match s.persistent {
        Some(p) if v6 => (p.timeout, u32::from(p.netmask.v6_prefix()).to_ne_bytes()),
        Some(p) => (p.timeout, p.netmask.v4_mask().octets()),
        None if v6 => (0, 128u32.to_ne_bytes()),
        None => (0, [255; 4]),
    };
    m.u32(SVC_ATTR_TIMEOUT, timeout).attr(SVC_ATTR_NETMASK, &netmask);
    if let Some(pe) = &s.pe_name {
        m.str(SVC_ATTR_PE_NAME, pe);
    }
}

fn put_dest(m: &mut Msg, key: &ipvsadm::ServiceKey, d: &ipvsadm::Destination, full: bool) {
    let addr = dest_addr(key, d);
    m.addr(DEST_ATTR_ADDR, addr.ip())
        .be16(DEST_ATTR_PORT, addr.port())
        .u16(DEST_ATTR_ADDR_FAMILY, af_of(addr.ip()));
    if !full {
        return;
    }
    let fwd = match d.forward {
        ipvsadm::Forward::Masq => CONN_F_MASQ,
        ipvsadm::Forward::Tunnel(_) => CONN_F_TUNNEL,
        // The kernel decides Local by itself from the address.
        ipvsadm::Forward::Route | ipvsadm::Forward::Local => CONN_F_DROUTE,
    };
    m.u32(DEST_ATTR_FWD_METHOD, fwd)
        .u32(DEST_ATTR_WEIGHT, d.weight.max(0) as u32)
        .u32(DEST_ATTR_U_THRESH, d.u_threshold)
        .u32(DEST_ATTR_L_THRESH, d.l_threshold);
    if let ipvsadm::Forward::Tunnel(t) = d.forward {
        let (ty, port) = match t.kind {
            ipvsadm::TunnelKind::Ipip => (TUN_TYPE_IPIP, 0),
            ipvsadm::TunnelKind::Gue { port } => (TUN_TYPE_GUE, port),
            ipvsadm::TunnelKind::Gre => (TUN_TYPE_GRE, 0),
        };
        let flags = match t.csum {
            ipvsadm::TunnelCsum::NoCsum => 0,
            ipvsadm::TunnelCsum::Csum => TUN_F_CSUM,
            ipvsadm::TunnelCsum::RemCsum => TUN_F_REMCSUM,
        };
        m.attr(DEST_ATTR_TUN_TYPE, &[ty]).be16(DEST_ATTR_TUN_PORT, port).u16(DEST_ATTR_TUN_FLAGS, flags);
    }
}

/// A `NETLINK_GENERIC` socket talking to the IPVS family.
struct Conn {
    fd: OwnedFd,
    family: u16,
    seq: u32,
    buf: Vec<u8>,
}

/// One received netlink message: type, flags, sequence, body.
type Raw = (u16, u16, u32, Vec<u8>);

impl Conn {
    /// Opens a socket and resolves the IPVS family (`Error::Unavailable` when the kernel has
    /// none).
    fn open() -> Result<Conn, Error> {
        let os = |what: &str, e: Errno| Error::Os { what: what.to_string(), error: e.into() };
        let fd = socket::socket(
            AddressFamily::Netlink,
            SockType::Raw,
            SockFlag::SOCK_CLOEXEC,
            SockProtocol::NetlinkGeneric,
        )
        .map_err(|e| os("generic netlink socket", e))?;
        // Port id 0: the kernel picks a unique one, so sockets never collide.
        socket::bind(fd.as_raw_fd(), &NetlinkAddr::new(0, 0)).map_err(|e| os("generic netlink bind", e))?;
        let tv = TimeVal::new(REPLY_TIMEOUT.as_secs() as _, 0);
        socket::setsockopt(&fd, sockopt::ReceiveTimeout, &tv)
            .map_err(|e| os("generic netlink SO_RCVTIMEO", e))?;
        let mut c = Conn { fd, family: 0, seq: 0, buf: vec![0; RECV_BUF] };
        let mut m = Msg::new(GENL_ID_CTRL, CTRL_CMD_GETFAMILY, 1);
        m.str(CTRL_ATTR_FAMILY_NAME, FAMILY_NAME);
        let answer = match c.exchange(m, false) {
            Ok(a) => a,
            Err(Error::Os { error, .. }) if error.raw_os_error() == Some(nix::libc::ENOENT) => {
                return Err(Error::Unavailable { why: "no generic netlink family IPVS".into() })
            }
            Err(e) => return Err(e),
        };
        let what = "resolving the IPVS generic netlink family";
        let body = answer
            .first()
            .ok_or_else(|| Error::Malformed { what: what.into(), reason: "no answer".into() })?;
        let a = Attrs::parse(genl_payload(body).map_err(|r| malformed(what, r))?)
            .map_err(|r| malformed(what, r))?;
        c.family = a.u16(CTRL_ATTR_FAMILY_ID, "CTRL_ATTR_FAMILY_ID").map_err(|r| malformed(what, r))?;
        Ok(c)
    }

    fn msg(&self, cmd: u8) -> Msg {
        Msg::new(self.family, cmd, IPVS_GENL_VERSION)
    }

    /// Sends a command and waits for its acknowledgement.
    fn command(&mut self, m: Msg, what: impl FnOnce() -> String) -> Result<(), Error> {
        self.exchange(m, false).map(|_| ()).map_err(|e| with_context(e, what()))
    }

    /// Sends a request (a dump when `dump`) and returns the bodies of its answers, restarting
    /// a dump the kernel marks inconsistent.
    fn exchange(&mut self, mut m: Msg, dump: bool) -> Result<Vec<Vec<u8>>, Error> {
        let mut tries = 0;
        loop {
            self.seq = self.seq.wrapping_add(1).max(1);
            let seq = self.seq;
            let flags = if dump { NLM_F_DUMP } else { NLM_F_ACK };
            let bytes = m.finish(flags, seq);
            loop {
                match socket::sendto(self.fd.as_raw_fd(), bytes, &NetlinkAddr::new(0, 0), MsgFlags::empty()) {
                    Ok(_) => break,
                    Err(Errno::EINTR) => continue,
                    Err(e) => return Err(Error::Os { what: "generic netlink send".into(), error: e.into() }),
                }
            }
            let (bodies, interrupted) = self.collect(seq, dump)?;
            tries += 1;
            if !interrupted {
                return Ok(bodies);
            }
            if tries >= DUMP_RETRIES {
                return Err(malformed("IPVS dump", format!("still inconsistent after {tries} tries")));
            }
        }
    }

    fn collect(&mut self, seq: u32, dump: bool) -> Result<(Vec<Vec<u8>>, bool), Error> {
        let mut out = Vec::new();
        let mut interrupted = false;
        loop {
            for (ty, flags, mseq, body) in self.recv()? {
                if mseq != seq {
                    continue; // a late answer to an earlier, abandoned request
                }
                interrupted |= flags & NLM_F_DUMP_INTR != 0;
                match ty {
                    NLMSG_NOOP => {}
                    NLMSG_ERROR | NLMSG_DONE => {
                        let errno = match body.get(..4) {
                            Some(b) => -i32::from_ne_bytes([b[0], b[1], b[2], b[3]]),
                            None if ty == NLMSG_DONE => 0,
                            None => return Err(malformed("netlink", "short error message".into())),
                        };
                        if errno != 0 {
                            return Err(Error::Os {
                                what: "IPVS".into(),
                                error: io::Error::from_raw_os_error(errno),
                            });
                        }
                        if ty == NLMSG_ERROR || dump {
                            return Ok((out, interrupted));
                        }
                    }
                    NLMSG_OVERRUN => {
                        return Err(malformed("netlink", "the kernel reported an overrun".into()))
                    }
                    _ => out.push(body),
                }
            }
        }
    }

    fn recv(&mut self) -> Result<Vec<Raw>, Error> {
        let n = loop {
            match socket::recv(self.fd.as_raw_fd(), &mut self.buf, MsgFlags::MSG_TRUNC) {
                Ok(n) => break n,
                Err(Errno::EINTR) => continue,
                Err(Errno::EAGAIN) => {
                    return Err(Error::Os {
                        what: "generic netlink receive".into(),
                        error: io::Error::new(io::ErrorKind::TimedOut, "no answer from the kernel"),
                    })
                }
                Err(e) => return Err(Error::Os { what: "generic netlink receive".into(), error: e.into() }),
            }
        };
        if n > self.buf.len() {
            return Err(malformed(
                "netlink",
                format!("datagram of {n} bytes, more than {} read", self.buf.len()),
            ));
        }
        let mut buf = &self.buf[..n];
        let mut out = Vec::new();
        while !buf.is_empty() {
            if buf.len() < HDR_LEN {
                return Err(malformed("netlink", format!("{} trailing bytes", buf.len())));
            }
            let len = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
            if len < HDR_LEN || len > buf.len() {
                return Err(malformed(
                    "netlink",
                    format!("message length {len} with {} bytes left", buf.len()),
                ));
            }
            out.push((
                u16::from_ne_bytes([buf[4], buf[5]]),
                u16::from_ne_bytes([buf[6], buf[7]]),
                u32::from_ne_bytes([buf[8], buf[9], buf[10], buf[11]]),
                buf[HDR_LEN..len].to_vec(),
            ));
            buf = &buf[align4(len).min(buf.len())..];
        }
        Ok(out)
    }

    fn info(&mut self) -> Result<(u32, u32), Error> {
        let what = "IPVS_CMD_GET_INFO";
        let m = self.msg(CMD_GET_INFO);
        let bodies = self.exchange(m, false).map_err(|e| with_context(e, what.into()))?;
        let body = bodies.first().ok_or_else(|| malformed(what, "no answer".into()))?;
        let a = Attrs::parse(genl_payload(body).map_err(|r| malformed(what, r))?)
            .map_err(|r| malformed(what, r))?;
        let version = a.u32(INFO_ATTR_VERSION, "IPVS_INFO_ATTR_VERSION").map_err(|r| malformed(what, r))?;
        let size =
            a.u32(INFO_ATTR_CONN_TAB_SIZE, "IPVS_INFO_ATTR_CONN_TAB_SIZE").map_err(|r| malformed(what, r))?;
        Ok((version, size))
    }

    /// Every service with its real servers, in the kernel's order.
    fn services(&mut self) -> Result<Vec<ipvsadm::Service>, Error> {
        let what = "listing IPVS services";
        let m = self.msg(CMD_GET_SERVICE);
        let bodies = self.exchange(m, true).map_err(|e| with_context(e, what.into()))?;
        let mut out = Vec::new();
        for b in &bodies {
            let a = Attrs::parse(genl_payload(b).map_err(|r| malformed(what, r))?)
                .map_err(|r| malformed(what, r))?;
            let p = a.need(CMD_ATTR_SERVICE, "IPVS_CMD_ATTR_SERVICE").map_err(|r| malformed(what, r))?;
            out.push(parse_service(p).map_err(|r| malformed(what, r))?);
        }
        for s in &mut out {
            s.dests = self.dests(&s.key)?;
        }
        Ok(out)
    }

    fn dests(&mut self, key: &ipvsadm::ServiceKey) -> Result<Vec<ipvsadm::Destination>, Error> {
        let what = format!("listing the real servers of {}", service_name(key));
        let mut m = self.msg(CMD_GET_DEST);
        m.begin(CMD_ATTR_SERVICE);
        put_service_id(&mut m, key);
        m.end();
        let bodies = self.exchange(m, true).map_err(|e| with_context(e, what.clone()))?;
        let svc_af = match key {
            ipvsadm::ServiceKey::Addr { addr, .. } => af_of(addr.ip()),
            ipvsadm::ServiceKey::Fwmark { ipv6, .. } => {
                if *ipv6 {
                    AF_INET6
                } else {
                    AF_INET
                }
            }
        };
        let mut out = Vec::new();
        for b in &bodies {
            let a = Attrs::parse(genl_payload(b).map_err(|r| malformed(&what, r))?)
                .map_err(|r| malformed(&what, r))?;
            let p = a.need(CMD_ATTR_DEST, "IPVS_CMD_ATTR_DEST").map_err(|r| malformed(&what, r))?;
            out.push(parse_dest(p, svc_af).map_err(|r| malformed(&what, r))?);
        }
        Ok(out)
    }

    fn service_cmd(&mut self, cmd: u8, s: &ipvsadm::Service) -> Result<(), Error> {
        let mut m = self.msg(cmd);
        m.begin(CMD_ATTR_SERVICE);
        if cmd == CMD_DEL_SERVICE {
            put_service_id(&mut m, &s.key);
        } else {
            put_service(&mut m, s);
        }
        m.end();
        let verb = match cmd {
            CMD_NEW_SERVICE => "adding",
            CMD_SET_SERVICE => "editing",
            _ => "deleting",
        };
        let r = self.command(m, || {
            let mut w = format!("{verb} IPVS service {} (scheduler {})", service_name(&s.key), s.scheduler);
            if cmd == CMD_DEL_SERVICE {
                w = format!("{verb} IPVS service {}", service_name(&s.key));
            }
            w
        });
        match r {
            // The kernel's ENOENT for a scheduler it cannot load says nothing of schedulers.
            Err(Error::Os { what, error })
                if cmd != CMD_DEL_SERVICE && error.raw_os_error() == Some(nix::libc::ENOENT) =>
            {
                Err(Error::Os {
                    what: format!(
                        "{what}: no such scheduler (is the module ip_vs_{} available?)",
                        s.scheduler
                    ),
                    error,
                })
            }
            other => other,
        }
    }

    fn dest_cmd(
        &mut self,
        cmd: u8,
        key: &ipvsadm::ServiceKey,
        d: &ipvsadm::Destination,
    ) -> Result<(), Error> {
        let mut m = self.msg(cmd);
        m.begin(CMD_ATTR_SERVICE);
        put_service_id(&mut m, key);
        m.end();
        m.begin(CMD_ATTR_DEST);
        put_dest(&mut m, key, d, cmd != CMD_DEL_DEST);
        m.end();
        let verb = match cmd {
            CMD_NEW_DEST => "adding",
            CMD_SET_DEST => "editing",
            _ => "deleting",
        };
        let addr = dest_addr(key, d);
        self.command(m, || {
            format!(
                "{verb} real server {addr} ({}, weight {}) of IPVS service {}",
                d.forward.name(),
                d.weight,
                service_name(key)
            )
        })
        .map_err(|e| match e {
            // The kernel's EINVAL for an address it cannot route is cryptic.
            Error::Os { what, error }
                if cmd == CMD_NEW_DEST && error.raw_os_error() == Some(nix::libc::EINVAL) =>
            {
                Error::Os {
                    what: format!(
                        "{what} (the kernel refuses a real server whose address is not routable unicast)"
                    ),
                    error,
                }
            }
            other => other,
        })
    }
}

fn genl_payload(body: &[u8]) -> Result<&[u8], String> {
    body.get(GENL_HDR_LEN..).ok_or_else(|| format!("generic netlink message of {} bytes", body.len()))
}

fn malformed(what: &str, reason: String) -> Error {
    Error::Malformed { what: what.to_string(), reason }
}

fn with_context(e: Error, what: String) -> Error {
    match e {
        Error::Os { error, .. } => Error::Os { what, error },
        Error::Malformed { reason, .. } => Error::Malformed { what, reason },
        other => other,
    }
}

/// Reads `/proc/net/ip_vs_conn` (what `ipvsadm -L -n -c` shows); empty when it is absent.
pub fn read_connections(path: &Path) -> Result<Vec<ipvsadm::Connection>, Error> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(Error::Os { what: format!("reading {}", path.display()), error }),
    };
    parse_connections(&text).map_err(|(line, reason)| Error::Malformed {
        what: format!("{} line {line}", path.display()),
        reason,
    })
}

/// Parses the text of `/proc/net/ip_vs_conn`: a header line, then one line per connection,
/// addresses in hex (IPv4) or colon form (IPv6), ports in hex. Errors carry the line number.
pub fn parse_connections(text: &str) -> Result<Vec<ipvsadm::Connection>, (usize, String)> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if i == 0 || line.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 9 {
            return Err((i + 1, format!("{} fields, expected at least 9: {line:?}", f.len())));
        }
        let ip = |s: &str| -> Result<IpAddr, String> {
            if s.len() == 8 && !s.contains(':') {
                u32::from_str_radix(s, 16)
                    .map(|v| IpAddr::V4(Ipv4Addr::from(v)))
                    .map_err(|e| format!("{s}: {e}"))
            } else {
                s.parse::<Ipv6Addr>().map(IpAddr::V6).map_err(|e| format!("{s}: {e}"))
            }
        };
        let port = |s: &str| u16::from_str_radix(s, 16).map_err(|e| format!("port {s}: {e}"));
        let sa = |a: &str, p: &str| -> Result<SocketAddr, (usize, String)> {
            Ok(SocketAddr::new(ip(a).map_err(|e| (i + 1, e))?, port(p).map_err(|e| (i + 1, e))?))
        };
        out.push(ipvsadm::Connection {
            protocol: f[0].to_string(),
            source: sa(f[1], f[2])?,
            virtual_addr: sa(f[3], f[4])?,
            destination: sa(f[5], f[6])?,
            state: f[7].to_string(),
            expires: f[8].parse().map_err(|e| (i + 1, format!("expires {:?}: {e}", f[8])))?,
            pe: if f.len() >= 11 { Some((f[9].to_string(), f[10].to_string())) } else { None },
        });
    }
    Ok(out)
}

/// Whether this kernel has IPVS: the generic netlink family resolves, or `/proc/net/ip_vs`
/// exists.
pub fn available() -> bool {
    Conn::open().is_ok() || Path::new(PROC_IPVS).exists()
}

/// The IPVS data plane. Cheap to clone; clones share what they own.
#[derive(Debug, Clone, Default)]
pub struct IpvsDataPlane {
    owned: Arc<Mutex<BTreeMap<KeySort, ipvsadm::ServiceKey>>>,
}

impl IpvsDataPlane {
    /// A plane that owns nothing yet.
    pub fn new() -> IpvsDataPlane {
        IpvsDataPlane::default()
    }

    /// Checks that the kernel has IPVS (the family resolves).
    pub fn probe() -> Result<(), Error> {
        Conn::open().map(|_| ())
    }

    /// Takes these services as halo's (a restart finding the table of a killed daemon): a later
    /// apply that does not want them deletes them.
    pub fn adopt(&self, keys: &[ipvsadm::ServiceKey]) {
        let mut owned = lock(&self.owned);
        for key in keys {
            owned.insert(key_sort(key), *key);
        }
    }

    /// The services this plane owns.
    pub fn owned(&self) -> Vec<ipvsadm::ServiceKey> {
        lock(&self.owned).values().copied().collect()
    }

    /// Makes the kernel's table what `desired` says and returns what had to change (empty:
    /// nothing was sent). Blocks for a few netlink round trips (microseconds each).
    pub fn apply(&self, desired: &Desired) -> Result<Vec<Change>, Error> {
        desired.validate()?;
        self.apply_services(&services_of(desired))
    }

    /// [`apply`](Self::apply) for IPVS's own model: fwmark and IPv6 services, tunnelling,
    /// scheduler flags, thresholds, persistence engines. Counters and connection counts of
    /// `want` are ignored.
    pub fn apply_services(&self, want: &[ipvsadm::Service]) -> Result<Vec<Change>, Error> {
        validate_services(want)?;
        let mut c = Conn::open()?;
        let have = c.services()?;
        let mut changes = Vec::new();
        // Own what is wanted before touching the kernel: a failure half-way leaves nothing
        // halo added unowned.
        self.adopt(&want.iter().map(|s| s.key).collect::<Vec<_>>());
        let wanted: BTreeSet<_> = want.iter().map(|s| key_sort(&s.key)).collect();
        let owned = lock(&self.owned).clone();
        for h in &have {
            let k = key_sort(&h.key);
            if !wanted.contains(&k) && owned.contains_key(&k) {
                c.service_cmd(CMD_DEL_SERVICE, h)?;
                changes.push(Change::ServiceRemoved(service_name(&h.key)));
            }
        }
        for w in want {
            let name = service_name(&w.key);
            let Some(h) = have.iter().find(|h| key_sort(&h.key) == key_sort(&w.key)) else {
                c.service_cmd(CMD_NEW_SERVICE, w)?;
                changes.push(Change::ServiceAdded(name.clone()));
                for d in &w.dests {
                    c.dest_cmd(CMD_NEW_DEST, &w.key, d)?;
                    changes.push(Change::DestAdded {
                        service: name.clone(),
                        dest: dest_addr(&w.key, d).to_string(),
                    });
                }
                continue;
            };
            if !service_diff(w, h).is_empty() {
                c.service_cmd(CMD_SET_SERVICE, w)?;
                changes.push(Change::ServiceEdited(name.clone()));
            }
            let want_addrs: BTreeSet<SocketAddr> = w.dests.iter().map(|d| dest_addr(&w.key, d)).collect();
            for hd in &h.dests {
                if !want_addrs.contains(&hd.addr) {
                    c.dest_cmd(CMD_DEL_DEST, &h.key, hd)?;
                    changes.push(Change::DestRemoved { service: name.clone(), dest: hd.addr.to_string() });
                }
            }
            for wd in &w.dests {
                let addr = dest_addr(&w.key, wd);
                match h.dests.iter().find(|hd| hd.addr == addr) {
                    None => {
                        c.dest_cmd(CMD_NEW_DEST, &w.key, wd)?;
                        changes.push(Change::DestAdded { service: name.clone(), dest: addr.to_string() });
                    }
                    Some(hd) => {
                        let diff = dest_diff(wd, hd);
                        if !diff.is_empty() {
                            c.dest_cmd(CMD_SET_DEST, &w.key, wd)?;
                            changes.push(Change::DestEdited {
                                service: name.clone(),
                                dest: addr.to_string(),
                                what: diff.join(", "),
                            });
                        }
                    }
                }
            }
        }
        // What is no longer wanted is no longer owned.
        lock(&self.owned).retain(|x, _| wanted.contains(x));
        Ok(changes)
    }

    /// The kernel's whole IPVS table as `ipvsadm -L` shows it (every service, not only
    /// halo's), with the connection entries.
    pub fn model(&self) -> Result<ipvsadm::Model, Error> {
        let mut c = Conn::open()?;
        let (version, size) = c.info()?;
        let services = c.services()?;
        // Kernels before 3.17 have no /proc/thread-self.
        let path = if Path::new("/proc/thread-self").exists() { PROC_CONN_THREAD } else { PROC_CONN };
        let connections = read_connections(Path::new(path))?;
        Ok(ipvsadm::Model { version, size, services, connections })
    }

    /// The services this plane owns, as the kernel has them.
    pub fn owned_model(&self) -> Result<ipvsadm::Model, Error> {
        let mut m = self.model()?;
        let owned = lock(&self.owned).clone();
        m.services.retain(|s| owned.contains_key(&key_sort(&s.key)));
        Ok(m)
    }

    /// Per real server traffic counters of the TCP/UDP services this plane owns, in the
    /// nftables plane's form.
    pub fn stats(&self) -> Result<Vec<RealStats>, Error> {
        let m = self.owned_model()?;
        let mut out = BTreeMap::new();
        for s in &m.services {
            let Some(service) = key_of(&s.key) else { continue };
            for d in &s.dests {
                let real = d.addr;
                out.insert(
                    (service, real),
                    RealStats {
                        service,
                        real,
                        in_packets: d.stats.inpkts,
                        in_bytes: d.stats.inbytes,
                        out_packets: d.stats.outpkts,
                        out_bytes: d.stats.outbytes,
                    },
                );
            }
        }
        Ok(out.into_values().collect())
    }

    /// Deletes every service this plane owns (a clean stop); false when there was none.
    pub fn remove(&self) -> Result<bool, Error> {
        let mut c = Conn::open()?;
        let have = c.services()?;
        let owned = lock(&self.owned).clone();
        let mut any = false;
        for h in &have {
            if owned.contains_key(&key_sort(&h.key)) {
                c.service_cmd(CMD_DEL_SERVICE, h)?;
                any = true;
            }
        }
        lock(&self.owned).clear();
        Ok(any)
    }

    /// Deletes the services `desired` names, owned or not: a stop that finds the table of a
    /// daemon that was killed (its plane, and what it owned, died with it).
    pub fn remove_desired(&self, desired: &Desired) -> Result<bool, Error> {
        self.adopt(&services_of(desired).iter().map(|s| s.key).collect::<Vec<_>>());
        self.remove()
    }

    /// Starts the kernel's connection-sync daemon (`ipvsadm --start-daemon master|backup
    /// --mcast-interface IF --syncid ID`): a master multicasts its connections out of
    /// `interface`, a backup of the same sync id takes them into its own table, so that
    /// established and persistent clients survive a director failover. Already running in
    /// that state: nothing is sent.
    pub fn start_daemon(&self, d: &Daemon) -> Result<bool, Error> {
        if d.interface.is_empty() || d.interface.len() > IFNAME_MAX || d.sync_id > 255 {
            return Err(Error::Refused(format!(
                "sync daemon: interface {:?} (1 to {IFNAME_MAX} characters) and sync id {} (0 to 255)",
                d.interface, d.sync_id
            )));
        }
        let mut c = Conn::open()?;
        let running = daemons(&mut c)?;
        if running.iter().any(|r| d.is_running_as(r)) {
            return Ok(false);
        }
        if d.group.is_some_and(|g| !g.is_multicast()) || d.ttl == Some(0) || d.port == Some(0) {
            return Err(Error::Refused(format!(
                "sync daemon: group {:?} must be multicast, port and TTL not 0",
                d.group
            )));
        }
        if let Some(other) = running.iter().find(|r| r.master == d.master) {
            // Another interface or sync id in the same state: restart it with these.
            let o = other.clone();
            stop_daemon(&mut c, o.master)?;
        }
        let mut m = c.msg(CMD_NEW_DAEMON);
        m.begin(CMD_ATTR_DAEMON)
            .u32(DAEMON_ATTR_STATE, if d.master { STATE_MASTER } else { STATE_BACKUP })
            .str(DAEMON_ATTR_MCAST_IFN, &d.interface)
            .u32(DAEMON_ATTR_SYNC_ID, d.sync_id);
        match d.group {
            Some(IpAddr::V4(g)) => {
                m.attr(DAEMON_ATTR_MCAST_GROUP, &g.octets());
            }
            Some(IpAddr::V6(g)) => {
                m.attr(DAEMON_ATTR_MCAST_GROUP6, &g.octets());
            }
            None => {}
        }
        if let Some(p) = d.port {
            m.u16(DAEMON_ATTR_MCAST_PORT, p);
        }
        if let Some(t) = d.ttl {
            m.attr(DAEMON_ATTR_MCAST_TTL, &[t]);
        }
        if let Some(l) = d.maxlen {
            m.u16(DAEMON_ATTR_SYNC_MAXLEN, l);
        }
        m.end();
        c.command(m, || {
            format!(
                "starting the IPVS sync daemon ({} on {}, sync id {})",
                if d.master { "master" } else { "backup" },
                d.interface,
                d.sync_id
            )
        })?;
        Ok(true)
    }

    /// Stops the master (`master`) or backup sync daemon; false when it did not run.
    pub fn stop_daemon(&self, master: bool) -> Result<bool, Error> {
        let mut c = Conn::open()?;
        if !daemons(&mut c)?.iter().any(|d| d.master == master) {
            return Ok(false);
        }
        stop_daemon(&mut c, master)?;
        Ok(true)
    }

    /// The sync daemons the kernel runs.
    pub fn daemons(&self) -> Result<Vec<Daemon>, Error> {
        daemons(&mut Conn::open()?)
    }
}

fn daemons(c: &mut Conn) -> Result<Vec<Daemon>, Error> {
    let what = "listing IPVS sync daemons";
    let m = c.msg(CMD_GET_DAEMON);
    let bodies = c.exchange(m, true).map_err(|e| with_context(e, what.into()))?;
    let mut out = Vec::new();
    for b in &bodies {
        let a =
            Attrs::parse(genl_payload(b).map_err(|r| malformed(what, r))?).map_err(|r| malformed(what, r))?;
        if let Some(p) = a.get(CMD_ATTR_DAEMON) {
            out.push(parse_daemon(p).map_err(|r| malformed(what, r))?);
        }
    }
    Ok(out)
}

fn stop_daemon(c: &mut Conn, master: bool) -> Result<(), Error> {
    let mut m = c.msg(CMD_DEL_DAEMON);
    m.begin(CMD_ATTR_DAEMON).u32(DAEMON_ATTR_STATE, if master { STATE_MASTER } else { STATE_BACKUP }).end();
    c.command(m, || format!("stopping the IPVS {} sync daemon", if master { "master" } else { "backup" }))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Which data plane a director runs: `auto` (IPVS where the kernel has it, else nftables),
/// `nftables` or `ipvs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PlaneChoice {
    #[default]
    Auto,
    Nftables,
    Ipvs,
}

impl FromStr for PlaneChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<PlaneChoice, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(PlaneChoice::Auto),
            "nftables" | "nft" => Ok(PlaneChoice::Nftables),
            "ipvs" => Ok(PlaneChoice::Ipvs),
            other => Err(format!("data plane {other:?}: expected auto, nftables or ipvs")),
        }
    }
}

impl From<halo_config::ldirectord_cf::Dataplane> for PlaneChoice {
    /// ldirectord.cf's `dataplane` (a halo extension).
    fn from(d: halo_config::ldirectord_cf::Dataplane) -> PlaneChoice {
        use halo_config::ldirectord_cf::Dataplane as D;
        match d {
            D::Auto => PlaneChoice::Auto,
            D::Nftables => PlaneChoice::Nftables,
            D::Ipvs => PlaneChoice::Ipvs,
        }
    }
}

impl fmt::Display for PlaneChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PlaneChoice::Auto => "auto",
            PlaneChoice::Nftables => "nftables",
            PlaneChoice::Ipvs => "ipvs",
        })
    }
}

/// Either data plane, behind one interface.
#[derive(Debug, Clone)]
pub enum DataPlane {
    Nft(nft::NftDataPlane),
    Ipvs(IpvsDataPlane),
}

impl fmt::Display for DataPlane {
    /// `nftables table ip NAME` or `the IPVS table`, for messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DataPlane::Nft(p) => write!(f, "nftables table ip {}", p.table()),
            DataPlane::Ipvs(_) => f.write_str("the IPVS table"),
        }
    }
}

/// An error of either plane.
#[derive(Debug, thiserror::Error)]
pub enum PlaneError {
    #[error(transparent)]
    Nft(#[from] nft::Error),
    #[error(transparent)]
    Ipvs(#[from] Error),
}

impl DataPlane {
    /// The plane `choice` names; `auto` probes the kernel for IPVS. `nft` is the nftables plane
    /// to use when that is the answer. Choosing `ipvs` on a kernel without it is an error.
    pub fn select(choice: PlaneChoice, nft: nft::NftDataPlane) -> Result<DataPlane, Error> {
        match choice {
            PlaneChoice::Nftables => Ok(DataPlane::Nft(nft)),
            PlaneChoice::Ipvs => IpvsDataPlane::probe().map(|()| DataPlane::Ipvs(IpvsDataPlane::new())),
            PlaneChoice::Auto if available() => Ok(DataPlane::Ipvs(IpvsDataPlane::new())),
            PlaneChoice::Auto => Ok(DataPlane::Nft(nft)),
        }
    }

    /// `nftables` or `ipvs`.
    pub fn name(&self) -> &'static str {
        match self {
            DataPlane::Nft(_) => "nftables",
            DataPlane::Ipvs(_) => "ipvs",
        }
    }

    /// The nftables plane's table (`halo_lb`...), or `ipvs` for the kernel's IPVS table.
    pub fn table(&self) -> &str {
        match self {
            DataPlane::Nft(p) => p.table(),
            DataPlane::Ipvs(_) => "ipvs",
        }
    }

    /// Reconciles the kernel with `desired`; the changes made, as text.
    pub fn apply(&self, desired: &Desired) -> Result<Vec<String>, PlaneError> {
        Ok(match self {
            DataPlane::Nft(p) => p.apply(desired)?.iter().map(ToString::to_string).collect(),
            DataPlane::Ipvs(p) => p.apply(desired)?.iter().map(ToString::to_string).collect(),
        })
    }

    pub fn stats(&self) -> Result<Vec<RealStats>, PlaneError> {
        Ok(match self {
            DataPlane::Nft(p) => p.stats()?,
            DataPlane::Ipvs(p) => p.stats()?,
        })
    }

    pub fn remove(&self) -> Result<bool, PlaneError> {
        Ok(match self {
            DataPlane::Nft(p) => p.remove()?,
            DataPlane::Ipvs(p) => p.remove()?,
        })
    }

    /// The kernel's own table, when the kernel keeps one (IPVS): what `halo lvs` prints as
    /// is. The nftables plane has none (`halo lvs` builds its model from the desired state).
    pub fn kernel_model(&self) -> Result<Option<ipvsadm::Model>, PlaneError> {
        Ok(match self {
            DataPlane::Nft(_) => None,
            DataPlane::Ipvs(p) => Some(p.owned_model()?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(
        key: ipvsadm::ServiceKey,
        sched: &str,
        dests: &[(&str, ipvsadm::Forward, i32)],
    ) -> ipvsadm::Service {
        let mut s = ipvsadm::Service::new(key, sched);
        s.dests = dests
            .iter()
            .map(|(a, f, w)| ipvsadm::Destination::new(a.parse().expect("addr"), *f, *w))
            .collect();
        s
    }

    fn tcp(a: &str) -> ipvsadm::ServiceKey {
        ipvsadm::ServiceKey::Addr { protocol: ipvsadm::Protocol::Tcp, addr: a.parse().expect("addr") }
    }

    /// What the kernel would decode from our message: the service and dest encoders and the
    /// dump decoders agree, for every field halo sets.
    #[test]
    fn ipvs_service_and_dest_round_trip_through_the_wire_format() {
        let mut s = svc(tcp("198.51.100.10:80"), "wrr", &[]);
        s.persistent =
            Some(ipvsadm::Persistent { timeout: 600, netmask: Netmask::v4(Ipv4Addr::new(255, 255, 255, 0)) });
        s.sched_flags.flag2 = true;
        let mut m = Msg::new(42, CMD_NEW_SERVICE, 1);
        m.begin(CMD_ATTR_SERVICE);
        put_service(&mut m, &s);
        m.end();
        let bytes = m.finish(0, 1).to_vec();
        let top = Attrs::parse(&bytes[HDR_LEN + GENL_HDR_LEN..]).expect("attrs");
        let back = parse_service(top.get(CMD_ATTR_SERVICE).expect("nested")).expect("decodes");
        assert_eq!(back, s);

        let v6 = ipvsadm::ServiceKey::Addr {
            protocol: ipvsadm::Protocol::Udp,
            addr: "[2001:db8::10]:53".parse().expect("addr"),
        };
        let mut s6 = svc(v6, "sh", &[]);
        s6.persistent = Some(ipvsadm::Persistent { timeout: 30, netmask: Netmask::v6(64).expect("prefix") });
        let mut m = Msg::new(42, CMD_NEW_SERVICE, 1);
        m.begin(CMD_ATTR_SERVICE);
        put_service(&mut m, &s6);
        m.end();
        let bytes = m.finish(0, 1).to_vec();
        let top = Attrs::parse(&bytes[HDR_LEN + GENL_HDR_LEN..]).expect("attrs");
        assert_eq!(parse_service(top.get(CMD_ATTR_SERVICE).expect("nested")).expect("decodes"), s6);

        let fwm = ipvsadm::ServiceKey::Fwmark { mark: 7, ipv6: false };
        let tun = ipvsadm::Forward::Tunnel(ipvsadm::Tunnel {
            kind: ipvsadm::TunnelKind::Gue { port: 6080 },
            csum: ipvsadm::TunnelCsum::Csum,
        });
        for (key, d) in [
            (
                tcp("198.51.100.10:80"),
                ipvsadm::Destination::new("192.0.2.11:8080".parse().expect("a"), ipvsadm::Forward::Masq, 3),
            ),
            (
                tcp("198.51.100.10:80"),
                ipvsadm::Destination::new("192.0.2.12:80".parse().expect("a"), ipvsadm::Forward::Route, 0),
            ),
            (fwm, ipvsadm::Destination::new("192.0.2.13:0".parse().expect("a"), tun, 1)),
        ] {
            let mut m = Msg::new(42, CMD_NEW_DEST, 1);
            m.begin(CMD_ATTR_DEST);
            put_dest(&mut m, &key, &d, true);
            m.end();
            let bytes = m.finish(0, 1).to_vec();
            let top = Attrs::parse(&bytes[HDR_LEN + GENL_HDR_LEN..]).expect("attrs");
            assert_eq!(parse_dest(top.get(CMD_ATTR_DEST).expect("nested"), AF_INET).expect("decodes"), d);
        }
    }

    #[test]
    fn ipvs_dr_real_servers_take_the_virtual_port_and_diffs_name_what_changed() {
        let key = tcp("198.51.100.10:80");
        let d = ipvsadm::Destination::new("192.0.2.11:8080".parse().expect("a"), ipvsadm::Forward::Route, 1);
        assert_eq!(dest_addr(&key, &d), "192.0.2.11:80".parse::<SocketAddr>().expect("a"));
        let mut w = d.clone();
        w.weight = 0;
        assert_eq!(dest_diff(&w, &d), vec!["weight 1 -> 0".to_string()]);
        let mut local = d.clone();
        local.forward = ipvsadm::Forward::Local;
        assert!(dest_diff(&d, &local).is_empty(), "the kernel's Local matches any method");
        let a = svc(key, "rr", &[]);
        let mut b = a.clone();
        b.persistent = Some(ipvsadm::Persistent { timeout: 300, netmask: Netmask::HOST });
        assert_eq!(service_diff(&b, &a), vec!["persistence".to_string()]);
        b.scheduler = "wlc".into();
        assert_eq!(service_diff(&b, &a).len(), 2);
        assert!(service_diff(&a, &a).is_empty());
    }

    #[test]
    fn ipvs_validate_refuses_what_the_kernel_would() {
        let ok = svc(tcp("198.51.100.10:80"), "rr", &[("192.0.2.11:80", ipvsadm::Forward::Route, 1)]);
        assert!(validate_services(std::slice::from_ref(&ok)).is_ok());
        let dup = vec![ok.clone(), ok.clone()];
        assert!(validate_services(&dup).unwrap_err().to_string().contains("appears twice"));
        let mut neg = ok.clone();
        neg.dests[0].weight = -1;
        assert!(validate_services(&[neg]).unwrap_err().to_string().contains("negative weight"));
        let mut long = ok.clone();
        long.scheduler = "a-very-long-scheduler-name".into();
        assert!(validate_services(&[long]).unwrap_err().to_string().contains("scheduler name"));
        // Two DR real servers differing only by port are one for IPVS.
        let twice = svc(
            tcp("198.51.100.10:80"),
            "rr",
            &[("192.0.2.11:80", ipvsadm::Forward::Route, 1), ("192.0.2.11:81", ipvsadm::Forward::Route, 1)],
        );
        assert!(validate_services(&[twice]).is_err());
    }

    #[test]
    fn ipvs_conn_table_parses_like_ipvsadm_reads_it() {
        let text = "Pro FromIP   FPrt ToIP     TPrt DestIP   DPrt State       Expires PEName PEData\n\
                    TCP C6336401 9C40 C633640A 0050 C000020B 0050 SYN_RECV         57\n\
                    UDP C6336401 A000 C633640A 0035 C000020C 1435 UDP             298 sip abc\n";
        let c = parse_connections(text).expect("parses");
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].source, "198.51.100.1:40000".parse::<SocketAddr>().expect("a"));
        assert_eq!(c[0].destination, "192.0.2.11:80".parse::<SocketAddr>().expect("a"));
        assert_eq!((c[0].state.as_str(), c[0].expires), ("SYN_RECV", 57));
        assert_eq!(c[1].pe, Some(("sip".into(), "abc".into())));
        let bad = "header\nTCP C6336401 9C40\n";
        assert_eq!(parse_connections(bad).unwrap_err().0, 2);
    }

    /// On a kernel without IPVS (this machine's), `auto` falls back to nftables and `ipvs`
    /// is refused with what to do; on one with IPVS, `auto` takes it.
    #[test]
    fn ipvs_auto_selection_follows_the_kernel() {
        let nft = nft::NftDataPlane::new(nft::Nft::new());
        let auto = DataPlane::select(PlaneChoice::Auto, nft.clone()).expect("auto always selects");
        match IpvsDataPlane::probe() {
            Err(Error::Unavailable { why }) => {
                assert_eq!(why, "no generic netlink family IPVS");
                assert_eq!(auto.name(), if Path::new(PROC_IPVS).exists() { "ipvs" } else { "nftables" });
                let e = DataPlane::select(PlaneChoice::Ipvs, nft.clone()).expect_err("no IPVS here");
                assert!(e.to_string().contains("modprobe ip_vs"), "{e}");
            }
            Ok(()) => {
                assert_eq!(auto.name(), "ipvs");
                assert!(IpvsDataPlane::new().model().is_ok());
            }
            Err(e) => panic!("probing for IPVS: {e}"),
        }
        let chosen = DataPlane::select(PlaneChoice::Nftables, nft.with_table("halo_lb_x")).expect("nft");
        assert_eq!((chosen.name(), chosen.table()), ("nftables", "halo_lb_x"));
        assert_eq!(chosen.to_string(), "nftables table ip halo_lb_x");
        assert_eq!(chosen.kernel_model().expect("no kernel model").map(|m| m.services.len()), None);
    }

    /// ldirectord.cf's `dataplane` reaches the plane choice word for word, and the file's
    /// value picks the plane as `select` would.
    #[test]
    fn ipvs_plane_choice_from_ldirectord_cf() {
        use halo_config::ldirectord_cf::Dataplane as D;
        for (d, want) in
            [(D::Auto, PlaneChoice::Auto), (D::Nftables, PlaneChoice::Nftables), (D::Ipvs, PlaneChoice::Ipvs)]
        {
            let c = PlaneChoice::from(d);
            assert_eq!(c, want);
            assert_eq!(c.to_string(), d.name());
            assert_eq!(d.name().parse::<PlaneChoice>(), Ok(c));
        }
        let (cf, _) = halo_config::parse_ldirectord_cf(
            Path::new("ldirectord.cf"),
            "dataplane=nftables\nvirtual=198.51.100.10:80\n\treal=192.0.2.11:80 gate\n",
        )
        .expect("parses");
        let plane = DataPlane::select(cf.global.dataplane.into(), nft::NftDataPlane::new(nft::Nft::new()))
            .expect("nftables is always there to choose");
        assert_eq!(plane.name(), "nftables");
    }

    #[test]
    fn ipvs_plane_choice_parses_and_desired_maps_to_ipvs_services() {
        assert_eq!("IPVS".parse::<PlaneChoice>(), Ok(PlaneChoice::Ipvs));
        assert_eq!("nft".parse::<PlaneChoice>(), Ok(PlaneChoice::Nftables));
        assert!("xdp".parse::<PlaneChoice>().unwrap_err().contains("expected auto, nftables or ipvs"));
        let d = Desired {
            services: vec![super::super::VirtualService {
                key: ServiceKey {
                    protocol: Protocol::Udp,
                    vip: IpAddr::V4(Ipv4Addr::new(198, 51, 100, 10)),
                    port: 53,
                    fwmark: 0,
                },
                scheduler: "sh".into(),
                persistence: Some(super::super::Persistence {
                    timeout_s: 60,
                    netmask: Netmask::v4(Ipv4Addr::new(255, 255, 0, 0)),
                }),
                forward: Forward::Masq,
                masquerade: false,
                reals: vec![super::super::RealServer {
                    addr: "192.0.2.11:5353".parse().expect("a"),
                    weight: 0,
                }],
            }],
        };
        let s = services_of(&d);
        assert_eq!(service_name(&s[0].key), "UDP 198.51.100.10:53");
        assert_eq!(s[0].persistent.map(|p| p.netmask.v4_mask()), Some(Ipv4Addr::new(255, 255, 0, 0)));
        assert_eq!((s[0].dests[0].forward, s[0].dests[0].weight), (ipvsadm::Forward::Masq, 0));

        // A virtual6 service: the IPv6 key, the prefix length as its mask, IPv6 real servers.
        let cf = "virtual6=[2001:db8::10]:443\n\treal6=[2001:db8::11]:443 gate 2\n\tpersistent=300\n\tnetmask=64\n";
        let (cf, _) = halo_config::parse_ldirectord_cf(std::path::Path::new("x.cf"), cf).expect("parses");
        let s = services_of(&Desired::from_ldirectord(&cf).expect("converts"));
        assert_eq!(service_name(&s[0].key), "TCP [2001:db8::10]:443");
        assert_eq!(s[0].persistent.map(|p| p.netmask.v6_prefix()), Some(64));
        assert_eq!(s[0].dests[0].addr, "[2001:db8::11]:443".parse::<SocketAddr>().expect("a"));
        assert_eq!((s[0].dests[0].forward, s[0].dests[0].weight), (ipvsadm::Forward::Route, 2));
    }
}
