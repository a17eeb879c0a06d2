//! Director connection sync for the nftables plane: what `ipvsadm --start-daemon
//! master|backup` does for IPVS.
//!
//! The state that keeps a client on its real server lives in the plane's dynamic sets
//! (`aff_…`): for LVS-DR the flow sets (client address and port → real server; conntrack never
//! sees a DR packet, see [`super`]) and, with `persistent`, the persistence sets (masked client
//! address → real server). The active director exports them ([`export`]); the transport
//! (halo's `dirsync` thread) carries them to the standby directors, which keep the newest
//! snapshot per table ([`stage`]). When a standby becomes the director, its first
//! [`NftDataPlane::apply`](super::nft::NftDataPlane::apply) — the one that creates the table —
//! adds the staged elements in the same transaction as the sets themselves, so there is no
//! moment at which the new director's table exists without them: an established client's next
//! packet finds its flow and goes to the same real server as before the failover.
//!
//! Each element keeps the time it had left on the old director, less the time since the
//! snapshot was taken; elements that would have expired are not added.
//!
//! LVS-NAT connections are held by conntrack, not by a halo set: the active director also
//! reads the conntrack entries of its NAT services (client → VIP:port, DNATed to a real
//! server: [`crate::conntrack::nat_conns`]) and sends them with the sets (`conns`); the new
//! director creates them over ctnetlink ([`crate::conntrack::create`]) as it creates its table
//! (in [`take_commands`]), with the DNAT binding to the same real server, so the connection's
//! next packet, either way, is rewritten as it was on the old director (what conntrackd does
//! for a firewall pair). An entry the kernel refuses (it tracks the connection already, ...)
//! is counted in [`restored`], never fatal.
//!
//! The same sets give LVS-DR services their connection counts and `-c` list ([`dr_flows`],
//! [`dr_count`], [`dr_connections`]): conntrack never sees a DR connection, but every one of
//! them is an element of its real server's flow set.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::Instant;

use serde_json::{json, Value};

use super::{Protocol, ServiceKey, DR_TCP_FLOW_TIMEOUT_S, DR_UDP_FLOW_TIMEOUT_S};
use crate::conntrack::{Conns, NatConn};

/// One dynamic set of a director table and its elements.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowSet {
    pub name: String,
    pub elems: Vec<FlowElem>,
}

/// One element: its key as `nft -j` writes it (an address, or `{"concat": [addr, port]}`) and
/// the seconds it had left when exported.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowElem {
    pub val: Value,
    pub expires_s: u64,
}

/// Total elements of `sets`.
pub fn count(sets: &[FlowSet]) -> usize {
    sets.iter().map(|s| s.elems.len()).sum()
}

/// The flow and persistence sets of one table listing (`nft -j list table ip T`).
pub fn export(listing: &Value) -> Vec<FlowSet> {
    let mut out = Vec::new();
    let objs = listing.get("nftables").and_then(Value::as_array).into_iter().flatten();
    for o in objs {
        let Some(set) = o.get("set") else { continue };
        let Some(name) = set.get("name").and_then(Value::as_str).filter(|n| n.starts_with("aff_")) else {
            continue;
        };
        let default_timeout = set.get("timeout").and_then(Value::as_u64).unwrap_or(0);
        let mut elems = Vec::new();
        for e in set.get("elem").and_then(Value::as_array).into_iter().flatten() {
            // With a timeout, nft writes {"elem": {"val": …, "expires": s}}; a bare value is an
            // element without one (never made by halo, kept with the set's timeout).
            let (val, expires_s) = match e.get("elem") {
                Some(inner) => (
                    inner.get("val").cloned().unwrap_or(Value::Null),
                    inner.get("expires").and_then(Value::as_u64).unwrap_or(default_timeout),
                ),
                None => (e.clone(), default_timeout),
            };
            if !val.is_null() && expires_s > 0 {
                elems.push(FlowElem { val, expires_s });
            }
        }
        out.push(FlowSet { name: name.to_string(), elems });
    }
    out
}

// ------------------------------------------------------------------------------------------
// DR connections from the flow sets

/// How long after its last packet a DR TCP flow still counts as `ActiveConn`.
///
/// A flow set element carries no TCP state (the director only sees the client's packets, and
/// the set only records when the last one passed: the element's timeout is refreshed by every
/// packet), so halo tells active from inactive by the time since that last packet: a TCP flow
/// that saw a packet within the last 120 s (IPVS's `FIN_WAIT`/`TIME_WAIT` timeout) is active
/// (state `ESTABLISHED` in `-c`), an older one is inactive (state `IDLE`, halo's own name:
/// closed, or open but quiet) until it expires [`DR_TCP_FLOW_TIMEOUT_S`] after its last
/// packet. So a closed connection stays in `ActiveConn` for up to 2 minutes and an open one
/// idle for longer than 2 minutes shows in `InActConn`. UDP flows are all `InActConn` (state
/// `UDP`), as IPVS counts them.
pub const DR_ACTIVE_IDLE_S: u64 = 120;

