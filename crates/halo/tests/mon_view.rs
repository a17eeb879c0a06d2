//! `halo mon` rendered with ratatui's `TestBackend` from JSON fixtures (what the control
//! socket's `status` and `lvs` answer): the screen, the highlighting of what changed, and
//! the events derived by diffing two snapshots.
use halo::cmd::mon::{diff, wants_lvs, Mon};
use ratatui::backend::TestBackend;
use ratatui::style::Color;
use ratatui::Terminal;
use serde_json::{json, Value};

const VIP: &str = "IPaddr2::10.78.0.200/16";

fn status(n2: &str, holders: &[&str], failed: bool) -> Value {
    json!({
        "node": "n1", "state": "active", "generation": 12, "comm_up": true,
        "nodes": [
            {"name": "n1", "state": "active", "type": "normal", "generation": 12,
             "links": [{"name": "eth0", "state": "up"}], "last_heard_ms": 0,
             "load": "0.42 0.30 0.12 1/123 4567", "load1": 0.42},
            {"name": "n2", "state": n2, "type": "normal", "generation": 7,
             "links": [{"name": "eth0", "state": if n2 == "dead" { "dead" } else { "up" }}],
             "last_heard_ms": if n2 == "dead" { 3200 } else { 80 },
             "load": "1.50 0.80 0.40 2/99 77", "load1": 1.5},
        ],
        "resources": {
            "managed": true, "auto_failback": true, "standby": "none",
            "groups": [
                {"key": VIP, "node": "n1", "state": if holders.contains(&"n1") { "running" } else { "stopped" },
                 "holders": holders, "desired": "n1", "failed": failed,
                 "last_error": if failed { "start web: exit 1" } else { "" },
                 "resources": [
                    {"name": VIP, "agent": "IPaddr2", "state": "started", "nodes": holders, "failed": false},
                    {"name": "ldirectord", "agent": "ldirectord", "state": "started", "nodes": holders, "failed": false},
                 ]},
            ],
        },
        "links": [], "dropped": {},
    })
}

fn lvs(r2_in_table: bool) -> Value {
    json!({
        "directors": [{
            "config": "/etc/ha.d/ldirectord.cf", "group": VIP, "table": "halo_lb", "running": true,
            "services": [{
                "id": "tcp:10.78.0.200:80", "scheduler": "rr", "forward": "gate",
                "quiescent": false, "fallback": null, "fallback_active": false,
                "reals": [
                    {"addr": "10.78.0.1:80", "weight": 1, "in_table": 1, "health": "up",
                     "last_check": "HTTP 200", "check": "negotiate",
                     "counters": {"inpkts": 120, "outpkts": 0, "inbytes": 9000, "outbytes": 0}},
                    {"addr": "10.78.0.2:80", "weight": 1, "in_table": if r2_in_table { json!(1) } else { Value::Null },
                     "health": if r2_in_table { "up" } else { "down" },
                     "last_check": if r2_in_table { "HTTP 200" } else { "connection refused" }, "check": "negotiate",
                     "counters": {"inpkts": 80, "outpkts": 0, "inbytes": 6000, "outbytes": 0}},
                ],
            }],
        }],
    })
}

fn screen(m: &Mon) -> (Terminal<TestBackend>, String) {
    let mut t = Terminal::new(TestBackend::new(110, 40)).unwrap();
    t.draw(|f| m.draw(f)).unwrap();
    let buf = t.backend().buffer().clone();
    let mut text = String::new();
    for y in 0..buf.area.height {
        for x in 0..buf.area.width {
            text.push_str(buf[(x, y)].symbol());
        }
        text.push('\n');
    }
    (t, text)
}

/// The background colour of the first cell of the row whose text contains `needle`.
fn row_bg(t: &Terminal<TestBackend>, text: &str, needle: &str) -> Color {
    let y =
        text.lines().position(|l| l.contains(needle)).unwrap_or_else(|| panic!("no {needle:?} in\n{text}"));
    let line = text.lines().nth(y).unwrap();
    let x = line.chars().position(|c| c != '│' && c != ' ').unwrap_or(1);
    t.backend().buffer()[(x as u16, y as u16)].bg
}

#[test]
fn first_frame_shows_nodes_groups_and_the_director() {
    let mut m = Mon::new();
    m.update("12:00:00", status("active", &["n1"], false), Some(lvs(true)));
    let (t, text) = screen(&m);
    for want in [
        "halo mon",
        "node n1 (active, generation 12) - communication up - 12:00:00",
        " Nodes (2) ",
        "n1 *",
        "80ms ago",
        "1.50",
        "eth0 up",
        " Groups (1) - auto_failback true, standby none ",
        "Started n1",
        "IPaddr2::10.78.0.200/16 ldirectord",
        " Director ",
        "tcp:10.78.0.200:80",
        "rr gate",
        "-> 10.78.0.1:80",
        "negotiate HTTP 200",
        "(none yet)",
    ] {
        assert!(text.contains(want), "missing {want:?} in\n{text}");
    }
    assert!(!text.contains("Failed actions"), "{text}");
    // Nothing is highlighted on the first frame.
    assert_ne!(row_bg(&t, &text, "n2 "), Color::Yellow);
}

