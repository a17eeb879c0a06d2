//! `halo mon`: the live terminal view (what `crm_mon` is to Pacemaker, seed 004), refreshed
//! every second from the control socket: `status`, and `lvs` while a director runs here.
//! Nodes with their state, last heard and load; groups and where they run; failed actions;
//! heartbeat links; the director's virtual services with each real server's weight and
//! health. What changed since the previous refresh is highlighted, and the last events
//! (a node went dead, a group moved, a real server left the table) are listed: they are
//! derived by diffing two snapshots, so the daemon keeps no event log for us.
//!
//! [`Mon`] holds the state and draws a frame from JSON only, so the screen and the event
//! derivation are tested with ratatui's `TestBackend` from fixtures, without a terminal or
//! a daemon.
use crossterm::event::{self, Event as TermEvent, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Row, Table};
use ratatui::Frame;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::Path;
use std::time::{Duration, Instant};

/// How many events the view keeps.
pub const EVENTS_KEPT: usize = 50;

/// One derived event: when it was seen and what happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonEvent {
    pub at: String,
    pub text: String,
}

/// The monitor: the last snapshot, what changed in it, and the recent events.
#[derive(Default)]
pub struct Mon {
    status: Option<Value>,
    lvs: Option<Value>,
    /// Rows that changed at the last refresh (`node:n2`, `group:KEY`, `real:SVC/ADDR`, ...).
    changed: BTreeSet<String>,
    /// Newest first.
    events: VecDeque<MonEvent>,
    /// Why the last refresh failed (the daemon is gone, ...).
    error: Option<String>,
    /// When the last good snapshot was taken.
    at: String,
}

fn st<'v>(v: &'v Value, k: &str) -> &'v str {
    v.get(k).and_then(|x| x.as_str()).unwrap_or("")
}

fn arr<'v>(v: &'v Value, k: &str) -> impl Iterator<Item = &'v Value> {
    v.get(k).and_then(|x| x.as_array()).into_iter().flatten()
}

fn strings(v: &Value, k: &str) -> Vec<String> {
    arr(v, k).filter_map(|x| x.as_str().map(str::to_string)).collect()
}

fn on(nodes: &[String]) -> String {
    match nodes {
        [] => "nowhere".to_string(),
        [one] => one.clone(),
        many => format!("[ {} ]", many.join(" ")),
    }
}

/// The row id of a real server: its service and address.
fn real_id(svc: &Value, real: &Value) -> String {
    format!("real:{}/{}", st(svc, "id"), st(real, "addr"))
}

/// Whether the snapshot shows a director group held here: then `lvs` is worth asking.
pub fn wants_lvs(status: &Value) -> bool {
    let me = st(status, "node");
    status
        .pointer("/resources/groups")
        .and_then(|g| g.as_array())
        .into_iter()
        .flatten()
        .filter(|g| strings(g, "holders").iter().any(|h| h == me))
        .any(|g| arr(g, "resources").any(|r| st(r, "agent").contains("ldirectord")))
}

/// Node name -> (state, link states).
fn nodes_of(status: &Value) -> BTreeMap<String, (String, BTreeMap<String, String>)> {
    arr(status, "nodes")
        .map(|n| {
            let links =
                arr(n, "links").map(|l| (st(l, "name").to_string(), st(l, "state").to_string())).collect();
            (st(n, "name").to_string(), (st(n, "state").to_string(), links))
        })
        .collect()
}

/// Group key -> (holders, failed here, last error).
fn groups_of(status: &Value) -> BTreeMap<String, (Vec<String>, bool, String)> {
    status
        .pointer("/resources/groups")
        .and_then(|g| g.as_array())
        .into_iter()
        .flatten()
        .map(|g| {
            let failed = g.get("failed").and_then(|f| f.as_bool()) == Some(true);
            (st(g, "key").to_string(), (strings(g, "holders"), failed, st(g, "last_error").to_string()))
        })
        .collect()
}