/// One element of a DR service's flow or persistence set, read back from the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct DrFlow {
    pub service: ServiceKey,
    pub real: SocketAddr,
    /// The client address and source port; for a persistence template (a DR service with
    /// `persistent`), the masked client address and port 0, as `ipvsadm -c` shows templates.
    pub client: SocketAddr,
    /// A persistence template: it binds a client to the real server, it is no connection
    /// (IPVS does not count templates in `ActiveConn`/`InActConn` either).
    pub template: bool,
    /// Seconds left before the element expires.
    pub expires_s: u64,
}

impl DrFlow {
    /// Seconds since the flow's last packet (its set's timeout less the time it has left).
    pub fn idle_s(&self) -> u64 {
        let timeout = match self.service.protocol {
            Protocol::Tcp => DR_TCP_FLOW_TIMEOUT_S,
            Protocol::Udp => DR_UDP_FLOW_TIMEOUT_S,
        };
        u64::from(timeout).saturating_sub(self.expires_s)
    }

    /// Counts in `ActiveConn` (see [`DR_ACTIVE_IDLE_S`]).
    pub fn active(&self) -> bool {
        !self.template && self.service.protocol == Protocol::Tcp && self.idle_s() < DR_ACTIVE_IDLE_S
    }

    /// The state column of `ipvsadm -L -c` (see [`DR_ACTIVE_IDLE_S`]).
    pub fn state(&self) -> &'static str {
        match (self.template, self.service.protocol) {
            (true, _) => "NONE",
            (false, Protocol::Udp) => "UDP",
            (false, Protocol::Tcp) if self.active() => "ESTABLISHED",
            (false, Protocol::Tcp) => "IDLE",
        }
    }
}

/// `aff_tcp_10_0_0_1_80_10_0_0_11_80` → (tcp:10.0.0.1:80, 10.0.0.11:80).
fn parse_set_name(name: &str) -> Option<(ServiceKey, SocketAddr)> {
    let rest = name.strip_prefix("aff_")?;
    super::nft::parse_counter_name(&format!("in_{rest}")).map(|(_, k, r)| (k, r))
}

/// An element's client: `{"concat": ["10.0.0.9", 40000]}` (a flow) or `"10.0.0.0"` (a
/// persistence template, port 0).
fn parse_client(val: &Value) -> Option<(SocketAddr, bool)> {
    let addr = |v: &Value| v.as_str().and_then(|a| a.parse::<IpAddr>().ok());
    if let Some(a) = addr(val) {
        return Some((SocketAddr::new(a, 0), true));
    }
    match val.get("concat").and_then(Value::as_array).map(Vec::as_slice) {
        Some([a, p]) => {
            let port = match p {
                Value::Number(n) => n.as_u64().and_then(|n| u16::try_from(n).ok()),
                Value::String(s) => s.parse().ok(),
                _ => None,
            }?;
            Some((SocketAddr::new(addr(a)?, port), false))
        }
        _ => None,
    }
}

/// The flows (and persistence templates) of the DR `services` in `sets` (as [`export`] reads
/// them from the table), ordered by service, real server and client. Sets of other services
/// (NAT persistence, services the caller did not name) and elements halo cannot read are
/// left out. A DR service with `persistent` has no flow set, only its persistence set (one
/// element per masked client address, not per connection): its connections are not counted
/// (`ActiveConn`/`InActConn` stay 0) and `-c` lists its templates only.
pub fn dr_flows(sets: &[FlowSet], services: &[ServiceKey]) -> Vec<DrFlow> {
    let mut out = Vec::new();
    for set in sets {
        let Some((service, real)) = parse_set_name(&set.name) else { continue };
        if !services.contains(&service) {
            continue;
        }
        for e in &set.elems {
            let Some((client, template)) = parse_client(&e.val) else { continue };
            if client.is_ipv4() != real.is_ipv4() {
                continue;
            }
            out.push(DrFlow { service, real, client, template, expires_s: e.expires_s });
        }
    }
    out.sort();
    out
}

/// `ActiveConn`/`InActConn` per (virtual service, real server) of `flows` (see
/// [`DR_ACTIVE_IDLE_S`]); templates are not counted.
pub fn dr_count(flows: &[DrFlow]) -> BTreeMap<(ServiceKey, SocketAddr), Conns> {
    let mut out: BTreeMap<(ServiceKey, SocketAddr), Conns> = BTreeMap::new();
    for f in flows.iter().filter(|f| !f.template) {
        let c = out.entry((f.service, f.real)).or_default();
        if f.active() {
            c.active = c.active.saturating_add(1);
        } else {
            c.inactive = c.inactive.saturating_add(1);
        }
    }
    out
}

/// `flows` as `ipvsadm -L -n -c` lists them (at most [`crate::conntrack::MAX_LISTED`]).
pub fn dr_connections(flows: &[DrFlow]) -> Vec<crate::ipvsadm::Connection> {
    flows
        .iter()
        .take(crate::conntrack::MAX_LISTED)
        .map(|f| crate::ipvsadm::Connection {
            protocol: if f.service.protocol == Protocol::Tcp { "TCP" } else { "UDP" }.to_string(),
            source: f.client,
            virtual_addr: f.service.socket(),
            destination: f.real,
            state: f.state().to_string(),
            expires: u32::try_from(f.expires_s).unwrap_or(u32::MAX),
            pe: None,
        })
        .collect()
}

