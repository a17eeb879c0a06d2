//! The optional HTTP endpoint (`halo run --http [ADDR]`): Prometheus text at `/metrics` (the
//! status, plus the director's real servers from `lvs` and the connection-sync counters),
//! the `halo status --json` document at `/api/status`, the director's state (`halo lvs`'s
//! JSON, with each real server's counters) at `/api/lvs`, and the web dashboard at `/`.
//!
//! It is a client of the control socket like the CLI, so the heartbeat thread only ever
//! hands over snapshots and never waits for a scraper. A tiny HTTP/1.0 responder on
//! threads of its own (one accepting, one per connection, a few at most), not a runtime:
//! a few GET routes do not justify tokio + axum in the daemon, and nothing here can block
//! the heartbeat path.
use anyhow::Context;
use serde_json::Value;
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

pub const DEFAULT_PORT: u16 = 9694;
/// The web dashboard: one self-contained page (no external script: the machines it runs
/// on often have no Internet), which polls `/api/status` and `/api/lvs` every second and
/// keeps the history for its charts in the browser.
pub const DASHBOARD: &str = include_str!("../assets/dashboard.html");
const MAX_CLIENTS: usize = 8;
const MAX_HEAD: usize = 8192;
const IO_TIMEOUT: Duration = Duration::from_secs(3);

/// `--http` values: `PORT` (loopback), `IP` (port 9694), `IP:PORT`, `[IPv6]:PORT`.
/// Loopback unless an address is given explicitly.
pub fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = s.parse::<u16>() {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, DEFAULT_PORT));
    }
    s.parse::<SocketAddr>()
        .map_err(|_| format!("'{s}' is not PORT, IP or IP:PORT (e.g. 9694, 127.0.0.1:9694, [::1]:9694)"))
}

/// Binds `addr` (so a busy port fails the start) and serves it on a thread of its own.
pub fn serve(addr: SocketAddr, socket: PathBuf) -> anyhow::Result<()> {
    let listener = TcpListener::bind(addr).with_context(|| format!("binding the HTTP endpoint {addr}"))?;
    let busy = Arc::new(AtomicUsize::new(0));
    std::thread::Builder::new().name("halo-http".into()).spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            if busy.load(Ordering::Relaxed) >= MAX_CLIENTS {
                let _ = conn.set_write_timeout(Some(IO_TIMEOUT));
                let _ = respond(&mut conn, 503, "text/plain", b"busy\n", false);
                continue;
            }
            busy.fetch_add(1, Ordering::Relaxed);
            let (socket, done) = (socket.clone(), Arc::clone(&busy));
            let spawned = std::thread::Builder::new().name("halo-http-conn".into()).spawn(move || {
                // A failure talking to one client is that client's problem.
                let _ = handle(conn, &socket);
                done.fetch_sub(1, Ordering::Relaxed);
            });
            if spawned.is_err() {
                busy.fetch_sub(1, Ordering::Relaxed);
            }
        }
    })?;
    Ok(())
}

fn handle(mut conn: TcpStream, socket: &Path) -> std::io::Result<()> {
    conn.set_read_timeout(Some(IO_TIMEOUT))?;
    conn.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        let n = conn.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
        if head.len() > MAX_HEAD {
            return respond(&mut conn, 431, "text/plain", b"request head too large\n", false);
        }
    }
    let head = String::from_utf8_lossy(&head);
    let mut words = head.lines().next().unwrap_or("").split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let head_only = method == "HEAD";
    if method != "GET" && !head_only {
        return respond(&mut conn, 405, "text/plain", b"only GET and HEAD\n", false);
    }
    let path = target.split('?').next().unwrap_or("");
    match path {
        "/metrics" | "/api/status" => match crate::control::request(socket, "status") {
            Ok(v) => {
                if path == "/metrics" {
                    let mut body = metrics(&v);
                    // The director's real servers, when one runs here (what `/api/lvs`
                    // serves); a director that cannot be read leaves the rest standing.
                    if let Ok(lvs) = crate::control::request(socket, "lvs") {
                        body.push_str(&director_metrics(&lvs));
                    }
                    body.push_str(&dirsync_metrics(&crate::dirsync::STATS));
                    respond(
                        &mut conn,
                        200,
                        "text/plain; version=0.0.4; charset=utf-8",
                        body.as_bytes(),
                        head_only,
                    )
                } else {
                    let body = serde_json::to_string_pretty(&v).unwrap_or_default() + "\n";
                    respond(&mut conn, 200, "application/json", body.as_bytes(), head_only)
                }
            }
            Err(e) => respond(&mut conn, 503, "text/plain", format!("{e:#}\n").as_bytes(), head_only),
        },
        // The director's state with each real server's counters (what `halo lvs` reads).
        "/api/lvs" => match crate::control::request(socket, "lvs") {
            Ok(v) => {
                let body = serde_json::to_string_pretty(&v).unwrap_or_default() + "\n";
                respond(&mut conn, 200, "application/json", body.as_bytes(), head_only)
            }
            Err(e) => respond(&mut conn, 503, "text/plain", format!("{e:#}\n").as_bytes(), head_only),
        },
        "/" | "/index.html" => {
            respond(&mut conn, 200, "text/html; charset=utf-8", DASHBOARD.as_bytes(), head_only)
        }
        _ => respond(&mut conn, 404, "text/plain", b"not found\n", head_only),
    }
}