/// Real server id -> (in-table weight, health, last check).
fn reals_of(lvs: Option<&Value>) -> BTreeMap<String, (Option<u64>, String, String)> {
    let mut out = BTreeMap::new();
    for d in lvs.into_iter().flat_map(|l| arr(l, "directors")) {
        for svc in arr(d, "services") {
            for r in arr(svc, "reals") {
                let w = r.get("in_table").and_then(|w| w.as_u64());
                out.insert(
                    real_id(svc, r),
                    (w, st(r, "health").to_string(), st(r, "last_check").to_string()),
                );
            }
        }
    }
    out
}

/// The events between two snapshots, and the ids of the rows that changed.
pub fn diff(
    old: &Value,
    old_lvs: Option<&Value>,
    new: &Value,
    new_lvs: Option<&Value>,
) -> (Vec<String>, BTreeSet<String>) {
    let mut events = Vec::new();
    let mut changed = BTreeSet::new();
    if st(old, "state") != st(new, "state") {
        events.push(format!("this node ({}): {} -> {}", st(new, "node"), st(old, "state"), st(new, "state")));
    }
    let (oc, nc) = (old.get("comm_up"), new.get("comm_up"));
    if oc != nc && nc.and_then(|c| c.as_bool()) == Some(true) {
        events.push("communication up".to_string());
    }
    if old.get("generation") != new.get("generation") && st(old, "node") == st(new, "node") {
        events.push(format!(
            "the daemon restarted (generation {} -> {})",
            old.get("generation").unwrap_or(&Value::Null),
            new.get("generation").unwrap_or(&Value::Null)
        ));
    }

    let (on_, nn) = (nodes_of(old), nodes_of(new));
    for (name, (state, links)) in &nn {
        let id = format!("node:{name}");
        match on_.get(name) {
            None => {
                events.push(format!("node {name} appeared ({state})"));
                changed.insert(id);
            }
            Some((old_state, old_links)) => {
                if old_state != state {
                    let what = match state.as_str() {
                        "dead" => format!("node {name} went dead (was {old_state})"),
                        "active" | "up" | "ping" if old_state == "dead" => {
                            format!("node {name} came back ({state})")
                        }
                        _ => format!("node {name}: {old_state} -> {state}"),
                    };
                    events.push(what);
                    changed.insert(id.clone());
                }
                for (link, ls) in links {
                    let before = old_links.get(link);
                    if before.is_some_and(|b| b != ls) {
                        events.push(format!("link {link} to {name}: {} -> {ls}", before.map_or("", |b| b)));
                        changed.insert(format!("link:{name}/{link}"));
                    }
                }
            }
        }
    }
    for name in on_.keys().filter(|n| !nn.contains_key(*n)) {
        events.push(format!("node {name} left the configuration"));
    }

    let (og, ng) = (groups_of(old), groups_of(new));
    for (key, (holders, failed, error)) in &ng {
        let id = format!("group:{key}");
        let Some((old_holders, old_failed, _)) = og.get(key) else {
            events.push(format!("group {key} appeared (on {})", on(holders)));
            changed.insert(id);
            continue;
        };
        if old_holders != holders {
            let what = match (old_holders.is_empty(), holders.is_empty()) {
                (true, false) => format!("group {key} started on {}", on(holders)),
                (false, true) => format!("group {key} stopped (was on {})", on(old_holders)),
                _ if holders.len() > 1 => format!("group {key} held by {} (a conflict)", on(holders)),
                _ => format!("group {key} moved: {} -> {}", on(old_holders), on(holders)),
            };
            events.push(what);
            changed.insert(id.clone());
        }
        if *failed && !old_failed {
            let err = if error.is_empty() { "failed".to_string() } else { error.clone() };
            events.push(format!("group {key} failed on {}: {err}", st(new, "node")));
            changed.insert(id.clone());
        } else if !failed && *old_failed {
            events.push(format!("group {key}: failure cleared on {}", st(new, "node")));
            changed.insert(id);
        }
    }
    for key in og.keys().filter(|k| !ng.contains_key(*k)) {
        events.push(format!("group {key} left the configuration"));
    }

    let had_director = old_lvs.is_some_and(|l| arr(l, "directors").next().is_some());
    let has_director = new_lvs.is_some_and(|l| arr(l, "directors").next().is_some());
    match (had_director, has_director) {
        (false, true) => events.push("the director started here".to_string()),
        (true, false) => events.push("the director stopped here".to_string()),
        _ => {}
    }
    if had_director && has_director {
        let (or, nr) = (reals_of(old_lvs), reals_of(new_lvs));
        for (id, (w, health, last)) in &nr {
            let name = id.trim_start_matches("real:");
            let Some((ow, ohealth, _)) = or.get(id) else {
                events.push(format!("real server {name} configured ({health})"));
                changed.insert(id.clone());
                continue;
            };
            let why = if last.is_empty() { String::new() } else { format!(": {last}") };
            match (ow, w) {
                (Some(_), None) => events.push(format!("real server {name} left the table{why}")),
                (None, Some(w)) => events.push(format!("real server {name} joined the table (weight {w})")),
                (Some(a), Some(b)) if a != b => events.push(format!("real server {name}: weight {a} -> {b}")),
                _ if ohealth != health => {
                    events.push(format!("real server {name}: {ohealth} -> {health}{why}"))
                }
                _ => {}
            }
            if ow != w || ohealth != health {
                changed.insert(id.clone());
            }
        }
        for id in or.keys().filter(|k| !nr.contains_key(*k)) {
            events.push(format!("real server {} removed", id.trim_start_matches("real:")));
        }
    }
    (events, changed)
}

