//! The director's data plane: what the kernel must do with connections to the virtual
//! services, as a typed [`Desired`] state that a data plane reconciles against what the kernel
//! reports (never by replaying commands).
//!
//! This machine's kernel has no IPVS, so the data plane here is nftables ([`nft`]): one table
//! `ip halo_lb` owned by halo (and `ip6 halo_lb` for IPv6 services), computed from [`Desired`], compared with `nft -j list table`, and
//! replaced in one `nft -j -f -` transaction only when the two differ. Where the kernel has
//! IPVS, [`ipvs`] runs the same [`Desired`] state in the kernel's own load balancer over
//! generic netlink (read back, then only the commands for what differs), and
//! [`DataPlane::select`] picks either (`auto`: IPVS when the kernel has it).
//!
//! What the nftables plane does, per forwarding method:
//! * [`Forward::Masq`] (LVS-NAT): the first packet of a connection (nat prerouting only sees
//!   those) is sent by a `numgen`/`jhash` verdict map to a per-real chain that `dnat`s it;
//!   conntrack keeps every later packet of that connection on the same real server, so changing
//!   weights or removing a real server never moves an established connection. With
//!   [`VirtualService::masquerade`] the connections are also SNATed to the director, for
//!   one-arm set-ups where the real servers do not route back through the director.
//! * [`Forward::Gate`] (LVS-DR): the packet is sent unchanged (destination still the VIP) to
//!   the real server's MAC address with `dup to <real>` (the kernel resolves the real server's
//!   address by ARP and uses it as the next hop, exactly what IPVS's DR transmitter does), and
//!   the original is dropped before conntrack sees it. Because the original is dropped,
//!   conntrack cannot remember the choice (a connection is only confirmed when its first
//!   packet survives the hooks), so each real server has a dynamic set of the flows (client
//!   address and port, or the masked client address with persistence) it serves, with a
//!   timeout refreshed by every packet: flows already in a set keep their real server
//!   whatever the weights become; new flows are scheduled. A real server removed from the
//!   desired state is kept, at weight 0, for as long as its flow set still holds flows (read
//!   back from the kernel at each apply), so its established connections keep working too;
//!   the apply after they expire removes it. (With persistence the set is the persistence
//!   set, refreshed by every packet, and a removed real server's set goes at once: its
//!   clients are rescheduled, as IPVS invalidates templates of a deleted destination.)
//!   The flow sets are also where DR connections are counted (`ActiveConn`/`InActConn`) and
//!   listed (`-c`): see [`flows::dr_flows`] and [`flows::DR_ACTIVE_IDLE_S`] (the sets carry
//!   no TCP state: a TCP flow is active while its last packet is recent).
//! * Persistence (`persistent` + `netmask`): a dynamic set per real server of masked client
//!   addresses, with the persistence timeout, refreshed by each new connection (NAT) or each
//!   packet (DR). A client whose masked address is in a real server's set goes there, even if
//!   that server's weight is now 0 (IPVS's default with `expire_quiescent_template` off).
//!
//! Schedulers: the data plane has no connection counts, so it cannot run the kernel's
//! connection-counting schedulers. `rr` is `numgen inc` over the available real servers, and
//! `wrr` is `numgen inc` over one cycle of [`crate::scheduler::WeightedRoundRobin`]'s choices
//! (weights reduced by their gcd, scaled down to at most [`MAX_SLOTS`] slots). `sh` and `mh`
//! hash the client address (`jhash ip saddr`), `dh`, `lblc` and `lblcr` hash the destination
//! address, each over weighted slots. `lc`, `wlc`, `sed` and `nq` are **approximated by `wrr`**
//! (weighted distribution, no connection counts), `fo` sends to the available real server of
//! highest weight, and `ovf` is approximated by `fo`. [`scheduling_of`] says which applies.
//!
//! IPv4 services (`virtual=`) run in table `ip NAME`, IPv6 ones (`virtual6=`, `real6=`) in a
//! table `ip6 NAME` of their own, made with the first IPv6 service and deleted with the last
//! (both change in one transaction); a real server is of its virtual service's family.
//!
//! Firewall-mark services (`virtual=7`: the packets the host's own rules mark so, at the
//! mangle priority) are `meta mark M` in the nftables plane: NAT in the nat prerouting chain,
//! DR in a filter chain just after mangle (`mark_prerouting`, -140); a real server without a
//! port keeps the packet's. `ipip` tunnelling (LVS-TUN) is the IPVS plane's alone: the
//! nftables plane refuses it, naming what would run it ([`nft::can_run`]).
//!
//! Limits: one forwarding method per virtual service; a DR or tunnelled real server must listen
//! on the virtual port. The director must
//! forward (`net.ipv4.ip_forward=1`, `net.ipv6.conf.all.forwarding=1`) for NAT; that and the
//! VIP itself are the host's job.
//! [`NftDataPlane::apply`] blocks for a few `nft` runs (~10 ms each): call it from a blocking
//! task, never from the heartbeat path. Verified on this machine's kernel (6.18, no IPVS)
//! with Debian bookworm's nft 1.0.6, whose JSON parser accepts everything used here (it
//! cannot parse a dynamic *map* statement, which is why persistence and DR flows are one
//! plain set per real server rather than one map per service).

