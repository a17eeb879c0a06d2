//! Snapshots of `halo status` (text and `--json`), `/metrics`, and `cl_status` answers for
//! the main cluster states, without a daemon: each state is built as the engine reports it
//! (`ClusterStatus`, `ResourceStatus`), turned into JSON by the daemon's own builders, and
//! rendered. `UPDATE_SNAPSHOTS=1 cargo test -p halo --test status_view` rewrites the
//! files under `tests/snapshots/status/` (review the diff).
use halo::cmd::cl_status::{self, Source};
use halo::cmd::status::SplitBrainHistory;
use halo_core::resources::GroupStatus;
use halo_core::status::{HeldTwice, IntervalHistogram, SplitBrains};
use halo_core::{ClusterStatus, LinkStatus, NodeStatus, ResourceStatus};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

const HARESOURCES: &str = "\
n1 10.78.0.100/16/eth0 web
n2 IPaddr2::10.78.0.200/16 db::main
";

fn node(name: &str, state: &'static str, link: &'static str, heard: Option<u64>) -> NodeStatus {
    NodeStatus {
        name: name.into(),
        state,
        kind: "normal",
        generation: if name == "n1" { 12 } else { 7 },
        uuid: None,
        links: vec![LinkStatus { name: "eth0".into(), state: link }],
        last_heard_ms: heard,
        load: heard.map(|_| {
            if name == "n1" { "0.42 0.30 0.12 1/123 4567" } else { "1.50 0.80 0.40 2/99 77" }.into()
        }),
        deadtime_ms: 1000,
        late_heartbeats: if name == "n2" { 3 } else { 0 },
        lost_packets: if name == "n2" { 1 } else { 0 },
        // n1 is this node (no histogram of itself); n2's heartbeats at keepalive 100 ms,
        // three of them late.
        heartbeat_interval: (name != "n1").then(|| {
            let mut h = IntervalHistogram::default();
            for ms in [95, 98, 100, 100, 101, 103, 140, 260, 620, 1300] {
                h.observe(ms);
            }
            h
        }),
    }
}

fn ping(alive: bool) -> NodeStatus {
    NodeStatus {
        name: "10.78.0.254".into(),
        state: if alive { "ping" } else { "dead" },
        kind: "ping",
        generation: 0,
        uuid: None,
        links: vec![LinkStatus { name: "10.78.0.254".into(), state: if alive { "up" } else { "dead" } }],
        last_heard_ms: Some(400),
        load: None,
        deadtime_ms: 5000,
        late_heartbeats: 0,
        lost_packets: 0,
        heartbeat_interval: None,
    }
}

fn cluster(nodes: Vec<NodeStatus>) -> ClusterStatus {
    let nodes_up = nodes.iter().filter(|n| n.kind == "normal" && n.state == "active").count();
    ClusterStatus {
        node: "n1".into(),
        state: "active",
        generation: 12,
        comm_up: true,
        flow_control: true,
        nodes,
        dropped: vec![("replay", 2), ("unknown_node", 0)],
        sent_messages: 1234,
        retransmitted: 5,
        max_lateness_ms: 3,
        quorum: halo_core::QuorumStatus {
            have: true,
            votes: nodes_up,
            expected: 2,
            tie_breaker: Some(true),
            policy: "ignore",
        },
    }
}

fn group(
    key: &str,
    preferred: &str,
    state: &'static str,
    holders: &[&str],
    desired: Option<&str>,
) -> GroupStatus {
    GroupStatus {
        key: key.into(),
        preferred: preferred.into(),
        state,
        holders: holders.iter().map(|h| h.to_string()).collect(),
        desired: desired.map(str::to_string),
        failed_here: false,
        last_error: None,
        ..GroupStatus::default()
    }
}

fn resources(
    rscstatus: &'static str,
    standby: &'static str,
    failovers: u64,
    groups: Vec<GroupStatus>,
) -> ResourceStatus {
    ResourceStatus {
        managed: true,
        auto_failback: "on",
        standby,
        rscstatus,
        stable: true,
        groups,
        failovers,
        ..ResourceStatus::default()
    }
}

/// The status JSON exactly as `halo run` answers `status`.
fn status_json(c: &ClusterStatus, r: &ResourceStatus) -> Value {
    with_split_brains(c, r, &SplitBrainHistory::in_memory(Vec::new()), &SplitBrains::default())
}

/// Engine clock and wall clock (Unix ms: 2026-12-01 16:00:00 UTC) when the status is taken.
const NOW_MS: u64 = 5600;
const UNIX_NOW_MS: u64 = 1_796_140_800_000;

fn with_split_brains(
    c: &ClusterStatus,
    r: &ResourceStatus,
    history: &SplitBrainHistory,
    sb: &SplitBrains,
) -> Value {
    let links = halo_host::Links::open(&[], 694).unwrap();
    let mut wire = BTreeMap::new();
    wire.insert("bad_auth", 4u64);
    let mut v = halo::run::status_json(c, &wire, &links);
    v["split_brains"] = history.json(sb, NOW_MS, UNIX_NOW_MS);
    v["resources"] = halo::run::resources_json(r);
    let h = halo_config::parse_haresources(Path::new("haresources"), HARESOURCES).unwrap();
    halo::cmd::status::add_group_resources(&mut v, &h.groups);
    v
}

