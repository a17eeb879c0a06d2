//! Addresses on interfaces: findif, add, remove, where is it, alias labels, and LVS-DR's
//! hidden loopback address.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr};

use super::nl::{self, AddrMsg, LinkMsg, Request, RouteMsg};
use super::spec::{check_iface, MAX_NAME};
use super::{cidr, Resolved, VipError, VipSpec};

/// An address as it is configured on this host now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddrInfo {
    /// The address.
    pub addr: IpAddr,
    /// Its prefix length.
    pub prefix: u8,
    /// The interface it is on.
    pub iface: String,
    /// That interface's index.
    pub ifindex: u32,
    /// Its kernel label (IPv4: `eth0`, or an alias label such as `eth0:0`).
    pub label: Option<String>,
    /// IPv6 duplicate address detection has not finished yet.
    pub tentative: bool,
    /// IPv6 duplicate address detection found another host using the address.
    pub dad_failed: bool,
}

/// What [`take_from_loopback`] removed from `lo`, so that [`restore_loopback`] can put it
/// back exactly (IPaddr2 keeps the same facts in `$HA_RSCTMP/<ip>`). The fields are public so
/// the caller can persist them across a restart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoopbackSave {
    /// The address.
    pub addr: IpAddr,
    /// Its prefix length (32 or 128).
    pub prefix: u8,
    /// The loopback interface it was on (`lo`).
    pub iface: String,
    /// Its IPv4 label, if it had one.
    pub label: Option<String>,
    /// Its scope (RT_SCOPE_*: 0 global, 254 host).
    pub scope: u8,
}

fn socket(what: &str) -> Result<nl::Socket, VipError> {
    nl::Socket::request().map_err(|e| e.context(what))
}

fn max_prefix(addr: IpAddr) -> u8 {
    if addr.is_ipv4() {
        32
    } else {
        128
    }
}

/// The index of the interface named `iface`.
pub(super) fn ifindex_of(s: &mut nl::Socket, iface: &str) -> Result<u32, VipError> {
    check_iface(iface)
        .map_err(|e| VipError::Unsupported { what: format!("interface {iface:?}"), reason: e })?;
    let req = Request::new(nl::RTM_GETLINK, 0, &nl::ifinfomsg(0, 0, 0)).attr_str(nl::IFLA_IFNAME, iface);
    match s.ack(req) {
        Ok(msgs) => match msgs.iter().find(|m| m.ty == nl::RTM_NEWLINK) {
            Some(m) => Ok(nl::parse_link(&m.body)
                .map_err(|reason| VipError::Malformed { what: format!("look up {iface}"), reason })?
                .ifindex),
            None => Err(VipError::Malformed {
                what: format!("look up {iface}"),
                reason: "acknowledged without the link".into(),
            }),
        },
        Err(e) if e.errno() == Some(libc::ENODEV) => Err(VipError::NoSuchInterface { iface: iface.into() }),
        Err(e) => Err(e.context(format!("look up {iface}"))),
    }
}

/// The link with index `ifindex`.
pub(super) fn get_link(s: &mut nl::Socket, ifindex: u32) -> Result<LinkMsg, nl::NlError> {
    let msgs = s.ack(Request::new(nl::RTM_GETLINK, 0, &nl::ifinfomsg(ifindex, 0, 0)))?;
    let m = msgs
        .iter()
        .find(|m| m.ty == nl::RTM_NEWLINK)
        .ok_or_else(|| nl::NlError::Malformed("acknowledged without the link".into()))?;
    let link = nl::parse_link(&m.body)?;
    if link.ifindex != ifindex {
        return Err(nl::NlError::Malformed(format!("asked for link {ifindex}, got {}", link.ifindex)));
    }
    Ok(link)
}

/// A name for interface `ifindex`: the kernel's, else the label's interface part (labels are
/// `iface` or `iface:alias`, and interface names cannot contain `:`), else `if<N>` (the
/// interface is gone, e.g. for the removal events of a deleted interface).
pub(super) fn name_of(s: &mut nl::Socket, ifindex: u32, label: Option<&str>) -> String {
    if let Ok(LinkMsg { name: Some(n), .. }) = get_link(s, ifindex) {
        return n;
    }
    match label.and_then(|l| l.split(':').next()).filter(|n| !n.is_empty()) {
        Some(n) => n.to_string(),
        None => format!("if{ifindex}"),
    }
}