pub mod flows;
pub mod ipvs;
pub mod nft;

#[cfg(test)]
mod netns_tests;

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use halo_config::ldirectord_cf as ld;

use crate::scheduler::{Conn, Dest, Netmask, Scheduler, WeightedRoundRobin, SCHEDULERS};

pub use ipvs::{DataPlane, IpvsDataPlane, PlaneChoice};
pub use nft::{Change, Error, Nft, NftDataPlane, RealStats};

/// The most slots a verdict map gets for one virtual service: weights are scaled down to fit
/// (but every available real server keeps at least one slot).
pub const MAX_SLOTS: u32 = 1024;

/// How long a DR flow keeps its real server after its last packet (IPVS's TCP established
/// timeout is 900 s, UDP 300 s).
pub const DR_TCP_FLOW_TIMEOUT_S: u32 = 900;
/// See [`DR_TCP_FLOW_TIMEOUT_S`].
pub const DR_UDP_FLOW_TIMEOUT_S: u32 = 300;

/// Upper bound on the number of entries of each persistence or DR flow set (one per real
/// server): traffic never makes a table grow without bound.
pub const AFFINITY_SET_SIZE: u32 = 65536;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// LVS forwarding method, with ldirectord's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Forward {
    /// NAT (`-m`).
    Masq,
    /// Direct routing (`-g`): only the destination MAC address changes.
    Gate,
    /// IP-in-IP tunnelling (`-i`, ldirectord's `ipip`): IPVS data plane only.
    Ipip,
}

/// What identifies a virtual service: protocol, VIP and port, or a firewall mark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceKey {
    pub protocol: Protocol,
    /// IPv4 (`virtual=`) or IPv6 (`virtual6=`); its real servers are of the same family.
    pub vip: IpAddr,
    pub port: u16,
    /// Not 0: a firewall-mark service (`virtual=7`, ldirectord's `protocol=fwm`, ipvsadm
    /// `-f`), whose packets are those the host's firewall marked so, whatever their address;
    /// `vip` is then the unspecified address of its family and `port` 0. IPVS data plane only.
    pub fwmark: u32,
}

impl ServiceKey {
    /// The service of a virtual address and port (not a firewall mark).
    pub fn addr(protocol: Protocol, vip: SocketAddr) -> ServiceKey {
        ServiceKey { protocol, vip: vip.ip(), port: vip.port(), fwmark: 0 }
    }

    /// The virtual address and port: `192.0.2.10:80`, `[2001:db8::10]:80`.
    pub fn socket(&self) -> SocketAddr {
        SocketAddr::new(self.vip, self.port)
    }

    /// How ldirectord's log lines name the service: `192.0.2.10:80`, `[2001:db8::10]:80`,
    /// `fwm 7`.
    pub fn label(&self) -> String {
        if self.fwmark != 0 {
            format!("fwm {}", self.fwmark)
        } else {
            self.socket().to_string()
        }
    }
}