#[test]
fn a_dead_node_a_moved_group_and_a_lost_real_server_are_events_and_highlighted() {
    let mut m = Mon::new();
    m.update("12:00:00", status("active", &["n1"], false), Some(lvs(true)));
    m.update("12:00:01", status("dead", &["n2"], true), Some(lvs(false)));
    let events: Vec<String> = m.events().map(|e| format!("{} {}", e.at, e.text)).collect();
    for want in [
        "12:00:01 node n2 went dead (was active)",
        "12:00:01 link eth0 to n2: up -> dead",
        &format!("12:00:01 group {VIP} moved: n1 -> n2"),
        &format!("12:00:01 group {VIP} failed on n1: start web: exit 1"),
        "12:00:01 real server tcp:10.78.0.200:80/10.78.0.2:80 left the table: connection refused",
    ] {
        assert!(events.iter().any(|e| e == want), "missing {want:?} in {events:#?}");
    }
    let (t, text) = screen(&m);
    assert!(text.contains(" Failed actions "), "{text}");
    assert!(text.contains("start web: exit 1 - blocked here until `halo cleanup"), "{text}");
    assert!(text.contains(" Events (newest first) "), "{text}");
    assert!(text.contains("node n2 went dead"), "{text}");
    assert!(text.contains("3.2s ago"), "{text}");
    assert_eq!(row_bg(&t, &text, "n2   "), Color::Yellow, "the dead node is highlighted\n{text}");
    assert_eq!(row_bg(&t, &text, "-> 10.78.0.2:80"), Color::Yellow, "{text}");
    assert_ne!(row_bg(&t, &text, "-> 10.78.0.1:80"), Color::Yellow, "{text}");
    assert_ne!(row_bg(&t, &text, "n1 *"), Color::Yellow, "{text}");

    // A quiet refresh clears the highlight but keeps the events.
    m.update("12:00:02", status("dead", &["n2"], true), Some(lvs(false)));
    let (t, text) = screen(&m);
    assert_ne!(row_bg(&t, &text, "n2   "), Color::Yellow, "{text}");
    assert!(text.contains("node n2 went dead"), "{text}");
}

#[test]
fn events_of_recovery_and_of_the_daemon_going_away() {
    let (old, new) = (status("dead", &[], false), status("active", &["n1"], false));
    let (events, changed) = diff(&old, None, &new, None);
    assert_eq!(
        events,
        vec![
            "node n2 came back (active)".to_string(),
            "link eth0 to n2: dead -> up".into(),
            format!("group {VIP} started on n1")
        ]
    );
    assert!(changed.contains("node:n2") && changed.contains(&format!("group:{VIP}")), "{changed:?}");
    let (events, _) = diff(&new, None, &new, Some(&lvs(true)));
    assert_eq!(events, vec!["the director started here".to_string()]);
    let (events, _) = diff(&new, Some(&lvs(false)), &new, Some(&lvs(true)));
    assert_eq!(
        events,
        vec!["real server tcp:10.78.0.200:80/10.78.0.2:80 joined the table (weight 1)".to_string()]
    );

    let mut m = Mon::new();
    m.update("12:00:00", new.clone(), None);
    m.failed("12:00:01", "no halo daemon answers on /run/halo/halo.sock".into());
    m.failed("12:00:02", "no halo daemon answers on /run/halo/halo.sock".into());
    let (_, text) = screen(&m);
    assert!(text.contains("STALE"), "{text}");
    assert!(text.contains("no answer: no halo daemon answers"), "{text}");
    m.update("12:00:03", new, None);
    let events: Vec<&str> = m.events().map(|e| e.text.as_str()).collect();
    assert_eq!(
        events,
        vec![
            "the daemon answers again (was: no halo daemon answers on /run/halo/halo.sock)",
            "no answer from the daemon: no halo daemon answers on /run/halo/halo.sock",
        ]
    );
}

#[test]
fn lvs_is_asked_only_where_a_director_group_runs() {
    assert!(wants_lvs(&status("active", &["n1"], false)));
    assert!(!wants_lvs(&status("active", &["n2"], false)));
    assert!(!wants_lvs(&json!({"node": "n1", "nodes": []})));
}