struct Staged {
    at: Instant,
    sets: Vec<FlowSet>,
    conns: Vec<NatConn>,
}

/// Newest snapshot received per table, waiting for this node to become that table's director.
static STAGED: Mutex<BTreeMap<String, Staged>> = Mutex::new(BTreeMap::new());

fn staged() -> std::sync::MutexGuard<'static, BTreeMap<String, Staged>> {
    STAGED.lock().unwrap_or_else(|e| e.into_inner())
}

/// Keeps `sets` (a snapshot taken now, from another director) as what `table`'s next
/// creation starts with, replacing an older snapshot.
pub fn stage(table: &str, sets: Vec<FlowSet>) {
    stage_snapshot(table, Snapshot { sets, conns: Vec::new() });
}

/// [`stage`] with the snapshot's NAT connections too.
pub fn stage_snapshot(table: &str, snap: Snapshot) {
    staged().insert(table.to_string(), Staged { at: Instant::now(), sets: snap.sets, conns: snap.conns });
}

/// NAT connections staged for `table`.
pub fn staged_conns(table: &str) -> usize {
    staged().get(table).map_or(0, |s| s.conns.len())
}

/// What the creation of a table did with the NAT connections staged for it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Restored {
    pub staged: usize,
    /// Left out: they would have expired by now.
    pub expired: usize,
    pub created: crate::conntrack::Created,
    /// No netlink socket: nothing could be created.
    pub error: Option<String>,
}

static RESTORED: Mutex<BTreeMap<String, Restored>> = Mutex::new(BTreeMap::new());

/// Takes the report of the NAT connections restored when `table` was last created here (once:
/// the caller logs it).
pub fn restored(table: &str) -> Option<Restored> {
    RESTORED.lock().unwrap_or_else(|e| e.into_inner()).remove(table)
}

/// Creates the still-live `conns` (staged `age_s` seconds ago) in this namespace's conntrack.
fn restore_conns(table: &str, conns: &[NatConn], age_s: u64) {
    if conns.is_empty() {
        return;
    }
    let live: Vec<NatConn> = conns
        .iter()
        .filter(|c| u64::from(c.timeout_s) > age_s)
        .map(|c| NatConn { timeout_s: c.timeout_s - age_s as u32, ..*c })
        .collect();
    let mut r = Restored { staged: conns.len(), expired: conns.len() - live.len(), ..Restored::default() };
    match crate::conntrack::create(&live, std::time::Duration::from_secs(1)) {
        Ok(c) => r.created = c,
        Err(e) => r.error = Some(e.to_string()),
    }
    RESTORED.lock().unwrap_or_else(|e| e.into_inner()).insert(table.to_string(), r);
}

/// Drops the snapshot of `table` (its director is here now, or it is gone).
pub fn unstage(table: &str) {
    staged().remove(table);
}

/// Elements staged for `table` (for status and tests).
pub fn staged_count(table: &str) -> usize {
    staged().get(table).map_or(0, |s| count(&s.sets))
}

/// Names of the staged sets of `table` that hold elements.
pub fn staged_sets(table: &str) -> Vec<String> {
    staged()
        .get(table)
        .map(|s| s.sets.iter().filter(|x| !x.elems.is_empty()).map(|x| x.name.clone()).collect())
        .unwrap_or_default()
}

/// Takes the snapshot staged for `table` and returns the `add element` commands that put its
/// still-live elements into the sets `timeout_of` knows (set name → the set's timeout in
/// seconds; sets the new table does not have are skipped), and how many elements they add.
///
/// Called as the table is created (its first apply): the snapshot's NAT connections are
/// created in conntrack here and then, just before the transaction that creates the table, so
/// that they are in place when the table's first packet comes (see [`restored`]).
pub(crate) fn take_commands(table: &str, timeout_of: impl Fn(&str) -> Option<u64>) -> (Vec<Value>, usize) {
    let Some(s) = staged().remove(table) else { return (Vec::new(), 0) };
    let age = s.at.elapsed().as_secs();
    restore_conns(table, &s.conns, age);
    let mut cmds = Vec::new();
    let mut n = 0;
    for set in &s.sets {
        let Some(timeout) = timeout_of(&set.name) else { continue };
        // A set of the ip6 table is named after its IPv6 service; any other is the ip table's.
        let family = super::nft::family_of_set(&set.name).unwrap_or(super::nft::Family::V4);
        let elems: Vec<Value> = set
            .elems
            .iter()
            .filter(|e| e.expires_s > age)
            .map(|e| {
                let left = (e.expires_s - age).min(timeout.max(1));
                json!({"elem": {"val": e.val, "timeout": timeout.max(left), "expires": left}})
            })
            .collect();
        if elems.is_empty() {
            continue;
        }
        n += elems.len();
        cmds.push(json!({"add": {"element": {
            "family": family.name(), "table": table, "name": set.name, "elem": elems
        }}}));
    }
    (cmds, n)
}