pub(super) fn info(s: &mut nl::Socket, a: &AddrMsg) -> AddrInfo {
    AddrInfo {
        addr: a.addr,
        prefix: a.prefix,
        iface: name_of(s, a.ifindex, a.label.as_deref()),
        ifindex: a.ifindex,
        label: a.label.clone(),
        tentative: a.flags & nl::IFA_F_TENTATIVE != 0,
        dad_failed: a.flags & nl::IFA_F_DADFAILED != 0,
    }
}

fn dump_addrs(s: &mut nl::Socket, family: u8, what: &str) -> Result<Vec<AddrMsg>, VipError> {
    let msgs = s
        .dump(Request::new(nl::RTM_GETADDR, 0, &nl::ifaddrmsg(family, 0, 0, 0, 0)))
        .map_err(|e| e.context(what))?;
    let mut out = Vec::new();
    for m in msgs.iter().filter(|m| m.ty == nl::RTM_NEWADDR) {
        match nl::parse_addr(&m.body) {
            Ok(Some(a)) if nl::family_of(a.addr) == family => out.push(a),
            Ok(_) => {}
            Err(reason) => return Err(VipError::Malformed { what: what.into(), reason }),
        }
    }
    Ok(out)
}

fn dump_routes(s: &mut nl::Socket, family: u8, what: &str) -> Result<Vec<RouteMsg>, VipError> {
    let msgs = s.dump(Request::new(nl::RTM_GETROUTE, 0, &nl::rtmsg(family))).map_err(|e| e.context(what))?;
    let mut out = Vec::new();
    for m in msgs.iter().filter(|m| m.ty == nl::RTM_NEWROUTE) {
        match nl::parse_route(&m.body) {
            Ok(Some(r)) if r.family == family => out.push(r),
            Ok(_) => {}
            Err(reason) => return Err(VipError::Malformed { what: what.into(), reason }),
        }
    }
    Ok(out)
}

/// True when `addr` lies in `net/len`.
pub(super) fn covers(net: IpAddr, len: u8, addr: IpAddr) -> bool {
    match (net, addr) {
        (IpAddr::V4(n), IpAddr::V4(a)) if len <= 32 => {
            let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
            u32::from(n) & mask == u32::from(a) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(a)) if len <= 128 => {
            let mask = u128::MAX.checked_shl(128 - u32::from(len)).unwrap_or(0);
            u128::from(n) & mask == u128::from(a) & mask
        }
        _ => false,
    }
}

/// The directed broadcast address of `addr/prefix`; none for /31 and /32 (RFC 3021).
pub(super) fn network_broadcast(addr: Ipv4Addr, prefix: u8) -> Option<Ipv4Addr> {
    if prefix >= 31 {
        return None;
    }
    let host = u32::MAX.checked_shr(u32::from(prefix)).unwrap_or(0);
    Some(Ipv4Addr::from(u32::from(addr) | host))
}

/// findif's choice: among the main table's directly connected unicast routes (for IPv4,
/// `scope link`) that cover `addr` — through `oif` if given, and no longer than `prefix` if
/// given (`ip route list match addr/prefix`) — the longest prefix, then the lowest metric.
/// Default routes and routes through a gateway never qualify.
pub(super) fn pick_route(
    routes: &[RouteMsg],
    addr: IpAddr,
    oif: Option<u32>,
    prefix: Option<u8>,
) -> Option<&RouteMsg> {
    let family = nl::family_of(addr);
    routes
        .iter()
        .filter(|r| {
            r.family == family
                && r.table == nl::RT_TABLE_MAIN
                && r.kind == nl::RTN_UNICAST
                && !r.via_gateway
                && r.dst_len > 0
                && r.oif.is_some()
                && (family != nl::AF_INET || r.scope == nl::RT_SCOPE_LINK)
                && oif.is_none_or(|o| r.oif == Some(o))
                && prefix.is_none_or(|p| r.dst_len <= p)
                && r.dst.is_some_and(|d| covers(d, r.dst_len, addr))
        })
        .max_by(|a, b| a.dst_len.cmp(&b.dst_len).then(b.priority.cmp(&a.priority)))
}