fn respond(
    conn: &mut TcpStream,
    code: u16,
    ctype: &str,
    body: &[u8],
    head_only: bool,
) -> std::io::Result<()> {
    let reason = match code {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        431 => "Request Header Fields Too Large",
        _ => "Service Unavailable",
    };
    let head = format!(
        "HTTP/1.0 {code} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    conn.write_all(head.as_bytes())?;
    if !head_only {
        conn.write_all(body)?;
    }
    conn.flush()
}

/// Prometheus label value escaping: backslash, double quote, newline.
fn esc(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn u(v: &Value, k: &str) -> u64 {
    v.get(k).and_then(|x| x.as_u64()).unwrap_or(0)
}

fn st<'v>(v: &'v Value, k: &str) -> &'v str {
    v.get(k).and_then(|x| x.as_str()).unwrap_or("")
}

fn arr<'v>(v: &'v Value, k: &str) -> impl Iterator<Item = &'v Value> {
    v.get(k).and_then(|x| x.as_array()).into_iter().flatten()
}

/// One metric family: HELP, TYPE and its samples (`labels` already rendered).
struct Family<'a> {
    out: &'a mut String,
}

impl Family<'_> {
    fn head(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        let l: Vec<String> = labels.iter().map(|(k, v)| format!("{k}=\"{}\"", esc(v))).collect();
        if l.is_empty() {
            let _ = writeln!(self.out, "{name} {value}");
        } else {
            let _ = writeln!(self.out, "{name}{{{}}} {value}", l.join(","));
        }
    }
}

const NODE_STATES: &[&str] = &["init", "up", "active", "dead", "ping"];
const GROUP_STATES: &[&str] = &["stopped", "starting", "running", "stopping", "stop_failed"];