fn scenarios() -> Vec<(&'static str, Value)> {
    let all_online = status_json(
        &cluster(vec![node("n1", "active", "up", Some(0)), node("n2", "active", "up", Some(80)), ping(true)]),
        &resources(
            "local",
            "none",
            0,
            vec![
                group("10.78.0.100/16/eth0", "n1", "running", &["n1"], Some("n1")),
                group("IPaddr2::10.78.0.200/16", "n2", "stopped", &["n2"], Some("n2")),
            ],
        ),
    );
    let n2_offline = status_json(
        &cluster(vec![
            node("n1", "active", "up", Some(0)),
            node("n2", "dead", "dead", Some(4200)),
            ping(true),
        ]),
        &resources(
            "all",
            "none",
            1,
            vec![
                group("10.78.0.100/16/eth0", "n1", "running", &["n1"], Some("n1")),
                group("IPaddr2::10.78.0.200/16", "n2", "running", &["n1"], Some("n1")),
            ],
        ),
    );
    let mut flaky = group("10.78.0.100/16/eth0", "n1", "stopped", &["n2"], Some("n2"));
    flaky.failed_here = true;
    flaky.last_error = Some(
        "resource group 10.78.0.100/16/eth0: cannot start web: exit code 1 (web: refusing to start)".into(),
    );
    let failed_group = status_json(
        &cluster(vec![
            node("n1", "active", "up", Some(0)),
            node("n2", "active", "up", Some(50)),
            ping(false),
        ]),
        &resources(
            "none",
            "none",
            0,
            vec![flaky, group("IPaddr2::10.78.0.200/16", "n2", "stopped", &[], Some("n2"))],
        ),
    );
    let standby = status_json(
        &cluster(vec![
            node("n1", "active", "up", Some(0)),
            node("n2", "active", "up", Some(120)),
            ping(true),
        ]),
        &resources(
            "none",
            "all",
            0,
            vec![
                group("10.78.0.100/16/eth0", "n1", "stopped", &["n2"], Some("n2")),
                group("IPaddr2::10.78.0.200/16", "n2", "stopped", &["n2"], Some("n2")),
            ],
        ),
    );
    let split_brain = with_split_brains(
        &cluster(vec![node("n1", "active", "up", Some(0)), node("n2", "active", "up", Some(30)), ping(true)]),
        &resources(
            "all",
            "none",
            2,
            vec![
                group("10.78.0.100/16/eth0", "n1", "running", &["n1"], Some("n1")),
                group("IPaddr2::10.78.0.200/16", "n2", "stopping", &["n1", "n2"], Some("n2")),
            ],
        ),
        &earlier_history(),
        &this_runs_split_brains(),
    );
    vec![
        ("all_online", all_online),
        ("n2_offline", n2_offline),
        ("failed_group", failed_group),
        ("standby", standby),
        ("split_brain", split_brain),
        ("director", director_scenario()),
    ]
}

/// n1 runs a director (`ldirectord::ldirectord.cf` in its group), n2 another one.
const DIRECTOR_HARESOURCES: &str = "\
n1 10.78.0.100/16/eth0 ldirectord::ldirectord.cf
n2 IPaddr2::10.78.0.200/16 ldirectord::mail.cf
";

/// n1's `lvs` answer, in the shape the daemon's `Director::lvs_json` gives it (the e2e test
/// in tests/director.rs reads a real one): web on port 80 with one real server up and one
/// whose check fails (out of the table); https on 443, quiescent, one real server in
/// maintenance and one down (both at weight 0), its fallback in use.
fn director_lvs() -> Value {
    serde_json::json!({
        "directors": [{
            "config": "/etc/ha.d/ldirectord.cf",
            "group": "10.78.0.100/16/eth0",
            "table": "halo_lb",
            "daemon_status": "running",
            "running": true,
            "services": [
                {
                    "id": "tcp:10.78.0.100:80", "scheduler": "rr", "forward": "gate",
                    "quiescent": false, "fallback": null, "fallback_active": false,
                    "reals": [
                        {"addr": "10.78.0.11:80", "id": 1, "weight": 1, "maintenance": null,
                         "active_conns": 3, "inact_conns": 5,
                         "checks": 42, "successes": 42, "failures": 0, "in_table": 1, "health": "up",
                         "last_check": "HTTP/1.0 200 OK", "check": "negotiate",
                         "counters": {"inpkts": 120, "outpkts": 0, "inbytes": 9600, "outbytes": 0}},
                        {"addr": "10.78.0.12:80", "id": 2, "weight": 1, "maintenance": null,
                         "active_conns": 0, "inact_conns": 0,
                         "checks": 42, "successes": 0, "failures": 3, "in_table": null, "health": "down",
                         "last_check": "connect: Connection refused", "check": "negotiate",
                         "counters": null}
                    ]
                },
                {
                    "id": "tcp:10.78.0.100:443", "scheduler": "wlc", "forward": "gate",
                    "quiescent": true, "fallback": "127.0.0.1:443", "fallback_active": true,
                    "reals": [
                        {"addr": "10.78.0.11:443", "id": 3, "weight": 2, "maintenance": "10.78.0.11",
                         "active_conns": 0, "inact_conns": 1,
                         "checks": 7, "successes": 0, "failures": 0, "in_table": 0,
                         "health": "down (maintenance file 10.78.0.11)", "last_check": "connected",
                         "check": "connect",
                         "counters": {"inpkts": 5, "outpkts": 0, "inbytes": 300, "outbytes": 0}},
                        {"addr": "10.78.0.12:443", "id": 4, "weight": 1, "maintenance": null,
                         "active_conns": 0, "inact_conns": 0,
                         "checks": 0, "successes": 0, "failures": 0, "in_table": 0,
                         "health": "down (not checked yet)", "last_check": null, "check": "connect",
                         "counters": {"inpkts": 0, "outpkts": 0, "inbytes": 0, "outbytes": 0}}
                    ]
                }
            ]
        }],
        "list": "", "stats": "", "stats_exact": "", "rate": "", "conn": ""
    })
}