// ------------------------------------------------------------------------------------------
// The sync message

/// One datagram of a sync round: `parts` datagrams, sent together every interval, carry one
/// table's whole snapshot (a snapshot replaces the previous one, so a lost round costs nothing
/// but freshness).
#[derive(Debug, Clone, PartialEq)]
pub struct SyncMsg {
    /// The sending node, as ha.cf names it.
    pub node: String,
    /// `syncid` (as `ipvsadm --syncid`): directors of different clusters on one segment
    /// ignore each other.
    pub syncid: u8,
    pub table: String,
    /// Grows with every round a sender sends (a receiver keeps only the newest complete one).
    pub round: u64,
    pub part: u32,
    pub parts: u32,
    pub sets: Vec<FlowSet>,
    /// NAT connections (written as `conns` only when there are some: a receiver that does not
    /// know them ignores the key).
    pub conns: Vec<NatConn>,
}

/// A whole round: the sets and the NAT connections of one table.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Snapshot {
    pub sets: Vec<FlowSet>,
    pub conns: Vec<NatConn>,
}

/// NAT connections per datagram: about 70 bytes each as JSON.
pub const CONNS_PER_PART: usize = 600;

/// The parts of one round: the parts of [`split`] then the NAT connections, [`CONNS_PER_PART`]
/// per part.
pub fn split_snapshot(sets: &[FlowSet], conns: &[NatConn]) -> Vec<Snapshot> {
    let mut out: Vec<Snapshot> =
        split(sets).into_iter().map(|sets| Snapshot { sets, conns: Vec::new() }).collect();
    out.extend(conns.chunks(CONNS_PER_PART).map(|c| Snapshot { sets: Vec::new(), conns: c.to_vec() }));
    out
}

fn conn_json(c: &NatConn) -> Value {
    let proto = match c.proto {
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
    };
    json!([proto, c.client.to_string(), c.vip.to_string(), c.real.to_string(), c.timeout_s])
}

fn conn_from_json(v: &Value) -> Option<NatConn> {
    let [proto, client, vip, real, t] = v.as_array()?.as_slice() else { return None };
    let addr = |v: &Value| v.as_str()?.parse::<SocketAddr>().ok();
    let proto = match proto.as_str()? {
        "tcp" => Protocol::Tcp,
        "udp" => Protocol::Udp,
        _ => return None,
    };
    let (client, vip, real) = (addr(client)?, addr(vip)?, addr(real)?);
    if client.port() == 0 || vip.port() == 0 || real.port() == 0 {
        return None;
    }
    if client.is_ipv4() != vip.is_ipv4() || vip.is_ipv4() != real.is_ipv4() {
        return None;
    }
    Some(NatConn { proto, client, vip, real, timeout_s: u32::try_from(t.as_u64()?).ok()? })
}

/// Elements per datagram: about 60 bytes each as JSON, so a datagram stays far below 64 KiB.
pub const ELEMS_PER_PART: usize = 600;

const MAC_LEN: usize = 32;

fn mac(key: &[u8], payload: &[u8]) -> [u8; MAC_LEN] {
    use hmac::{Hmac, KeyInit, Mac};
    let mut m = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(key).expect("HMAC takes any key length");
    m.update(payload);
    m.finalize().into_bytes().into()
}

/// `sets` cut into the parts of one round (at least one part, so an empty table is sent too:
/// the standby then knows the director has no flows).
pub fn split(sets: &[FlowSet]) -> Vec<Vec<FlowSet>> {
    let mut parts: Vec<Vec<FlowSet>> = vec![Vec::new()];
    let mut in_part = 0;
    for s in sets {
        let mut chunk = FlowSet { name: s.name.clone(), elems: Vec::new() };
        for e in &s.elems {
            if in_part == ELEMS_PER_PART {
                parts
                    .last_mut()
                    .expect("one part")
                    .push(std::mem::replace(&mut chunk, FlowSet { name: s.name.clone(), elems: Vec::new() }));
                parts.push(Vec::new());
                in_part = 0;
            }
            chunk.elems.push(e.clone());
            in_part += 1;
        }
        parts.last_mut().expect("one part").push(chunk);
    }
    parts
}

/// The datagram: HMAC-SHA256 (keyed with the cluster's authkeys secret) of the JSON payload,
/// then the payload.
pub fn encode(m: &SyncMsg, key: &[u8]) -> Vec<u8> {
    let sets: Vec<Value> = m
        .sets
        .iter()
        .map(|s| {
            let elems: Vec<Value> = s.elems.iter().map(|e| json!([e.val, e.expires_s])).collect();
            json!({"name": s.name, "elems": elems})
        })
        .collect();
    let mut payload = json!({
        "v": 1, "node": m.node, "syncid": m.syncid, "table": m.table,
        "round": m.round, "part": m.part, "parts": m.parts, "sets": sets
    });
    if !m.conns.is_empty() {
        payload["conns"] = Value::Array(m.conns.iter().map(conn_json).collect());
    }
    let payload = payload.to_string();
    let mut out = mac(key, payload.as_bytes()).to_vec();
    out.extend_from_slice(payload.as_bytes());
    out
}