/// Where the address goes when interface, prefix or broadcast are not given, like
/// resource-agents' `findif`: the interface and prefix of the directly connected route
/// that covers the address (`10.0.0.0/24 dev eth0 scope link` for 10.0.0.5); the
/// broadcast address is the network's. With both interface and prefix given no route is
/// needed. A loopback address (127.0.0.0/8, ::1) with no route goes on `lo`, as in findif.
///
/// Errors: [`VipError::NoRoute`] when no route covers the address,
/// [`VipError::NoSuchInterface`] for an unknown interface.
pub fn resolve(spec: &VipSpec) -> Result<Resolved, VipError> {
    let addr = spec.addr;
    let what = format!("find the interface for {addr}");
    let unsupported = |reason: &str| VipError::Unsupported { what: format!("{addr}"), reason: reason.into() };
    if addr.is_ipv6() && spec.label.is_some() {
        return Err(unsupported("labels (iface:label) are IPv4-only"));
    }
    if addr.is_ipv6() && spec.broadcast.is_some() {
        return Err(unsupported("IPv6 has no broadcast address"));
    }
    if spec.prefix.is_some_and(|p| p == 0 || p > max_prefix(addr)) {
        return Err(unsupported("prefix length out of range"));
    }
    let mut s = socket(&what)?;
    let given_index = match &spec.iface {
        Some(i) => Some(ifindex_of(&mut s, i)?),
        None => None,
    };
    let (iface, ifindex, prefix) = match (&spec.iface, given_index, spec.prefix) {
        (Some(i), Some(idx), Some(p)) => (i.clone(), idx, p),
        _ => {
            let routes = dump_routes(&mut s, nl::family_of(addr), &what)?;
            match pick_route(&routes, addr, given_index, spec.prefix) {
                Some(r) => {
                    let idx = r.oif.unwrap_or(0);
                    let name = match &spec.iface {
                        Some(i) => i.clone(),
                        None => name_of(&mut s, idx, None),
                    };
                    (name, idx, spec.prefix.unwrap_or(r.dst_len))
                }
                None if addr.is_loopback() && spec.iface.as_deref().is_none_or(|i| i == "lo") => {
                    let idx = ifindex_of(&mut s, "lo")?;
                    let p = spec.prefix.unwrap_or(if addr.is_ipv4() { 8 } else { 128 });
                    ("lo".to_string(), idx, p)
                }
                None => return Err(VipError::NoRoute { addr, iface: spec.iface.clone() }),
            }
        }
    };
    let label = spec.label.as_ref().map(|l| format!("{iface}:{l}"));
    if let Some(l) = &label {
        if l.len() > MAX_NAME {
            return Err(VipError::Unsupported {
                what: format!("{addr} label {l:?}"),
                reason: format!("labels are at most {MAX_NAME} bytes"),
            });
        }
    }
    let broadcast = match addr {
        IpAddr::V4(a) => spec.broadcast.or_else(|| network_broadcast(a, prefix)),
        IpAddr::V6(_) => None,
    };
    Ok(Resolved { addr, prefix, iface, ifindex, label, broadcast })
}

fn check_resolved(r: &Resolved, what: &str) -> Result<(), VipError> {
    let bad = |reason: String| Err(VipError::Unsupported { what: what.into(), reason });
    if r.prefix == 0 || r.prefix > max_prefix(r.addr) {
        return bad(format!("prefix length {} out of range", r.prefix));
    }
    if r.addr.is_ipv6() && (r.label.is_some() || r.broadcast.is_some()) {
        return bad("labels and broadcast addresses are IPv4-only".into());
    }
    if let Some(l) = &r.label {
        if l.is_empty() || l.len() > MAX_NAME {
            return bad(format!("label {l:?} is not 1 to {MAX_NAME} bytes"));
        }
    }
    Ok(())
}