/// The status `halo status` shows on n1 with [`director_lvs`] merged in.
fn director_scenario() -> Value {
    let mut v = status_json(
        &cluster(vec![node("n1", "active", "up", Some(0)), node("n2", "active", "up", Some(60)), ping(true)]),
        &resources(
            "all",
            "none",
            0,
            vec![
                group("10.78.0.100/16/eth0", "n1", "running", &["n1"], Some("n1")),
                group("IPaddr2::10.78.0.200/16", "n2", "stopped", &["n2"], Some("n2")),
            ],
        ),
    );
    let h = halo_config::parse_haresources(Path::new("haresources"), DIRECTOR_HARESOURCES).unwrap();
    halo::cmd::status::add_group_resources(&mut v, &h.groups);
    halo::cmd::status::add_director(&mut v, Ok(&director_lvs()));
    v
}

const G1: &str = "10.78.0.100/16/eth0";
const G2: &str = "IPaddr2::10.78.0.200/16";

/// This run, as the engine records it: a healed partition resolved after 812 ms (n1 kept
/// its group, n2 gave it up), then a second one still on (both hold n2's group).
fn this_runs_split_brains() -> SplitBrains {
    let mut sb = SplitBrains::default();
    let both = ["n1".to_string(), "n2".to_string()];
    let n1 = ["n1".to_string()];
    let alive = |_: &str| true;
    let at = |sb: &mut SplitBrains, t: u64, g1: &[String], g2: &[String], d2: Option<&str>| {
        let groups = [
            HeldTwice { key: G1, holders: g1, desired: Some("n1") },
            HeldTwice { key: G2, holders: g2, desired: d2 },
        ];
        sb.observe(t, "n1", &groups, &alive)
    };
    let found = at(&mut sb, 1000, &both, &[], None);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].starts_with("SPLIT-BRAIN (episode 1): group 10.78.0.100/16/eth0 is held by n1 and n2"));
    assert!(at(&mut sb, 1400, &both, &[], None).is_empty(), "logged once");
    let ended = at(&mut sb, 1812, &n1, &[], None);
    assert_eq!(
        ended,
        ["split-brain (episode 1) with n2 resolved after 812 ms: 10.78.0.100/16/eth0: kept by n1, given up by n2"]
    );
    at(&mut sb, 5000, &n1, &both, Some("n2"));
    sb
}

/// A state directory holding one earlier run's episode, read as the daemon reads it.
fn earlier_history() -> SplitBrainHistory {
    let dir = std::env::temp_dir().join(format!("halo-status-view-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join(halo::cmd::status::SPLIT_BRAIN_FILE),
        r#"{"version": 1, "split_brains": [{"id": 3, "detected": 1796054400250, "resolved": 1796054401000,
            "duration_ms": 750, "ongoing_ms": null, "peers": ["n2"], "groups": ["10.78.0.100/16/eth0"],
            "kept_by": ["n1"], "released_by": ["n2"], "outcome": [{"group": "10.78.0.100/16/eth0",
            "held_by": ["n2", "n1"], "kept_by": "n1", "released_by": ["n2"], "lost": []}], "this_run": true}]}"#,
    )
    .unwrap();
    let (h, warning) = SplitBrainHistory::load(&dir, |_| {});
    assert_eq!(warning, None);
    let _ = std::fs::remove_dir_all(&dir);
    h
}

fn snapshots() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots/status")
}

/// Compares `actual` with the snapshot file (or writes it with UPDATE_SNAPSHOTS=1).
fn check(name: &str, actual: &str) {
    let file = snapshots().join(name);
    if std::env::var("UPDATE_SNAPSHOTS").as_deref() == Ok("1") {
        std::fs::create_dir_all(snapshots()).unwrap();
        std::fs::write(&file, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&file)
        .unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_SNAPSHOTS=1 to create it)", file.display()));
    assert_eq!(
        actual,
        expected,
        "{} differs from the snapshot (UPDATE_SNAPSHOTS=1 rewrites it)",
        file.display()
    );
}

#[test]
fn json_snapshots_keep_every_existing_field() {
    for (name, v) in scenarios() {
        for k in [
            "node",
            "state",
            "generation",
            "comm_up",
            "flow_control",
            "nodes",
            "dropped",
            "links",
            "sent_messages",
            "retransmitted",
            "max_lateness_ms",
            "resources",
            "split_brains",
        ] {
            assert!(v.get(k).is_some(), "{name}: {k} missing");
        }
        for e in v["split_brains"].as_array().unwrap() {
            for k in ["detected", "resolved", "peers", "groups", "kept_by", "released_by", "outcome"] {
                assert!(e.get(k).is_some(), "{name}: split_brains[].{k} missing");
            }
        }
        for n in v["nodes"].as_array().unwrap() {
            for k in [
                "name",
                "state",
                "type",
                "generation",
                "uuid",
                "links",
                "last_heard_ms",
                "deadtime_ms",
                "late_heartbeats",
                "lost_packets",
            ] {
                assert!(n.get(k).is_some(), "{name}: nodes[].{k} missing");
            }
        }
        for k in ["managed", "auto_failback", "standby", "rscstatus", "stable", "failovers", "groups"] {
            assert!(v["resources"].get(k).is_some(), "{name}: resources.{k} missing");
        }
        for g in v["resources"]["groups"].as_array().unwrap() {
            for k in ["key", "node", "state", "holders", "desired", "failed", "last_error", "resources"] {
                assert!(g.get(k).is_some(), "{name}: groups[].{k} missing");
            }
            for r in g["resources"].as_array().unwrap() {
                for k in ["name", "agent", "args", "state", "nodes", "failed"] {
                    assert!(r.get(k).is_some(), "{name}: groups[].resources[].{k} missing");
                }
            }
        }
        check(&format!("{name}.json"), &(serde_json::to_string_pretty(&v).unwrap() + "\n"));
    }
}

