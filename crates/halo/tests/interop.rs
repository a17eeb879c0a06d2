//! Interoperability with a real Heartbeat 3.0.6 node (Debian's `heartbeat` package): one
//! heartbeat node (no crm, its own /etc/ha.d in a private mount namespace, see
//! scripts/hb-node.sh) and one halo node on a bridge. Each must see the other active
//! (`cl_status nodestatus` on one side, `halo status --json` on the other), each must
//! declare the other dead when the cable is pulled, and find it again when it returns.
//! Needs root and the `heartbeat` package; fails when HALO_REQUIRE_ROOT=1 and either is missing.
use halo::testbed::{is_root, node_state, wait_for, Testbed};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const HALO: &str = env!("CARGO_BIN_EXE_halo");
const HB_BIN: &str = "/usr/libexec/heartbeat/heartbeat";

fn hb_node() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/hb-node.sh")
}

fn prerequisites() -> bool {
    let required = std::env::var("HALO_REQUIRE_ROOT").as_deref() == Ok("1");
    let missing = if !is_root() {
        Some("root")
    } else if !Path::new(HB_BIN).exists() {
        Some("the Debian heartbeat package (apt-get install heartbeat)")
    } else {
        None
    };
    match missing {
        Some(m) if required => panic!("interop test needs {m} and HALO_REQUIRE_ROOT=1"),
        Some(m) => {
            eprintln!("skipping: needs {m}");
            false
        }
        None => true,
    }
}

struct HbNode {
    ns: String,
    work: PathBuf,
}

impl HbNode {
    fn cmd(&self, verb: &str, extra: &[&str]) -> std::process::Output {
        Command::new("bash")
            .arg(hb_node())
            .args([verb, &self.ns, &self.work.to_string_lossy()])
            .args(extra)
            .env("HB_START_WAIT", "1")
            .output()
            .expect("hb-node.sh")
    }

    fn cl_status(&self, args: &[&str]) -> String {
        let out = self.cmd("cl_status", args);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.work.join("ha-log")).unwrap_or_default()
    }
}

impl Drop for HbNode {
    fn drop(&mut self) {
        let _ = self.cmd("stop", &[]);
    }
}

const TIMING: &str = "keepalive 500ms\nwarntime 2\ndeadtime 3\ninitdead 6\nudpport 694\n";
const AUTHKEYS: &str = "auth 1\n1 sha1 interop-key\n";

#[test]
fn halo_and_heartbeat_3_0_6_see_each_other_live_and_die() {
    if !prerequisites() {
        return;
    }
    let mut tb = Testbed::new("hb").unwrap();
    tb.add_host("hb", "10.77.0.1/24").unwrap();
    tb.add_host("halo", "10.77.0.2/24").unwrap();

    // The Heartbeat node: its own ha.d, logs in its work dir, realtime off to be polite.
    let work = tb.dir.join("hbwork");
    let had = work.join("ha.d");
    std::fs::create_dir_all(&had).unwrap();
    let hb_cf = format!(
        "{TIMING}ucast eth0 10.77.0.2\nnode hb halo\nlogfile {}\ndebugfile {}\nrealtime off\nauto_failback on\n",
        work.join("ha-log").display(),
        work.join("ha-debug").display()
    );
    std::fs::write(had.join("ha.cf"), &hb_cf).unwrap();
    std::fs::write(had.join("authkeys"), AUTHKEYS).unwrap();
    std::fs::write(had.join("nodeinfo"), "hb\n").unwrap();
    let hb = HbNode { ns: tb.ns("hb"), work };
    let out = hb.cmd("start", &[]);
    assert!(
        out.status.success(),
        "hb-node.sh start: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // The halo node: the same ha.cf, as an operator migrating one node would keep it.
    let halo_cf = format!(
        "{TIMING}ucast eth0 10.77.0.1\nnode hb halo\nlogfile {}\nauto_failback on\n",
        tb.dir.join("halo.log").display()
    );
    let dir = tb.write_config("halo", &halo_cf, AUTHKEYS).unwrap();
    let (_pid, sock) = tb.start_halo("halo", Path::new(HALO), &dir).unwrap();
    let halo_log = || std::fs::read_to_string(tb.dir.join("halo.log")).unwrap_or_default();

    let both_active = || {
        (node_state(&sock, "hb").as_deref() == Some("active")
            && hb.cl_status(&["nodestatus", "halo"]) == "active")
            .then_some(())
    };
    if wait_for(Duration::from_secs(30), both_active).is_none() {
        panic!(
            "halo and heartbeat did not become active for each other: halo says hb is {:?}, cl_status says halo is {:?}\n--- heartbeat log\n{}\n--- halo log\n{}",
            node_state(&sock, "hb"),
            hb.cl_status(&["nodestatus", "halo"]),
            hb.log(),
            halo_log()
        );
    }
    // Heartbeat went active itself: it got our repnodes.
    assert_eq!(hb.cl_status(&["nodestatus", "hb"]), "active");
    assert_eq!(hb.cl_status(&["hblinkstatus", "halo", "eth0"]), "up");
    let st = halo::control::request(&sock, "status").unwrap();
    let hb_entry = st["nodes"].as_array().unwrap().iter().find(|n| n["name"] == "hb").unwrap().clone();
    assert!(hb_entry["generation"].as_u64().unwrap() > 0);
    assert_eq!(hb_entry["links"][0]["state"], "up");
    // Every packet Heartbeat sent verified, and Heartbeat took every one of ours.
    for reason in ["malformed", "unsigned", "bad_auth", "unknown_key", "replay"] {
        assert!(st["dropped"].get(reason).is_none(), "halo dropped heartbeat packets ({reason}): {st}");
    }
    let hblog = hb.log();
    assert!(!hblog.contains("failed authentication"), "{hblog}");
    assert!(hblog.contains("Link halo:eth0 up"), "{hblog}");
    assert!(hblog.contains("Status update for node halo: status active"), "{hblog}");
    assert!(halo_log().contains("Link hb:eth0 up."));

    // Past the start-up period (advertised deadtime + 2 s), then pull heartbeat's cable.
    std::thread::sleep(Duration::from_secs(6));
    tb.cable("hb", false).unwrap();
    let dead = wait_for(Duration::from_secs(10), || {
        (node_state(&sock, "hb").as_deref() == Some("dead")
            && hb.cl_status(&["nodestatus", "halo"]) == "dead")
            .then_some(())
    });
    assert!(
        dead.is_some(),
        "each must declare the other dead: halo says hb {:?}, cl_status says halo {:?}\n--- heartbeat log\n{}",
        node_state(&sock, "hb"),
        hb.cl_status(&["nodestatus", "halo"]),
        hb.log()
    );
    assert!(hb.log().contains("node halo: is dead"), "{}", hb.log());
    assert!(halo_log().contains("node hb: is dead"));

    tb.cable("hb", true).unwrap();
    if wait_for(Duration::from_secs(30), both_active).is_none() {
        panic!(
            "after the cable returned: halo says hb {:?}, cl_status says halo {:?}\n--- heartbeat log\n{}\n--- halo log\n{}",
            node_state(&sock, "hb"),
            hb.cl_status(&["nodestatus", "halo"]),
            hb.log(),
            halo_log()
        );
    }
}