fn new_addr_request(addr: IpAddr, prefix: u8, ifindex: u32, scope: u8) -> Request {
    let ip = nl::ip_bytes(addr);
    let (nodad, flags) = if addr.is_ipv6() { (nl::IFA_F_NODAD as u8, nl::IFA_F_NODAD) } else { (0, 0) };
    let mut req = Request::new(
        nl::RTM_NEWADDR,
        nl::NLM_F_CREATE | nl::NLM_F_EXCL,
        &nl::ifaddrmsg(nl::family_of(addr), prefix, nodad, scope, ifindex),
    )
    .attr(nl::IFA_LOCAL, &ip)
    .attr(nl::IFA_ADDRESS, &ip);
    if addr.is_ipv6() {
        req = req.attr(nl::IFA_FLAGS, &flags.to_ne_bytes());
        // struct ifa_cacheinfo: preferred lifetime 0 (deprecated), valid for ever. Like an
        // IPv4 VIP (a secondary address), an IPv6 VIP is then never picked as the source of
        // the node's own new connections (RFC 6724 rule 3): otherwise, as the newest address
        // on its subnet, it would be, and a director's health checks to LVS-DR real servers
        // (which hold the VIP on lo) would never get an answer. Connections to the VIP are
        // answered from it as before.
        let mut ci = Vec::with_capacity(16);
        for v in [0u32, u32::MAX, 0, 0] {
            ci.extend_from_slice(&v.to_ne_bytes());
        }
        req = req.attr(nl::IFA_CACHEINFO, &ci);
    }
    req
}

/// Adds the address (`RTM_NEWADDR`), as IPaddr2's `ip addr add <ip>/<bits> brd <brd> dev
/// <nic> label <label>` followed by `ip link set <nic> up`: the interface is brought up too.
/// IPv6 addresses are added with `nodad`, so they are usable (and can be announced from) at
/// once, and deprecated (`preferred_lft 0`), so they are not the node's default source
/// address. An address that is already there is not an error: adding is idempotent.
pub fn add(r: &Resolved) -> Result<(), VipError> {
    let what = format!("add {} on {}", cidr(r.addr, r.prefix), r.iface);
    check_resolved(r, &what)?;
    let mut s = socket(&what)?;
    s.ack(Request::new(nl::RTM_NEWLINK, 0, &nl::ifinfomsg(r.ifindex, nl::IFF_UP, nl::IFF_UP)))
        .map_err(|e| e.context(format!("{what}: set {} up", r.iface)))?;
    let scope = if r.addr.is_loopback() { nl::RT_SCOPE_HOST } else { nl::RT_SCOPE_UNIVERSE };
    let mut req = new_addr_request(r.addr, r.prefix, r.ifindex, scope);
    if let Some(b) = r.broadcast {
        req = req.attr(nl::IFA_BROADCAST, &b.octets());
    }
    if let Some(l) = &r.label {
        req = req.attr_str(nl::IFA_LABEL, l);
    }
    match s.ack(req) {
        Ok(_) => Ok(()),
        Err(e) if e.errno() == Some(libc::EEXIST) => Ok(()),
        Err(e) => Err(e.context(what)),
    }
}

/// Sends `RTM_DELADDR` for one address as the kernel listed it; gone already is fine.
fn delete(s: &mut nl::Socket, a: &AddrMsg, what: &str) -> Result<bool, VipError> {
    let ip = nl::ip_bytes(a.addr);
    let req = Request::new(
        nl::RTM_DELADDR,
        0,
        &nl::ifaddrmsg(nl::family_of(a.addr), a.prefix, 0, a.scope, a.ifindex),
    )
    .attr(nl::IFA_LOCAL, &ip)
    .attr(nl::IFA_ADDRESS, &ip);
    match s.ack(req) {
        Ok(_) => Ok(true),
        Err(e) if matches!(e.errno(), Some(libc::EADDRNOTAVAIL | libc::ENODEV)) => Ok(false),
        Err(e) => Err(e.context(what)),
    }
}

/// Removes the address from the resolved interface (`RTM_DELADDR`), whatever prefix it was
/// configured with there. An address that is not there is not an error.
pub fn remove(r: &Resolved) -> Result<(), VipError> {
    let what = format!("remove {} from {}", r.addr, r.iface);
    let mut s = socket(&what)?;
    for a in dump_addrs(&mut s, nl::family_of(r.addr), &what)? {
        if a.addr == r.addr && a.ifindex == r.ifindex {
            delete(&mut s, &a, &what)?;
        }
    }
    Ok(())
}

/// Where `addr` is configured now (an `RTM_GETADDR` dump): interface, prefix, label, DAD
/// state; `None` when it is on no interface. Should it be on several, the first the kernel
/// lists is returned.
pub fn present(addr: IpAddr) -> Result<Option<AddrInfo>, VipError> {
    let what = format!("look for {addr}");
    let mut s = socket(&what)?;
    let found = dump_addrs(&mut s, nl::family_of(addr), &what)?.into_iter().find(|a| a.addr == addr);
    Ok(found.map(|a| info(&mut s, &a)))
}