#[test]
fn text_snapshots_render_from_the_json_fixtures() {
    for (name, v) in scenarios() {
        // The text is rendered from the JSON document alone (what a remote client has).
        let text: Value = match std::fs::read_to_string(snapshots().join(format!("{name}.json"))) {
            Ok(t) if std::env::var("UPDATE_SNAPSHOTS").as_deref() != Ok("1") => {
                serde_json::from_str(&t).unwrap()
            }
            _ => v.clone(),
        };
        let out = halo::cmd::status::render(&text);
        assert_eq!(out, halo::cmd::status::render(&v), "{name}: fixture and builder disagree");
        check(&format!("{name}.txt"), &out);
    }
}

#[test]
fn text_says_what_matters_in_each_state() {
    let s: BTreeMap<_, _> =
        scenarios().into_iter().map(|(n, v)| (n, halo::cmd::status::render(&v))).collect();
    let all = &s["all_online"];
    assert!(all.contains("Stack: halo (Heartbeat 3 compatible)"), "{all}");
    assert!(all.contains("2 nodes configured, 1 ping node"), "{all}");
    assert!(all.contains("2 resource groups configured (4 resources)"), "{all}");
    assert!(all.contains("Online: [ n1 n2 ]"), "{all}");
    assert!(!all.contains("OFFLINE"), "{all}");
    assert!(all.contains("Ping nodes reached: [ 10.78.0.254 ]"), "{all}");
    assert!(all.contains(" Resource Group: 10.78.0.100/16/eth0"), "{all}");
    assert!(all.contains("     10.78.0.100/16/eth0\t(IPaddr):\tStarted n1"), "{all}");
    assert!(all.contains("     web\t(web):\tStarted n1"), "{all}");
    assert!(all.contains("     db::main\t(db):\tStarted n2"), "{all}");
    let off = &s["n2_offline"];
    assert!(off.contains("Online: [ n1 ]\nOFFLINE: [ n2 ]"), "{off}");
    assert!(off.contains("     db::main\t(db):\tStarted n1"), "{off}");
    assert!(off.contains(" * n2: eth0 dead"), "{off}");
    let failed = &s["failed_group"];
    assert!(
        failed.contains("Failed Resource Actions:\n* web (group 10.78.0.100/16/eth0) on n1:"),
        "{failed}"
    );
    assert!(failed.contains("     web\t(web):\tStarted n2 (FAILED on n1)"), "{failed}");
    assert!(failed.contains("     db::main\t(db):\tStopped"), "{failed}");
    assert!(failed.contains("Ping nodes OFFLINE: [ 10.78.0.254 ]"), "{failed}");
    let sb = &s["standby"];
    assert!(sb.contains("Node n1: standby (all)"), "{sb}");
    assert!(sb.contains("     web\t(web):\tStarted n2"), "{sb}");
    for (name, text) in &s {
        assert_eq!(text.contains("Split-brain history:"), *name == "split_brain", "{name}: {text}");
    }
    let split = &s["split_brain"];
    assert!(
        split.contains(
            "Split-brain history:\n\
             * 2026-11-30 16:00:00.250 UTC with [ n2 ]: resolved after 750 ms\n\
             \x20   10.78.0.100/16/eth0: held by [ n2 n1 ], kept by n1, given up by n2\n\
             * 2026-12-01 15:59:55.400 UTC with [ n2 ]: resolved after 812 ms\n\
             \x20   10.78.0.100/16/eth0: held by [ n1 n2 ], kept by n1, given up by n2\n\
             * 2026-12-01 15:59:59.400 UTC with [ n2 ]: ONGOING for 600 ms\n\
             \x20   IPaddr2::10.78.0.200/16: held by [ n1 n2 ]\n"
        ),
        "{split}"
    );
}

#[test]
fn split_brain_json_has_wall_clock_times_and_who_kept_what() {
    let v = scenarios().into_iter().find(|(n, _)| *n == "split_brain").unwrap().1;
    let list = v["split_brains"].as_array().unwrap();
    assert_eq!(list.len(), 3, "{v:#}");
    let (earlier, done, open) = (&list[0], &list[1], &list[2]);
    assert_eq!(earlier["this_run"], false, "read back from the state directory: {earlier}");
    assert_eq!(earlier["id"], 3);
    // Engine ms 1000 and 1812, taken at engine ms 5600 = Unix ms UNIX_NOW_MS.
    assert_eq!(done["detected"], UNIX_NOW_MS - 4600);
    assert_eq!(done["resolved"], UNIX_NOW_MS - 3788);
    assert_eq!(done["duration_ms"], 812);
    assert_eq!(done["peers"], serde_json::json!(["n2"]));
    assert_eq!(done["groups"], serde_json::json!([G1]));
    assert_eq!(done["kept_by"], serde_json::json!(["n1"]));
    assert_eq!(done["released_by"], serde_json::json!(["n2"]));
    assert_eq!(done["this_run"], true);
    assert_eq!(open["resolved"], Value::Null);
    assert_eq!(open["ongoing_ms"], 600);
    assert_eq!(open["groups"], serde_json::json!([G2]));
    assert_eq!(open["kept_by"], serde_json::json!([]));
}