/// The Prometheus text exposition of a status JSON.
pub fn metrics(v: &Value) -> String {
    let mut out = String::new();
    let mut f = Family { out: &mut out };
    let me = st(v, "node");
    let version = env!("CARGO_PKG_VERSION");
    f.head("halo_info", "gauge", "This daemon: its node name and halo version.");
    f.sample("halo_info", &[("node", me), ("version", version)], 1);
    f.head("halo_generation", "gauge", "This node's generation (raised at every start).");
    f.sample("halo_generation", &[], u(v, "generation"));
    f.head("halo_comm_up", "gauge", "1 once communication is up (Heartbeat's comm_now_up).");
    f.sample("halo_comm_up", &[], u8::from(v.get("comm_up").and_then(|c| c.as_bool()) == Some(true)));

    let nodes: Vec<&Value> = arr(v, "nodes").collect();
    f.head("halo_node_state", "gauge", "State of each node as this node sees it (1 for the current state).");
    for n in &nodes {
        for s in NODE_STATES {
            let on = u8::from(st(n, "state") == *s);
            f.sample(
                "halo_node_state",
                &[("node", st(n, "name")), ("type", st(n, "type")), ("state", s)],
                on,
            );
        }
    }
    f.head("halo_node_generation", "gauge", "Generation last heard from each node.");
    for n in &nodes {
        f.sample("halo_node_generation", &[("node", st(n, "name"))], u(n, "generation"));
    }
    f.head(
        "halo_node_last_heard_seconds",
        "gauge",
        "Seconds since each node was last heard (absent: never).",
    );
    for n in &nodes {
        if let Some(ms) = n.get("last_heard_ms").and_then(|m| m.as_u64()) {
            f.sample("halo_node_last_heard_seconds", &[("node", st(n, "name"))], ms as f64 / 1000.0);
        }
    }
    f.head("halo_node_deadtime_seconds", "gauge", "The deadtime each node is timed out with.");
    for n in &nodes {
        f.sample(
            "halo_node_deadtime_seconds",
            &[("node", st(n, "name"))],
            u(n, "deadtime_ms") as f64 / 1000.0,
        );
    }
    f.head(
        "halo_heartbeats_late_total",
        "counter",
        "Heartbeats from each node that came later than warntime.",
    );
    for n in &nodes {
        f.sample("halo_heartbeats_late_total", &[("node", st(n, "name"))], u(n, "late_heartbeats"));
    }
    f.head("halo_packets_lost_total", "counter", "Messages from each node found missing (sequence gaps).");
    for n in &nodes {
        f.sample("halo_packets_lost_total", &[("node", st(n, "name"))], u(n, "lost_packets"));
    }
    f.head(
        "halo_heartbeat_interval_seconds",
        "histogram",
        "Interval between consecutive heartbeats received from each peer (while not dead).",
    );
    for n in &nodes {
        let Some(h) = n.get("heartbeat_interval").filter(|h| h.is_object()) else { continue };
        let name = st(n, "name");
        for b in arr(h, "buckets") {
            let (Some(le), Some(c)) = (b.get(0).and_then(|x| x.as_u64()), b.get(1).and_then(|x| x.as_u64()))
            else {
                continue;
            };
            let le = (le as f64 / 1000.0).to_string();
            f.sample("halo_heartbeat_interval_seconds_bucket", &[("node", name), ("le", &le)], c);
        }
        f.sample("halo_heartbeat_interval_seconds_bucket", &[("node", name), ("le", "+Inf")], u(h, "count"));
        f.sample("halo_heartbeat_interval_seconds_sum", &[("node", name)], u(h, "sum_ms") as f64 / 1000.0);
        f.sample("halo_heartbeat_interval_seconds_count", &[("node", name)], u(h, "count"));
    }
    // Heartbeat's `ld` field: the first line of the node's /proc/loadavg.
    for (i, minutes) in ["1", "5", "15"].iter().enumerate() {
        let metric = format!("halo_node_load{minutes}");
        let help = format!("Each node's {minutes}-minute load average, as its heartbeats carry it (ld).");
        f.head(&metric, "gauge", &help);
        for n in &nodes {
            let load = n.get("load").and_then(|l| l.as_str()).and_then(|l| l.split_whitespace().nth(i));
            if let Some(x) = load.and_then(|x| x.parse::<f64>().ok()).filter(|x| x.is_finite()) {
                f.sample(&metric, &[("node", st(n, "name"))], x);
            }
        }
    }
    f.head("halo_link_up", "gauge", "1 when the heartbeat link to a node is up, 0 when dead.");
    for n in &nodes {
        for l in arr(n, "links") {
            let up = u8::from(st(l, "state") == "up");
            f.sample("halo_link_up", &[("node", st(n, "name")), ("link", st(l, "name"))], up);
        }
    }

    f.head("halo_dropped_packets_total", "counter", "Packets and messages refused, by reason.");
    if let Some(d) = v.get("dropped").and_then(|d| d.as_object()) {
        for (reason, c) in d {
            f.sample("halo_dropped_packets_total", &[("reason", reason)], c.as_u64().unwrap_or(0));
        }
    }
    let links: Vec<&Value> = arr(v, "links").collect();
    for (metric, field, help) in [
        ("halo_link_rx_packets_total", "rx_packets", "Packets received on each local link."),
        ("halo_link_rx_bytes_total", "rx_bytes", "Bytes received on each local link."),
        ("halo_link_tx_packets_total", "tx_packets", "Packets sent on each local link."),
        ("halo_link_tx_bytes_total", "tx_bytes", "Bytes sent on each local link."),
        ("halo_link_tx_dropped_total", "tx_dropped", "Packets each local link could not send."),
        ("halo_link_rx_errors_total", "rx_errors", "Receive errors on each local link."),
    ] {
        f.head(metric, "counter", help);
        for l in &links {
            f.sample(metric, &[("link", st(l, "name")), ("kind", st(l, "kind"))], u(l, field));
        }
    }
    f.head("halo_sent_messages_total", "counter", "Cluster messages this node sent.");
    f.sample("halo_sent_messages_total", &[], u(v, "sent_messages"));
    f.head("halo_retransmitted_total", "counter", "Messages this node retransmitted on request.");
    f.sample("halo_retransmitted_total", &[], u(v, "retransmitted"));
    f.head("halo_max_lateness_seconds", "gauge", "The worst scheduling lateness of this daemon seen.");
    f.sample("halo_max_lateness_seconds", &[], u(v, "max_lateness_ms") as f64 / 1000.0);
    if let Some(h) = v.get("hooks") {
        for (name, field, help) in [
            ("halo_hook_events_total", "events", "Cluster events handed to the notify hooks."),
            ("halo_hook_runs_total", "runs", "Notify hook commands run."),
            (
                "halo_hook_failures_total",
                "failures",
                "Notify hook runs that failed (exit status, cannot run, timeout).",
            ),
            ("halo_hook_timeouts_total", "timeouts", "Notify hook runs killed at their timeout."),
            ("halo_hook_dropped_total", "dropped", "Events dropped because the hooks' queue was full."),
        ] {
            f.head(name, "counter", help);
            f.sample(name, &[], u(h, field));
        }
    }

    if let Some(r) = v.get("resources").filter(|r| r.get("managed").and_then(|m| m.as_bool()) == Some(true)) {
        f.head("halo_failovers_total", "counter", "Groups this node took over from another node.");
        f.sample("halo_failovers_total", &[], u(r, "failovers"));
        let groups: Vec<&Value> = arr(r, "groups").collect();
        f.head(
            "halo_group_state",
            "gauge",
            "This node's state of each resource group (1 for the current state).",
        );
        for g in &groups {
            for s in GROUP_STATES {
                f.sample(
                    "halo_group_state",
                    &[("group", st(g, "key")), ("state", s)],
                    u8::from(st(g, "state") == *s),
                );
            }
        }
        f.head("halo_group_holders", "gauge", "How many nodes hold each group (1 is healthy, 2 a conflict).");
        for g in &groups {
            f.sample("halo_group_holders", &[("group", st(g, "key"))], arr(g, "holders").count());
        }
        f.head("halo_group_held", "gauge", "1 for each node holding each group.");
        for g in &groups {
            for h in arr(g, "holders") {
                f.sample(
                    "halo_group_held",
                    &[("group", st(g, "key")), ("node", h.as_str().unwrap_or(""))],
                    1,
                );
            }
        }
        f.head("halo_group_failed", "gauge", "1 when a group failed on this node (until halo cleanup).");
        for g in &groups {
            let failed = u8::from(g.get("failed").and_then(|x| x.as_bool()) == Some(true));
            f.sample("halo_group_failed", &[("group", st(g, "key"))], failed);
        }
        f.head("halo_resource_started", "gauge", "1 when a resource runs somewhere in the cluster.");
        for g in &groups {
            for res in arr(g, "resources") {
                let started = u8::from(st(res, "state") == "started");
                f.sample(
                    "halo_resource_started",
                    &[("group", st(g, "key")), ("resource", st(res, "name"))],
                    started,
                );
            }
        }
        f.head("halo_resource_failed", "gauge", "1 for the resource whose failure blocks its group here.");
        for g in &groups {
            for res in arr(g, "resources") {
                let failed = u8::from(res.get("failed").and_then(|x| x.as_bool()) == Some(true));
                f.sample(
                    "halo_resource_failed",
                    &[("group", st(g, "key")), ("resource", st(res, "name"))],
                    failed,
                );
            }
        }
    }
    out
}