/// Every interface `addr` is configured on now, in the kernel's order: [`present`] answers
/// with the first only, while an LVS-DR VIP may sit on `lo` and on the NIC at once (and
/// the NIC is the one that matters for "is it running").
pub fn present_all(addr: IpAddr) -> Result<Vec<AddrInfo>, VipError> {
    let what = format!("look for {addr}");
    let mut s = socket(&what)?;
    let found: Vec<AddrMsg> =
        dump_addrs(&mut s, nl::family_of(addr), &what)?.into_iter().filter(|a| a.addr == addr).collect();
    Ok(found.iter().map(|a| info(&mut s, a)).collect())
}

/// The first free alias label of `iface` — `eth0:0`, `eth0:1`, … — as IPaddr numbers its
/// ifconfig aliases. Labels in use are those of the IPv4 addresses configured now.
pub fn next_free_label(iface: &str) -> Result<String, VipError> {
    let what = format!("find a free label on {iface}");
    let mut s = socket(&what)?;
    ifindex_of(&mut s, iface)?;
    let used: HashSet<String> =
        dump_addrs(&mut s, nl::AF_INET, &what)?.into_iter().filter_map(|a| a.label).collect();
    for n in 0u32.. {
        let label = format!("{iface}:{n}");
        if label.len() > MAX_NAME {
            break;
        }
        if !used.contains(&label) {
            return Ok(label);
        }
    }
    Err(VipError::Unsupported { what, reason: format!("every label of at most {MAX_NAME} bytes is taken") })
}

/// LVS-DR hidden loopback (spec §6, IPaddr2's `lvs_support`): if `addr` is on a loopback
/// interface as a host address (/32, /128), removes it and returns what
/// [`restore_loopback`] needs to put it back; `None` when it is not there.
pub fn take_from_loopback(addr: IpAddr) -> Result<Option<LoopbackSave>, VipError> {
    let what = format!("take {addr} from the loopback interface");
    let host = max_prefix(addr);
    let mut s = socket(&what)?;
    for a in dump_addrs(&mut s, nl::family_of(addr), &what)? {
        if a.addr != addr || a.prefix != host {
            continue;
        }
        let link = get_link(&mut s, a.ifindex).map_err(|e| e.context(what.clone()))?;
        if link.flags & nl::IFF_LOOPBACK == 0 {
            continue;
        }
        let iface = link.name.unwrap_or_else(|| name_of(&mut s, a.ifindex, a.label.as_deref()));
        if !delete(&mut s, &a, &what)? {
            return Ok(None);
        }
        return Ok(Some(LoopbackSave { addr, prefix: a.prefix, iface, label: a.label, scope: a.scope }));
    }
    Ok(None)
}