#[test]
fn an_episode_keeps_its_wall_clock_times_however_the_clocks_are_read_later() {
    // The daemon reads its engine clock and the wall clock one after the other: a later
    // read may see them a millisecond further apart. The times shown (and written to the
    // state directory) must not move with that.
    let sb = this_runs_split_brains();
    let h = SplitBrainHistory::in_memory(Vec::new());
    let first = h.json(&sb, NOW_MS, UNIX_NOW_MS);
    let later = h.json(&sb, NOW_MS + 10_000, UNIX_NOW_MS + 10_001);
    for (a, b) in first.as_array().unwrap().iter().zip(later.as_array().unwrap()) {
        assert_eq!(a["detected"], b["detected"], "{a} / {b}");
        assert_eq!(a["resolved"], b["resolved"], "{a} / {b}");
    }
    assert_eq!(later[0]["detected"], UNIX_NOW_MS - 4600);
}

#[test]
fn split_brain_history_survives_a_restart_and_a_bad_file_is_set_aside() {
    let dir = std::env::temp_dir().join(format!("halo-status-view-persist-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(halo::cmd::status::SPLIT_BRAIN_FILE);
    let sb = this_runs_split_brains();
    let (mut h, warning) = SplitBrainHistory::load(&dir, |_| {});
    assert_eq!(warning, None, "no file yet: an empty history");
    assert!(h.changed(&sb));
    h.persist(&sb, NOW_MS, UNIX_NOW_MS);
    assert!(!h.changed(&sb), "written once per change");
    let written = halo::testbed::wait_for(std::time::Duration::from_secs(10), || {
        std::fs::read_to_string(&file).ok().filter(|t| t.contains("ongoing_ms"))
    });
    assert!(written.is_some(), "the writer thread wrote {}", file.display());
    // "Restart": a new daemon reads what the last one wrote, with its own (empty) run.
    let (again, warning) = SplitBrainHistory::load(&dir, |_| {});
    assert_eq!(warning, None);
    let before = h.json(&sb, NOW_MS, UNIX_NOW_MS);
    let after = again.json(&SplitBrains::default(), 0, UNIX_NOW_MS + 60_000);
    let strip = |v: &Value| -> Vec<Value> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|e| {
                let mut e = e.clone();
                e.as_object_mut().unwrap().remove("this_run");
                e
            })
            .collect()
    };
    assert_eq!(strip(&after), strip(&before), "the same episodes after the restart");
    assert!(after.as_array().unwrap().iter().all(|e| e["this_run"] == false));
    let text = halo::cmd::status::render(&serde_json::json!({ "node": "n1", "split_brains": after }));
    assert!(text.contains("not resolved when halo stopped"), "{text}");

    std::fs::write(&file, r#"{"version": 1, "split_brains": [{"id": 1}]}"#).unwrap();
    let (empty, warning) = SplitBrainHistory::load(&dir, |_| {});
    let warning = warning.expect("a warning for a bad file");
    assert!(warning.contains(&file.display().to_string()), "{warning}");
    assert!(warning.contains("entry 0: expected \"detected\" (Unix ms) and a \"groups\" list"), "{warning}");
    assert!(dir.join("split_brains.json.bad").exists(), "set aside: {warning}");
    assert_eq!(empty.json(&SplitBrains::default(), 0, 0), serde_json::json!([]));
    std::fs::write(&file, "not json").unwrap();
    let (_, warning) = SplitBrainHistory::load(&dir, |_| {});
    assert!(warning.is_some_and(|w| w.contains("not JSON")));

    // A history that cannot be written is reported (here the temporary file's name is taken
    // by a directory).
    let _ = std::fs::remove_file(&file);
    std::fs::create_dir_all(dir.join("split_brains.json.tmp")).unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let (mut h, _) = SplitBrainHistory::load(&dir, move |e| {
        let _ = tx.send(e);
    });
    h.persist(&sb, NOW_MS, UNIX_NOW_MS);
    let err = rx.recv_timeout(std::time::Duration::from_secs(10)).expect("the write failure is reported");
    assert!(
        err.starts_with("cannot write the split-brain history ") && err.contains("split_brains.json"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn metrics_snapshot() {
    for (name, v) in scenarios() {
        let mut m = halo::http::metrics(&v);
        // The endpoint adds the director's real servers from the `lvs` answer.
        if name == "director" {
            m.push_str(&halo::http::director_metrics(&director_lvs()));
        }
        check(&format!("{name}.metrics"), &m);
    }
    let v = scenarios().remove(1).1;
    let m = halo::http::metrics(&v);
    for line in [
        "halo_node_state{node=\"n2\",type=\"normal\",state=\"dead\"} 1",
        "halo_node_state{node=\"n1\",type=\"normal\",state=\"active\"} 1",
        "halo_heartbeats_late_total{node=\"n2\"} 3",
        "halo_packets_lost_total{node=\"n2\"} 1",
        "halo_dropped_packets_total{reason=\"bad_auth\"} 4",
        "halo_dropped_packets_total{reason=\"replay\"} 2",
        "halo_failovers_total 1",
        "halo_group_held{group=\"IPaddr2::10.78.0.200/16\",node=\"n1\"} 1",
        "halo_group_state{group=\"IPaddr2::10.78.0.200/16\",state=\"running\"} 1",
        "halo_resource_started{group=\"IPaddr2::10.78.0.200/16\",resource=\"db::main\"} 1",
        "halo_link_up{node=\"n2\",link=\"eth0\"} 0",
        // n2's ten intervals: 95..103 ms (5), 140, 260, 620, 1300.
        "halo_heartbeat_interval_seconds_bucket{node=\"n2\",le=\"0.1\"} 4",
        "halo_heartbeat_interval_seconds_bucket{node=\"n2\",le=\"0.2\"} 7",
        "halo_heartbeat_interval_seconds_bucket{node=\"n2\",le=\"0.75\"} 9",
        "halo_heartbeat_interval_seconds_bucket{node=\"n2\",le=\"1.5\"} 10",
        "halo_heartbeat_interval_seconds_bucket{node=\"n2\",le=\"+Inf\"} 10",
        "halo_heartbeat_interval_seconds_sum{node=\"n2\"} 2.917",
        "halo_heartbeat_interval_seconds_count{node=\"n2\"} 10",
        "halo_node_load1{node=\"n1\"} 0.42",
        "halo_node_load5{node=\"n2\"} 0.8",
        "halo_node_load15{node=\"n2\"} 0.4",
    ] {
        assert!(m.lines().any(|l| l == line), "missing {line:?} in\n{m}");
    }
    // This node has no histogram of itself, a dead node's load is its last one, and ping
    // nodes have neither.
    assert!(!m.contains("halo_heartbeat_interval_seconds_count{node=\"n1\"}"), "{m}");
    assert!(!m.contains("node=\"10.78.0.254\",le="), "{m}");
    assert!(!m.contains("halo_node_load1{node=\"10.78.0.254\"}"), "{m}");
    // The director's real servers, from the `lvs` answer.
    let d = halo::http::director_metrics(&director_lvs());
    let web1 = "service=\"tcp:10.78.0.100:80\",real_server=\"10.78.0.11:80\"";
    let web2 = "service=\"tcp:10.78.0.100:80\",real_server=\"10.78.0.12:80\"";
    let maint = "service=\"tcp:10.78.0.100:443\",real_server=\"10.78.0.11:443\"";
    for line in [
        format!("halo_real_server_up{{{web1}}} 1"),
        format!("halo_real_server_up{{{web2}}} 0"),
        format!("halo_real_server_up{{{maint}}} 0"),
        format!("halo_real_server_maintenance{{{maint}}} 1"),
        format!("halo_real_server_weight{{{maint}}} 2"),
        format!("halo_real_server_table_weight{{{maint}}} 0"),
        format!("halo_real_server_table_weight{{{web1}}} 1"),
        format!("halo_real_server_checks_total{{{web1}}} 42"),
        format!("halo_real_server_check_consecutive_failures{{{web2}}} 3"),
        format!("halo_real_server_active_connections{{{web1}}} 3"),
        format!("halo_real_server_inactive_connections{{{web1}}} 5"),
        format!("halo_real_server_packets_total{{{web1},direction=\"in\"}} 120"),
        format!("halo_real_server_bytes_total{{{web1},direction=\"in\"}} 9600"),
        format!("halo_real_server_bytes_total{{{web1},direction=\"out\"}} 0"),
        "halo_virtual_service_fallback_active{service=\"tcp:10.78.0.100:443\"} 1".to_string(),
        "halo_director_running{config=\"/etc/ha.d/ldirectord.cf\",group=\"10.78.0.100/16/eth0\"} 1"
            .to_string(),
    ] {
        assert!(d.lines().any(|l| l == line), "missing {line:?} in\n{d}");
    }
    // No counters for a real server the data plane has none of (out of the table).
    assert!(!d.contains(&format!("halo_real_server_packets_total{{{web2}")), "{d}");
    // No director here: nothing.
    assert_eq!(halo::http::director_metrics(&serde_json::json!({"directors": []})), "");
    // Every sample belongs to a family declared just before it (a histogram's samples to
    // their histogram).
    let mut declared = std::collections::BTreeSet::new();
    for l in m.lines().chain(d.lines()) {
        if let Some(rest) = l.strip_prefix("# TYPE ") {
            declared.insert(rest.split(' ').next().unwrap().to_string());
        } else if !l.starts_with('#') {
            let name = l.split(['{', ' ']).next().unwrap();
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|s| name.strip_suffix(s).filter(|f| declared.contains(*f)))
                .unwrap_or(name);
            assert!(declared.contains(family), "{name} has no TYPE line");
        }
    }
}

/// cl_status answered from a fixture instead of the daemon.
struct Fixture {
    status: Option<Value>,
}

impl Source for Fixture {
    fn ask(&mut self, cmd: &str) -> Result<Value, String> {
        let Some(st) = &self.status else {
            return Err("no halo daemon answers on /run/halo/halo.sock".into());
        };
        match cmd.split_once(' ') {
            None if cmd == "status" => Ok(st.clone()),
            Some(("parameter", name)) => {
                let hc = halo_config::HaCf {
                    recorded: vec![
                        ("keepalive".into(), "1".into()),
                        ("warntime".into(), "15000ms".into()),
                        ("pacemaker".into(), "false".into()),
                    ],
                    ..Default::default()
                };
                let v = cl_status::parameter_json(&hc, name);
                match v.get("error").and_then(|e| e.as_str()) {
                    Some(e) => Err(e.to_string()),
                    None => Ok(v),
                }
            }
            _ => Err(format!("unknown command '{cmd}'")),
        }
    }
}

fn cl(v: Option<&Value>, args: &str) -> (i32, String, String) {
    let args: Vec<String> = args.split_whitespace().map(str::to_string).collect();
    cl_status::run(&mut Fixture { status: v.cloned() }, &args)
}

#[test]
fn cl_status_subcommands_outputs_and_exit_codes() {
    let sc: BTreeMap<_, _> = scenarios().into_iter().collect();
    let all = Some(&sc["all_online"]);
    let off = Some(&sc["n2_offline"]);
    let e = |code: i32, out: &str| (code, out.to_string());
    let t = |v: Option<&Value>, a: &str| {
        let (c, o, _) = cl(v, a);
        (c, o)
    };
    assert_eq!(t(all, "hbstatus"), e(0, "Heartbeat is running on this machine.\n"));
    assert_eq!(t(None, "hbstatus"), e(1, "Heartbeat is stopped on this machine.\n"));
    assert_eq!(
        t(all, "hbstatus -v"),
        e(
            0,
            &format!(
                "version:\t{}\nmanaged by:\t\"haresources\"\n\nn1\tactive\t(nodetype: normal)\n\teth0\tup\n\
                 \nn2\tactive\t(nodetype: normal)\n\teth0\tup\n\n10.78.0.254\tping\t(nodetype: ping)\n\t10.78.0.254\tup\n",
                cl_status::hbversion()
            )
        )
    );
    assert!(t(all, "hbstatus -v -m").1.starts_with("Heartbeat version 3.0.6 (halo "));
    assert!(t(all, "hbstatus -v -m").1.contains("Resources controlled by \"haresources\"\n"));
    assert_eq!(t(all, "listnodes"), e(0, "n1\nn2\n10.78.0.254\n"));
    assert_eq!(t(all, "listnodes -n"), e(0, "n1\nn2\n"));
    assert_eq!(t(all, "listnodes -p"), e(0, "10.78.0.254\n"));
    assert_eq!(t(all, "listnodes -np"), e(0, "n1\nn2\n10.78.0.254\n"));
    assert_eq!(t(all, "listnodes -m -n"), e(0, "The nodes are as follow:\nn1\nn2\n"));
    assert_eq!(t(all, "nodestatus n2"), e(0, "active\n"));
    assert_eq!(t(off, "nodestatus n2"), e(1, "dead\n"));
    assert_eq!(t(all, "nodestatus 10.78.0.254"), e(0, "ping\n"));
    assert_eq!(t(all, "nodestatus -m n1"), e(0, "The cluster node n1 is active\n"));
    assert_eq!(t(off, "nodestatus n2 -m"), e(1, "The cluster node n2 is dead\n"));
    let (c, o, err) = cl(all, "nodestatus nosuch");
    assert_eq!((c, o.as_str(), err.as_str()), (11, "", "Error. May be due to incorrect node name\n"));
    assert_eq!(cl(all, "nodestatus").0, 11);
    assert_eq!(t(all, "nodetype n1"), e(0, "normal\n"));
    assert_eq!(t(all, "nodetype 10.78.0.254"), e(0, "ping\n"));
    assert_eq!(t(all, "nodetype -m n1"), e(0, "The node n1's type: normal\n"));
    assert_eq!(cl(all, "nodetype x").0, 11);
    assert_eq!(t(all, "nodeweight n2"), e(0, "100\n"));
    assert_eq!(t(all, "nodeweight -m n2"), e(0, "The weight of the cluster node n2 is 100\n"));
    assert_eq!(cl(all, "nodeweight x").0, 11);
    assert_eq!(t(all, "nodesite n2"), e(0, "\n"));
    assert_eq!(t(all, "nodesite -m n2"), e(0, "The site of the cluster node n2 is \n"));
    assert_eq!(t(all, "listhblinks n2"), e(0, "\teth0\n"));
    assert_eq!(t(all, "listhblinks -v n2"), e(0, "\teth0\tup\n"));
    assert_eq!(t(all, "listhblinks -m n2"), e(0, "\tthis node has the following heartbeat links:\n\teth0\n"));
    assert_eq!(t(all, "listhblinks 10.78.0.254"), e(0, "\t10.78.0.254\n"));
    assert_eq!(cl(all, "listhblinks x").0, 13);
    assert_eq!(t(all, "hblinkstatus n2 eth0"), e(0, "up\n"));
    assert_eq!(t(off, "hblinkstatus n2 eth0"), e(1, "dead\n"));
    assert_eq!(t(off, "hblinkstatus -m n2 eth0"), e(1, "The node n2's heartbeat link eth0 is dead\n"));
    assert_eq!(cl(all, "hblinkstatus n2 eth9").0, 13);
    assert_eq!(cl(all, "hblinkstatus n2").0, 11);
    assert_eq!(t(all, "clientstatus n2 ipfail"), e(1, "offline\n"));
    assert_eq!(t(all, "rscstatus"), e(0, "local\n"));
    assert_eq!(t(off, "rscstatus"), e(0, "all\n"));
    assert_eq!(t(Some(&sc["standby"]), "rscstatus -m"), e(0, "This node is holding none resources.\n"));
    assert_eq!(t(all, "hbparameter -p keepalive"), e(0, "1\n"));
    assert_eq!(t(all, "hbparameter -pwarntime"), e(0, "15000ms\n"));
    assert_eq!(t(all, "hbparameter -m -p keepalive"), e(0, "Heartbeat parameter keepalive's value: 1\n"));
    assert_eq!(t(all, "hbparameter -p hbversion"), e(0, &format!("{}\n", cl_status::hbversion())));
    assert_eq!(cl(all, "hbparameter -p node").0, 1);
    assert_eq!(cl(all, "hbparameter -p nosuch").0, 1);
    assert_eq!(cl(all, "hbparameter").0, 11);
    assert_eq!(cl(all, "listnodes -x").0, 11);
    let (c, _, err) = cl(all, "frobnicate");
    assert_eq!(c, 11);
    assert!(err.contains("frobnicate: invalid sub-command."), "{err}");
    let (c, o, _) = cl(all, "");
    assert_eq!(c, 0);
    assert!(o.starts_with("Usage: cl_status <sub-command>"), "{o}");
    // Without a daemon every subcommand but hbstatus fails to sign on: 1.
    let (c, o, err) = cl(None, "nodestatus n1");
    assert_eq!((c, o.as_str()), (1, ""));
    assert!(err.contains("Cannot signon with heartbeat"), "{err}");
}

#[test]
fn clones_are_listed_with_where_they_run() {
    let v = serde_json::json!({
        "node": "n1", "state": "active", "generation": 1, "comm_up": true,
        "nodes": [{"name": "n1", "state": "active", "type": "normal", "links": []}],
        "resources": {"managed": true, "auto_failback": "on", "standby": "none", "rscstatus": "none",
            "groups": [], "clones": [
                {"name": "gw_pingd_clone", "nodes": [], "state": "running",
                 "running_on": ["n1", "n2"], "failed_on": ["n3"], "last_error": "exit 1"}]}
    });
    let text = halo::cmd::status::render(&v);
    assert!(
        text.contains(" Clone Set: gw_pingd_clone\n     Started: [ n1 n2 ]\n     FAILED: [ n3 ]\n"),
        "{text}"
    );
}

#[test]
fn director_json_has_virtual_services_and_real_servers_with_weight_and_health() {
    let v = director_scenario();
    let d = &v["director"];
    assert_eq!(d["here"], true);
    assert_eq!(d["error"], Value::Null);
    let vs = d["virtual_services"].as_array().unwrap();
    assert_eq!(vs.len(), 2);
    for svc in vs {
        for k in
            ["id", "protocol", "address", "scheduler", "forward", "quiescent", "fallback", "config", "group"]
        {
            assert!(svc.get(k).is_some(), "virtual_services[].{k} missing: {svc}");
        }
        for r in svc["real_servers"].as_array().unwrap() {
            for k in ["address", "forward", "weight", "health", "last_check", "reason", "counters", "checks"]
            {
                assert!(r.get(k).is_some(), "real_servers[].{k} missing: {r}");
            }
        }
    }
    assert_eq!(
        (vs[0]["protocol"].as_str(), vs[0]["address"].as_str()),
        (Some("TCP"), Some("10.78.0.100:80"))
    );
    let r: Vec<(&str, Value, &str, Value)> = vs
        .iter()
        .flat_map(|s| s["real_servers"].as_array().unwrap())
        .map(|r| {
            (
                r["address"].as_str().unwrap(),
                r["weight"].clone(),
                r["health"].as_str().unwrap(),
                r["reason"].clone(),
            )
        })
        .collect();
    use serde_json::json;
    assert_eq!(
        r,
        [
            ("10.78.0.11:80", json!(1), "up", Value::Null),
            ("10.78.0.12:80", Value::Null, "down", json!("connect: Connection refused")),
            ("10.78.0.11:443", json!(0), "maintenance", json!("maintenance file 10.78.0.11")),
            ("10.78.0.12:443", json!(0), "down", json!("not checked yet")),
        ]
    );
    assert_eq!(vs[0]["real_servers"][0]["counters"]["inpkts"], 120);
    // The director of n2's group is not here: only where it runs, no real servers invented.
    let groups = d["groups"].as_array().unwrap();
    assert_eq!(groups.len(), 2);
    assert_eq!(groups[1]["resource"], "ldirectord::mail.cf");
    assert_eq!(groups[1]["nodes"], json!(["n2"]));
    assert_eq!(groups[1]["here"], false);
    // Scenarios without a director group have no director key.
    for (name, v) in scenarios() {
        assert_eq!(v.get("director").is_some(), name == "director", "{name}");
    }
}

#[test]
fn director_section_lists_services_real_servers_weights_and_health() {
    let text = halo::cmd::status::render(&director_scenario());
    assert!(
        text.contains(
            "\nDirector:\n\
             \x20TCP 10.78.0.100:80 rr (ldirectord.cf, on n1)\n\
             \x20    -> 10.78.0.11:80 gate weight 1 up (last check: HTTP/1.0 200 OK)\n\
             \x20    -> 10.78.0.12:80 gate out of the table down: connect: Connection refused\n\
             \x20TCP 10.78.0.100:443 wlc quiescent (ldirectord.cf, on n1)\n\
             \x20    -> 10.78.0.11:443 gate weight 0 maintenance (file 10.78.0.11)\n\
             \x20    -> 10.78.0.12:443 gate weight 0 down (not checked yet)\n\
             \x20    -> 127.0.0.1:443 fallback in use (no real server up)\n\
             \x20ldirectord::mail.cf (group IPaddr2::10.78.0.200/16): runs on n2 (its real servers: `halo status` there)\n"
        ),
        "{text}"
    );
    for (name, v) in scenarios() {
        assert_eq!(halo::cmd::status::render(&v).contains("Director:"), name == "director", "{name}");
    }
    // The daemon did not answer `lvs`: said so, and where the directors run is still shown.
    let mut v = director_scenario();
    halo::cmd::status::add_director(&mut v, Err("no halo daemon answers on /run/halo/halo.sock".into()));
    assert_eq!(v["director"]["here"], false);
    let text = halo::cmd::status::render(&v);
    assert!(
        text.contains(
            "\nDirector:\n cannot read the director's state: no halo daemon answers on /run/halo/halo.sock\n\
             \x20ldirectord::ldirectord.cf (group 10.78.0.100/16/eth0): held here, no director state yet\n\
             \x20ldirectord::mail.cf (group IPaddr2::10.78.0.200/16): runs on n2 (its real servers: `halo status` there)\n"
        ),
        "{text}"
    );
}