impl fmt::Display for ServiceKey {
    /// ldirectord's id: `tcp:192.0.2.10:80` (`tcp:[2001:db8::10]:80` for IPv6, `fwm:7` for a
    /// firewall mark).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.fwmark != 0 {
            write!(f, "fwm:{}", self.fwmark)
        } else {
            write!(f, "{}:{}", self.protocol, self.socket())
        }
    }
}

/// `persistent` + `netmask`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Persistence {
    /// Seconds (ldirectord `persistent`, ipvsadm `-p`); at least 1.
    pub timeout_s: u32,
    /// Clients whose addresses agree under this mask share a real server (`-M`): a dotted
    /// mask for IPv4 services, a prefix length for IPv6 ones.
    pub netmask: Netmask,
}

/// One real server of a virtual service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RealServer {
    /// Of the family of its virtual service.
    pub addr: SocketAddr,
    /// 0 is quiescent: no new connections, established ones (and persistent clients) kept.
    pub weight: u32,
}

/// One virtual service as the kernel must run it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct VirtualService {
    pub key: ServiceKey,
    /// An ipvsadm scheduler name (see [`scheduling_of`] for what the data plane makes of it).
    pub scheduler: String,
    pub persistence: Option<Persistence>,
    pub forward: Forward,
    /// NAT only: also SNAT (masquerade) the connections to the director's address, so replies
    /// come back through the director even when the real servers route elsewhere.
    pub masquerade: bool,
    pub reals: Vec<RealServer>,
}

/// Everything the data plane must do. The order of services and real servers matters only
/// for the order of rules and slots.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Desired {
    pub services: Vec<VirtualService>,
}

/// Why a desired state or an ldirectord.cf virtual service cannot be run by this data plane.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidDesired {
    #[error("virtual service {0} appears twice")]
    DuplicateService(ServiceKey),
    #[error("virtual service {service}: real server {real} appears twice")]
    DuplicateReal { service: ServiceKey, real: SocketAddr },
    #[error("virtual service {service}: real server {real} is not of the virtual address's family")]
    MixedFamily { service: ServiceKey, real: SocketAddr },
    #[error("virtual service {service}: unknown scheduler {name:?}; expected one of {}", SCHEDULERS.join(" "))]
    UnknownScheduler { service: ServiceKey, name: String },
    #[error(
        "virtual service {service}: direct routing cannot change the port, but real server {real} \
         is not on port {}", service.port
    )]
    GatePort { service: ServiceKey, real: SocketAddr },
    #[error("virtual service {service}: a persistence timeout of 0 seconds")]
    ZeroPersistence { service: ServiceKey },
    #[error("virtual service {service}: port 0")]
    ZeroPort { service: ServiceKey },
    #[error("ldirectord.cf line {line}: {what} is not supported by the nftables data plane")]
    Unsupported { line: usize, what: String },
    #[error("ldirectord.cf line {line}: {what} must be resolved to an address first")]
    Unresolved { line: usize, what: String },
    #[error("ldirectord.cf line {line}: virtual service mixes forwarding methods (gate and masq)")]
    MixedForwarding { line: usize },
    #[error("ldirectord.cf line {line}: netmask {netmask:?}: {why}")]
    BadNetmask { line: usize, netmask: String, why: String },
    #[error(
        "virtual service {service}: {what} needs the IPVS data plane (dataplane=ipvs, or auto on \
         a kernel with ip_vs); the nftables plane cannot run it"
    )]
    NeedsIpvs { service: ServiceKey, what: &'static str },
}