/// Why a datagram was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drop {
    Short,
    BadMac,
    Malformed,
}

impl Drop {
    pub fn as_str(self) -> &'static str {
        match self {
            Drop::Short => "short",
            Drop::BadMac => "bad_mac",
            Drop::Malformed => "malformed",
        }
    }
}

/// The message of a datagram whose MAC one of `keys` verifies.
pub fn decode(buf: &[u8], keys: &[&[u8]]) -> Result<SyncMsg, Drop> {
    if buf.len() <= MAC_LEN {
        return Err(Drop::Short);
    }
    let (tag, payload) = buf.split_at(MAC_LEN);
    let ok = keys.iter().any(|k| {
        use hmac::{Hmac, KeyInit, Mac};
        let mut m = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(k).expect("HMAC takes any key length");
        m.update(payload);
        m.verify_slice(tag).is_ok()
    });
    if !ok {
        return Err(Drop::BadMac);
    }
    let v: Value = serde_json::from_slice(payload).map_err(|_| Drop::Malformed)?;
    let text = |k: &str| v.get(k).and_then(Value::as_str).map(String::from).ok_or(Drop::Malformed);
    let num = |k: &str| v.get(k).and_then(Value::as_u64).ok_or(Drop::Malformed);
    if num("v")? != 1 {
        return Err(Drop::Malformed);
    }
    let mut sets = Vec::new();
    for s in v.get("sets").and_then(Value::as_array).ok_or(Drop::Malformed)? {
        let name =
            s.get("name").and_then(Value::as_str).filter(|n| n.starts_with("aff_")).ok_or(Drop::Malformed)?;
        let mut elems = Vec::new();
        for e in s.get("elems").and_then(Value::as_array).ok_or(Drop::Malformed)? {
            match e.as_array().map(Vec::as_slice) {
                Some([val, exp]) if !val.is_null() => {
                    elems.push(FlowElem { val: val.clone(), expires_s: exp.as_u64().ok_or(Drop::Malformed)? })
                }
                _ => return Err(Drop::Malformed),
            }
        }
        sets.push(FlowSet { name: name.to_string(), elems });
    }
    let mut conns = Vec::new();
    match v.get("conns") {
        None => {}
        Some(Value::Array(a)) => {
            for c in a {
                conns.push(conn_from_json(c).ok_or(Drop::Malformed)?);
            }
        }
        Some(_) => return Err(Drop::Malformed),
    }
    let (part, parts) = (num("part")?, num("parts")?);
    if parts == 0 || part >= parts || parts > 10_000 {
        return Err(Drop::Malformed);
    }
    let table = text("table")?;
    if table.is_empty() || table.len() > 64 || !table.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(Drop::Malformed);
    }
    Ok(SyncMsg {
        node: text("node")?,
        syncid: u8::try_from(num("syncid")?).map_err(|_| Drop::Malformed)?,
        table,
        round: num("round")?,
        part: part as u32,
        parts: parts as u32,
        sets,
        conns,
    })
}

/// Puts a round's parts back together on the receiving side: per (sender, table), the parts
/// of the newest round; a complete round is returned once.
#[derive(Default)]
pub struct Assembler {
    /// Per (sender, table): the round being assembled, its parts so far, and how many it has.
    pending: BTreeMap<(String, String), Round>,
}

type Round = (u64, BTreeMap<u32, Snapshot>, u32);