impl Mon {
    pub fn new() -> Mon {
        Mon::default()
    }

    /// A new snapshot taken at `at` (a clock time for the event list).
    pub fn update(&mut self, at: &str, status: Value, lvs: Option<Value>) {
        if let Some(err) = self.error.take() {
            self.push(at, format!("the daemon answers again (was: {err})"));
        }
        self.changed.clear();
        if let Some(old) = &self.status {
            let (events, changed) = diff(old, self.lvs.as_ref(), &status, lvs.as_ref());
            self.changed = changed;
            for e in events {
                self.push(at, e);
            }
        }
        self.status = Some(status);
        self.lvs = lvs;
        self.at = at.to_string();
    }

    /// The refresh failed: the last snapshot stays on screen, marked stale.
    pub fn failed(&mut self, at: &str, error: String) {
        if self.error.is_none() {
            self.push(at, format!("no answer from the daemon: {error}"));
        }
        self.changed.clear();
        self.error = Some(error);
    }

    fn push(&mut self, at: &str, text: String) {
        self.events.push_front(MonEvent { at: at.to_string(), text });
        self.events.truncate(EVENTS_KEPT);
    }

    /// Newest first.
    pub fn events(&self) -> impl Iterator<Item = &MonEvent> {
        self.events.iter()
    }

    fn mark(&self, id: &str) -> Style {
        if self.changed.contains(id) {
            Style::default().fg(Color::Black).bg(Color::Yellow).add_modifier(Modifier::BOLD)
        } else {
            Style::default()
        }
    }