impl Desired {
    /// Checks what the data plane relies on: unique services and real servers, known
    /// schedulers, DR and tunnelled real servers on the virtual port, non-zero timeouts and
    /// ports (a firewall-mark service has none).
    pub fn validate(&self) -> Result<(), InvalidDesired> {
        let mut seen = std::collections::HashSet::new();
        for s in &self.services {
            if !seen.insert(s.key) {
                return Err(InvalidDesired::DuplicateService(s.key));
            }
            if s.key.port == 0 && s.key.fwmark == 0 {
                return Err(InvalidDesired::ZeroPort { service: s.key });
            }
            if !SCHEDULERS.contains(&s.scheduler.as_str()) {
                return Err(InvalidDesired::UnknownScheduler { service: s.key, name: s.scheduler.clone() });
            }
            if s.persistence.is_some_and(|p| p.timeout_s == 0) {
                return Err(InvalidDesired::ZeroPersistence { service: s.key });
            }
            let mut reals = std::collections::HashSet::new();
            for r in &s.reals {
                // Chains, sets and counters are named after the real server's address and port.
                if !reals.insert(r.addr) {
                    return Err(InvalidDesired::DuplicateReal { service: s.key, real: r.addr });
                }
                if r.addr.is_ipv4() != s.key.vip.is_ipv4() {
                    return Err(InvalidDesired::MixedFamily { service: s.key, real: r.addr });
                }
                // A firewall-mark service has no port of its own: its packets keep theirs.
                if s.key.fwmark == 0 {
                    if s.forward != Forward::Masq && r.addr.port() != s.key.port {
                        return Err(InvalidDesired::GatePort { service: s.key, real: r.addr });
                    }
                    if r.addr.port() == 0 {
                        return Err(InvalidDesired::ZeroPort { service: s.key });
                    }
                }
            }
        }
        Ok(())
    }

    /// The desired state ldirectord.cf describes, with every real server at its configured
    /// weight (the runtime then lowers weights to 0 or drops real servers as checks fail).
    /// Host names must have been resolved (they are refused here: this never touches the
    /// network); `fallback` servers are the runtime's to add.
    pub fn from_ldirectord(cf: &ld::LdirectordCf) -> Result<Desired, InvalidDesired> {
        let services = cf.virtuals.iter().map(VirtualService::from_ldirectord).collect::<Result<_, _>>()?;
        let d = Desired { services };
        d.validate()?;
        Ok(d)
    }
}

impl VirtualService {
    /// One `virtual=` section of ldirectord.cf.
    pub fn from_ldirectord(v: &ld::VirtualService) -> Result<VirtualService, InvalidDesired> {
        let line = v.line;
        let unspecified = if v.v6 {
            IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED)
        } else {
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        };
        let (vip, port, fwmark) = match &v.addr {
            ld::VirtualAddr::Ip { ip, port } if ip.is_ipv6() == v.v6 => (*ip, *port, 0),
            ld::VirtualAddr::Ip { ip, .. } => {
                let (line_kind, family) = if v.v6 { ("virtual6", "IPv6") } else { ("virtual", "IPv4") };
                return Err(InvalidDesired::Unsupported {
                    line,
                    what: format!("{line_kind}={ip} (a {line_kind} line takes an {family} address)"),
                });
            }
            ld::VirtualAddr::Host { name, .. } => {
                return Err(InvalidDesired::Unresolved { line, what: format!("virtual host {name}") })
            }
            ld::VirtualAddr::Fwmark(0) => {
                return Err(InvalidDesired::Unsupported { line, what: "firewall mark 0".into() })
            }
            ld::VirtualAddr::Fwmark(m) => (unspecified, 0, *m),
        };
        let protocol = match v.protocol {
            ld::Protocol::Udp => Protocol::Udp,
            // A firewall-mark service takes any protocol the mark is put on.
            ld::Protocol::Tcp | ld::Protocol::Fwm => Protocol::Tcp,
        };
        let key = ServiceKey { protocol, vip, port, fwmark };
        let mut forward = None;
        let mut reals = Vec::new();
        for r in &v.reals {
            let f = match r.forward {
                ld::Forward::Masq => Forward::Masq,
                ld::Forward::Gate => Forward::Gate,
                ld::Forward::Ipip => Forward::Ipip,
            };
            if forward.is_some_and(|x| x != f) {
                return Err(InvalidDesired::MixedForwarding { line });
            }
            forward = Some(f);
            let ip = match &r.addr {
                ld::Host::Ip(ip) if ip.is_ipv4() == vip.is_ipv4() => *ip,
                ld::Host::Ip(ip) => {
                    return Err(InvalidDesired::Unsupported {
                        line: r.line,
                        what: format!(
                            "real server {ip} of another address family than the virtual address {vip}"
                        ),
                    })
                }
                ld::Host::Name(n) => {
                    return Err(InvalidDesired::Unresolved { line: r.line, what: format!("real server {n}") })
                }
            };
            if r.range_end.is_some() {
                return Err(InvalidDesired::Unresolved { line: r.line, what: "a real server range".into() });
            }
            // ldirectord's port 0 / absent: the virtual's port.
            let rport = r.port.unwrap_or(port);
            reals.push(RealServer { addr: SocketAddr::new(ip, rport), weight: r.weight });
        }
        let persistence = match v.persistent {
            None => None,
            Some(timeout_s) => {
                let netmask = match &v.netmask {
                    None => Netmask::HOST,
                    Some(s) => Netmask::parse(s).map_err(|e| InvalidDesired::BadNetmask {
                        line,
                        netmask: s.clone(),
                        why: e.to_string(),
                    })?,
                };
                Some(Persistence { timeout_s, netmask })
            }
        };
        Ok(VirtualService {
            key,
            scheduler: v.scheduler.clone(),
            persistence,
            forward: forward.unwrap_or(Forward::Gate),
            masquerade: false,
            reals,
        })
    }
}