/// The director's real servers from the daemon's `lvs` answer (`/api/lvs`): nothing when
/// no director runs here. Labels: `service` (ldirectord's id, `tcp:VIP:PORT`) and
/// `real_server` (`IP:PORT`).
pub fn director_metrics(lvs: &Value) -> String {
    let mut out = String::new();
    let directors: Vec<&Value> = arr(lvs, "directors").collect();
    if directors.is_empty() {
        return out;
    }
    let mut f = Family { out: &mut out };
    f.head("halo_director_running", "gauge", "1 while a director (ldirectord resource) runs here.");
    for d in &directors {
        let running = u8::from(d.get("running").and_then(|r| r.as_bool()) == Some(true));
        f.sample("halo_director_running", &[("config", st(d, "config")), ("group", st(d, "group"))], running);
    }
    let services: Vec<&Value> = directors.iter().flat_map(|d| arr(d, "services")).collect();
    f.head(
        "halo_virtual_service_fallback_active",
        "gauge",
        "1 while a virtual service sends to its fallback.",
    );
    for svc in &services {
        let on = u8::from(svc.get("fallback_active").and_then(|x| x.as_bool()) == Some(true));
        f.sample("halo_virtual_service_fallback_active", &[("service", st(svc, "id"))], on);
    }
    let reals: Vec<(&str, &Value)> =
        services.iter().flat_map(|svc| arr(svc, "reals").map(move |r| (st(svc, "id"), r))).collect();
    type Get = fn(&Value) -> Option<f64>;
    let gauges: [(&str, &str, &str, Get); 9] = [
        ("halo_real_server_weight", "gauge", "Each real server's configured weight.", |r| {
            r.get("weight").and_then(|x| x.as_f64())
        }),
        (
            "halo_real_server_table_weight",
            "gauge",
            "Each real server's weight in the director's table now (0: out of it or quiescent).",
            |r| Some(r.get("in_table").and_then(|x| x.as_f64()).unwrap_or(0.0)),
        ),
        (
            "halo_real_server_up",
            "gauge",
            "1 when a real server passes its check and is not in maintenance.",
            |r| {
                let up = r.get("health").and_then(|h| h.as_str()).is_some_and(|h| h.starts_with("up"))
                    && r.get("maintenance").is_none_or(|m| m.is_null());
                Some(f64::from(u8::from(up)))
            },
        ),
        (
            "halo_real_server_maintenance",
            "gauge",
            "1 while a real server's maintenance file is present.",
            |r| Some(f64::from(u8::from(r.get("maintenance").is_some_and(|m| !m.is_null())))),
        ),
        ("halo_real_server_checks_total", "counter", "Health checks of each real server run so far.", |r| {
            r.get("checks").and_then(|x| x.as_f64())
        }),
        (
            "halo_real_server_check_consecutive_failures",
            "gauge",
            "Each real server's failed checks in a row (0 after a success).",
            |r| r.get("failures").and_then(|x| x.as_f64()),
        ),
        (
            "halo_real_server_check_consecutive_successes",
            "gauge",
            "Each real server's passed checks in a row (0 after a failure).",
            |r| r.get("successes").and_then(|x| x.as_f64()),
        ),
        (
            "halo_real_server_active_connections",
            "gauge",
            "Active connections to each real server (IPVS; on nftables conntrack for NAT, the flow sets for DR).",
            |r| r.get("active_conns").and_then(|x| x.as_f64()),
        ),
        (
            "halo_real_server_inactive_connections",
            "gauge",
            "Inactive connections to each real server (IPVS; on nftables conntrack for NAT, the flow sets for DR).",
            |r| r.get("inact_conns").and_then(|x| x.as_f64()),
        ),
    ];
    for (name, kind, help, get) in gauges {
        f.head(name, kind, help);
        for (svc, r) in &reals {
            if let Some(x) = get(r) {
                f.sample(name, &[("service", svc), ("real_server", st(r, "addr"))], x);
            }
        }
    }
    for (name, unit, inf, outf) in [
        ("halo_real_server_packets_total", "Packets", "inpkts", "outpkts"),
        ("halo_real_server_bytes_total", "Bytes", "inbytes", "outbytes"),
    ] {
        let help = format!("{unit} the director forwarded to (in) and from (out) each real server.");
        f.head(name, "counter", &help);
        for (svc, r) in &reals {
            let Some(c) = r.get("counters").filter(|c| c.is_object()) else { continue };
            for (dir, field) in [("in", inf), ("out", outf)] {
                let l = [("service", *svc), ("real_server", st(r, "addr")), ("direction", dir)];
                f.sample(name, &l, u(c, field));
            }
        }
    }
    out
}