    /// Draws the whole screen.
    pub fn draw(&self, f: &mut Frame) {
        let area = f.area();
        let empty = Value::Null;
        let status = self.status.as_ref().unwrap_or(&empty);
        let me = st(status, "node");
        let nodes: Vec<&Value> = arr(status, "nodes").collect();
        let groups: Vec<&Value> =
            status.pointer("/resources/groups").and_then(|g| g.as_array()).into_iter().flatten().collect();
        let failed: Vec<&&Value> =
            groups.iter().filter(|g| g.get("failed").and_then(|f| f.as_bool()) == Some(true)).collect();
        let directors: Vec<&Value> = self.lvs.iter().flat_map(|l| arr(l, "directors")).collect();
        let real_rows: usize =
            directors.iter().flat_map(|d| arr(d, "services")).map(|s| 1 + arr(s, "reals").count()).sum();

        let mut parts = vec![Constraint::Length(2), Constraint::Length(nodes.len() as u16 + 3)];
        if !groups.is_empty() {
            parts.push(Constraint::Length(groups.len() as u16 + 3));
        }
        if !failed.is_empty() {
            parts.push(Constraint::Length(failed.len() as u16 + 2));
        }
        if !directors.is_empty() {
            parts.push(Constraint::Length(real_rows as u16 + 3));
        }
        parts.push(Constraint::Min(3));
        let chunks = Layout::vertical(parts).split(area);
        let mut next = chunks.iter().copied();
        let mut take = || next.next().unwrap_or(Rect::default());

        // Header.
        let comm = if status.get("comm_up").and_then(|c| c.as_bool()) == Some(true) {
            "communication up"
        } else {
            "joining the cluster"
        };
        let mut head = vec![
            Span::styled("halo mon", Style::default().add_modifier(Modifier::BOLD)),
            Span::raw(format!(
                "  node {me} ({}, generation {}) - {comm} - {}",
                st(status, "state"),
                status.get("generation").and_then(|g| g.as_u64()).unwrap_or(0),
                self.at
            )),
        ];
        let mut second = vec![Span::raw("q quits; highlighted: changed since the last refresh")];
        if let Some(e) = &self.error {
            head.push(Span::styled("  STALE", Style::default().fg(Color::Red).add_modifier(Modifier::BOLD)));
            second = vec![Span::styled(format!("no answer: {e}"), Style::default().fg(Color::Red))];
        }
        f.render_widget(Paragraph::new(vec![Line::from(head), Line::from(second)]), take());

        // Nodes.
        let rows: Vec<Row> = nodes
            .iter()
            .map(|n| {
                let name = st(n, "name");
                let heard = match n.get("last_heard_ms").and_then(|m| m.as_u64()) {
                    _ if name == me => "-".to_string(),
                    Some(ms) if ms < 1000 => format!("{ms}ms ago"),
                    Some(ms) => format!("{:.1}s ago", ms as f64 / 1000.0),
                    None => "never".to_string(),
                };
                let load =
                    n.get("load1").and_then(|l| l.as_f64()).map(|l| format!("{l:.2}")).unwrap_or_default();
                let links: Vec<Span> = arr(n, "links")
                    .flat_map(|l| {
                        let style = if self.changed.contains(&format!("link:{name}/{}", st(l, "name"))) {
                            Style::default().fg(Color::Black).bg(Color::Yellow)
                        } else if st(l, "state") == "up" {
                            Style::default().fg(Color::Green)
                        } else {
                            Style::default().fg(Color::Red)
                        };
                        [Span::styled(format!("{} {}", st(l, "name"), st(l, "state")), style), Span::raw(" ")]
                    })
                    .collect();
                let state = st(n, "state");
                let state_style = match state {
                    "dead" => Style::default().fg(Color::Red).add_modifier(Modifier::BOLD),
                    "active" | "ping" => Style::default().fg(Color::Green),
                    _ => Style::default().fg(Color::Yellow),
                };
                Row::new(vec![
                    Line::from(if name == me { format!("{name} *") } else { name.to_string() }),
                    Line::from(st(n, "type").to_string()),
                    Line::from(Span::styled(state.to_string(), state_style)),
                    Line::from(heard),
                    Line::from(load),
                    Line::from(links),
                ])
                .style(self.mark(&format!("node:{name}")))
            })
            .collect();
        let table = Table::new(
            rows,
            [
                Constraint::Length(16),
                Constraint::Length(7),
                Constraint::Length(8),
                Constraint::Length(11),
                Constraint::Length(6),
                Constraint::Fill(1),
            ],
        )
        .header(
            Row::new(["Node", "Type", "State", "Last heard", "Load", "Links"])
                .style(Style::default().add_modifier(Modifier::BOLD)),
        )
        .block(Block::bordered().title(format!(" Nodes ({}) ", nodes.len())));
        f.render_widget(table, take());

        // Groups.
        if !groups.is_empty() {
            let rsc = status.get("resources").unwrap_or(&empty);
            let rows: Vec<Row> = groups
                .iter()
                .map(|g| {
                    let key = st(g, "key");
                    let holders = strings(g, "holders");
                    let running = if holders.is_empty() {
                        "Stopped".to_string()
                    } else {
                        format!("Started {}", on(&holders))
                    };
                    let res: Vec<String> = arr(g, "resources").map(|r| st(r, "name").to_string()).collect();
                    let failed = g.get("failed").and_then(|f| f.as_bool()) == Some(true);
                    let run_style = if failed || holders.len() > 1 {
                        Style::default().fg(Color::Red).add_modifier(Modifier::BOLD)
                    } else if holders.is_empty() {
                        Style::default().fg(Color::Yellow)
                    } else {
                        Style::default().fg(Color::Green)
                    };
                    Row::new(vec![
                        Line::from(key.to_string()),
                        Line::from(st(g, "node").to_string()),
                        Line::from(Span::styled(running, run_style)),
                        Line::from(st(g, "state").to_string()),
                        Line::from(res.join(" ")),
                    ])
                    .style(self.mark(&format!("group:{key}")))
                })
                .collect();
            let title = format!(
                " Groups ({}) - auto_failback {}, standby {} ",
                groups.len(),
                rsc.get("auto_failback")
                    .map_or("?".to_string(), |a| a.to_string().trim_matches('"').to_string()),
                st(rsc, "standby")
            );
            let table = Table::new(
                rows,
                [
                    Constraint::Length(28),
                    Constraint::Length(8),
                    Constraint::Length(20),
                    Constraint::Length(11),
                    Constraint::Fill(1),
                ],
            )
            .header(
                Row::new(["Group", "Prefers", "Running", "Here", "Resources"])
                    .style(Style::default().add_modifier(Modifier::BOLD)),
            )
            .block(Block::bordered().title(title));
            f.render_widget(table, take());
        }

        // Failed actions.
        if !failed.is_empty() {
            let lines: Vec<Line> = failed
                .iter()
                .map(|g| {
                    let err = g.get("last_error").and_then(|e| e.as_str()).unwrap_or("failed");
                    Line::from(Span::styled(
                        format!(
                            "* group {} on {me}: {err} - blocked here until `halo cleanup {}`",
                            st(g, "key"),
                            st(g, "key")
                        ),
                        Style::default().fg(Color::Red),
                    ))
                })
                .collect();
            f.render_widget(Paragraph::new(lines).block(Block::bordered().title(" Failed actions ")), take());
        }

        // Director.
        if !directors.is_empty() {
            let mut rows = Vec::new();
            for d in &directors {
                for svc in arr(d, "services") {
                    let fb = if svc.get("fallback_active").and_then(|f| f.as_bool()) == Some(true) {
                        format!("fallback {} in use", st(svc, "fallback"))
                    } else {
                        String::new()
                    };
                    let running = if d.get("running").and_then(|r| r.as_bool()) == Some(true) {
                        ""
                    } else {
                        " NOT RUNNING"
                    };
                    rows.push(
                        Row::new(vec![
                            format!("{}{running}", st(svc, "id")),
                            format!("{} {}", st(svc, "scheduler"), st(svc, "forward")),
                            String::new(),
                            String::new(),
                            String::new(),
                            fb,
                        ])
                        .style(Style::default().add_modifier(Modifier::BOLD)),
                    );
                    for r in arr(svc, "reals") {
                        let in_table = match r.get("in_table").and_then(|w| w.as_u64()) {
                            Some(w) => format!("{w}"),
                            None => "out".to_string(),
                        };
                        let health = st(r, "health");
                        let hstyle = if health == "up" {
                            Style::default().fg(Color::Green)
                        } else {
                            Style::default().fg(Color::Red)
                        };
                        let pkts = r
                            .pointer("/counters/inpkts")
                            .and_then(|p| p.as_u64())
                            .map(|p| p.to_string())
                            .unwrap_or_default();
                        rows.push(
                            Row::new(vec![
                                Line::from(format!("  -> {}", st(r, "addr"))),
                                Line::from(format!(
                                    "weight {}",
                                    r.get("weight").and_then(|w| w.as_u64()).unwrap_or(0)
                                )),
                                Line::from(in_table),
                                Line::from(Span::styled(health.to_string(), hstyle)),
                                Line::from(pkts),
                                Line::from(format!("{} {}", st(r, "check"), st(r, "last_check"))),
                            ])
                            .style(self.mark(&real_id(svc, r))),
                        );
                    }
                }
            }
            let table = Table::new(
                rows,
                [
                    Constraint::Length(30),
                    Constraint::Length(10),
                    Constraint::Length(8),
                    Constraint::Length(8),
                    Constraint::Length(9),
                    Constraint::Fill(1),
                ],
            )
            .header(
                Row::new(["Virtual service / real", "Weight", "In table", "Health", "Pkts in", "Check"])
                    .style(Style::default().add_modifier(Modifier::BOLD)),
            )
            .block(Block::bordered().title(" Director "));
            f.render_widget(table, take());
        }

        // Events.
        let ev_area = take();
        let lines: Vec<Line> = self
            .events
            .iter()
            .take(ev_area.height.saturating_sub(2) as usize)
            .map(|e| {
                Line::from(vec![
                    Span::styled(format!("{} ", e.at), Style::default().fg(Color::DarkGray)),
                    Span::raw(e.text.clone()),
                ])
            })
            .collect();
        let lines = if lines.is_empty() { vec![Line::from("(none yet)")] } else { lines };
        f.render_widget(
            Paragraph::new(lines).block(Block::bordered().title(" Events (newest first) ")),
            ev_area,
        );
    }
}