/// How the data plane picks a real server for a new connection of one virtual service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheduling {
    /// `numgen inc` over the slots: rotation.
    Rotate,
    /// `jhash ip saddr` over the slots.
    SourceHash,
    /// `jhash ip daddr` over the slots.
    DestinationHash,
}

/// Which nftables selection stands for an ipvsadm scheduler, and whether it is exact or an
/// approximation (no connection counts in the data plane).
pub fn scheduling_of(scheduler: &str) -> (Scheduling, bool) {
    match scheduler {
        "rr" | "wrr" | "fo" => (Scheduling::Rotate, true),
        "sh" | "mh" => (Scheduling::SourceHash, true),
        "dh" => (Scheduling::DestinationHash, true),
        "lblc" | "lblcr" => (Scheduling::DestinationHash, false),
        // lc wlc sed nq ovf and anything else validate() let through.
        _ => (Scheduling::Rotate, false),
    }
}

/// The slots of the selection map of a virtual service: each slot is an index into
/// `service.reals`. Empty when no real server may take new connections.
pub fn slots(service: &VirtualService) -> Vec<usize> {
    let reals = &service.reals;
    let available: Vec<usize> = (0..reals.len()).filter(|&i| reals[i].weight > 0).collect();
    if available.is_empty() {
        return Vec::new();
    }
    match service.scheduler.as_str() {
        // rr ignores weights (apart from 0).
        "rr" => available,
        // The highest weight wins; the first one listed among equals (ip_vs_fo).
        "fo" | "ovf" => {
            let best = available.iter().copied().max_by_key(|&i| (reals[i].weight, std::cmp::Reverse(i)));
            best.into_iter().collect()
        }
        _ => {
            let weights = scaled_weights(&available.iter().map(|&i| reals[i].weight).collect::<Vec<_>>());
            let total: u32 = weights.iter().sum();
            let dests: Vec<Dest> =
                available.iter().zip(&weights).map(|(&i, &w)| Dest::new(i, reals[i].addr, w)).collect();
            let mut wrr = WeightedRoundRobin::new();
            let any = SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0));
            let conn = Conn::new(any, any, 0);
            let out: Vec<usize> = (0..total).filter_map(|_| wrr.schedule(&dests, &conn)).collect();
            out
        }
    }
}

