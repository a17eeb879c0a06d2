//! Director connection sync (ha.cf `lvs_sync_daemon`): what `ipvsadm --start-daemon master`
//! and `--start-daemon backup` do for IPVS, for halo's nftables director.
//!
//! One thread per node, whatever the node's role: every `interval` it lists the director
//! tables (`ip halo_lb*`) this node has. For each one it holds (it is that table's director)
//! it exports the flow and persistence sets and multicasts them, signed with the authkeys
//! secret, to `group:port` on the sync interface. From the datagrams of other nodes it keeps
//! the newest complete snapshot of each table it does *not* hold, staged in
//! [`halo_lb::dataplane::flows`]; when this node becomes that table's director, the apply that
//! creates the table adds them in the same transaction, so established (DR) and persistent
//! clients keep their real server across the failover.
//!
//! LVS-NAT connections live in the kernel's conntrack, not in a set: the director also dumps
//! conntrack and sends the entries of its NAT services (client → VIP:port DNATed to a real
//! server) with the sets; the new director creates them over ctnetlink, with their DNAT
//! binding, as it creates the table (see [`halo_lb::dataplane::flows`]), and logs once how many
//! it created and why any failed.
//!
//! A forged, malformed or foreign-syncid datagram is dropped and counted, never acted on.

use halo_config::LvsSync;
use halo_host::{Level, Logger};
use halo_lb::dataplane::flows::{self, Assembler, SyncMsg};
use halo_lb::dataplane::nft::{table_families, Family, Nft, NftDataPlane, DEFAULT_TABLE};
use socket2::{Domain, InterfaceIndexOrAddress, Protocol, SockAddr, Socket, Type};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Counters, for `/metrics` and the tests.
#[derive(Default)]
pub struct Stats {
    pub sent_datagrams: AtomicU64,
    pub sent_elements: AtomicU64,
    pub received_snapshots: AtomicU64,
    pub dropped_bad_mac: AtomicU64,
    pub dropped_malformed: AtomicU64,
    pub dropped_foreign_syncid: AtomicU64,
    /// NAT connections sent, created here on becoming the director, refused by the kernel.
    pub sent_nat_conns: AtomicU64,
    pub restored_nat_conns: AtomicU64,
    pub failed_nat_conns: AtomicU64,
}

pub static STATS: Stats = Stats {
    sent_datagrams: AtomicU64::new(0),
    sent_elements: AtomicU64::new(0),
    received_snapshots: AtomicU64::new(0),
    dropped_bad_mac: AtomicU64::new(0),
    dropped_malformed: AtomicU64::new(0),
    dropped_foreign_syncid: AtomicU64::new(0),
    sent_nat_conns: AtomicU64::new(0),
    restored_nat_conns: AtomicU64::new(0),
    failed_nat_conns: AtomicU64::new(0),
};

/// The signing keys of authkeys, the active one first; empty when authkeys has only `crc`
/// (no secret to sign with: sync then stays off).
pub fn keys(model: &halo_config::Model) -> Vec<Vec<u8>> {
    let ak = &model.authkeys;
    let mut out: Vec<Vec<u8>> = Vec::new();
    let active = ak.keys.iter().filter(|k| k.index == ak.active);
    for k in active.chain(ak.keys.iter().filter(|k| k.index != ak.active)) {
        if let Some(s) = &k.key {
            out.push(s.as_bytes().to_vec());
        }
    }
    out
}

/// Where the kernel has IPVS (the director's `dataplane=auto` picks it), its own sync daemons
/// carry the connections, as `ipvsadm --start-daemon master` and `--start-daemon backup` on
/// every director: both run on every node (the kernel allows both states at once), with the
/// interface, sync id, group and port of `lvs_sync_daemon`; a master sends the connections of
/// the director it holds, a backup takes the others'. Returns false when the kernel has no
/// IPVS.
fn start_ipvs_daemons(cfg: &LvsSync, logger: &Logger) -> bool {
    use halo_lb::dataplane::ipvs::{available, Daemon, IpvsDataPlane};
    if !available() {
        return false;
    }
    let plane = IpvsDataPlane::new();
    for master in [true, false] {
        let mut d = Daemon::new(master, &cfg.interface, u32::from(cfg.syncid));
        d.group = Some(std::net::IpAddr::V4(cfg.group));
        d.port = Some(cfg.port);
        let state = if master { "master" } else { "backup" };
        match plane.start_daemon(&d) {
            Ok(_) => logger.log(
                Level::Info,
                &format!(
                    "director sync: IPVS's {state} sync daemon runs on {} (syncid {}, {}:{})",
                    cfg.interface, cfg.syncid, cfg.group, cfg.port
                ),
            ),
            Err(e) => {
                logger.log(Level::Error, &format!("director sync: starting IPVS's {state} sync daemon: {e}"))
            }
        }
    }
    logger.log(
        Level::Info,
        "director sync: this kernel has IPVS, whose sync daemons carry the connections; a director \
         forced to dataplane=nftables here is not synced",
    );
    true
}