/// The local wall-clock time as `HH:MM:SS`.
pub fn clock() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as libc::time_t)
        .unwrap_or(0);
    // SAFETY: localtime_r writes only into the tm we own.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let ok = unsafe { !libc::localtime_r(&t, &mut tm).is_null() };
    if !ok {
        return "--:--:--".to_string();
    }
    format!("{:02}:{:02}:{:02}", tm.tm_hour, tm.tm_min, tm.tm_sec)
}

/// Takes one snapshot: `status`, and `lvs` when a director group runs here.
fn snapshot(socket: &Path) -> anyhow::Result<(Value, Option<Value>)> {
    let status = crate::control::request(socket, "status")?;
    let lvs = if wants_lvs(&status) { crate::control::request(socket, "lvs").ok() } else { None };
    Ok((status, lvs))
}

/// `halo mon`: refreshes every `interval` until `q` (or Esc, or Ctrl-C).
pub fn mon(socket: &Path, interval: Duration) -> anyhow::Result<i32> {
    // Fail before taking the terminal if there is no daemon at all.
    let first = snapshot(socket)?;
    let mut m = Mon::new();
    m.update(&clock(), first.0, first.1);
    let mut terminal = ratatui::init();
    let result = (|| -> anyhow::Result<()> {
        loop {
            terminal.draw(|f| m.draw(f))?;
            let until = Instant::now() + interval;
            loop {
                let left = until.saturating_duration_since(Instant::now());
                if left.is_zero() || !event::poll(left)? {
                    break;
                }
                match event::read()? {
                    TermEvent::Key(k) if k.kind == KeyEventKind::Press => {
                        let ctrl_c =
                            k.code == KeyCode::Char('c') && k.modifiers.contains(KeyModifiers::CONTROL);
                        if matches!(k.code, KeyCode::Char('q') | KeyCode::Esc) || ctrl_c {
                            return Ok(());
                        }
                    }
                    TermEvent::Resize(..) => {
                        terminal.draw(|f| m.draw(f))?;
                    }
                    _ => {}
                }
            }
            match snapshot(socket) {
                Ok((s, l)) => m.update(&clock(), s, l),
                Err(e) => m.failed(&clock(), format!("{e:#}")),
            }
        }
    })();
    ratatui::restore();
    result.map(|()| 0)
}