/// Positive weights divided by their gcd, then scaled down (each at least 1) until they sum
/// to at most [`MAX_SLOTS`].
fn scaled_weights(weights: &[u32]) -> Vec<u32> {
    let g = weights.iter().fold(0u32, |g, &w| gcd(g, w)).max(1);
    let mut w: Vec<u32> = weights.iter().map(|&x| x / g).collect();
    let sum: u64 = w.iter().map(|&x| u64::from(x)).sum();
    if sum > u64::from(MAX_SLOTS) {
        let room = u64::from(MAX_SLOTS);
        w = w.iter().map(|&x| ((u64::from(x) * room / sum) as u32).max(1)).collect();
        // Rounding every weight up to 1 may still overshoot when there are many real servers:
        // take from the largest until it fits.
        while w.iter().sum::<u32>() > MAX_SLOTS {
            if let Some(m) = w.iter_mut().filter(|x| **x > 1).max() {
                *m -= 1;
            } else {
                break;
            }
        }
    }
    w
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn svc(sched: &str, weights: &[u32]) -> VirtualService {
        VirtualService {
            key: ServiceKey {
                protocol: Protocol::Tcp,
                vip: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10)),
                port: 80,
                fwmark: 0,
            },
            scheduler: sched.into(),
            persistence: None,
            forward: Forward::Masq,
            masquerade: false,
            reals: weights
                .iter()
                .enumerate()
                .map(|(i, &w)| RealServer {
                    addr: SocketAddr::from((Ipv4Addr::from(0x0a00_0000 + i as u32), 80)),
                    weight: w,
                })
                .collect(),
        }
    }

    #[test]
    fn dataplane_slots_follow_the_weights() {
        assert_eq!(slots(&svc("rr", &[5, 1, 0])), vec![0, 1]);
        assert_eq!(slots(&svc("wrr", &[3, 1])), vec![0, 0, 0, 1]);
        assert_eq!(slots(&svc("wrr", &[4, 3, 2])), vec![0, 0, 1, 0, 1, 2, 0, 1, 2]);
        assert_eq!(slots(&svc("wlc", &[300, 100, 0])), vec![0, 0, 0, 1]);
        assert_eq!(slots(&svc("fo", &[1, 7, 7])), vec![1]);
        assert_eq!(slots(&svc("sh", &[2, 2])), vec![0, 1]);
        assert!(slots(&svc("wrr", &[0, 0])).is_empty());
        assert!(slots(&svc("rr", &[])).is_empty());
    }

    #[test]
    fn dataplane_slots_are_capped() {
        let s = slots(&svc("wrr", &[65535, 1, 65534, 3]));
        assert!(s.len() <= MAX_SLOTS as usize && s.len() > 1000, "{}", s.len());
        for i in 0..4 {
            assert!(s.contains(&i), "real {i} lost its slot");
        }
        // More real servers than slots: one slot each.
        let many: Vec<u32> = (0..3000).map(|i| 1 + i % 7).collect();
        assert_eq!(slots(&svc("wrr", &many)).len(), 3000);
        let many: Vec<u32> = (0..1000).map(|i| 1 + i % 7).collect();
        assert!(slots(&svc("wrr", &many)).len() <= MAX_SLOTS as usize);
    }

    #[test]
    fn dataplane_validate_refuses_what_the_plane_cannot_run() {
        let mut d = Desired { services: vec![svc("wrr", &[1, 1])] };
        assert!(d.validate().is_ok());
        d.services[0].scheduler = "xx".into();
        assert!(matches!(d.validate(), Err(InvalidDesired::UnknownScheduler { .. })));
        d.services[0].scheduler = "rr".into();
        d.services[0].reals[1].addr = d.services[0].reals[0].addr;
        assert!(matches!(d.validate(), Err(InvalidDesired::DuplicateReal { .. })));
        let mut g = svc("rr", &[1]);
        g.forward = Forward::Gate;
        g.reals[0].addr.set_port(8080);
        assert!(matches!(Desired { services: vec![g] }.validate(), Err(InvalidDesired::GatePort { .. })));
        let d2 = Desired { services: vec![svc("rr", &[1]), svc("wrr", &[1])] };
        assert!(matches!(d2.validate(), Err(InvalidDesired::DuplicateService(_))));
    }

    #[test]
    fn dataplane_from_ldirectord_converts_the_seed_director() {
        let text = "\
checktimeout=3
checkinterval=1
quiescent=yes
virtual=192.168.1.199:80
\treal=192.168.1.11:80 gate 2
\treal=192.168.1.12:80 gate
\tservice=http
\tscheduler=rr
\tpersistent=600
\tnetmask=255.255.255.0
virtual=192.168.1.199:53
\treal=192.168.1.11:5353 masq
\tscheduler=sh
";
        let (cf, _) = halo_config::parse_ldirectord_cf(Path::new("ldirectord.cf"), text).expect("parses");
        let d = Desired::from_ldirectord(&cf).expect("converts");
        assert_eq!(d.services.len(), 2);
        let web = &d.services[0];
        assert_eq!(web.key.to_string(), "tcp:192.168.1.199:80");
        assert_eq!(web.forward, Forward::Gate);
        assert_eq!(
            web.persistence,
            Some(Persistence { timeout_s: 600, netmask: Netmask::v4(Ipv4Addr::new(255, 255, 255, 0)) })
        );
        assert_eq!(web.reals.iter().map(|r| r.weight).collect::<Vec<_>>(), vec![2, 1]);
        let dns = &d.services[1];
        assert_eq!(dns.key.protocol, Protocol::Udp);
        assert_eq!(dns.forward, Forward::Masq);
        assert_eq!(dns.reals[0].addr.port(), 5353);

        let mixed = "virtual=10.0.0.1:80\n\treal=10.0.0.2:80 gate\n\treal=10.0.0.3:80 masq\n";
        let (cf, _) = halo_config::parse_ldirectord_cf(Path::new("x"), mixed).expect("parses");
        assert!(matches!(Desired::from_ldirectord(&cf), Err(InvalidDesired::MixedForwarding { line: 1 })));
        // A firewall-mark service (no address, no port: its packets keep theirs) with an ipip
        // real server: IPVS runs it (FWM, Tunnel); the nftables plane refuses the tunnel.
        let fwm = "virtual=7\n\treal=10.0.0.2 ipip\n\tchecktype=connect\n\tcheckport=80\n";
        let (cf, _) = halo_config::parse_ldirectord_cf(Path::new("x"), fwm).expect("parses");
        let d = Desired::from_ldirectord(&cf).expect("converts");
        let s = &d.services[0];
        assert_eq!(
            (s.key.fwmark, s.key.port, s.key.to_string(), s.key.label()),
            (7, 0, "fwm:7".into(), "fwm 7".into())
        );
        assert_eq!((s.forward, s.reals[0].addr.port()), (Forward::Ipip, 0));
        let ipvs = ipvs::services_of(&d);
        assert_eq!(ipvs[0].key, crate::ipvsadm::ServiceKey::Fwmark { mark: 7, ipv6: false });
        assert!(matches!(ipvs[0].dests[0].forward, crate::ipvsadm::Forward::Tunnel(_)));
        assert_eq!(ipvs::key_of(&ipvs[0].key), Some(s.key), "the IPVS key reads back");
        let e = nft::can_run(&d).expect_err("nftables cannot");
        assert!(e.to_string().contains("fwm:7: ipip forwarding (LVS-TUN) needs the IPVS data plane"), "{e}");
        let tun = "virtual=10.0.0.1:80\n\treal=10.0.0.2:80 ipip\n";
        let (cf, _) = halo_config::parse_ldirectord_cf(Path::new("x"), tun).expect("parses");
        let d = Desired::from_ldirectord(&cf).expect("converts");
        assert!(nft::can_run(&d).expect_err("nftables cannot").to_string().contains("ipip forwarding"));
        // A tunnel cannot change the port, as direct routing cannot.
        let tun = "virtual=10.0.0.1:80\n\treal=10.0.0.2:8080 ipip\n";
        let (cf, _) = halo_config::parse_ldirectord_cf(Path::new("x"), tun).expect("parses");
        assert!(matches!(Desired::from_ldirectord(&cf), Err(InvalidDesired::GatePort { .. })));
    }
}