/// Starts the sync thread (or, where the kernel has IPVS, its sync daemons). Errors (no such
/// interface yet, no key) are logged and retried or reported; they never stop the daemon.
pub fn spawn(cfg: LvsSync, node: String, keys: Vec<Vec<u8>>, logger: Arc<Logger>) {
    if start_ipvs_daemons(&cfg, &logger) {
        return;
    }
    if keys.is_empty() {
        logger.log(
            Level::Error,
            &format!(
                "lvs_sync_daemon (ha.cf line {}): authkeys has no md5, sha1 or sha256 key to sign the sync \
                 messages with; director connection sync is off",
                cfg.line
            ),
        );
        return;
    }
    let log = Arc::clone(&logger);
    let spawned = std::thread::Builder::new().name("halo-dirsync".into()).spawn(move || {
        let mut delay = Duration::from_secs(1);
        loop {
            match open(&cfg) {
                Ok(sock) => {
                    logger.log(
                        Level::Info,
                        &format!(
                            "director sync: on {} group {}:{} syncid {}, every {} ms",
                            cfg.interface, cfg.group, cfg.port, cfg.syncid, cfg.interval_ms
                        ),
                    );
                    Worker::new(cfg.clone(), node.clone(), keys.clone(), Arc::clone(&logger), sock).run();
                }
                Err(e) => {
                    logger
                        .log(Level::Warn, &format!("director sync: {e}; retrying in {} s", delay.as_secs()));
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(Duration::from_secs(30));
                }
            }
        }
    });
    if let Err(e) = spawned {
        log.log(Level::Error, &format!("director sync: cannot start its thread: {e}"));
    }
}

fn interface_v4(name: &str) -> Result<(u32, Ipv4Addr), String> {
    let index = nix::net::if_::if_nametoindex(name).map_err(|_| format!("no interface named {name}"))?;
    let addrs = nix::ifaddrs::getifaddrs().map_err(|e| format!("listing addresses: {e}"))?;
    for a in addrs.filter(|a| a.interface_name == name) {
        if let Some(sin) = a.address.as_ref().and_then(|s| s.as_sockaddr_in()) {
            return Ok((index, sin.ip()));
        }
    }
    Err(format!("interface {name} has no IPv4 address"))
}

fn open(cfg: &LvsSync) -> Result<Socket, String> {
    let (index, addr) = interface_v4(&cfg.interface)?;
    let s =
        Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).map_err(|e| format!("socket: {e}"))?;
    s.set_reuse_address(true).map_err(|e| format!("SO_REUSEADDR: {e}"))?;
    let bind = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, cfg.port);
    s.bind(&SockAddr::from(bind)).map_err(|e| format!("binding UDP port {}: {e}", cfg.port))?;
    s.join_multicast_v4_n(&cfg.group, &InterfaceIndexOrAddress::Index(index))
        .map_err(|e| format!("joining {} on {}: {e}", cfg.group, cfg.interface))?;
    s.set_multicast_if_v4(&addr).map_err(|e| format!("IP_MULTICAST_IF {addr}: {e}"))?;
    s.set_multicast_loop_v4(false).map_err(|e| format!("IP_MULTICAST_LOOP: {e}"))?;
    s.set_multicast_ttl_v4(1).map_err(|e| format!("IP_MULTICAST_TTL: {e}"))?;
    s.set_read_timeout(Some(Duration::from_millis(50))).map_err(|e| format!("SO_RCVTIMEO: {e}"))?;
    Ok(s)
}

struct Worker {
    cfg: LvsSync,
    node: String,
    keys: Vec<Vec<u8>>,
    logger: Arc<Logger>,
    sock: Socket,
    nft: Nft,
    round: u64,
    asm: Assembler,
    /// Tables this node held at the last tick.
    held: BTreeSet<String>,
    /// Per staged table: elements staged and when that was last logged.
    logged: BTreeMap<String, (usize, Instant)>,
    /// The last conntrack dump failed (logged once until it works again).
    conntrack_failing: bool,
}