/// Puts back an address [`take_from_loopback`] removed. Already there is fine.
pub fn restore_loopback(save: &LoopbackSave) -> Result<(), VipError> {
    let what = format!("restore {} on {}", cidr(save.addr, save.prefix), save.iface);
    if save.prefix == 0 || save.prefix > max_prefix(save.addr) {
        return Err(VipError::Unsupported {
            what,
            reason: format!("prefix length {} out of range", save.prefix),
        });
    }
    let mut s = socket(&what)?;
    let ifindex = ifindex_of(&mut s, &save.iface)?;
    let mut req = new_addr_request(save.addr, save.prefix, ifindex, save.scope);
    if let (Some(l), true) = (&save.label, save.addr.is_ipv4()) {
        req = req.attr_str(nl::IFA_LABEL, l);
    }
    match s.ack(req) {
        Ok(_) => Ok(()),
        Err(e) if e.errno() == Some(libc::EEXIST) => Ok(()),
        Err(e) => Err(e.context(what)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn route(dst: &str, len: u8, oif: u32) -> RouteMsg {
        let d = ip(dst);
        RouteMsg {
            family: nl::family_of(d),
            dst_len: len,
            table: nl::RT_TABLE_MAIN,
            scope: if d.is_ipv4() { nl::RT_SCOPE_LINK } else { nl::RT_SCOPE_UNIVERSE },
            kind: nl::RTN_UNICAST,
            dst: Some(d),
            oif: Some(oif),
            via_gateway: false,
            priority: 0,
        }
    }

    #[test]
    fn coverage_and_broadcast() {
        assert!(covers(ip("10.0.0.0"), 24, ip("10.0.0.77")));
        assert!(!covers(ip("10.0.0.0"), 24, ip("10.0.1.77")));
        assert!(covers(ip("0.0.0.0"), 0, ip("10.0.1.77")));
        assert!(covers(ip("10.0.0.5"), 32, ip("10.0.0.5")));
        assert!(!covers(ip("10.0.0.0"), 33, ip("10.0.0.5")));
        assert!(!covers(ip("10.0.0.0"), 8, ip("::1")));
        assert!(covers(ip("2001:db8::"), 32, ip("2001:db8:1::5")));
        assert!(!covers(ip("2001:db8::"), 48, ip("2001:db8:1::5")));
        assert!(covers(ip("::"), 0, ip("2001:db8:1::5")));
        let b = |a: &str, p| network_broadcast(a.parse().expect("v4"), p).map(|b| b.to_string());
        assert_eq!(b("10.0.0.5", 24).as_deref(), Some("10.0.0.255"));
        assert_eq!(b("10.0.0.5", 25).as_deref(), Some("10.0.0.127"));
        assert_eq!(b("10.0.0.5", 8).as_deref(), Some("10.255.255.255"));
        assert_eq!(b("10.0.0.5", 1).as_deref(), Some("127.255.255.255"));
        assert_eq!(b("10.0.0.5", 0).as_deref(), Some("255.255.255.255"));
        assert_eq!(b("10.0.0.5", 30).as_deref(), Some("10.0.0.7"));
        assert_eq!(b("10.0.0.5", 31), None);
        assert_eq!(b("10.0.0.5", 32), None);
    }

    #[test]
    fn findif_choice() {
        let default =
            RouteMsg { dst: None, dst_len: 0, scope: 0, via_gateway: true, ..route("0.0.0.0", 0, 2) };
        let via = RouteMsg { via_gateway: true, scope: 0, ..route("198.51.100.0", 24, 2) };
        let other_table = RouteMsg { table: 100, ..route("203.0.113.0", 24, 2) };
        let routes = vec![
            default,
            route("10.0.0.0", 24, 2),
            route("10.0.0.128", 25, 3),
            route("10.0.0.0", 16, 4),
            via,
            other_table,
            route("2001:db8::", 64, 2),
        ];
        let pick = |a: &str, oif, p| pick_route(&routes, ip(a), oif, p).and_then(|r| r.oif);
        assert_eq!(pick("10.0.0.5", None, None), Some(2));
        assert_eq!(pick("10.0.0.200", None, None), Some(3), "longest prefix wins");
        assert_eq!(pick("10.0.0.200", Some(2), None), Some(2), "through the given interface");
        assert_eq!(pick("10.0.0.200", None, Some(24)), Some(2), "no longer than the given prefix");
        assert_eq!(pick("10.0.0.200", None, Some(16)), Some(4));
        assert_eq!(pick("10.0.0.200", None, Some(8)), None);
        assert_eq!(pick("10.0.9.9", None, None), Some(4));
        assert_eq!(pick("192.0.2.1", None, None), None, "the default route does not count");
        assert_eq!(pick("198.51.100.7", None, None), None, "nor a route through a gateway");
        assert_eq!(pick("203.0.113.7", None, None), None, "nor another table");
        assert_eq!(pick("2001:db8::7", None, None), Some(2));
        assert_eq!(pick("2001:db8:1::7", None, None), None);

        // Equal prefixes: the lower metric wins.
        let tie = vec![
            RouteMsg { priority: 100, ..route("10.0.0.0", 24, 7) },
            RouteMsg { priority: 10, ..route("10.0.0.0", 24, 8) },
            RouteMsg { priority: 50, ..route("10.0.0.0", 24, 9) },
        ];
        assert_eq!(pick_route(&tie, ip("10.0.0.1"), None, None).and_then(|r| r.oif), Some(8));
        // IPv4 routes must be scope link (findif's `ip route list ... scope link`).
        let global = vec![RouteMsg { scope: 0, ..route("10.0.0.0", 24, 7) }];
        assert_eq!(pick_route(&global, ip("10.0.0.1"), None, None), None);
    }
}
