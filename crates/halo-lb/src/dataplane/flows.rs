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
//! Not covered: LVS-NAT connections without persistence are held by conntrack alone, not by a
//! halo set, so they are not synced (conntrackd's job; see the issue notes).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Instant;

use serde_json::{json, Value};

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

struct Staged {
    at: Instant,
    sets: Vec<FlowSet>,
}

/// Newest snapshot received per table, waiting for this node to become that table's director.
static STAGED: Mutex<BTreeMap<String, Staged>> = Mutex::new(BTreeMap::new());

fn staged() -> std::sync::MutexGuard<'static, BTreeMap<String, Staged>> {
    STAGED.lock().unwrap_or_else(|e| e.into_inner())
}

/// Keeps `sets` (a snapshot taken now, from another director) as what `table`'s next
/// creation starts with, replacing an older snapshot.
pub fn stage(table: &str, sets: Vec<FlowSet>) {
    staged().insert(table.to_string(), Staged { at: Instant::now(), sets });
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
pub(crate) fn take_commands(table: &str, timeout_of: impl Fn(&str) -> Option<u64>) -> (Vec<Value>, usize) {
    let Some(s) = staged().remove(table) else { return (Vec::new(), 0) };
    let age = s.at.elapsed().as_secs();
    let mut cmds = Vec::new();
    let mut n = 0;
    for set in &s.sets {
        let Some(timeout) = timeout_of(&set.name) else { continue };
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
            "family": "ip", "table": table, "name": set.name, "elem": elems
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
    let payload = json!({
        "v": 1, "node": m.node, "syncid": m.syncid, "table": m.table,
        "round": m.round, "part": m.part, "parts": m.parts, "sets": sets
    })
    .to_string();
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
    })
}

/// Puts a round's parts back together on the receiving side: per (sender, table), the parts
/// of the newest round; a complete round is returned once.
#[derive(Default)]
pub struct Assembler {
    /// Per (sender, table): the round being assembled, its parts so far, and how many it has.
    pending: BTreeMap<(String, String), Round>,
}

type Round = (u64, BTreeMap<u32, Vec<FlowSet>>, u32);

impl Assembler {
    /// Adds one part; returns the whole snapshot when this part completed its round.
    pub fn add(&mut self, m: SyncMsg) -> Option<Vec<FlowSet>> {
        let key = (m.node.clone(), m.table.clone());
        let e = self.pending.entry(key.clone()).or_insert((m.round, BTreeMap::new(), m.parts));
        if m.round < e.0 {
            return None;
        }
        if m.round > e.0 || m.parts != e.2 {
            *e = (m.round, BTreeMap::new(), m.parts);
        }
        e.1.insert(m.part, m.sets);
        if e.1.len() as u32 != e.2 {
            return None;
        }
        let (_, parts, _) = self.pending.remove(&key).expect("just seen");
        // Parts of one set may be split over datagrams: merge them by name.
        let mut merged: Vec<FlowSet> = Vec::new();
        for s in parts.into_values().flatten() {
            match merged.iter_mut().find(|m| m.name == s.name) {
                Some(m) => m.elems.extend(s.elems),
                None => merged.push(s),
            }
        }
        Some(merged)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn flows_sync_round_trips_through_parts_and_mac() {
        let sets = snapshot(ELEMS_PER_PART * 2 + 5);
        let parts = split(&sets);
        assert_eq!(parts.len(), 3);
        let mut asm = Assembler::default();
        let mut done = None;
        // Out of order, with a duplicate: still one snapshot, equal to what was sent.
        for i in [2usize, 0, 0, 1] {
            let m = SyncMsg {
                node: "n1".into(),
                syncid: 3,
                table: "halo_lb".into(),
                round: 9,
                part: i as u32,
                parts: parts.len() as u32,
                sets: parts[i].clone(),
            };
            let wire = encode(&m, b"secret");
            assert!(wire.len() < 60_000, "{}", wire.len());
            let back = decode(&wire, &[b"other", b"secret"]).unwrap();
            assert_eq!(back, m);
            if let Some(s) = asm.add(back) {
                done = Some(s);
            }
        }
        assert_eq!(done.unwrap(), sets);
        assert_eq!(split(&[]).len(), 1, "an empty table is still one datagram");
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