impl Worker {
    fn new(cfg: LvsSync, node: String, keys: Vec<Vec<u8>>, logger: Arc<Logger>, sock: Socket) -> Worker {
        // Rounds grow across restarts too (a receiver keeps the newest round per sender).
        let round = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        Worker {
            cfg,
            node,
            keys,
            logger,
            sock,
            nft: Nft::new(),
            round,
            asm: Assembler::default(),
            held: BTreeSet::new(),
            logged: BTreeMap::new(),
            conntrack_failing: false,
        }
    }

    fn run(&mut self) {
        let interval = Duration::from_millis(self.cfg.interval_ms);
        let mut next = Instant::now();
        let mut buf = vec![std::mem::MaybeUninit::<u8>::uninit(); 65536];
        loop {
            if Instant::now() >= next {
                self.tick();
                next = Instant::now() + interval;
            }
            match self.sock.recv(&mut buf) {
                Ok(n) => {
                    // SAFETY: recv initialised the first n bytes.
                    let data: Vec<u8> = buf[..n].iter().map(|b| unsafe { b.assume_init() }).collect();
                    self.receive(&data);
                }
                Err(e)
                    if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.logger.log(Level::Warn, &format!("director sync: receiving: {e}"));
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }

    /// The director tables of this node, with the families each exists in (`ip` always
    /// while the director runs; `ip6` too while it has IPv6 services): one `nft` run.
    fn local_tables(&self) -> Result<BTreeMap<String, Vec<Family>>, String> {
        let out = self.nft.run(&["-j", "list", "tables"], None).map_err(|e| e.to_string())?;
        let v: serde_json::Value = serde_json::from_str(&out).map_err(|e| e.to_string())?;
        let mut tables: BTreeMap<String, Vec<Family>> = BTreeMap::new();
        for (name, family) in table_families(&v) {
            if name == DEFAULT_TABLE || name.starts_with(&format!("{DEFAULT_TABLE}_")) {
                tables.entry(name).or_default().push(family);
            }
        }
        // A director's table is its ip one: an ip6 table alone is none of a running director's.
        tables.retain(|_, f| f.contains(&Family::V4));
        Ok(tables)
    }

    fn tick(&mut self) {
        let tables = match self.local_tables() {
            Ok(t) => t,
            Err(e) => {
                self.logger.log(Level::Warn, &format!("director sync: listing nft tables: {e}"));
                return;
            }
        };
        let names: BTreeSet<String> = tables.keys().cloned().collect();
        for t in names.difference(&self.held) {
            self.logger.log(Level::Info, &format!("director sync: master for table ip {t}"));
        }
        for t in self.held.difference(&names) {
            self.logger.log(Level::Info, &format!("director sync: table ip {t} gone here; backup for it"));
        }
        self.held = names;
        for table in tables.keys() {
            self.log_restored(table);
        }
        let dest = SockAddr::from(SocketAddrV4::new(self.cfg.group, self.cfg.port));
        // One conntrack dump per tick for every table held (only when one is).
        let mut entries: Option<Vec<halo_lb::conntrack::Entry>> = None;
        for (table, families) in &tables {
            flows::unstage(table);
            let plane = NftDataPlane::new(self.nft.clone()).with_table(table.clone());
            let (sets, reals) = match plane.export_sync_of(families) {
                Ok(x) => (x.sets, x.reals),
                Err(e) => {
                    self.logger.log(Level::Warn, &format!("director sync: reading table ip {table}: {e}"));
                    continue;
                }
            };
            let conns = self.nat_conns(&reals, &mut entries);
            self.round += 1;
            let parts = flows::split_snapshot(&sets, &conns);
            let n = parts.len() as u32;
            for (i, p) in parts.into_iter().enumerate() {
                let elems = flows::count(&p.sets) as u64;
                let nat = p.conns.len() as u64;
                let m = SyncMsg {
                    node: self.node.clone(),
                    syncid: self.cfg.syncid,
                    table: table.clone(),
                    round: self.round,
                    part: i as u32,
                    parts: n,
                    sets: p.sets,
                    conns: p.conns,
                };
                let wire = flows::encode(&m, &self.keys[0]);
                match self.sock.send_to(&wire, &dest) {
                    Ok(_) => {
                        STATS.sent_datagrams.fetch_add(1, Ordering::Relaxed);
                        STATS.sent_elements.fetch_add(elems, Ordering::Relaxed);
                        STATS.sent_nat_conns.fetch_add(nat, Ordering::Relaxed);
                    }
                    Err(e) => self.logger.log(Level::Warn, &format!("director sync: sending: {e}")),
                }
            }
        }
    }

    /// The conntrack entries of the NAT connections to `reals`, a table's (service, real
    /// server) pairs (conntrack read once per tick into `entries`); none when there is no
    /// real server or conntrack cannot be read (logged when that changes).
    fn nat_conns(
        &mut self,
        reals: &[(halo_lb::dataplane::ServiceKey, std::net::SocketAddr)],
        entries: &mut Option<Vec<halo_lb::conntrack::Entry>>,
    ) -> Vec<halo_lb::conntrack::NatConn> {
        if reals.is_empty() {
            return Vec::new();
        }
        if entries.is_none() {
            match halo_lb::conntrack::dump(Duration::from_secs(1)) {
                Ok(e) => {
                    if self.conntrack_failing {
                        self.logger.log(Level::Info, "director sync: conntrack is readable again");
                        self.conntrack_failing = false;
                    }
                    *entries = Some(e);
                }
                Err(e) => {
                    if !self.conntrack_failing {
                        self.logger.log(
                            Level::Warn,
                            &format!("director sync: {e}; NAT connections are not synced meanwhile"),
                        );
                        self.conntrack_failing = true;
                    }
                    *entries = Some(Vec::new());
                }
            }
        }
        halo_lb::conntrack::nat_conns(entries.as_deref().unwrap_or_default(), reals)
    }

    /// Logs (once) what the creation of `table` here did with the NAT connections synced to it.
    fn log_restored(&self, table: &str) {
        let Some(r) = flows::restored(table) else { return };
        STATS.restored_nat_conns.fetch_add(r.created.created as u64, Ordering::Relaxed);
        STATS.failed_nat_conns.fetch_add((r.created.failed + r.expired) as u64, Ordering::Relaxed);
        let mut line = format!(
            "director sync: table ip {table}: {} of {} synced NAT connection(s) created in conntrack",
            r.created.created, r.staged
        );
        if r.expired > 0 {
            line.push_str(&format!(", {} expired", r.expired));
        }
        if r.created.failed > 0 {
            line.push_str(&format!(
                ", {} refused by the kernel (first: {})",
                r.created.failed,
                r.created.first_error.as_deref().unwrap_or("?")
            ));
        }
        if let Some(e) = &r.error {
            line.push_str(&format!(", none could be created: {e}"));
        }
        let level = if r.created.failed > 0 || r.error.is_some() { Level::Warn } else { Level::Info };
        self.logger.log(level, &line);
    }

    fn receive(&mut self, data: &[u8]) {
        let keys: Vec<&[u8]> = self.keys.iter().map(Vec::as_slice).collect();
        let m = match flows::decode(data, &keys) {
            Ok(m) => m,
            Err(flows::Drop::BadMac) => {
                STATS.dropped_bad_mac.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Err(_) => {
                STATS.dropped_malformed.fetch_add(1, Ordering::Relaxed);
                return;
            }
        };
        if m.syncid != self.cfg.syncid {
            STATS.dropped_foreign_syncid.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if m.node == self.node {
            return;
        }
        let (from, table) = (m.node.clone(), m.table.clone());
        let Some(snap) = self.asm.add(m) else { return };
        STATS.received_snapshots.fetch_add(1, Ordering::Relaxed);
        if self.held.contains(&table) {
            // Both hold it (a split brain being settled): ours is the one in force here.
            return;
        }
        let n = flows::count(&snap.sets);
        let c = snap.conns.len();
        flows::stage_snapshot(&table, snap);
        let n_all = n + c;
        let log = match self.logged.get(&table) {
            None => true,
            // Flows come and go all the time: a line when the count changes, at most every
            // 10 s (and at once when the table goes from no flows to some, or back).
            Some((last, at)) => {
                (*last == 0) != (n_all == 0) || (*last != n_all && at.elapsed() >= Duration::from_secs(10))
            }
        };
        if log {
            self.logger.log(
                Level::Info,
                &format!(
                    "director sync: backup for table ip {table}: {n} flow(s) and {c} NAT connection(s) from \
                     {from} staged"
                ),
            );
            self.logged.insert(table, (n_all, Instant::now()));
        }
    }
}