impl Assembler {
    /// Adds one part; returns the whole snapshot when this part completed its round.
    pub fn add(&mut self, m: SyncMsg) -> Option<Snapshot> {
        let key = (m.node.clone(), m.table.clone());
        let e = self.pending.entry(key.clone()).or_insert((m.round, BTreeMap::new(), m.parts));
        if m.round < e.0 {
            return None;
        }
        if m.round > e.0 || m.parts != e.2 {
            *e = (m.round, BTreeMap::new(), m.parts);
        }
        e.1.insert(m.part, Snapshot { sets: m.sets, conns: m.conns });
        if e.1.len() as u32 != e.2 {
            return None;
        }
        let (_, parts, _) = self.pending.remove(&key).expect("just seen");
        // Parts of one set may be split over datagrams: merge them by name.
        let mut merged: Vec<FlowSet> = Vec::new();
        let mut conns = Vec::new();
        for p in parts.into_values() {
            conns.extend(p.conns);
            for s in p.sets {
                match merged.iter_mut().find(|m| m.name == s.name) {
                    Some(m) => m.elems.extend(s.elems),
                    None => merged.push(s),
                }
            }
        }
        Some(Snapshot { sets: merged, conns })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;

    fn sock4(ip: Ipv4Addr, port: u16) -> SocketAddr {
        SocketAddr::from((ip, port))
    }

    const LISTING: &str = r#"{"nftables": [{"metainfo": {"version": "1.0.6"}},
      {"table": {"family": "ip", "name": "t", "handle": 1}},
      {"set": {"family": "ip", "name": "aff_tcp_x_y", "table": "t", "type": ["ipv4_addr", "inet_service"],
               "flags": ["timeout"], "timeout": 300,
               "elem": [{"elem": {"val": {"concat": ["10.0.0.9", 40000]}, "expires": 299}},
                        {"elem": {"val": {"concat": ["10.0.0.9", 40001]}, "expires": 0}}]}},
      {"set": {"family": "ip", "name": "other", "table": "t", "type": "ipv4_addr", "elem": ["1.2.3.4"]}},
      {"set": {"family": "ip", "name": "aff_tcp_x_z", "table": "t", "type": "ipv4_addr", "timeout": 60}}]}"#;

    fn snapshot(n: usize) -> Vec<FlowSet> {
        let elems = (0..n)
            .map(|i| FlowElem { val: json!({"concat": ["10.0.0.9", 1000 + i]}), expires_s: 100 + i as u64 })
            .collect();
        vec![
            FlowSet { name: "aff_a".into(), elems },
            FlowSet { name: "aff_b".into(), elems: vec![FlowElem { val: json!("10.0.0.0"), expires_s: 7 }] },
        ]
    }

    fn conns(n: usize) -> Vec<NatConn> {
        (0..n)
            .map(|i| NatConn {
                proto: if i % 2 == 0 { Protocol::Tcp } else { Protocol::Udp },
                client: sock4(Ipv4Addr::new(10, 81, 1, 9), 30000 + i as u16),
                vip: "10.81.1.100:7000".parse().unwrap(),
                real: sock4(Ipv4Addr::new(10, 81, 0, 11 + (i % 2) as u8), 7000),
                timeout_s: 431_000 + i as u32,
            })
            .collect()
    }

    #[test]
    fn flows_sync_round_trips_through_parts_and_mac() {
        let sets = snapshot(ELEMS_PER_PART * 2 + 5);
        let nat = conns(CONNS_PER_PART + 3);
        let parts = split_snapshot(&sets, &nat);
        assert_eq!(parts.len(), 5, "three parts of set elements, two of NAT connections");
        let mut asm = Assembler::default();
        let mut done = None;
        // Out of order, with a duplicate: still one snapshot, equal to what was sent.
        for i in [4usize, 2, 0, 0, 3, 1] {
            let m = SyncMsg {
                node: "n1".into(),
                syncid: 3,
                table: "halo_lb".into(),
                round: 9,
                part: i as u32,
                parts: parts.len() as u32,
                sets: parts[i].sets.clone(),
                conns: parts[i].conns.clone(),
            };
            let wire = encode(&m, b"secret");
            assert!(wire.len() < 60_000, "{}", wire.len());
            let back = decode(&wire, &[b"other", b"secret"]).unwrap();
            assert_eq!(back, m);
            if let Some(s) = asm.add(back) {
                done = Some(s);
            }
        }
        assert_eq!(done.unwrap(), Snapshot { sets, conns: nat });
        assert_eq!(split(&[]).len(), 1, "an empty table is still one datagram");
        assert_eq!(split_snapshot(&[], &[]).len(), 1);
    }

    #[test]
    fn flows_sync_nat_records_are_compatible_and_checked() {
        let m = SyncMsg {
            node: "n1".into(),
            syncid: 0,
            table: "halo_lb".into(),
            round: 1,
            part: 0,
            parts: 1,
            sets: Vec::new(),
            conns: conns(2),
        };
        let wire = encode(&m, b"k");
        let text = std::str::from_utf8(&wire[MAC_LEN..]).unwrap();
        assert!(
            text.contains(r#""conns":[["tcp","10.81.1.9:30000","10.81.1.100:7000","10.81.0.11:7000",431000],["udp","10.81.1.9:30001","10.81.1.100:7000","10.81.0.12:7000",431001]]"#),
            "{text}"
        );
        // Without NAT connections the datagram is what a sender without them wrote.
        let plain = encode(&SyncMsg { conns: Vec::new(), ..m.clone() }, b"k");
        assert!(!std::str::from_utf8(&plain[MAC_LEN..]).unwrap().contains("conns"));
        assert_eq!(decode(&plain, &[b"k"]).unwrap().conns, Vec::new());
        let bad = |conns: &str| {
            let payload = format!(
                r#"{{"v":1,"node":"n","syncid":0,"table":"t","round":1,"part":0,"parts":1,"sets":[],"conns":{conns}}}"#
            );
            let mut w = mac(b"k", payload.as_bytes()).to_vec();
            w.extend_from_slice(payload.as_bytes());
            decode(&w, &[b"k"])
        };
        assert!(bad(r#"[["udp","1.2.3.4:5","1.2.3.5:6","1.2.3.6:7",9]]"#).is_ok());
        for c in [
            r#"{}"#,
            r#"[["sctp","1.2.3.4:5","1.2.3.5:6","1.2.3.6:7",9]]"#,
            r#"[["tcp","1.2.3.4","1.2.3.5:6","1.2.3.6:7",9]]"#,
            r#"[["tcp","1.2.3.4:0","1.2.3.5:6","1.2.3.6:7",9]]"#,
            r#"[["tcp","1.2.3.4:5","1.2.3.5:6","1.2.3.6:70000",9]]"#,
            r#"[["tcp","1.2.3.4:5","1.2.3.5:6","1.2.3.6:7",4294967296]]"#,
            r#"[["tcp","1.2.3.4:5","1.2.3.5:6","1.2.3.6:7",-1]]"#,
            r#"[["tcp","1.2.3.4:5","1.2.3.5:6","1.2.3.6:7"]]"#,
            r#"[["tcp","[::1]:5","1.2.3.5:6","1.2.3.6:7",9]]"#,
        ] {
            assert_eq!(bad(c), Err(Drop::Malformed), "{c}");
        }
    }

    #[test]
    fn flows_sync_refuses_forged_and_malformed_datagrams() {
        let m = SyncMsg {
            node: "n1".into(),
            syncid: 0,
            table: "halo_lb".into(),
            round: 1,
            part: 0,
            parts: 1,
            sets: snapshot(2),
            conns: Vec::new(),
        };
        let mut wire = encode(&m, b"secret");
        assert_eq!(decode(&wire, &[b"wrong"]), Err(Drop::BadMac));
        assert_eq!(decode(&wire[..10], &[b"secret"]), Err(Drop::Short));
        let last = wire.len() - 1;
        wire[last] ^= 1;
        assert_eq!(decode(&wire, &[b"secret"]), Err(Drop::BadMac));
        let bad = |payload: &str| {
            let mut w = mac(b"k", payload.as_bytes()).to_vec();
            w.extend_from_slice(payload.as_bytes());
            decode(&w, &[b"k"])
        };
        assert_eq!(bad("not json"), Err(Drop::Malformed));
        let base =
            r#"{"v":1,"node":"n","syncid":0,"table":"TABLE","round":1,"part":PART,"parts":1,"sets":[]}"#;
        assert!(bad(&base.replace("TABLE", "halo_lb").replace("PART", "0")).is_ok());
        assert_eq!(bad(&base.replace("TABLE", "x; flush").replace("PART", "0")), Err(Drop::Malformed));
        assert_eq!(bad(&base.replace("TABLE", "halo_lb").replace("PART", "1")), Err(Drop::Malformed));
        // An older round never replaces a newer one half-way.
        let mut asm = Assembler::default();
        let two = |round, part| SyncMsg { round, part, parts: 2, sets: Vec::new(), ..m.clone() };
        assert!(asm.add(two(5, 0)).is_none());
        assert!(asm.add(two(4, 1)).is_none());
        assert!(asm.add(two(5, 1)).is_some());
    }

    #[test]
    fn flows_export_reads_only_halo_sets_with_their_time_left() {
        let v: Value = serde_json::from_str(LISTING).unwrap();
        let sets = export(&v);
        assert_eq!(sets.len(), 2, "{sets:?}");
        assert_eq!(sets[0].name, "aff_tcp_x_y");
        assert_eq!(
            sets[0].elems,
            vec![FlowElem { val: json!({"concat": ["10.0.0.9", 40000]}), expires_s: 299 }]
        );
        assert!(sets[1].elems.is_empty());
        assert_eq!(count(&sets), 1);
    }

    /// A table with two DR services (one TCP, one UDP), a persistent DR one and a NAT
    /// persistence set, as `nft -j list table` writes it.
    const DR_LISTING: &str = r#"{"nftables": [{"metainfo": {"version": "1.0.6"}},
      {"table": {"family": "ip", "name": "t", "handle": 1}},
      {"set": {"family": "ip", "name": "aff_tcp_10_0_0_1_80_10_0_0_11_80", "table": "t",
               "type": ["ipv4_addr", "inet_service"], "flags": ["timeout"], "timeout": 900,
               "elem": [{"elem": {"val": {"concat": ["10.0.0.9", 40000]}, "expires": 899}},
                        {"elem": {"val": {"concat": ["10.0.0.9", 40001]}, "expires": 781}},
                        {"elem": {"val": {"concat": ["10.0.0.8", 5000]}, "expires": 779}}]}},
      {"set": {"family": "ip", "name": "aff_tcp_10_0_0_1_80_10_0_0_12_80", "table": "t",
               "type": ["ipv4_addr", "inet_service"], "flags": ["timeout"], "timeout": 900,
               "elem": [{"elem": {"val": {"concat": ["10.0.0.7", "40002"]}, "expires": 900}},
                        {"elem": {"val": {"concat": ["10.0.0.7", 70000]}, "expires": 900}},
                        {"elem": {"val": {"concat": ["not an address", 1]}, "expires": 900}}]}},
      {"set": {"family": "ip", "name": "aff_udp_10_0_0_1_53_10_0_0_11_53", "table": "t",
               "type": ["ipv4_addr", "inet_service"], "flags": ["timeout"], "timeout": 300,
               "elem": [{"elem": {"val": {"concat": ["10.0.0.9", 3333]}, "expires": 299}}]}},
      {"set": {"family": "ip", "name": "aff_tcp_10_0_0_2_443_10_0_0_11_443", "table": "t",
               "type": "ipv4_addr", "flags": ["timeout"], "timeout": 600,
               "elem": [{"elem": {"val": "10.0.0.0", "expires": 590}}]}},
      {"set": {"family": "ip", "name": "aff_tcp_10_0_0_3_80_10_0_0_21_8080", "table": "t",
               "type": "ipv4_addr", "flags": ["timeout"], "timeout": 600,
               "elem": [{"elem": {"val": "10.0.0.0", "expires": 590}}]}},
      {"set": {"family": "ip", "name": "aff_bogus", "table": "t", "type": "ipv4_addr",
               "elem": [{"elem": {"val": "10.0.0.0", "expires": 5}}]}}]}"#;

    fn key(protocol: Protocol, vip: &str, port: u16) -> ServiceKey {
        ServiceKey { protocol, vip: vip.parse().unwrap(), port, fwmark: 0 }
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn flows_dr_counts_per_real_server_from_the_flow_sets() {
        let v: Value = serde_json::from_str(DR_LISTING).unwrap();
        let web = key(Protocol::Tcp, "10.0.0.1", 80);
        let dns = key(Protocol::Udp, "10.0.0.1", 53);
        let tls = key(Protocol::Tcp, "10.0.0.2", 443);
        // The NAT service 10.0.0.3:80 is not named: its persistence set is no DR flow.
        let flows = dr_flows(&export(&v), &[web, dns, tls]);
        assert_eq!(flows.len(), 6, "{flows:#?}");
        let counts = dr_count(&flows);
        // r1: one flow with a packet 1 s ago, one 119 s ago (active), one 121 s ago (idle).
        assert_eq!(counts[&(web, sa("10.0.0.11:80"))], Conns { active: 2, inactive: 1 });
        // r2: the port written as a string is read; 70000 and a bad address are skipped.
        assert_eq!(counts[&(web, sa("10.0.0.12:80"))], Conns { active: 1, inactive: 0 });
        // UDP: always inactive, as IPVS counts it.
        assert_eq!(counts[&(dns, sa("10.0.0.11:53"))], Conns { active: 0, inactive: 1 });
        // A persistence template is listed but not counted.
        assert!(!counts.contains_key(&(tls, sa("10.0.0.11:443"))), "{counts:?}");
        assert_eq!(counts.len(), 3);
        let idle = flows.iter().find(|f| f.client == sa("10.0.0.8:5000")).unwrap();
        assert_eq!((idle.idle_s(), idle.state()), (121, "IDLE"));
    }

    #[test]
    fn flows_dr_connections_list_like_ipvsadm_c() {
        let v: Value = serde_json::from_str(DR_LISTING).unwrap();
        let web = key(Protocol::Tcp, "10.0.0.1", 80);
        let dns = key(Protocol::Udp, "10.0.0.1", 53);
        let tls = key(Protocol::Tcp, "10.0.0.2", 443);
        let conns = dr_connections(&dr_flows(&export(&v), &[web, dns, tls]));
        let model = crate::ipvsadm::Model { connections: conns, ..Default::default() };
        let text = crate::ipvsadm::list_conn(&model);
        let expected = "IPVS connection entries
pro expire state       source             virtual            destination
TCP 12:59  IDLE        10.0.0.8:5000      10.0.0.1:80        10.0.0.11:80
TCP 14:59  ESTABLISHED 10.0.0.9:40000     10.0.0.1:80        10.0.0.11:80
TCP 13:01  ESTABLISHED 10.0.0.9:40001     10.0.0.1:80        10.0.0.11:80
TCP 15:00  ESTABLISHED 10.0.0.7:40002     10.0.0.1:80        10.0.0.12:80
TCP 09:50  NONE        10.0.0.0:0         10.0.0.2:443       10.0.0.11:443
UDP 04:59  UDP         10.0.0.9:3333      10.0.0.1:53        10.0.0.11:53
";
        assert_eq!(text, expected);
        assert!(dr_flows(&export(&v), &[]).is_empty(), "no DR service, no flows");
    }

    #[test]
    fn flows_staged_snapshot_is_taken_once_into_known_sets() {
        let v: Value = serde_json::from_str(LISTING).unwrap();
        let mut sets = export(&v);
        sets.push(FlowSet {
            name: "aff_gone".into(),
            elems: vec![FlowElem { val: json!("10.1.1.1"), expires_s: 10 }],
        });
        stage("flows_unit", sets);
        assert_eq!(staged_count("flows_unit"), 2);
        let (cmds, n) = take_commands("flows_unit", |s| (s != "aff_gone").then_some(300));
        assert_eq!(n, 1);
        assert_eq!(cmds.len(), 1);
        let add = &cmds[0]["add"]["element"];
        assert_eq!(add["name"], "aff_tcp_x_y");
        assert_eq!(add["elem"][0]["elem"]["expires"], 299);
        assert_eq!(add["elem"][0]["elem"]["timeout"], 300);
        assert_eq!(take_commands("flows_unit", |_| Some(300)).1, 0, "taken once");
    }
}