/// Director connection sync (`lvs_sync_daemon`) counters of this process: zero where it is
/// not configured.
pub fn dirsync_metrics(s: &crate::dirsync::Stats) -> String {
    let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let mut out = String::new();
    let mut f = Family { out: &mut out };
    for (name, help, a) in [
        (
            "halo_director_sync_sent_datagrams_total",
            "Connection-sync datagrams this node multicast as a director.",
            &s.sent_datagrams,
        ),
        ("halo_director_sync_sent_elements_total", "Flow and persistence entries in them.", &s.sent_elements),
        (
            "halo_director_sync_received_snapshots_total",
            "Complete connection-sync snapshots received from another director.",
            &s.received_snapshots,
        ),
        (
            "halo_director_sync_sent_nat_conns_total",
            "LVS-NAT connections (conntrack entries) in the snapshots this node sent.",
            &s.sent_nat_conns,
        ),
        (
            "halo_director_sync_restored_nat_conns_total",
            "Synced LVS-NAT connections created in conntrack when this node became director.",
            &s.restored_nat_conns,
        ),
        (
            "halo_director_sync_failed_nat_conns_total",
            "Synced LVS-NAT connections not restored (refused by the kernel, or expired).",
            &s.failed_nat_conns,
        ),
    ] {
        f.head(name, "counter", help);
        f.sample(name, &[], get(a));
    }
    let name = "halo_director_sync_dropped_total";
    f.head(name, "counter", "Connection-sync datagrams dropped, by reason.");
    for (reason, a) in [
        ("bad_mac", &s.dropped_bad_mac),
        ("malformed", &s.dropped_malformed),
        ("foreign_syncid", &s.dropped_foreign_syncid),
    ] {
        f.sample(name, &[("reason", reason)], get(a));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_addresses_are_loopback_unless_given() {
        assert_eq!(parse_addr("9694").unwrap(), "127.0.0.1:9694".parse().unwrap());
        assert_eq!(parse_addr("8080").unwrap(), "127.0.0.1:8080".parse().unwrap());
        assert_eq!(parse_addr("0.0.0.0").unwrap(), "0.0.0.0:9694".parse().unwrap());
        assert_eq!(parse_addr("10.0.0.1:80").unwrap(), "10.0.0.1:80".parse().unwrap());
        assert_eq!(parse_addr("[::1]:9000").unwrap(), "[::1]:9000".parse().unwrap());
        assert_eq!(parse_addr("::").unwrap(), "[::]:9694".parse().unwrap());
        assert!(parse_addr("localhost:80").is_err());
        assert!(parse_addr("99999").is_err());
    }

    #[test]
    fn the_dashboard_is_self_contained() {
        // The machines it runs on often have no Internet: nothing may come from elsewhere
        // (SVG's namespace is a name, not a download).
        let page = DASHBOARD.replace("\"http://www.w3.org/2000/svg\"", "");
        for external in ["http://", "https://", "//cdn", "<script src", "<link rel=\"stylesheet\""] {
            assert!(!page.contains(external), "the dashboard refers to {external}");
        }
        for api in ["/api/status", "/api/lvs"] {
            assert!(DASHBOARD.contains(api), "the dashboard polls {api}");
        }
    }

    #[test]
    fn director_sync_counters_are_read_from_the_statics() {
        let s = crate::dirsync::Stats::default();
        s.sent_datagrams.store(7, Ordering::Relaxed);
        s.sent_elements.store(130, Ordering::Relaxed);
        s.received_snapshots.store(2, Ordering::Relaxed);
        s.dropped_bad_mac.store(1, Ordering::Relaxed);
        s.dropped_foreign_syncid.store(4, Ordering::Relaxed);
        s.sent_nat_conns.store(8, Ordering::Relaxed);
        s.restored_nat_conns.store(6, Ordering::Relaxed);
        s.failed_nat_conns.store(2, Ordering::Relaxed);
        let m = dirsync_metrics(&s);
        for line in [
            "# TYPE halo_director_sync_sent_datagrams_total counter",
            "halo_director_sync_sent_datagrams_total 7",
            "halo_director_sync_sent_elements_total 130",
            "halo_director_sync_received_snapshots_total 2",
            "halo_director_sync_sent_nat_conns_total 8",
            "halo_director_sync_restored_nat_conns_total 6",
            "halo_director_sync_failed_nat_conns_total 2",
            "halo_director_sync_dropped_total{reason=\"bad_mac\"} 1",
            "halo_director_sync_dropped_total{reason=\"malformed\"} 0",
            "halo_director_sync_dropped_total{reason=\"foreign_syncid\"} 4",
        ] {
            assert!(m.lines().any(|l| l == line), "missing {line:?} in\n{m}");
        }
    }

    #[test]
    fn label_values_are_escaped() {
        let v = serde_json::json!({"node": "a\"b\\c\nd", "nodes": []});
        assert!(metrics(&v).contains(r#"halo_info{node="a\"b\\c\nd","#), "{}", metrics(&v));
    }
}
